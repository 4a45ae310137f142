"""`striata eval`: an exported tracking policy run from its clip's first frame, as a user runs it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from striata.cli import app

DATA = Path(__file__).parent / "data"


def test_the_standing_policy_stands_through_its_evaluation() -> None:
    result = CliRunner().invoke(
        app, ["eval", str(DATA / "g1_stand.onnx"), "--clip", "builtin:stand", "--episodes", "3", "--json"]
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["episodes"] == 3 and figures["clip_s"] == 20.0
    assert figures["reached_end"] == 1.0 and figures["episode_s"] > 19.9
    assert 0.0 < figures["body_pos_error_m"] < 0.1
    assert 0.0 < figures["joint_error_rad"] < 0.2 and 0.0 <= figures["anchor_ori_error_rad"] < 0.2


def test_an_export_without_its_clip_is_refused_with_what_to_do(tmp_path: Path) -> None:
    for name in ("g1_stand.onnx", "g1_stand.motion.npz"):
        shutil.copy(DATA / name, tmp_path / name)
    result = CliRunner().invoke(app, ["eval", str(tmp_path / "g1_stand.onnx")])
    assert result.exit_code == 2
    assert "--clip" in result.stderr and "g1_stand.motion.npz" in result.stderr
    missing = CliRunner().invoke(app, ["eval", str(tmp_path / "nothing.onnx")])
    assert missing.exit_code == 2 and "no such file" in missing.stderr
