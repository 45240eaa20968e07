"""Rate limits kept in the spool, so they hold across runs and restarts:
one stamp file per key under <spool>/limits/, 0600, taken under flock so two
PBX events at the same moment let one through, not both.

Standard library only: this is on the enqueue path.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import math
import os
import time
from pathlib import Path

from mikotui.durable import write_all

FOLDER = "limits"


def take(spool_root: Path, key: str, window: float, now: float | None = None) -> bool:
    """True (and the window starts now) when `key` was not let through in
    the last `window` seconds; False when it was. A stamp from the future
    (the clock was set back) or one that cannot be read does not hold
    anything back: a lost limit costs one extra mail, a stuck one costs
    every mail."""
    now = time.time() if now is None else now
    folder = spool_root / FOLDER
    folder.mkdir(mode=0o700, exist_ok=True)
    # The key (a user name, an address) never names a file: its hash does.
    path = folder / hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:40]
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        last = _stamp(os.read(fd, 64))
        if last is not None and 0 <= now - last < window:
            return False
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        write_all(fd, repr(now).encode())
        os.utime(fd, (now, now))  # the sweep below goes by the stamp's time
        os.fsync(fd)
    finally:
        os.close(fd)
    _sweep(folder, now, window)
    return True


def _stamp(raw: bytes) -> float | None:
    try:
        value = float(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    return value if math.isfinite(value) else None  # NaN or inf holds nothing back


def _sweep(folder: Path, now: float, window: float) -> None:
    """Stamps older than their window hold nothing back: drop them, so the
    folder does not grow with every user and address ever seen."""
    with contextlib.suppress(OSError):
        for name in os.listdir(folder):
            with contextlib.suppress(OSError):
                if now - os.stat(folder / name, follow_symlinks=False).st_mtime > 2 * window:
                    os.unlink(folder / name)
