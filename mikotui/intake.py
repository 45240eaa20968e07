"""One PBX event in: made durable in the spool before anything can fail,
then (unless queue_only) delivered at once. A server that is down leaves it
queued and the result is still 0 (sysexits: 0 means delivered or queued); a spool that can't
be written still lets a missed call or system alert out if the server takes
it now. Only the delivery step imports asyncio/SMTP.

`mikotui notify` is an argparse layer over `run`; the TUI can call it too.
Problems a person can act on are printed as one line on stderr.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from mikotui.config import Settings
    from mikotui.deliver import Report
    from mikotui.notify import Login, MissedCall, Prepared
    from mikotui.spool import Entry, Meta, Owner, Spool


@dataclass(frozen=True)
class SystemAlert:
    subject: str
    text: str | None = None  # None: read from stdin


@dataclass(frozen=True)
class Voicemail:
    """The email Asterisk pipes to mailcmd comes on stdin."""

    missed_by: tuple[str, ...] = ()  # extensions that missed the call


if TYPE_CHECKING:
    Event = MissedCall | SystemAlert | Voicemail | Login


def kind_of(event: Event) -> str:
    from mikotui.notify import Login

    if isinstance(event, SystemAlert):
        return "system"
    if isinstance(event, Voicemail):
        return "voicemail"
    if isinstance(event, Login):
        return "login"
    return "missed"


def run(event: Event, *, config_path: str | None = None,
        lang: str | None = None, queue_only: bool = False,
        stdin: BinaryIO | None = None) -> int:
    """Take one event in; returns the exit code. `stdin`: piped input (the
    voicemail, or the alert's text), None when nothing is piped."""
    from mikotui import config, i18n, log, notify, routing
    from mikotui.notify import Login, MissedCall
    from mikotui.spool import Spool, SpoolError

    kind = kind_of(event)
    path = config.resolve_path(config_path)
    # Asterisk deletes its copy once we exit: every path below keeps these
    # bytes, streamed from stdin into the spool (or a rescue file).
    piped = _Piped(stdin) if isinstance(event, Voicemail) and stdin is not None else None
    try:
        settings = config.load(path)
    except config.ConfigError:
        if piped is not None:
            _keep_voicemail(path, piped)
        raise
    language = i18n.language(lang, settings.ui.language)
    settings = config.with_language(settings, language)
    refuse_send = config.untrusted(settings)
    if refuse_send:
        # Sending is refused, losing the event is worse: it waits in the
        # spool, which `deliver` sends once the config is fixed.
        print(f"mikotui: not sending now: {refuse_send}; queued instead", file=sys.stderr)
        queue_only = True
    if isinstance(event, SystemAlert) and event.text is None and stdin is not None:
        # Read once, here: a rescue file must hold it too.
        event = SystemAlert(event.subject, stdin.read().decode("utf-8", "replace"))
    intake = _Intake(settings, Spool(settings.spool_dir(), settings.spool.max_age_hours),
                     queue_only)
    spool = intake.spool
    prepared = None
    meta = None
    try:
        spool.ensure()
        log.warn_exposed_password(settings, spool)
        if not settings.notifications.enabled:
            log.record(spool, kind=kind, event="dropped",
                       reason="notifications are switched off")
            return 0
        if off := routing.switched_off(settings, kind):
            log.record(spool, kind=kind, event="dropped", reason=f"{off} = false")
            return 0
        if isinstance(event, Voicemail):
            return intake.voicemail(event, language, piped)
        if isinstance(event, Login):  # as the rate limit must see it: "::1", not "0::1"
            event = _login(event)
            if event is None:
                return os.EX_USAGE
        prepared = _prepare(event, settings, stdin)
        if prepared is None:
            return os.EX_USAGE
        if not prepared.recipients:
            # Exit 0, as for notifications switched off: the config says nobody
            # gets it, so the dialplan has nothing to retry or handle, and a
            # non-zero status would only be read as "the PBX failed". What to
            # fix is in the log line.
            why = (routing.nobody_because(settings, event.called, event.caller)
                   if isinstance(event, MissedCall) else "notifications.admin_email is empty")
            about = {"called": event.called} if isinstance(event, MissedCall) else {}
            log.record(spool, kind=kind, event="dropped", **about,
                       reason=f"nobody to send it to ({why})")
            return 0
        if isinstance(event, Login) and not notify.first_login_alert(spool, event):
            log.record(spool, kind=kind, event="dropped", user=event.user,
                       address=event.address, reason="already reported within 5 minutes")
            return 0
        meta = prepared.meta()
        if queue_only:
            entry = spool.enqueue(meta, prepared.chunks())
            log.record(spool, id=entry.id, kind=entry.meta.kind, event="queued",
                       recipients=",".join(prepared.recipients), size=entry.meta.size)
            return 0
        return intake.store_and_send(meta, prepared.chunks())
    except (SpoolError, OSError) as exc:
        # Only failures before the entry was stored get here (`store_and_send`
        # handles those after): nothing is in the spool, so nothing is sent twice.
        why = _spool_problem(spool, exc)
        if meta is not None:  # sent or kept below: what enqueue left must not be salvaged
            with contextlib.suppress(OSError):
                spool.discard_unfinished(meta.id)
        if kind == "voicemail" or not settings.notifications.enabled:
            print(f"mikotui: {why}", file=sys.stderr)
            if piped is not None:
                _rescue_voicemail(path, piped)
            return os.EX_CANTCREAT
        assert not isinstance(event, Voicemail)
        prepared = prepared or _prepare(event, settings, stdin)
        if prepared is None:
            return os.EX_USAGE
        # Sent now if the server takes it (--queue-only too: nothing can wait
        # for `deliver`), else kept in a file beside the voicemails' rescue.
        if not refuse_send:
            sent, problem = _send_without_spool(settings, prepared, why)
            if sent:
                return 0 if not problem else os.EX_CANTCREAT
            why = f"{why}; {problem}"
        _rescue_event(path, event, why)
        return os.EX_CANTCREAT


class _Intake:
    """The steps after the settings loaded, for one event."""

    def __init__(self, settings: Settings, spool: Spool, queue_only: bool) -> None:
        self.settings, self.spool, self.queue_only = settings, spool, queue_only

    def store_and_send(self, meta: Meta, data: bytes | Iterable[bytes]) -> int:
        """Store the entry as this process's claim, then send it (a raw
        voicemail is parsed first). A spool failure after the entry is stored
        must neither send it again nor rescue it elsewhere: it is durable,
        and `mikotui deliver` sends it."""
        from mikotui.spool import SpoolError

        owner = self.spool.owner()
        try:
            entry = self.spool.enqueue(meta, data, owner=owner)
        except BaseException:
            owner.close()
            raise
        try:
            if entry.meta.stage == "raw":
                return self._ready_and_send(owner, entry)
            return self._deliver_now(owner, entry)
        except (SpoolError, OSError) as exc:
            return _kept(self.spool, entry, _spool_problem(self.spool, exc))
        finally:
            with contextlib.suppress(OSError):  # the kernel drops the lock at exit anyway
                owner.close()

    def voicemail(self, event: Voicemail, lang: str, piped: _Piped | None) -> int:
        """Raw bytes into the spool first (Asterisk deletes its copy and
        ignores our exit code), then parsing."""
        import time

        from mikotui import notify
        from mikotui.spool import Meta, new_id

        if piped is None:
            print("mikotui: pipe the voicemail email on stdin (Asterisk's mailcmd does)",
                  file=sys.stderr)
            return os.EX_USAGE
        missed_by = tuple(e.strip() for e in event.missed_by if e.strip())
        meta = Meta(id=new_id(), kind=notify.VOICEMAIL, created=time.time(), stage="raw",
                    event={"missed_by": list(missed_by), "lang": lang})
        piped.spill_into(self.spool, meta)
        return self.store_and_send(meta, piped.chunks())

    def _ready_and_send(self, owner: Owner, entry: Entry) -> int:
        """Parse a stored raw voicemail, then send it (or queue it)."""
        from mikotui import log, notify

        settings, spool = self.settings, self.spool
        log.record(spool, id=entry.id, kind=notify.VOICEMAIL, event="received",
                   size=entry.meta.size)
        entry, error = notify.ready_voicemail(settings, spool, entry)
        if error:
            log.record(spool, id=entry.id, kind=notify.VOICEMAIL, event="failed",
                       error=error, kept=entry.path)
            alert = notify.alert_failed(settings, spool, [entry])
            if alert is not None and not self.queue_only:
                self._deliver_queued(owner, alert.id)
            if not entry.meta.size:  # nothing came: input missing, not bad input
                print(f"mikotui: no voicemail email on stdin (recorded in {entry.path})",
                      file=sys.stderr)
                return os.EX_NOINPUT
            print(f"mikotui: voicemail not readable, kept in {entry.path}: {error}",
                  file=sys.stderr)
            return os.EX_DATAERR
        if not entry.meta.recipients:
            log.record(spool, id=entry.id, kind=notify.VOICEMAIL, event="dropped",
                       reason="nobody to send it to")
            spool.done(entry)
            return 0
        if self.queue_only:
            entry = spool.release(entry)
            log.record(spool, id=entry.id, kind=notify.VOICEMAIL, event="queued",
                       recipients=",".join(entry.meta.recipients), size=entry.meta.size)
            return 0
        return self._deliver_now(owner, entry)

    def _deliver_now(self, owner: Owner, entry: Entry) -> int:
        from mikotui import deliver, log

        report = deliver.deliver_entries(self.settings, self.spool, owner, [entry])
        if report.failed > report.partial:
            return os.EX_UNAVAILABLE
        if report.partial:  # delivered, though not to everyone: said, kept, the admin told
            _say_refused(self.spool, entry)
            return 0
        if report.released:
            log.record(self.spool, id=entry.id, kind=entry.meta.kind, event="queued",
                       reason="stopped by a signal before sending")
        if report.deferred or report.released:
            print("mikotui: queued, will retry" + _setup_hint(report), file=sys.stderr)
        return 0

    def _deliver_queued(self, owner: Owner, entry_id: str) -> None:
        """Best effort: send the administrator's alert now; if not, it waits."""
        from mikotui import deliver

        entry = self.spool.claim(entry_id, owner)
        if entry is not None:
            deliver.deliver_entries(self.settings, self.spool, owner, [entry])


def _say_refused(spool: Spool, entry: Entry) -> None:
    failed = spool.find(entry.id)
    if failed is None:
        return
    refused = "; ".join(f"{a}: {why}" for a, why in failed.meta.refused.items())
    took = ", ".join(a for a in failed.meta.recipients if a not in failed.meta.refused)
    print(f"mikotui: sent to {took}; refused for {refused} (kept in {failed.path}, "
          "the administrator is told)", file=sys.stderr)


def _setup_hint(report: Report) -> str:
    if not report.setup_problem:
        return ""
    return (f"; but the SMTP settings look wrong ({report.setup_problem}): "
            "`mikotui test-email` shows why")


def _spool_problem(spool: Spool, exc: Exception) -> str:
    from mikotui.spool import SpoolError

    if isinstance(exc, SpoolError):
        return str(exc)
    return f"spool {spool.root}: {getattr(exc, 'strerror', None) or exc}"


def _kept(spool: Spool, entry: Entry, why: str) -> int:
    """Say where a stored entry is after a later step failed, and exit
    as for a stored one (0: durably queued)."""
    try:
        now = spool.find(entry.id)
    except (OSError, ValueError):  # the disk that just failed: say where it was
        now = entry
    if now is None:  # settled (sent, or dropped) before the failure
        print(f"mikotui: {why} (after {entry.id} had left the spool: nothing waits)",
              file=sys.stderr)
        return 0
    if now.state == "failed":
        print(f"mikotui: {why}; kept in {now.path}: {now.meta.failed_reason}", file=sys.stderr)
        if now.meta.stage != "raw":
            return os.EX_UNAVAILABLE
        return os.EX_DATAERR if now.meta.size else os.EX_NOINPUT
    print(f"mikotui: {why}; kept in {now.path}; `mikotui deliver` sends it", file=sys.stderr)
    return 0


def _send_without_spool(settings: Settings, prepared: Prepared, why: str) -> tuple[bool, str]:
    """The spool can't be written (a full or read-only disk): a missed call,
    or the system alert about that very disk, still goes out if the server
    takes it now. Returns (sent to anyone, what went wrong); a line is
    printed when it was sent."""
    import asyncio
    import email

    from mikotui import smtp

    if not prepared.recipients:
        return True, ""
    msg = email.message_from_bytes(prepared.data)
    to = ",".join(prepared.recipients)
    try:
        result = asyncio.run(smtp.send_message(settings.smtp, msg, list(prepared.recipients),
                                               token_file=settings.token_path()))
    except smtp.SmtpFailure as exc:
        return False, f"the server did not take it either: {exc}"
    if result.refused:
        refused = ", ".join(f"{a}: {c} {m}" for a, (c, m) in result.refused.items())
        print(f"mikotui: {why}; sent without it, but refused for {refused}", file=sys.stderr)
        return True, refused
    print(f"mikotui: {why}; sent without the spool to {to} (fix it: meanwhile nothing "
          "can wait for a retry)", file=sys.stderr)
    return True, ""


def _rescue_folder() -> str:
    """Where a notification the spool can't take is kept: $TMPDIR, else
    /var/tmp, which survives a reboot."""
    return os.environ.get("TMPDIR") or "/var/tmp"


def _rescue_file(folder: str, prefix: str, suffix: str, chunks: Iterable[bytes]) -> str:
    """A private (0600, mkstemp) file in `folder` holding `chunks`, fsynced
    before its name is given; OSError when it can't be made."""
    import tempfile

    from mikotui.durable import write_all

    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    try:
        for chunk in chunks:
            write_all(fd, chunk)
        os.fsync(fd)
    finally:
        os.close(fd)
    return name


def _rescue_event(config_path: Path, event: MissedCall | SystemAlert, why: str) -> None:
    """A missed call or system alert that neither the spool nor the server
    took: kept, as a voicemail is (`_rescue_voicemail`), in a private file
    in $TMPDIR (else /var/tmp): the command that sends it again, with the
    call's own time. A person runs it (sh FILE) once the spool works."""
    import time

    from mikotui import notify

    words = ["mikotui", "--config", os.path.abspath(config_path), "notify"]  # run from anywhere
    if isinstance(event, notify.MissedCall):
        what = "missed call"
        words += ["missed", "--caller", event.caller, "--called", event.called,
                  "--caller-name", event.caller_name, "--called-name", event.called_name,
                  "--duration", event.duration,
                  "--date", event.date or time.strftime("%Y-%m-%d %H:%M:%S")]
    else:
        what = "system alert"
        words += ["system", "--subject", event.subject, "--message", event.text or ""]
    one_line = " ".join(why.split())
    script = ("#!/bin/sh\n"
              f"# mikotui could not store this {what} on {time.strftime('%Y-%m-%d %H:%M:%S')}:\n"
              f"# {one_line}\n"
              "# Once the spool works, run this file (sh FILE) to send it, then delete it.\n"
              + " ".join(shlex.quote(w) for w in words) + "\n")
    kind = "missed" if what == "missed call" else "system"
    folder = _rescue_folder()
    try:
        name = _rescue_file(folder, f"mikotui-{kind}-", ".sh",
                            [script.encode("utf-8", "surrogateescape")])
    except OSError as exc:
        print(f"mikotui: {one_line}; the {what} is lost: cannot write to {folder} either: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return
    print(f"mikotui: {one_line}; the {what} is kept in {name}; once the spool works: "
          f"sh {shlex.quote(name)}", file=sys.stderr)


def _prepare(event: MissedCall | SystemAlert | Login, settings: Settings,
             stdin: BinaryIO | None) -> Prepared | None:
    """The event as a ready message, or None after saying what is wrong with it."""
    from mikotui import charsets, notify

    if isinstance(event, notify.MissedCall):
        if not _valid_date(event.date):
            print(f"mikotui: --date {event.date!r} is not 'YYYY-MM-DD HH:MM:SS' "
                  "(e.g. '2026-11-26 14:03:12')", file=sys.stderr)
            return None
        from mikotui.enqueue import missed_problem

        if problem := missed_problem(event.duration, list(event.via) if event.via else None):
            print(f"mikotui: {problem}", file=sys.stderr)
            return None
        if event.via is not None:
            event = replace(event, via=(event.via[0].strip().lower(), event.via[1].strip()))
        return notify.missed_call(settings, event)
    if isinstance(event, notify.Login):
        login = _login(event)
        return login and notify.login(settings, login, settings.ui.language)
    if not event.subject.strip():
        print("mikotui: --subject is empty; say what the alert is about", file=sys.stderr)
        return None
    text = event.text
    if text is None:
        if stdin is None:
            print("mikotui: give --message or the text on stdin", file=sys.stderr)
            return None
        text = charsets.decode(stdin.read())
    return notify.system(settings, event.subject, text)


def _login(event: Login) -> Login | None:
    """The sign-in checked, its address as ipaddress writes it; None after
    saying what is wrong."""
    import ipaddress

    user = event.user.strip()
    problem = ""
    try:
        address = str(ipaddress.ip_address(event.address.strip()))
    except ValueError:
        address, problem = "", f"--address {event.address!r} is not an IP address"
    if not user or len(user) > 256 or any(ord(c) < 32 or ord(c) == 127 for c in user):
        problem = f"--user {event.user!r} is not a user name (one line, 1 to 256 characters)"
    elif not _valid_date(event.when):
        problem = (f"--when {event.when!r} is not 'YYYY-MM-DD HH:MM:SS' "
                   "(e.g. '2026-11-26 14:03:12')")
    if problem:
        print(f"mikotui: {problem}", file=sys.stderr)
        return None
    return replace(event, user=user, address=address)


def _valid_date(text: str) -> bool:
    from datetime import datetime

    try:
        return not text or bool(datetime.strptime(text, "%Y-%m-%d %H:%M:%S"))
    except ValueError:
        return False


# --- the voicemail's bytes, kept whatever fails --------------------------------------

class _Piped:
    """The voicemail on stdin, handed out a chunk at a time as the spool (or
    a rescue file) writes it: a long one is never held whole. It remembers
    what it handed out and where that was written (`spill_into`), so that a
    write failing partway still loses no byte: `replay` gives them again,
    those before the last chunk read back from that file."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.taken = 0  # bytes handed out
        self.last = b""  # the last chunk: perhaps only partly written
        self.spill: tuple[Spool, Meta] | None = None

    def spill_into(self, spool: Spool, meta: Meta) -> None:
        """What is handed out from now on goes to `meta`'s entry in `spool`."""
        self.spill = (spool, meta)

    def chunks(self) -> Iterator[bytes]:
        """The rest of stdin (what no earlier call handed out)."""
        from mikotui.durable import CHUNK

        while chunk := self.stream.read(CHUNK):
            self.taken += len(chunk)
            self.last = chunk
            yield chunk

    def replay(self, lost: list[int]) -> Iterator[bytes]:
        """What was handed out so far, again: read back from the spool file
        it went to, the last chunk from memory. Bytes that file no longer
        holds are counted in `lost`."""
        before = self.taken - len(self.last)
        got = 0
        if before and self.spill is not None:
            from mikotui.durable import CHUNK, open_private

            spool, meta = self.spill
            try:
                with open_private(spool.unfinished(meta)) as f:
                    while got < before and (chunk := f.read(min(CHUNK, before - got))):
                        got += len(chunk)
                        yield chunk
            except OSError:
                pass
        lost.append(before - got)
        if got < before:
            return  # a gap: the last chunk does not follow what is there
        yield self.last

    def forget_spill(self) -> None:
        """The rescue file holds it all: the spool's unfinished copy goes
        (left, it would be salvaged and sent besides)."""
        if self.spill is not None:
            spool, meta = self.spill
            with contextlib.suppress(OSError):
                spool.discard_unfinished(meta.id)
            self.spill = None


def _keep_voicemail(path: Path, piped: _Piped) -> None:
    """The config can't be read, but Asterisk deletes its copy of the
    voicemail: keep it in failed/ of the default spool beside that config,
    with the command that feeds it back once the config is fixed (whatever
    spool the fixed config names)."""
    import time

    from mikotui import config
    from mikotui.spool import Meta, Spool, SpoolError, new_id

    again = f"mikotui --config {shlex.quote(str(path))} notify voicemail <"
    try:
        spool = Spool(config.Settings(path=path).spool_dir()).ensure()
        meta = Meta(id=new_id(), kind="voicemail", created=time.time(), stage="raw")
        with spool.owner() as owner:
            piped.spill_into(spool, meta)
            entry = spool.enqueue(meta, piped.chunks(), owner=owner)
            try:
                entry = spool.fail(entry, f"config error in {path}; fix it, then "
                                          f"`{again} raw.eml` (the file beside this one)")
            except OSError as exc:  # stored all the same: no rescue file besides
                print(f"mikotui: voicemail kept in {entry.message_path()} (not marked "
                      f"failed: {exc.strerror or exc}); once the config is fixed: "
                      f"{again} {shlex.quote(str(entry.message_path()))}", file=sys.stderr)
                return
    except (SpoolError, OSError) as exc:
        print(f"mikotui: cannot keep the voicemail in the spool: "
              f"{getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        _rescue_voicemail(path, piped)
        return
    print(f"mikotui: voicemail kept in {entry.message_path()}; once the config is fixed: "
          f"{again} {shlex.quote(str(entry.message_path()))}", file=sys.stderr)


def _rescue_voicemail(config_path: Path, piped: _Piped) -> None:
    """The spool can't be used, and Asterisk deletes its copy the moment we
    exit: the voicemail goes to a private file in $TMPDIR (else /var/tmp,
    which survives a reboot), for a person to feed back in: what the failed
    spool write took of it, then the rest of stdin."""
    import itertools

    folder = _rescue_folder()
    lost: list[int] = []
    try:  # read as it is written, never held whole
        name = _rescue_file(folder, "mikotui-voicemail-", ".eml",
                            itertools.chain(piped.replay(lost), piped.chunks()))
    except OSError as exc:
        print(f"mikotui: the voicemail is lost: cannot write to {folder} either: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return
    gap = sum(lost)
    if not gap:
        piped.forget_spill()
    gap_text = (f" ({gap} bytes of it were lost with the spool: they could not be "
                "read back)" if gap else "")
    print(f"mikotui: voicemail kept in {name}{gap_text}; once the spool works: "
          f"mikotui --config {shlex.quote(str(config_path))} notify voicemail < "
          f"{shlex.quote(name)}", file=sys.stderr)
