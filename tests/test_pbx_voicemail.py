"""Voicemail from a real Asterisk 22: app_voicemail records a call made with a
Local channel, pipes its email to `mailcmd` (the real `mikotui notify
voicemail`), and what mikotui sends is read off a real SMTP server.

One Asterisk per voicemail.conf layout (they boot in well under a second);
every call in a module goes to the same SMTP server, told apart by the
caller's number. Skipped with the reason when this machine has no Asterisk
build; under CI=true that is a failure (.ci/run builds one).
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import NamedTuple

import capture_asterisk_mail
import pytest
from conftest import ROOT, run_cli
from notify_support import VOICEMAIL, Server, settings_for, write
from pbx import Pbx, require, wait_until

pytestmark = pytest.mark.asterisk

FORMATS = ("wav", "wav49", "gsm")
# The calling side: set the caller ID, then leave a message in mailbox 201
# (context = format). The other half of the Local channel plays 2 s of tone.
EXTENSIONS = """
[leave]
exten => _vm.,1,Set(CALLERID(all)=${BASE64_DECODE(${CALL${EXTEN:2}})})
 same => n,VoiceMail(${BOX${EXTEN:2}},s)
 same => n,Hangup()

[talk]
exten => play,1,Wait(0.3)
 same => n,Playback(custom/msg)
 same => n,Hangup()
"""


def mailboxes() -> str:
    """Mailboxes 201 and 203 in one context per format, each attaching it."""
    return "".join(f"\n[{fmt}]\n201 => 1234,Smith James,smith@pbx.test,,attach=yes|attachfmt={fmt}"
                   f"\n203 => 1234,Ivanova Anna,anna@pbx.test,,attach=yes|attachfmt={fmt}\n"
                   for fmt in FORMATS)


@pytest.fixture(scope="module")
def smtp() -> Iterator[Server]:
    require()
    with Server() as srv:
        yield srv


@pytest.fixture(scope="module")
def conf(tmp_path_factory, smtp: Server) -> str:
    folder = tmp_path_factory.mktemp("mikotui")
    s = settings_for(folder, smtp.port)
    return write(folder, s)


def asterisk_config(conf: str) -> str:
    r = run_cli("--config", conf, "asterisk-config")
    assert r.returncode == 0, r.stderr_text
    return r.stdout_text


def readme_script() -> str:
    """The script README gives MikoPBX's "Script" customization of voicemail.conf."""
    text = (ROOT / "README.md").read_text()
    m = re.search(r"```sh\n(#!/bin/sh\n# \$1: the voicemail.conf MikoPBX.*?)```", text, re.DOTALL)
    assert m, "README lost its voicemail.conf script"
    return m.group(1)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode() or "=="


class Calls:
    """Calls into one running Asterisk; their mails are waited for at the server."""

    def __init__(self, pbx: Pbx, smtp: Server) -> None:
        self.pbx, self.smtp, self.n = pbx, smtp, 0

    def place(self, callerid: str, box: str) -> None:
        """Leave a message in `box` (MAILBOX@CONTEXT) from `callerid`."""
        self.n += 1
        # Globals read by [leave]; base64 carries any caller ID through the CLI.
        self.pbx.cli(f"dialplan set global CALL{self.n} {b64(callerid)}")
        self.pbx.cli(f"dialplan set global BOX{self.n} {box}")
        self.pbx.originate(f"Local/vm{self.n}@leave", "play@talk")

    def mail(self, marker: str, timeout: float = 30) -> Mail:
        """The mail whose subject or text holds `marker` (unique per call)."""
        return wait_until(lambda: self._find(marker), timeout,
                          f"the mail with {marker!r} at the SMTP server;\n"
                          + self.pbx.console()[-2000:])

    def _find(self, marker: str) -> Mail | None:
        for got in list(self.smtp.received):
            msg = got.parse()
            if marker in str(msg["Subject"]) or marker in text_of(msg):
                return Mail(msg, set(got.rcpt_tos))
        return None


class Mail(NamedTuple):
    msg: EmailMessage
    rcpt: set[str]

    @property
    def text(self) -> str:
        return text_of(self.msg)

    @property
    def attachment(self) -> EmailMessage:
        parts = list(self.msg.iter_attachments())
        assert len(parts) == 1, [p.get_filename() for p in parts]
        return parts[0]


def text_of(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    return part.get_content().replace("\r\n", "\n") if part else ""


def start(tmp_path_factory, general: str) -> Pbx:
    return Pbx.start(tmp_path_factory.mktemp("pbx"), voicemail_conf=general + mailboxes(),
                     extensions_conf=EXTENSIONS, tone_seconds=1.5)


def mikopbx_general(mailcmd: str) -> str:
    return capture_asterisk_mail.mikopbx_general(mailcmd)


@pytest.fixture(scope="module")
def pbxes(tmp_path_factory, conf: str, smtp: Server) -> Iterator[dict[str, Calls]]:
    """One Asterisk per voicemail.conf layout:
    ours     a fresh voicemail.conf: `asterisk-config`'s lines are its [general]
    miko+us  MikoPBX's own voicemail.conf with README's script run on it
    mikopbx  MikoPBX's [general] (JSON body), only mailcmd pointed at mikotui
    stock    Asterisk's stock body: a [general] with nothing but mailcmd"""
    ours = asterisk_config(conf)
    mailcmd = next(line for line in ours.splitlines() if line.startswith("mailcmd="))
    lines = tmp_path_factory.mktemp("etc") / "voicemail-general.conf"
    lines.write_text(ours)
    miko_file = tmp_path_factory.mktemp("miko") / "voicemail.conf"
    miko_file.write_text(mikopbx_general("/usr/bin/voicemail-sender"))
    script = readme_script().replace("/etc/mikotui/voicemail-general.conf", str(lines))
    subprocess.run(["sh", "-c", script, "sh", str(miko_file)], check=True)
    layouts = {
        "ours": ours + "format=wav49|gsm|wav\n",
        "miko+us": miko_file.read_text(),
        "mikopbx": mikopbx_general(mailcmd.removeprefix("mailcmd=")),
        "stock": f"[general]\nattach=yes\nformat=wav49|gsm|wav\n{mailcmd}\n",
    }
    started: dict[str, Calls] = {}
    try:
        for name, general in layouts.items():
            started[name] = Calls(start(tmp_path_factory, general), smtp)
        yield started
    finally:
        for calls in started.values():
            calls.pbx.stop()


STYLES = ("ours", "mikopbx", "stock")
NAME = "Иван Ёлкин"


def number(style: str, fmt: str) -> tuple[str, str]:
    """The caller's number as dialled (spaces, brackets) and as Asterisk keeps it."""
    i, j = STYLES.index(style), FORMATS.index(fmt)
    return f"+7 (926) 111-2{i}-3{j}", f"+79261112{i}3{j}"


@pytest.fixture(scope="module")
def matrix(pbxes: dict[str, Calls]) -> dict[tuple[str, str], Mail]:
    """Every body style × format at once (the calls run side by side)."""
    for style in STYLES:
        for fmt in FORMATS:
            pbxes[style].place(f'"{NAME}" <{number(style, fmt)[0]}>', f"201@{fmt}")
    return {(style, fmt): pbxes[style].mail(number(style, fmt)[1])
            for style in STYLES for fmt in FORMATS}


def sox_seconds(tmp_path: Path, data: bytes, suffix: str) -> float:
    """The length sox reads: a decoder other than the one that wrote it."""
    path = tmp_path / f"recording{suffix}"
    path.write_bytes(data)
    r = subprocess.run(["sox", str(path), "-n", "stat"], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0, r.stderr
    return float(next(line.split(":")[1] for line in r.stderr.splitlines()
                      if line.startswith("Length")))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("style", STYLES)
def test_a_voicemail_in_every_body_style_and_format_arrives_whole_and_plays(
        matrix, tmp_path, style: str, fmt: str):
    mail = matrix[(style, fmt)]
    num = number(style, fmt)[1]
    assert mail.rcpt == {"smith@pbx.test", VOICEMAIL}
    assert str(mail.msg["Subject"]) == f"New Voicemail Message from {NAME} {num}"
    assert f'From: "{NAME}" <{num}>\n' in mail.text
    assert re.search(r"^Length: 0:0[12]$", mail.text, re.MULTILINE), mail.text
    part = mail.attachment
    assert part.get_content_type() == "audio/mpeg"
    assert re.fullmatch(rf"voicemail-\d{{4}}-\d\d-\d\d-\{num}\.mp3", part.get_filename())
    if shutil.which("sox"):
        assert 1.0 < sox_seconds(tmp_path, part.get_content(), ".mp3") < 3.0


@pytest.mark.parametrize("callerid, box, marker, subject, sender", [
    ("202", "201@wav", "Brown Brandon 202", "Brown Brandon 202", '"Brown Brandon" <202>'),
    ("74951234567", "201@gsm", "74951234567", "74951234567", "74951234567"),
    ("", "203@wav", "an unknown caller", "an unknown caller", "an unknown caller"),
])
def test_caller_id_cases(pbxes, callerid, box, marker, subject, sender):
    calls = pbxes["ours"]
    calls.place(callerid, box)
    mail = calls.mail(marker)
    assert str(mail.msg["Subject"]) == f"New Voicemail Message from {subject}"
    assert f"From: {sender}\n" in mail.text
    assert "unknown caller unknown" not in mail.text


def test_readme_script_puts_our_lines_before_mikopbx_own(pbxes):
    """MikoPBX's voicemail.conf with README's script run on it: our mailcmd
    and body win over MikoPBX's (its mailcmd would never reach mikotui)."""
    calls = pbxes["miko+us"]
    calls.place('"Anna" <74950000001>', "201@wav")
    mail = calls.mail("74950000001")
    # Our emaildateformat, not MikoPBX's "%A, %d %B %Y в %H:%M:%S".
    assert re.search(r"^Date: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d$", mail.text, re.MULTILINE), mail.text
    assert mail.rcpt == {"smith@pbx.test", VOICEMAIL}


def test_appended_general_plus_is_not_enough_on_asterisk_22(tmp_path_factory, conf, smtp):
    """Why README does not say "append": lines under [general](+) at the end
    of MikoPBX's file lose to its own mailcmd, so nothing reaches mikotui."""
    ours = asterisk_config(conf).replace("[general]", "[general](+)")
    marker = tmp_path_factory.mktemp("sender") / "ran"
    general = mikopbx_general(f"/bin/sh -c 'touch {marker}'")
    pbx = start(tmp_path_factory, general + mailboxes() + ours)
    try:
        Calls(pbx, smtp).place('"Late" <74950000002>', "201@wav")
        wait_until(marker.exists, 30, "MikoPBX's own mailcmd to run")
    finally:
        pbx.stop()
    assert not any("74950000002" in str(r.parse()["Subject"]) for r in smtp.received)
