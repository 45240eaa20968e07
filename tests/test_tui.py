"""Pilot tests of the terminal UI: real config files, a real spool and a
real aiosmtpd server (the sandbox) on 127.0.0.1."""

from __future__ import annotations

import argparse
import asyncio
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import assert_no_secret

from mikotui import config
from mikotui.app import MikoApp, build
from mikotui.sandbox import Sandbox, free_port
from mikotui.screens.dialogs import ConfirmDialog, MailScreen, QuitDialog, TranscriptScreen
from mikotui.spool import Meta, Spool, new_id
from mikotui.widgets.email_preview import EmailPreview
from mikotui.widgets.form import Field
from mikotui.widgets.transcript_view import TranscriptView

SIZE = (100, 40)


def make_app(path: Path, *, lang: str | None = "en", sandbox: bool = False) -> MikoApp:
    return build(argparse.Namespace(config=str(path), lang=lang, sandbox=sandbox), blink=False)


def preview_text(app: MikoApp) -> str:
    return app.screen.query_one(EmailPreview).plain


def notes(app: MikoApp) -> str:
    return "\n".join(f"{n.title} {n.message}" for n in app._notifications)


async def type_into(pilot, selector: str, text: str, *, clear: bool = False) -> None:
    widget = pilot.app.screen.query_one(selector)
    widget.focus()
    await pilot.pause()
    if clear:
        widget.value = ""
    await pilot.press("end", *text)
    await pilot.pause()


@pytest.fixture
def config_path(settings, write_config) -> Path:
    return write_config(settings)



async def send_test(pilot, app) -> None:
    """Ctrl+T, accept the suggested recipient, and wait for the worker. On a
    loaded machine the dialog can take more than one pause to mount and
    focus its field: Enter waits for it, or it would go to the form."""
    from mikotui.screens.dialogs import SendTestDialog

    await pilot.press("ctrl+t")
    for _ in range(100):
        await pilot.pause()
        if isinstance(app.screen, SendTestDialog) and app.focused is not None \
                and app.focused.id == "to":
            break
    await pilot.press("enter")
    await app.workers.wait_for_complete()
    await pilot.pause()

async def test_subject_edit_updates_preview(config_path):
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f2")
        await pilot.pause()
        assert "Subject: Missed Call from 79261234567" in preview_text(app)
        await type_into(pilot, "#missed_call--subject", " URGENT")
        assert app.settings.missed_call.subject == "Missed Call from NOTIFICATION_CALLERID URGENT"
        assert "Subject: Missed Call from 79261234567 URGENT" in preview_text(app)
        assert "unsaved" in str(app.screen.query_one("#nav").render())


async def test_insert_parameter_at_cursor(config_path):
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        await pilot.pause()
        await type_into(pilot, "#voicemail--subject", " box ")
        await pilot.press("f7")  # keyboard alone: from the field to the list
        await pilot.pause()
        params = app.screen.query_one("#parameters")
        assert app.focused is params
        names = [params.get_option_at_index(i).id for i in range(params.option_count)]
        params.highlighted = names.index("VM_MAILBOX")
        await pilot.press("enter")
        await pilot.pause()
        subject = app.settings.voicemail.subject
        assert subject.endswith(" box VM_MAILBOX")
        # The cursor stays after the inserted name, in the field it went to.
        assert app.focused is app.screen.query_one("#voicemail--subject")
        assert " box 201" in preview_text(app)


async def test_insert_parameter_into_body(config_path):
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f2")
        await pilot.pause()
        body = app.screen.query_one("#missed_call--body")
        body.focus()
        body.move_cursor((0, len("You have a missed call")))
        await pilot.press("space")
        await pilot.press("f7")  # a TextArea binds F7 (select all) itself: not here
        await pilot.pause()
        assert app.focused is app.screen.query_one("#parameters")
        await pilot.press("escape")  # back, nothing inserted
        await pilot.pause()
        assert app.focused is body and body.selected_text == ""
        await pilot.press("f7")
        await pilot.pause()
        await pilot.press("enter")  # the first parameter: NOTIFICATION_CALLERID
        await pilot.pause()
        assert app.settings.missed_call.body.startswith(
            "You have a missed call NOTIFICATION_CALLERID\n")
        assert "You have a missed call 79261234567\n" in preview_text(app)


async def test_unknown_parameter_is_marked(config_path):
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f2")
        await type_into(pilot, "#missed_call--subject", " NOTIFICATION_CALLER")
        assert "unknown parameter in the subject: NOTIFICATION_CALLER" in preview_text(app)
        field = next(f for f in app.screen.query(Field) if f.key == "missed_call.subject")
        message = str(field.query_one(".field-message").render())
        assert "did you mean NOTIFICATION_CALLERID" in message


async def test_invalid_port_blocks_save(config_path):
    before = config_path.read_bytes()
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        await type_into(pilot, "#smtp--port", "0", clear=False)  # 5870
        await type_into(pilot, "#smtp--port", "00")  # 587000
        assert app.settings.smtp.port == 587000
        field = next(f for f in app.screen.query(Field) if f.key == "smtp.port")
        assert "must be 1..65535, got 587000" in str(field.query_one(".field-message").render())
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "smtp.port: must be 1..65535, got 587000" in notes(app)
        assert app.unsaved
    assert config_path.read_bytes() == before


async def test_port_that_is_not_a_number_blocks_save(config_path):
    before = config_path.read_bytes()
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        port = app.screen.query_one("#smtp--port")
        port.value = ""
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "smtp.port: must be a whole number" in notes(app)
    assert config_path.read_bytes() == before


async def test_save_writes_the_file(config_path):
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f2")
        await type_into(pilot, "#missed_call--email", "reception@mycompany.com")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not app.unsaved
        assert "unsaved" not in str(app.screen.query_one("#nav").render())
    saved = config.load(config_path)
    assert saved.missed_call.email == "reception@mycompany.com"
    assert saved.employees == app.saved.employees  # the rest survives the round trip


async def test_ssl_scheme_and_port_mistakes_are_explained(config_path):
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        host = app.screen.query_one("#smtp--host")
        host.value = "ssl://smtp.gmail.com"
        await pilot.pause()
        fields = {f.key: f for f in app.screen.query(Field)}
        assert "smtp.gmail.com:465 with SSL/TLS" in str(
            fields["smtp.host"].query_one(".field-message").render())
        host.value = "smtp.yandex.ru"
        app.screen.query_one("#smtp--port").value = "465"
        await pilot.pause()
        assert "port 465 expects SSL/TLS" in str(
            fields["smtp.port"].query_one(".field-message").render())


async def test_an_emptied_port_is_not_shown_as_where_mail_goes(config_path):
    """Backspacing 465 leaves 4 in the settings a moment: no "will connect to :4"."""
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        app.screen.query_one("#smtp--host").value = "ssl://smtp.gmail.com"
        await type_into(pilot, "#smtp--port", "465", clear=True)
        await pilot.press("backspace", "backspace", "backspace")
        await pilot.pause()
        fields = {f.key: f for f in app.screen.query(Field)}
        host_note = fields["smtp.host"].query_one(".field-message")
        assert not host_note.display or "will connect" not in str(host_note.render())
        assert "must be a whole number" in str(
            fields["smtp.port"].query_one(".field-message").render())
        assert "fix the host and port first" in str(app.screen.query_one("#connection").render())


async def test_preset_fills_host_port_and_encryption(config_path):
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        app.screen.query_one("#preset").value = "yandex"
        await pilot.pause()
        smtp = app.settings.smtp
        assert (smtp.host, smtp.port, smtp.encryption) == ("smtp.yandex.ru", 465, "ssl")
        assert app.screen.query_one("#smtp--port").value == "465"
        assert app.screen.query_one("#enc-ssl").value
        preset = next(f for f in app.screen.query(Field) if f.key == "preset")
        assert "app password" in str(preset.query_one(".field-message").render())


async def test_quit_with_unsaved_changes_asks(config_path):
    before = config_path.read_bytes()
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        await type_into(pilot, "#smtp--sender_name", "PBX")
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert isinstance(app.screen, QuitDialog)
        await pilot.press("escape")  # cancel: back to the form, still running
        await pilot.pause()
        assert not isinstance(app.screen, QuitDialog) and app.is_running
        await pilot.press("ctrl+q")
        await pilot.pause()
        depth = len(app.screen_stack)
        await pilot.press("ctrl+q", "ctrl+s", "ctrl+t", "f2")  # the app's keys wait
        await pilot.pause()
        assert len(app.screen_stack) == depth and isinstance(app.screen, QuitDialog)
        assert config_path.read_bytes() == before
        assert [b.binding.key for b in app.active_bindings.values() if b.binding.show] == ["escape"]
        await pilot.click("#discard")
        await pilot.pause()
    assert app.return_value == 0
    assert config_path.read_bytes() == before


async def test_quit_dialog_save_saves(config_path):
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        await type_into(pilot, "#voicemail--email", "")
        app.screen.query_one("#voicemail--email").value = "vm@mycompany.com"
        await pilot.pause()
        await pilot.press("ctrl+q")
        await pilot.pause()
        await pilot.press("enter")  # Save has the focus
        await pilot.pause()
    assert config.load(config_path).voicemail.email == "vm@mycompany.com"


async def test_quit_without_changes_just_quits(config_path):
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+q")
        await pilot.pause()
    assert app.return_value == 0


async def test_smtp_change_and_save_mails_the_admin(settings, write_config, tmp_path):
    with Sandbox(tmp_path / "server") as server:
        path = write_config(server.point(settings))
        app = make_app(path)
        async with app.run_test(size=SIZE) as pilot:
            await type_into(pilot, "#smtp--sender_name", "Office PBX")
            await pilot.press("ctrl+s")
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert app.last_report is not None and app.last_report.ok
            assert "Test mail sent" in notes(app)
        got = server.messages()
    assert len(got) == 1
    assert got[0].rcpt_tos == ("admin@mycompany.com",)
    msg = got[0].parse()
    assert msg["Subject"] == "SMTP Settings Test"
    assert "Office PBX" in msg["From"]
    assert config.load(path).smtp.sender_name == "Office PBX"


async def test_save_without_smtp_change_sends_nothing(settings, write_config, tmp_path):
    with Sandbox(tmp_path / "server") as server:
        path = write_config(server.point(settings))
        app = make_app(path)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("f2")
            await type_into(pilot, "#missed_call--subject", "!")
            await pilot.press("ctrl+s")
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert app.last_report is None
        assert server.messages() == []


async def test_send_test_to_another_address(settings, write_config, tmp_path):
    with Sandbox(tmp_path / "server") as server:
        path = write_config(server.point(settings))
        app = make_app(path)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("ctrl+t")
            await pilot.pause()
            to = app.screen.query_one("#to")
            to.value = "someone@example.org"
            await pilot.press("enter")
            await app.workers.wait_for_complete()
            await pilot.pause()
        got = server.messages()
    assert [m.rcpt_tos for m in got] == [("someone@example.org",)]


async def test_failed_test_send_shows_kind_and_hint(settings, write_config):
    smtp = replace(settings.smtp, host="127.0.0.1", port=free_port(), encryption="none",
                   timeout=5)
    path = write_config(replace(settings, smtp=smtp))
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await send_test(pilot, app)
        report = app.last_report
        assert report is not None and not report.ok
        assert report.kind == "refused"
        assert report.hint and report.hint in notes(app)
        assert "refused" in notes(app)
        await pilot.click("#show-transcript")
        await pilot.pause()
        assert isinstance(app.screen, TranscriptScreen)
        shown = "\n".join(str(s.render()) for s in app.screen.query_one(TranscriptView).children)
        assert "Failed: connection refused" in shown and report.hint in shown
        assert "127.0.0.1" in shown


async def settle(pilot) -> None:
    """The outbox reads the spool in a worker thread: wait for what it read."""
    await pilot.app.workers.wait_for_complete(
        [w for w in pilot.app.workers if w.group == "spool"])
    await pilot.pause()


def _spool_with_two(settings) -> tuple[Spool, str, str]:
    spool = Spool(settings.spool_dir()).ensure()
    data = b"Subject: test\r\n\r\nhello\r\n"
    queued = spool.enqueue(Meta(new_id(), "missed", 0.0, recipients=("a@example.com",),
                                owed=("a@example.com",), subject="Missed", attempts=2,
                                next_attempt=9e9, last_error="451 try later"), data)
    failing = spool.enqueue(Meta(new_id(), "voicemail", 0.0, recipients=("b@example.com",),
                                 owed=("b@example.com",), subject="Voicemail", attempts=1), data)
    with spool.owner() as owner:
        entry = spool.claim(failing.id, owner)
        spool.fail(entry, "550 no such user")
    return spool, queued.id, failing.id


async def test_an_unreadable_spool_is_said_not_crashed_on(settings, write_config, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("a file where the spool should be")
    path = write_config(replace(settings, spool=replace(settings.spool,
                                                       path=str(blocker / "spool"))))
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        await settle(pilot)
        said = str(app.screen.query_one("#spool-empty").render())
        assert "Cannot read the spool" in said and str(blocker) in said
        await pilot.press("f1")  # the rest of the app still works
        await settle(pilot)
        assert app.screen.query_one("#smtp--host")


async def test_outbox_retry_and_purge_act_on_the_spool(settings, config_path):
    spool, queued, failed = _spool_with_two(settings)
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        await settle(pilot)
        table = app.screen.query_one("#spool")
        assert table.row_count == 2
        row = [str(c) for c in table.get_row(failed)]
        assert "550 no such user" in row and "failed" in row
        table.focus()
        table.move_cursor(row=table.get_row_index(failed))
        await pilot.press("r")
        await settle(pilot)
        assert [e.id for e in spool.entries("failed")] == []
        assert failed in [e.id for e in spool.entries("queue")]
        table.move_cursor(row=table.get_row_index(queued))
        await pilot.press("d")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("escape")  # no: nothing deleted
        await settle(pilot)
        assert spool.find(queued) is not None
        await pilot.press("d")
        await settle(pilot)
        await pilot.click("#yes")
        await settle(pilot)
        assert spool.find(queued) is None
        assert table.row_count == 1
        assert "press u to undo" in [n.message for n in app._notifications][-1]
        await pilot.press("г")  # u, on a Russian keyboard layout
        await settle(pilot)
        assert queued in spool.due() and table.row_count == 2
        assert [e.id for e in spool.entries("purged")] == []
        await pilot.press("u")  # nothing more to undo: nothing happens
        await settle(pilot)
        assert table.row_count == 2


async def test_sandbox_captures_a_test_mail_and_outbox_shows_it(config_path):
    saved = config_path.read_bytes()
    app = make_app(config_path, sandbox=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.sandbox is not None
        banner = str(app.screen.query_one("#sandbox-banner").render())
        assert f"127.0.0.1:{app.sandbox.port}" in banner
        # The form still names the real server, and the banner says so; F8
        # fills in the sandbox (STARTTLS and its login).
        assert "smtp.gmail.com:587, not to the sandbox" in " ".join(banner.split())
        await pilot.press("f8")
        await pilot.pause()
        assert app.settings.smtp.port == app.sandbox.port
        assert app.screen.query_one("#smtp--port").value == str(app.sandbox.port)
        assert "not to the sandbox" not in str(app.screen.query_one("#sandbox-banner").render())
        await pilot.press("f5")  # still the Employees screen, in the sandbox too
        await pilot.pause()
        assert app.current_mode == "employees"
        await pilot.press("f1")
        await pilot.pause()
        await send_test(pilot, app)
        assert app.last_report is not None and app.last_report.ok, notes(app)
        await pilot.press("f4")
        await settle(pilot)
        table = app.screen.query_one("#captured")
        assert table.row_count == 1
        assert "SMTP Settings Test" in [str(c) for c in table.get_row_at(0)]
        assert app.focused is table  # the empty spool table hides: keys come here
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, MailScreen)
        assert "If you receive this email" in app.screen.content
    assert config_path.read_bytes() == saved  # the sandbox never touches the file


async def test_sandbox_is_a_server_a_wrong_setting_fails_on(cli, tmp_path):
    """`make run`'s config points at the sandbox; a wrong password, mode or
    port fails there with the diagnosis a real server would give."""
    from conftest import ROOT

    path = tmp_path / "mikotui.toml"
    path.write_bytes((ROOT / "config" / "mikotui.toml").read_bytes())
    port = free_port()
    res = cli("--config", str(path), "sandbox", "--point-config", "--port", str(port))
    assert res.returncode == 0, res.stderr_text
    app = make_app(path, sandbox=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.sandbox is not None and app.sandbox.port == port
        password = app.saved.smtp.password
        banner = " ".join(str(app.screen.query_one("#sandbox-banner").render()).split())
        assert f"127.0.0.1:{port}, STARTTLS, login sandbox@localhost, password {password}" in banner
        await send_test(pilot, app)
        assert app.last_report is not None and app.last_report.ok, notes(app)
        assert len(app.sandbox.messages()) == 1

        app.screen.query_one("#smtp--password").value = password + "x"
        await pilot.pause()
        await send_test(pilot, app)
        assert app.last_report.kind == "auth_failed"

        app.screen.query_one("#smtp--password").value = password
        await pilot.click("#enc-ssl")
        await pilot.pause()
        await send_test(pilot, app)
        assert app.last_report.kind in ("protocol_mismatch", "tls_handshake")

        await pilot.click("#enc-starttls")
        app.screen.query_one("#smtp--port").value = str(free_port())
        await pilot.pause()
        await send_test(pilot, app)
        assert app.last_report.kind == "refused"
        assert len(app.sandbox.messages()) == 1


async def test_the_outbox_reads_the_spool_off_the_ui_thread(settings, config_path,
                                                            monkeypatch):
    """Thousands of entries waiting out an outage take seconds to read: the
    reading must not freeze the screen, on showing it nor every 3 s after."""
    _spool_with_two(settings)
    readers = []
    real = Spool.entries

    def entries(self, state="queue"):
        readers.append(threading.current_thread())
        return real(self, state)

    monkeypatch.setattr(Spool, "entries", entries)
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        await settle(pilot)
        assert app.screen.query_one("#spool").row_count == 2
        await pilot.press("f5")
        await settle(pilot)
    assert len(readers) >= 6 and threading.main_thread() not in readers


async def test_russian_labels(config_path):
    app = make_app(config_path, lang="ru")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "Пропущенные" in str(app.screen.query_one("#nav").render())
        labels = [str(w.render()) for w in app.screen.query(".field-label")]
        assert "SMTP хост" in labels
        await type_into(pilot, "#smtp--port", "000")
        field = next(f for f in app.screen.query(Field) if f.key == "smtp.port")
        assert "от 1 до 65535" in str(field.query_one(".field-message").render())


async def test_refused_login_never_shows_the_password(settings, write_config, tmp_path):
    with Sandbox(tmp_path / "server", auth=("pbx@mycompany.com", "right-one")) as server:
        pointed = server.point(settings)
        smtp = replace(pointed.smtp, password="Wrong-Secret-42")
        path = write_config(replace(pointed, smtp=smtp))
        app = make_app(path)
        async with app.run_test(size=SIZE) as pilot:
            await send_test(pilot, app)
            report = app.last_report
            assert report is not None and report.kind == "auth_failed"
            await pilot.press("f6")
            await pilot.pause()
            shown = "\n".join(str(s.render())
                              for s in app.screen.query_one(TranscriptView).children)
            assert "535" in shown
            assert_no_secret((shown, notes(app)), "pbx@mycompany.com", "Wrong-Secret-42")
        assert server.messages() == []


async def test_quit_save_with_smtp_change_sends_then_exits(settings, write_config, tmp_path):
    with Sandbox(tmp_path / "server") as server:
        path = write_config(server.point(settings))
        app = make_app(path)
        async with app.run_test(size=SIZE) as pilot:
            await type_into(pilot, "#smtp--sender_name", "Front desk")
            await pilot.press("ctrl+q")
            await pilot.pause()
            await pilot.press("enter")  # Save
            await app.workers.wait_for_complete()
            await pilot.pause()
        assert app.return_value == 0
        got = server.messages()
    assert [m.subject for m in got] == ["SMTP Settings Test"]
    assert config.load(path).smtp.sender_name == "Front desk"


async def test_screens_switch_by_mouse_on_the_top_bar(config_path):
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.click("#nav", offset=(12, 0))  # " F2 Missed calls "
        await pilot.pause()
        assert app.current_mode == "missed"
        await pilot.click("#nav", offset=(2, 0))  # " F1 SMTP "
        await pilot.pause()
        assert app.current_mode == "smtp"


@pytest.mark.parametrize(("env_lang", "in_file", "expected"), [
    ("ru_RU.UTF-8", False, "ru"), ("ru_RU.UTF-8", True, "en"), ("C.UTF-8", False, "en")])
def test_language_is_flag_then_file_then_lang(tmp_path, monkeypatch, env_lang, in_file, expected):
    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.setenv("LANG", env_lang)
    path = tmp_path / "mikotui.toml"
    path.write_text('[ui]\nlanguage = "en"\n' if in_file else '[smtp]\nport = 587\n')
    assert make_app(path, lang=None).lang == expected
    assert make_app(path, lang="ru").lang == "ru"


async def test_saving_keeps_the_files_comments_and_key_order(tmp_path):
    """An admin edits the file by hand too: a save from the UI keeps their
    comments, blank lines and order, and rewrites only what changed."""
    from conftest import ROOT

    shipped = (ROOT / "config" / "mikotui.toml").read_text()
    path = tmp_path / "mikotui.toml"
    path.write_text(shipped.replace("[smtp]\n", "[smtp]\n# our relay, ask Pavel\n", 1))
    before = path.read_text()
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await type_into(pilot, "#notifications--admin_email", "it@mycompany.com", clear=True)
        await pilot.press("ctrl+s")
        await pilot.pause()
    after = path.read_text()
    assert after == before.replace('admin_email = "admin@mycompany.com"',
                                   'admin_email = "it@mycompany.com"')
    assert "# our relay, ask Pavel" in after
    assert config.load(path).notifications.admin_email == "it@mycompany.com"


async def test_inserted_parameter_is_spaced_from_the_next_word(config_path):
    """Cursor at the very start of the body, F7, Enter: the name gets a
    space so it does not glue to "You" (a glued name is never replaced)."""
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f2")
        await pilot.pause()
        body = app.screen.query_one("#missed_call--body")
        body.focus()
        body.move_cursor((0, 0))
        await pilot.press("f7")
        await pilot.pause()
        params = app.screen.query_one("#parameters")
        names = [params.get_option_at_index(i).id for i in range(params.option_count)]
        params.highlighted = names.index("NOTIFICATION_NAME_FROM")
        await pilot.press("enter")
        await pilot.pause()
        assert app.settings.missed_call.body.startswith("NOTIFICATION_NAME_FROM You have")
        assert "Иван Петров You have a missed call" in preview_text(app)


@pytest.mark.parametrize("token", ["NOTIFICATION_CALERIDx", "NOTIFICATION_NAME_FROMYou"])
async def test_near_miss_parameter_is_flagged(config_path, token):
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f2")
        await pilot.pause()
        await type_into(pilot, "#missed_call--subject", f" {token}")
        shown = str(app.screen.query_one("#missed_call--subject").parent.parent
                    .query_one(".field-message").render())
        assert f"unknown parameter {token} → did you mean" in shown
        assert token in preview_text(app)  # left as written, and marked


async def test_encryption_none_hides_the_certificate_switch_and_moves_a_default_port(config_path):
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        switch = app.screen.query_one("#smtp--verify_certificate")
        assert switch.parent.parent.display and app.settings.smtp.port == 587
        await pilot.click("#enc-none")
        await pilot.pause()
        assert not switch.parent.parent.display
        assert app.settings.smtp.port == 25  # 587 was STARTTLS's port
        assert app.screen.query_one("#smtp--port").value == "25"
        await pilot.click("#enc-ssl")
        await pilot.pause()
        assert switch.parent.parent.display and app.settings.smtp.port == 465
        # A port someone chose stays when the mode changes.
        app.screen.query_one("#smtp--port").value = "2525"
        await pilot.pause()
        await pilot.click("#enc-starttls")
        await pilot.pause()
        assert app.settings.smtp.port == 2525
async def test_voicemail_recording_format_is_chosen_on_its_screen(config_path):
    """The voicemail screen offers mp3 / wav / as recorded; the preview's
    attachment line follows it (name, size, type) and Ctrl+S saves it."""
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        await pilot.pause()
        assert ".mp3 (" in preview_text(app) and "kB, audio/mpeg)" in preview_text(app)
        app.screen.query_one("#voicemail--attachment_format").focus()
        await pilot.press("enter", "down", "enter")  # open, MP3 -> WAV, choose
        await pilot.pause()
        assert app.settings.voicemail.attachment_format == "wav"
        assert ".wav (15.7 kB, audio/x-wav)" in preview_text(app)
        await pilot.press("ctrl+s")
        await pilot.pause()
    assert config.load(config_path).voicemail.attachment_format == "wav"


async def test_restored_entry_keeps_its_last_error(settings, config_path):
    spool, _, failed = _spool_with_two(settings)
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        await pilot.pause()
        table = app.screen.query_one("#spool")
        table.focus()
        table.move_cursor(row=table.get_row_index(failed))
        await pilot.press("d")
        await pilot.pause()
        await pilot.click("#yes")
        await pilot.pause()
        assert spool.find(failed) is None
        await pilot.press("u")
        await pilot.pause()
        restored = spool.find(failed)
        assert restored is not None and restored.state == "queue"
        assert restored.meta.last_error == "550 no such user"
        assert "550 no such user" in " ".join(str(c) for c in table.get_row(failed))


async def test_retry_says_whether_a_deliverer_runs(cli, settings, config_path):
    from conftest import running

    spool, queued, _ = _spool_with_two(settings)
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        await pilot.pause()
        assert "No deliverer is running" in str(app.screen.query_one("#deliverer").render())
        table = app.screen.query_one("#spool")
        table.focus()
        table.move_cursor(row=table.get_row_index(queued))
        await pilot.press("r")
        await pilot.pause()
        assert "mikotui deliver --watch" in notes(app)
    # The queued entry is due now and goes to a server that is not there:
    # the watcher keeps running, holding its lock.
    with running("--config", str(config_path), "deliver", "--watch") as proc:
        for _ in range(100):
            if spool.deliverer() is not None:
                break
            await asyncio.sleep(0.05)
        assert spool.deliverer() == proc.pid
        app = make_app(config_path)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("f4")
            await pilot.pause()
            assert f"running (pid {proc.pid})" in str(app.screen.query_one("#deliverer").render())
    assert spool.deliverer() is None


@pytest.mark.parametrize("screen", ["f1", "f2", "f3", "f4"])
async def test_f9_opens_help_on_every_screen_and_question_mark_types(config_path, screen):
    from textual.widgets import Footer

    from mikotui.screens.dialogs import HelpScreen

    app = make_app(config_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press(screen)
        await pilot.pause()
        footer = app.screen.query_one(Footer)
        assert any(k.key_display == "F9" for k in footer.query("FooterKey")), "F9 in the footer"
        await pilot.press("f9")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        shown = " ".join(str(s.render()) for s in app.screen.query(".help-part"))
        for words in ("^S", "F7 goes to the parameters", "r tries one again", "F9"):
            assert words in shown
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)
    app = make_app(config_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await type_into(pilot, "#smtp--sender_name", "?", clear=True)
        assert app.settings.smtp.sender_name == "?"


@pytest.mark.parametrize(("key", "title", "subject"), [
    ("f2", "Send this missed-call mail", "Missed Call from 79261234567"),
    ("f3", "Send this voicemail mail", "New Voicemail Message from Иван Петров 79261234567"),
])
async def test_template_screen_sends_that_very_mail(settings, write_config, tmp_path,
                                                    key, title, subject):
    from mikotui.screens.dialogs import SendTestDialog

    with Sandbox(tmp_path / "server") as server:
        path = write_config(server.point(settings))
        app = make_app(path)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press(key)
            await pilot.pause()
            await pilot.press("ctrl+t")
            await pilot.pause()
            assert isinstance(app.screen, SendTestDialog)
            assert title in str(app.screen.query_one(".dialog-title").render())
            app.screen.query_one("#to").value = "me@example.org"
            await pilot.press("enter")
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert app.last_report is not None and app.last_report.ok, notes(app)
        [got] = server.messages()
        assert got.rcpt_tos == ("me@example.org",) and got.subject == subject
        mail = got.parse()
        attached = [p.get_content_type() for p in mail.iter_attachments()]
        assert attached == (["audio/mpeg"] if key == "f3" else [])  # MP3 by default


async def test_slow_send_shows_phase_and_seconds_and_esc_cancels_it(settings, write_config):
    from smtp_servers import silent_server

    from mikotui.screens.dialogs import SendTestDialog

    with silent_server() as port:
        smtp = replace(settings.smtp, host="127.0.0.1", port=port, encryption="none",
                       username="", password="", timeout=30)
        app = make_app(write_config(replace(settings, smtp=smtp)))
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("ctrl+t")
            await pilot.pause()
            await pilot.press("enter")
            await asyncio.sleep(1.3)
            await pilot.pause()
            progress = str(app.screen.query_one("#progress").render())
            assert "connecting… 1 s (Esc cancels)" in progress, progress
            await pilot.press("ctrl+t")  # no second dialog over a running send
            await pilot.pause()
            assert not isinstance(app.screen, SendTestDialog)
            assert "being sent" in notes(app)
            await pilot.press("escape")
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert app.phase.name == "" and "cancelled" in notes(app)
            assert not app.screen.query_one("#progress").display


async def test_quit_with_save_waits_for_the_test_mail_and_says_so(settings, write_config):
    from smtp_servers import silent_server

    with silent_server() as port:
        smtp = replace(settings.smtp, host="127.0.0.1", port=port, encryption="none",
                       username="", password="", timeout=30)
        path = write_config(replace(settings, smtp=smtp))
        app = make_app(path)
        async with app.run_test(size=SIZE) as pilot:
            await type_into(pilot, "#smtp--timeout", "20", clear=True)
            assert app.settings.smtp.timeout == 20
            await pilot.press("ctrl+q")
            await pilot.pause()
            await pilot.click("#save")
            await pilot.pause()
            assert "quitting when the test mail is out (up to 20 s)" in notes(app)
            assert app.is_running
            await pilot.press("ctrl+q")  # again: at once
            await pilot.pause()
        assert app.return_value == 0
        assert config.load(path).smtp.timeout == 20


async def test_attachment_limit_has_a_field(config_path):
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        await pilot.pause()
        await type_into(pilot, "#voicemail--max_attachment_mb", "x", clear=True)
        assert "must be a number" in str(
            app.screen.query_one("#voicemail--max_attachment_mb").parent.parent
            .query_one(".field-message").render())
        await type_into(pilot, "#voicemail--max_attachment_mb", "2.5", clear=True)
        assert app.settings.voicemail.max_attachment_mb == 2.5


async def test_messages_take_their_own_rows_and_cover_no_action(config_path):
    """At 80x24 a refused save's message used to float over the Save button,
    and a failed send's over the transcript's Close."""
    from textual.widgets import Button

    app = make_app(config_path)
    async with app.run_test(size=(80, 24)) as pilot:
        app.screen.query_one("#smtp--port").value = "70000"
        app.screen.query_one("#notifications--admin_email").value = "admin@"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        message = app.screen.query_one("#message")
        assert message.display and "Not saved" in str(message.render())
        assert not list(app.screen.query("Toast"))
        form = app.screen.query_one("#smtp-form")
        assert form.region.bottom <= message.region.y  # the form ends where it begins
        for button in app.screen.query(Button):  # as much of each as is shown
            assert not button.region.intersection(form.region).overlaps(message.region)
        await pilot.press("f9")  # a dialog over it: nothing floats above the dialog either
        await pilot.pause()
        assert not list(app.screen.query("Toast"))


async def test_state_and_focus_read_without_colour(config_path):
    """A monochrome SSH terminal loses the colours: a switch says X or
    nothing, a radio ● or ○, and the focused row's label is reversed."""
    app = make_app(config_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        switch = app.screen.query_one("#smtp--verify_certificate")
        assert "X" in str(switch.render())
        await pilot.click("#smtp--verify_certificate")
        await pilot.pause()
        assert switch.value is False and "X" not in str(switch.render())
        radios = {r.id: str(r.render()) for r in app.screen.query("#smtp--encryption > *")}
        assert "●" in radios["enc-starttls"] and "○" in radios["enc-none"]
        assert "●" not in radios["enc-none"] + radios["enc-ssl"]
        port = app.screen.query_one("#smtp--port")
        port.focus()
        await pilot.pause()
        labels = {f.key: f.query_one(".field-label") for f in app.screen.query(Field)
                  if f.key in ("smtp.port", "smtp.host")}
        assert labels["smtp.port"].rich_style.reverse
        assert not labels["smtp.host"].rich_style.reverse
        # Focus comes back to where it was after a dialog.
        await pilot.press("f9")
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        assert app.focused is port
