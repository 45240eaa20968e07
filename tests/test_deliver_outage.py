"""Time and retries with the real `mikotui deliver`: an outage is dialled
once per run, and a jump of the clock neither fails nor parks an entry."""

from __future__ import annotations

import json
import time

from notify_support import ADMIN, Server, entries, settings_for, write
from test_spool_damage import queue_calls

from mikotui.sandbox import free_port


def test_a_refused_dial_defers_the_rest_of_the_run_without_dialling_again(cli, tmp_path):
    """120 queued (four connections' worth, two batches): the server refuses
    our login, and it is asked once, not once per connection and batch."""
    with Server(auth=("pbx", "right-pw")) as server:
        s = settings_for(tmp_path, server.port, username="pbx", password="wrong-pw",
                         allow_insecure_auth=True)
        conf = write(tmp_path, s)
        queue_calls(s, 120)
        r = cli("--config", conf, "deliver", env={"MIKOTUI_DEBUG": ""})
        assert r.returncode == 0, r.stderr_text
        assert "sent 0, deferred 120, failed 0" in r.stdout_text
        # One connection, which tried PLAIN and then LOGIN.
        assert [mechanism for mechanism, _ in server.logins] == ["PLAIN", "LOGIN"]
    waiting = entries(tmp_path / "spool", "queue")
    assert len(waiting) == 120 and {m["attempts"] for m in waiting} == {1}


def test_a_clock_six_days_ahead_with_the_server_down_fails_nothing(cli, tmp_path):
    """What the jump looks like on disk: 50 calls queued "6 days ago", never
    tried; the maximum age is 120 h."""
    s = settings_for(tmp_path, free_port())
    conf = write(tmp_path, s)
    spool = tmp_path / "spool"
    for entry_id in queue_calls(s, 50):
        path = spool / "queue" / entry_id / "meta.json"
        meta = json.loads(path.read_bytes())
        path.write_text(json.dumps({**meta, "created": time.time() - 6 * 86400}))
    r = cli("--config", conf, "deliver")
    assert r.returncode == 0 and "deferred 50, failed 0" in r.stdout_text
    assert entries(spool, "failed") == []
    assert len(entries(spool, "queue")) == 50


def test_a_clock_set_back_a_day_parks_nothing(cli, tmp_path):
    """Tried once and set for a retry a minute on; then the clock went back
    a day: the retry is due a day "from now" by the wall clock."""
    with Server() as server:
        s = settings_for(tmp_path, server.port)
        conf = write(tmp_path, s)
        spool = tmp_path / "spool"
        [entry_id] = queue_calls(s, 1)
        path = spool / "queue" / entry_id / "meta.json"
        meta = json.loads(path.read_bytes())
        later = time.time() + 86400
        path.write_text(json.dumps({**meta, "attempts": 1, "tried_at": later - 60,
                                    "next_attempt": later, "tried_boot": "before a reboot"}))
        r = cli("--config", conf, "deliver")
        assert r.returncode == 0 and "sent 1" in r.stdout_text, r.stdout_text
    assert [m.rcpt_tos for m in server.received] == [("smith@pbx.test",)]


def test_a_burst_of_failures_is_one_alert_and_a_retry_alerts_no_more(cli, tmp_path):
    """50 calls to a mailbox the server refuses for good: one alert listing
    them; `queue retry --all` and another failure: no second alert."""
    with Server() as server:
        server.handler.rcpt_codes["smith@pbx.test"] = "550 5.1.1 no such user"
        s = settings_for(tmp_path, server.port)
        conf = write(tmp_path, s)
        ids = queue_calls(s, 50)
        r = cli("--config", conf, "deliver")
        assert r.returncode == 0 and "sent 1, deferred 0, failed 50" in r.stdout_text
        [alert] = server.received
        assert alert.rcpt_tos == (ADMIN,)
        assert "50 notifications could not be delivered" in alert.subject
        text = alert.parse().get_body(("plain",)).get_content()
        assert all(i in text for i in ids[:20]) and "and 30 more" in text
        assert {m["alerted"] > 0 for m in entries(tmp_path / "spool", "failed")} == {True}
        for _ in range(2):
            assert cli("--config", conf, "queue", "retry", "--all").returncode == 0
            r = cli("--config", conf, "deliver")
            assert r.returncode == 0 and "sent 0, deferred 0, failed 50" in r.stdout_text
        assert len(server.received) == 1
        assert len(entries(tmp_path / "spool", "failed")) == 50
