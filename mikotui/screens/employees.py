"""F5: the employee cards: extension, name, email, which missed calls and
whether the voicemail reach each one; add, edit, remove (confirmed) and undo,
with the same checks as `config check` (a repeated extension, a bad address)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import HorizontalGroup, Vertical
from textual.widgets import Button, Checkbox, DataTable, Input, Label, Select, Static

from mikotui import config
from mikotui.config import Employee, Problem, Settings
from mikotui.screens.base import BaseScreen
from mikotui.screens.dialogs import ConfirmDialog, Dialog
from mikotui.widgets.form import Field

COLUMNS = ("extension", "name", "email", "missed", "voicemail")


@dataclass(frozen=True)
class Cards:
    """The cards and the keys we do not know kept on each (unknown's
    "employees[i]"), which must move with their card."""

    employees: tuple[Employee, ...]
    extras: tuple[Any, ...]

    @classmethod
    def of(cls, settings: Settings) -> Cards:
        return cls(settings.employees, tuple(settings.unknown.get(f"employees[{i}]")
                                             for i in range(len(settings.employees))))

    def into(self, settings: Settings) -> Settings:
        unknown = {k: v for k, v in settings.unknown.items() if not k.startswith("employees[")}
        unknown |= {f"employees[{i}]": x for i, x in enumerate(self.extras) if x}
        return replace(settings, employees=self.employees, unknown=unknown)

    def put(self, index: int | None, card: Employee) -> Cards:
        if index is None:
            return Cards((*self.employees, card), (*self.extras, None))
        return Cards(self.employees[:index] + (card,) + self.employees[index + 1:], self.extras)

    def without(self, index: int) -> Cards:
        return Cards(self.employees[:index] + self.employees[index + 1:],
                     self.extras[:index] + self.extras[index + 1:])


def card_problems(employees: tuple[Employee, ...], index: int) -> list[Problem]:
    """What `config check` would say about card `index` among these, keyed by
    its field name alone."""
    prefix = f"employees[{index}]."
    return [replace(p, key=p.key.removeprefix(prefix))
            for p in config.employee_problems(employees) if p.key.startswith(prefix)]


class EmployeesScreen(BaseScreen):
    MODE = "employees"
    BINDINGS: ClassVar[list[BindingType]] = [
        # The same keys on a Russian layout (ф, у, в, г), shown as a, e, d, u.
        Binding("a,ф,insert", "add", "key.add", key_display="a"),
        Binding("e,у", "edit", "key.edit", key_display="e"),
        Binding("d,в,delete", "remove", "key.remove", key_display="d"),
        Binding("u,г", "undo", "key.undo", key_display="u"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.history: list[Cards] = []  # before each change, newest last: `u` goes back
        self._rows: list[tuple[Text, ...]] | None = None

    def compose_body(self) -> ComposeResult:
        with Vertical(classes="employees"):
            yield Label(self.t("employees.title"), classes="area-label")
            yield DataTable(id="cards", cursor_type="row", zebra_stripes=True)
            yield Static(self.t("employees.empty"), id="cards-empty", classes="empty")
            yield Static("", id="cards-problems", classes="field-message")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#cards", DataTable).add_columns(
            *(self.t(f"employees.col.{c}") for c in COLUMNS))
        self.refresh_state()
        self.query_one("#cards", DataTable).focus()

    # --- state ----------------------------------------------------------------

    def refresh_state(self) -> None:
        super().refresh_state()
        employees = self.miko.settings.employees
        table = self.query_one("#cards", DataTable)
        problems = config.employee_problems(employees)
        bad = {int(p.key.split("[")[1].split("]")[0]) for p in problems if p.level == "error"}
        rows = [self._row(e, i in bad) for i, e in enumerate(employees)]
        if rows != self._rows:
            self._rows = rows
            at = table.cursor_row
            table.clear()
            for row in rows:
                table.add_row(*row)
            if rows:
                table.move_cursor(row=min(at, len(rows) - 1))
        table.display = bool(rows)
        self.query_one("#cards-empty").display = not rows
        lines = [f"✖ {employees[int(p.key.split('[')[1].split(']')[0])].extension or '?'}: "
                 f"{p.text(self.miko.lang)}" for p in problems]
        message = self.query_one("#cards-problems", Static)
        message.update(Text("\n".join(lines), style="red"))
        message.display = bool(lines)

    def _row(self, e: Employee, bad: bool) -> tuple[Text, ...]:
        missed = self.t(f"employees.missed.{e.missed_calls}")
        cells = (e.extension, e.name, e.email or "-",
                 e.missed_calls if missed.startswith("employees.") else missed,
                 self.t("employees.yes" if e.voicemail else "employees.no"))
        style = "red" if bad else ""
        return tuple(Text(c, style=style, no_wrap=True, end="") for c in cells)

    def focus_key(self, key: str) -> None:
        """After a refused save: the cursor on the card the first error names."""
        if key.startswith("employees["):
            table = self.query_one("#cards", DataTable)
            table.move_cursor(row=int(key.split("[")[1].split("]")[0]))
            table.focus()

    def current(self) -> int | None:
        table = self.query_one("#cards", DataTable)
        if not self.miko.settings.employees or not table.display:
            return None
        return min(table.cursor_row, len(self.miko.settings.employees) - 1)

    # --- changes ----------------------------------------------------------------

    def change(self, cards: Cards) -> None:
        self.history.append(Cards.of(self.miko.settings))
        self.miko.edit(cards.into(self.miko.settings))

    def action_add(self) -> None:
        self.open_card(None)

    def action_edit(self) -> None:
        index = self.current()
        if index is not None:
            self.open_card(index)

    @on(DataTable.RowSelected, "#cards")
    def selected(self) -> None:
        self.action_edit()

    def open_card(self, index: int | None) -> None:
        employees = self.miko.settings.employees

        def done(card: Employee | None) -> None:
            if card is None:
                return
            self.change(Cards.of(self.miko.settings).put(index, card))
            if index is None:
                self.query_one("#cards", DataTable).move_cursor(row=len(employees))

        self.app.push_screen(CardDialog(employees, index), done)

    def action_remove(self) -> None:
        index = self.current()
        if index is None:
            return
        card = self.miko.settings.employees[index]

        def answered(yes: bool | None) -> None:
            if yes:
                self.change(Cards.of(self.miko.settings).without(index))
                self.notify(self.t("employees.removed", extension=card.extension), timeout=4)

        self.app.push_screen(ConfirmDialog(
            self.t("employees.remove_question", extension=card.extension,
                   name=card.name or "-"), self.t("employees.remove")), answered)

    def action_undo(self) -> None:
        if not self.history:
            self.notify(self.t("employees.nothing_to_undo"), timeout=3)
            return
        self.miko.edit(self.history.pop().into(self.miko.settings))


class CardDialog(Dialog):
    """One card, new or edited; returns the Employee, or None when cancelled.
    OK is refused, with the problem beside its field, while `config check`
    would refuse the card."""

    def __init__(self, employees: tuple[Employee, ...], index: int | None) -> None:
        super().__init__()
        self.employees = employees
        self.index = index
        self.card = employees[index] if index is not None else Employee("")

    def compose_dialog(self) -> ComposeResult:
        t, c = self.t, self.card
        title = "employees.edit_title" if self.index is not None else "employees.add_title"
        with Vertical(classes="dialog card"):
            yield Label(t(title), classes="dialog-title")
            yield Field("extension", t("employees.col.extension"),
                        Input(c.extension, id="card-extension", compact=True))
            yield Field("name", t("employees.col.name"),
                        Input(c.name, id="card-name", compact=True))
            yield Field("email", t("employees.col.email"),
                        Input(c.email, id="card-email", compact=True,
                              placeholder=t("employees.email_placeholder")))
            yield Field("missed_calls", t("employees.col.missed"), Select(
                [(t(f"employees.missed.{r}"), r) for r in config.MISSED_CALL_RULES],
                value=c.missed_calls if c.missed_calls in config.MISSED_CALL_RULES else "all",
                allow_blank=False, compact=True, id="card-missed"))
            yield Field("voicemail", "", Checkbox(t("employees.voicemail_label"), c.voicemail,
                                                  id="card-voicemail", compact=True))
            with HorizontalGroup(classes="dialog-buttons"):
                yield Button(t("employees.ok"), id="ok", variant="primary", compact=True)
                yield Button(t("quit.cancel"), id="cancel", compact=True)

    def on_mount(self) -> None:
        super().on_mount()
        for field in self.query(Field):
            field.show([])
        self.query_one("#card-extension", Input).focus()

    def built(self) -> Employee:
        return replace(
            self.card,
            extension=self.query_one("#card-extension", Input).value.strip(),
            name=" ".join(self.query_one("#card-name", Input).value.split()),
            email=", ".join(config.addresses(self.query_one("#card-email", Input).value)),
            missed_calls=str(self.query_one("#card-missed", Select).value),
            voicemail=self.query_one("#card-voicemail", Checkbox).value,
        )

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def ok(self) -> None:
        card = self.built()
        if self.index is None:
            employees, at = (*self.employees, card), len(self.employees)
        else:
            employees = self.employees[:self.index] + (card,) + self.employees[self.index + 1:]
            at = self.index
        problems = card_problems(employees, at)
        lang = getattr(self.app, "lang", "en")
        for field in self.query(Field):
            field.show([p for p in problems if p.key == field.key], "", lang)
        if any(p.level == "error" for p in problems):
            return
        self.dismiss(card)

    @on(Button.Pressed, "#cancel")
    def cancel(self) -> None:
        self.dismiss(None)
