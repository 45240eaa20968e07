"""`mikotui test-email` and `mikotui sandbox` as a user runs them: real
subprocesses of the installed command, real aiosmtpd servers on 127.0.0.1."""

from __future__ import annotations

import os
import select
import signal
import subprocess
from dataclasses import replace
from pathlib import Path

import trustme
from conftest import assert_no_secret, running
from smtp_servers import Replies, smtp_server, trust_ca

from mikotui.config import Settings
from mikotui.sandbox import free_port, read_captured

PASSWORD = "Sup3r-S3cret-pw"
USER = "pbx@example.com"


def _no_secret(proc: subprocess.CompletedProcess) -> None:
    assert_no_secret((proc.stdout, proc.stderr), USER, PASSWORD)


def test_delivers_and_prints_transcript(cli, settings: Settings, write_config) -> None:
    off = replace(settings, notifications=replace(settings.notifications, enabled=False))
    with smtp_server("plain") as srv:
        path = write_config(srv.point(off))
        proc = cli("test-email", "--config", str(path))
    assert proc.returncode == 0, proc.stderr_text
    [got] = srv.handler.messages
    assert got.rcpt_tos == ("admin@mycompany.com",)
    assert got.message["Subject"] == "SMTP Settings Test"
    body = got.message.get_body(("plain",)).get_content()
    assert f"Port: {srv.port}" in body and "Encryption: none" in body
    out = proc.stdout_text
    assert " -> EHLO " in out and " <- 250 " in out and " -> RCPT TO:<admin@mycompany.com>" in out
    last = out.strip().splitlines()[-1]
    assert last.startswith("OK: delivered to admin@mycompany.com in ") and last.endswith(" s")
    assert proc.stderr_text == ""


def test_quiet_to_and_russian(cli, settings: Settings, write_config) -> None:
    with smtp_server("plain") as srv:
        path = write_config(srv.point(settings))
        proc = cli("test-email", "--config", str(path), "--to", "ops@example.com", "--quiet",
                   "--lang", "ru")
    assert proc.returncode == 0, proc.stderr_text
    assert proc.stdout_text.startswith("OK: delivered to ops@example.com in ")
    assert len(proc.stdout_text.splitlines()) == 1
    [got] = srv.handler.messages
    assert got.rcpt_tos == ("ops@example.com",)
    assert got.message["Subject"] == "Тест настроек SMTP"


def test_auth_failed_exits_69_without_the_password(cli, settings: Settings, write_config,
                                                   tmp_path: Path) -> None:
    ca = trustme.CA()
    env = trust_ca(ca, tmp_path)
    with smtp_server("starttls", auth=(USER, "the-right-one"), ca=ca) as srv:
        path = write_config(srv.point(settings, username=USER, password=PASSWORD))
        proc = cli("test-email", "--config", str(path), env=env)
    assert proc.returncode == 69, proc.stdout_text + proc.stderr_text
    last = proc.stdout_text.strip().splitlines()[-1]
    assert last.startswith("FAILED (auth_failed): 535 ")
    assert "login or password" in last
    assert "TLS started with cipher" in proc.stdout_text
    assert "[credentials hidden]" in proc.stdout_text
    assert srv.handler.messages == []
    _no_secret(proc)


def test_greylisted_exits_75(cli, settings: Settings, write_config) -> None:
    replies = Replies(rcpt={"admin@mycompany.com": "451 4.7.1 Greylisted"})
    with smtp_server("plain", replies=replies) as srv:
        path = write_config(srv.point(settings))
        proc = cli("test-email", "--config", str(path))
    assert proc.returncode == 75
    assert proc.stdout_text.strip().splitlines()[-1].startswith(
        "FAILED (temporary): 451 4.7.1 Greylisted — ")


def test_config_error_exits_78(cli, settings: Settings, write_config) -> None:
    path = write_config(replace(settings, smtp=replace(settings.smtp, encryption="tls13")))
    proc = cli("test-email", "--config", str(path))
    assert proc.returncode == 78
    assert "smtp.encryption" in proc.stderr_text and "Traceback" not in proc.stderr_text


def test_bad_to_is_a_usage_error(cli, settings: Settings, write_config) -> None:
    proc = cli("test-email", "--config", str(write_config(settings)), "--to", "not-an-address")
    assert proc.returncode == 64
    assert "--to: not an email address" in proc.stderr_text and proc.stdout_text == ""


def _line(proc: subprocess.Popen, timeout: float = 10) -> str:
    """The next stdout line of a running process, waiting at most `timeout`."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "no output in time"
    return proc.stdout.readline().decode()


def test_sandbox_receives_test_email(cli, settings: Settings, write_config,
                                     tmp_path: Path) -> None:
    port = free_port()
    maildir = tmp_path / "captured"
    with running("sandbox", "--port", str(port), "--maildir", str(maildir),
                 "--tls", "--auth", f"{USER}:{PASSWORD}") as sandbox:
        banner = _line(sandbox)
        assert f"127.0.0.1:{port}" in banner and "STARTTLS" in banner
        smtp = replace(settings.smtp, host="127.0.0.1", port=port, encryption="starttls",
                       verify_certificate=False, username=USER, password=PASSWORD)
        path = write_config(replace(settings, smtp=smtp))
        proc = cli("test-email", "--config", str(path), "--to", "ops@example.com")
        assert proc.returncode == 0, proc.stdout_text + proc.stderr_text
        _no_secret(proc)
        summary = _line(sandbox)
        assert "ops@example.com" in summary and "SMTP Settings Test" in summary
        assert f"from {USER}" in summary
        sandbox.send_signal(signal.SIGINT)
        out, err = sandbox.communicate(timeout=10)
    assert sandbox.returncode == 0
    assert b"Traceback" not in err and err == b""
    assert b"stopped; 1 message(s)" in out
    [stored] = [p for p in (maildir / "new").iterdir()]
    captured = read_captured(stored)
    assert captured.subject == "SMTP Settings Test"
    assert captured.rcpt_tos == ("ops@example.com",)
    assert PASSWORD.encode() not in stored.read_bytes()


def test_sandbox_stops_on_sigterm_and_reports_busy_port(cli, tmp_path: Path) -> None:
    port = free_port()
    args = ("sandbox", "--port", str(port), "--maildir", str(tmp_path / "m"))
    with running(*args) as first:
        assert f"127.0.0.1:{port}" in _line(first)
        second = cli(*args, timeout=30)
        assert second.returncode == 69
        assert "cannot listen on 127.0.0.1:" in second.stderr_text
        assert "Traceback" not in second.stderr_text
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=10)
    assert first.returncode == 0 and err == b""
    assert b"stopped; 0 message(s)" in out
    assert os.path.isdir(tmp_path / "m" / "new")
