"""Files that survive a crash: write, fsync, and fsync the folder that names
them. Shared by the config's atomic save, the spool and the enqueue path
(so the standard library's `os` alone: no pathlib here)."""

from __future__ import annotations

import contextlib
import os
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_file(path: Path | str, data: bytes, mode: int = 0o600) -> None:
    """Create (or truncate) `path` with exactly `mode`, write `data`, fsync."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # the umask must neither widen nor narrow it
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: Path | str) -> None:
    """Make a rename or a new name in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


TRASH = "trash-"  # tmp/ folders being deleted


def trash_path(spool_root: str, entry_id: str) -> str:
    """Where an entry's folder goes to be deleted: out of every state in one
    rename, so a crash halfway through a deletion leaves no half-entry."""
    return f"{spool_root}/tmp/{TRASH}{entry_id}-{os.urandom(3).hex()}"


def new_id(now: float | None = None) -> str:
    """A spool entry's id: sortable by creation time, unique across processes."""
    now = time.time() if now is None else now
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    return f"{stamp}.{int(now * 1e6) % 1_000_000:06d}-{os.urandom(3).hex()}"


def publish(tmp: str, dest: str, trash: str) -> None:
    """A folder written in `tmp` becomes `dest`, and stays so through a
    crash. Returns only then: if the rename can't be made durable, the
    folder goes to `trash` (out of sight again: a caller that sends the
    event some other way would otherwise see recovery send it twice)."""
    fsync_dir(tmp)
    os.rename(tmp, dest)
    try:
        fsync_dir(os.path.dirname(dest))
    except OSError:
        with contextlib.suppress(OSError):
            os.rename(dest, trash)
        raise
