"""A labelled form row with its message line, and the one way an edit
becomes a new Settings."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from textual.app import ComposeResult
from textual.containers import HorizontalGroup, VerticalGroup
from textual.markup import escape
from textual.widget import Widget
from textual.widgets import Checkbox, Label, RadioButton, Static

from mikotui.config import Problem, Settings


class Switch(Checkbox):
    """A checkbox whose state shows without colour (a monochrome SSH
    terminal): X when on, blank when off."""

    @property
    def BUTTON_INNER(self) -> str:  # type: ignore[override]
        return "X" if self.value else " "


class Choice(RadioButton):
    """A radio button whose state shows without colour: ● chosen, ○ not."""

    @property
    def BUTTON_INNER(self) -> str:  # type: ignore[override]
        return "●" if self.value else "○"


def with_value(settings: Settings, key: str, value: Any) -> Settings:
    """`settings` with `section.name` set to `value` (Settings are immutable)."""
    section, name = key.split(".", 1)
    return replace(settings, **{section: replace(getattr(settings, section), **{name: value})})


def value_of(settings: Settings, key: str) -> Any:
    section, name = key.split(".", 1)
    return getattr(getattr(settings, section), name)


def number(text: str) -> float | None:
    """A number field's text as a number (3, 2.5, 2,5), or None."""
    try:
        return float(text.strip().replace(",", "."))
    except ValueError:
        return None


def widget_id(key: str) -> str:
    return key.replace(".", "--")


def key_of(widget: Widget) -> str | None:
    return widget.id.replace("--", ".") if widget.id and "--" in widget.id else None


class Field(VerticalGroup):
    """Label, control, and below the control its error, warning or hint."""

    def __init__(self, key: str, label: str, *controls: Widget) -> None:
        super().__init__(classes="field")
        self.key = key
        self.label = label
        self.controls = controls
        self._shown: list[tuple[str, str]] | None = None

    def compose(self) -> ComposeResult:
        if self.controls:
            with HorizontalGroup(classes="field-row"):
                yield Label(self.label, classes="field-label")
                yield from self.controls
        else:
            self.add_class("-bare")  # only the messages of a field shown above it
        yield Static("", classes="field-message")

    def show(self, problems: Iterable[Problem], hint: str = "", lang: str = "en") -> None:
        """Errors first, then warnings, then the hint; nothing hides the row."""
        problems = sorted(problems, key=lambda p: p.level != "error")
        lines = [(p.level, p.text(lang)) for p in problems]
        if hint:
            lines.append(("hint", hint))
        if lines == self._shown:  # typing mostly leaves a field's verdict as it was
            return
        self._shown = lines
        message = self.query_one(".field-message", Static)
        if not lines:
            message.display = False
            self.remove_class("-error", "-warning")
            return
        markup = {"error": "[$error]✖ {}[/]", "warning": "[$warning]! {}[/]",
                  "hint": "[$accent]→ {}[/]"}
        message.update("\n".join(markup[level].format(escape(text)) for level, text in lines))
        message.display = True
        self.set_class(any(level == "error" for level, _ in lines), "-error")
        self.set_class(any(level == "warning" for level, _ in lines), "-warning")
