"""Files that survive a crash: write, fsync, and fsync the folder that names
them. Shared by the config's atomic save, the spool and the enqueue path
(so the standard library's `os` alone: no pathlib here); and the private
files of a spool entry, opened never through a link."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

CHUNK = 1 << 18  # bytes copied at a time where a whole file is never held


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_chunks(fd: int, data: bytes | Iterable[bytes]) -> int:
    """Write `data`, whole or as it is made (a voicemail read from stdin, a
    recording's base64); returns the bytes written."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = (data,)
    size = 0
    for chunk in data:
        write_all(fd, chunk)
        size += len(chunk)
    return size


def write_file(path: Path | str, data: bytes | Iterable[bytes], mode: int = 0o600) -> int:
    """Create (or truncate) `path` with exactly `mode`, write `data` (whole
    or in pieces), fsync; returns its size."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # the umask must neither widen nor narrow it
        size = write_chunks(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return size


def private_fd(path: Path | str, mode: str = "rb") -> int:
    """The descriptor of a regular file in a folder of ours (a spool entry),
    never opened through a link (O_NOFOLLOW) nor blocking on a FIFO: a link
    or FIFO planted there must not have us read, and mail, what it points
    at. "wb"/"w+b" create it 0600 (or empty it)."""
    flags = os.O_NOFOLLOW | os.O_NONBLOCK
    if mode == "rb":
        flags |= os.O_RDONLY
    else:
        flags |= os.O_CREAT | os.O_TRUNC | (os.O_RDWR if "+" in mode else os.O_WRONLY)
    fd = os.open(path, flags, 0o600)
    try:
        # (O_NONBLOCK only kept a FIFO from blocking the open: a regular
        # file's reads and writes never heed it.)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_private(path: Path | str, mode: str = "rb") -> BinaryIO:
    """`private_fd` as a file object, to read or write in pieces."""
    fd = private_fd(path, mode)
    try:
        return os.fdopen(fd, mode)
    except BaseException:
        os.close(fd)
        raise


def fsync_dir(folder: Path | str) -> None:
    """Make a rename or a new name in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_folder(path: Path | str) -> None:
    """Delete an entry folder; another process cleaning it too is fine.
    A link is removed, never what it points at."""
    try:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            os.unlink(path)
            return
        for name in os.listdir(path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(path, name))
        os.rmdir(path)
    except FileNotFoundError:
        pass


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
