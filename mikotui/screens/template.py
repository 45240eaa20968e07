"""A template screen (missed call, voicemail): its address, subject, body
and footer beside the parameter list and the live preview."""

from __future__ import annotations

from typing import ClassVar

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Input, Label, OptionList, TextArea

from mikotui.config import Problem
from mikotui.screens.base import BaseScreen
from mikotui.widgets.email_preview import EmailPreview
from mikotui.widgets.form import Field, key_of, number, value_of, widget_id, with_value
from mikotui.widgets.parameter_list import ParameterList

PARTS = ("subject", "body", "footer")


def spaced(name: str, before: str, after: str) -> str:
    """`name` with a space on each side where it would touch a word: a bare
    parameter glued to a word is not replaced (NOTIFICATION_TOYou)."""
    lead = " " if before[-1:].isalnum() or before[-1:] == "_" else ""
    trail = " " if after[:1].isalnum() or after[:1] == "_" else ""
    return f"{lead}{name}{trail}"


class TemplateArea(TextArea):
    """A template's body or footer. Its own handler passes each edit on to
    the screen at once: bubbling the Changed message up three containers let
    a frame or two be painted first, which showed as preview lag."""

    def on_mount(self) -> None:
        # TextArea binds F6 and F7 (select line / select all): in a template
        # they would eat the app's Transcript and Insert parameter keys.
        for key in ("f6", "f7"):
            self._bindings.key_to_bindings.pop(key, None)

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        event.stop()
        screen = self.screen
        if isinstance(screen, TemplateScreen):
            screen.edited(self, self.text)


class TemplateScreen(BaseScreen):
    SECTION = ""  # "missed_call" | "voicemail"
    PREVIEW = ""  # preview.build kind: "missed" | "voicemail"
    NUMBER_KEYS: tuple[str, ...] = ()  # number fields above the subject
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f7", "parameters", "key.parameters", key_display="F7"),
    ]

    def __init__(self) -> None:
        super().__init__()
        # Where a chosen parameter goes: the template field used last.
        self._target = f"{self.SECTION}.body"

    def compose_body(self) -> ComposeResult:
        tpl = getattr(self.miko.settings, self.SECTION)
        s = self.SECTION
        with Horizontal(classes="template"):
            with Vertical(classes="template-form"):
                yield Field(f"{s}.email", self.t(f"label.{s}.email"),
                            Input(tpl.email, id=widget_id(f"{s}.email"), compact=True,
                                  placeholder=self.t(f"placeholder.{s}.email"), select_on_focus=False))
                for key in self.NUMBER_KEYS:
                    yield Field(key, self.t(f"label.{key}"),
                                Input(f"{value_of(self.miko.settings, key):g}", id=widget_id(key),
                                      compact=True, select_on_focus=False, type="number",
                                      classes="short"))
                yield Field(f"{s}.subject", self.t("label.subject"),
                            Input(tpl.subject, id=widget_id(f"{s}.subject"), compact=True, select_on_focus=False))
                yield from self.extra_fields()
                yield Label(self.t("label.body"), classes="area-label")
                yield TemplateArea(tpl.body, id=widget_id(f"{s}.body"), soft_wrap=True,
                               classes="body", compact=True)
                yield Field(f"{s}.body", "")
                yield Label(self.t("label.footer"), classes="area-label")
                yield TemplateArea(tpl.footer, id=widget_id(f"{s}.footer"), soft_wrap=True,
                               classes="footer", compact=True)
                yield Field(f"{s}.footer", "")
            with Vertical(classes="template-side"):
                yield Label(self.t("label.parameters"), classes="area-label")
                yield ParameterList(s, self.miko.lang, id="parameters", compact=True)
                yield Label(self.t("label.preview"), classes="area-label")
                yield EmailPreview(self.PREVIEW, id="preview")

    def extra_fields(self) -> ComposeResult:
        """Fields of this kind of mail only, below the subject."""
        yield from ()

    def on_mount(self) -> None:
        super().on_mount()
        self.refresh_state()

    # --- edits ----------------------------------------------------------------

    @on(Input.Changed)
    def line_changed(self, event: Input.Changed) -> None:
        self.edited(event.input, event.value)

    def edited(self, widget: Widget, value: str) -> None:
        key = key_of(widget)
        if not (key and key.startswith(self.SECTION + ".")):
            return
        if key in self.NUMBER_KEYS:
            amount = number(value)
            self.miko.set_input_error(key, None if amount is not None else "number")
            if amount is not None:
                self.miko.edit(with_value(self.miko.settings, key, amount))
            return
        self.miko.edit(with_value(self.miko.settings, key, value))

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        key = key_of(event.widget)
        if key and key.split(".")[1] in PARTS:
            self._target = key
        # The body's and footer's labels sit above them: mark the focused one
        # (a background a grey step lighter is all a monochrome terminal lost).
        for label, area in zip(self.query(".template-form > .area-label"),
                               self.query(TemplateArea), strict=False):
            label.set_class(area is event.widget, "-focused")

    def action_parameters(self) -> None:
        """From a subject, body or footer straight to the list; Enter puts the
        parameter where the cursor was (Tab to the list would pass through
        the fields below and take the last of them)."""
        self.query_one("#parameters").focus()

    def action_back_to_field(self) -> None:
        self.query_one(f"#{widget_id(self._target)}").focus()

    @on(OptionList.OptionSelected, "#parameters")
    def insert_parameter(self, event: OptionList.OptionSelected) -> None:
        """Put the chosen parameter at the cursor of the last template field."""
        name = event.option.id or ""
        target = self.query_one(f"#{widget_id(self._target)}")
        if isinstance(target, TextArea):
            row, col = target.cursor_location
            line = target.document.get_line(row)
            target.insert(spaced(name, line[:col], line[col:]))
        elif isinstance(target, Input):
            at = target.cursor_position
            target.insert_text_at_cursor(spaced(name, target.value[:at], target.value[at:]))
        target.focus()

    # --- state ----------------------------------------------------------------

    def refresh_state(self) -> None:
        super().refresh_state()
        app = self.miko
        for field in self.query(Field):
            problems = [p for p in app.problems if p.key == field.key]
            if field.key in app.input_errors:
                problems = [Problem(field.key, app.input_errors[field.key])]
            field.show(problems, "", app.lang)
        self.query_one(EmailPreview).show(app.settings, app.lang)
