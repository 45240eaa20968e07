"""The rendered email as its reader will see it: From, To, Subject, the
attachment line, then body + footer; unknown parameters marked."""

from __future__ import annotations

from rich.text import Text
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from mikotui import i18n, message, preview, templates
from mikotui.config import Settings

UNKNOWN_STYLE = "bold white on red"
_SECTION = {"missed": "missed_call", "voicemail": "voicemail"}


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
        header("attachment", preview.attachment_line(att))
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


class EmailPreview(ScrollView, can_focus=True):
    """The preview, drawn line by line (Textual's line API): a keystroke
    re-wraps the text but paints only the rows in view, so a 5 kB body costs
    what a short one does. Focusable, so the keyboard can scroll it."""

    def __init__(self, kind: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.kind = kind
        self.text = Text()
        self._lines: list[Text] = []
        self._strips: dict[int, Strip] = {}
        self._wrapped_at = 0

    @property
    def plain(self) -> str:
        return self.text.plain

    def show(self, settings: Settings, lang: str) -> None:
        self.text = render_preview(self.kind, settings, lang)
        self._wrap()

    def on_resize(self) -> None:
        if self.scrollable_content_region.width != self._wrapped_at:
            self._wrap()

    def _wrap(self) -> None:
        width = max(1, self.scrollable_content_region.width)
        self._wrapped_at = width
        self._lines = list(self.text.wrap(self.app.console, width, overflow="fold"))
        self._strips.clear()
        self.virtual_size = Size(width, len(self._lines))
        self.refresh()

    def render_line(self, y: int) -> Strip:
        index = y + self.scroll_offset.y
        width = self.scrollable_content_region.width
        if index >= len(self._lines):
            return Strip.blank(width, self.rich_style)
        strip = self._strips.get(index)
        if strip is None:
            segments = self._lines[index].render(self.app.console)
            strip = Strip(list(segments)).extend_cell_length(width).apply_style(
                self.rich_style)
            self._strips[index] = strip
        return strip.crop(0, width)
