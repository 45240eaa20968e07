"""`mikotui deliver` / `notify` delivery / `queue`: the real command against
real aiosmtpd servers on 127.0.0.1 and a real spool."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import assert_no_secret, mikotui_command, running
from notify_support import ADMIN, Server, entries, settings_for, write

from mikotui import config, deliver, notify
from mikotui.sandbox import free_port
from mikotui.spool import Spool


def queue_missed(settings: config.Settings, count: int) -> list[str]:
    """`count` missed-call notifications queued through the enqueue code."""
    spool = Spool(settings.spool_dir(), settings.spool.max_age_hours).ensure()
    ids = []
    for i in range(count):
        prepared = notify.missed_call(settings, notify.MissedCall(
            caller=str(7000 + i), called="201", duration=str(i)))
        ids.append(spool.enqueue(prepared.meta(), prepared.data).id)
    return ids


def message_ids(server: Server) -> collections.Counter:
    return collections.Counter(r.message_id for r in server.received)


def spawn(*args: str) -> subprocess.Popen:
    env = {**os.environ, "MIKOTUI_DEBUG": ""}
    return subprocess.Popen(mikotui_command() + list(args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)


# --- server down, then up ------------------------------------------------------------

def test_server_down_queues_then_deliver_sends_exactly_once(cli, tmp_path):
    port = free_port()
    conf = write(tmp_path, settings_for(tmp_path, port))
    r = cli("--config", conf, "notify", "missed", "--caller", "5", "--called", "201")
    assert r.returncode == 0
    assert "queued, will retry" in r.stderr_text
    [queued] = entries(tmp_path / "spool", "queue")
    assert queued["attempts"] == 1 and queued["next_attempt"] > time.time() + 30
    assert "result=deferred" in (tmp_path / "spool" / "mikotui.log").read_text()

    with Server(port) as server:
        # Not due yet: a plain drain leaves it; `queue retry` makes it due.
        assert cli("--config", conf, "deliver").returncode == 0
        assert server.received == []
        assert cli("--config", conf, "queue", "retry", queued["id"]).returncode == 0
        r = cli("--config", conf, "deliver")
        assert r.returncode == 0 and "sent 1" in r.stdout_text
        assert cli("--config", conf, "deliver").returncode == 0  # nothing left to send
    assert [g.rcpt_tos for g in server.received] == [("smith@pbx.test",)]
    assert entries(tmp_path / "spool", "queue") == []


# --- 4xx and 5xx --------------------------------------------------------------------

def test_4xx_defers_with_a_later_next_attempt(cli, tmp_path):
    with Server() as server:
        server.handler.rcpt_codes["smith@pbx.test"] = "451 4.3.0 try again later"
        conf = write(tmp_path, settings_for(tmp_path, server.port))
        before = time.time()
        r = cli("--config", conf, "notify", "missed", "--caller", "5", "--called", "201")
        assert r.returncode == 0 and "queued, will retry" in r.stderr_text
        [meta] = entries(tmp_path / "spool", "queue")
        assert meta["attempts"] == 1 and meta["last_code"] == 451
        assert before + 45 < meta["next_attempt"] < before + 85  # ~1 min, jittered
        assert "451" in meta["last_error"]
        listed = cli("--config", conf, "queue", "list").stdout_text
        assert meta["id"] in listed and "451" in listed

        # The second failure waits about twice as long.
        cli("--config", conf, "queue", "retry", meta["id"])
        before = time.time()
        cli("--config", conf, "deliver")
        [meta] = entries(tmp_path / "spool", "queue")
        assert meta["attempts"] == 2 and before + 95 < meta["next_attempt"] < before + 155
    assert server.received == []


def notify_voicemail_missed_by_oleg(cli, conf: str) -> None:
    """The stock voicemail fixture, missed by Oleg (204), whose server says 550:
    the others take it, so `notify` reports a partial delivery: exit 0, the
    refused recipient named (kept in failed/, the administrator told)."""
    voicemail = Path(__file__).parent / "fixtures" / "asterisk-voicemail-default.eml"
    r = cli("--config", conf, "notify", "voicemail", "--missed-by", "204",
            input=voicemail.read_bytes())
    assert r.returncode == 0, r.stderr_text
    assert "refused for oleg@pbx.test: 550" in r.stderr_text
    assert "the administrator is told" in r.stderr_text


def test_5xx_for_some_recipients_others_get_it_and_admin_is_told_once(cli, tmp_path):
    with Server() as server:
        server.handler.rcpt_codes["oleg@pbx.test"] = "550 5.1.1 no such user"
        conf = write(tmp_path, settings_for(tmp_path, server.port))
        notify_voicemail_missed_by_oleg(cli, conf)
        # Running the deliverer again sends nothing more (no second alert).
        assert cli("--config", conf, "deliver").returncode == 0
    first, alert = server.received
    assert set(first.rcpt_tos) == {"smith@pbx.test", "voicemail@pbx.test"}
    assert alert.rcpt_tos == (ADMIN,)
    [failed] = entries(tmp_path / "spool", "failed")
    assert failed["owed"] == [] and list(failed["refused"]) == ["oleg@pbx.test"]
    assert "550" in failed["refused"]["oleg@pbx.test"]
    text = alert.parse().get_body(("plain",)).get_content()
    assert failed["id"] in text and "oleg@pbx.test" in text and "no such user" in text
    assert entries(tmp_path / "spool", "queue") == []


def test_5xx_for_the_admin_raises_no_alert_and_no_loop(cli, tmp_path):
    with Server() as server:
        server.handler.rcpt_codes[ADMIN] = "550 5.1.1 mailbox gone"
        conf = write(tmp_path, settings_for(tmp_path, server.port))
        # A system mail to the admin, and a missed call whose alert would go to
        # the (refusing) admin: neither makes more mail.
        r = cli("--config", conf, "notify", "system", "--subject", "disk", "--message", "x")
        assert r.returncode == 69
        server.handler.rcpt_codes["smith@pbx.test"] = "550 5.1.1 no"
        r = cli("--config", conf, "notify", "missed", "--caller", "5", "--called", "201")
        assert r.returncode == 69
        assert cli("--config", conf, "deliver").returncode == 0
    assert server.received == []
    kinds = sorted(m["kind"] for m in entries(tmp_path / "spool", "failed"))
    assert kinds == ["alert", "missed", "system"]  # the alert failed too; nothing after it
    assert entries(tmp_path / "spool", "queue") == []


@pytest.mark.parametrize("reply, code, state", [
    ("554 5.7.1 content rejected", 69, "failed"),
    ("452 4.3.1 insufficient storage", 0, "queue"),
])
def test_reply_to_the_message_itself(cli, tmp_path, reply, code, state):
    with Server() as server:
        server.handler.data_codes["smith@pbx.test"] = reply
        conf = write(tmp_path, settings_for(tmp_path, server.port))
        r = cli("--config", conf, "notify", "missed", "--caller", "5", "--called", "201")
        assert r.returncode == code
    [meta] = entries(tmp_path / "spool", state)
    assert reply.split()[0] in meta["last_error"] and meta["attempts"] == 1
    alerts = [g for g in server.received if g.rcpt_tos == (ADMIN,)]
    assert len(alerts) == (1 if state == "failed" else 0)
    assert len(server.received) == len(alerts)  # smith's mail was never accepted


def test_too_old_goes_to_failed(cli, tmp_path):
    settings = settings_for(tmp_path, free_port())
    settings = replace(settings, spool=replace(settings.spool, max_age_hours=1))
    conf = write(tmp_path, settings)
    spool = Spool(settings.spool_dir(), 1).ensure()
    prepared = notify.missed_call(settings, notify.MissedCall("5", "201"))
    # Retried for 58 minutes, the last time 5 minutes ago (by the wall clock: another boot).
    old = spool.enqueue(replace(prepared.meta(), created=time.time() - 7200, attempts=20,
                                waited=3480.0, tried_at=time.time() - 300, tried_boot="other"),
                        prepared.data)
    r = cli("--config", conf, "deliver")  # the server is down
    assert r.returncode == 0 and "failed 1" in r.stdout_text
    [failed] = entries(tmp_path / "spool", "failed")
    assert failed["id"] == old.id and "undelivered after 1 h" in failed["failed_reason"]
    [alert] = entries(tmp_path / "spool", "queue")
    assert alert["kind"] == "alert"


# --- crashes and concurrency ------------------------------------------------------------

def test_kill_9_of_deliver_mid_batch_loses_nothing(cli, tmp_path):
    with Server() as server:
        settings = settings_for(tmp_path, server.port)
        conf = write(tmp_path, settings)
        ids = queue_missed(settings, 300)
        proc = spawn("--config", conf, "deliver")
        try:
            assert server.handler.wait_for(40, timeout=30)
        finally:
            proc.kill()
            proc.wait()
        partway = len(server.received)
        assert partway < 300, "the deliverer finished before it was killed"
        assert list((tmp_path / "spool" / "active").iterdir())  # its claims are left
        r = cli("--config", conf, "deliver")
        assert r.returncode == 0, r.stderr_text
    counts = message_ids(server)
    assert len(counts) == len(ids)  # every message arrived
    # At most the ones in flight (one per connection) arrive twice.
    assert sum(counts.values()) - len(counts) <= deliver.LANES
    assert not list((tmp_path / "spool" / "active").iterdir())
    assert entries(tmp_path / "spool", "queue") == []


def test_two_deliverers_never_send_a_message_twice(tmp_path):
    with Server() as server:
        settings = settings_for(tmp_path, server.port)
        conf = write(tmp_path, settings)
        queue_missed(settings, 400)
        procs = [spawn("--config", conf, "deliver") for _ in range(2)]
        outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    counts = message_ids(server)
    assert len(counts) == 400 and set(counts.values()) == {1}
    sent = [int(out.decode().split()[1].rstrip(",")) for out, _ in outs]
    assert sum(sent) == 400


def test_watch_picks_up_new_mail_within_a_second_and_stops_cleanly(cli, tmp_path):
    with Server() as server:
        conf = write(tmp_path, settings_for(tmp_path, server.port))
        with running("--config", conf, "deliver", "--watch") as proc:
            assert b"event=watching" in proc.stderr.readline()
            for n in (1, 2):
                r = cli("--config", conf, "notify", "missed", "--caller", str(n),
                        "--called", "201", "--queue-only")
                assert r.returncode == 0
                queued = time.monotonic()
                assert server.handler.wait_for(n, timeout=5)
                assert time.monotonic() - queued < 1.5
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert b"event=stopped" in err and b"sent 2" in out
    assert len(server.received) == 2


def test_watch_sends_a_deferred_entry_when_its_time_comes(tmp_path):
    with Server() as server:
        settings = settings_for(tmp_path, server.port)
        conf = write(tmp_path, settings)
        spool = Spool(settings.spool_dir()).ensure()
        prepared = notify.missed_call(settings, notify.MissedCall("5", "201"))
        due_at = time.time() + 1.5
        spool.enqueue(replace(prepared.meta(), attempts=1, next_attempt=due_at), prepared.data)
        with running("--config", conf, "deliver", "--watch") as proc:
            assert b"event=watching" in proc.stderr.readline()
            assert server.handler.wait_for(1, timeout=10)
            arrived = time.time()
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=10)
    assert due_at <= arrived < due_at + 1.5
    assert proc.returncode == 0


# --- the log never holds the password ---------------------------------------------------

def test_password_absent_from_log(cli, tmp_path):
    user, password = "pbx@pbx.test", "S3cret-pa55word"
    with Server(auth=(user, password)) as server:
        settings = settings_for(tmp_path, server.port, username=user, password=password,
                                allow_insecure_auth=True)
        conf = write(tmp_path, settings)
        ok = cli("--config", conf, "notify", "missed", "--caller", "5", "--called", "201")
        assert ok.returncode == 0 and len(server.received) == 1
        wrong = replace(settings, smtp=replace(settings.smtp, password=password + "x"))
        conf = write(tmp_path, wrong)
        bad = cli("--config", conf, "notify", "missed", "--caller", "5", "--called", "201")
        assert bad.returncode == 0 and "queued, will retry" in bad.stderr_text
    assert any(ok for _, ok in server.logins) and not all(ok for _, ok in server.logins)
    log = (tmp_path / "spool" / "mikotui.log").read_text()
    assert "result=sent" in log and "error=auth_failed" in log
    for pw in (password, password + "x"):
        assert_no_secret((log, ok.stderr_text, bad.stderr_text, ok.stdout_text,
                          bad.stdout_text), user, pw)


# --- queue list / retry / purge -----------------------------------------------------------

def test_queue_list_retry_all_and_purge(cli, tmp_path):
    port = free_port()
    settings = settings_for(tmp_path, port)
    conf = write(tmp_path, settings)
    ids = queue_missed(settings, 3)
    listed = cli("--config", conf, "queue", "list").stdout_text
    assert all(i in listed for i in ids) and "smith@pbx.test" in listed
    assert cli("--config", conf, "deliver").returncode == 0  # down: all deferred
    assert cli("--config", conf, "queue", "purge", ids[0]).returncode == 0
    assert cli("--config", conf, "queue", "purge", ids[0]).returncode == 65
    assert cli("--config", conf, "queue", "retry", "--all").returncode == 0
    with Server(port) as server:
        assert cli("--config", conf, "deliver").returncode == 0
    assert sorted(message_ids(server).values()) == [1, 1]
    assert "empty" in cli("--config", conf, "queue", "list").stdout_text


def test_queue_purge_then_restore_delivers_once(cli, tmp_path):
    port = free_port()
    settings = settings_for(tmp_path, port)
    conf = write(tmp_path, settings)
    kept, purged = queue_missed(settings, 2)
    out = cli("--config", conf, "queue", "purge", purged)
    assert out.returncode == 0 and f"mikotui queue restore {purged}" in out.stdout_text
    listed = cli("--config", conf, "queue", "list").stdout_text
    assert kept in listed and purged not in listed
    assert purged in cli("--config", conf, "queue", "list", "--purged").stdout_text
    with Server(port) as server:
        assert cli("--config", conf, "deliver").returncode == 0
        assert len(server.received) == 1  # the purged one is not sent
        back = cli("--config", conf, "queue", "restore", purged)
        assert back.returncode == 0 and "due now" in back.stdout_text
        assert cli("--config", conf, "deliver").returncode == 0
    assert sorted(message_ids(server).values()) == [1, 1]
    assert "empty" in cli("--config", conf, "queue", "list", "--purged").stdout_text
    again = cli("--config", conf, "queue", "restore", purged)
    assert again.returncode == 65 and "no purged entry" in again.stderr_text


def test_retry_of_a_partly_refused_entry_goes_only_to_those_who_refused(cli, tmp_path):
    """Smith and the voicemail address took it, Oleg's server said 550: once
    Oleg's mailbox is fixed, `queue retry` sends it to Oleg alone."""
    with Server() as server:
        server.handler.rcpt_codes["oleg@pbx.test"] = "550 5.1.1 no such user"
        conf = write(tmp_path, settings_for(tmp_path, server.port))
        notify_voicemail_missed_by_oleg(cli, conf)
        [failed] = entries(tmp_path / "spool", "failed")
        del server.handler.rcpt_codes["oleg@pbx.test"]
        assert cli("--config", conf, "queue", "retry", failed["id"]).returncode == 0
        assert cli("--config", conf, "deliver").returncode == 0
        first, alert, again = server.received
    assert set(first.rcpt_tos) == {"smith@pbx.test", "voicemail@pbx.test"}
    assert alert.rcpt_tos == (ADMIN,)
    assert again.rcpt_tos == ("oleg@pbx.test",) and again.message_id == first.message_id
    assert entries(tmp_path / "spool", "queue") == entries(tmp_path / "spool", "failed") == []


def test_watch_uses_a_fixed_config_without_a_restart(cli, tmp_path):
    """The service is running with a wrong password; the admin fixes the file
    (as the TUI saves it): the running watcher tries what waits at once."""
    import queue
    import threading

    with Server(auth=("pbx", "right-pw")) as server:
        s = settings_for(tmp_path, server.port, username="pbx", password="wrong-pw",
                         allow_insecure_auth=True)
        conf = write(tmp_path, s)
        with running("--config", conf, "deliver", "--watch") as proc:
            lines: queue.Queue[str] = queue.Queue()
            threading.Thread(target=lambda: [lines.put(b.decode()) for b in proc.stderr],
                             daemon=True).start()

            def wait_line(text: str) -> str:
                while text not in (line := lines.get(timeout=15)):
                    pass
                return line

            wait_line("event=watching")
            r = cli("--config", conf, "notify", "missed", "--queue-only", "--caller", "5",
                    "--called", "201")
            assert r.returncode == 0
            assert "error=auth_failed" in wait_line("result=deferred")
            write(tmp_path, replace(s, smtp=replace(s.smtp, password="right-pw")))
            assert "result=reloaded" in wait_line("event=config")
            assert server.handler.wait_for(1, timeout=10)  # no `queue retry` needed
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
    assert proc.returncode == 0
    assert [r.rcpt_tos for r in server.received] == [("smith@pbx.test",)]
    assert server.logins[-1][1] is True  # the last login used the fixed password


def test_a_wrong_password_queues_and_says_the_settings_are_wrong(cli, tmp_path):
    with Server(auth=("pbx", "right-pw")) as server:
        s = settings_for(tmp_path, server.port, username="pbx", password="wrong-pw",
                         allow_insecure_auth=True)
        conf = write(tmp_path, s)
        r = cli("--config", conf, "notify", "missed", "--caller", "5", "--called", "201")
        assert r.returncode == 0  # queued: fixing the settings will send it
        assert "SMTP settings look wrong (auth_failed" in r.stderr_text
        assert "mikotui test-email" in r.stderr_text and "wrong-pw" not in r.stderr_text
        [waiting] = entries(tmp_path / "spool", "queue")
        assert waiting["attempts"] == 1
    with Server() as down:
        port = down.port
    r = cli("--config", write(tmp_path, settings_for(tmp_path, port)), "notify", "missed",
            "--caller", "7", "--called", "201")
    assert r.returncode == 0 and "settings look wrong" not in r.stderr_text  # just down


@pytest.mark.parametrize("stage", ["ready", "raw"])
def test_a_damaged_entry_goes_to_failed_and_does_not_stop_the_rest(cli, tmp_path, stage):
    """An entry whose message file a hand or a disk took away: failed, with
    the reason, the admin told; the entries after it are still sent."""
    with Server() as server:
        settings = settings_for(tmp_path, server.port)
        conf = write(tmp_path, settings)
        spool = Spool(settings.spool_dir()).ensure()
        raw = (Path(__file__).parent / "fixtures" / "asterisk-voicemail-default.eml").read_bytes()
        broken = spool.enqueue(replace(notify.Prepared("voicemail", (), "", raw).meta(),
                                       stage="raw"), raw) if stage == "raw" else None
        if broken is None:
            prepared = notify.missed_call(settings, notify.MissedCall("5", "201"))
            broken = spool.enqueue(prepared.meta(), prepared.data)
        broken.message_path().unlink()
        queue_missed(settings, 2)
        r = cli("--config", conf, "deliver")
        assert r.returncode == 0, r.stderr_text
        assert "sent 3, deferred 0, failed 1" in r.stdout_text  # two + the admin's alert
    [failed] = entries(tmp_path / "spool", "failed")
    assert failed["id"] == broken.id and "cannot read" in failed["failed_reason"]
    assert sorted(m.rcpt_tos for m in server.received) == [
        (ADMIN,), ("smith@pbx.test",), ("smith@pbx.test",)]


def test_a_voicemail_with_a_damaged_from_header_is_still_delivered(cli, tmp_path):
    """Found by fuzzing: a bare `From:` group made the email package raise
    AttributeError; the entry then stopped every drain."""
    with Server() as server:
        conf = write(tmp_path, settings_for(tmp_path, server.port))
        raw = (Path(__file__).parent / "fixtures" / "asterisk-voicemail-default.eml").read_bytes()
        raw = raw.replace(b"From: Asterisk PBX <asterisk@pbx.example.com>",
                          b"From:ontent-Type: multipart/mixed")
        r = cli("--config", conf, "notify", "voicemail", "--queue-only", input=raw)
        assert r.returncode == 0, r.stderr_text
        queue_missed(settings_for(tmp_path, server.port), 1)
        r = cli("--config", conf, "deliver")
        assert r.returncode == 0 and "sent 2, deferred 0, failed 0" in r.stdout_text
    assert entries(tmp_path / "spool", "failed") == []


def test_master_switch_off_keeps_the_queue_and_sends_nothing(cli, tmp_path):
    with Server() as server:
        s = settings_for(tmp_path, server.port)
        conf = write(tmp_path, s)
        r = cli("--config", conf, "notify", "missed", "--caller", "5", "--called", "201",
                "--queue-only")
        assert r.returncode == 0
        off = write(tmp_path, replace(s, notifications=replace(s.notifications, enabled=False)))
        r = cli("--config", off, "deliver")
        assert r.returncode == 0 and "notifications are off" in r.stderr_text
        assert server.received == []
        assert len(entries(tmp_path / "spool", "queue")) == 1
        assert "event=paused" in (tmp_path / "spool" / "mikotui.log").read_text()
        on = write(tmp_path, s)
        r = cli("--config", on, "deliver")
        assert r.returncode == 0 and "sent 1" in r.stdout_text
    assert [g.rcpt_tos for g in server.received] == [("smith@pbx.test",)]
