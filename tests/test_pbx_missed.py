"""README's missed-call dialplan on a real Asterisk 22: the contexts are
copied from README.md (only mikotui's path and config differ), calls are
made with Local channels, the phones are Local channels that ring, answer
or are busy, and `mikotui deliver` sends what the handler queued to a real
SMTP server. All calls run side by side; the test waits until Asterisk has
no channel left (every hangup handler has run), then delivers.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, mikotui_command, run_cli
from notify_support import GENERAL_MISSED, Server, settings_for, write
from pbx import Pbx, require, wait_until

pytestmark = pytest.mark.asterisk

# The PBX around README's contexts: MikoPBX's [internal-users] calls
# [internal-users-custom], then dials the phone (a Local channel here) for 4 s.
# A call is c<N>: its caller ID, who answers and who is busy come from globals
# (inherited by every leg, `__`), and how it dials: straight, a ring group (one
# Dial to 201 and 203), an app_queue ringall queue, or a caller who hangs up
# after 2 s of ringing (e<N>: a Dial that gives up, so the leg is cancelled).
PBX_DIALPLAN = r"""
[internal-users]
exten => _2XX,1,Gosub(internal-users-custom,${EXTEN},1)
 same => n,Dial(Local/${EXTEN}@phones,4)
 same => n,Hangup()

[phones]
exten => _2XX,1,GotoIf($["${ANSWERS}" = "${EXTEN}"]?answer)
 same => n,GotoIf($["${BUSY}" = "${EXTEN}"]?busy)
 same => n,Ringing()
 same => n,Wait(30)
 same => n(answer),Answer()
 same => n,Wait(1)
 same => n,Hangup()
 same => n(busy),Busy(5)

[from-caller]
exten => _c.,1,Set(CALLERID(all)=${BASE64_DECODE(${CID${EXTEN:1}})})
 same => n,Set(__ANSWERS=${ANS${EXTEN:1}})
 same => n,Set(__BUSY=${BUSY${EXTEN:1}})
 same => n,GotoIf($["${HOW${EXTEN:1}}" = "group"]?group)
 same => n,GotoIf($["${HOW${EXTEN:1}}" = "queue"]?queue)
 same => n,Goto(internal-users,${DEST${EXTEN:1}},1)
 same => n(group),Dial(Local/201@internal-users&Local/203@internal-users,6)
 same => n,Hangup()
 same => n(queue),Queue(sales,,,,6)
 same => n,Hangup()
exten => _e.,1,Dial(Local/c${EXTEN:1}@from-caller,2)

[talk]
exten => hold,1,Wait(1)
 same => n,Hangup()
"""
QUEUES = """[sales]
strategy=ringall
timeout=5
retry=1
member => Local/201@internal-users
member => Local/203@internal-users
"""
EVIL = "/tmp/mikotui-pwned-by-caller-id"


def readme_dialplan(mikotui: str, conf: str) -> str:
    """README's two contexts, with this checkout's mikotui and config."""
    text = (ROOT / "README.md").read_text()
    m = re.search(r"```\n(\[internal-users-custom\]\n.*?)```", text, re.DOTALL)
    assert m, "README lost its missed-call dialplan"
    block = m.group(1)
    assert "/opt/mikotui/.venv/bin/mikotui --config /etc/mikotui/mikotui.toml" in block
    return block.replace("/opt/mikotui/.venv/bin/mikotui", mikotui).replace(
        "/etc/mikotui/mikotui.toml", conf)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode() or "=="


# name -> (caller ID, how, called, answers, busy)
CALLS = {
    "noanswer": ('"Иван Ёлкин" <+7 (926) 111-22-33>', "direct", "201", "", ""),
    "answered": ("74950000002", "direct", "201", "201", ""),
    "busy": ("74950000003", "direct", "203", "", "203"),
    "cancel": ("74950000004", "cancel", "204", "", ""),
    "group": ("74950000005", "group", "", "201", ""),
    "queue": ("74950000006", "queue", "", "203", ""),
    "evil": (f"\"Ив'ан\\\"; $(touch {EVIL}) `touch {EVIL}`\" <+7 926;$(touch {EVIL})000-00-07>",
             "direct", "202", "", ""),
    "number-card": ("204", "direct", "201", "", ""),
}


@pytest.fixture(scope="module")
def delivered(tmp_path_factory) -> Iterator[dict[str, list[dict]]]:
    """Every call above, side by side; then one `mikotui deliver`. Returns
    caller number -> the mails that reached the server for it."""
    require()
    Path(EVIL).unlink(missing_ok=True)
    folder = tmp_path_factory.mktemp("mikotui")
    with Server() as smtp:
        conf = write(folder, settings_for(folder, smtp.port))
        mikotui = mikotui_command()[0]
        dialplan = readme_dialplan(mikotui, conf) + PBX_DIALPLAN
        pbx = Pbx.start(tmp_path_factory.mktemp("pbx"), voicemail_conf="[general]\n",
                        extensions_conf=dialplan, extra={"queues.conf": QUEUES})
        try:
            for n, (callerid, how, called, answers, busy) in enumerate(CALLS.values()):
                for var, value in (("CID", b64(callerid)), ("HOW", how), ("DEST", called or "-"),
                                   ("ANS", answers or "-"), ("BUSY", busy or "-")):
                    pbx.cli(f"dialplan set global {var}{n} {value}")
                pbx.originate(f"Local/{'e' if how == 'cancel' else 'c'}{n}@from-caller",
                              "hold@talk")
            wait_until(lambda: _idle(pbx), 30, "every call to end")
        finally:
            pbx.stop()
        r = run_cli("--config", conf, "deliver")
        assert r.returncode == 0, r.stderr_text
        by_caller: dict[str, list[dict]] = {}
        for got in smtp.received:
            msg = got.parse()
            text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
            caller = re.search(r"^From: .*?(\+?\d+)$", text, re.MULTILINE).group(1)
            by_caller.setdefault(caller, []).append(
                {"to": set(got.rcpt_tos), "subject": str(msg["Subject"]), "text": text})
        yield by_caller


def _idle(pbx: Pbx) -> bool:
    out = pbx.cli("core show channels count", check=False).stdout
    return bool(re.search(r"^0 active channels", out, re.MULTILINE))


def rang(mail: dict) -> int:
    return int(re.search(r"^Rang for: (\d+) s$", mail["text"], re.MULTILINE).group(1))


def test_an_unanswered_call_mails_the_called_employee_with_name_and_ring_time(delivered):
    [mail] = delivered["+79261112233"]
    assert mail["to"] == {"smith@pbx.test"}
    assert mail["subject"] == "Missed Call from +79261112233"
    assert "From: Иван Ёлкин +79261112233\n" in mail["text"]
    assert "To: Smith James 201\n" in mail["text"]
    assert 3 <= rang(mail) <= 6  # the phone rang for Dial()'s 4 s (a loaded machine: +1)


def test_an_answered_call_sends_nothing(delivered):
    assert "74950000002" not in delivered


def test_busy_counts_as_missed_as_readme_says(delivered):
    [mail] = delivered["74950000003"]
    assert mail["to"] == {"anna@pbx.test"} or mail["to"] == {"Anna@pbx.test"}
    assert "From: 74950000003\n" in mail["text"]  # no name sent: no double space


def test_a_caller_who_hangs_up_while_it_rings_is_a_missed_call(delivered):
    [mail] = delivered["74950000004"]
    assert mail["to"] == {"oleg@pbx.test"}
    assert 1 <= rang(mail) <= 4  # the caller gave up after 2 s (a loaded machine: +1)


@pytest.mark.parametrize("how, number", [("group", "74950000005"), ("queue", "74950000006")])
def test_a_ring_group_or_queue_answered_by_one_member_mails_no_other(delivered, how, number):
    assert number not in delivered


def test_a_hostile_caller_id_reaches_nothing_but_digits_and_its_name_intact(delivered):
    assert not Path(EVIL).exists()
    [mail] = delivered["+79260000007"]
    assert mail["to"] == {GENERAL_MISSED}  # 202 has no email on its card
    assert f"From: Ив'ан\"; $(touch {EVIL}) `touch {EVIL}` +79260000007\n" in mail["text"]


def test_a_number_with_a_card_gets_the_card_name(delivered):
    [mail] = delivered["204"]
    assert "From: Petrov Oleg 204\n" in mail["text"]


def test_nothing_else_was_sent(delivered):
    assert sorted(delivered) == sorted(["+79261112233", "74950000003", "74950000004",
                                        "+79260000007", "204"]), json.dumps(
        {k: [m["subject"] for m in v] for k, v in delivered.items()}, ensure_ascii=False)
