"""`striata launch` on a local three-node Ray cluster: every part lands where the config says.

The head carries 'reward_node', one worker 'learner_node', the other 'actor_node'. The job is a short
panda_reach run with a reward server placed as a Ray actor; where the learner (the job's driver), the
reward server and the actors ran is read back from Ray's state API, and the job must succeed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from ray_cluster import cluster_env, local_cluster, query

REPO = Path(__file__).resolve().parents[1]
STRIATA = [sys.executable, "-m", "striata"]
PLACEMENT_NODES = ("learner_node", "actor_node", "reward_node")
PLACEMENT = {
    "learner.resources.learner_node": "1",
    "actors.resources.actor_node": "1",
    "actors.num_actors": "2",
    "actors.envs_per_actor": "4",
    "actors.chunk_length": "5",
    "actors.num_cpus": "0.5",
    "total_env_steps": "600",
    "learner.learning_starts": "200",
    "sac.batch_size": "64",
    "eval.every_s": "600",
    "eval.episodes": "2",
    "eval.num_envs": "2",
    "reward_model.enabled": "true",
    "reward_model.placement": "ray",
    "reward_model.resources.reward_node": "1",
    "reward_model.server.backend.kind": "torch",
    "reward_model.server.port": "0",
    "reward_model.server.host": "127.0.0.1",
    "reward_model.task_text": "reach the target",
    "reward_model.height": "32",
    "reward_model.width": "32",
    "reward_model.every_k": "5",
}


# About 1.5 minutes (three Ray nodes, a job package, a training run): a slow test, which CI runs after
# the default suite on the same fresh install, so `striata launch` runs as a new user's would (it needs
# ray[default]).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture
def three_node_cluster():
    workers = ((2, {"learner_node": 1}), (2, {"actor_node": 4}))
    with local_cluster(
        36479, head_cpus=1, head_resources={"reward_node": 1}, workers=workers, dashboard_port=38265
    ) as cluster:
        yield cluster


def test_launch_places_learner_reward_server_and_actors_by_resources(three_node_cluster, tmp_path):
    nodes = query(
        three_node_cluster.address,
        "print(json.dumps({n['NodeID']: n['Resources'] for n in ray.nodes() if n['Alive']}))",
    )
    node_of = {name: {n for n, res in nodes.items() if res.get(name)} for name in PLACEMENT_NODES}
    assert len(nodes) == 3 and all(len(found) == 1 for found in node_of.values()), nodes

    overrides = [arg for key, value in PLACEMENT.items() for arg in ("--set", f"{key}={value}")]
    target = ["--cluster", three_node_cluster.dashboard, "--runs", str(tmp_path / "runs")]
    launched = subprocess.run(
        [*STRIATA, "launch", "configs/panda_reach.yaml", *target, *overrides],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=cluster_env(),
    )
    assert launched.returncode == 0, (launched.stdout[-3000:], launched.stderr[-3000:])
    job_id = json.loads(launched.stdout.strip().splitlines()[-1])["job_id"]

    status = subprocess.run(
        [*STRIATA, "status", "--cluster", three_node_cluster.dashboard, job_id],
        capture_output=True,
        text=True,
        timeout=120,
        env=cluster_env(),
    )
    assert status.returncode == 0, status.stderr[-2000:]
    (job,) = json.loads(status.stdout)
    assert job["status"] == "SUCCEEDED" and job["experiment"] == "panda_reach"
    assert {job["driver_node_id"]} == node_of["learner_node"]

    actors = query(
        three_node_cluster.address,
        "from ray.util.state import list_actors\n"
        f"actors = list_actors(address='http://{three_node_cluster.dashboard}', limit=1000)\n"
        "print(json.dumps([[a.class_name, a.node_id] for a in actors]))",
    )
    env_actor_nodes = {node for name, node in actors if name == "EnvActor"}
    reward_nodes = {node for name, node in actors if name == "RewardServerActor"}
    assert env_actor_nodes == node_of["actor_node"]
    assert reward_nodes == node_of["reward_node"]
