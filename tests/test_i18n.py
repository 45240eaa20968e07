"""The one catalog of words (mikotui/i18n.py): every message in English and
Russian with the same placeholders, every code the program names is in it,
and the Russian screens show no English sentence."""

from __future__ import annotations

import dataclasses
import html
import re
import string
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import ROOT

from mikotui import config, i18n

SOURCES = sorted((ROOT / "mikotui").rglob("*.py"))
SNAPSHOTS = ROOT / "tests" / "__snapshots__" / "test_tui_snapshots"


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


@pytest.mark.parametrize("key", sorted(i18n.CATALOG))
def test_every_message_has_every_language_with_the_same_placeholders(key: str) -> None:
    entry = i18n.CATALOG[key]
    texts = {lang: getattr(entry, lang) for lang in i18n.LANGUAGES}
    assert all(t.strip() for t in texts.values()), f"{key}: a language is empty"
    assert len({frozenset(placeholders(t)) for t in texts.values()}) == 1, texts


def named_keys() -> set[str]:
    """Catalog keys the code names literally; an f-string's key up to its
    first {field} is kept as a prefix ending in "{"."""
    calls = re.compile(r"""\b(?:t|ui|text)\(\s*(?:[\w.]+,\s*)?f?"([a-z_]+\.[^"]*)"\s*[,)]""")
    found = set()
    for path in SOURCES:
        for m in calls.finditer(path.read_text()):
            key = m.group(1)
            found.add(key.split("{")[0] + "{" if "{" in key else key)
    return found


def problem_codes() -> set[str]:
    """Problem codes: add(key, "code" ...), fail(key, "code" ...), EndpointError("code" ...)."""
    calls = re.compile(r"""\b(?:add|fail|set_input_error)\([^,()]+,\s*"([a-z_]+)"|code = "([a-z_]+)"|"""
                       r"""EndpointError\("([a-z_]+)"|"(unknown_\w+_guess|unknown_\w+)\"""")
    text = "\n".join(p.read_text() for p in SOURCES)
    return {"".join(groups) for groups in calls.findall(text)}


def failure_kinds() -> set[str]:
    smtp = (ROOT / "mikotui" / "smtp.py").read_text()
    kinds = set(re.findall(r"""(?:_failure|SmtpFailure)\(\s*"([a-z_]+)\"""", smtp))
    kinds |= set(re.findall(r"""_coded_kind\([^,]+,\s*"([a-z_]+)"\)""", smtp))
    kinds |= set(re.findall(r"""return "([a-z_]+)"\n""", smtp.split("def _coded_kind")[1]
                            .split("\ndef ")[0]))
    return kinds


def test_every_key_the_code_names_is_in_the_catalog() -> None:
    keys = named_keys()
    assert len(keys) > 80  # the scan sees the program's keys
    missing = sorted(k for k in keys
                     if not (k in i18n.CATALOG if not k.endswith("{")
                             else any(c.startswith(k[:-1]) for c in i18n.CATALOG)))
    assert missing == []


def test_every_problem_code_is_in_the_catalog() -> None:
    codes = problem_codes()
    assert {"port_range", "unknown_key_guess", "whole_number", "not_int"} <= codes
    assert sorted(c for c in codes if f"problem.{c}" not in i18n.CATALOG) == []


def test_every_failure_kind_has_a_name_and_a_fix() -> None:
    kinds = failure_kinds()
    assert {"auth_failed", "timeout", "too_big", "temporary"} <= kinds
    assert sorted(k for k in kinds if f"failure.{k}" not in i18n.CATALOG) == []
    assert sorted(k for k in kinds if f"fix.{k}" not in i18n.CATALOG) == []


# --- the Russian screens -----------------------------------------------------------

# Words that are data, not the UI's: the sample config's people and sender,
# and what the sample servers answered (shown as they said it).
DATA = ("Office PBX", "Smith James", "Brown Brandon", "Try again later, closing connection",
        "no such user", "Username and Password not accepted", "MikoPBX notification")
# A line of the SMTP transcript: the protocol record, as swaks shows it.
TRANSCRIPT_LINE = re.compile(r"(?:->|<-|~>|<~|===|\*\*\*) ")
# Two or more English words in a row (a word with a lower-case letter, so
# parameter names and acronyms such as SMTP or TLS do not count).
SENTENCE = re.compile(r"\b[A-Za-z][a-z]+(?:[ ,:]+[A-Za-z][a-z]+\b)+")


def screen_lines(svg: Path) -> list[str]:
    rows: dict[float, list[tuple[float, str]]] = defaultdict(list)
    for m in re.finditer(r'<text class="terminal-r\d+" x="([\d.]+)" y="([\d.]+)"[^>]*>([^<]*)</text>',
                         svg.read_text()):
        rows[float(m.group(2))].append(
            (float(m.group(1)), html.unescape(m.group(3)).replace("\xa0", " ")))
    return ["".join(t for _, t in sorted(row)) for _, row in sorted(rows.items())]


# A code that leaked instead of its words ("auth_failed"); a config key a
# message names for the admin to set is not one.
CODE = re.compile(r"\b[a-z]+(?:_[a-z0-9]+)+\b")
CONFIG_KEYS = {f.name for section in (*config.SECTIONS.values(), config.Employee)
               for f in dataclasses.fields(section)}


def english_in(line: str) -> list[str]:
    if TRANSCRIPT_LINE.search(line):
        return []
    for data in DATA:
        line = line.replace(data, " ")
    line = re.sub(r"`[^`]*(?:`|$)", " ", line)  # a command to type is typed as it is
    line = re.sub(r"\b(?:Tab|Enter|Shift|Esc)\b", " ", line)  # key names, as on the keys
    line = re.sub(r"\S*[@/.]\S*", " ", line)  # addresses, hosts, paths, MIME types
    codes = [c for c in CODE.findall(line) if c not in CONFIG_KEYS]
    return SENTENCE.findall(line) + codes


RU_SNAPSHOTS = sorted(SNAPSHOTS.glob("*ru*.svg"))


def test_the_scan_sees_english() -> None:
    assert english_in("▏Show the phase ^T") == ["Show the phase"]
    assert english_in("Ошибка: auth failed") == ["auth failed"]
    assert english_in("Ошибка: auth_failed") == ["auth_failed"]
    assert english_in("разрешает allow_insecure_auth = true") == []
    assert english_in("От: Office PBX <pbx@mycompany.com>") == []


@pytest.mark.parametrize("svg", RU_SNAPSHOTS, ids=lambda p: p.stem)
def test_russian_screens_show_no_english_sentence(svg: Path) -> None:
    found = [(line.strip(), english_in(line)) for line in screen_lines(svg) if english_in(line)]
    assert found == []


def test_every_screen_has_a_russian_snapshot() -> None:
    assert len(RU_SNAPSHOTS) >= 11
