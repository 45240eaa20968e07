"""mikotui queue list [--purged] | retry ID|--all | purge ID | restore ID"""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import stat
import sys
import time


def register(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("queue", parents=[common], help="look at and act on the spool",
                       description="List the spool, send a failed or waiting notification "
                                   "again, or purge one (restorable for 7 days).")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = actions.add_parser("list", parents=[common],
                            help="id, state, kind, recipients, attempts, next attempt, last error",
                            description="One line per entry, oldest first (sending, then "
                                        "waiting, then failed), and a summary line.")
    ls.add_argument("--purged", action="store_true",
                    help="also the purged entries that `queue restore` can bring back")
    ls.add_argument("--limit", type=_count, default=None, metavar="N",
                    help="at most N lines (the summary still counts them all)")
    ls.add_argument("--offset", type=_count, default=0, metavar="N",
                    help="skip the first N lines (with --limit: the next page)")
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


def _when(epoch: float, now: float) -> str:
    if epoch <= now:
        return "now"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (e.g. 50)")
    return int(text)


# Anything a terminal would act on (escapes, line breaks) is shown as a space:
# the files are read as found, and a row stays one row.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _read_regular(path: str) -> bytes:
    """A file's bytes, never through a link, a FIFO or a device (each would
    have the listing read what it points at, or wait forever)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        return f.read()


def _read_listing(root: str, state: str) -> list[dict]:
    """The meta.json of every entry in `state`, oldest first, as read (no
    Meta made: 50k of them are the point of this being fast); an entry
    that can't be read is a row that says so."""
    folder = f"{root}/{state}/"
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    rows = []
    loads = json.loads
    for name in names:
        try:
            raw = loads(_read_regular(f"{folder}{name}/meta.json"))
        except (FileNotFoundError, NotADirectoryError):
            continue  # claimed or settled while we looked
        except (OSError, ValueError, RecursionError) as exc:
            raw = {"kind": "?", "last_error": f"unreadable: {exc}"}
        if not isinstance(raw, dict):
            raw = {"kind": "?", "last_error": "unreadable: meta.json is not an object"}
        raw["id"] = name.partition("@")[0]
        rows.append(raw)
    return rows


def run_list(args: argparse.Namespace) -> int:
    spool = _spool(args)
    root = str(spool.root)
    states = ("active", "queue", "failed", "purged") if args.purged else (
        "active", "queue", "failed")
    now = time.time()
    by_state: dict[str, int] = {}
    by_kind: dict[str, int] = {}
    oldest: tuple[float, str] | None = None
    rows = []
    for state in states:
        listing = _read_listing(root, state)
        by_state[state] = len(listing)
        for m in listing:
            kind = _text(m.get("kind")) or "?"
            by_kind[kind] = by_kind.get(kind, 0) + 1
            created = m.get("created")
            if isinstance(created, (int, float)) and (oldest is None or created < oldest[0]):
                oldest = (created, m["id"])
            if state == "queue":
                nxt = m.get("next_attempt")
                nxt = _when(nxt, now) if isinstance(nxt, (int, float)) else "?"
            else:
                nxt = "sending" if state == "active" else "-"
            to = m.get("owed") or m.get("recipients")
            to = ",".join(a for a in to if isinstance(a, str)) if isinstance(to, list) else ""
            error = _text(m.get("failed_reason")) or _text(m.get("last_error")) or "-"
            attempts = m.get("attempts")
            rows.append((m["id"], state, kind, to or "-",
                         str(attempts) if isinstance(attempts, int) else "?", nxt,
                         " ".join(error.split())))
    if not rows:
        purged = len(os.listdir(spool.root / "purged")) if not args.purged else 0
        aside = f" ({purged} purged: `queue list --purged` shows them)" if purged else ""
        print(f"the spool {spool.root} is empty{aside}")
        return 0
    shown = rows[args.offset:]
    if args.limit is not None:
        shown = shown[:args.limit]
    head = ("ID", "STATE", "KIND", "RECIPIENTS", "ATTEMPTS", "NEXT ATTEMPT", "LAST ERROR")
    table = [head, *shown]
    w = [max(map(len, column)) for column in list(zip(*table))[:6]]
    lines = []
    for r in table:
        line = (f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:<{w[2]}}  {r[3]:<{w[3]}}  "
                f"{r[4]:<{w[4]}}  {r[5]:<{w[5]}}  {r[6]}")
        lines.append(line if line.isprintable() else _UNPRINTABLE.sub(" ", line))
    lines.append(_summary(rows, shown, args.offset, by_state, by_kind, oldest))
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


_STATE_NAMES = {"active": "sending", "queue": "waiting", "failed": "failed",
                "purged": "purged"}


def _summary(rows: list, shown: list, offset: int, by_state: dict[str, int],
             by_kind: dict[str, int], oldest: tuple[float, str] | None) -> str:
    """One line: how many in each state and of each kind, the oldest entry,
    and which lines were shown when not all were."""
    states = ", ".join(f"{n} {_STATE_NAMES[s]}" for s, n in by_state.items())
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(by_kind.items()))
    line = f"{len(rows)} entries: {states}; {kinds}"
    if oldest is not None:
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(oldest[0]))
        line += f"; oldest {oldest[1]} ({at})"
    line = _UNPRINTABLE.sub(" ", line)
    if len(shown) < len(rows):
        first, last = offset + 1, offset + len(shown)
        page = f"lines {first}-{last}" if shown else "no lines"
        line += f"; {page} shown"
        if last < len(rows):
            line += f", --offset {last} for the next"
    return line


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
