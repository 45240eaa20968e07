"""mikotui deliver [--watch]: drain the spool; --watch keeps going."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mikotui.due import DueIndex


def register(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("deliver", parents=[common], help="send what is queued",
                       description="Send every queued notification that is due, over one "
                                   "connection per batch. --watch keeps running (stop it "
                                   "with SIGTERM or Ctrl-C): new notifications go out "
                                   "within a second, retries at their times.")
    p.add_argument("--watch", action="store_true", help="keep running, as a service")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from mikotui import config, deliver, i18n, log
    from mikotui.due import DueIndex
    from mikotui.spool import Spool, SpoolError

    path = config.resolve_path(args.config)

    def load():
        settings = config.load(path)
        if why := config.untrusted(settings):
            raise config.ConfigError(f"refusing to send with it: {why}")
        return config.with_language(settings, i18n.language(args.lang, settings.ui.language))

    settings = load()
    spool = Spool(settings.spool_dir(), settings.spool.max_age_hours)
    try:
        spool.ensure()
        log.warn_exposed_password(settings, spool)
        index = DueIndex(spool) if not args.watch else None
        if index is None:
            report = deliver.watch(settings, spool, config_file=deliver.ConfigFile(path, load))
        else:
            report = deliver.drain(settings, spool, index=index)
    except SpoolError as exc:
        print(f"mikotui: {exc}", file=sys.stderr)
        return os.EX_CANTCREAT
    except OSError as exc:
        print(f"mikotui: spool {spool.root}: {exc.strerror or exc}", file=sys.stderr)
        return os.EX_CANTCREAT
    print(f"sent {report.sent}, deferred {report.deferred}, failed {report.failed}")
    if not settings.notifications.enabled and not args.watch:
        print("notifications are off (notifications.enabled = false): nothing is sent; "
              "what is queued waits until they are on again", file=sys.stderr)
    if report.setup_problem:
        print(f"the SMTP settings look wrong ({report.setup_problem}): "
              "`mikotui test-email` shows why", file=sys.stderr)
    if index is not None:
        _say_what_waits(index)
        index.close()
    return 0


def _say_what_waits(index: DueIndex) -> None:
    """An admin who just fixed the server runs `deliver` and sees "sent 0":
    tell them what still waits for its retry time, and how not to wait."""
    import time

    index.refresh()
    index.prune()
    first = index.first_retry()
    if first is not None:
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(first))
        print(f"{len(index)} waiting to be retried (the first at {at}); "
              "`mikotui queue retry --all` makes them due now")
