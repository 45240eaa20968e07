"""mikotui notify missed|voicemail|system|login: what the PBX calls per event.

The argparse face of `mikotui.intake`, which does the work: the event is
made durable in the spool before anything can fail, then (unless
--queue-only) delivered at once.
"""

from __future__ import annotations

import argparse
import sys

TYPE_CHECKING = False  # typing's own costs the PBX's enqueue a few milliseconds
if TYPE_CHECKING:
    from typing import Any, BinaryIO


def register(sub: Any, common: argparse.ArgumentParser) -> None:
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
    m.add_argument("--caller-name-base64", default="", metavar="B64",
                   help="the caller's name as base64 (the dialplan's BASE64_ENCODE(), "
                        "which keeps a name away from the shell)")
    m.add_argument("--called", required=True, metavar="EXT", help="the extension called")
    m.add_argument("--called-name", default="", metavar="NAME",
                   help="the callee's name (default: the employee card of EXT)")
    m.add_argument("--duration", default="0", metavar="SEC",
                   help="ringing time, seconds (empty or below 0: 0)")
    m.add_argument("--date", default="", metavar="'YYYY-MM-DD HH:MM:SS'",
                   help="when the call was (default: now)")
    m.add_argument("--via", nargs=2, default=None, metavar=("queue|group", "NAME"),
                   help="the call came through this queue or ring group "
                        "(NOTIFICATION_VIA says so; --caller stays the original caller)")

    v = kind("voicemail", "a voicemail: the email Asterisk pipes to mailcmd, on stdin")
    v.add_argument("--missed-by", default="", metavar="EXT[,EXT...]",
                   help="extensions that missed the call (each gets the voicemail)")

    s = kind("system", "a system alert to the administrator")
    s.add_argument("--subject", required=True, help="the subject line")
    s.add_argument("--message", default=None, help="the text (default: read stdin)")

    g = kind("login", "a sign-in to the PBX web interface, to the administrator "
                      "(notifications.login; at most one per user and address in 5 minutes)")
    g.add_argument("--user", required=True, metavar="NAME", help="who signed in")
    g.add_argument("--address", required=True, metavar="IP", help="from where (an IP address)")
    g.add_argument("--when", default="", metavar="'YYYY-MM-DD HH:MM:SS'",
                   help="when (default: now)")


def run(args: argparse.Namespace) -> int:
    if args.kind == "missed":
        caller_name = args.caller_name or _from_base64(args.caller_name_base64)
        if args.queue_only:  # the dialplan's call: the standard library's path
            from mikotui import enqueue

            code = enqueue.missed(args.config, args.lang, caller=args.caller,
                                  called=args.called, caller_name=caller_name,
                                  called_name=args.called_name,
                                  duration=_seconds(args.duration), date=args.date,
                                  via=args.via)
            if code is not None:
                return code
    from mikotui import intake

    event: intake.Event
    if args.kind == "missed":
        from mikotui.notify import MissedCall

        event = MissedCall(caller=args.caller, called=args.called, caller_name=caller_name,
                           called_name=args.called_name, duration=_seconds(args.duration),
                           date=args.date, via=tuple(args.via) if args.via else None)
    elif args.kind == "voicemail":
        event = intake.Voicemail(missed_by=tuple(args.missed_by.split(",")))
    elif args.kind == "login":
        from mikotui.notify import Login

        event = Login(user=args.user, address=args.address, when=args.when)
    else:
        event = intake.SystemAlert(subject=args.subject, text=args.message)
    return intake.run(event, config_path=args.config, lang=args.lang,
                      queue_only=args.queue_only, stdin=_piped())


def _from_base64(text: str) -> str:
    """The caller's name from the dialplan's BASE64_ENCODE(): UTF-8 as the
    channel has it, else Windows-1251. Broken base64 costs the name, never
    the notification."""
    if not text.strip():
        return ""
    import binascii

    from mikotui import charsets  # not asterisk's: that loads the email package

    try:
        raw = binascii.a2b_base64(text.strip().encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        print(f"mikotui: --caller-name-base64 {text[:40]!r} is not base64; sent without "
              "the name", file=sys.stderr)
        return ""
    return charsets.decode(raw, None)


def _seconds(text: str) -> str:
    """The dialplan computes the ring time as $[${EPOCH} - start]: empty if
    its start was lost, negative after the clock was set back. Either still
    is a missed call, rung for 0 s; anything else is left for the check."""
    text = text.strip()
    if not text:
        return "0"
    if text.startswith("-") and text[1:].isdigit():
        return "0"
    return text


def _piped() -> BinaryIO | None:
    """stdin when something is piped to it (not a terminal, not closed)."""
    if sys.stdin is None or sys.stdin.isatty():
        return None
    return sys.stdin.buffer
