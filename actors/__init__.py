"""Ray actors that step batched envs with a CPU copy of the policy and produce trajectory chunks."""
