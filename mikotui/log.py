"""The project's log: one key=value line (msmtp-style) per event, to stderr
and to <spool>/mikotui.log (`LogFile`: its appends and rotation).

Standard library only, and light: every headless command logs, and the
enqueue path the PBX waits on must not pay for the mail machinery to do it.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import re
import sys
import time
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mikotui.config import Settings

LOG = "mikotui.log"
LOG_MAX = 5 * 1024 * 1024  # bytes; then mikotui.log -> mikotui.log.1
LOG_KEEP = 3  # rotated files kept (.1 newest)


class Sink(Protocol):
    """Where `record` writes besides stderr: a `Spool`, or a `LogFile`."""

    root: object

    def log(self, line: str) -> None: ...

# A value is one line whatever it holds: a caller's name or a server's reply
# must not start a forged line of its own.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def record(spool: Sink | None, **fields: object) -> str:
    """One line of `fields` to stderr and the spool's log; returns it.
    Callers pass no secrets; values are made one line and quoted when needed."""
    parts = [f"time={_stamp(int(time.time()))}"]
    for key, value in fields.items():
        if value is None or value == "":
            value = "-"
        text = str(value)
        text = (text if text.isprintable() else _CONTROL.sub(" ", text)).strip()
        if not text or any(c in text for c in ' "=\\'):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        parts.append(f"{key}={text}")
    line = " ".join(parts)
    print(f"mikotui: {line}", file=sys.stderr, flush=True)
    if spool is not None:
        try:
            spool.log(line)
        except OSError as exc:
            print(f"mikotui: cannot write {spool.root}/mikotui.log: {exc.strerror}",
                  file=sys.stderr)
    return line


@functools.lru_cache(maxsize=4)
def _stamp(second: int) -> str:
    # A drain logs a thousand lines a second: one strftime per second.
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(second))


def warn_exposed_password(settings: Settings, spool: Sink | None) -> None:
    """msmtp refuses a config whose secret others can read; refusing here
    would lose the notification, so every run says it in the log instead."""
    from mikotui import config

    if settings.smtp.password and config._readable_by_others(settings.path):
        record(spool, event="warning", config=settings.path,
               problem=f"holds the SMTP password and others can read it "
                       f"(chmod 600 {settings.path})")


class LogFile:
    """<root>/mikotui.log: O_APPEND and one write per line, so lines of
    several processes never interleave; a full file is rotated first."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._fd = -1

    def log(self, line: str, max_bytes: int = LOG_MAX, keep: int = LOG_KEEP) -> None:
        data = (line.rstrip("\n") + "\n").encode("utf-8", "replace")
        fd = self._current()
        size = os.fstat(fd).st_size
        if size and size + len(data) > max_bytes:
            fd = self._rotate(len(data), max_bytes, keep)
        os.write(fd, data)

    def _current(self) -> int:
        """Our descriptor of the file named mikotui.log now: another process
        may have rotated the one we opened away since."""
        path = f"{self.root}/{LOG}"
        if self._fd >= 0:
            try:
                if os.stat(path).st_ino == os.fstat(self._fd).st_ino:
                    return self._fd
            except FileNotFoundError:
                pass
            os.close(self._fd)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        return self._fd

    def _rotate(self, needed: int, max_bytes: int, keep: int) -> int:
        """mikotui.log -> .1 -> .2 ... -> .`keep` (the oldest dropped), under
        a lock so that writers finding the file full at once rotate it once.
        Renaming leaves open files alone: a line another process writes to
        its old descriptor meanwhile lands whole in .1, and each writer moves
        to the new file at its next line. Only a file `keep` rotations old
        is ever deleted."""
        base = f"{self.root}/{LOG}"
        lock = os.open(base + ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            fd = self._current()  # the new file, if another process rotated
            size = os.fstat(fd).st_size
            if size == 0 or size + needed <= max_bytes:
                return fd
            for n in range(keep - 1, 0, -1):
                with contextlib.suppress(FileNotFoundError):
                    os.rename(f"{base}.{n}", f"{base}.{n + 1}")
            os.rename(base, f"{base}.1")
            return self._current()
        finally:
            os.close(lock)  # drops the flock
