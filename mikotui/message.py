"""A notification -> an RFC 5322 `EmailMessage` (text + HTML, attachments).

Values from outside (caller IDs, names, templates) never put a control
character into a header: `one_line` replaces them. In the HTML part every
character of the text is escaped, so a value can't inject markup either.
"""

from __future__ import annotations

import html as _html
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from mikotui import i18n, templates
from mikotui.config import Settings


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str  # "maintype/subtype"
    data: bytes


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
    size_mb = len(attachment.data) / (1024 * 1024)
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


def address(display_name: str, addr: str) -> Address:
    addr = one_line(addr)
    username, _, domain = addr.rpartition("@")
    return Address(display_name=one_line(display_name), username=username, domain=domain)


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
    msg["From"] = frm
    msg["To"] = [address("", r) for r in recipients]
    msg["Subject"] = one_line(rendered.subject)
    msg["Date"] = format_datetime(date or datetime.now().astimezone())
    msg["Message-ID"] = make_msgid("mikotui", domain=frm.domain or _local_domain())
    msg["Auto-Submitted"] = "auto-generated"
    # Quoted-printable keeps Cyrillic 7-bit clean for servers without 8BITMIME.
    cte = "7bit" if rendered.text.isascii() else "quoted-printable"
    msg.set_content(rendered.text, charset="utf-8", cte=cte)
    msg.add_alternative(html_text(rendered.text), subtype="html", charset="utf-8",
                        cte="quoted-printable")
    for att in attachments:
        maintype, _, subtype = att.content_type.partition("/")
        msg.add_attachment(att.data, maintype=maintype, subtype=subtype or "octet-stream",
                           filename=one_line(att.filename))
    return msg
