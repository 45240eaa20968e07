"""Template parameters and rendering.

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
    sample: str
    # The sample is words, not data: the catalog's "sample.<name>" in each language.
    worded: bool = False

    def sample_in(self, language: str) -> str:
        from mikotui import i18n

        return i18n.text(language, f"sample.{self.name}") if self.worded else self.sample

    def description(self, language: str) -> str:
        from mikotui import i18n

        return i18n.text(language, f"param.{self.name}")


MISSED_CALL_PARAMETERS: tuple[Parameter, ...] = (
    Parameter("NOTIFICATION_CALLERID", "79261234567"),
    Parameter("NOTIFICATION_NAME_FROM", "Иван Петров"),
    Parameter("NOTIFICATION_TO", "201"),
    Parameter("NOTIFICATION_NAME_TO", "Smith James"),
    Parameter("NOTIFICATION_DATE", "2026-11-26 14:03:12"),
    Parameter("NOTIFICATION_DURATION", "23"),
    Parameter("NOTIFICATION_MISSEDCAUSE", "NOANSWER"),
    Parameter("NOTIFICATION_VIA", "via Sales queue", worded=True),
)

VOICEMAIL_PARAMETERS: tuple[Parameter, ...] = (
    Parameter("VM_CALLERID", '"Иван Петров" <79261234567>'),
    Parameter("VM_CALLER_NAME", "Иван Петров"),
    Parameter("VM_CALLER_NUM", "79261234567"),
    Parameter("VM_DATE", "2026-11-26 14:03:12"),
    Parameter("VM_DUR", "0:07"),
    Parameter("VM_NAME", "Smith James"),
    Parameter("VM_MAILBOX", "201"),
    Parameter("VM_MSGNUM", "1"),
)

PARAMETERS: dict[str, tuple[Parameter, ...]] = {
    "missed_call": MISSED_CALL_PARAMETERS,
    "voicemail": VOICEMAIL_PARAMETERS,
}


def parameters(kind: str) -> tuple[Parameter, ...]:
    return PARAMETERS.get(kind, ())


def parameter_names(kind: str) -> tuple[str, ...]:
    return tuple(p.name for p in parameters(kind))


def sample_values(kind: str, language: str = "en") -> dict[str, str]:
    return {p.name: p.sample_in(language) for p in parameters(kind)}


@lru_cache(maxsize=32)
def _pattern(names: tuple[str, ...]) -> re.Pattern[str]:
    alts = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(rf"\$\{{({alts})\}}|(?<![\w$])({alts})(?!\w)")


def render(template: str, values: Mapping[str, str]) -> str:
    """Replace every known parameter (a key of `values`) by its value. An
    empty value takes one space beside it along, so "from NAME NUMBER"
    with no name reads "from NUMBER", not "from  NUMBER"."""
    if not values or not template:
        return template
    out: list[str] = []
    pos = 0
    for m in _pattern(tuple(values)).finditer(template):
        out.append(template[pos:m.start()])
        value = str(values[m.group(1) or m.group(2)])
        pos = m.end()
        if not value:
            before = "".join(out)[-1:]
            after = template[pos:pos + 1]
            if after == " " and before in ("", " ", "\n"):
                pos += 1
            elif before == " " and after in ("", "\n", ",", ".", ")"):
                out = ["".join(out)[:-1]]
        out.append(value)
    out.append(template[pos:])
    return "".join(out)


# Looks like a parameter: ${ANY_NAME}, or a bare token with one of the
# prefixes our parameters use, to its last word character: so a parameter glued
# to the next word ("NOTIFICATION_NAME_FROMYou") or a typo ("..._CALERIDx") is
# one unknown token, flagged, not something that silently stays as written.
_CANDIDATE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|(?<![\w$])((?:NOTIFICATION|VM)_\w*)")


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
    """The parameter meant: the longest one the token starts with (glued to
    the next word), else the closest spelling."""
    known = list(known)
    prefixes = [name for name in known if token.startswith(name)]
    if prefixes:
        return max(prefixes, key=len)
    match = difflib.get_close_matches(token, known, n=1, cutoff=0.6)
    return match[0] if match else None
