"""mikotui queue list [--purged] | retry ID|--all | purge ID | restore ID"""

from __future__ import annotations

import argparse
import os
import sys
import time


def register(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("queue", parents=[common], help="look at and act on the spool",
                       description="List the spool, send a failed or waiting notification "
                                   "again, or purge one (restorable for 7 days).")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = actions.add_parser("list", parents=[common],
                            help="id, state, kind, recipients, attempts, next attempt, last error")
    ls.add_argument("--purged", action="store_true",
                    help="also the purged entries that `queue restore` can bring back")
    ls.set_defaults(handler=run_list)
    retry = actions.add_parser("retry", parents=[common],
                               help="make one (or --all failed and waiting) due now")
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", help="the entry's id (from `queue list`)")
    which.add_argument("--all", action="store_true", help="every failed and waiting entry")
    retry.set_defaults(handler=run_retry)
    purge = actions.add_parser("purge", parents=[common],
                               help="take one entry out of the queue (restorable for 7 days)")
    purge.add_argument("id", help="the entry's id (from `queue list`)")
    purge.set_defaults(handler=run_purge)
    restore = actions.add_parser("restore", parents=[common],
                                 help="undo a purge: the entry is due now")
    restore.add_argument("id", help="the entry's id (from `queue list --purged`)")
    restore.set_defaults(handler=run_restore)


def _spool(args: argparse.Namespace):
    from mikotui import config
    from mikotui.spool import Spool

    settings = config.load(config.resolve_path(args.config))
    return Spool(settings.spool_dir(), settings.spool.max_age_hours).ensure()


def _when(epoch: float) -> str:
    if epoch <= time.time():
        return "now"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def run_list(args: argparse.Namespace) -> int:
    spool = _spool(args)
    rows = []
    states = ("active", "queue", "failed", "purged") if args.purged else (
        "active", "queue", "failed")
    for state in states:
        for e in spool.entries(state):
            m = e.meta
            nxt = {"queue": _when(m.next_attempt), "active": "sending",
                   "failed": "-", "purged": "-"}[state]
            error = m.failed_reason or m.last_error or "-"
            rows.append((m.id, state, m.kind, ",".join(m.owed or m.recipients) or "-",
                         str(m.attempts), nxt, " ".join(error.split())))
    if spool.damaged:  # each said above; not an empty spool
        print(f"{len(spool.damaged)} damaged (said above): `mikotui deliver` puts those "
              "in queue/ or active/ into failed/ with the reason")
    if not rows:
        if spool.damaged:
            return 0
        purged = sum(1 for _ in spool.entries("purged"))
        aside = f" ({purged} purged: `queue list --purged` shows them)" if purged else ""
        print(f"the spool {spool.root} is empty{aside}")
        return 0
    head = ("ID", "STATE", "KIND", "RECIPIENTS", "ATTEMPTS", "NEXT ATTEMPT", "LAST ERROR")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(6)]
    for r in [head, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r[:6], widths)) + "  " + r[6])
    return 0


def run_retry(args: argparse.Namespace) -> int:
    from mikotui.spool import SpoolError

    spool = _spool(args)
    ids = [args.id] if args.id else [e.id for s in ("failed", "queue") for e in spool.entries(s)]
    done = 0
    with spool.owner() as owner:
        for entry_id in ids:
            try:
                spool.retry(entry_id, owner)
                done += 1
            except SpoolError as exc:
                print(f"mikotui: {exc}", file=sys.stderr)
                if args.id:
                    return os.EX_DATAERR
    print(f"{done} due now; `mikotui deliver` sends them")
    return 0


def run_purge(args: argparse.Namespace) -> int:
    from mikotui.spool import SpoolError

    spool = _spool(args)
    try:
        entry = spool.purge(args.id)
    except SpoolError as exc:
        print(f"mikotui: {exc}", file=sys.stderr)
        return os.EX_DATAERR
    print(f"purged {entry.id} ({entry.meta.kind}: {entry.meta.subject}); "
          f"undo with `mikotui queue restore {entry.id}`")
    return 0


def run_restore(args: argparse.Namespace) -> int:
    from mikotui.spool import SpoolError

    spool = _spool(args)
    try:
        with spool.owner() as owner:
            entry = spool.restore(args.id, owner)
    except SpoolError as exc:
        print(f"mikotui: {exc}", file=sys.stderr)
        return os.EX_DATAERR
    print(f"restored {entry.id} ({entry.meta.kind}: {entry.meta.subject}); "
          "due now, `mikotui deliver` sends it")
    return 0
