"""Hostile outside values through the real path: `mikotui` code -> spool ->
deliver -> a real aiosmtpd server on 127.0.0.1, parsed there.

Encoded words that decode to CR LF, raw control characters and Unicode line
breaks, bytes from an old cp1251/koi8-r setup, and 5,000-character lines go
into every outside value (caller ID, names, extension, system subject and
text, template text, sender name, voicemail headers and body). Whatever
comes in: no extra header, no line over 998 characters, nothing refused,
nothing lost. The bulk runs in-process (`cli.main` / `intake.run`, the same
functions the command calls); a smaller property runs the `mikotui` command.
"""

from __future__ import annotations

import base64
import email
import email.policy
import io
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import examples, run_cli
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from notify_support import ADMIN, VOICEMAIL, Server, entries, settings_for, write

from mikotui import cli, intake
from mikotui.message import one_line

# What an attacker wants a reader or a server to take as a header of its own.
SMUGGLED = ("Bcc: bcc@evil.test", "Reply-To: attacker@evil.test", "X-Injected: 1")
TOP_HEADERS = ["From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted",
               "MIME-Version", "Content-Type"]
PART_HEADERS = {"content-type", "content-transfer-encoding", "mime-version",
                "content-disposition"}
LINE_BREAKS = ["\r", "\n", "\r\n", "\x00", "\u2028", "\u2029", "\x85", "\x0b", "\x0c",
               "\x1b", "\t"]
NAMES = ["Иван Петров", "Ёлкин Юрий", "ОЛЕГ СИДОРОВ", "Анна-Мария Щукина"]


def _q(data: bytes) -> str:
    return "".join(chr(b) if chr(b).isalnum() else f"={b:02X}" for b in data)


@st.composite
def encoded_words(draw: st.DrawFn) -> str:
    """RFC 2047 encoded words that decode to a line break and a header."""
    charset = draw(st.sampled_from(["utf-8", "UTF-8", "iso-8859-1", "koi8-r", "windows-1251"]))
    inner = draw(st.sampled_from(["\r\n", "\n", "\r", "\r\n\r\n", "\x00\r\n"]))
    payload = (draw(st.sampled_from(["", "x", "Иван"])) + inner
               + draw(st.sampled_from(SMUGGLED)))
    data = payload.encode(charset, "replace")
    word = (f"=?{charset}?q?{_q(data)}?=" if draw(st.booleans())
            else f"=?{charset}?b?{base64.b64encode(data).decode()}?=")
    # Sometimes encoded twice: what decodes to an encoded word must stay text too.
    if draw(st.booleans()):
        word = f"=?utf-8?b?{base64.b64encode(word.encode()).decode()}?="
    return word


def _in_old_charset(name: str, charset: str) -> str:
    """The str Python makes of argv bytes that are not UTF-8."""
    return name.encode(charset).decode("utf-8", "surrogateescape")


text_piece = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20),
    encoded_words(),
    st.sampled_from(LINE_BREAKS),
    st.sampled_from(["<", ">", '"', ",", ":", "=?", "?=", "\\", " ", "  ", ";"] + list(SMUGGLED)),
    st.builds(lambda n, c: c * n, st.integers(999, 5000), st.sampled_from("7aЖ ")),
)
argv_piece = st.one_of(
    text_piece,
    st.builds(_in_old_charset, st.sampled_from(NAMES), st.sampled_from(["cp1251", "koi8-r"])),
    st.binary(min_size=1, max_size=12).map(lambda b: b.decode("utf-8", "surrogateescape")),
)
# Text from a config file or a template: never surrogates (TOML is UTF-8).
config_text = st.lists(text_piece, max_size=3).map("".join)
argv_text = st.lists(argv_piece, max_size=3).map("".join)
# argv is C strings: no NUL.
command_argv = argv_text.map(lambda t: t.replace("\x00", " "))


def scratch() -> tempfile.TemporaryDirectory:
    """A folder for one case's config and spool; in memory when the machine
    has /dev/shm (the spool fsyncs every entry: that is most of a case's time)."""
    shm = Path("/dev/shm")
    return tempfile.TemporaryDirectory(dir=shm if os.access(shm, os.W_OK) else None)


# --- what the server got ---------------------------------------------------------

def check_arrived(raw: bytes) -> email.message.EmailMessage:
    """No line over 998, no bare CR or LF, exactly our headers, a Subject and
    From a reader decodes to one line. Returns the parsed message."""
    assert b"\r\n" in raw
    for line in raw.split(b"\r\n"):
        assert len(line) <= 998, f"a line of {len(line)} characters"
        assert b"\r" not in line and b"\n" not in line
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert list(msg.keys()) == TOP_HEADERS
    for part in msg.walk():
        if part is not msg:
            assert {k.lower() for k in part} <= PART_HEADERS, list(part.keys())
    for name in ("Subject", "From"):
        decoded = str(msg[name])
        assert not re.search(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", decoded), (name, decoded)
    assert msg["From"].addresses[0].addr_spec == "pbx@pbx.test"
    assert not msg.defects
    return msg


def plain_text(msg: email.message.EmailMessage) -> str:
    return msg.get_body(("plain",)).get_content()


def assert_nothing_left(spool: Path) -> None:
    for state in ("queue", "active", "failed"):
        assert entries(spool, state) == [], state


# --- in-process: cli.main, the same code the command runs -------------------------

@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    # aiosmtpd refuses a line over 998 characters, as a strict server does.
    with Server() as s:
        yield s


def configured(folder: Path, server: Server, sender_name: str = "", subject: str = "",
               body: str = "") -> str:
    s = settings_for(folder, server.port)
    s = replace(s, smtp=replace(s.smtp, sender_name=sender_name),
                missed_call=replace(s.missed_call,
                                    subject=subject + " NOTIFICATION_CALLERID",
                                    body=body + "\nNOTIFICATION_CALLERID\nNOTIFICATION_NAME_FROM"
                                    "\nNOTIFICATION_TO"),
                voicemail=replace(s.voicemail, subject=subject + " VM_CALLER_NAME"))
    return write(folder, s)


def received_after(server: Server, before: int, count: int) -> list[bytes]:
    assert server.handler.wait_for(before + count, timeout=10)
    got = server.received[before:]
    assert len(got) == count, "more mail than recipients"
    return [g.data for g in got]


@pytest.fixture(scope="module")
def shared(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One config and spool for the bulk property: every case leaves the
    spool empty, or fails."""
    shm = Path("/dev/shm")
    folder = Path(tempfile.mkdtemp(dir=shm if os.access(shm, os.W_OK) else
                                   tmp_path_factory.getbasetemp()))
    configured(folder, server)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def missed_call(server: Server, folder: Path, caller: str, caller_name: str, called: str,
                called_name: str) -> email.message.EmailMessage:
    """`mikotui notify missed` in-process, whatever the values: one mail
    arrives, our headers only, nothing stays in the spool."""
    before = len(server.received)
    code = cli.main(["--config", str(folder / "mikotui.toml"), "notify", "missed",
                     f"--caller={caller}", f"--caller-name={caller_name}",
                     f"--called={called}", f"--called-name={called_name}"])
    assert code == 0
    [raw] = received_after(server, before, 1)
    msg = check_arrived(raw)
    assert_nothing_left(folder / "spool")
    if not re.search(r"[\udc80-\udcff]", caller):
        # The caller ID is text: the reader sees it, never what it would decode to.
        assert one_line(caller) in str(msg["Subject"])
        assert one_line(caller) in plain_text(msg)
    return msg


@settings(max_examples=examples(2000), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(caller=argv_text, caller_name=argv_text, called=argv_text, called_name=argv_text)
@example(caller="=?utf-8?q?=0D=0AReply-To:_attacker@evil.test?=", caller_name="",
         called="201", called_name="")
@example(caller="7" * 1200, caller_name="", called="201", called_name="")
@example(caller="5", caller_name="=?utf-8?b?PT91dGYtOD9xPz0wRD0wQUJjYzpfeEBldmlsLnRlc3Q/PQ==?=",
         called="201", called_name="")
@example(caller=_in_old_charset("Иван Петров", "cp1251"), called="201",
         caller_name=_in_old_charset("Иван Петров", "koi8-r"), called_name="\udcff\udcfe")
@example(caller="00" + " " * 1003 + "0", caller_name="", called="", called_name="")
def test_no_missed_call_value_injects_a_header_or_is_lost(
        server: Server, shared: Path, caller: str, caller_name: str, called: str,
        called_name: str) -> None:
    missed_call(server, shared, caller, caller_name, called, called_name)


@settings(max_examples=examples(200), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(sender_name=config_text, subject=config_text, body=config_text, caller=argv_text)
@example(sender_name='=?utf-8?q?x=0D=0ABcc:_bcc@evil.test?= "<>"', subject="", body="",
         caller="5")
@example(sender_name="", subject="00" + " " * 1003 + "0", body="x" * 5000, caller="5")
def test_no_template_or_sender_name_injects_a_header_or_is_lost(
        server: Server, sender_name: str, subject: str, body: str, caller: str) -> None:
    with scratch() as tmp:
        folder = Path(tmp)
        configured(folder, server, sender_name, subject, body)
        missed_call(server, folder, caller, "", "201", "")


@settings(max_examples=examples(300), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(subject=argv_text, text=argv_text)
@example(subject="disk =?utf-8?q?=0D=0ABcc:_bcc@evil.test?=", text="x" * 5000 + "\r\nok")
def test_no_system_alert_value_injects_a_header_or_is_lost(server: Server, subject: str,
                                                           text: str) -> None:
    if not one_line(subject):
        subject += "x"  # an empty subject is a usage error, tested elsewhere
    with scratch() as tmp:
        folder = Path(tmp)
        conf = configured(folder, server)
        before = len(server.received)
        code = cli.main(["--config", conf, "notify", "system", f"--subject={subject}",
                         f"--message={text}"])
        assert code == 0
        [raw] = received_after(server, before, 1)
        msg = check_arrived(raw)
        assert_nothing_left(folder / "spool")
        assert msg["To"].addresses[0].addr_spec == ADMIN


def voicemail_mail(name: bytes, num: bytes, subject: bytes, body_charset: str,
                   shape: str = "keys") -> bytes:
    """Asterisk's mail with the hostile values written raw, as Asterisk
    writes what the channel gave it: our KEY=value body, or its stock text
    (where the caller's name comes from X-Asterisk-CallerIDName)."""
    if shape == "keys":
        body = (b"VM_MAILBOX=201\nVM_DUR=0:05\nVM_MSGNUM=1\nVM_CIDNUM=" + num
                + b"\nVM_CIDNAME=" + name + b"\nVM_CALLERID=\"" + name + b"\" <" + num + b">\n")
    else:
        body = (b"Dear James Smith:\n\n\tJust wanted to let you know you were just left a "
                b"0:05 long message (number 1)\nin mailbox 201 from \"" + name + b"\" <" + num
                + b">, on Friday, November 27, 2026 at 10:00:00 AM so you might\nwant to "
                b"check it when you get a chance.  Thanks!\n\n\t\t\t\t--Asterisk\n")
    return (b"Date: Fri, 27 Nov 2026 10:00:00 +0000\nFrom: asterisk@pbx\n"
            b"Subject: " + subject + b"\nX-Asterisk-CallerID: " + num
            + b"\nX-Asterisk-CallerIDName: " + name + b"\nMIME-Version: 1.0\n"
            b"Content-Type: text/plain; charset=" + body_charset.encode() + b"\n"
            b"Content-Transfer-Encoding: 8bit\n\n" + body)


def _header_safe(value: str, charset: str) -> bytes:
    # A raw line break in Asterisk's own mail is Asterisk's own header; what
    # we test is the value inside one header line. Asterisk's strings are C
    # strings: no NUL.
    return re.sub(r"[\r\n\x00]", " ", value).encode(charset, "replace")


@settings(max_examples=examples(300), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(name=config_text, num=config_text, subject=config_text,
       charset=st.sampled_from(["utf-8", "cp1251", "koi8-r"]),
       shape=st.sampled_from(["keys", "stock"]))
@example(name="=?utf-8?q?=0D=0AReply-To:_attacker@evil.test?=", num="5",
         subject="=?utf-8?q?New_message=0D=0ABcc:_bcc@evil.test?=", charset="utf-8",
         shape="stock")
@example(name="=?utf-8?q?=0D=0AReply-To:_attacker@evil.test?=", num="5", subject="",
         charset="utf-8", shape="keys")
def test_no_voicemail_value_injects_a_header_or_is_lost(
        server: Server, name: str, num: str, subject: str, charset: str, shape: str) -> None:
    raw = voicemail_mail(_header_safe(name, charset), _header_safe(num, charset),
                         _header_safe(subject, charset), "ISO-8859-1", shape)
    with scratch() as tmp:
        folder = Path(tmp)
        conf = configured(folder, server, subject=subject)
        before = len(server.received)
        code = intake.run(intake.Voicemail(), config_path=conf, stdin=io.BytesIO(raw))
        assert code == 0
        [data] = received_after(server, before, 1)
        check_arrived(data)
        # Mailbox 201's employee and the general voicemail address.
        assert server.received[-1].rcpt_tos == ("smith@pbx.test", VOICEMAIL)
        assert_nothing_left(folder / "spool")


# --- the real command, argv bytes and all ---------------------------------------------

@settings(max_examples=examples(40), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(caller=command_argv, caller_name=command_argv, called=command_argv)
@example(caller="=?utf-8?q?=0D=0AReply-To:_attacker@evil.test?=", caller_name="",
         called="201")
@example(caller="5", caller_name=_in_old_charset("Иван Петров", "cp1251"), called="201")
def test_the_command_takes_any_argv(server: Server, caller: str, caller_name: str,
                                    called: str) -> None:
    with scratch() as tmp:
        folder = Path(tmp)
        conf = configured(folder, server)
        before = len(server.received)
        # str with surrogates goes out as the original bytes (os.fsencode).
        r = run_cli("--config", conf, "notify", "missed", f"--caller={caller}",
                    f"--caller-name={caller_name}", f"--called={called}")
        assert r.returncode == 0, r.stderr_text
        [raw] = received_after(server, before, 1)
        check_arrived(raw)
        assert_nothing_left(folder / "spool")


def test_an_encoded_caller_id_arrives_as_the_text_it_is(server: Server, tmp_path: Path) -> None:
    """The issue's reproduction: no Reply-To arrives, the subject shows the text."""
    conf = configured(tmp_path, server)
    before = len(server.received)
    caller = "=?utf-8?q?=0D=0AReply-To:_attacker@evil.test?="
    r = run_cli("--config", conf, "notify", "missed", "--caller", caller, "--called", "201")
    assert r.returncode == 0, r.stderr_text
    [raw] = received_after(server, before, 1)
    msg = check_arrived(raw)
    assert msg["Reply-To"] is None
    assert str(msg["Subject"]) == caller
    assert str(msg["To"]) == "smith@pbx.test"


# --- one case each ------------------------------------------------------------------

def test_a_1200_digit_caller_id_arrives_and_so_does_the_alert_about_it(tmp_path: Path) -> None:
    """A strict server (aiosmtpd) refuses a line over 998 characters: the
    missed call arrives folded, and when its recipient refuses it, the
    administrator's alert arrives too, quoting the subject cut short."""
    caller = "7" * 1200
    with Server() as srv:
        srv.handler.rcpt_codes["oleg@pbx.test"] = "550 5.1.1 No such user"
        conf = configured(tmp_path, srv)
        r = run_cli("--config", conf, "notify", "missed", "--caller", caller, "--called", "201")
        assert r.returncode == 0, r.stderr_text
        r = run_cli("--config", conf, "notify", "missed", "--caller", caller, "--called", "204")
        assert r.returncode == 69, r.stderr_text  # refused for good: failed/, alert sent
        missed, alert = (check_arrived(g.data) for g in srv.received)
    assert str(missed["Subject"]) == caller and caller in plain_text(missed)
    assert str(alert["To"]) == ADMIN
    text = plain_text(alert)
    assert "7" * 150 in text and caller not in text and "No such user" in text


@pytest.mark.parametrize("charset", ["cp1251", "koi8-r"])
def test_a_caller_name_in_an_old_russian_charset_in_argv_is_read(
        server: Server, tmp_path: Path, charset: str) -> None:
    """Bytes that are not UTF-8 in argv used to crash with UnicodeEncodeError
    before anything was stored; the name is read as the bytes it was."""
    conf = configured(tmp_path, server)
    before = len(server.received)
    r = run_cli("--config", conf, "notify", "missed", "--caller", "79261234567",
                "--caller-name", _in_old_charset("Иван Петров", charset),
                "--called", _in_old_charset("Приёмная", charset))
    assert r.returncode == 0, r.stderr_text
    [raw] = received_after(server, before, 1)
    text = plain_text(check_arrived(raw))
    assert "Иван Петров" in text and "Приёмная" in text


@pytest.mark.parametrize("charset", ["cp1251", "koi8-r"])
@pytest.mark.parametrize("shape", ["keys", "stock"])
def test_a_voicemail_in_an_old_russian_charset_under_the_stock_label_is_read(
        server: Server, tmp_path: Path, charset: str, shape: str) -> None:
    """Asterisk labels its body ISO-8859-1 whatever it is: cp1251 and koi8-r
    names arrive as the names, not as Èâàí Ïåòðîâ."""
    conf = configured(tmp_path, server)
    raw = voicemail_mail("Иван Петров".encode(charset), b"79261234567",
                         b"New message 1 in mailbox 201", "ISO-8859-1", shape)
    before = len(server.received)
    r = run_cli("--config", conf, "notify", "voicemail", input=raw)
    assert r.returncode == 0, r.stderr_text
    [got] = received_after(server, before, 1)
    msg = check_arrived(got)
    assert str(msg["Subject"]) == "Иван Петров"
    assert '"Иван Петров" <79261234567>' in plain_text(msg)


def test_a_latin1_voicemail_under_its_label_stays_latin1(server: Server, tmp_path: Path) -> None:
    conf = configured(tmp_path, server)
    raw = voicemail_mail("José Müller".encode("latin-1"), b"5", b"New message 1 in mailbox 201",
                         "ISO-8859-1", "stock")
    before = len(server.received)
    r = run_cli("--config", conf, "notify", "voicemail", input=raw)
    assert r.returncode == 0, r.stderr_text
    [got] = received_after(server, before, 1)
    assert str(check_arrived(got)["Subject"]) == "José Müller"


def test_an_encoded_caller_name_from_asterisk_is_decoded_then_cleaned(
        server: Server, tmp_path: Path) -> None:
    """X-Asterisk-CallerIDName may carry an encoded word (a SIP display name
    can): decoded, its line break becomes a space inside our Subject."""
    conf = configured(tmp_path, server)
    name = b"=?utf-8?q?=D0=98=D0=B2=D0=B0=D0=BD=0D=0ABcc:_bcc@evil.test?="
    raw = voicemail_mail(b"", b"5", b"=?utf-8?q?New_message_1_in_mailbox_201=0D=0ABcc:_x@y?=",
                         "utf-8", "stock").replace(b"X-Asterisk-CallerIDName: ",
                                                   b"X-Asterisk-CallerIDName: " + name)
    before = len(server.received)
    r = run_cli("--config", conf, "notify", "voicemail", input=raw)
    assert r.returncode == 0, r.stderr_text
    [got] = received_after(server, before, 1)
    msg = check_arrived(got)
    assert str(msg["Subject"]) == "Иван Bcc: bcc@evil.test"
    assert msg["Bcc"] is None
