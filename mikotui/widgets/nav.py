"""The top line: the four screens (clickable, with their F-keys) and the
unsaved-changes marker."""

from __future__ import annotations

from textual.widgets import Static

from mikotui import i18n

SCREENS = (("smtp", "F1"), ("missed", "F2"), ("voicemail", "F3"), ("outbox", "F4"),
           ("employees", "F5"))


class NavBar(Static):
    def __init__(self, current: str) -> None:
        super().__init__(id="nav")
        self.current = current
        self._shown = ""

    def show(self, unsaved: bool, lang: str) -> None:
        parts: list[str] = []
        for mode, key in SCREENS:
            label = f" {key} {i18n.ui(lang, 'nav.' + mode)} "
            if mode == self.current:
                parts.append(f"[bold $text on $primary]{label}[/]")
            else:
                parts.append(f"[@click=app.switch_mode('{mode}')]{label}[/]")
        words = f"● {i18n.ui(lang, 'unsaved')}"
        width = sum(len(f" {key} {i18n.ui(lang, 'nav.' + mode)} ") for mode, key in SCREENS)
        if width + 2 + len(words) > (self.size.width or self.app.size.width):
            words = "●"  # five screens in Russian at 80 columns: the dot alone still says it
        marker = f"  [$warning]{words}[/]" if unsaved else ""
        content = "".join(parts) + marker
        if content != self._shown:  # an update re-lays out; most keys change nothing here
            self._shown = content
            self.update(content)
