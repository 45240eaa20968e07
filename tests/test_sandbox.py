"""The capture server: real SMTP clients against it, what it stores."""

from __future__ import annotations

import smtplib
import ssl
import threading
from email.message import EmailMessage
from pathlib import Path

import pytest

from mikotui.config import Settings
from mikotui.sandbox import CapturedMessage, Sandbox


def _message(subject: str, to: str = "admin@example.com") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "pbx@example.com"
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content("Привет, мир\n")
    return msg


def test_plain_capture_to_maildir(tmp_path: Path) -> None:
    seen: list[CapturedMessage] = []
    arrived = threading.Event()

    def on_message(m: CapturedMessage) -> None:
        seen.append(m)
        arrived.set()

    with Sandbox(tmp_path / "mail", on_message=on_message) as sb:
        assert sb.port > 0
        with smtplib.SMTP(sb.host, sb.port, local_hostname="client.test", timeout=5) as c:
            c.send_message(_message("first"), to_addrs=["a@example.com", "b@example.com"])
            c.send_message(_message("Пропущенный вызов"))
        assert arrived.wait(5)
        got = sb.messages()
    assert [m.subject for m in got] == ["first", "Пропущенный вызов"]
    first = got[0]
    assert first.mail_from == "pbx@example.com"
    assert first.rcpt_tos == ("a@example.com", "b@example.com")
    assert first.path.parent == tmp_path / "mail" / "new"
    assert first.size > 100
    body = got[1].parse().get_body(("plain",)).get_content()
    assert body == "Привет, мир\n"
    assert [m.subject for m in seen] == ["first", "Пропущенный вызов"]
    assert "first" in first.summary() and "a@example.com, b@example.com" in first.summary()


def test_stopped_sandbox_frees_its_port(tmp_path: Path) -> None:
    sb = Sandbox(tmp_path / "mail").start()
    port = sb.port
    sb.stop()
    with pytest.raises(OSError):
        smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=2)


def test_starttls_and_auth(tmp_path: Path) -> None:
    with Sandbox(tmp_path / "mail", tls=True, auth=("user", "s3cret")) as sb:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with smtplib.SMTP(sb.host, sb.port, local_hostname="client.test", timeout=5) as c:
            c.ehlo()
            assert c.has_extn("starttls")
            assert not c.has_extn("auth")  # only offered inside TLS
            c.starttls(context=ctx)
            c.ehlo()
            with pytest.raises(smtplib.SMTPAuthenticationError):
                c.login("user", "wrong")
            c.login("user", "s3cret")
            c.send_message(_message("over tls"))
        assert [m.subject for m in sb.messages()] == ["over tls"]


def test_auth_required(tmp_path: Path) -> None:
    with Sandbox(tmp_path / "mail", auth=("user", "pw")) as sb:
        with smtplib.SMTP(sb.host, sb.port, local_hostname="client.test", timeout=5) as c:
            with pytest.raises(smtplib.SMTPSenderRefused) as info:
                c.send_message(_message("no login"))
            assert info.value.smtp_code == 530
        assert sb.messages() == []


def test_point_settings(tmp_path: Path) -> None:
    base = Settings()
    with Sandbox(tmp_path / "mail", tls=True, auth=("u", "p")) as sb:
        s = sb.point(base).smtp
        assert (s.host, s.port, s.encryption) == ("127.0.0.1", sb.port, "starttls")
        assert s.verify_certificate is False
        assert (s.username, s.password) == ("u", "p")
    plain = Sandbox(tmp_path / "m2", port=2599).point(base).smtp
    assert (plain.port, plain.encryption, plain.username, plain.password) == (2599, "none", "", "")
    assert plain.verify_certificate is True
    assert Sandbox(tmp_path / "m3", auth=("u", "p")).point(base).smtp.allow_insecure_auth


def test_busy_port_fails_at_once(tmp_path: Path) -> None:
    with Sandbox(tmp_path / "a") as first:
        with pytest.raises(OSError):
            Sandbox(tmp_path / "b", port=first.port).start()
        # the first one is untouched
        with smtplib.SMTP(first.host, first.port, local_hostname="client.test", timeout=5) as c:
            c.send_message(_message("still here"))
        assert [m.subject for m in first.messages()] == ["still here"]


def test_sandbox_command_stores_into_an_existing_empty_folder(tmp_path: Path) -> None:
    """`mikotui sandbox --maildir D` with D made beforehand (empty, no
    cur/new/tmp): the message is taken and stored, not answered 500."""
    from conftest import running

    from mikotui.sandbox import free_port

    folder = tmp_path / "mail"
    folder.mkdir()
    port = free_port()
    with running("sandbox", "--port", str(port), "--maildir", str(folder)) as proc:
        banner = proc.stdout.readline().decode()
        assert f"127.0.0.1:{port}" in banner, banner
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.send_message(_message("into an empty folder"))
    assert len(list((folder / "new").iterdir())) == 1
