"""Pilot tests of who gets what on the TUI: the kinds' switches on the SMTP
screen and the Employees screen (F5), against real config files."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from textual.widgets import Checkbox

from mikotui import config
from mikotui.app import MikoApp, build

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
