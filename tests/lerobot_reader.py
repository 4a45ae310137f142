"""Read session folders with LeRobot's own loader (``LeRobotDataset``), in a process of its own, and write
what it returns for the tests to compare with striata's reader (``read_with_lerobot`` runs it).

    python tests/lerobot_reader.py OUT ROOT [ROOT ...]

For each ROOT, ``OUT/<i>.npz`` holds every item LeRobot's dataset returns (one per row: each feature
stacked, video frames as uint8 [N, H, W, 3]) and ``OUT/<i>.json`` the counts it reports (``num_episodes``,
``num_frames``, the rows of its episodes metadata and of its frames table), its episodes metadata (stats
left out) and the task of each item; or ``error`` when LeRobot does not open the folder.

torchvision for our torch exists only as a CUDA build; LeRobot imports it when its dataset module loads and
never calls it on a video dataset decoded with torchcodec. A stand-in module takes its place and records
any use: ``OUT/torchvision.json`` lists the calls made (the tests require none).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

# LeRobot is installed beside striata with --no-deps (requirements/lerobot.txt): its pins pull a CUDA torch.
LEROBOT = importlib.util.find_spec("lerobot") is not None
NOT_INSTALLED = "lerobot is not installed: pip install --no-deps -r requirements/lerobot.txt"
CALLS: list[str] = []


class _Unavailable:
    """Any attribute of the stand-in: reading it is allowed (``from torchvision import transforms``),
    calling it is recorded and fails."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> _Unavailable:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Unavailable(f"{self._name}.{attr}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        CALLS.append(self._name)
        raise RuntimeError(f"stand-in torchvision: {self._name} was called")


def install_torchvision_stand_in() -> None:
    for name in ("torchvision", "torchvision.io", "torchvision.transforms", "torchvision.transforms.v2",
                 "torchvision.transforms.v2.functional"):  # fmt: skip
        module = types.ModuleType(name)

        def attribute(attr: str, name: str = name) -> _Unavailable:
            if attr.startswith("__"):  # inspect and importlib probe dunders on every module
                raise AttributeError(attr)
            return _Unavailable(f"{name}.{attr}")

        module.__getattr__ = attribute  # type: ignore[method-assign]
        module.__path__ = []
        module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
        sys.modules[name] = module


def read(root: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    import numpy as np
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    dataset = LeRobotDataset("striata/session", root=root)
    videos = dataset.meta.video_keys
    items = [dataset[i] for i in range(len(dataset))]
    arrays: dict[str, Any] = {}
    for key in dataset.features:
        if key in videos:  # float [3, H, W] in [0, 1] -> uint8 [H, W, 3]
            frames = [(item[key].permute(1, 2, 0).numpy() * 255).round() for item in items]
            arrays[key] = np.stack(frames).astype(np.uint8) if frames else np.zeros((0,), np.uint8)
        else:
            arrays[key] = np.stack([item[key].numpy() for item in items]) if items else np.zeros((0,))
    episodes = [{k: v for k, v in row.items()} for row in dataset.meta.episodes]
    summary = {
        "codebase_version": dataset.meta.info["codebase_version"],
        "num_episodes": dataset.num_episodes,
        "num_frames": dataset.num_frames,
        "meta_episodes": len(dataset.meta.episodes),
        "hf_rows": len(dataset.hf_dataset),
        "episodes": episodes,
        "tasks": [item["task"] for item in items],
        "stats_keys": sorted(dataset.meta.stats) if dataset.meta.stats else [],
    }
    return summary, arrays


def main() -> None:
    out, roots = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
    out.mkdir(parents=True, exist_ok=True)
    install_torchvision_stand_in()
    import numpy as np

    for i, root in enumerate(roots):
        try:
            summary, arrays = read(root)
        except Exception as exc:  # a folder LeRobot does not open: the test says what it expected
            summary, arrays = {"error": f"{type(exc).__name__}: {exc}"}, {}
        (out / f"{i}.json").write_text(json.dumps(summary, default=str))
        np.savez(out / f"{i}.npz", **arrays)
    (out / "torchvision.json").write_text(json.dumps(CALLS))


def read_with_lerobot(roots: list[Path], out: Path) -> tuple[list[tuple[dict[str, Any], Any]], list[str]]:
    """(summary, arrays) per root as LeRobot read it, and the calls made to the torchvision stand-in."""
    import numpy as np

    env = {**os.environ, "HF_HOME": str(out / "hf"), "HF_HUB_OFFLINE": "1"}  # no cache in ~, no network
    result = subprocess.run(
        [sys.executable, __file__, str(out), *map(str, roots)], capture_output=True, text=True, env=env,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    read = [
        (json.loads((out / f"{i}.json").read_text()), np.load(out / f"{i}.npz")) for i in range(len(roots))
    ]
    return read, json.loads((out / "torchvision.json").read_text())


if __name__ == "__main__":
    main()
