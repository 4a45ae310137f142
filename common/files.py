"""Atomic writes: a crash or a full disk leaves the previous file or folder or the new one, never half of one.

``atomic_write`` replaces one file. ``replace_folder`` replaces a whole folder whose files must change
together (a dataset whose readers read every file in it): the new version is built beside it and swapped in
with one rename; ``recover_folder`` clears what a crash in between left beside it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2  # linux/fs.h


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, then rename it over ``path``.

    The temporary file is in the same folder, so ``os.replace`` is a rename within one filesystem
    (atomic on POSIX and Windows); it is removed if ``write`` fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _staging_path(target: Path) -> Path:
    return target.parent / f".{target.name}.staging"  # beside it: the same filesystem, so renames work


def _aside_path(target: Path) -> Path:
    return target.parent / f".{target.name}.old"


@contextlib.contextmanager
def replace_folder(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty folder in which the caller builds the whole next version of ``target``; when the
    block ends without an exception, that folder becomes ``target`` in one atomic step and the previous
    version is deleted. On an exception ``target`` is left as it was.

    The swap is Linux's ``renameat2(RENAME_EXCHANGE)``, so ``target`` names a complete version at every
    instant. Where the OS or the filesystem lacks it, ``target`` is first renamed aside: a crash between
    the two renames leaves no ``target``, and ``recover_folder`` puts the previous version back. The
    next version is built beside ``target`` (a symlink is followed: beside the folder it points to).
    One writer at a time: the caller holds a lock.
    """
    target = Path(target).resolve()
    staged = _staging_path(target)
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    try:
        yield staged
        _sync_tree(staged)
        previous = _publish(staged, target)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    # The new version is in place: nothing after this may make the caller believe it is not (a leftover
    # previous version is deleted by ``recover_folder``; a folder that cannot be synced cannot be unswapped).
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)
    with contextlib.suppress(OSError):
        _sync_dir(target.parent)


def recover_folder(target: str | os.PathLike[str]) -> None:
    """Clear what a crash inside ``replace_folder`` left beside ``target``: a partial next version is
    deleted; a previous version renamed aside goes back if ``target`` is missing, else is deleted.
    Only the folder's writer may call this (a reader would race with a running ``replace_folder``)."""
    target = Path(target).resolve()
    aside = _aside_path(target)
    if aside.exists():
        if target.exists():
            shutil.rmtree(aside)
        else:
            os.rename(aside, target)
    shutil.rmtree(_staging_path(target), ignore_errors=True)


def _publish(staged: Path, target: Path) -> Path | None:
    """Put ``staged`` at ``target``; where the previous version is now (None: there was none)."""
    if not target.exists():
        os.rename(staged, target)
        return None
    if _exchange(staged, target):
        return staged
    aside = _aside_path(target)
    os.rename(target, aside)
    try:
        os.rename(staged, target)
    except BaseException:
        os.rename(aside, target)
        raise
    return aside


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step; False where the OS or the filesystem cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:  # not Linux (or a libc before glibc 2.28)
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # a filesystem without the flag
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_tree(root: Path) -> None:
    """fsync every file and folder under ``root``: what is published is on disk first."""
    for folder, _, names in os.walk(root):
        for name in names:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _sync_dir(Path(folder))
