"""mikotui notify missed|voicemail|system: what the PBX calls per event.

The event is made durable in the spool before anything can fail, then (unless
--queue-only) delivered at once; a server that is down leaves it queued and
the command still exits 0. Only that delivery step imports asyncio/SMTP.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
from typing import NamedTuple


def register(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("notify", parents=[common], help="queue and send one notification",
                       description="Queue a notification durably, then send it at once "
                                   "(unless --queue-only). A server that is down leaves "
                                   "it queued for `mikotui deliver`; exit 0 either way.")
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)

    def kind(name: str, help: str) -> argparse.ArgumentParser:
        k = kinds.add_parser(name, parents=[common], help=help, description=help)
        k.add_argument("--queue-only", action="store_true",
                       help="only queue it; `mikotui deliver` sends it")
        k.set_defaults(handler=run)
        return k

    m = kind("missed", "a missed call: to the called employee, else the missed-call address")
    m.add_argument("--caller", required=True, metavar="NUM", help="who called")
    m.add_argument("--caller-name", default="", metavar="NAME",
                   help="the caller's name (default: the employee card of NUM)")
    m.add_argument("--called", required=True, metavar="EXT", help="the extension called")
    m.add_argument("--called-name", default="", metavar="NAME",
                   help="the callee's name (default: the employee card of EXT)")
    m.add_argument("--duration", default="0", metavar="SEC", help="ringing time, seconds")
    m.add_argument("--date", default="", metavar="'YYYY-MM-DD HH:MM:SS'",
                   help="when the call was (default: now)")

    v = kind("voicemail", "a voicemail: the email Asterisk pipes to mailcmd, on stdin")
    v.add_argument("--missed-by", default="", metavar="EXT[,EXT...]",
                   help="extensions that missed the call (each gets the voicemail)")

    s = kind("system", "a system alert to the administrator")
    s.add_argument("--subject", required=True, help="the subject line")
    s.add_argument("--message", default=None, help="the text (default: read stdin)")


def run(args: argparse.Namespace) -> int:
    from mikotui import config, i18n, notify
    from mikotui.spool import Spool, SpoolError

    path = config.resolve_path(args.config)
    # Read before anything can fail: from here on the bytes are ours alone
    # (Asterisk deletes its copy), and every path below keeps these bytes.
    piped = _read_piped() if args.kind == "voicemail" else None
    try:
        settings = config.load(path)
    except config.ConfigError:
        if piped is not None:
            _keep_voicemail(path, piped)
        raise
    lang = i18n.language(args.lang, settings.ui.language)
    settings = config.with_language(settings, lang)
    spool = Spool(settings.spool_dir(), settings.spool.max_age_hours)
    prepared = None
    try:
        spool.ensure()
        notify.warn_exposed_password(settings, spool)
        if not settings.notifications.enabled:
            notify.record(spool, kind=args.kind, event="dropped",
                          reason="notifications are switched off")
            return 0
        if args.kind == "voicemail":
            return _voicemail(args, settings, spool, lang, piped)
        prepared = _prepare(args, settings)
        if prepared is None:
            return os.EX_USAGE
        if not prepared.recipients:
            why = ("no usable employee email for the called extension, no general missed-call "
                   "address" if args.kind == "missed" else "notifications.admin_email is empty")
            about = {"called": args.called} if args.kind == "missed" else {}
            notify.record(spool, kind=args.kind, event="dropped", **about,
                          reason=f"nobody to send it to ({why})")
            return 0
        if args.queue_only:
            entry = spool.enqueue(prepared.meta(), prepared.data)
            notify.record(spool, id=entry.id, kind=entry.meta.kind, event="queued",
                          recipients=",".join(prepared.recipients), size=entry.meta.size)
            return 0
        return _stored(spool, prepared.meta(), prepared.data,
                       lambda owner, entry: _deliver_now(settings, spool, owner, entry))
    except (SpoolError, OSError) as exc:
        # Only failures before the entry was stored get here (`_stored`
        # handles those after): nothing is in the spool, so nothing is sent twice.
        why = _spool_problem(spool, exc)
        if args.kind == "voicemail" or args.queue_only or not settings.notifications.enabled:
            print(f"mikotui: {why}", file=sys.stderr)
            if piped is not None:
                _rescue_voicemail(path, piped)
            return os.EX_CANTCREAT
        prepared = prepared or _prepare(args, settings)
        if prepared is None:
            return os.EX_USAGE
        return 0 if _send_without_spool(settings, prepared, why) else os.EX_CANTCREAT


def _spool_problem(spool, exc: Exception) -> str:
    from mikotui.spool import SpoolError

    if isinstance(exc, SpoolError):
        return str(exc)
    return f"spool {spool.root}: {getattr(exc, 'strerror', None) or exc}"


def _stored(spool, meta, data: bytes, then, *, tail=None) -> int:
    """Store the entry as this process's claim, then `then(owner, entry)`.
    A spool failure after the entry is stored must neither send it again
    nor rescue it elsewhere: it is durable, and `mikotui deliver` sends it."""
    from mikotui.spool import SpoolError

    owner = spool.owner()
    try:
        entry = spool.enqueue(meta, data, tail=tail, owner=owner)
    except BaseException:
        owner.close()
        raise
    try:
        return then(owner, entry)
    except (SpoolError, OSError) as exc:
        return _kept(spool, entry, _spool_problem(spool, exc))
    finally:
        with contextlib.suppress(OSError):  # the kernel drops the lock at exit anyway
            owner.close()


def _kept(spool, entry, why: str) -> int:
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


def _send_without_spool(settings, prepared, why: str) -> bool:
    """The spool can't be written (a full or read-only disk): a missed call,
    or the system alert about that very disk, still goes out if the server
    takes it now. Nothing is kept if it doesn't, and the line says so."""
    import asyncio
    import email

    from mikotui import smtp

    if not prepared.recipients:
        return True
    msg = email.message_from_bytes(prepared.data)
    to = ",".join(prepared.recipients)
    try:
        result = asyncio.run(smtp.send_message(settings.smtp, msg, list(prepared.recipients)))
    except smtp.SmtpFailure as exc:
        print(f"mikotui: {why}; the {prepared.kind} notification to {to} is lost: the "
              f"server did not take it either: {exc}", file=sys.stderr)
        return False
    if result.refused:
        refused = ", ".join(f"{a}: {c} {m}" for a, (c, m) in result.refused.items())
        print(f"mikotui: {why}; sent without it, but refused for {refused}", file=sys.stderr)
        return False
    print(f"mikotui: {why}; sent without the spool to {to} (fix it: meanwhile nothing "
          "can wait for a retry)", file=sys.stderr)
    return True


def _prepare(args: argparse.Namespace, settings):
    from mikotui import notify

    if args.kind == "missed":
        if not _valid_date(args.date):
            print(f"mikotui: --date {args.date!r} is not 'YYYY-MM-DD HH:MM:SS' "
                  "(e.g. '2026-11-26 14:03:12')", file=sys.stderr)
            return None
        if not args.duration.strip().isdigit():
            print(f"mikotui: --duration {args.duration!r} is not whole seconds (e.g. 23)",
                  file=sys.stderr)
            return None
        return notify.missed_call(settings, notify.MissedCall(
            caller=args.caller, called=args.called, caller_name=args.caller_name,
            called_name=args.called_name, duration=args.duration, date=args.date))
    if not args.subject.strip():
        print("mikotui: --subject is empty; say what the alert is about", file=sys.stderr)
        return None
    text = args.message
    if text is None:
        if sys.stdin is None or sys.stdin.isatty():
            print("mikotui: give --message or the text on stdin", file=sys.stderr)
            return None
        text = sys.stdin.buffer.read().decode("utf-8", "replace")
    return notify.system(settings, args.subject, text)


class _Rest:
    """stdin past MAX_INPUT (refused anyway, but kept): copied, never held
    in memory; counts what was read of it."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.taken = 0

    def read(self, size: int) -> bytes:
        chunk = self.stream.read(size)
        self.taken += len(chunk)
        return chunk


class _Piped(NamedTuple):
    head: bytes  # all of it, unless over MAX_INPUT
    rest: _Rest | None


def _read_piped() -> _Piped | None:
    """The voicemail on stdin, read once into memory (the parser needs it
    there anyway): the spool and the rescue file both write these bytes,
    so a failed write loses none. None when nothing is piped."""
    from mikotui.asterisk import MAX_INPUT

    if sys.stdin is None or sys.stdin.isatty():
        return None
    head = sys.stdin.buffer.read(MAX_INPUT + 1)
    return _Piped(head, _Rest(sys.stdin.buffer) if len(head) > MAX_INPUT else None)


def _keep_voicemail(path, piped: _Piped) -> None:
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
            entry = spool.enqueue(meta, piped.head, tail=piped.rest, owner=owner)
            entry = spool.fail(entry, f"config error in {path}; fix it, then "
                                      f"`{again} raw.eml` (the file beside this one)")
    except (SpoolError, OSError) as exc:
        print(f"mikotui: cannot keep the voicemail in the spool: "
              f"{getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        _rescue_voicemail(path, piped)
        return
    print(f"mikotui: voicemail kept in {entry.message_path()}; once the config is fixed: "
          f"{again} {shlex.quote(str(entry.message_path()))}", file=sys.stderr)


def _rescue_voicemail(config_path, piped: _Piped) -> None:
    """The spool can't be used, and Asterisk deletes its copy the moment we
    exit: the voicemail goes to a private file in $TMPDIR (else /var/tmp,
    which survives a reboot), for a person to feed back in."""
    import tempfile

    from mikotui.asterisk import MAX_INPUT
    from mikotui.durable import write_all

    folder = os.environ.get("TMPDIR") or "/var/tmp"
    lost = piped.rest.taken if piped.rest else 0  # copied into the failed spool write
    try:
        fd, name = tempfile.mkstemp(prefix="mikotui-voicemail-", suffix=".eml", dir=folder)
        try:
            write_all(fd, piped.head)
            while piped.rest and (chunk := piped.rest.read(1 << 20)):
                write_all(fd, chunk)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        print(f"mikotui: the voicemail is lost: cannot write to {folder} either: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return
    gap = (f" (over the {MAX_INPUT // 2**20} MB limit; {lost} bytes after the first "
           f"{len(piped.head)} were lost with the spool)" if lost else "")
    print(f"mikotui: voicemail kept in {name}{gap}; once the spool works: "
          f"mikotui --config {shlex.quote(str(config_path))} notify voicemail < "
          f"{shlex.quote(name)}", file=sys.stderr)


def _valid_date(text: str) -> bool:
    from datetime import datetime

    try:
        return not text or bool(datetime.strptime(text, "%Y-%m-%d %H:%M:%S"))
    except ValueError:
        return False


def _voicemail(args: argparse.Namespace, settings, spool, lang: str,
               piped: _Piped | None) -> int:
    """Raw bytes into the spool first (Asterisk deletes its copy and ignores
    our exit code), then parsing."""
    import time

    from mikotui import notify
    from mikotui.spool import Meta, new_id

    if piped is None:
        print("mikotui: pipe the voicemail email on stdin (Asterisk's mailcmd does)",
              file=sys.stderr)
        return os.EX_USAGE
    missed_by = tuple(e.strip() for e in args.missed_by.split(",") if e.strip())
    meta = Meta(id=new_id(), kind=notify.VOICEMAIL, created=time.time(), stage="raw",
                event={"missed_by": list(missed_by), "lang": lang})
    return _stored(spool, meta, piped.head, tail=piped.rest,
                   then=lambda owner, entry: _ready_and_send(args, settings, spool,
                                                             owner, entry))


def _ready_and_send(args: argparse.Namespace, settings, spool, owner, entry) -> int:
    """Parse a stored raw voicemail, then send it (or queue it)."""
    from mikotui import notify

    notify.record(spool, id=entry.id, kind=notify.VOICEMAIL, event="received",
                  size=entry.meta.size)
    entry, error = notify.ready_voicemail(settings, spool, entry)
    if error:
        notify.record(spool, id=entry.id, kind=notify.VOICEMAIL, event="failed",
                      error=error, kept=entry.path)
        alert = notify.alert_failed(settings, spool, entry.meta)
        if alert is not None and not args.queue_only:
            _deliver_queued(settings, spool, owner, alert.id)
        if not entry.meta.size:  # nothing came: input missing, not bad input
            print(f"mikotui: no voicemail email on stdin (recorded in {entry.path})",
                  file=sys.stderr)
            return os.EX_NOINPUT
        print(f"mikotui: voicemail not readable, kept in {entry.path}: {error}",
              file=sys.stderr)
        return os.EX_DATAERR
    if not entry.meta.recipients:
        notify.record(spool, id=entry.id, kind=notify.VOICEMAIL, event="dropped",
                      reason="nobody to send it to")
        spool.done(entry)
        return 0
    if args.queue_only:
        entry = spool.release(entry)
        notify.record(spool, id=entry.id, kind=notify.VOICEMAIL, event="queued",
                      recipients=",".join(entry.meta.recipients), size=entry.meta.size)
        return 0
    return _deliver_now(settings, spool, owner, entry)


def _deliver_now(settings, spool, owner, entry) -> int:
    from mikotui import deliver, notify

    report = deliver.deliver_entries(settings, spool, owner, [entry])
    if report.failed:
        return os.EX_UNAVAILABLE
    if report.released:
        notify.record(spool, id=entry.id, kind=entry.meta.kind, event="queued",
                      reason="stopped by a signal before sending")
    if report.deferred or report.released:
        print("mikotui: queued, will retry" + _setup_hint(report), file=sys.stderr)
    return 0


def _setup_hint(report) -> str:
    if not report.setup_problem:
        return ""
    return (f"; but the SMTP settings look wrong ({report.setup_problem}): "
            "`mikotui test-email` shows why")


def _deliver_queued(settings, spool, owner, entry_id: str) -> None:
    """Best effort: send the administrator's alert now; if not, it waits."""
    from mikotui import deliver

    entry = spool.claim(entry_id, owner)
    if entry is not None:
        deliver.deliver_entries(settings, spool, owner, [entry])
