"""The rendered email as its reader will see it: From, To, Subject, the
attachment line, then body + footer; unknown parameters marked."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from mikotui import i18n, message, preview, templates
from mikotui.config import Settings

UNKNOWN_STYLE = "bold white on red"
_SECTION = {"missed": "missed_call", "voicemail": "voicemail"}


def _size(n: int) -> str:
    return f"{n / 1024:.1f} kB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MB"


def render_preview(kind: str, settings: Settings, lang: str) -> Text:
    """One Rich Text of the preview; pure, so it is measured in bench/."""
    built = preview.build(kind, settings, lang)
    known = templates.parameter_names(_SECTION.get(kind, ""))
    out = Text()

    def header(name: str, value: str, marked: bool = False) -> None:
        out.append(f"{i18n.ui(lang, 'preview.' + name)}: ", style="bold")
        out.append_text(_marked(value, known) if marked else Text(value))
        out.append("\n")

    header("from", str(message.sender(settings)))
    to = ", ".join(built.recipients) or i18n.ui(lang, "preview.nobody")
    header("to", to)
    header("subject", built.rendered.subject, marked=True)
    for att in built.attachments:
        header("attachment", f"{att.filename} ({_size(len(att.data))}, {att.content_type})")
    out.append("─" * 20 + "\n", style="dim")
    out.append_text(_marked(built.rendered.text, known))
    for part, tokens in built.unknown.items():
        out.append("\n")
        out.append(i18n.ui(lang, "preview.unknown", part=i18n.ui(lang, "part." + part),
                           tokens=", ".join(tokens)), style="bold red")
    return out


def _marked(text: str, known: tuple[str, ...]) -> Text:
    rich = Text(text)
    for start, end, _ in templates.unknown_spans(text, known):
        rich.stylize(UNKNOWN_STYLE, start, end)
    return rich


class EmailPreview(VerticalScroll):
    """Scrollable (and focusable, so the keyboard can scroll a long mail)."""

    def __init__(self, kind: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.kind = kind

    def compose(self) -> ComposeResult:
        yield Static(classes="preview-text")

    def show(self, settings: Settings, lang: str) -> None:
        self.query_one(".preview-text", Static).update(render_preview(self.kind, settings, lang))
