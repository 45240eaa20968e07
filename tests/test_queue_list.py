"""`mikotui queue list`: pages, the summary line, and files as found."""

from __future__ import annotations

import json
import os
import re
import time

from notify_support import settings_for, write

from mikotui.spool import Meta, Spool, new_id


def queued(spool: Spool, kind: str = "missed", **fields: object) -> str:
    meta = Meta(**{"id": new_id(), "kind": kind, "created": time.time(),
                   "recipients": ("smith@pbx.test",), "owed": ("smith@pbx.test",),
                   **fields})  # type: ignore[arg-type]
    return spool.enqueue(meta, b"Subject: x\n\nbody\n").id


def rows(out: str) -> list[str]:
    """The ids listed: the lines between the heading and the summary."""
    return [line.split()[0] for line in out.splitlines()[1:]
            if not re.match(r"\d+ (entries|damaged)", line)]


def test_pages_and_a_summary_line(cli, tmp_path):
    settings = settings_for(tmp_path, 9)
    conf = write(tmp_path, settings)
    spool = Spool(settings.spool_dir()).ensure()
    ids = [queued(spool) for _ in range(5)] + [queued(spool, "voicemail")]
    with spool.owner() as owner:
        spool.fail(spool.claim(ids[2], owner), "550 no such user")
    waiting = [i for i in ids if i != ids[2]]

    whole = cli("--config", conf, "queue", "list")
    assert whole.returncode == 0
    assert rows(whole.stdout_text) == [*waiting, ids[2]]  # waiting, then failed
    summary = whole.stdout_text.splitlines()[-1]
    assert summary.startswith("6 entries: 0 sending, 5 waiting, 1 failed; 5 missed, "
                              "1 voicemail; oldest " + ids[0])
    assert "shown" not in summary

    page = cli("--config", conf, "queue", "list", "--limit", "2", "--offset", "2")
    assert rows(page.stdout_text) == waiting[2:4]
    assert page.stdout_text.splitlines()[-1].endswith(
        "; lines 3-4 shown, --offset 4 for the next")
    last = cli("--config", conf, "queue", "list", "--limit", "10", "--offset", "4")
    assert rows(last.stdout_text) == [waiting[4], ids[2]]
    assert last.stdout_text.splitlines()[-1].endswith("; lines 5-6 shown")

    bad = cli("--config", conf, "queue", "list", "--limit", "-1")
    assert bad.returncode == 64 and "not a whole number" in bad.stderr_text


def test_a_hostile_meta_json_is_one_plain_row(cli, tmp_path):
    """A server's reply or a hand-edited file must not reach the terminal as
    escapes or extra lines, nor stop the listing."""
    settings = settings_for(tmp_path, 9)
    conf = write(tmp_path, settings)
    spool = Spool(settings.spool_dir()).ensure()
    evil = queued(spool, last_error="451 \x1b[2J\x1b]0;owned\x07 later\nFAKE ROW",
                  attempts=1, next_attempt=time.time() + 600)
    odd = queued(spool)
    (spool.root / "queue" / odd / "meta.json").write_text(json.dumps(
        {"id": odd, "kind": ["x"], "created": "yesterday", "owed": "a@b", "attempts": "2"}))
    broken = queued(spool)
    (spool.root / "queue" / broken / "meta.json").write_bytes(b"\xff{")
    fifo = queued(spool)  # reading it would wait for a writer forever
    (spool.root / "queue" / fifo / "meta.json").unlink()
    os.mkfifo(spool.root / "queue" / fifo / "meta.json")
    out = cli("--config", conf, "queue", "list", timeout=20)
    assert out.returncode == 0, out.stderr_text
    text = out.stdout_text
    assert "\x1b" not in text and "\x07" not in text
    assert rows(text) == [evil, odd, broken, fifo]
    assert "FAKE ROW" in text.splitlines()[1]
    assert '"kind" is ["x"], not text' in text.splitlines()[2]
    assert "damaged: meta.json" in text.splitlines()[3]
    assert "not a regular file" in text.splitlines()[4]
    assert out.stderr_text.count("damaged spool entry") == 3
    assert "3 damaged (said above)" in text.splitlines()[-1]
