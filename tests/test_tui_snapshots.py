"""Snapshots of every screen at 80x24 and 120x40, English and Russian, plus
the error state, the quit dialog and the transcript view. Fixed sample
configs, a fixed clock and no cursor blink keep them the same run to run.
Update after an intended change: pytest tests/test_tui_snapshots.py --snapshot-update
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mikotui import config, smtp
from mikotui.app import MikoApp, build
from mikotui.screens.dialogs import TranscriptScreen
from mikotui.spool import Meta, Spool
from mikotui.widgets.transcript_view import SendReport

NOW = datetime(2026, 11, 26, 14, 30, 0, tzinfo=UTC)
SIZES = [(80, 24), (120, 40)]
SCREENS = {"smtp": "f1", "missed": "f2", "voicemail": "f3", "outbox": "f4", "employees": "f5"}


def sample_settings(tmp_path: Path, lang: str) -> config.Settings:
    """A config as an admin would have it: a Gmail login, a general
    missed-call address, two employees; the spool under tmp_path."""
    s = config.defaults(lang)
    return replace(
        s,
        smtp=replace(s.smtp, username="pbx@mycompany.com", password="app-password",
                     sender_name="Office PBX"),
        missed_call=replace(s.missed_call, email="reception@mycompany.com"),
        spool=replace(s.spool, path=str(tmp_path / "spool")),
        employees=(config.Employee("201", "Smith James", "smith@mycompany.com"),
                   config.Employee("202", "Brown Brandon", "")),
    )


def sample_spool(settings: config.Settings) -> None:
    """One notification waiting for a retry, one given up on."""
    spool = Spool(settings.spool_dir()).ensure()
    now = NOW.timestamp()
    data = b"Subject: x\r\n\r\nx\r\n"
    spool.enqueue(Meta("20261126-141500.000001-aaaaaa", "missed", now - 900,
                       recipients=("smith@mycompany.com",), owed=("smith@mycompany.com",),
                       subject="Missed Call from 79261234567", attempts=3,
                       next_attempt=now + 240,
                       last_error="421 4.7.0 Try again later, closing connection"), data)
    failed = spool.enqueue(Meta("20261126-120000.000002-bbbbbb", "voicemail", now - 9000,
                                recipients=("brown@mycompany.com",),
                                owed=("brown@mycompany.com",),
                                subject="New Voicemail Message", attempts=1), data)
    with spool.owner() as owner:
        spool.fail(spool.claim(failed.id, owner), "550 5.1.1 <brown@mycompany.com>: no such user")


def make(tmp_path: Path, lang: str, *, spool: bool = True) -> MikoApp:
    settings = sample_settings(tmp_path, lang)
    path = config.save(settings, tmp_path / "mikotui.toml")
    if spool:
        sample_spool(settings)
    return build(argparse.Namespace(config=str(path), lang=lang, sandbox=False),
                 blink=False, clock=lambda: NOW)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("lang", ["en", "ru"])
@pytest.mark.parametrize("screen", list(SCREENS))
def test_screen(snap_compare, tmp_path, screen, lang, size):
    async def show(pilot) -> None:
        await pilot.press(SCREENS[screen])
        # The outbox reads the spool in a worker thread: wait for what it read.
        await pilot.app.workers.wait_for_complete(
            [w for w in pilot.app.workers if w.group == "spool"])
        await pilot.pause()

    assert snap_compare(make(tmp_path, lang), run_before=show, terminal_size=size)


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_error_state(snap_compare, tmp_path, lang):
    """An impossible port, a broken address, a login that is no sender: the
    message beside each field, Save refused."""

    async def break_port(pilot) -> None:
        pilot.app.screen.query_one("#smtp--port").value = "70000"
        pilot.app.screen.query_one("#notifications--admin_email").value = "admin@"
        pilot.app.screen.query_one("#smtp--username").value = "pbx"
        await pilot.pause()

    # Tall enough for the form and the message: at 80x24 the form scrolls to
    # the field, and where a scroll has got to when the picture is taken
    # varies (test_tui checks 80x24: the message covers no button).
    assert snap_compare(make(tmp_path, lang), run_before=break_port, press=["ctrl+s"],
                        terminal_size=(80, 32))


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_quit_dialog(snap_compare, tmp_path, lang):
    async def edit(pilot) -> None:
        pilot.app.screen.query_one("#smtp--sender_name").value = "PBX"
        await pilot.pause()

    assert snap_compare(make(tmp_path, lang), run_before=edit, press=["ctrl+q"])


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("lang", ["en", "ru"])
def test_help(snap_compare, tmp_path, lang, size):
    assert snap_compare(make(tmp_path, lang, spool=False), press=["f9"], terminal_size=size)


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_transcript_view(snap_compare, tmp_path, lang):
    """The view of a refused login, from a real SmtpFailure and Transcript."""
    transcript = smtp.Transcript()
    for direction, line in [
        ("==", "Connecting to smtp.gmail.com:587 (STARTTLS)"),
        ("<-", "220 smtp.gmail.com ESMTP ready"),
        ("->", "EHLO pbx.mycompany.com"),
        ("<-", "250-smtp.gmail.com at your service"),
        ("<-", "250 STARTTLS"),
        ("->", "STARTTLS"),
        ("<-", "220 2.0.0 Ready to start TLS"),
        ("==", "TLS 1.3, TLS_AES_256_GCM_SHA384, certificate CN=smtp.gmail.com"),
        ("~>", "AUTH LOGIN ********"),
        ("<~", "535 5.7.8 Username and Password not accepted"),
    ]:
        transcript.add(direction, line)
    failure = smtp.SmtpFailure("auth_failed", "5.7.8 Username and Password not accepted",
                               535, endpoint=config.Endpoint("smtp.gmail.com", 587, "starttls"),
                               transcript=transcript)
    report = SendReport.failed(failure, lang, "admin@mycompany.com")

    async def show(pilot) -> None:
        pilot.app.push_screen(TranscriptScreen(report))
        await pilot.pause()

    assert snap_compare(make(tmp_path, lang, spool=False), run_before=show)
