"""A damaged spool entry (a hand, a broken disk, another program) goes to
failed/ with the reason, said once; everything else keeps flowing. The real
`mikotui deliver` and `queue list` against a real aiosmtpd server."""

from __future__ import annotations

import json
import os
from pathlib import Path

from notify_support import ADMIN, Server, entries, settings_for, write

from mikotui import notify
from mikotui.spool import Spool

# A field of meta.json -> a value we never write there.
BAD_FIELDS = {
    "next_attempt": "soon",
    "attempts": "x",
    "created": None,
    "owed": "smith@pbx.test",
    "id": "../../elsewhere",
}


def queue_calls(settings, count: int, first: int = 7000) -> list[str]:
    spool = Spool(settings.spool_dir()).ensure()
    return [spool.enqueue(notify.missed_call(settings, notify.MissedCall(
        caller=str(first + i), called="201")).meta(), notify.missed_call(
        settings, notify.MissedCall(caller=str(first + i), called="201")).data).id
        for i in range(count)]


def damage(spool: Path, entry_id: str, key: str, value: object) -> None:
    path = spool / "queue" / entry_id / "meta.json"
    meta = json.loads(path.read_bytes())
    meta[key] = value
    path.write_text(json.dumps(meta))


def test_damaged_entries_go_to_failed_once_and_the_rest_is_delivered(cli, tmp_path):
    with Server() as server:
        settings = settings_for(tmp_path, server.port)
        conf = write(tmp_path, settings)
        spool = tmp_path / "spool"
        good = queue_calls(settings, 3)
        bad = queue_calls(settings, len(BAD_FIELDS), first=8000)
        for entry_id, (key, value) in zip(bad, BAD_FIELDS.items(), strict=True):
            damage(spool, entry_id, key, value)
        (spool / "queue" / "20260101-000000.000000-aaaaaa").mkdir()  # no meta.json
        (spool / "queue" / "20260101-000000.000000-bbbbbb").mkdir()
        (spool / "queue" / "20260101-000000.000000-bbbbbb" / "meta.json").write_text("{")
        (spool / "queue" / "a b").mkdir()  # not a name we give
        (spool / "active" / "x@..").mkdir()  # would have us lock the spool itself
        (spool / "queue" / "stray.txt").write_text("left by a hand")

        listed = cli("--config", conf, "queue", "list")
        assert listed.returncode == 0, listed.stderr_text
        assert all(g in listed.stdout_text for g in good)
        assert '"next_attempt" is "soon", not a number' in listed.stderr_text
        assert "10 damaged (said above)" in listed.stdout_text
        assert "Traceback" not in listed.stderr_text

        r = cli("--config", conf, "deliver")
        assert r.returncode == 0, r.stderr_text
        assert "Traceback" not in r.stderr_text
        again = cli("--config", conf, "deliver")
        assert again.returncode == 0 and "failed 0" in again.stdout_text
        assert server.handler.wait_for(4)

    delivered = [m for m in server.received if m.rcpt_tos == ("smith@pbx.test",)]
    assert sorted(m.parse()["Subject"] for m in delivered) == sorted(
        notify.missed_call(settings, notify.MissedCall(caller=str(7000 + i), called="201"))
        .subject for i in range(3))
    assert os.listdir(spool / "queue") == [] and os.listdir(spool / "active") == []
    failed = entries(spool, "failed")
    assert len(failed) == len(BAD_FIELDS) + 5
    assert all(f["failed_reason"].startswith("damaged: ") for f in failed)
    reasons = " | ".join(f["failed_reason"] for f in failed)
    for needle in ('"next_attempt" is "soon"', '"attempts" is "x"', '"created" is null',
                   '"owed" is "smith@pbx.test"', '"id" is "../../elsewhere"',
                   "no meta.json", "not JSON", "not an entry name in active/", "not an entry name in queue/",
                   "not a folder in queue/"):
        assert needle in reasons
    # What could be read is kept (the recipients, for a retry), the original beside it.
    soon = next(f for f in failed if "soon" in f["failed_reason"])
    assert soon["recipients"] == ["smith@pbx.test"] and soon["id"] == bad[0]
    assert (spool / "failed" / bad[0] / "meta.json.damaged").exists()
    assert (spool / "failed" / bad[0] / "message.eml").exists()
    # Said once: one log line per damaged entry over both runs.
    log = (spool / "mikotui.log").read_text()
    assert log.count("error=damaged") == len(failed)
    # The administrator is told.
    alerts = [m for m in server.received if m.rcpt_tos == (ADMIN,)]
    assert alerts
