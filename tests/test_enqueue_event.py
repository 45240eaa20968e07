"""`notify missed --queue-only` stores the call as its event, with the
standard library alone; `deliver` renders it with the settings it finds
(mikotui/enqueue.py says why). Real command, real aiosmtpd server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

from notify_support import GENERAL_MISSED, Server, entries, settings_for, write

from mikotui import config


def queue_missed(cli, conf: str, *extra: str, caller: str = "79261234567",
                 called: str = "201"):
    done = cli("--config", conf, "notify", "missed", "--caller", caller, "--called", called,
               "--queue-only", *extra)
    assert done.returncode == 0, done.stderr_text
    return done


def ensure_spool(cli, conf: str) -> None:
    # The first run makes the spool (the full intake's job); later ones find it.
    assert cli("--config", conf, "queue", "list").returncode == 0


def test_the_entry_holds_the_call_and_deliver_sends_its_mail(cli, tmp_path):
    with Server() as server:
        conf = write(tmp_path, settings_for(tmp_path, server.port))
        ensure_spool(cli, conf)
        queue_missed(cli, conf, "--caller-name", "Ёлкин Пётр", "--duration", "17")
        [meta] = entries(tmp_path / "spool", "queue")
        assert meta["stage"] == "event" and meta["kind"] == "missed"
        assert meta["event"]["caller_name"] == "Ёлкин Пётр"
        assert meta["event"]["called"] == "201" and meta["event"]["duration"] == "17"
        assert os.listdir(tmp_path / "spool" / "queue" / meta["id"]) == ["meta.json"]
        assert "stage=event" in (tmp_path / "spool" / "mikotui.log").read_text()

        done = cli("--config", conf, "deliver")
        assert done.returncode == 0 and "sent 1," in done.stdout_text, done.stderr_text
        assert server.handler.wait_for(1)
        [got] = server.received
        assert got.rcpt_tos == ("smith@pbx.test",)
        msg = got.parse()
        assert "79261234567" in msg["Subject"]
        body = msg.get_body(("plain",)).get_content()
        assert "Ёлкин Пётр" in body and "17" in body and "Smith James" in body
        assert not entries(tmp_path / "spool", "queue")


def test_what_the_settings_decide_is_decided_when_it_is_sent(cli, tmp_path):
    # An outage: the call waits, the admin edits the template and the card
    # meanwhile. The mail goes out with the settings of the moment it is sent.
    with Server() as server:
        s = settings_for(tmp_path, server.port)
        conf = write(tmp_path, s)
        ensure_spool(cli, conf)
        queue_missed(cli, conf)
        edited = replace(
            s, missed_call=replace(s.missed_call, subject="Edited: NOTIFICATION_CALLERID"),
            employees=(config.Employee("201", "Smith Jane", "jane@pbx.test"),))
        write(tmp_path, edited)
        assert cli("--config", conf, "deliver").returncode == 0
        assert server.handler.wait_for(1)
        [got] = server.received
        assert got.rcpt_tos == ("jane@pbx.test",)
        assert got.subject == "Edited: 79261234567"


def test_switched_off_before_it_is_sent_it_is_dropped_and_said(cli, tmp_path):
    with Server() as server:
        s = settings_for(tmp_path, server.port)
        conf = write(tmp_path, s)
        ensure_spool(cli, conf)
        queue_missed(cli, conf)
        queue_missed(cli, conf, called="999")  # no card: the general address
        write(tmp_path, replace(s, notifications=replace(s.notifications, missed_call=False)))
        done = cli("--config", conf, "deliver")
        assert done.returncode == 0, done.stderr_text
        assert "notifications.missed_call = false" in done.stderr_text
        assert server.received == []
        assert not entries(tmp_path / "spool", "queue")
        assert not entries(tmp_path / "spool", "failed")
        # On again, a new call goes to the general address as before.
        write(tmp_path, s)
        queue_missed(cli, conf, called="999")
        assert cli("--config", conf, "deliver").returncode == 0
        assert server.handler.wait_for(1)
        assert server.received[0].rcpt_tos == (GENERAL_MISSED,)


def test_an_event_a_hand_broke_goes_to_failed_and_the_rest_is_sent(cli, tmp_path):
    with Server() as server:
        conf = write(tmp_path, settings_for(tmp_path, server.port))
        ensure_spool(cli, conf)
        queue_missed(cli, conf, caller="5")
        queue_missed(cli, conf, caller="6")
        broken = entries(tmp_path / "spool", "queue")[0]
        path = tmp_path / "spool" / "queue" / broken["id"] / "meta.json"
        raw = json.loads(path.read_bytes())
        raw["event"]["caller"] = 5  # a number, not text
        path.write_text(json.dumps(raw))
        done = cli("--config", conf, "deliver")
        assert done.returncode == 0, done.stderr_text
        assert server.handler.wait_for(2)  # the other call, and the admin's alert about this one
        subjects = sorted(r.subject for r in server.received)
        assert any("6" in s for s in subjects) and not any("from 5" in s for s in subjects)
        [failed] = entries(tmp_path / "spool", "failed")
        assert failed["id"] == broken["id"]
        assert "not a missed call as the enqueue path stores one" in failed["failed_reason"]


def test_the_unusual_cases_take_the_full_intake(cli, tmp_path):
    # No spool yet, a --date, notifications off: each said or done as always.
    with Server() as server:
        s = settings_for(tmp_path, server.port)
        conf = write(tmp_path, s)
        queue_missed(cli, conf)  # makes the spool: a ready entry
        queue_missed(cli, conf, "--date", "2026-11-26 14:03:12")
        assert [m["stage"] for m in entries(tmp_path / "spool", "queue")] == ["ready", "ready"]
        bad = cli("--config", conf, "notify", "missed", "--caller", "5", "--called", "201",
                  "--queue-only", "--date", "yesterday")
        assert bad.returncode == os.EX_USAGE and "--date 'yesterday'" in bad.stderr_text
        bad = cli("--config", conf, "notify", "missed", "--caller", "5", "--called", "201",
                  "--queue-only", "--duration", "five")
        assert bad.returncode == os.EX_USAGE and "--duration 'five'" in bad.stderr_text
        write(tmp_path, replace(s, notifications=replace(s.notifications, enabled=False)))
        off = queue_missed(cli, conf)
        assert "notifications are switched off" in off.stderr_text
        assert len(entries(tmp_path / "spool", "queue")) == 2


def test_the_enqueue_path_loads_neither_the_config_types_nor_email(tmp_path):
    # Its point is the standard library's floor (bench/bench_enqueue.py).
    s = settings_for(tmp_path, 25)
    conf = write(tmp_path, s)
    for state in ("tmp", "queue"):
        (tmp_path / "spool" / state).mkdir(parents=True, mode=0o700)
    (tmp_path / "spool").chmod(0o700)
    # (What the interpreter loaded before, e.g. an editable install's hook, aside.)
    code = ("import sys\nbefore = set(sys.modules)\nfrom mikotui import cli\n"
            f"code = cli.main(['--config', {conf!r}, 'notify', 'missed', '--caller', '5',"
            " '--called', '201', '--queue-only'])\n"
            "print(code, ' '.join(set(sys.modules) - before))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0] == "0"
    loaded = set(out[1:])
    assert "mikotui.enqueue" in loaded
    assert not loaded & {"mikotui.config", "mikotui.spool", "mikotui.notify", "email",
                         "dataclasses", "pathlib"}, sorted(loaded)
    [meta] = entries(tmp_path / "spool", "queue")
    assert meta["stage"] == "event"


def test_a_retry_renders_afresh_but_reaches_only_who_is_still_owed(cli, tmp_path):
    with Server() as server:
        s = settings_for(tmp_path, server.port)
        s = replace(s, employees=(
            config.Employee("201", "Smith James", "smith@pbx.test, second@pbx.test"),))
        conf = write(tmp_path, s)
        ensure_spool(cli, conf)
        queue_missed(cli, conf)
        server.handler.rcpt_codes["second@pbx.test"] = "451 4.2.0 try later"
        assert cli("--config", conf, "deliver").returncode == 0
        assert server.handler.wait_for(1)
        assert server.received[0].rcpt_tos == ("smith@pbx.test",)
        [waiting] = entries(tmp_path / "spool", "queue")
        assert waiting["stage"] == "event"  # the mail itself was never stored
        assert waiting["owed"] == ["second@pbx.test"]
        # Meanwhile the subject is edited: the retry has the new wording and
        # goes to the one still owed, not to smith again.
        server.handler.rcpt_codes.clear()
        write(tmp_path, replace(
            s, missed_call=replace(s.missed_call, subject="Again NOTIFICATION_CALLERID")))
        assert cli("--config", conf, "queue", "retry", "--all").returncode == 0
        assert cli("--config", conf, "deliver").returncode == 0
        assert server.handler.wait_for(2)
        assert server.received[1].rcpt_tos == ("second@pbx.test",)
        assert server.received[1].subject == "Again 79261234567"
        assert not entries(tmp_path / "spool", "queue")
