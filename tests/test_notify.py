"""`mikotui notify ...` end to end: the real command in a subprocess, a real
SMTP server on 127.0.0.1, a real spool directory."""

from __future__ import annotations

import base64
import os
import shlex
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import FIXTURES, ROOT, mikotui_command
from notify_support import ADMIN, GENERAL_MISSED, VOICEMAIL, Server, entries, settings_for, write

WAV = (FIXTURES / "voicemail-1s.wav").read_bytes()


@pytest.fixture
def server():
    with Server() as s:
        yield s


@pytest.fixture
def conf(tmp_path: Path, server: Server) -> str:
    # Asterisk's bytes as they came: these tests follow them byte for byte
    # (test_asterisk22_mail.py and test_pbx_voicemail.py check the MP3).
    s = settings_for(tmp_path, server.port)
    return write(tmp_path, replace(s, voicemail=replace(s.voicemail,
                                                        attachment_format="original")))


def spool_of(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.mark.parametrize("bad", [["--date", "26.11.2026 14:03"], ["--duration", "ten"],
                                 ["--date", "2026-11-26T14:03:12"], ["--duration", "3.5"]])
def test_missed_call_with_a_bad_option_is_a_usage_error(cli, conf, server, tmp_path, bad):
    r = cli("--config", conf, "notify", "missed", "--caller", "5", "--called", "201", *bad)
    # One line naming the option and the value it got.
    assert r.returncode == 64 and r.stderr_text.count("\n") == 1, r.stderr_text
    assert f"{bad[0]} '{bad[1]}' is not" in r.stderr_text
    assert server.received == [] and entries(spool_of(tmp_path), "queue") == []


# --- routing: the card's address, else the general one ------------------------------------------------------------

@pytest.mark.parametrize("duration", ["", "-3"])
def test_missed_call_ring_time_the_dialplan_could_not_count_is_0_s(cli, conf, server, duration):
    """README's dialplan computes $[${EPOCH} - start]: empty when the start
    was lost, negative after the clock went back. Still a missed call."""
    r = cli("--config", conf, "notify", "missed", "--caller", "5", "--called", "201",
            "--duration", duration)
    assert r.returncode == 0, r.stderr_text
    [got] = server.received
    assert "Rang for: 0 s" in got.parse().get_body(("plain",)).get_content()


def test_missed_call_caller_name_in_base64_as_the_dialplan_passes_it(cli, conf, server):
    name = "Иван \"Ёлкин\"; $(rm -rf /)"
    r = cli("--config", conf, "notify", "missed", "--caller", "+79261112233", "--called", "201",
            "--caller-name-base64", base64.b64encode(name.encode()).decode())
    assert r.returncode == 0, r.stderr_text
    [got] = server.received
    assert f"From: {name} +79261112233" in got.parse().get_body(("plain",)).get_content()
    # In Windows-1251 (an old channel driver), and broken base64: the mail still goes.
    cli("--config", conf, "notify", "missed", "--caller", "7", "--called", "201",
        "--caller-name-base64", base64.b64encode("Пётр".encode("cp1251")).decode())
    bad = cli("--config", conf, "notify", "missed", "--caller", "8", "--called", "201",
              "--caller-name-base64", "%%%")
    assert bad.returncode == 0 and "not base64" in bad.stderr_text
    assert server.handler.wait_for(3)
    texts = [m.parse().get_body(("plain",)).get_content() for m in server.received[1:]]
    assert "From: Пётр 7" in texts[0] and "From: 8" in texts[1]


def test_missed_call_goes_to_the_called_employee(cli, conf, server, tmp_path):
    r = cli("--config", conf, "notify", "missed", "--caller", "79261234567",
            "--caller-name", "Иван Петров", "--called", "201", "--duration", "23",
            "--date", "2026-11-26 14:03:12")
    assert r.returncode == 0, r.stderr_text
    [got] = server.received
    assert got.rcpt_tos == ("smith@pbx.test",)
    msg = got.parse()
    assert msg["Subject"] == "Missed Call from 79261234567"
    text = msg.get_body(("plain",)).get_content()
    assert "Иван Петров 79261234567" in text
    assert "Smith James 201" in text  # NOTIFICATION_NAME_TO from the card
    assert "2026-11-26 14:03:12" in text and "23 s" in text
    assert entries(spool_of(tmp_path), "queue") == []


def test_missed_call_caller_name_from_the_card_of_an_internal_caller(cli, conf, server):
    r = cli("--config", conf, "notify", "missed", "--caller", "204", "--called", "201")
    assert r.returncode == 0, r.stderr_text
    text = server.received[0].parse().get_body(("plain",)).get_content()
    assert "Petrov Oleg 204" in text


@pytest.mark.parametrize("called", ["202", "999"])  # a card without email; no card
def test_missed_call_falls_back_to_the_general_address(cli, conf, server, called):
    r = cli("--config", conf, "notify", "missed", "--caller", "5", "--called", called)
    assert r.returncode == 0, r.stderr_text
    assert [g.rcpt_tos for g in server.received] == [(GENERAL_MISSED,)]


def test_readme_says_what_exit_0_means_for_a_dropped_notification() -> None:
    from conftest import ROOT

    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "0 done (delivered, durably queued, or dropped by the config's own rule" in readme


def test_missed_call_with_nowhere_to_go_is_logged_and_not_queued(cli, tmp_path, server):
    s = settings_for(tmp_path, server.port)
    conf = write(tmp_path, replace(s, missed_call=replace(s.missed_call, email="")))
    r = cli("--config", conf, "notify", "missed", "--caller", "5", "--called", "999")
    assert r.returncode == 0  # dropped by the config's rule: README's "0 done"
    assert "event=dropped" in r.stderr_text and "nobody" in r.stderr_text
    assert "called=999" in r.stderr_text and "no general missed-call address" in r.stderr_text
    assert server.received == []
    assert entries(spool_of(tmp_path), "queue") == []
    assert "event=dropped" in (spool_of(tmp_path) / "mikotui.log").read_text()


def test_voicemail_goes_to_those_who_missed_it_the_mailbox_and_the_voicemail_address(
        cli, tmp_path, server):
    s = settings_for(tmp_path, server.port)
    # The voicemail address is also an employee's, in another case: sent once.
    conf = write(tmp_path, replace(s, voicemail=replace(s.voicemail, email="ANNA@pbx.test")))
    fixture = (FIXTURES / "asterisk-voicemail-default.eml").read_bytes()  # mailbox 201
    r = cli("--config", conf, "notify", "voicemail", "--missed-by", "203,202,204",
            input=fixture)
    assert r.returncode == 0, r.stderr_text
    [got] = server.received
    assert sorted(a.lower() for a in got.rcpt_tos) == [
        "anna@pbx.test", "oleg@pbx.test", "smith@pbx.test"]


def test_system_alert_goes_to_the_admin_with_the_text_from_stdin(cli, conf, server):
    r = cli("--config", conf, "notify", "system", "--subject", "Low disk space",
            input="Only 3% left on /storage\n")
    assert r.returncode == 0, r.stderr_text
    [got] = server.received
    assert got.rcpt_tos == (ADMIN,)
    assert got.subject == "Low disk space"
    assert "Only 3% left" in got.parse().get_body(("plain",)).get_content()


def test_master_switch_off_queues_nothing(cli, tmp_path, server):
    s = settings_for(tmp_path, server.port)
    conf = write(tmp_path, replace(s, notifications=replace(s.notifications, enabled=False)))
    fixture = (FIXTURES / "asterisk-voicemail-default.eml").read_bytes()
    for args, data in ((("missed", "--caller", "5", "--called", "201"), None),
                       (("voicemail",), fixture),
                       (("system", "--subject", "x", "--message", "y"), None)):
        r = cli("--config", conf, "notify", *args, input=data)
        assert r.returncode == 0
        assert r.stderr_text.count("\n") == 1 and "event=dropped" in r.stderr_text
    assert server.received == []
    spool = spool_of(tmp_path)
    assert all(entries(spool, state) == [] for state in ("queue", "active", "failed"))


# --- the three Asterisk fixtures --------------------------------------------------

@pytest.mark.parametrize("name, subject, recipients, attached", [
    ("asterisk-voicemail-default.eml", "New Voicemail Message from John Doe 74951234567",
     {"smith@pbx.test", VOICEMAIL}, True),
    ("asterisk-voicemail-mikopbx-json.eml",
     "New Voicemail Message from Иван Петров 79261234567", {VOICEMAIL}, True),
    ("asterisk-voicemail-noattach.eml", "New Voicemail Message from an unknown caller",
     {VOICEMAIL}, False),
])
def test_voicemail_fixture(cli, conf, server, name, subject, recipients, attached):
    r = cli("--config", conf, "notify", "voicemail", input=(FIXTURES / name).read_bytes())
    assert r.returncode == 0, r.stderr_text
    [got] = server.received
    msg = got.parse()
    assert set(got.rcpt_tos) == recipients
    assert msg["Subject"] == subject
    files = list(msg.iter_attachments())
    if attached:
        [wav] = files
        assert wav.get_content_type() == "audio/x-wav"
        assert wav.get_filename().startswith("voicemail-2026-11-26-")
        assert wav.get_filename().endswith(".wav")
        assert wav.get_content() == WAV
    else:
        assert files == []
        assert "No recording" in msg.get_body(("plain",)).get_content()


def test_voicemail_key_value_body_from_asterisk_config(cli, conf, server):
    """The body `asterisk-config` tells Asterisk to write is read back, and a
    blank caller name is taken from the employee card of the number."""
    body = ("VM_MAILBOX=201\nVM_MSGNUM=4\nVM_DUR=0:09\nVM_DATE=2026-11-27 10:00:00\n"
            "VM_CIDNUM=204\nVM_NAME=Smith James\nVM_CIDNAME=\nVM_CALLERID=<204>\n")
    mail = ("Date: Fri, 27 Nov 2026 10:00:00 +0000\nFrom: asterisk@pbx\nTo: x@pbx\n"
            "Subject: New voicemail in mailbox 201\nMIME-Version: 1.0\n"
            "Content-Type: text/plain; charset=UTF-8\n\n" + body + ".\n")
    r = cli("--config", conf, "notify", "voicemail", input=mail)
    assert r.returncode == 0, r.stderr_text
    [got] = server.received
    assert got.subject == "New Voicemail Message from Petrov Oleg 204"
    assert set(got.rcpt_tos) == {"smith@pbx.test", VOICEMAIL}


def test_big_recording_is_left_out_and_the_body_says_so(cli, tmp_path, server):
    s = settings_for(tmp_path, server.port)
    conf = write(tmp_path, replace(s, voicemail=replace(s.voicemail, max_attachment_mb=0.01)))
    r = cli("--config", conf, "notify", "voicemail",
            input=(FIXTURES / "asterisk-voicemail-default.eml").read_bytes())
    assert r.returncode == 0, r.stderr_text
    msg = server.received[0].parse()
    assert list(msg.iter_attachments()) == []
    assert "not attached" in msg.get_body(("plain",)).get_content()


# --- bad input ---------------------------------------------------------------------

@pytest.mark.parametrize("garbage", [
    b"", b"hello\n", os.urandom(4096), b"Subject: hi\n\njust text\n",
])
def test_garbage_stdin_is_kept_failed_and_reported(cli, conf, server, tmp_path, garbage):
    r = cli("--config", conf, "notify", "voicemail", input=garbage)
    assert r.returncode == (65 if garbage else 66), r.stderr_text  # 66: input missing
    [failed] = entries(spool_of(tmp_path), "failed")
    kept = spool_of(tmp_path) / "failed" / failed["id"] / "raw.eml"
    assert kept.read_bytes() == garbage
    assert failed["failed_reason"]
    # The administrator is told, once.
    [alert] = server.received
    assert alert.rcpt_tos == (ADMIN,)
    assert failed["id"] in alert.parse().get_body(("plain",)).get_content()


def test_oversized_stdin_is_refused_before_parsing_and_kept(cli, conf, server, tmp_path):
    big = b"X-Asterisk-CallerID: 1\n\n" + b"A" * (50 * 1024 * 1024 + 1)
    r = cli("--config", conf, "notify", "voicemail", "--queue-only", input=big)
    assert r.returncode == 65
    [failed] = entries(spool_of(tmp_path), "failed")
    assert "over the 50 MB limit" in failed["failed_reason"]
    kept = spool_of(tmp_path) / "failed" / failed["id"] / "raw.eml"
    assert kept.stat().st_size == len(big)
    assert server.received == []  # --queue-only: the alert waits in the queue
    [alert] = entries(spool_of(tmp_path), "queue")
    assert alert["kind"] == "alert" and alert["recipients"] == [ADMIN]


def test_voicemail_with_a_broken_config_is_kept_and_sent_once_fixed(cli, tmp_path, server):
    s = settings_for(tmp_path, server.port)
    conf = tmp_path / "etc" / "mikotui.toml"
    conf.parent.mkdir()
    conf.write_text("[smtp\n")
    fixture = (FIXTURES / "asterisk-voicemail-default.eml").read_bytes()
    r = cli("--config", str(conf), "notify", "voicemail", input=fixture)
    assert r.returncode == 78 and "config error" in r.stderr_text
    default_spool = tmp_path / "var" / "spool"  # [spool] path's default, beside the config
    [kept] = entries(default_spool, "failed")
    assert (default_spool / "failed" / kept["id"] / "raw.eml").read_bytes() == fixture

    from mikotui import config
    config.save(replace(s, spool=replace(s.spool, path=str(default_spool))), conf)
    assert cli("--config", str(conf), "queue", "retry", kept["id"]).returncode == 0
    assert cli("--config", str(conf), "deliver").returncode == 0
    [got] = server.received
    assert set(got.rcpt_tos) == {"smith@pbx.test", VOICEMAIL}


# --- header injection ----------------------------------------------------------------

def test_cr_lf_caller_name_cannot_inject_headers(cli, conf, server):
    evil = "Evil\r\nBcc: victim@evil.test\r\nSubject: pwned"
    r = cli("--config", conf, "notify", "missed", "--caller", "5\r\nX-Injected: 1",
            "--caller-name", evil, "--called", "201")
    assert r.returncode == 0, r.stderr_text
    json_body = ('{%|%VM_CALLERID%|%:%|%"Evil\rBcc: victim@evil.test" <7>%|%,'
                 '%|%VM_MAILBOX%|%:%|%201%|%,%|%VM_DUR%|%:%|%0:01%|%}')
    mail = ("Date: Fri, 27 Nov 2026 10:00:00 +0000\nFrom: asterisk@pbx\n"
            "X-Asterisk-CallerIDName: Evil\nMIME-Version: 1.0\n"
            "Content-Type: text/plain; charset=UTF-8\n\n" + json_body + "\n")
    r = cli("--config", conf, "notify", "voicemail", input=mail)
    assert r.returncode == 0, r.stderr_text
    assert len(server.received) == 2
    for got in server.received:
        assert "victim@evil.test" not in got.rcpt_tos
        msg = got.parse()
        assert msg["Bcc"] is None and msg["X-Injected"] is None
        assert len(msg.get_all("Subject")) == 1
        head = got.data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        assert not any(line.startswith((b"Bcc:", b"X-Injected:"))
                       for line in head.replace(b"\r", b"\n").split(b"\n"))


# --- the enqueue path ---------------------------------------------------------------

def test_queue_only_is_durable_private_and_light(tmp_path, conf):
    """The enqueue path imports no asyncio, textual or rich, and leaves one
    whole, private entry in queue/."""
    probe = (
        "import sys\n"
        "from mikotui.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "heavy = sorted(m for m in ('asyncio', 'textual', 'rich', 'aiosmtplib') "
        "if m in sys.modules)\n"
        "print(rc, heavy)\n"
    )
    r = subprocess.run([sys.executable, "-c", probe, "--config", conf, "notify", "missed",
                        "--caller", "5", "--called", "201", "--queue-only"],
                       check=False, capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert r.stdout.strip() == "0 []", r.stderr
    spool = spool_of(tmp_path)
    assert stat.S_IMODE(spool.stat().st_mode) == 0o700
    for d in ("tmp", "queue", "active", "failed"):
        assert stat.S_IMODE((spool / d).stat().st_mode) == 0o700
    [meta] = entries(spool, "queue")
    entry = spool / "queue" / meta["id"]
    assert meta["owed"] == ["smith@pbx.test"] and meta["attempts"] == 0
    assert (entry / "message.eml").stat().st_size == meta["size"]
    for f in entry.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600


def test_asterisk_config_prints_the_voicemail_conf_lines(cli, conf):
    r = cli("--config", conf, "asterisk-config")
    assert r.returncode == 0
    lines = r.stdout_text.splitlines()
    assert "attach=yes" in lines
    [mailcmd] = [ln for ln in lines if ln.startswith("mailcmd=")]
    assert mailcmd.endswith(f"--config {conf} notify voicemail")
    [body] = [ln for ln in lines if ln.startswith("emailbody=")]
    assert "VM_CALLERID=${VM_CALLERID}\\n" in body and '"' not in body


# --- bodies as real PBXes write them ------------------------------------------------

def stock_mail(charset: str, text: bytes, extra_headers: str = "") -> bytes:
    head = ("Date: Thu, 26 Nov 2026 14:15:44 +0000\nFrom: Asterisk PBX <asterisk@pbx>\n"
            "To: x@pbx\nSubject: [PBX]: New message 3 in mailbox 201\n" + extra_headers +
            "MIME-Version: 1.0\nContent-Type: text/plain; charset=" + charset +
            "\nContent-Transfer-Encoding: 8bit\n\n")
    return head.encode() + text + b"\n.\n"


@pytest.mark.parametrize("charset, encoding", [
    ("ISO-8859-1", "utf-8"),  # stock charset, the name is UTF-8 from the channel
    ("UTF-8", "cp1251"),  # labelled UTF-8, written by an old 1251 setup
    ("windows-1251", "cp1251"),  # labelled right
])
def test_voicemail_body_in_a_mislabelled_charset_keeps_the_caller_name(
        cli, conf, server, charset, encoding):
    text = ("Dear Smith James:\n\n\tJust wanted to let you know you were just left a 0:12 "
            "long message (number 3)\nin mailbox 201 from \"Иван Петров\" <74951234567>, "
            "on Thursday, November 26, 2026 at 02:15:44 PM so you might\nwant to check it "
            "when you get a chance.  Thanks!\n").encode(encoding)
    mail = stock_mail(charset, text, "X-Asterisk-CallerID: 74951234567\n")
    r = cli("--config", conf, "notify", "voicemail", input=mail)
    assert r.returncode == 0, r.stderr_text
    [got] = server.received
    assert got.subject == "New Voicemail Message from Иван Петров 74951234567"
    assert '"Иван Петров" <74951234567>' in got.parse().get_body(("plain",)).get_content()


def test_voicemail_crlf_gsm_wav_and_trailing_dot(cli, conf, server):
    """CRLF line ends, a `.WAV` (GSM) recording, and the lone `.` after the
    closing boundary: the recording arrives byte for byte, named `.wav`."""
    raw = (FIXTURES / "asterisk-voicemail-default.eml").read_bytes()
    raw = raw.replace(b"audio/x-wav", b"audio/x-WAV").replace(b".wav\"", b".WAV\"")
    r = cli("--config", conf, "notify", "voicemail", input=raw.replace(b"\n", b"\r\n"))
    assert r.returncode == 0, r.stderr_text
    [got] = server.received
    [wav] = got.parse().iter_attachments()
    assert wav.get_filename() == "voicemail-2026-11-26-74951234567.wav"
    assert wav.get_content_type() == "audio/x-wav" and wav.get_content() == WAV


def test_system_alert_with_an_empty_subject_is_a_usage_error(cli, conf, server, tmp_path):
    r = cli("--config", conf, "notify", "system", "--subject", " ", "--message", "x")
    assert r.returncode == 64 and "--subject" in r.stderr_text
    assert server.received == [] and entries(spool_of(tmp_path), "queue") == []


def test_voicemail_on_an_unusable_spool_is_kept_in_tmpdir(cli, tmp_path, server):
    """Asterisk deletes its copy whatever we answer: a spool we can't write
    must not lose the recording. Exit 73, one line saying where it is."""
    (tmp_path / "not-a-dir").write_text("")
    s = settings_for(tmp_path, server.port)
    conf = write(tmp_path, replace(s, spool=replace(s.spool, path=str(tmp_path / "not-a-dir" / "spool"))))
    rescue = tmp_path / "rescue"
    rescue.mkdir()
    raw = (FIXTURES / "asterisk-voicemail-default.eml").read_bytes()
    r = cli("--config", conf, "notify", "voicemail", input=raw, env={"TMPDIR": str(rescue)})
    assert r.returncode == 73
    [kept] = rescue.iterdir()
    assert kept.read_bytes() == raw and stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert f"kept in {kept}" in r.stderr_text and "Traceback" not in r.stderr_text

    # Fed back in once the spool works, it is delivered.
    conf = write(tmp_path, s)
    r = cli("--config", conf, "notify", "voicemail", input=kept.read_bytes())
    assert r.returncode == 0, r.stderr_text
    assert [g.subject for g in server.received] == ["New Voicemail Message from John Doe 74951234567"]


def test_deliver_with_nothing_due_says_what_waits(cli, tmp_path):
    with Server() as down:
        port = down.port
    conf = write(tmp_path, settings_for(tmp_path, port))  # nobody listens there now
    r = cli("--config", conf, "notify", "missed", "--caller", "5", "--called", "201")
    assert r.returncode == 0 and "queued, will retry" in r.stderr_text
    r = cli("--config", conf, "deliver")
    assert r.returncode == 0
    assert "1 waiting to be retried" in r.stdout_text and "queue retry --all" in r.stdout_text


def test_password_readable_by_others_is_warned_about_but_the_mail_goes(cli, tmp_path):
    with Server(auth=("pbx", "S3cret-pw")) as server:
        s = settings_for(tmp_path, server.port, username="pbx", password="S3cret-pw",
                         allow_insecure_auth=True)
        conf = write(tmp_path, s)
        os.chmod(conf, 0o644)
        r = cli("--config", conf, "notify", "missed", "--caller", "5", "--called", "201")
        assert r.returncode == 0, r.stderr_text
        assert len(server.received) == 1
    log = (spool_of(tmp_path) / "mikotui.log").read_text()
    assert "event=warning" in log and f"chmod 600 {conf}" in log
    assert "S3cret-pw" not in log and "S3cret-pw" not in r.stderr_text


def test_voicemail_with_a_body_of_its_own_wording_still_delivers_the_recording(
        cli, conf, server):
    """An admin's own `emailbody` (no VM_* keys, no stock text) and an
    anonymous caller (no X-Asterisk-CallerID): the recording still goes out,
    to the mailbox (named in the stock subject) and the voicemail address."""
    raw = (FIXTURES / "asterisk-voicemail-default.eml").read_bytes()
    raw = raw.replace(b"X-Asterisk-CallerID: 74951234567\n", b"")
    raw = raw.replace(b"X-Asterisk-CallerIDName: John Doe\n", b"")
    start = raw.index(b"Dear James Smith:")
    end = raw.index(b"--Asterisk") + len(b"--Asterisk")
    raw = raw[:start] + "Вам оставили сообщение.".encode() + raw[end:]
    r = cli("--config", conf, "notify", "voicemail", input=raw)
    assert r.returncode == 0, r.stderr_text
    [got] = server.received
    assert set(got.rcpt_tos) == {"smith@pbx.test", VOICEMAIL}
    [wav] = got.parse().iter_attachments()
    assert wav.get_content() == WAV and wav.get_filename() == "voicemail-2026-11-26-unknown.wav"


def unusable_spool_config(tmp_path: Path, port: int) -> str:
    (tmp_path / "not-a-dir").write_text("")
    s = settings_for(tmp_path, port)
    return write(tmp_path, replace(s, spool=replace(s.spool, path=str(tmp_path / "not-a-dir" / "s"))))


@pytest.mark.parametrize("kind", [
    ["missed", "--caller", "5", "--called", "201"],
    ["system", "--subject", "disk is read-only", "--message", "remounted ro"],
])
def test_an_unusable_spool_still_sends_when_the_server_takes_it(cli, tmp_path, server, kind):
    conf = unusable_spool_config(tmp_path, server.port)
    r = cli("--config", conf, "notify", *kind)
    assert r.returncode == 0, r.stderr_text
    assert "sent without the spool" in r.stderr_text and "is a file, not a folder" in r.stderr_text
    assert len(r.stderr_text.strip().splitlines()) == 1  # one line: the problem and the outcome
    assert len(server.received) == 1


def test_an_unusable_spool_and_a_server_down_keep_the_notification_in_a_file(cli, tmp_path):
    with Server() as gone:
        port = gone.port
    conf = unusable_spool_config(tmp_path, port)
    rescue = tmp_path / "rescue"
    rescue.mkdir()
    for queue_only in ([], ["--queue-only"]):  # --queue-only too: nothing could wait
        r = cli("--config", conf, "notify", "missed", *queue_only, "--caller", "5",
                "--called", "201", env={"TMPDIR": str(rescue)})
        assert r.returncode == 73 and len(r.stderr_text.strip().splitlines()) == 1
        assert "Connection refused" in r.stderr_text and "is kept in" in r.stderr_text
    assert len(list(rescue.iterdir())) == 2


def test_system_alert_with_no_admin_email_is_dropped_and_logged(cli, tmp_path, server):
    s = settings_for(tmp_path, server.port)
    conf = write(tmp_path, replace(s, notifications=replace(s.notifications, admin_email="")))
    r = cli("--config", conf, "notify", "system", "--subject", "s", "--message", "m")
    assert r.returncode == 0, r.stderr_text
    assert "event=dropped" in r.stderr_text and "admin_email is empty" in r.stderr_text
    assert server.received == []


def test_a_huge_recording_is_left_out_without_reading_it_into_memory(cli, conf, server):
    """A 40 MB recording (under the 50 MB input cap, over the 10 MB attachment
    limit): the email module would need ~8x that; the note is sent, the
    process stays small."""
    import base64

    raw = (FIXTURES / "asterisk-voicemail-default.eml").read_bytes()
    head, _, tail = raw.partition(b"\n\n------voicemail_3201515146930886\nContent-Type: audio")
    part_head, _, _ = tail.partition(b"\n\n")
    big = base64.encodebytes(os.urandom(30 * 2**20))
    raw = (head + b"\n\n------voicemail_3201515146930886\nContent-Type: audio" + part_head
           + b"\n\n" + big + b"\n------voicemail_3201515146930886--\n.\n")
    # A fresh parent whose only child is mikotui reports that child's peak.
    measure = ("import resource, subprocess, sys; "
               "code = subprocess.run(sys.argv[1:]).returncode; "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)")
    r = subprocess.run([sys.executable, "-c", measure, *mikotui_command(), "--config", conf,
                        "notify", "voicemail"], input=raw, capture_output=True, timeout=60,
                       check=False)
    assert r.returncode == 0, r.stderr
    [got] = server.received
    msg = got.parse()
    assert list(msg.iter_attachments()) == []
    assert "(30.0 MB) is larger than the 10 MB limit" in msg.get_body(("plain",)).get_content()
    assert int(r.stdout) < 150 * 1024  # KiB; reading it whole took over 300 MB


def test_a_voicemail_cut_short_sends_what_arrived_and_says_so(cli, conf, server):
    raw = (FIXTURES / "asterisk-voicemail-default.eml").read_bytes()
    raw = raw[:raw.index(b"UklGR") + 5001]  # the mail ends mid-attachment, mid-group
    r = cli("--config", conf, "notify", "voicemail", input=raw)
    assert r.returncode == 0, r.stderr_text
    [got] = server.received
    msg = got.parse()
    [wav] = msg.iter_attachments()
    assert wav.get_content().startswith(b"RIFF") and WAV.startswith(wav.get_content())
    assert "arrived incomplete (4 of 16 KB)" in msg.get_body(("plain",)).get_content()


def test_a_card_with_a_broken_email_counts_as_none(cli, tmp_path, server):
    """Routing falls back to the general address rather than losing the call
    to a 5xx; for voicemail the broken card is skipped."""
    from mikotui import config

    s = settings_for(tmp_path, server.port)
    s = replace(s, employees=(*s.employees, config.Employee("205", "Bad Addr", "a b@x"),
                              config.Employee("206", "No Domain", "smith")))
    conf = write(tmp_path, s)
    for called in ("205", "206"):
        r = cli("--config", conf, "notify", "missed", "--caller", "5", "--called", called)
        assert r.returncode == 0, r.stderr_text
    r = cli("--config", conf, "notify", "voicemail", "--missed-by", "205,206,201",
            input=(FIXTURES / "asterisk-voicemail-noattach.eml").read_bytes())
    assert r.returncode == 0, r.stderr_text
    assert [set(g.rcpt_tos) for g in server.received] == [
        {GENERAL_MISSED}, {GENERAL_MISSED}, {"smith@pbx.test", VOICEMAIL}]
    assert entries(spool_of(tmp_path), "failed") == []


def test_the_printed_voicemail_conf_works_as_asterisk_would_use_it(cli, conf, server):
    """Do what Asterisk does with the printed lines: fill `emailbody` and
    `emailsubject` (`\\n` is a line break, ${VM_*} the values), write the
    mail in its layout with the recording, run `mailcmd` through the shell."""
    import base64
    import re

    lines = dict(ln.split("=", 1) for ln in cli("--config", conf, "asterisk-config")
                 .stdout_text.splitlines() if "=" in ln and not ln.startswith(";"))
    vm = {"VM_MAILBOX": "203", "VM_MSGNUM": "7", "VM_DUR": "0:42",
          "VM_DATE": "2026-11-27 09:30:00", "VM_CIDNUM": "79261234567", "VM_NAME": "Ivanova Anna",
          "VM_CIDNAME": 'Иван "Ваня" Петров',
          "VM_CALLERID": '"Иван \\"Ваня\\" Петров" <79261234567>'}

    def fill(template: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: vm.get(m.group(1), ""),
                      template.replace("\\n", "\n"))

    boundary = "----voicemail_7203"
    mail = (f"Date: Fri, 27 Nov 2026 09:30:00 +0300\nFrom: Asterisk PBX <asterisk@pbx>\n"
            f"To: Ivanova Anna <anna@pbx.test>\nSubject: {fill(lines['emailsubject'])}\n"
            f"X-Asterisk-CallerID: 79261234567\nMIME-Version: 1.0\n"
            f'Content-Type: multipart/mixed; boundary="{boundary}"\n\n\n'
            f"--{boundary}\nContent-Type: text/plain; charset={lines['charset']}\n"
            f"Content-Transfer-Encoding: 8bit\n\n{fill(lines['emailbody'])}\n"
            f'--{boundary}\nContent-Type: audio/x-wav; name="msg0007.wav"\n'
            f"Content-Transfer-Encoding: base64\n"
            f'Content-Disposition: attachment; filename="msg0007.wav"\n\n'
            f"{base64.encodebytes(WAV).decode()}\n--{boundary}--\n.\n").encode()
    r = subprocess.run(["sh", "-c", lines["mailcmd"]], input=mail, capture_output=True,
                       timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    [got] = server.received
    assert set(got.rcpt_tos) == {"Anna@pbx.test", VOICEMAIL}  # the mailbox's employee
    assert got.subject == 'New Voicemail Message from Иван "Ваня" Петров 79261234567'
    msg = got.parse()
    assert "Length: 0:42" in msg.get_body(("plain",)).get_content()
    [wav] = msg.iter_attachments()
    assert wav.get_content() == WAV and wav.get_filename() == "voicemail-2026-11-27-79261234567.wav"


def test_system_text_from_a_script_is_cleaned_of_control_characters(cli, conf, server):
    text = b"disk /var at 97%\r\nNUL here:\x00 escape:\x1b[31mred\x1b[0m\ttab\r\n"
    r = cli("--config", conf, "notify", "system", "--subject", "disk", input=text)
    assert r.returncode == 0, r.stderr_text
    body = server.received[0].parse().get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert "\r" not in body and "disk /var at 97%\nNUL here: escape:[31mred[0m\ttab\n" in body


def test_voicemail_conf_example_is_what_asterisk_config_prints(cli, conf):
    """One source for the lines: the example file is the command's output
    with README's paths, and the command prints exactly that block."""
    from mikotui.commands.asterisk_config import EXAMPLE_COMMAND, general_lines

    example = (ROOT / "config" / "voicemail.conf.example").read_text()
    assert example.endswith(general_lines(EXAMPLE_COMMAND))
    printed = cli("--config", conf, "asterisk-config").stdout_text
    mailcmd = next(ln for ln in printed.splitlines() if ln.startswith("mailcmd="))
    assert printed == general_lines(shlex.split(mailcmd.removeprefix("mailcmd=")))
    assert "\n[general]\n" in printed and "(+)" not in printed.split("[general]")[1]
