"""Folder replacement (common/files.py): the next version swapped in whole, a failed build leaving the folder
as it was, a symlinked folder replaced where it lies, and what a crash left beside it cleared. A crash at
every step of a real save: tests/test_session_crash.py."""

from __future__ import annotations

from pathlib import Path

import pytest

import striata.common.files as files
from striata.common.files import recover_folder, replace_folder


def contents(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
def test_replace_folder_swaps_in_the_next_version_or_leaves_the_folder(
    tmp_path, monkeypatch, exchange
) -> None:
    if not exchange:
        monkeypatch.setattr(files, "_exchange", lambda a, b: False)
    target = tmp_path / "data"
    with replace_folder(target) as staged:  # no folder yet: it appears whole
        (staged / "a.txt").write_text("1")
    assert contents(target) == {"a.txt": "1"}
    with replace_folder(target) as staged:
        (staged / "sub").mkdir()
        (staged / "sub" / "b.txt").write_text("2")
    assert contents(target) == {"sub/b.txt": "2"}
    with pytest.raises(RuntimeError), replace_folder(target) as staged:
        (staged / "c.txt").write_text("3")
        raise RuntimeError("the build failed")
    assert contents(target) == {"sub/b.txt": "2"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # nothing left beside it


def test_a_symlinked_folder_is_replaced_where_it_lies(tmp_path) -> None:
    real = tmp_path / "disk" / "data"
    real.mkdir(parents=True)
    (tmp_path / "link").symlink_to(real)
    with replace_folder(tmp_path / "link") as staged:
        (staged / "a.txt").write_text("1")
    assert (tmp_path / "link").is_symlink() and contents(real) == {"a.txt": "1"}


def test_recover_folder_clears_what_a_crash_left(tmp_path) -> None:
    target, staged, aside = tmp_path / "data", tmp_path / ".data.staging", tmp_path / ".data.old"
    # Between the two renames of the swap without RENAME_EXCHANGE: the previous version goes back.
    aside.mkdir()
    (aside / "a.txt").write_text("previous")
    staged.mkdir()
    (staged / "a.txt").write_text("next")
    recover_folder(target)
    assert contents(target) == {"a.txt": "previous"} and not staged.exists() and not aside.exists()
    # After the swap, before the previous version was deleted: it is deleted now.
    aside.mkdir()
    recover_folder(target)
    assert contents(target) == {"a.txt": "previous"} and not aside.exists()
