"""mikotui notify missed|voicemail|system: what the PBX calls per event.

The argparse face of `mikotui.intake`, which does the work: the event is
made durable in the spool before anything can fail, then (unless
--queue-only) delivered at once.
"""

from __future__ import annotations

import argparse
import sys
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
    from mikotui import intake

    event: intake.Event
    if args.kind == "missed":
        from mikotui.notify import MissedCall

        event = MissedCall(caller=args.caller, called=args.called,
                           caller_name=args.caller_name, called_name=args.called_name,
                           duration=args.duration, date=args.date)
    elif args.kind == "voicemail":
        event = intake.Voicemail(missed_by=tuple(args.missed_by.split(",")))
    else:
        event = intake.SystemAlert(subject=args.subject, text=args.message)
    return intake.run(event, config_path=args.config, lang=args.lang,
                      queue_only=args.queue_only, stdin=_piped())


def _piped() -> BinaryIO | None:
    """stdin when something is piped to it (not a terminal, not closed)."""
    if sys.stdin is None or sys.stdin.isatty():
        return None
    return sys.stdin.buffer
