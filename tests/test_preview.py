"""`mikotui preview` as a user runs it: three formats, two languages."""

from __future__ import annotations

import email
from dataclasses import replace
from email import policy

import pytest
from conftest import ROOT

SHIPPED = str(ROOT / "config" / "mikotui.toml")


@pytest.mark.parametrize("kind", ["missed", "voicemail", "test"])
@pytest.mark.parametrize("lang", ["en", "ru"])
def test_eml_parses_back_without_defects(cli, kind: str, lang: str) -> None:
    res = cli("preview", kind, "--format", "eml", "--lang", lang, "--config", SHIPPED)
    assert res.returncode == 0, res.stderr_text
    msg = email.message_from_bytes(res.stdout, policy=policy.default)
    assert all(not part.defects for part in msg.walk())
    assert msg.get_body(("plain",)) is not None and msg.get_body(("html",)) is not None
    subject = str(msg["Subject"])
    expected = {
        ("missed", "en"): "Missed Call from 79261234567",
        ("missed", "ru"): "Пропущенный вызов от 79261234567",
        ("voicemail", "en"): "New Voicemail Message from Иван Петров 79261234567",
        ("voicemail", "ru"): "Новое голосовое сообщение от Иван Петров 79261234567",
        ("test", "en"): "SMTP Settings Test",
        ("test", "ru"): "Тест настроек SMTP",
    }[(kind, lang)]
    assert subject == expected
    if kind == "voicemail":
        att = next(msg.iter_attachments())
        # attachment_format's default: what a real voicemail would carry.
        assert att.get_content_type() == "audio/mpeg"
        assert att.get_content()[:2] in (b"\xff\xf3", b"\xff\xf2")  # MPEG-2 Layer III


def test_text_format_reads_like_the_mail(cli) -> None:
    res = cli("preview", "missed", "--config", SHIPPED)
    assert res.returncode == 0
    lines = res.stdout_text.splitlines()
    assert lines[0].startswith("From: MikoPBX notification <")
    assert lines[1] == "To: smith@mycompany.com"
    assert lines[2] == "Subject: Missed Call from 79261234567"
    assert "You have a missed call" in res.stdout_text
    assert "Please contact the caller at your earliest convenience." in res.stdout_text
    ru = cli("preview", "voicemail", "--lang", "ru", "--config", SHIPPED)
    assert "Attachment: voicemail-2026-11-26-79261234567.mp3 (" in ru.stdout_text
    assert "kB, audio/mpeg)" in ru.stdout_text
    assert "На ваш почтовый ящик поступило новое голосовое сообщение." in ru.stdout_text


def test_html_format_is_the_html_part(cli) -> None:
    res = cli("preview", "test", "--format", "html", "--lang", "ru", "--config", SHIPPED)
    assert res.returncode == 0
    assert res.stdout_text.startswith("<!DOCTYPE html>")
    assert "Если вы получили это письмо" in res.stdout_text


def test_unknown_parameter_is_flagged_in_preview(cli, settings, write_config) -> None:
    s = replace(settings, missed_call=replace(settings.missed_call,
                                              body="Call from NOTIFICATION_CALERID"))
    res = cli("preview", "missed", "--config", str(write_config(s)))
    assert res.returncode == 0
    assert "unknown parameter in body: NOTIFICATION_CALERID" in res.stdout_text


def test_usage_error_is_64(cli) -> None:
    res = cli("preview", "nonsense")
    assert res.returncode == 64, res.returncode
    assert "invalid choice" in res.stderr_text
