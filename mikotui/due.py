"""When each waiting entry is due: the deliverer's in-memory index of `queue/`.

A drain reads every entry's meta.json once, at its start; after that only
the entries that came into `queue/` are read again (new ones, retries of
other deliverers, `queue retry` / `restore`, recovered claims). Linux says
which through inotify (IN_MOVED_TO, IN_CREATE), with no polling at all;
elsewhere a changed `queue/` (its mtime and link count) has the folder
listed, and only entries whose inode changed since (a rename in or a new
meta.json changes it) are read.

Entries that left `queue/` (claimed by another deliverer, purged) are not
watched for: the index may still hold them, and claiming one finds it gone
(the claim is a rename; the loser of a race gets ENOENT), which is all a
stale line costs. `prune` drops them when a count must be right.

Due times are kept on the monotonic clock, taken when the entry is read,
so a wall clock set back does not park them; a wall clock set forward makes
the entries whose wall time has come due as well.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import heapq
import os
import struct
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mikotui.spool import DamagedEntry, Meta, _boot_clock, _read_entry, seconds_to_due

if TYPE_CHECKING:
    from mikotui.spool import Spool

_IN_CREATE = 0x100
_IN_MOVED_TO = 0x80
_IN_Q_OVERFLOW = 0x4000
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then the name
_JUMP = 1.0  # seconds the wall clock may drift from the monotonic one unnoticed


class Inotify:
    """Names that came into one folder, from the kernel (Linux)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    @classmethod
    def open(cls, folder: Path) -> Inotify | None:
        """None where inotify is not available (another OS, no libc, the
        per-user limit of watches reached): the caller polls instead."""
        if not sys.platform.startswith("linux"):
            return None
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        except (OSError, AttributeError):
            return None
        if fd < 0:
            return None
        if libc.inotify_add_watch(fd, os.fsencode(folder), _IN_MOVED_TO | _IN_CREATE) < 0:
            os.close(fd)
            return None
        return cls(fd)

    def changes(self) -> set[str] | None:
        """Names that came in since the last call; None when the kernel's
        queue overflowed (then only a full look tells)."""
        names: set[str] = set()
        overflowed = False
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return None if overflowed else names
            pos = 0
            while pos < len(data):
                _, mask, _, size = _EVENT.unpack_from(data, pos)
                pos += _EVENT.size
                if mask & _IN_Q_OVERFLOW:
                    overflowed = True
                elif size:
                    names.add(os.fsdecode(data[pos:pos + size].rstrip(b"\0")))
                pos += size

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class DueIndex:
    """The due times of the entries in `queue/`, refreshed from its changes."""

    def __init__(self, spool: Spool, *, inotify: bool = True) -> None:
        self.spool = spool
        self.folder = spool.root / "queue"
        self.watch = Inotify.open(self.folder) if inotify else None
        self._times: dict[str, tuple[float, float]] = {}  # id -> (next_attempt, deadline)
        self._later: list[tuple[float, str]] = []  # (deadline, id), stale ones skipped
        self._ready: list[tuple[str, float]] = []  # due: (id, deadline), oldest id first
        self._inodes: dict[str, tuple[int, int]] = {}  # polling only: id -> (ino, ctime)
        self._stamp: tuple[int, int] | None = None
        self._offset = time.time() - time.monotonic()
        self._scanned = False

    def fileno(self) -> int | None:
        """Readable when something came into `queue/` (None: poll instead)."""
        return self.watch.fd if self.watch else None

    def close(self) -> None:
        if self.watch:
            self.watch.close()

    def __len__(self) -> int:
        return len(self._times)

    # --- keeping up with queue/ ----------------------------------------------

    def refresh(self) -> None:
        """Take in what changed in `queue/` since the last call."""
        self._follow_wall_clock()
        if not self._scanned:
            self.rescan()
        elif self.watch is not None:
            names = self.watch.changes()
            if names is None:
                self.rescan()
            else:
                for name in sorted(names):
                    self._read(name)
        else:
            stamp = self.spool.queue_stamp()
            if stamp != self._stamp:
                self._stamp = stamp
                self._relist()

    def rescan(self) -> None:
        """Every entry of `queue/` read afresh (the start of a drain, or an
        inotify queue that overflowed)."""
        if self.watch is not None:
            self.watch.changes()  # all of that is in the listing below
        self._stamp = self.spool.queue_stamp()
        self._times.clear()
        self._later.clear()
        self._ready.clear()
        self._inodes.clear()
        self._scanned = True
        for name in sorted(_names(self.folder)):
            self._read(name)

    def _relist(self) -> None:
        present = set()
        try:
            listing = list(os.scandir(self.folder))
        except FileNotFoundError:
            listing = []
        for item in listing:
            present.add(item.name)
            try:
                st = item.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if self._inodes.get(item.name) != (st.st_ino, st.st_ctime_ns):
                self._read(item.name)
        for name in [n for n in (*self._times, *self._inodes) if n not in present]:
            self._forget(name)

    def prune(self) -> None:
        """Forget the entries no longer in `queue/` (one listing)."""
        present = set(_names(self.folder))
        for name in [n for n in self._times if n not in present]:
            self._forget(name)

    def put_back(self, names: list[str]) -> None:
        """Taken but not claimed: read again (their due times as they are now)."""
        for name in names:
            self._read(name)

    def _read(self, name: str) -> None:
        if name.startswith("."):
            return
        path = self.folder / name
        try:
            if self.watch is None:
                st = os.stat(path, follow_symlinks=False)
                self._inodes[name] = (st.st_ino, st.st_ctime_ns)
            meta = _read_entry(path).meta
        except FileNotFoundError:
            self._forget(name)  # claimed or settled meanwhile
            return
        except DamagedEntry as exc:
            # Not as we write entries: noted (said once) for the deliverer to
            # put in failed/; the rest of the queue goes on.
            self._forget(name)
            self.spool._note_damaged(path, str(exc))
            return
        self._put(name, meta)

    def _put(self, name: str, meta: Meta) -> None:
        mono = time.monotonic()
        deadline = mono + seconds_to_due(meta, mono + self._offset, _boot_clock())
        self._times[name] = (meta.next_attempt, deadline)
        if deadline <= mono:
            heapq.heappush(self._ready, (name, deadline))
        else:
            heapq.heappush(self._later, (deadline, name))

    def _forget(self, name: str) -> None:
        self._times.pop(name, None)
        self._inodes.pop(name, None)

    def _follow_wall_clock(self) -> None:
        """The wall clock set forward: what its time says is due is due."""
        offset = time.time() - time.monotonic()
        if abs(offset - self._offset) <= _JUMP:
            return
        self._offset = offset
        mono = time.monotonic()
        later = []
        for name, (wall, deadline) in self._times.items():
            if deadline > mono:
                deadline = min(deadline, mono + max(0.0, wall - (mono + offset)))
                self._times[name] = (wall, deadline)
                if deadline <= mono:
                    heapq.heappush(self._ready, (name, deadline))
                else:
                    later.append((deadline, name))
        heapq.heapify(later)
        self._later = later

    # --- what is due -----------------------------------------------------------

    def take(self, count: int, *, everything: bool = False) -> list[str]:
        """Up to `count` due ids, oldest first, taken out of the index (the
        caller claims them; one that comes back is read again). everything:
        whatever its retry time (take them all, then: the rest would count as
        due from then on)."""
        mono = float("inf") if everything else time.monotonic()
        while self._later and self._later[0][0] <= mono:
            deadline, name = heapq.heappop(self._later)
            if self._times.get(name, (0.0, None))[1] == deadline:
                heapq.heappush(self._ready, (name, deadline))
        out: list[str] = []
        while self._ready and len(out) < count:
            name, deadline = heapq.heappop(self._ready)
            if self._times.get(name, (0.0, None))[1] == deadline:
                # (Its inode stays noted: polling reads it again only once
                # it came back, e.g. from a claim that a deliverer let go.)
                del self._times[name]
                out.append(name)
        return out

    def next_due(self) -> float | None:
        """Seconds until the next entry is due (0: one is), None: none waits."""
        while self._ready:
            name, deadline = self._ready[0]
            if self._times.get(name, (0.0, None))[1] == deadline:
                return 0.0
            heapq.heappop(self._ready)
        while self._later:
            deadline, name = self._later[0]
            if self._times.get(name, (0.0, None))[1] == deadline:
                return max(0.0, deadline - time.monotonic())
            heapq.heappop(self._later)
        return None

    def first_retry(self) -> float | None:
        """The wall-clock time of the earliest waiting retry (None: none)."""
        return min((wall for wall, _ in self._times.values()), default=None)


def _names(folder: Path) -> list[str]:
    try:
        return [n for n in os.listdir(folder) if not n.startswith(".")]
    except FileNotFoundError:
        return []
