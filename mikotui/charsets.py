"""Bytes from outside -> text: the one place that guesses a charset.

What a PBX hands us is UTF-8 on a modern setup; an old Russian one writes
Windows-1251 or KOI8-R, in argv and in the voicemail Asterisk mails, under
Asterisk's stock `ISO-8859-1` label (voicemail.conf's `charset`) whatever the
bytes really are. Nothing is refused and nothing raises: a byte no charset
explains becomes U+FFFD.
"""

from __future__ import annotations

import os
import re

# Labels that say nothing about a Cyrillic name: Asterisk's stock label, and
# what a mail without one defaults to.
_UNINFORMATIVE = {"iso-8859-1", "iso8859-1", "latin-1", "latin1", "l1", "us-ascii", "ascii",
                  "utf-8", "utf8", ""}
_CYRILLIC = ("cp1251", "koi8_r")
# The letters that make up most of Russian text (о е а и н т с р в л к м д п у).
_COMMON = set("оеаинтсрвлкмдпуяыь")
_HIGH_WORD = re.compile(rb"[\x80-\xff]+")


def decode(data: bytes, declared: str | None = None) -> str:
    """UTF-8 if the bytes are UTF-8; else the label, when it is one that
    means something (KOI8-R, Windows-1251, ISO-8859-5...); else Cyrillic
    (Windows-1251 or KOI8-R, whichever reads as Russian) when the 8-bit
    bytes form whole words, Latin-1 when they sit inside Latin words."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    label = (declared or "").strip().lower()
    if label not in _UNINFORMATIVE:
        try:
            return data.decode(label)
        except (LookupError, UnicodeDecodeError):
            pass
    if label in ("iso-8859-1", "iso8859-1", "latin-1", "latin1", "l1") and not _cyrillic_words(data):
        return data.decode("latin-1")
    return max((data.decode(c, "replace") for c in _CYRILLIC), key=_russianness)


def _cyrillic_words(data: bytes) -> bool:
    """8-bit bytes that make words of their own (Иван Петров), rather than
    letters inside Latin words (José Müller)."""
    whole = inside = 0
    for m in _HIGH_WORD.finditer(data):
        before = data[m.start() - 1:m.start()]
        after = data[m.end():m.end() + 1]
        if before.isalpha() or after.isalpha():
            inside += 1
        elif m.end() - m.start() >= 2:
            whole += 1
    return whole > inside


def _russianness(text: str) -> tuple[int, int, int]:
    """How Russian a reading of 8-bit bytes looks. The same bytes read in
    the other charset come out in the other case (Иван -> иБЮМ): capitals
    after small letters inside a word, box-drawing signs where ё was, rare
    letters, few small ones."""
    misplaced = len(_SMALL_THEN_CAPITAL.findall(text))
    misplaced += sum(not c.isascii() and not ("Ѐ" <= c <= "ӿ") for c in text)  # ╦, ‘, ™
    common = sum(c.lower() in _COMMON for c in text)
    small = sum("а" <= c <= "я" or c == "ё" for c in text)
    return -misplaced, common, small


_SMALL_THEN_CAPITAL = re.compile(r"[а-яё](?=[А-ЯЁ])")


def from_argv(arg: str) -> str:
    """An argument as text. Python hands over bytes that are not valid in
    the locale's encoding as lone surrogates (PEP 383); they are read as the
    bytes they were, by `decode`, instead of crashing whatever writes them."""
    if not any("\ud800" <= c <= "\udfff" for c in arg):
        return arg
    try:
        raw = os.fsencode(arg)
    except UnicodeError:  # a surrogate no locale would make: not bytes we can recover
        return arg.encode("utf-8", "replace").decode("utf-8")
    return decode(raw)
