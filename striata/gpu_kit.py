"""`striata gpu-kit`: a short loan of a GPU machine, used by one command.

A lent GPU machine has torch with CUDA and no network, holds the loan for minutes, and takes files in
batches of at most 64 MiB. So the kit does three things:

- ``split`` cuts a file (a wheel the machine lacks, a run folder's checkpoint) into parts that fit a
  batch, with a manifest of sizes and SHA-256s (and ``SHA256SUMS``, so that ``cat`` and ``sha256sum``
  join and check them where striata is not installed yet); ``join`` puts them back and checks them;
- ``run`` trains ``configs/g1_tracking_warp.yaml`` (MuJoCo Warp and PPO on one device) for a fixed
  number of minutes, from a carried run folder when one is given (``--resume``, copied first so the
  carried one stays as it was), and writes to ``--out`` the continued run folder (its newest checkpoint
  only) and ``figures.json``: env steps, wall time, env steps per second with training, the last
  evaluation. Its CPU run (Warp's CPU device, a tiny config) is a test in CI.

``docs/gpu.md`` says which wheels travel and the commands on each side.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from striata.common.files import atomic_write

PART_BYTES = 60 * 1024 * 1024  # under the 64 MiB a batch carries, with room for the manifest
MANIFEST = "manifest.json"
DEFAULT_CONFIG = Path("configs/g1_tracking_warp.yaml")


class KitError(ValueError):
    """A kit that cannot be split, joined or run as asked; the message says what and why."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def split(files: list[Path], out: Path, part_bytes: int = PART_BYTES) -> dict[str, Any]:
    """Cut ``files`` into ``out/<name>.partNNN`` of at most ``part_bytes``; writes the manifest too."""
    if part_bytes < 1:
        raise KitError(f"part_bytes: must be >= 1, got {part_bytes}")
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for path in files:
        if not path.is_file():
            raise KitError(f"{path}: no such file")
        parts = []
        with path.open("rb") as source:
            for index, chunk in enumerate(iter(lambda: source.read(part_bytes), b"")):
                part = out / f"{path.name}.part{index:03d}"
                atomic_write(part, lambda f, chunk=chunk: f.write(chunk))
                parts.append(part.name)
        entries.append(
            {"name": path.name, "size": path.stat().st_size, "sha256": _sha256(path), "parts": parts}
        )
    manifest = {"part_bytes": part_bytes, "files": entries}
    atomic_write(out / MANIFEST, lambda f: f.write(json.dumps(manifest, indent=2).encode()))
    # For a machine without striata yet: `cat NAME.part* > NAME` joins, `sha256sum -c SHA256SUMS` checks.
    sums = "".join(f"{e['sha256']}  {e['name']}\n" for e in entries)
    atomic_write(out / "SHA256SUMS", lambda f: f.write(sums.encode()))
    return manifest


def join(folder: Path, out: Path | None = None) -> list[Path]:
    """Reassemble every file of ``folder``'s manifest into ``out`` (default ``folder``), each checked
    against its size and SHA-256; a missing part is named."""
    out = folder if out is None else out
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise KitError(f"{folder}: no {MANIFEST} (split writes it beside the parts)")
    manifest = json.loads(manifest_path.read_text())
    out.mkdir(parents=True, exist_ok=True)
    joined = []
    for entry in manifest["files"]:
        missing = [p for p in entry["parts"] if not (folder / p).is_file()]
        if missing:
            raise KitError(f"{entry['name']}: parts not here yet: {', '.join(missing)}")
        target = out / entry["name"]

        def write(f: Any, parts: list[str] = entry["parts"]) -> None:
            for part in parts:
                with (folder / part).open("rb") as source:
                    shutil.copyfileobj(source, f)

        atomic_write(target, write)
        if target.stat().st_size != entry["size"] or _sha256(target) != entry["sha256"]:
            target.unlink()
            raise KitError(f"{entry['name']}: reassembled file differs from the one split (size or SHA-256)")
        joined.append(target)
    return joined


def run(
    minutes: float,
    out: Path,
    resume: Path | None = None,
    config: Path = DEFAULT_CONFIG,
    overrides: dict[str, Any] | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Train for ``minutes`` (from ``resume``'s newest checkpoint when given) into ``out``; the figures."""
    from striata.experiment import load_experiment
    from striata.run_dir import checkpoints, new_run_dir, resume_run
    from striata.train_device import DeviceTraining

    if minutes <= 0:
        raise KitError(f"minutes: must be > 0, got {minutes}")
    console = console or Console(stderr=True)
    extra = dict(overrides or {})
    out.mkdir(parents=True, exist_ok=True)
    if resume is not None:
        if not checkpoints(resume):
            raise KitError(f"--resume {resume}: no checkpoint in it to continue from")
        run_dir = out / resume.name
        if run_dir.exists():
            raise KitError(f"{run_dir}: already exists; give another --out")
        shutil.copytree(resume, run_dir)
        experiment = resume_run(run_dir, extra)
    else:
        experiment = load_experiment(config, extra)
        run_dir = new_run_dir(experiment, out)
    if experiment.runner != "device":
        raise KitError(f"runner: the kit trains with runner: device, the config says {experiment.runner!r}")
    training = DeviceTraining(experiment, run_dir, console)
    # A run's minutes count across its resumes: this loan adds ``minutes`` to what it has had.
    training.config.max_minutes = training.counters.seconds / 60 + minutes
    start = time.monotonic()
    summary = training.run()
    wall_s = time.monotonic() - start
    for old in checkpoints(run_dir)[:-1]:  # what comes back is the newest; each batch is 64 MiB at most
        old.unlink()
    figures = {
        "run_dir": str(run_dir),
        "resumed_from": str(resume) if resume is not None else None,
        "wall_s": round(wall_s, 1),
        "env_steps": summary["env_steps"],
        "env_steps_per_s_with_training": summary.get("env_steps_per_s"),
        "last_evaluation": (summary.get("evaluations") or [None])[-1],
        "summary": summary,
    }
    atomic_write(out / "figures.json", lambda f: f.write(json.dumps(figures, indent=2).encode()))
    return figures
