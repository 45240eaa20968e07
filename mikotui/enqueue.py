"""The path the PBX waits on: `notify missed --queue-only` makes the call
durable with the standard library alone, and the deliverer does the rest.

Why: the dialplan runs this once per missed call, on the two cores that
also carry the calls' audio. Loading the config's types, the templates and
the email package took more than half of the command's time, before
anything reached the disk. So the entry holds the event itself (stage
"event": who called whom, when, how long it rang, the names the dialplan
gave), written as `Spool.enqueue` writes entries, and `notify.ready_event`
turns it into the mail just before it is sent.

What is fixed when the call is stored: the call (its date is taken then).
What the settings decide is decided when it is sent, with the settings of
that moment: who gets it, the names from the employee cards, the language's
default texts, the template's wording, and whether missed-call mail is
switched on at all. A template edited during an outage is the one the
waiting calls go out with, each attempt rendered from one config.

Anything out of the ordinary (no config, a TOML error, a spool to create
or refuse, notifications switched off, a --date to check) is left to the
full intake (`intake.run`), which says what is wrong as always: `missed`
returns None for that, before it wrote anything.

Also here, for the same reason: where the config file and the spool are
(`config` uses these too).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import sys
import time
import tomllib

from mikotui import durable, log

DEFAULT_CONFIG = "config/mikotui.toml"  # under the working folder
DEFAULT_SPOOL = "../var/spool"  # relative to the config file's folder
EVENT = "event"  # the stage of an entry that holds the event, not yet a mail


def config_path(arg: str | os.PathLike[str] | None = None) -> str:
    """--config, else $MIKOTUI_CONFIG, else config/mikotui.toml under the cwd."""
    return os.fspath(arg or os.environ.get("MIKOTUI_CONFIG") or DEFAULT_CONFIG)


def spool_root(config_file: str | os.PathLike[str] | None, spool_path: str) -> str:
    """Relative spool paths are relative to the config file's folder."""
    p = os.path.expanduser(spool_path)
    if not os.path.isabs(p):
        base = os.path.dirname(os.fspath(config_file)) if config_file else os.getcwd()
        p = os.path.join(base, p)
    return os.path.abspath(p)


def missed_problem(duration: str, via: list[str] | None) -> str:
    """What is wrong with a missed call's --duration or --via ("" if nothing)."""
    if not duration.strip().isdigit():
        return f"--duration {duration!r} is not whole seconds (e.g. 23)"
    if via is not None and (via[0].strip().lower() not in ("queue", "group")
                            or not via[1].strip()):
        import shlex

        return (f"--via {shlex.join(via)} is not 'queue NAME' or 'group NAME' "
                "(e.g. --via queue Sales)")
    return ""


def missed(config_arg: str | None, lang: str | None, *, caller: str, called: str,
           caller_name: str, called_name: str, duration: str, date: str,
           via: list[str] | None) -> int | None:
    """Store one missed call as its event; the exit code, or None when the
    full intake must take it (nothing was written then)."""
    if date:
        return None  # checked by the full intake (strptime is not free)
    problem = missed_problem(duration, via)
    if problem:
        print(f"mikotui: {problem}", file=sys.stderr)
        return os.EX_USAGE
    path = config_path(config_arg)
    root = _usable_spool(path)
    if root is None:
        return None
    meta = missed_meta(lang, caller=caller, called=called, caller_name=caller_name,
                       called_name=called_name, duration=duration, via=via)
    entry_id = meta["id"]
    tmp = f"{root}/tmp/{entry_id}"
    try:
        os.mkdir(tmp, 0o700)
    except OSError:
        return None
    try:
        durable.write_file(f"{tmp}/meta.json", json.dumps(meta, indent=1).encode("ascii"))
        trash = durable.trash_path(root, entry_id)
        durable.publish(tmp, f"{root}/queue/{entry_id}", trash)
    except OSError:
        # Not stored: the full intake tries again, or rescues the call. Left
        # in tmp/, an old one would be salvaged into queue/ by a deliverer.
        with contextlib.suppress(OSError):
            durable.remove_folder(tmp)
        return None
    log.record(log.LogFile(root), id=entry_id, kind="missed", event="queued",
               called=called, stage=EVENT)
    return 0


def missed_meta(lang: str | None, *, caller: str, called: str, caller_name: str,
                called_name: str, duration: str, via: list[str] | None) -> dict:
    """The meta.json of a missed call stored as its event, dated now."""
    now = time.time()
    event = {"caller": caller, "called": called, "caller_name": caller_name,
             "called_name": called_name, "duration": duration.strip(),
             "date": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)),
             "via": [via[0].strip().lower(), via[1].strip()] if via else None,
             "lang": lang or ""}
    return {"id": durable.new_id(now), "kind": "missed", "created": now, "stage": EVENT,
            "event": event}


def _usable_spool(path: str) -> str | None:
    """The spool `path` names, if the config reads, notifications are on and
    the spool's folders are there and ours alone (else None: the full intake
    creates them, or refuses them and says why)."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, ValueError):  # TOMLDecodeError and UnicodeDecodeError are ValueErrors
        return None
    spool = data.get("spool", {})
    notifications = data.get("notifications", {})
    if not (isinstance(spool, dict) and isinstance(notifications, dict)):
        return None
    if notifications.get("enabled", True) is not True or \
            notifications.get("missed_call", True) is not True:
        return None  # switched off (or not a boolean): the full intake says so
    spool_path = spool.get("path", DEFAULT_SPOOL)
    if not isinstance(spool_path, str) or not spool_path:
        return None
    root = spool_root(path, spool_path)
    me = os.geteuid()
    for folder in (root, f"{root}/tmp", f"{root}/queue"):
        try:
            st = os.lstat(folder)
        except OSError:
            return None
        # A plain folder of ours that nobody else may write to; anything else
        # (a link, another owner) is for `Spool.ensure` to judge.
        if not (stat.S_ISDIR(st.st_mode) and st.st_uid == me and not st.st_mode & 0o022):
            return None
    return root

