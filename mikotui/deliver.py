"""Drain the spool over reused SMTP connections.

A batch of claimed entries goes out over reused connections (a few side by
side when the batch is big, each carrying many messages). Per entry: every
owed recipient that accepts is struck off; a `5xx` for a recipient is final
for that recipient; `4xx`, connection failures and timeouts defer the entry
with backoff. An entry leaves the spool only after the server's `250`. Whatever
is given up on goes to `failed/` and the administrator gets one alert.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from mikotui import log, notify, smtp
from mikotui.config import ConfigError, Settings
from mikotui.due import DueIndex
from mikotui.spool import Entry, Owner, Spool

BATCH = 400  # entries claimed at a time
LANES = 4  # connections at once for a big batch
PER_LANE = 25  # entries that make another connection worth opening
POLL = 0.5  # seconds between looks at the config file (and queue/ without inotify)
RECOVER_EVERY = 10.0  # seconds: entries of deliverers that died meanwhile


@dataclass
class Report:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    released: int = 0  # back to queue/ untried: stopped, or the connection broke
    partial: int = 0  # of the failed: some recipients took it, the rest refused it for good
    alerts: list[str] = field(default_factory=list)  # ids of alerts queued
    setup_problem: str = ""  # a connection failure that retrying alone won't cure

    def add(self, other: Report) -> None:
        self.sent += other.sent
        self.deferred += other.deferred
        self.failed += other.failed
        self.partial += other.partial
        self.released += other.released
        self.alerts += other.alerts
        self.setup_problem = other.setup_problem or self.setup_problem


class Courier:
    """Sends claimed entries and settles each one in the spool."""

    def __init__(self, settings: Settings, spool: Spool, owner: Owner) -> None:
        self.settings = settings
        self.spool = spool
        self.owner = owner
        self.sweeper = Sweeper()
        # Stored events rendered for this batch (`notify.ready_event`), by id.
        self.rendered: dict[str, bytes] = {}
        self.use(settings)
        self.new_run()

    def new_run(self) -> None:
        """One pass over what is due. Until a dial of the run reaches the
        server, dials wait for each other; the first refused one is the
        `outage`, and the rest of the run defers without dialling again (a
        server that is down, with 20,000 queued, is dialled once). An entry
        deferred in the run is not tried again in it (`tried`)."""
        self.outage: smtp.SmtpFailure | None = None
        self.reached = False
        self.dialling = asyncio.Lock()
        self.open_lanes = 0
        self.tried: set[str] = set()
        self.failed: list[Entry] = []  # given up on in the run, not yet in an alert

    def use(self, settings: Settings) -> None:
        """Send with these settings from the next batch on."""
        self.settings = settings
        if not settings.notifications.enabled:
            log.record(self.spool, event="paused", reason="notifications.enabled = false",
                       kept=len(os.listdir(self.spool.root / "queue")))
        ep = settings.smtp.shown_endpoint()
        self.host, self.tls = f"{ep.host}:{ep.port}", ep.encryption

    def close(self) -> None:
        """Wait for the deletion of what was sent."""
        self.sweeper.close()

    async def batch(self, entries: list[Entry], stop: asyncio.Event | None = None) -> Report:
        """Send `entries` (claimed by us) and settle each. A big batch is
        split over a few connections at once: each message costs four round
        trips, and waiting on one server reply at a time is what limits a
        single connection."""
        report = Report()
        pending = [e for e in (self._ready(e, report) for e in entries) if e is not None]
        lanes = max(1, min(LANES, len(pending) // PER_LANE))
        try:
            await asyncio.gather(*(self._lane(pending[i::lanes], report, stop)
                                   for i in range(lanes)))
        finally:
            self.rendered.clear()  # what was not sent is rendered afresh next time
        self.spool.sync("active")
        self.sweeper.sweep()
        return report

    async def _lane(self, pending: list[Entry], report: Report,
                    stop: asyncio.Event | None) -> None:
        """Entries one after another over one connection."""
        if not pending:
            return
        conn = smtp.Connection(self.settings.smtp, record=False,
                               token_file=self._token_file())
        try:
            await self._dial(conn)
        except smtp.SmtpFailure as exc:
            for entry in pending:
                self._defer(entry, report, exc.kind, exc.code, _describe(exc))
            if exc.permanent:  # the settings, not the server's mood: say so
                report.setup_problem = f"{exc.kind}: {_describe(exc)}"
            if exc.kind == "token_refused":
                report.setup_problem = f"{exc.kind}: {_describe(exc)}; {exc.hint()}"
                alert = notify.token_refused(self.settings, self.spool, _describe(exc))
                if alert is not None:
                    report.alerts.append(alert.id)
            return
        if self.settings.smtp.auth == "oauth2":
            notify.token_works(self.spool)
        self.open_lanes += 1
        try:
            while pending:
                if stop is not None and stop.is_set():
                    break
                entry = pending.pop(0)
                if not await self._send(conn, entry, report):
                    break  # the connection is gone: the rest waits
        finally:
            self.open_lanes -= 1
            await conn.close()
        for entry in pending:  # stopped, or the connection broke
            self.spool.release(entry)
            report.released += 1

    def _token_file(self) -> Path | None:
        return self.settings.token_path() if self.settings.smtp.auth == "oauth2" else None

    async def _dial(self, conn: smtp.Connection) -> None:
        """Open `conn`, or raise the run's outage without dialling (see
        `new_run`). A dial refused while another lane is connected is that
        lane's bad luck (a server's connection limit), not an outage."""
        if self.reached:
            await self._open(conn)
            return
        async with self.dialling:
            if self.outage is not None:
                raise self.outage
            await self._open(conn)
            self.reached = True

    async def _open(self, conn: smtp.Connection) -> None:
        try:
            await conn.open()
        except smtp.SmtpFailure as exc:
            if not self.open_lanes:
                self.outage = exc
            raise

    def settle_damaged(self, report: Report) -> None:
        """Entries the spool found damaged go to failed/, each said once,
        and the administrator is told; the rest keeps flowing."""
        for path, reason in list(self.spool.damaged.items()):
            entry = self.spool.quarantine(path, reason)
            if entry is None:
                continue  # another deliverer put it there first
            report.failed += 1
            self._log(entry, result="failed", error="damaged", detail=reason)
            self._alert(entry, report)

    def _ready(self, entry: Entry, report: Report) -> Entry | None:
        """A raw voicemail is parsed first (its notify died before that), a
        stored event rendered (`enqueue`: the settings of now decide)."""
        if entry.meta.stage == "event":
            ready, data, error = notify.ready_event(self.settings, self.spool, entry)
            if ready is None:
                return None  # nobody to send it to now: gone, and logged
            entry = ready
            if not error:
                self.rendered[entry.id] = data
                return entry
        elif entry.meta.stage == "raw":
            entry, error = notify.ready_voicemail(self.settings, self.spool, entry)
        else:
            return entry
        if error:
            self._log(entry, result="failed", error="parse", detail=error)
            report.failed += 1
            self._alert(entry, report)
            return None
        return entry

    async def _send(self, conn: smtp.Connection, entry: Entry, report: Report) -> bool:
        """One entry; False when the connection can't carry the next one."""
        owed = entry.meta.owed
        # The bytes as stored go to the server, read a piece at a time (a
        # long voicemail's are tens of MB): no parse and re-flatten. A stored
        # event's were rendered for this batch (small: in memory).
        rendered = self.rendered.pop(entry.id, None)
        try:
            stored = io.BytesIO(rendered) if rendered else entry.open_message()
        except OSError as exc:  # a hand or a disk broke it: it must not stop the rest
            self._unreadable(entry, report, exc)
            return True
        try:
            with stored:
                result = await conn.send(stored, list(owed))
        except OSError as exc:  # unreadable partway: the connection was dropped with it
            self._unreadable(entry, report, exc)
            return False
        except smtp.SmtpFailure as exc:
            if exc.refused:  # every recipient refused, each with its own code
                self._settle(entry, (), exc.refused, report, exc.kind)
            elif exc.permanent:  # the message itself (sender, size, content)
                self._fail(entry, entry.meta, report, exc.kind, exc.code, _describe(exc))
            else:
                self._defer(entry, report, exc.kind, exc.code, _describe(exc))
            return exc.kind not in ("timeout", "disconnected")
        self._settle(entry, result.accepted, result.refused, report, "")
        return True

    def _unreadable(self, entry: Entry, report: Report, exc: OSError) -> None:
        self._fail(entry, entry.meta, report, "damaged", None,
                   f"cannot read {entry.message_path().name}: {exc.strerror or exc}")

    def _settle(self, entry: Entry, accepted, refused: dict, report: Report,
                kind: str) -> None:
        got = {a.lower() for a in accepted}
        final = {a: f"{c} {t}".strip() for a, (c, t) in refused.items()
                 if c is not None and c >= 500}
        temporary = {a: f"{c} {t}".strip() for a, (c, t) in refused.items() if a not in final}
        owed = tuple(a for a in entry.meta.owed
                     if a.lower() not in got and a not in final)
        code = _status(refused, accepted)
        if not owed and not final and not entry.meta.refused:
            # The batch syncs once at its end, and its files are deleted off
            # the sending path (`Sweeper`).
            self.sweeper.add(self.spool.done(entry, sync=False, remove=False))
            report.sent += 1
            self._log(entry, result="sent", status=code or 250, error="")
            return
        meta = replace(entry.meta, owed=owed, refused={**entry.meta.refused, **final})
        if owed:
            error = "; ".join(f"{a}: {w}" for a, w in temporary.items()) or kind or "deferred"
            entry = self.spool.update(entry, meta)
            self._defer(entry, report, kind or "recipient_deferred", code, error)
        else:  # someone refused it for good, now or on an earlier attempt
            if any(a not in meta.refused for a in meta.recipients):
                report.partial += 1  # the others have it
            self._fail(entry, meta, report, kind or "recipient_refused", code,
                       "refused: " + "; ".join(f"{a}: {w}" for a, w in meta.refused.items()))

    def _defer(self, entry: Entry, report: Report, kind: str, code: int | None,
               error: str) -> None:
        self.tried.add(entry.id)
        # An entry never fails for a refused sign-in: it waits for the admin.
        settled = self.spool.defer(entry, error=error, code=code,
                                   keep=kind == "token_refused")
        if settled.state == "failed":
            report.failed += 1
            self._log(settled, result="failed", status=code, error=kind,
                      detail=settled.meta.failed_reason)
            self._alert(settled, report)
            return
        report.deferred += 1
        self._log(settled, result="deferred", status=code, error=kind, detail=error,
                  next_attempt=time.strftime("%Y-%m-%dT%H:%M:%S%z",
                                             time.localtime(settled.meta.next_attempt)))

    def _fail(self, entry: Entry, meta, report: Report, kind: str, code: int | None,
              reason: str) -> None:
        meta = replace(meta, attempts=meta.attempts + 1, last_error=reason, last_code=code)
        settled = self.spool.fail(entry, reason, meta=meta)
        report.failed += 1
        self._log(settled, result="failed", status=code, error=kind, detail=reason)
        self._alert(settled, report)

    def _alert(self, failed: Entry, report: Report) -> None:
        self.failed.append(failed)

    def alert(self, report: Report) -> bool:
        """One alert about everything the run gave up on so far (a burst
        of failures is one mail listing them); True when one was queued."""
        failed, self.failed = self.failed, []
        alert = notify.alert_failed(self.settings, self.spool, failed) if failed else None
        if alert is not None:
            report.alerts.append(alert.id)
        return alert is not None

    def _log(self, entry: Entry, *, result: str, status=None, error: str = "",
             **extra: object) -> None:
        meta = entry.meta
        log.record(self.spool, id=meta.id, kind=meta.kind, host=self.host, tls=self.tls,
                      recipients=",".join(meta.recipients), size=meta.size,
                      attempt=meta.attempts + (1 if result == "sent" else 0),
                      smtp_status=status, error=error, result=result, **extra)


class Sweeper:
    """Deletes the folders of sent entries (already out of the spool, in
    tmp/) in an `rm` process per batch: unlinking costs about as much as
    sending, and a thread doing it here would hold the interpreter lock
    the sending needs. Where `rm` can't be started they are deleted here."""

    def __init__(self) -> None:
        self.trash: list[str] = []
        self.running: list[subprocess.Popen[bytes]] = []

    def add(self, trash: str) -> None:
        self.trash.append(trash)

    def sweep(self) -> None:
        self.running = [p for p in self.running if p.poll() is None]
        if not self.trash:
            return
        trash, self.trash = self.trash, []
        try:
            self.running.append(subprocess.Popen(["rm", "-rf", "--", *trash],
                                                 stdin=subprocess.DEVNULL))
        except OSError:
            for path in trash:
                Spool.remove_trash(path)

    def close(self) -> None:
        self.sweep()
        for proc in self.running:
            proc.wait()
        self.running = []


def _status(refused: dict, accepted) -> int | None:
    codes = [c for c, _ in refused.values() if c is not None]
    if codes:
        return max(codes)
    return 250 if accepted else None


def _describe(exc: smtp.SmtpFailure) -> str:
    text = " ".join(str(exc.server_message or exc).split())
    return f"{exc.code} {text}" if exc.code else text


# --- entry points ------------------------------------------------------------------

def deliver_entries(settings: Settings, spool: Spool, owner: Owner,
                    entries: list[Entry]) -> Report:
    """Send entries this process already holds (notify's "at once"), and then
    any administrator alert that caused."""
    return asyncio.run(_deliver_entries(settings, spool, owner, entries))


async def _deliver_entries(settings: Settings, spool: Spool, owner: Owner,
                           entries: list[Entry]) -> Report:
    courier = Courier(settings, spool, owner)
    stop = _stop_on_signals()
    try:
        report = await courier.batch(entries, stop)
        courier.alert(report)
        if stop.is_set():
            return report  # any alert waits in queue/ for the next deliverer
        alerts = [e for e in (spool.claim(i, owner) for i in report.alerts) if e is not None]
        if alerts:
            report.add(await courier.batch(alerts, stop))
        return report
    finally:
        courier.close()


def drain(settings: Settings, spool: Spool, *, batch: int = BATCH,
          index: DueIndex | None = None) -> Report:
    """Everything due now, then return. `index` (of `spool`): what is still
    waiting afterwards."""
    with spool.owner() as owner:
        spool.recover()
        _log_salvaged(spool, spool.clean_tmp())
        courier = Courier(settings, spool, owner)
        own = index is None
        index = DueIndex(spool) if index is None else index
        try:
            return asyncio.run(_drain_until_stopped(courier, index, batch))
        finally:
            courier.close()
            if own:
                index.close()


def _log_salvaged(spool: Spool, entries: list[Entry]) -> None:
    for entry in entries:
        log.record(spool, id=entry.id, kind=entry.meta.kind, event="recovered",
                   reason="its writer died before it was queued", state=entry.state)


async def _drain_until_stopped(courier: Courier, index: DueIndex, batch: int) -> Report:
    return await _drain(courier, index, batch, _stop_on_signals())


def _stop_on_signals() -> asyncio.Event:
    """SIGTERM/SIGINT end delivery cleanly: the message on the wire is
    finished (no resend of something the server already took), the rest goes
    back to queue/ at once. Killed outright instead, a claimed entry would
    wait in active/ for recovery and its message could go out twice."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _drain(courier: Courier, index: DueIndex, batch: int,
                 stop: asyncio.Event | None = None) -> Report:
    """What is due, a batch at a time; the index takes in what came
    meanwhile (new entries, and our own retries that came due) after each."""
    report = Report()
    courier.new_run()
    while not (stop and stop.is_set()) and courier.settings.notifications.enabled:
        # (Off is the master switch: nothing goes out; queue/ keeps it all.)
        index.refresh()
        taken = index.take(batch)
        # One deferred in this run waits for the next (see `new_run`).
        index.put_back([i for i in taken if i in courier.tried])
        fresh = [i for i in taken if i not in courier.tried]
        claimed = _claim(courier, fresh)
        courier.settle_damaged(report)
        if claimed:
            report.add(await courier.batch(claimed, stop))
        elif not fresh:  # nothing (new) is due; if others took what was, look again
            if courier.alert(report):
                continue  # the alert goes out in this run too
            break
    return report


async def _retry_waiting(courier: Courier, index: DueIndex, batch: int,
                         stop: asyncio.Event) -> Report:
    """One attempt now for everything queued, whatever its retry time: the
    settings changed, so what failed with the old ones may go through."""
    report = Report()
    if not courier.settings.notifications.enabled:
        return report
    courier.new_run()
    index.refresh()
    waiting = index.take(len(index), everything=True)
    while waiting and not stop.is_set():
        claimed = _claim(courier, waiting[:batch])
        courier.settle_damaged(report)
        del waiting[:batch]
        report.add(await courier.batch(claimed, stop))
    if waiting:  # stopped: not claimed, so still in queue/
        index.rescan()
    courier.alert(report)  # sent by the drain that follows
    return report


def _claim(courier: Courier, ids: list[str]) -> list[Entry]:
    """Those of `ids` no other deliverer took first."""
    claimed = []
    for entry_id in ids:
        entry = courier.spool.claim(entry_id, courier.owner)
        if entry is not None:
            claimed.append(entry)
    return claimed


class ConfigFile:
    """Settings that follow their file while `deliver --watch` runs: an admin
    who fixes the password expects the service to use it now, not after a
    restart (MikoPBX users' old complaint: settings taking effect only after
    a reboot). A file that no longer loads leaves the last good settings."""

    def __init__(self, path: Path, load: Callable[[], Settings]) -> None:
        self.path, self.load = path, load
        self.stamp = self._stamp()

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size  # a save renames a new file in

    def changed(self, spool: Spool) -> Settings | None:
        stamp = self._stamp()
        if stamp == self.stamp:
            return None
        self.stamp = stamp
        try:
            settings = self.load()
        except (ConfigError, OSError) as exc:
            log.record(spool, event="config", config=self.path, result="kept the last good",
                          error=str(exc))
            return None
        log.record(spool, event="config", config=self.path, result="reloaded")
        return settings


def watch(settings: Settings, spool: Spool, *, batch: int = BATCH,
          config_file: ConfigFile | None = None) -> Report:
    """Keep delivering until SIGTERM/SIGINT: new entries at once, retries
    at their times; `config_file` changes apply from the next batch."""
    with spool.owner() as owner, spool.deliverer_lock():
        courier = Courier(settings, spool, owner)
        index = DueIndex(spool)
        try:
            return asyncio.run(_watch(courier, index, batch, config_file))
        finally:
            courier.close()
            index.close()


async def _watch(courier: Courier, index: DueIndex, batch: int,
                 config_file: ConfigFile | None = None) -> Report:
    """Idle is asleep: until the next retry is due, an entry comes into
    queue/ (inotify; else a look at queue/ every POLL), the config file may
    have changed (a stat every POLL) or it is time to recover the claims
    of deliverers that died."""
    stop = _stop_on_signals()
    log.record(courier.spool, event="watching", path=courier.spool.root)
    report = Report()
    spool = courier.spool
    loop = asyncio.get_running_loop()
    arrived = asyncio.Event()
    fd = index.fileno()

    def wake() -> None:
        # One-shot: the descriptor stays readable until `refresh` reads it,
        # and a level-triggered reader would spin the loop meanwhile.
        loop.remove_reader(fd)
        arrived.set()

    last_recover = -RECOVER_EVERY
    while not stop.is_set():
        if config_file is not None and (fresh := config_file.changed(spool)) is not None:
            courier.use(fresh)
            report.add(await _retry_waiting(courier, index, batch, stop))
        if time.monotonic() - last_recover >= RECOVER_EVERY:
            spool.recover()
            _log_salvaged(spool, spool.clean_tmp())
            last_recover = time.monotonic()
        report.add(await _drain(courier, index, batch, stop))
        timeout = RECOVER_EVERY - (time.monotonic() - last_recover)
        due = index.next_due() if courier.settings.notifications.enabled else None
        if due is not None:
            timeout = min(timeout, due)
        if config_file is not None or fd is None:
            timeout = min(timeout, POLL)
        arrived.clear()
        if fd is not None:
            loop.add_reader(fd, wake)
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(arrived.wait())]
        await asyncio.wait(waits, timeout=max(timeout, 0.01),
                           return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()
        if fd is not None:
            loop.remove_reader(fd)
    log.record(courier.spool, event="stopped", sent=report.sent,
               deferred=report.deferred, failed=report.failed)
    return report
