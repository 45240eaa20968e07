"""Template parameters and rendering (SPEC §3).

A parameter is written as its bare name (`NOTIFICATION_CALLERID`, the MikoPBX
rule) or as `${NAME}` (what Asterisk users write). Only whole tokens are
replaced, in one pass, so a value that happens to contain a parameter name is
never expanded again and no name eats part of a longer one.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

KINDS = ("missed_call", "voicemail")


@dataclass(frozen=True)
class Parameter:
    name: str
    description_en: str
    description_ru: str
    sample: str

    def description(self, language: str) -> str:
        return self.description_ru if language == "ru" else self.description_en


MISSED_CALL_PARAMETERS: tuple[Parameter, ...] = (
    Parameter("NOTIFICATION_CALLERID", "who called (number)", "кто звонил (номер)",
              "79261234567"),
    Parameter("NOTIFICATION_NAME_FROM", "caller's name", "имя звонившего", "Иван Петров"),
    Parameter("NOTIFICATION_TO", "who was called (extension)", "кому звонили (номер)", "201"),
    Parameter("NOTIFICATION_NAME_TO", "callee's name", "имя вызываемого", "Smith James"),
    Parameter("NOTIFICATION_DATE", "call date, YYYY-MM-DD HH:MM:SS",
              "дата звонка, ГГГГ-ММ-ДД ЧЧ:ММ:СС", "2026-11-26 14:03:12"),
    Parameter("NOTIFICATION_DURATION", "ringing time, seconds", "длительность, секунды", "23"),
    Parameter("NOTIFICATION_MISSEDCAUSE", "why it was missed (NOANSWER)",
              "причина пропуска (NOANSWER)", "NOANSWER"),
)

VOICEMAIL_PARAMETERS: tuple[Parameter, ...] = (
    Parameter("VM_CALLERID", "caller: name and number", "звонивший: имя и номер",
              '"Иван Петров" <79261234567>'),
    Parameter("VM_CALLER_NAME", "caller's name", "имя звонившего", "Иван Петров"),
    Parameter("VM_CALLER_NUM", "caller's number", "номер звонившего", "79261234567"),
    Parameter("VM_DATE", "date and time of the message", "дата и время сообщения",
              "2026-11-26 14:03:12"),
    Parameter("VM_DUR", "length of the message, m:ss", "длительность сообщения, м:сс", "0:07"),
    Parameter("VM_NAME", "mailbox owner's name", "имя владельца ящика", "Smith James"),
    Parameter("VM_MAILBOX", "mailbox number", "номер голосового ящика", "201"),
    Parameter("VM_MSGNUM", "message number in the mailbox", "номер сообщения в ящике", "1"),
)

PARAMETERS: dict[str, tuple[Parameter, ...]] = {
    "missed_call": MISSED_CALL_PARAMETERS,
    "voicemail": VOICEMAIL_PARAMETERS,
}


def parameters(kind: str) -> tuple[Parameter, ...]:
    return PARAMETERS.get(kind, ())


def parameter_names(kind: str) -> tuple[str, ...]:
    return tuple(p.name for p in parameters(kind))


def sample_values(kind: str) -> dict[str, str]:
    return {p.name: p.sample for p in parameters(kind)}


@lru_cache(maxsize=32)
def _pattern(names: tuple[str, ...]) -> re.Pattern[str]:
    alts = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(rf"\$\{{({alts})\}}|(?<![\w$])({alts})(?!\w)")


def render(template: str, values: Mapping[str, str]) -> str:
    """Replace every known parameter (a key of `values`) by its value."""
    if not values or not template:
        return template
    pattern = _pattern(tuple(values))
    return pattern.sub(lambda m: str(values[m.group(1) or m.group(2)]), template)


# Looks like a parameter: ${ANY_NAME}, or a bare upper-case token with one of
# the prefixes our parameters use.
_CANDIDATE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|(?<![\w$])((?:NOTIFICATION|VM)_[A-Z0-9_]*)(?!\w)")


def unknown_parameters(template: str, known: Iterable[str]) -> list[str]:
    """Tokens that look like parameters but are not known, in order, once each."""
    known = set(known)
    found: list[str] = []
    for m in _CANDIDATE.finditer(template):
        name = m.group(1) or m.group(2)
        if name not in known and name not in found:
            found.append(name)
    return found


def unknown_spans(template: str, known: Iterable[str]) -> list[tuple[int, int, str]]:
    """(start, end, token) of every unknown parameter, for marking in a preview."""
    known = set(known)
    return [
        (m.start(), m.end(), m.group(1) or m.group(2))
        for m in _CANDIDATE.finditer(template)
        if (m.group(1) or m.group(2)) not in known
    ]


def suggest(token: str, known: Iterable[str]) -> str | None:
    match = difflib.get_close_matches(token, list(known), n=1, cutoff=0.6)
    return match[0] if match else None
