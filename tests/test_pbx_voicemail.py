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
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from conftest import run_cli
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


def mailboxes(box: str = "201", name: str = "Smith James",
              email_addr: str = "smith@pbx.test") -> str:
    """One mailbox per context, each attaching one of the formats."""
    return "".join(f"\n[{fmt}]\n{box} => 1234,{name},{email_addr},,attach=yes|attachfmt={fmt}\n"
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


class Calls:
    """Calls into one running Asterisk; each waits for its mail at the server."""

    def __init__(self, pbx: Pbx, smtp: Server) -> None:
        self.pbx, self.smtp, self.n = pbx, smtp, 0

    def voicemail(self, callerid: str, box: str, marker: str) -> EmailMessage:
        """Leave a message in `box` (MAILBOX@CONTEXT) from `callerid`; returns
        the mail whose text holds `marker` (set it unique per call)."""
        self.n += 1
        key = str(self.n)
        # Globals read by [leave]; base64 carries any caller ID through the CLI.
        self.pbx.cli(f"dialplan set global CALL{key} {b64(callerid)}")
        self.pbx.cli(f"dialplan set global BOX{key} {box}")
        before = len(self.smtp.received)
        self.pbx.originate(f"Local/vm{key}@leave", "play@talk")
        return wait_until(lambda: self._find(before, marker), 30,
                          f"the mail of call {key} ({marker!r}) at the SMTP server;\n"
                          + self.pbx.console()[-2000:])

    def _find(self, before: int, marker: str) -> EmailMessage | None:
        for got in self.smtp.received[before:]:
            msg = got.parse()
            if marker in str(msg["Subject"]) or marker in _text(msg):
                msg.rcpt_tos = got.rcpt_tos  # type: ignore[attr-defined]
                return msg
        return None


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _text(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    return part.get_content() if part else ""


def attachment(msg: EmailMessage) -> EmailMessage:
    parts = list(msg.iter_attachments())
    assert len(parts) == 1, [p.get_filename() for p in parts]
    return parts[0]


@pytest.fixture(scope="module")
def ours(tmp_path_factory, conf: str, smtp: Server) -> Iterator[Calls]:
    """voicemail.conf = the lines `mikotui asterisk-config` prints, then mailboxes."""
    vm = asterisk_config(conf) + "format=wav49|gsm|wav\n" + mailboxes()
    pbx = Pbx.start(tmp_path_factory.mktemp("pbx"), voicemail_conf=vm,
                    extensions_conf=EXTENSIONS)
    yield Calls(pbx, smtp)
    pbx.stop()


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_voicemail_with_asterisk_config_lines_reaches_the_employee(ours: Calls, fmt: str):
    num = {"wav": "74951110001", "wav49": "74951110002", "gsm": "74951110003"}[fmt]
    msg = ours.voicemail(f'"Ivan Petrov" <{num}>', f"201@{fmt}", num)
    assert set(msg.rcpt_tos) == {"smith@pbx.test", VOICEMAIL}
    assert str(msg["Subject"]) == f"New Voicemail Message from Ivan Petrov {num}"
    assert f'"Ivan Petrov" <{num}>' in _text(msg)
    part = attachment(msg)
    assert len(part.get_content()) > 1000
