"""Emails rendered with the parameter table's sample values: what
`mikotui preview` prints and what the TUI shows as you type."""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage

from mikotui import asterisk, audio, message, routing, templates
from mikotui.config import Settings
from mikotui.message import Attachment, Rendered

KINDS = ("missed", "voicemail", "test")
_TEMPLATE_OF = {"missed": "missed_call", "voicemail": "voicemail"}


@dataclass(frozen=True)
class Preview:
    kind: str
    rendered: Rendered
    recipients: tuple[str, ...]
    attachments: tuple[Attachment, ...]
    # Parameters in the template that nothing fills, per part.
    unknown: dict[str, list[str]]

    def message(self, settings: Settings) -> EmailMessage:
        return message.compose(self.rendered, self.recipients or ("user@example.com",),
                               settings, attachments=self.attachments)


def sample_recording(seconds: float = 1.0) -> bytes:
    """A short silent 8 kHz mono WAV, the shape Asterisk records."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * int(8000 * seconds))
    return buf.getvalue()


def build(kind: str, settings: Settings, lang: str | None = None) -> Preview:
    lang = lang or settings.ui.language
    if kind == "test":
        rendered = message.render_test(settings, lang)
        return Preview(kind, rendered, routing.admin(settings), (), {})
    section = _TEMPLATE_OF[kind]
    values = templates.sample_values(section, lang)
    tpl = getattr(settings, section)
    known = templates.parameter_names(section)
    unknown = {part: found for part in ("subject", "body", "footer")
               if (found := templates.unknown_parameters(getattr(tpl, part), known))}
    rendered = message.render(section, settings, values)
    if kind == "missed":
        recipients = routing.missed_call(settings, values["NOTIFICATION_TO"],
                                         values["NOTIFICATION_CALLERID"])
        return Preview(kind, rendered, recipients, (), unknown)
    when = datetime.strptime(values["VM_DATE"], "%Y-%m-%d %H:%M:%S")
    recording = Attachment(asterisk.recording_name(values, when), "audio/x-wav",
                           sample_recording())
    # The same conversion a real voicemail gets, so the line shows what is sent.
    recording, _ = audio.for_mail(recording, settings.voicemail.attachment_format, lang)
    attachments, note = message.fit_attachment(
        recording, settings.voicemail.max_attachment_mb, lang)
    rendered = message.with_note(rendered, note)
    recipients = routing.voicemail(settings, (), values["VM_MAILBOX"])
    return Preview(kind, rendered, recipients, attachments, unknown)


def as_text(preview: Preview, settings: Settings) -> str:
    """Headers and the plain body, as a person reads the mail."""
    msg = preview.message(settings)
    lines = [f"{h}: {msg[h]}" for h in ("From", "To", "Subject")]
    for att in preview.attachments:
        lines.append(f"Attachment: {attachment_line(att)}")
    lines.append("")
    lines.append(preview.rendered.text)
    for part, tokens in preview.unknown.items():
        lines.append(f"\n! unknown parameter in {part}: {', '.join(tokens)}")
    return "\n".join(lines) + "\n"


def as_html(preview: Preview) -> str:
    return message.html_text(preview.rendered.text)


def attachment_line(att: Attachment) -> str:
    """How an attachment is shown in place of its bytes."""
    return f"{att.filename} ({_size(att.size)}, {att.content_type})"


def _size(n: int) -> str:
    return f"{n / 1024:.1f} kB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MB"
