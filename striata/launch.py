"""``striata launch``, ``status``, ``stop``: training jobs on an existing Ray cluster.

A job is Ray's job submission: the working directory (this checkout, without run folders and
virtual environments) is packaged and shipped, and the entrypoint ``striata train`` runs as the
job's driver, which holds the learner. The driver is placed by the learner's resources
(``learner.num_gpus`` and ``learner.resources``), so the learner lands on a GPU node when the config
asks; actors and a Ray-placed reward server are placed by their own sections. The config
file and the ``--set`` overrides travel with the job, after they were validated here.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Any

from ray.job_submission import JobStatus, JobSubmissionClient

from striata.experiment import ExperimentConfig
from striata.train import forwarded_env

PACKAGE_EXCLUDES = [".git", ".venv", "runs", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache"]
DEFAULT_DASHBOARD_PORT = 8265


class LaunchError(ValueError):
    """A cluster address or job that cannot be used."""


def dashboard_url(cluster: str) -> str:
    """``HOST``, ``HOST:PORT`` or ``http(s)://HOST:PORT`` -> the job server URL (dashboard port 8265)."""
    if cluster.startswith(("http://", "https://")):
        return cluster
    host, _, port = cluster.partition(":")
    if not host:
        raise LaunchError(f"--cluster: expected HOST[:PORT] of the Ray dashboard, got {cluster!r}")
    if port and not port.isdigit():
        raise LaunchError(f"--cluster: port must be a number, got {port!r}")
    return f"http://{host}:{port or DEFAULT_DASHBOARD_PORT}"


def job_client(cluster: str) -> JobSubmissionClient:
    url = dashboard_url(cluster)
    try:
        return JobSubmissionClient(url)
    except (ConnectionError, RuntimeError) as exc:
        raise LaunchError(f"--cluster {cluster}: no Ray job server at {url} ({exc})") from None


def submit(
    config: Path,
    overrides: list[str],
    experiment: ExperimentConfig,
    cluster: str,
    workdir: Path,
    runs: str = "runs",
    job_id: str | None = None,
) -> str:
    """Submit ``striata train CONFIG --set ...`` (validated here as ``experiment``); returns the job id.

    The config file travels in the package, so it must lie inside ``workdir``.
    """
    try:
        config_arg = config.resolve().relative_to(workdir.resolve()).as_posix()
    except ValueError:
        raise LaunchError(
            f"config {config}: must be inside the working directory {workdir} (it is shipped with it)"
        ) from None
    sets = [arg for override in overrides for arg in ("--set", override)]
    train_args = ["train", config_arg, *sets, "--address", "auto", "--runs", runs]
    env_vars = forwarded_env()
    learner = experiment.learner
    return job_client(cluster).submit_job(
        entrypoint=shlex.join(["python", "-m", "striata", *train_args]),
        submission_id=job_id,
        runtime_env={"working_dir": str(workdir), "excludes": PACKAGE_EXCLUDES, "env_vars": env_vars},
        entrypoint_num_cpus=1,
        entrypoint_num_gpus=learner.num_gpus or None,
        entrypoint_resources=learner.resources or None,
        metadata={"striata_experiment": experiment.name, "striata_task": experiment.task},
    )


TERMINAL = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED)


def follow_logs(cluster: str, job_id: str, echo: Any, timeout_s: float | None = None) -> str:
    """Pass the job's new log text to ``echo`` until the job ends; returns its final status.

    Polls the job server rather than holding a log stream: a stream that closes early (the job
    still pending, a proxy timeout) would otherwise end the wait before the job does.
    """
    client = job_client(cluster)
    shown = 0
    end = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        status = client.get_job_status(job_id)
        logs = client.get_job_logs(job_id)
        if len(logs) > shown:
            echo(logs[shown:])
            shown = len(logs)
        if status in TERMINAL:
            return str(status)
        if end is not None and time.monotonic() > end:
            raise LaunchError(f"job {job_id}: still {status} after {timeout_s:.0f} s")
        time.sleep(1.0)


def job_table(cluster: str, job_id: str | None = None) -> list[dict[str, Any]]:
    """striata's jobs on the cluster (or one job): id, status, experiment, times, driver node."""
    client = job_client(cluster)
    jobs = [client.get_job_info(job_id)] if job_id else client.list_jobs()
    rows = []
    for job in jobs:
        metadata = job.metadata or {}
        if job_id is None and "striata_experiment" not in metadata:
            continue
        rows.append(
            {
                "job_id": job.submission_id,
                "status": str(job.status),
                "experiment": metadata.get("striata_experiment", ""),
                "task": metadata.get("striata_task", ""),
                "driver_node_id": job.driver_node_id,
                "start_time": job.start_time,
                "end_time": job.end_time,
                "message": job.message,
            }
        )
    return rows


def stop(cluster: str, job_id: str) -> bool:
    """Ask the job to stop (SIGTERM to the driver: the trainer writes its last checkpoint)."""
    try:
        return job_client(cluster).stop_job(job_id)
    except RuntimeError as exc:
        raise LaunchError(f"job {job_id!r}: {exc}") from None
