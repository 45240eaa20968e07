"""Pilot tests of who gets what on the TUI: the kinds' switches on the SMTP
screen and the Employees screen (F5), against real config files."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import pytest
from textual.widgets import Button, Checkbox, DataTable, Input, Select, Static

from mikotui import config
from mikotui.app import MikoApp, build
from mikotui.screens.dialogs import ConfirmDialog
from mikotui.screens.employees import CardDialog, EmployeesScreen
from mikotui.widgets.form import Field

SIZE = (100, 40)


def make_app(path: Path, lang: str = "en") -> MikoApp:
    return build(argparse.Namespace(config=str(path), lang=lang, sandbox=False), blink=False)


@pytest.fixture
def config_path(settings, write_config) -> Path:
    return write_config(settings)


# --- the kinds' switches on the SMTP screen ---------------------------------------------

async def test_each_kind_switch_is_edited_and_saved(config_path):
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        boxes = {k: app.screen.query_one(f"#notifications--{k}", Checkbox)
                 for k in ("missed_call", "voicemail", "system", "login")}
        assert [b.value for b in boxes.values()] == [True, True, True, False]
        for key in ("voicemail", "login"):
            boxes[key].focus()
            await pilot.press("space")
            await pilot.pause()
        n = app.settings.notifications
        assert (n.missed_call, n.voicemail, n.system, n.login) == (True, False, True, True)
        assert app.unsaved
        await pilot.press("ctrl+s")
        await pilot.pause()
    n = config.load(config_path).notifications
    assert (n.voicemail, n.login) == (False, True)


async def test_the_master_switch_wins_and_the_kinds_are_kept(config_path):
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        app.screen.query_one("#notifications--enabled", Checkbox).focus()
        await pilot.press("space")
        await pilot.pause()
        assert not app.settings.notifications.enabled
        box = app.screen.query_one("#notifications--missed_call", Checkbox)
        assert box.disabled and box.value  # shown off, kept as set
        await pilot.press("space")
        await pilot.pause()
        assert not box.disabled and app.settings.notifications.missed_call


# --- the Employees screen (F5) ----------------------------------------------------------

def cells(app: MikoApp) -> list[list[str]]:
    table = app.screen.query_one("#cards", DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def open_employees(pilot) -> None:
    await pilot.press("f5")
    await pilot.pause()
    assert isinstance(pilot.app.screen, EmployeesScreen)


async def fill(pilot, **values: str) -> None:
    for name, value in values.items():
        field = pilot.app.screen.query_one(f"#card-{name}", Input)
        field.value = value
        await pilot.pause()


async def test_f5_lists_the_cards(config_path):
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        await open_employees(pilot)
        assert cells(app) == [["201", "Smith James", "smith@mycompany.com", "all", "yes"],
                              ["202", "Brown Brandon", "-", "all", "yes"]]


async def test_add_a_card_with_its_rules_and_save(config_path):
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        await open_employees(pilot)
        await pilot.press("a")
        await pilot.pause()
        assert isinstance(app.screen, CardDialog)
        await fill(pilot, extension="203", name="Ivanova  Anna",
                   email="anna@mycompany.com,  anna@home.ru")
        app.screen.query_one("#card-missed", Select).value = "external"
        app.screen.query_one("#card-voicemail", Checkbox).value = False
        await pilot.pause()
        app.screen.query_one("#ok", Button).press()
        await pilot.pause()
        assert isinstance(app.screen, EmployeesScreen)
        assert cells(app)[2] == ["203", "Ivanova Anna", "anna@mycompany.com, anna@home.ru",
                                 "external only", "no"]
        assert app.unsaved
        await pilot.press("ctrl+s")
        await pilot.pause()
    card = config.load(config_path).employee("203")
    assert card == config.Employee("203", "Ivanova Anna", "anna@mycompany.com, anna@home.ru",
                                   "external", False)


@pytest.mark.parametrize("values, field, says", [
    ({"extension": "202"}, "extension", "extension 202 is already used"),
    ({"extension": " "}, "extension", "must not be empty"),
    ({"extension": "203", "email": "ok@x.ru, broken@"}, "email", "'broken@'"),
])
async def test_the_card_is_refused_as_config_check_would(config_path, values, field, says):
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        await open_employees(pilot)
        await pilot.press("a")
        await pilot.pause()
        await fill(pilot, **values)
        app.screen.query_one("#ok", Button).press()
        await pilot.pause()
        assert isinstance(app.screen, CardDialog)  # still open
        shown = next(f for f in app.screen.query(Field) if f.key == field)
        assert says in str(shown.query_one(".field-message", Static).render())
        await pilot.press("escape")
        await pilot.pause()
        assert len(app.settings.employees) == 2 and not app.unsaved


async def test_edit_a_card_with_enter(config_path):
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        await open_employees(pilot)
        await pilot.press("down", "enter")
        await pilot.pause()
        assert isinstance(app.screen, CardDialog)
        assert app.screen.query_one("#card-extension", Input).value == "202"
        await fill(pilot, email="brown@mycompany.com")
        app.screen.query_one("#card-missed", Select).value = "off"
        await pilot.pause()
        app.screen.query_one("#ok", Button).press()
        await pilot.pause()
        assert app.settings.employees[1] == config.Employee(
            "202", "Brown Brandon", "brown@mycompany.com", "off", True)


async def test_remove_asks_first_and_undo_brings_it_back(config_path):
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        await open_employees(pilot)
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("escape")  # no
        await pilot.pause()
        assert len(app.settings.employees) == 2
        await pilot.press("d")
        await pilot.pause()
        app.screen.query_one("#yes", Button).press()
        await pilot.pause()
        assert [e.extension for e in app.settings.employees] == ["202"]
        assert cells(app)[0][0] == "202"
        await pilot.press("u")
        await pilot.pause()
        assert [e.extension for e in app.settings.employees] == ["201", "202"]
        assert not app.unsaved


async def test_a_card_broken_in_the_file_is_marked_and_named(tmp_path, settings, write_config):
    path = write_config(replace(settings, employees=(
        config.Employee("201", "Smith James", "smith@"),
        config.Employee("201", "Twin", ""))))
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await open_employees(pilot)
        text = str(app.screen.query_one("#cards-problems", Static).render())
        assert "201: not a valid email address: 'smith@'" in text
        assert "extension 201 is already used by employees[0]" in text


async def test_saving_with_a_broken_card_is_refused_and_points_at_it(settings, write_config):
    path = write_config(replace(settings, employees=(
        config.Employee("201", "Smith James", "smith@mycompany.com"),
        config.Employee("202", "Brown Brandon", "brown@"))))
    before = path.read_text()
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await open_employees(pilot)
        await pilot.press("f1")  # the save is refused from any screen, none crashes
        await pilot.pause()
        app.screen.query_one("#smtp--sender_name", Input).value = "PBX"
        await pilot.press("ctrl+s")
        await pilot.pause()
        await open_employees(pilot)
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen.query_one("#cards", DataTable).cursor_row == 1
        assert "employees[1].email" in "\n".join(str(n.message) for n in app._notifications)
    assert path.read_text() == before
