"""mikotui notify missed|voicemail|system: what the PBX calls per event.

The event is made durable in the spool before anything can fail, then (unless
--queue-only) delivered at once; a server that is down leaves it queued and
the command still exits 0. Only that delivery step imports asyncio/SMTP.
"""

from __future__ import annotations

import argparse
import os
import sys


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
    try:
        settings = config.load(path)
    except config.ConfigError:
        if args.kind == "voicemail":
            _keep_voicemail(path)
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
            return _voicemail(args, settings, spool, lang)
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
        with spool.owner() as owner:
            entry = spool.enqueue(prepared.meta(), prepared.data, owner=owner)
            return _deliver_now(settings, spool, owner, entry)
    except (SpoolError, OSError) as exc:
        why = str(exc) if isinstance(exc, SpoolError) else f"spool {spool.root}: {exc.strerror or exc}"
        if args.kind == "voicemail" or args.queue_only or not settings.notifications.enabled:
            print(f"mikotui: {why}", file=sys.stderr)
            if args.kind == "voicemail":
                _rescue_voicemail(path)
            return os.EX_CANTCREAT
        prepared = prepared or _prepare(args, settings)
        if prepared is None:
            return os.EX_USAGE
        return 0 if _send_without_spool(settings, prepared, why) else os.EX_CANTCREAT


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


def _keep_voicemail(path) -> None:
    """The config can't be read, but Asterisk deletes its copy of the
    voicemail: keep it in failed/ of the default spool beside that config,
    for `queue retry` once the config is fixed."""
    import time

    from mikotui import config
    from mikotui.asterisk import MAX_INPUT
    from mikotui.spool import Meta, Spool, new_id

    if sys.stdin is None or sys.stdin.isatty():
        return
    try:
        spool = Spool(config.Settings(path=path).spool_dir()).ensure()
        meta = Meta(id=new_id(), kind="voicemail", created=time.time(), stage="raw")
        with spool.owner() as owner:
            entry, _over = spool.enqueue_stream(meta, sys.stdin.buffer, limit=MAX_INPUT,
                                                owner=owner)
            entry = spool.fail(entry, f"config error in {path}; fix it, then "
                                      f"`mikotui queue retry {entry.id}`")
        print(f"mikotui: voicemail kept in {entry.path}", file=sys.stderr)
    except OSError as exc:
        print(f"mikotui: cannot keep the voicemail in the spool: {exc}", file=sys.stderr)
        _rescue_voicemail(path)


def _rescue_voicemail(config_path) -> None:
    """The spool can't be used, and Asterisk deletes its copy the moment we
    exit: whatever is left on stdin goes to a private file in $TMPDIR (else
    /var/tmp, which survives a reboot), for a person to feed back in."""
    import tempfile

    from mikotui.durable import write_all

    if sys.stdin is None or sys.stdin.isatty():
        return
    folder = os.environ.get("TMPDIR") or "/var/tmp"
    try:
        fd, name = tempfile.mkstemp(prefix="mikotui-voicemail-", suffix=".eml", dir=folder)
        try:
            while chunk := sys.stdin.buffer.read(1 << 20):
                write_all(fd, chunk)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        print(f"mikotui: the voicemail is lost: cannot write to {folder} either: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return
    print(f"mikotui: voicemail kept in {name}; once the spool works: "
          f"mikotui --config {config_path} notify voicemail < {name}", file=sys.stderr)


def _valid_date(text: str) -> bool:
    from datetime import datetime

    try:
        return not text or bool(datetime.strptime(text, "%Y-%m-%d %H:%M:%S"))
    except ValueError:
        return False


def _voicemail(args: argparse.Namespace, settings, spool, lang: str) -> int:
    """Raw bytes into the spool first (Asterisk deletes its copy and ignores
    our exit code), then parsing."""
    import time

    from mikotui import notify
    from mikotui.spool import Meta, new_id

    if sys.stdin is None or sys.stdin.isatty():
        print("mikotui: pipe the voicemail email on stdin (Asterisk's mailcmd does)",
              file=sys.stderr)
        return os.EX_USAGE
    missed_by = tuple(e.strip() for e in args.missed_by.split(",") if e.strip())
    meta = Meta(id=new_id(), kind=notify.VOICEMAIL, created=time.time(), stage="raw",
                event={"missed_by": list(missed_by), "lang": lang})
    from mikotui.asterisk import MAX_INPUT

    with spool.owner() as owner:
        entry, _over = spool.enqueue_stream(meta, sys.stdin.buffer, limit=MAX_INPUT,
                                              owner=owner)
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
