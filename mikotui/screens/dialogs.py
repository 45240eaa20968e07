"""Modal dialogs, each returning a typed answer: quit guard, confirm,
the test recipient, the transcript of a send, a captured mail."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import HorizontalGroup, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Static

from mikotui import config, i18n
from mikotui.widgets.transcript_view import SendReport, TranscriptView

if TYPE_CHECKING:
    from mikotui.app import MikoApp


class Dialog(ModalScreen):  # type: ignore[type-arg]
    # Left/Right walk a row of buttons, as in any dialog box.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "key.cancel", key_display="Esc"),
        Binding("left", "app.focus_previous", show=False),
        Binding("right", "app.focus_next", show=False),
    ]

    def t(self, key: str, /, **values: object) -> str:
        return i18n.ui(cast("MikoApp", self.app).lang, key, **values)

    def compose(self) -> ComposeResult:
        yield from self.compose_dialog()
        # Its own footer: the one of the screen behind lists keys that do
        # not apply here (F7 under the quit dialog); this one says Esc.
        yield Footer(compact=True, show_command_palette=False)

    def compose_dialog(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        from mikotui.screens.base import still_cursors, translate_bindings

        translate_bindings(self, cast("MikoApp", self.app).lang)
        still_cursors(self)

    def action_cancel(self) -> None:
        self.dismiss(None)


class QuitDialog(Dialog):
    """Unsaved changes: "save", "discard" or None (cancel)."""

    def compose_dialog(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.t("quit.title"), classes="dialog-title")
            yield Static(self.t("quit.question"))
            with HorizontalGroup(classes="dialog-buttons"):
                yield Button(self.t("quit.save"), id="save", variant="primary", compact=True)
                yield Button(self.t("quit.discard"), id="discard", variant="error", compact=True)
                yield Button(self.t("quit.cancel"), id="cancel", compact=True)

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#save", Button).focus()

    @on(Button.Pressed)
    def answer(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "cancel" else event.button.id)


class ConfirmDialog(Dialog):
    """A yes/no question; True only for yes."""

    def __init__(self, question: str, yes: str) -> None:
        super().__init__()
        self.question = question
        self.yes = yes

    def compose_dialog(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question)
            with HorizontalGroup(classes="dialog-buttons"):
                yield Button(self.yes, id="yes", variant="error", compact=True)
                yield Button(self.t("quit.cancel"), id="no", compact=True)

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#no", Button).focus()

    @on(Button.Pressed)
    def answer(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class SendTestDialog(Dialog):
    """Who gets the test mail (or a template's mail): the admin by default, or any address typed.
    Returns the address, or None when cancelled."""

    def __init__(self, admin: str, kind: str = "test") -> None:
        super().__init__()
        self.admin = admin
        self.kind = kind  # "test", or the template: "missed" / "voicemail"

    def compose_dialog(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.t(f"test.title.{self.kind}" if self.kind != "test" else "test.title"),
                        classes="dialog-title")
            yield Label(self.t("test.to"))
            yield Input(self.admin, id="to", compact=True, select_on_focus=False)
            yield Static("", id="to-error", classes="field-message")
            with HorizontalGroup(classes="dialog-buttons"):
                yield Button(self.t("test.send"), id="send", variant="primary", compact=True)
                yield Button(self.t("quit.cancel"), id="cancel", compact=True)

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#to-error").display = False
        self.query_one("#to", Input).focus()

    @on(Input.Submitted)
    @on(Button.Pressed, "#send")
    def send(self) -> None:
        to = self.query_one("#to", Input).value.strip()
        if not config.addresses(to) or config.bad_addresses(to):  # one or "a@x, b@y"
            error = self.query_one("#to-error", Static)
            error.update(Text("✖ " + self.t("test.bad_address"), style="red"))
            error.display = True
            return
        self.dismiss(to)

    @on(Button.Pressed, "#cancel")
    def cancel(self) -> None:
        self.dismiss(None)


class TranscriptScreen(Dialog):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "key.close", key_display="Esc")]

    def __init__(self, report: SendReport) -> None:
        super().__init__()
        self.report = report

    def compose_dialog(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(self.t("transcript.title"), classes="dialog-title")
            yield TranscriptView(self.report, cast("MikoApp", self.app).lang, id="transcript")
            with HorizontalGroup(classes="dialog-buttons"):
                yield Button(self.t("key.close"), id="close", compact=True)

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(TranscriptView).focus()

    @on(Button.Pressed, "#close")
    def close(self) -> None:
        self.dismiss(None)


class HelpScreen(Dialog):
    """Every key, and what each screen is for."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "key.close", key_display="Esc")]

    def compose_dialog(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(self.t("help.title"), classes="dialog-title")
            with VerticalScroll(id="help"):
                for key in ("help.everywhere", "help.smtp", "help.templates", "help.outbox"):
                    yield Static(Text(self.t(key)), classes="help-part")
            with HorizontalGroup(classes="dialog-buttons"):
                yield Button(self.t("key.close"), id="close", compact=True)

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#help").focus()

    @on(Button.Pressed, "#close")
    def close(self) -> None:
        self.dismiss(None)


class MailScreen(Dialog):
    """A mail the sandbox captured: its headers and text."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "key.close", key_display="Esc")]

    def __init__(self, title: str, content: str) -> None:
        super().__init__()
        self.title_text = title
        self.content = content

    def compose_dialog(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(self.title_text, classes="dialog-title")
            with VerticalScroll(id="mail"):
                yield Static(Text(self.content))
            with HorizontalGroup(classes="dialog-buttons"):
                yield Button(self.t("key.close"), id="close", compact=True)

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#mail").focus()

    @on(Button.Pressed, "#close")
    def close(self) -> None:
        self.dismiss(None)
