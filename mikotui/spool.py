"""The durable local queue, after DMA's and Postfix's designs.

    <spool>/            0700
      tmp/              entries being written (never read by a deliverer)
      queue/<id>/       waiting: message.eml (or raw.eml) + meta.json
      active/<id>@<owner>/   claimed by one live process
      failed/<id>/      given up; meta.json says why
      purged/<id>/      put aside by an operator: restorable for PURGE_KEEP, then deleted
      owners/<owner>    one lock file per live process that claims entries
      mikotui.log       one key=value line per delivery attempt; past 5 MB it
                        becomes mikotui.log.1 (.2, .3 older; mikotui.log.lock guards that)

An entry is a directory, so it appears in `queue/` whole or not at all: it
is written and fsynced in `tmp/`, renamed in, and the parent is fsynced
before anyone is told "queued". A claim is a rename `queue/X` ->
`active/X@owner`; the loser of a race gets ENOENT. The owner holds an
exclusive `flock` on `owners/<owner>` for its lifetime, so an `active/` entry
whose owner's lock can be taken belongs to a dead process and goes back to
`queue/` — never one a live deliverer is still sending.

Standard library only: this is the enqueue path the PBX waits on.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import re
import stat
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Self

from mikotui.durable import (
    TRASH,
    fsync_dir,
    new_id,
    open_private,
    private_fd,
    publish,
    remove_folder,
    trash_path,
    write_chunks,
    write_file,
)
from mikotui.log import LOG_KEEP, LOG_MAX, LogFile

if TYPE_CHECKING:
    import random
    from collections.abc import Iterable

DIRS = ("tmp", "queue", "active", "failed", "owners", "purged")
MESSAGE = "message.eml"
RAW = "raw.eml"
META = "meta.json"
# Files a voicemail is made from while it is readied (its recording decoded,
# then converted), deleted once its message.eml is written.
SCRATCH = "part-"
DELIVERER = "deliverer.pid"  # see Spool.deliverer_lock

FIRST_RETRY = 60.0  # seconds
MAX_RETRY = 3600.0
JITTER = 0.2  # +-20 %, so retries after an outage don't all land at once
PURGE_KEEP = 7 * 86400.0  # how long a purged entry can still be restored
# Across a reboot only the wall clock says how long an entry waited, and a
# clock jump looks the same as a long gap: no gap counts for more than this.
MAX_GAP = 2 * MAX_RETRY
# Names we give entries and owners; anything else in the spool is not ours.
_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,127}")
_TOKEN = re.compile(r"[0-9]+-[0-9a-f]{8}")


@dataclass(frozen=True)
class Meta:
    """What the spool knows about one entry, kept beside it as JSON."""

    id: str
    kind: str  # missed | voicemail | system | alert
    created: float
    recipients: tuple[str, ...] = ()
    owed: tuple[str, ...] = ()  # recipients that have not accepted it yet
    subject: str = ""
    size: int = 0  # of the message (or raw input) file, to spot a torn entry
    stage: str = "ready"  # "raw": an Asterisk message not parsed yet
    attempts: int = 0
    next_attempt: float = 0.0
    last_error: str = ""
    last_code: int | None = None
    failed_reason: str = ""
    refused: dict[str, str] = field(default_factory=dict)  # address -> "550 text"
    event: dict[str, Any] = field(default_factory=dict)  # what a raw entry needs to be parsed
    purged: float = 0.0  # when an operator purged it (0: not purged)
    # The age that gives up on an entry is the time it spent being retried,
    # summed attempt to attempt on the boot clock where it can be (a clock
    # jump moves neither), so a jump never fails an entry nobody tried.
    waited: float = 0.0  # seconds between its first attempt and its last
    tried_at: float = 0.0  # wall clock of the last attempt
    tried_boot: str = ""  # the boot that attempt was made in ...
    tried_mono: float = 0.0  # ... and its CLOCK_BOOTTIME
    alerted: float = 0.0  # when the administrator's alert about it was queued (once, ever)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), ensure_ascii=False, indent=1).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> Meta:
        """Refuses (DamagedEntry, saying which field) anything we would not
        have written: one such file must not stop the entries after it."""
        raw = _json_object(data)
        for key in ("id", "kind", "created"):
            if key not in raw:
                raise DamagedEntry(f'meta.json has no "{key}"')
        return cls(**_checked(raw, strict=True))

    @classmethod
    def salvage(cls, data: bytes, entry_id: str, now: float) -> Meta:
        """What can still be read of a damaged meta.json (the rest defaults),
        for a person to look at and perhaps retry."""
        try:
            raw = _json_object(data)
        except DamagedEntry:
            raw = {}
        fields = {"kind": "unknown", "created": now, **_checked(raw, strict=False)}
        return cls(**{**fields, "id": entry_id})


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise DamagedEntry(f"meta.json is not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise DamagedEntry("meta.json is not a JSON object")
    return raw


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_count(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _is_texts(v: object) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


# Each field of meta.json: the test its value must pass, and what it should be.
_FIELDS: dict[str, tuple[Any, str]] = {
    "id": (lambda v: isinstance(v, str) and bool(_ID.fullmatch(v)), "an entry id"),
    "kind": (lambda v: isinstance(v, str), "text"),
    "stage": (lambda v: v in ("ready", "raw", "event"), '"ready", "raw" or "event"'),
    "recipients": (_is_texts, "a list of addresses"),
    "owed": (_is_texts, "a list of addresses"),
    "refused": (lambda v: isinstance(v, dict) and all(
        isinstance(x, str) for x in (*v, *v.values())), "addresses and replies"),
    "event": (lambda v: isinstance(v, dict), "an object"),
    "size": (_is_count, "a whole number"),
    "attempts": (_is_count, "a whole number"),
    "last_code": (lambda v: v is None or _is_count(v), "a reply code"),
    **{k: (lambda v: isinstance(v, str), "text")
       for k in ("subject", "last_error", "failed_reason", "tried_boot")},
    **{k: (_is_number, "a number")
       for k in ("created", "next_attempt", "purged", "waited", "tried_at", "tried_mono",
                 "alerted")},
}


def _checked(raw: dict[str, Any], *, strict: bool) -> dict[str, Any]:
    """The known fields of `raw` that hold what they should (lists made
    tuples); strict: the first one that does not raises DamagedEntry."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _FIELDS:
            continue  # a field of another version: ignored, as before
        test, what = _FIELDS[key]
        if not test(value):
            if strict:
                shown = json.dumps(value, ensure_ascii=False)
                shown = shown if len(shown) <= 40 else shown[:37] + "..."
                raise DamagedEntry(f'meta.json "{key}" is {shown}, not {what}')
            continue
        out[key] = tuple(value) if isinstance(value, list) else value
    return out


@dataclass(frozen=True)
class Entry:
    """One entry where it lies now."""

    meta: Meta
    path: Path  # its directory

    @property
    def id(self) -> str:
        return self.meta.id

    @property
    def state(self) -> str:
        return self.path.parent.name  # queue | active | failed | purged

    def message_path(self) -> Path:
        return self.path / (RAW if self.meta.stage == "raw" else MESSAGE)

    def read_message(self) -> bytes:
        return _read_file(self.message_path())

    def open_message(self) -> BinaryIO:
        """The message file to read in pieces (a long voicemail's is tens of MB)."""
        return open_private(self.message_path())

    def scratch(self, name: str) -> Path:
        """A file of this entry's own to work in (see SCRATCH)."""
        return self.path / f"{SCRATCH}{name}"


class SpoolError(Exception):
    """An entry that is not there (any more), or a spool we cannot use."""

    exit_code = os.EX_CANTCREAT  # what a command exits with when nobody handled it


class DamagedEntry(ValueError):
    """An entry we did not write as it is (a hand, a broken disk, another
    program): said once and put in failed/, never a reason to stop."""


def retry_delay(attempts: int, rng: random.Random | None = None) -> float:
    """~1 min after the first failure, doubling, capped at 1 h, with jitter."""
    base = min(FIRST_RETRY * 2 ** max(attempts - 1, 0), MAX_RETRY)
    # os.urandom, not the random module: the enqueue path stays light.
    unit = rng.random() if rng else int.from_bytes(os.urandom(4), "big") / 2**32
    return min(base * (1 + JITTER * (2 * unit - 1)), MAX_RETRY)


class Owner:
    """A live process that may hold claimed entries: an flock held until it
    exits (the kernel drops it on kill -9, which is what makes recovery safe)."""

    def __init__(self, spool: Spool) -> None:
        self.token = f"{os.getpid()}-{os.urandom(4).hex()}"
        self.path = spool.root / "owners" / self.token
        # Locked before it appears under its name, so no one ever sees it
        # unlocked and takes its owner for dead.
        hidden = self.path.with_name(f".{self.token}")
        self._fd = os.open(hidden, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        os.rename(hidden, self.path)

    def close(self) -> None:
        if self._fd >= 0:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Spool:
    def __init__(self, root: Path, max_age_hours: float = 120) -> None:
        self.root = Path(root)
        self._root = str(self.root)  # for the paths a drain makes per entry
        self._log_file: LogFile | None = None
        self.max_age = max_age_hours * 3600
        # Entries found damaged while reading, path -> why: a deliverer puts
        # them in failed/ (`quarantine`); a reader only says so, once.
        self.damaged: dict[Path, str] = {}

    # --- setup ---------------------------------------------------------------

    def ensure(self) -> Spool:
        """Create the folders (0700), or check that those there are ours
        alone; cheap when they exist."""
        try:
            if not self.root.is_dir():
                self.root.parent.mkdir(parents=True, exist_ok=True)
                self.root.mkdir(mode=0o700, exist_ok=True)
            self._refuse_if_not_private(self.root, link_ok=True)
            for name in DIRS:
                (self.root / name).mkdir(mode=0o700, exist_ok=True)
                self._refuse_if_not_private(self.root / name)
        except (FileExistsError, NotADirectoryError) as exc:
            # mkdir's "File exists" would say nothing useful here.
            raise SpoolError(f"cannot use the spool {self.root}: {exc.filename} is a file, "
                             "not a folder") from None
        except OSError as exc:
            raise SpoolError(f"cannot use the spool {self.root}: {exc.strerror}") from None
        return self

    def _refuse_if_not_private(self, path: Path, *, link_ok: bool = False) -> None:
        """As OpenSSH and msmtp do: a folder another user owns or can write
        to is theirs to fill (a message.eml linked to a root-only file, an
        entry sent to them), so it is refused with the fix. The spool
        itself may be a link, if we (or root) made it."""
        st = os.lstat(path)
        me = os.geteuid()
        if stat.S_ISLNK(st.st_mode):
            if not link_ok:
                raise SpoolError(f"refusing the spool {self.root}: {path} is a link, and "
                                 f"nothing in the spool may be one (remove it: rm {path})")
            if st.st_uid not in (me, 0):
                raise SpoolError(f"refusing the spool {self.root}: it is a link that "
                                 f"{_user(st.st_uid)} made and can point anywhere (remove it: "
                                 f"rm {path}; then run mikotui again)")
            st = os.stat(path)
        if st.st_uid != me:
            raise SpoolError(f"refusing the spool {self.root}: {path} belongs to "
                             f"{_user(st.st_uid)}, not to {_user(me)} who runs mikotui (run "
                             f"it as {_user(st.st_uid)}, or: chown -R {_user(me)} {self.root})")
        if st.st_mode & 0o022:
            raise SpoolError(f"refusing the spool {self.root}: others can write to {path} "
                             f"(mode {stat.S_IMODE(st.st_mode):o}; fix: chmod 700 {path})")

    def owner(self) -> Owner:
        return Owner(self)

    @contextlib.contextmanager
    def deliverer_lock(self) -> Iterator[None]:
        """Held by `deliver --watch` for its lifetime: an flock on
        `deliverer.pid` (the kernel drops it when the process dies) with its
        pid in it, so the outbox can say whether anything will send a retry."""
        fd = os.open(self.root / DELIVERER, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # another watcher holds it: one is running
                yield
                return
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)

    def deliverer(self) -> int | None:
        """The pid of a running `deliver --watch`, or None when none runs."""
        try:
            fd = os.open(self.root / DELIVERER, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.read(fd, 32).decode("ascii", "replace").strip()
                return int(text) if text.isdigit() else 0
            return None
        finally:
            os.close(fd)

    # --- enqueue -------------------------------------------------------------

    def enqueue(self, meta: Meta, data: bytes | Iterable[bytes], *,
                owner: Owner | None = None) -> Entry:
        """Write durably, then rename into `queue/` — or straight into
        `active/` as `owner`'s claim, when the caller will deliver it now.
        `data`: the message, whole or in pieces as they are read or made
        (a voicemail from stdin is never held whole). Returns only when the
        entry survives a crash. When it raises, what was written is left in
        `unfinished(meta)` for the caller to take (a voicemail's rescue
        file), then `discard_unfinished`."""
        tmp = self.root / "tmp" / meta.id
        os.mkdir(tmp, 0o700)
        name = MESSAGE if meta.stage == "ready" else RAW
        meta = replace(meta, size=_write_new(tmp / name, data))
        write_file(tmp / META, meta.to_json())
        dest = self._place(meta.id, owner)
        # If the rename can't be made durable, the folder goes back to tmp/:
        # out of sight, where the caller still finds what it wrote (`unfinished`).
        publish(str(tmp), str(dest), str(tmp))
        return Entry(meta, dest)

    def unfinished(self, meta: Meta) -> Path:
        """Where `enqueue` writes `meta`'s message before it is stored."""
        return self.root / "tmp" / meta.id / (MESSAGE if meta.stage == "ready" else RAW)

    def discard_unfinished(self, entry_id: str) -> None:
        """An entry `enqueue` could not store, once its caller has kept what
        it holds some other way: left in tmp/, it would be salvaged and sent."""
        path = self.root / "tmp" / entry_id
        if _ID.fullmatch(entry_id) and path.is_dir() and not path.is_symlink():
            self._delete(path)

    def _place(self, entry_id: str, owner: Owner | None) -> Path:
        if owner is None:
            return self.root / "queue" / entry_id
        return self.root / "active" / f"{entry_id}@{owner.token}"

    # --- claim and settle ----------------------------------------------------

    def due(self, now: float | None = None) -> list[str]:
        """Ids in `queue/` whose next attempt has come, oldest first. Sets
        `wakeup`: the earliest next attempt of the rest (None: nothing waits)."""
        now = time.time() if now is None else now
        clock = _boot_clock()
        out = []
        later = []
        for entry in self.entries("queue"):
            if _is_due(entry.meta, now, clock):
                out.append(entry.id)
            else:
                later.append(entry.meta.next_attempt)
        self.wakeup = min(later) if later else None
        return out

    wakeup: float | None = None

    def queue_stamp(self) -> tuple[int, int]:
        """Changes whenever an entry enters or leaves `queue/` (each entry is
        a folder, so the link count moves too, whatever the clock's grain)."""
        st = os.stat(self.root / "queue")
        return st.st_mtime_ns, st.st_nlink

    def claim(self, entry_id: str, owner: Owner) -> Entry | None:
        """Take `queue/<id>` for `owner`; None when someone else was faster."""
        # Strings, not Paths, on this path: a drain claims every entry.
        dest = f"{self._root}/active/{entry_id}@{owner.token}"
        try:
            os.rename(f"{self._root}/queue/{entry_id}", dest)
        except FileNotFoundError:
            return None
        try:
            return _read_entry(Path(dest))
        except DamagedEntry as exc:
            self.damaged[dest] = str(exc)  # ours now: the caller quarantines it
            return None

    def done(self, entry: Entry, *, sync: bool = True, remove: bool = True) -> str:
        """Delivered to everyone: out of the spool. With sync=False the
        caller calls `sync` later (a removal lost in a crash only means a
        resend); with remove=False it deletes the returned trash folder itself
        (`remove_trash`), e.g. off the sending path."""
        # Out of active/ in one rename first: a crash halfway through the
        # deletion must not leave a half-entry that recovery would queue.
        trash = self._trash(entry.id)
        os.rename(entry.path, trash)
        if remove:
            remove_folder(trash)
        if sync:
            fsync_dir(entry.path.parent)
        return trash

    @staticmethod
    def remove_trash(trash: str) -> None:
        remove_folder(trash)

    def sync(self, state: str) -> None:
        fsync_dir(self.root / state)

    def update(self, entry: Entry, meta: Meta) -> Entry:
        """Replace the metadata of an entry this process holds."""
        write_file(entry.path / (META + ".tmp"), meta.to_json())
        os.replace(entry.path / (META + ".tmp"), entry.path / META)
        fsync_dir(entry.path)
        return Entry(meta, entry.path)

    def replace_message(self, entry: Entry, meta: Meta,
                        data: bytes | Iterable[bytes]) -> Entry:
        """A raw entry becomes a ready one: the message (whole, or in pieces
        as they are made), then the metadata that points at it, each renamed
        in whole; its scratch files go."""
        size = write_file(entry.path / (MESSAGE + ".tmp"), data)
        os.replace(entry.path / (MESSAGE + ".tmp"), entry.path / MESSAGE)
        entry = self.update(entry, replace(meta, size=size, stage="ready"))
        (entry.path / RAW).unlink(missing_ok=True)
        self.clear_scratch(entry)
        return entry

    @staticmethod
    def clear_scratch(entry: Entry) -> None:
        for name in os.listdir(entry.path):
            if name.startswith(SCRATCH):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path / name)

    def release(self, entry: Entry) -> Entry:
        """Back to `queue/` untouched (e.g. --queue-only after parsing)."""
        dest = self.root / "queue" / entry.id
        os.rename(entry.path, dest)
        fsync_dir(dest.parent)
        return Entry(entry.meta, dest)

    def defer(self, entry: Entry, *, error: str, code: int | None = None,
              owed: tuple[str, ...] | None = None, now: float | None = None,
              keep: bool = False) -> Entry:
        """A temporary failure: try again later, or give up when too old —
        unless `keep`: waiting on the admin (an OAuth2 sign-in to renew) is no
        reason to lose the mail."""
        now = time.time() if now is None else now
        attempts = entry.meta.attempts + 1
        boot, mono = _boot_clock()
        meta = replace(entry.meta, attempts=attempts, last_error=error, last_code=code,
                       owed=entry.meta.owed if owed is None else owed,
                       next_attempt=now + retry_delay(attempts),
                       waited=entry.meta.waited + _since_last_try(entry.meta, now, (boot, mono)),
                       tried_at=now, tried_boot=boot, tried_mono=mono)
        if meta.waited >= self.max_age and not keep:
            hours = self.max_age / 3600
            return self.fail(entry, f"undelivered after {hours:g} h: {error}", meta=meta)
        entry = self.update(entry, meta)
        return self.release(entry)

    def mark_alerted(self, entry: Entry, when: float) -> None:
        """Note on a failed entry that its alert is queued. An operator may
        have moved it meanwhile (`queue retry`): then it is simply not noted."""
        meta = replace(entry.meta, alerted=when)
        with contextlib.suppress(FileNotFoundError):
            self.update(entry, meta)

    def fail(self, entry: Entry, reason: str, *, meta: Meta | None = None) -> Entry:
        meta = replace(meta or entry.meta, failed_reason=reason)
        entry = self.update(entry, meta)
        dest = self.root / "failed" / entry.id
        os.rename(entry.path, dest)
        fsync_dir(dest.parent)
        return Entry(meta, dest)

    # --- recovery ------------------------------------------------------------

    def recover(self) -> list[str]:
        """Move `active/` entries of dead owners back to `queue/`."""
        moved = []
        dead: dict[str, bool] = {}
        for path in _listdir(self.root / "active"):
            entry_id, _, token = path.name.partition("@")
            if not (_ID.fullmatch(entry_id) and _TOKEN.fullmatch(token)):
                # Not a claim of ours (a folder named "x@.." would have us
                # open the spool itself as an owner's lock).
                self._note_damaged(path, "not an entry name in active/")
                continue
            if token not in dead:
                dead[token] = self._owner_dead(token)
            if not dead[token]:
                continue
            try:
                os.rename(path, self.root / "queue" / entry_id)
                moved.append(entry_id)
            except FileNotFoundError:
                pass  # another process recovered it first
        if moved:
            fsync_dir(self.root / "queue")
        for token, is_dead in dead.items():
            if is_dead:
                (self.root / "owners" / token).unlink(missing_ok=True)
        # Owners killed before they claimed anything left only their file.
        # (A dot-name is one being set up: never touched.)
        for path in _listdir(self.root / "owners"):
            if not path.name.startswith(".") and path.name not in dead \
                    and self._owner_dead(path.name):
                path.unlink(missing_ok=True)
        return moved

    def _owner_dead(self, token: str) -> bool:
        try:
            fd = os.open(self.root / "owners" / token, os.O_RDWR | os.O_NOFOLLOW)
        except FileNotFoundError:
            return True  # an owner removes its file only after letting go
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        finally:
            os.close(fd)
        return True

    # --- reading -------------------------------------------------------------

    def entries(self, state: str = "queue") -> Iterator[Entry]:
        """The readable entries of `state`. A damaged one is noted in
        `damaged` (and said once), never a reason to stop."""
        for path in sorted(_listdir(self.root / state)):
            try:
                entry = _read_entry(path)
            except FileNotFoundError:
                continue  # claimed or settled while we looked
            except DamagedEntry as exc:
                # Never written by us (we rename whole entries in); someone's
                # hand or a broken disk.
                self._note_damaged(path, str(exc))
                continue
            yield entry

    def _note_damaged(self, path: Path, reason: str) -> None:
        if path not in self.damaged:
            print(f"mikotui: damaged spool entry {path}: {reason}", file=sys.stderr)
        self.damaged[path] = reason

    def quarantine(self, path: Path, reason: str, now: float | None = None) -> Entry | None:
        """A damaged entry into failed/, its meta.json rewritten from what
        can be read of it (the original kept beside as meta.json.damaged)
        with the reason; None when it is gone already (another deliverer)."""
        self.damaged.pop(path, None)
        now = time.time() if now is None else now
        name = path.name.partition("@")[0]
        if not _ID.fullmatch(name) or (self.root / "failed" / name).exists():
            name = new_id(now)
        tmp = self.root / "tmp" / name
        try:
            if path.is_symlink() or not path.is_dir():
                os.mkdir(tmp, 0o700)  # a stray file or link: kept inside an entry of its own
                os.rename(path, tmp / "damaged")
            else:
                os.rename(path, tmp)
        except FileNotFoundError:
            return None
        meta = _repair(tmp, name, now, failed_reason=f"damaged: {reason}")
        dest = self.root / "failed" / name
        os.rename(tmp, dest)
        fsync_dir(dest.parent)
        fsync_dir(path.parent)
        return Entry(meta, dest)

    def find(self, entry_id: str) -> Entry | None:
        for state in ("queue", "failed", "active"):
            for path in _listdir(self.root / state):
                if path.name.partition("@")[0] == entry_id:
                    try:
                        return _read_entry(path)
                    except (FileNotFoundError, DamagedEntry):
                        return None
        return None

    # --- operator actions ----------------------------------------------------

    def retry(self, entry_id: str, owner: Owner) -> Entry:
        """Due now: from `failed/` (owed recipients restored) or `queue/`."""
        src = self.root / "failed" / entry_id
        if not src.exists():
            entry = self.claim(entry_id, owner)
            if entry is None:
                dest = self._place(entry_id, owner)
                if dest in self.damaged:
                    self.quarantine(dest, reason := self.damaged[dest])
                    raise SpoolError(f"{entry_id} is damaged ({reason}): put in failed/")
                raise SpoolError(f"no queued or failed entry {entry_id}")
            entry = self.update(entry, replace(entry.meta, next_attempt=0.0))
            return self.release(entry)
        entry = self._requeue(src, owner)
        if entry is None:
            raise SpoolError(f"no queued or failed entry {entry_id}")
        return entry

    def _requeue(self, src: Path, owner: Owner) -> Entry | None:
        """A failed or purged entry back in `queue/`, due now, owed to whoever
        has not accepted it, with a fresh maximum age; None when `src` is gone."""
        dest = self._place(src.name, owner)
        try:
            os.rename(src, dest)  # claimed first: a crash leaves it to recovery
        except FileNotFoundError:
            return None
        try:
            meta = _read_entry(dest).meta
        except DamagedEntry as exc:
            self.quarantine(dest, str(exc))
            raise SpoolError(f"{src.name} is damaged ({exc}): left in failed/") from None
        # Those who refused it for good are owed it again; those who took it are not.
        owed = tuple(dict.fromkeys((*meta.owed, *meta.refused))) or meta.recipients
        # Its last error stays (the reason it was given up on, if it was), so
        # the outbox still says what went wrong until the next try.
        meta = replace(meta, next_attempt=0.0, failed_reason="", owed=owed, refused={},
                       purged=0.0, created=time.time(),
                       last_error=meta.failed_reason or meta.last_error)
        return self.release(self.update(Entry(meta, dest), meta))

    def purge(self, entry_id: str, now: float | None = None) -> Entry:
        """Put a queued or failed entry (not one being delivered) aside in
        `purged/`, where `restore` finds it for PURGE_KEEP."""
        purged = self.root / "purged"
        purged.mkdir(mode=0o700, exist_ok=True)  # a spool made before purged/ existed
        dest = purged / entry_id
        if dest.exists():  # purged, restored and purged again: keep the newest
            self._delete(dest)
        for state in ("queue", "failed"):
            src = self.root / state / entry_id
            try:
                os.rename(src, dest)  # atomic against a deliverer's claim
            except FileNotFoundError:
                continue
            stamp = time.time() if now is None else now
            try:
                entry = _read_entry(dest)
            except DamagedEntry:  # purged all the same, with what can be read of it
                entry = Entry(_repair(dest, entry_id, stamp, purged=stamp), dest)
            else:
                entry = self.update(entry, replace(entry.meta, purged=stamp))
            fsync_dir(purged)
            fsync_dir(src.parent)
            return entry
        raise SpoolError(f"no queued or failed entry {entry_id}")

    def restore(self, entry_id: str, owner: Owner) -> Entry:
        """Undo `purge`: back in `queue/`, due now."""
        entry = self._requeue(self.root / "purged" / entry_id, owner)
        if entry is None:
            raise SpoolError(f"no purged entry {entry_id} (purged entries are kept "
                             f"{PURGE_KEEP / 86400:g} days)")
        fsync_dir(self.root / "purged")
        return entry

    def clean_purged(self, older_than: float = PURGE_KEEP, now: float | None = None) -> None:
        """Delete purged entries past the time they could be restored."""
        limit = (time.time() if now is None else now) - older_than
        for path in _listdir(self.root / "purged"):
            try:
                stamp = _read_meta(path).purged
            except (FileNotFoundError, NotADirectoryError):
                continue
            except (ValueError, TypeError):
                stamp = 0.0
            with contextlib.suppress(FileNotFoundError):  # restored meanwhile
                if (stamp or path.stat().st_ctime) < limit:  # ctime: a purge cut short
                    self._delete(path)

    def _delete(self, path: Path) -> None:
        """Out of its folder in one rename, then deleted (see `done`)."""
        trash = self._trash(path.name)
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            return
        remove_folder(trash)

    def _trash(self, entry_id: str) -> str:
        return trash_path(self._root, entry_id)

    def clean_tmp(self, older_than: float = 3600) -> list[Entry]:
        """Deletions cut short are finished, purged entries too old to
        restore deleted. An entry whose writer died before renaming it in
        (old ones only: a young one may still be written) is never thrown
        away: Asterisk deleted its copy of a voicemail long ago. It goes to
        queue/ (`_salvage`); returns those, for the caller to log."""
        self.clean_purged()
        limit = time.time() - older_than
        salvaged = []
        for path in _listdir(self.root / "tmp"):
            try:
                if path.name.startswith(TRASH):
                    remove_folder(path)
                elif path.lstat().st_mtime < limit and (entry := self._salvage(path)):
                    salvaged.append(entry)
            except FileNotFoundError:
                pass
        return salvaged

    def _salvage(self, path: Path) -> Entry | None:
        """A folder of tmp/ left by a writer that died: with its metadata,
        the entry as it was; a voicemail's raw.eml without it, a raw entry
        (parsed by the deliverer like any other); a message.eml without it,
        addressed as its To/Cc say. Anything else is deleted."""
        if path.is_symlink() or not path.is_dir() or not _ID.fullmatch(path.name):
            remove_folder(path)
            return None
        try:
            meta: Meta | None = _read_entry(path).meta
        except DamagedEntry:
            meta = None
        if meta is None:
            meta = self._guess_meta(path)
            if meta is None:
                remove_folder(path)
                return None
            write_file(path / META, meta.to_json())
            fsync_dir(path)
        state = "failed" if meta.failed_reason else "queue"  # a quarantine cut short
        dest = self.root / state / path.name
        os.rename(path, dest)
        fsync_dir(dest.parent)
        return Entry(meta, dest)

    @staticmethod
    def _guess_meta(path: Path) -> Meta | None:
        import email.utils

        created = path.lstat().st_mtime
        try:
            raw = os.lstat(path / RAW)
        except FileNotFoundError:
            raw = None
        if raw is not None and stat.S_ISREG(raw.st_mode) and raw.st_size:
            return Meta(id=path.name, kind="voicemail", created=created, stage="raw",
                        size=raw.st_size, event={"recovered": "tmp"})
        try:
            data = _read_file(path / MESSAGE)
        except OSError:
            return None
        from email.parser import BytesHeaderParser

        headers = BytesHeaderParser().parsebytes(data)
        to = tuple(dict.fromkeys(a for _, a in email.utils.getaddresses(
            [str(v) for v in (headers.get_all("To") or []) + (headers.get_all("Cc") or [])])
            if "@" in a))
        if not to:
            return None
        kind = "alert" if str(headers.get("Subject", "")).startswith("PBX alert") else "missed"
        return Meta(id=path.name, kind=kind, created=created, recipients=to, owed=to,
                    subject=str(headers.get("Subject", "")), size=len(data))

    # --- log -----------------------------------------------------------------

    log_max = LOG_MAX
    log_keep = LOG_KEEP

    def log(self, line: str) -> None:
        """Append one line to <spool>/mikotui.log (`log.LogFile`)."""
        if self._log_file is None:
            self._log_file = LogFile(self._root)
        self._log_file.log(line, self.log_max, self.log_keep)


def _user(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


# --- time --------------------------------------------------------------------

_BOOT_ID: str | None = None


def _boot_clock() -> tuple[str, float]:
    """(this boot's id, seconds since it): a clock no one sets, comparable
    between processes of the same boot. ("", 0) where there is none."""
    global _BOOT_ID
    if _BOOT_ID is None:
        try:
            with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
                _BOOT_ID = f.read().strip()
        except OSError:
            _BOOT_ID = ""
    clock = getattr(time, "CLOCK_BOOTTIME", None)
    if not _BOOT_ID or clock is None:
        return "", 0.0
    return _BOOT_ID, time.clock_gettime(clock)


def _since_last_try(meta: Meta, now: float, clock: tuple[str, float]) -> float:
    """Seconds since `meta`'s last attempt (0 if it had none): by the boot
    clock in the same boot, else by the wall clock, never below 0 nor above
    MAX_GAP (a forward jump of the clock looks like a long gap)."""
    if not meta.attempts or not meta.tried_at:
        return 0.0
    boot, mono = clock
    if boot and meta.tried_boot == boot:
        return max(0.0, mono - meta.tried_mono)
    return min(max(0.0, now - meta.tried_at), MAX_GAP)


def _is_due(meta: Meta, now: float, clock: tuple[str, float]) -> bool:
    """Its retry time has come by the wall clock, or by the boot clock (the
    wall clock set back must not park it), or it is set later than we ever
    schedule (the same, across a reboot)."""
    if meta.next_attempt <= now:
        return True
    if meta.attempts and meta.tried_at:
        boot, mono = clock
        if boot and meta.tried_boot == boot:
            return mono - meta.tried_mono >= meta.next_attempt - meta.tried_at
    return meta.next_attempt - now > MAX_RETRY * (1 + JITTER)


def seconds_to_due(meta: Meta, now: float, clock: tuple[str, float]) -> float:
    """How long `meta`'s entry still waits by `_is_due`'s rules (0: it is
    due): the sooner of its wall-clock time and its boot-clock time."""
    if _is_due(meta, now, clock):
        return 0.0
    wait = meta.next_attempt - now
    boot, mono = clock
    if meta.attempts and meta.tried_at and boot and meta.tried_boot == boot:
        wait = min(wait, meta.next_attempt - meta.tried_at - (mono - meta.tried_mono))
    return max(wait, 0.0)


# --- files -------------------------------------------------------------------

def _read_meta(path: Path) -> Meta:
    return Meta.from_json(_read_file(f"{path}/{META}"))


def _read_entry(path: Path) -> Entry:
    """The entry in folder `path` (named `<id>` or `<id>@<owner>`);
    DamagedEntry when it is not one we wrote."""
    entry_id, at, token = path.name.partition("@")
    if not _ID.fullmatch(entry_id) or (at and not _TOKEN.fullmatch(token)):
        raise DamagedEntry(f"not an entry name in {path.parent.name}/")
    if not stat.S_ISDIR(os.lstat(path).st_mode):  # one call: a drain does this per entry
        raise DamagedEntry(f"not a folder in {path.parent.name}/")
    try:
        meta = _read_meta(path)
    except FileNotFoundError:
        if path.is_dir():  # still there, so not just claimed meanwhile
            raise DamagedEntry("no meta.json") from None
        raise
    except OSError as exc:
        raise DamagedEntry(f"cannot read meta.json: {exc.strerror or exc}") from None
    if meta.id != entry_id:
        raise DamagedEntry(f'meta.json says it is "{meta.id}"')
    return Entry(meta, path)


def _repair(folder: Path, entry_id: str, now: float, **change: Any) -> Meta:
    """A new meta.json in `folder` from what can be read of the old one
    (kept beside as meta.json.damaged), with `change` applied."""
    try:
        data = _read_file(folder / META)
    except OSError:
        data = b""
    else:
        os.replace(folder / META, folder / (META + ".damaged"))
    meta = replace(Meta.salvage(data, entry_id, now), **change)
    write_file(folder / META, meta.to_json())
    fsync_dir(folder)
    return meta


def _read_file(path: Path | str) -> bytes:
    """A file inside an entry, never through a link (`private_fd`)."""
    fd = private_fd(path)
    try:
        # Plain reads, no file object: a drain reads two files per entry.
        parts = [os.read(fd, 1 << 16)]
        while parts[-1]:
            parts.append(os.read(fd, 1 << 20))
        return b"".join(parts)
    finally:
        os.close(fd)


def _write_new(path: Path, data: bytes | Iterable[bytes]) -> int:
    """A new 0600 file of `data` (whole or in pieces), fsynced; returns its size."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        size = write_chunks(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return size


def _listdir(folder: Path) -> list[Path]:
    try:
        return [folder / name for name in os.listdir(folder)]
    except FileNotFoundError:
        return []
