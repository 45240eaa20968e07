"""mikotui deliver [--watch]: drain the spool; --watch keeps going."""

from __future__ import annotations

import argparse
import os
import sys


def register(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("deliver", parents=[common], help="send what is queued",
                       description="Send every queued notification that is due, over one "
                                   "connection per batch. --watch keeps running (stop it "
                                   "with SIGTERM or Ctrl-C): new notifications go out "
                                   "within a second, retries at their times.")
    p.add_argument("--watch", action="store_true", help="keep running, as a service")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from mikotui import config, deliver, i18n
    from mikotui.spool import Spool, SpoolError

    settings = config.load(config.resolve_path(args.config))
    settings = config.with_language(settings, i18n.language(args.lang, settings.ui.language))
    spool = Spool(settings.spool_dir(), settings.spool.max_age_hours)
    try:
        spool.ensure()
        if args.watch:
            report = deliver.watch(settings, spool)
        else:
            report = deliver.drain(settings, spool)
    except (SpoolError, OSError) as exc:
        print(f"mikotui: spool {spool.root}: {getattr(exc, 'strerror', None) or exc}",
              file=sys.stderr)
        return os.EX_CANTCREAT
    print(f"sent {report.sent}, deferred {report.deferred}, failed {report.failed}")
    return 0
