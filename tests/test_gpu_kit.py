"""The GPU kit on this machine: files split to fit a 64 MiB batch and joined back, checked; and its
run (g1_tracking_warp on Warp's CPU device, a tiny config) started fresh, then continued from the
carried run folder, as a loan would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from striata.cli import app


def test_split_parts_join_back_checked(tmp_path: Path) -> None:
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    wheel.write_bytes(bytes(range(256)) * 41 + b"tail")  # 10,500 bytes
    parts = tmp_path / "parts"
    split = CliRunner().invoke(
        app, ["gpu-kit", "split", str(wheel), "--out", str(parts), "--part-mib", "0.004"]
    )
    assert split.exit_code == 0, split.output
    manifest = json.loads((parts / "manifest.json").read_text())
    assert manifest["files"][0]["parts"] == [f"{wheel.name}.part{i:03d}" for i in range(3)]  # 4,194 B each
    assert all((parts / p).stat().st_size <= 0.004 * 1024 * 1024 for p in manifest["files"][0]["parts"])
    sums = (parts / "SHA256SUMS").read_text().split()
    assert sums == [manifest["files"][0]["sha256"], wheel.name]
    there = tmp_path / "there"
    joined = CliRunner().invoke(app, ["gpu-kit", "join", str(parts), "--out", str(there)])
    assert joined.exit_code == 0, joined.output
    assert (there / wheel.name).read_bytes() == wheel.read_bytes()
    # A part that did not arrive is named; one that arrived damaged fails the check.
    (parts / f"{wheel.name}.part001").unlink()
    missing = CliRunner().invoke(app, ["gpu-kit", "join", str(parts), "--out", str(there)])
    assert missing.exit_code == 2 and "part001" in missing.stderr
    (parts / f"{wheel.name}.part001").write_bytes(b"x" * 4194)
    damaged = CliRunner().invoke(app, ["gpu-kit", "join", str(parts), "--out", str(there)])
    assert damaged.exit_code == 2 and "SHA-256" in damaged.stderr


@pytest.mark.slow
@pytest.mark.warp
def test_the_kit_trains_then_continues_a_carried_run(tmp_path: Path) -> None:
    tiny = [
        "--set", "task_config.warp.device=cpu", "--set", "ppo.device=cpu", "--set", "actors.envs_per_actor=4",
        "--set", "eval.num_envs=2", "--set", "eval.episodes=2",
    ]  # fmt: skip
    first_out = tmp_path / "loan1"
    first = CliRunner().invoke(
        app,
        ["gpu-kit", "run", "--minutes", "10", "--out", str(first_out), *tiny, "--set", "total_env_steps=200"],
    )
    assert first.exit_code == 0, first.output
    figures = json.loads((first_out / "figures.json").read_text())
    assert figures["env_steps"] == 3 * 24 * 4 and figures["env_steps_per_s_with_training"] > 0
    assert figures["last_evaluation"] is not None and figures["resumed_from"] is None
    run_dir = Path(figures["run_dir"])
    assert len(list((run_dir / "checkpoints").glob("ckpt_*.pt"))) == 1  # only the newest comes back

    second_out = tmp_path / "loan2"
    second = CliRunner().invoke(
        app,
        ["gpu-kit", "run", "--minutes", "10", "--out", str(second_out), "--resume", str(run_dir),
         "--set", "total_env_steps=400"],
    )  # fmt: skip
    assert second.exit_code == 0, second.output
    resumed = json.loads((second_out / "figures.json").read_text())
    assert resumed["env_steps"] == 5 * 24 * 4 and resumed["resumed_from"] == str(run_dir)
    assert (second_out / run_dir.name / "checkpoints" / "ckpt_480.pt").is_file()
    assert (run_dir / "checkpoints" / "ckpt_288.pt").is_file()  # the carried folder is left as it was
