"""The in-process vision-language progress model: sim-rollout data set, CNN + text-embedding model,
training, audit metrics and the ``torch`` reward backend that serves it."""
