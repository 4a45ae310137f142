"""The run folder: resolved config, checkpoints, TensorBoard logs and a status file.

Layout::

    runs/<name>-<time>/
        config.yaml        the resolved experiment config (every default filled in)
        checkpoints/       ckpt_<env_steps>.pt (+ ckpt_<env_steps>.pt.<buffer>.npz replay buffers);
                           the newest is resumed, the last KEEP_CHECKPOINTS are kept
        tb/                TensorBoard event files
        status.json        live counters (env steps, actor pids and restarts), rewritten atomically
        summary.json       written at the end of a run
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml

from striata.common.files import atomic_write
from striata.experiment import ExperimentConfig, check_experiment, merge_overrides


def _write_config(path: Path, config: ExperimentConfig) -> None:
    write_atomic(path / "config.yaml", yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))


def new_run_dir(config: ExperimentConfig, root: str | Path = "runs") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{config.name}-{stamp}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = Path(root) / f"{config.name}-{stamp}-{suffix}"
    (path / "checkpoints").mkdir(parents=True)
    _write_config(path, config)
    return path


def discard_unstarted(run_dir: Path) -> None:
    """Remove a new run folder whose run failed to set up (it holds its config and no checkpoint, log or
    status yet), so a failed start leaves no folder to mistake for a run; anything more is kept."""
    ckpts = run_dir / "checkpoints"
    if {p.name for p in run_dir.iterdir()} <= {"config.yaml", "checkpoints"} and not any(ckpts.iterdir()):
        ckpts.rmdir()
        (run_dir / "config.yaml").unlink(missing_ok=True)
        run_dir.rmdir()


def load_run_config(run_dir: Path) -> ExperimentConfig:
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder: no config.yaml")
    return ExperimentConfig.model_validate(yaml.safe_load(path.read_text()))


def resume_run(run_dir: Path, overrides: dict[str, Any]) -> ExperimentConfig:
    """The run's resolved config, with ``--set`` overrides applied and recorded (e.g. more steps)."""
    config = load_run_config(run_dir)
    if overrides:
        config = ExperimentConfig.model_validate(merge_overrides(config.model_dump(mode="json"), overrides))
        check_experiment(config)
        _write_config(run_dir, config)
    return config


KEEP_CHECKPOINTS = 3


def checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint files of a run, oldest first."""
    return sorted((run_dir / "checkpoints").glob("ckpt_*.pt"), key=lambda p: int(p.stem.split("_")[1]))


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = checkpoints(run_dir)
    return found[-1] if found else None


def prune_checkpoints(run_dir: Path, keep: int = KEEP_CHECKPOINTS) -> None:
    """Delete all but the newest ``keep`` checkpoints with their buffer files (each holds a full replay)."""
    for old in checkpoints(run_dir)[:-keep]:
        for path in old.parent.glob(f"{old.name}*"):
            path.unlink(missing_ok=True)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` so that readers never see a half-written file (``common.files.atomic_write``)."""
    atomic_write(path, lambda f: f.write(text.encode()))


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(data, indent=2))
