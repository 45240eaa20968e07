"""The parameters a template may use: name, meaning, sample value. Choosing
one (Enter or click) asks the screen to insert it at the cursor."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from mikotui import templates


class ParameterList(OptionList):
    # Esc: back to the field F7 came from, nothing inserted.
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "screen.back_to_field", show=False)]

    def __init__(self, kind: str, lang: str, **kwargs: object) -> None:
        options = [Option(self._prompt(p, lang), id=p.name) for p in templates.parameters(kind)]
        super().__init__(*options, **kwargs)  # type: ignore[arg-type]

    @staticmethod
    def _prompt(p: templates.Parameter, lang: str) -> Text:
        text = Text(p.name, style="bold")
        text.append(f" {p.description(lang)}", style="")
        text.append(f" = {p.sample_in(lang)}", style="italic dim")
        return text
