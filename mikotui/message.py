"""A notification -> an RFC 5322 `EmailMessage` (text + HTML, attachments).

Values from outside (caller IDs, names, templates) are text, never header
syntax: `one_line` replaces control characters, and `header_text` writes the
header itself — plain words as they are, anything else (non-ASCII, a `=?`
that a reader would decode as an RFC 2047 encoded word, a word too long for
a line) as encoded words of our own, so what a reader decodes is exactly the
text we were given. No line of a header or body passes 78 characters (RFC
5322 §2.1.1 allows 998; strict servers refuse more). In the HTML part every
character of the text is escaped, so a value can't inject markup either.
"""

from __future__ import annotations

import base64
import html as _html
import io
import os
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import BinaryIO

from mikotui import i18n, templates
from mikotui.config import Settings
from mikotui.durable import open_private


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str  # "maintype/subtype"
    data: bytes = b""
    # Where the bytes are instead of `data`: a long recording stays in a
    # file of its spool entry, read a block at a time, never held whole.
    path: Path | None = None

    @property
    def size(self) -> int:
        return os.stat(self.path).st_size if self.path is not None else len(self.data)

    def open(self) -> BinaryIO:
        return open_private(self.path) if self.path is not None else io.BytesIO(self.data)

    def head(self, size: int) -> bytes:
        """The first `size` bytes (what a recording's format is told by)."""
        if self.path is None:
            return self.data[:size]
        with self.open() as f:
            return f.read(size)

    def read(self) -> bytes:
        if self.path is None:
            return self.data
        with self.open() as f:
            return f.read()


@dataclass(frozen=True)
class Rendered:
    """What a person reads: the subject and the text (body + footer)."""

    subject: str
    text: str


def render(kind: str, settings: Settings, values: Mapping[str, str]) -> Rendered:
    """Fill the `missed_call` or `voicemail` template of `settings`."""
    tpl = getattr(settings, kind)
    values = {k: str(v) for k, v in values.items()}
    # Every known parameter is replaced, a missing value by nothing, so a
    # mail never shows a raw NOTIFICATION_NAME_FROM to its reader.
    full = {name: values.get(name, "") for name in templates.parameter_names(kind)}
    full.update(values)
    body = templates.render(tpl.body, full)
    footer = templates.render(tpl.footer, full)
    text = body.rstrip("\n") + ("\n\n" + footer if footer.strip() else "")
    return Rendered(one_line(templates.render(tpl.subject, full)), text)


def render_test(settings: Settings, lang: str) -> Rendered:
    s = settings.smtp
    ep = s.shown_endpoint()
    auth = s.username if s.username else i18n.text(lang, "test.no_auth")
    body = i18n.text(lang, "test.body", host=ep.host, port=ep.port, encryption=ep.encryption,
                     auth=auth)
    return Rendered(i18n.text(lang, "test.subject"), body)


def render_system(subject: str, message: str) -> Rendered:
    return Rendered(one_line(subject), message)


def with_note(rendered: Rendered, note: str) -> Rendered:
    return replace(rendered, text=f"{rendered.text}\n\n{note}" if note else rendered.text)


def fit_attachment(attachment: Attachment | None, limit_mb: float,
                   lang: str) -> tuple[tuple[Attachment, ...], str]:
    """The attachments to send and a note for the text when one is left out."""
    if attachment is None:
        return (), i18n.text(lang, "attachment.missing")
    size_mb = attachment.size / (1024 * 1024)
    if size_mb > limit_mb:
        return (), i18n.text(lang, "attachment.too_big", size_mb=size_mb, limit_mb=limit_mb)
    return (attachment,), ""


# --- headers ----------------------------------------------------------------

# C0, DEL, C1 and the Unicode line/paragraph separators: anything a mail
# reader or server could take as the end of a header line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def one_line(value: str) -> str:
    """A header-safe single line: control characters become one space."""
    return _CONTROL.sub(" ", value).strip()


QUOTE_LIMIT = 200  # characters of outside text an alert quotes


def excerpt(text: object, limit: int = QUOTE_LIMIT) -> str:
    """`text` as one line of at most `limit` characters, for a mail that
    quotes another (an alert quoting a 1,200-digit subject or the server's
    reply to it): the reader needs to recognise it, not all of it."""
    text = one_line(str(text or ""))
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def address(display_name: str, addr: str) -> Address:
    addr = one_line(addr)
    username, _, domain = addr.rpartition("@")
    return Address(display_name=one_line(display_name), username=username, domain=domain)


LINE = 78  # RFC 5322's "SHOULD" for a line, far under the 998 a server enforces
_EW_START, _EW_END = "=?utf-8?b?", "?="
_PLAIN = re.compile(r"[\x21-\x7e]*")  # printable ASCII, no space
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]*")  # a display-name word, unquoted


def header_text(name: str, text: str, *, words: re.Pattern[str] = _PLAIN) -> str:
    """The wire form of header `name`'s value `text`, folded at LINE (its
    continuation lines start with a space; unfolding gives the value back).
    The email package is not trusted with outside text: it decodes a `=?..?=`
    found in a plain `str` value, so a caller ID could decode to CR LF and a
    header of its own. Plain words are written as they are; if any word is
    not plain (per `words`), holds `=?`, or is too long, the whole value
    becomes UTF-8 base64 encoded words, each whole characters."""
    text = one_line(text)
    first = LINE - len(name) - 2  # room on the line that starts "Name: "
    # Folding happens before a space that starts a word: a line of spaces
    # only is not a header line to every reader (RFC 5322 §3.2.2).
    pieces = re.split(r"(?= [^ ])", text)
    if all(words.fullmatch(p.lstrip(" ")) and "=?" not in p and len(p) < first
           for p in pieces):
        return _folded(pieces, first)
    data = text.encode("utf-8", "replace")
    encoded, start = [], 0
    room = (first - len(_EW_START) - len(_EW_END)) // 4 * 3  # bytes in the first word
    while start < len(data):
        end = min(start + room, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # not inside a character
            end -= 1
        # End a word after a space when one is near: a reader that (wrongly)
        # keeps the fold between two encoded words then shows a double space
        # between words rather than a space inside one (Python's does, in a From name).
        space = data.rfind(b" ", start + room // 2, end)
        if end < len(data) and space >= 0:
            end = space + 1
        encoded.append(_EW_START + base64.b64encode(data[start:end]).decode() + _EW_END)
        start, room = end, (LINE - 1 - len(_EW_START) - len(_EW_END)) // 4 * 3
    # Whitespace between encoded words is dropped by a reader (RFC 2047 §6.2).
    return "\n ".join(encoded)


def _folded(pieces: list[str], first: int) -> str:
    lines, line, room = [], "", first
    for piece in pieces:
        if line and len(line) + len(piece) > room:
            lines.append(line)
            line, room = "", LINE
        line += piece
    return "\n".join([*lines, line])


def _set_header(msg: EmailMessage, name: str, value: str) -> None:
    """Store a value `header_text` made; the policy writes its lines as they are."""
    msg.set_raw(name, value)


def sender_header(frm: Address) -> str:
    """The From: value: our own encoding of the display name (outside text
    in a config or a template), then the address."""
    spec = frm.addr_spec
    if not frm.display_name:
        return spec
    name = header_text("From", frm.display_name, words=_ATOM)
    last = name.rsplit("\n", 1)[-1]
    room = (LINE - len("From: ")) if "\n" not in name else LINE
    return f"{name}{' ' if len(last) + len(spec) + 3 <= room else chr(10) + ' '}<{spec}>"


def sender(settings: Settings) -> Address:
    s = settings.smtp
    return address(s.from_name, s.from_address or f"mikopbx@{_local_domain()}")


def _local_domain() -> str:
    # gethostname() asks no DNS server, unlike getfqdn().
    name = socket.gethostname() or "localhost"
    return name if "." in name else "localhost"


def html_text(text: str) -> str:
    """The plain text as a small clean HTML page: escaped, newlines as <br>."""
    body = "<br>\n".join(_html.escape(line) for line in text.split("\n"))
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head>\n"
        "<body style=\"font-family: Arial, Helvetica, sans-serif; font-size: 14px; "
        "line-height: 1.5; color: #222;\">\n"
        f"<div style=\"max-width: 640px;\">\n{body}\n</div>\n</body></html>\n"
    )


def compose(
    rendered: Rendered,
    recipients: Iterable[str],
    settings: Settings,
    *,
    attachments: Iterable[Attachment] = (),
    date: datetime | None = None,
) -> EmailMessage:
    msg = EmailMessage()
    frm = sender(settings)
    _set_header(msg, "From", sender_header(frm))
    msg["To"] = [address("", r) for r in recipients]
    _set_header(msg, "Subject", header_text("Subject", rendered.subject))
    msg["Date"] = format_datetime(date or datetime.now().astimezone())
    msg["Message-ID"] = make_msgid("mikotui", domain=frm.domain or _local_domain())
    msg["Auto-Submitted"] = "auto-generated"
    # Quoted-printable keeps Cyrillic 7-bit clean for servers without 8BITMIME,
    # and folds a long line (a 1,200-digit caller ID) that a server would refuse.
    plain = rendered.text.isascii() and all(len(line) <= LINE
                                            for line in rendered.text.splitlines())
    cte = "7bit" if plain else "quoted-printable"
    msg.set_content(rendered.text, charset="utf-8", cte=cte)
    msg.add_alternative(html_text(rendered.text), subtype="html", charset="utf-8",
                        cte="quoted-printable")
    for att in attachments:
        maintype, _, subtype = att.content_type.partition("/")
        msg.add_attachment(att.read(), maintype=maintype, subtype=subtype or "octet-stream",
                           filename=one_line(att.filename))
    return msg
