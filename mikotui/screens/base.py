"""What every screen shares: the bar of screens with the unsaved marker, the
sandbox banner, the test-send progress line and the footer of keys."""

from __future__ import annotations

import dataclasses
import gc
from typing import TYPE_CHECKING, cast

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.dom import DOMNode
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Input, Static

from mikotui import i18n
from mikotui.widgets.nav import NavBar

if TYPE_CHECKING:
    from mikotui.app import MikoApp


def translate_bindings(node: DOMNode, lang: str) -> None:
    """Bindings are declared with i18n keys as descriptions; put them in `lang`."""
    for key, bindings in node._bindings.key_to_bindings.items():
        node._bindings.key_to_bindings[key] = [
            dataclasses.replace(b, description=i18n.ui(lang, b.description))
            if b.description else b
            for b in bindings
        ]


def still_cursors(screen: Screen) -> None:  # type: ignore[type-arg]
    """No blinking cursor when the app asks for none (snapshots, slow links);
    and Tab into a field keeps its text (no select-all that the next key
    would replace: a template is edited, not retyped)."""
    blink = getattr(screen.app, "blink", True)
    for widget in screen.query("Input, TextArea"):
        if not blink:
            widget.cursor_blink = False  # type: ignore[attr-defined]
        if isinstance(widget, Input):
            widget.select_on_focus = False


class BaseScreen(Screen[None]):
    MODE = ""
    _banner_shown = ""
    _message_timer: Timer | None = None

    @property
    def miko(self) -> MikoApp:
        return cast("MikoApp", self.app)

    def t(self, key: str, /, **values: object) -> str:
        return i18n.ui(self.miko.lang, key, **values)

    def on_mount(self) -> None:
        translate_bindings(self, self.miko.lang)
        still_cursors(self)
        # A screen, once built, lives as long as the app: keep it out of the
        # collector's sweeps, which otherwise cost a keystroke ~70 ms now and then.
        gc.freeze()

    def compose(self) -> ComposeResult:
        yield NavBar(self.MODE)
        if self.miko.sandbox_mode:
            yield Static(id="sandbox-banner")
        yield from self.compose_body()
        yield Static(id="message")
        yield Static(id="progress")
        yield Footer(compact=True, show_command_palette=False)

    def compose_body(self) -> ComposeResult:
        yield from ()

    @on(events.DescendantFocus)
    def mark_focused_field(self, event: events.DescendantFocus) -> None:
        """The form row holding the focus gets `-focused` (its label shows
        reversed: a monochrome terminal shows no grey step of background)."""
        from mikotui.widgets.form import Field

        row = next((a for a in event.widget.ancestors if isinstance(a, Field)), None)
        for field in self.query(Field):
            field.set_class(field is row, "-focused")

    @on(Input.Submitted)
    def next_field(self) -> None:
        """Enter in a field goes on to the next one, as in a paper form."""
        self.focus_next()

    def on_screen_resume(self) -> None:
        self.refresh_state()

    def refresh_state(self) -> None:
        app = self.miko
        self.query_one(NavBar).show(app.unsaved, app.lang)
        if app.sandbox_mode and app.sandbox:
            self.show_banner()
        progress = self.query_one("#progress", Static)
        if app.phase.name:
            import time

            progress.update(self.t("send.phase", to=app.phase.to,
                                   phase=self.t(f"phase.{app.phase.name}"),
                                   seconds=int(time.monotonic() - app.phase.started)))
            progress.display = True
        elif progress.display:
            progress.display = False

    def show_banner(self) -> None:
        """Where the sandbox listens and its login, and whether the form
        sends there: a sandbox catches only what is addressed to it."""
        from mikotui import sandbox

        app = self.miko
        sb = app.sandbox
        assert sb is not None
        text = self.t("sandbox.banner", host=sb.host, port=sb.port, user=sandbox.LOGIN,
                      password=sb.auth[1] if sb.auth else "")
        s = app.settings.smtp
        if not (s.host in sandbox.LOCAL_HOSTS and s.port == sb.port):
            text += "\n" + self.t("sandbox.elsewhere", where=f"{s.host}:{s.port}")
        if text != self._banner_shown:
            self.query_one("#sandbox-banner", Static).update(text)
            self._banner_shown = text

    def show_message(self, message: str, title: str, severity: str, timeout: float) -> None:
        """The latest message, in its own rows above the progress line."""
        bar = self.query_one("#message", Static)
        text = Text()
        if title:
            text.append(title, style="bold")
            text.append("\n")
        text.append(message)
        bar.update(text)
        bar.set_classes(f"-{severity}")
        bar.display = True
        if self._message_timer is not None:
            self._message_timer.stop()
        self._message_timer = self.set_timer(timeout, self.hide_message)

    def hide_message(self) -> None:
        self.query_one("#message", Static).display = False

    def focus_key(self, key: str) -> None:
        """Bring the field of a config key into view (after a refused save)."""
        if "[" in key:  # a card's key (employees[0].email): no field here has it
            return
        found = self.query(f"#{key.replace('.', '--')}")
        if found:
            # At once, not animated: the message line just took rows from the
            # form, and a slow SSH link would show the scroll crawl.
            widget = found.first()
            widget.focus(scroll_visible=False)
            widget.scroll_visible(animate=False)
