"""The project's log: one key=value line (msmtp-style) per event, to stderr
and to <spool>/mikotui.log (the file itself, its appends and rotation are
`Spool.log`'s).

Standard library only, and light: every headless command logs, and the
enqueue path the PBX waits on must not pay for the mail machinery to do it.
"""

from __future__ import annotations

import functools
import re
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mikotui.config import Settings
    from mikotui.spool import Spool

# A value is one line whatever it holds: a caller's name or a server's reply
# must not start a forged line of its own.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def record(spool: Spool | None, **fields: object) -> str:
    """One line of `fields` to stderr and the spool's log; returns it.
    Callers pass no secrets; values are made one line and quoted when needed."""
    parts = [f"time={_stamp(int(time.time()))}"]
    for key, value in fields.items():
        if value is None or value == "":
            value = "-"
        text = str(value)
        text = (text if text.isprintable() else _CONTROL.sub(" ", text)).strip()
        if not text or any(c in text for c in ' "=\\'):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        parts.append(f"{key}={text}")
    line = " ".join(parts)
    print(f"mikotui: {line}", file=sys.stderr, flush=True)
    if spool is not None:
        try:
            spool.log(line)
        except OSError as exc:
            print(f"mikotui: cannot write {spool.root}/mikotui.log: {exc.strerror}",
                  file=sys.stderr)
    return line


@functools.lru_cache(maxsize=4)
def _stamp(second: int) -> str:
    # A drain logs a thousand lines a second: one strftime per second.
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(second))


def warn_exposed_password(settings: Settings, spool: Spool | None) -> None:
    """msmtp refuses a config whose secret others can read; refusing here
    would lose the notification, so every run says it in the log instead."""
    from mikotui import config

    if settings.smtp.password and config._readable_by_others(settings.path):
        record(spool, event="warning", config=settings.path,
               problem=f"holds the SMTP password and others can read it "
                       f"(chmod 600 {settings.path})")
