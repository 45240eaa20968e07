"""mikotui test-email [--to ADDR] [--quiet]: send the test mail now and show
what the server said, swaks-style, with one verdict line at the end."""

from __future__ import annotations

import argparse
import os
import sys


def register(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("test-email", parents=[common],
                       help="send a test email now; print the transcript",
                       description="Send the test email with the config's SMTP settings "
                                   "(even when notifications are switched off), print the "
                                   "SMTP conversation and a verdict. Exit 0 delivered, "
                                   "75 temporary failure, 69 permanent failure, "
                                   "78 config error.")
    p.add_argument("--to", metavar="ADDR", help="recipient (default: notifications.admin_email)")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="print only the verdict line")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from mikotui import config, i18n, smtp

    path = config.resolve_path(args.config)
    settings = config.load_valid(path)
    if why := config.untrusted(settings):
        raise config.ConfigError(f"refusing to send with it: {why}")
    if args.to is not None and not config.is_email(args.to):
        print(f"mikotui: --to: not an email address: {args.to!r}", file=sys.stderr)
        return os.EX_USAGE
    lang = i18n.language(args.lang, settings.ui.language)
    to = args.to or settings.notifications.admin_email
    try:
        result = asyncio.run(smtp.send_test_email(settings, lang, to))
    except smtp.SmtpFailure as failure:
        _transcript(failure.transcript, args.quiet)
        print(f"FAILED ({failure.kind}): {failure.summary()} — {failure.hint(lang)}")
        if failure.kind == "config":
            return os.EX_CONFIG
        return os.EX_UNAVAILABLE if failure.permanent else os.EX_TEMPFAIL
    _transcript(result.transcript, args.quiet)
    print(f"OK: delivered to {', '.join(result.accepted)} in {result.elapsed:.2f} s")
    return 0


def _transcript(transcript, quiet: bool) -> None:
    if transcript is not None and not quiet:
        sys.stdout.write(transcript.text())
