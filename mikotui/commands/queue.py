"""mikotui queue list [--purged] | retry ID|--all | purge ID | restore ID"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from mikotui.spool import Spool


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
    return _local_time(int(epoch))


@functools.lru_cache(maxsize=4096)
def _local_time(epoch: int) -> str:
    # Retries after an outage bunch up within seconds: one strftime per second.
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (e.g. 50)")
    return int(text)


# Anything a terminal would act on (escapes, line breaks) is shown as a space:
# the files are read as found, and a row stays one row.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


class _Row(NamedTuple):
    id: str
    kind: str
    created: float | None
    next_attempt: float | None
    to: str
    attempts: str
    error: str


def _read_listing(spool: Spool, state: str) -> list[_Row]:
    """Every entry in `state`, oldest first, from its meta.json as read (no
    Meta made: with 50k entries that is the point of this being fast). The
    fields shown are checked; an entry that fails is a row saying why, and
    a line on stderr as the spool's own readers say it."""
    folder = f"{spool.root}/{state}/"
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    rows = []
    loads = json.loads
    from mikotui.spool import _ID, _TOKEN, _read_file

    for name in names:
        entry_id, at, token = name.partition("@")
        if not _ID.fullmatch(entry_id) or (at and not _TOKEN.fullmatch(token)):
            rows.append(_damaged(spool, folder + name, entry_id,
                                 f"not an entry name in {state}/"))
            continue
        try:
            raw = loads(_read_file(f"{folder}{name}/meta.json"))
        except (FileNotFoundError, NotADirectoryError):
            if os.path.isdir(folder + name):  # still there: not claimed meanwhile
                rows.append(_damaged(spool, folder + name, entry_id, "no meta.json"))
            elif os.path.lexists(folder + name):
                rows.append(_damaged(spool, folder + name, entry_id,
                                     f"not a folder in {state}/"))
            continue  # else claimed or settled while we looked
        except (OSError, ValueError, RecursionError) as exc:
            rows.append(_damaged(spool, folder + name, entry_id, f"meta.json: {exc}"))
            continue
        if not isinstance(raw, dict):
            rows.append(_damaged(spool, folder + name, entry_id, "meta.json is not an object"))
            continue
        kind, created, nxt = raw.get("kind"), raw.get("created"), raw.get("next_attempt", 0.0)
        to = raw.get("owed") or raw.get("recipients") or []
        attempts = raw.get("attempts", 0)
        error = raw.get("failed_reason") or raw.get("last_error") or "-"
        if not (raw.get("id") == entry_id and isinstance(kind, str) and _is_time(created)
                and _is_time(nxt) and isinstance(to, list)
                and all(isinstance(a, str) for a in to) and type(attempts) is int
                and isinstance(error, str)):
            rows.append(_damaged(spool, folder + name, entry_id, _why(raw, entry_id)))
            continue
        rows.append(_Row(entry_id, kind, created, nxt, ",".join(to) or "-", str(attempts),
                         " ".join(error.split())))
    return rows


def _is_time(value: object) -> bool:
    return type(value) in (int, float) and math.isfinite(value)  # type: ignore[arg-type]


def _why(raw: dict, entry_id: str) -> str:
    """What the spool's own check says is wrong with `raw`."""
    from mikotui.spool import DamagedEntry, _checked

    if raw.get("id") != entry_id:
        return f'meta.json says it is "{raw.get("id")}"'
    try:
        _checked(raw, strict=True)
    except DamagedEntry as exc:
        return str(exc)
    return "meta.json is not as written"


def _damaged(spool: Spool, path: str, entry_id: str, reason: str) -> _Row:
    spool._note_damaged(Path(path), reason)
    return _Row(entry_id, "?", None, None, "-", "?", f"damaged: {reason}")


def run_list(args: argparse.Namespace) -> int:
    spool = _spool(args)
    states = ("active", "queue", "failed", "purged") if args.purged else (
        "active", "queue", "failed")
    now = time.time()
    by_state: dict[str, int] = {}
    by_kind: dict[str, int] = {}
    oldest: tuple[float, str] | None = None
    rows = []
    for state in states:
        listing = _read_listing(spool, state)
        by_state[state] = len(listing)
        for m in listing:
            by_kind[m.kind] = by_kind.get(m.kind, 0) + 1
            if m.created is not None and (oldest is None or m.created < oldest[0]):
                oldest = (m.created, m.id)
            if state == "queue":
                nxt = _when(m.next_attempt, now) if m.next_attempt is not None else "?"
            else:
                nxt = "sending" if state == "active" else "-"
            rows.append((m.id, state, m.kind, m.to, m.attempts, nxt, m.error))
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
    if spool.damaged:  # each said on stderr too
        lines.append(f"{len(spool.damaged)} damaged (said above): `mikotui deliver` puts "
                     "those in queue/ or active/ into failed/ with the reason")
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
