"""`kill -9` of `mikotui notify` at random moments never leaves a torn entry
in queue/, and whatever it made durable is still delivered afterwards."""

from __future__ import annotations

import email
import email.policy
import json
import os
import random
import subprocess
import time
from pathlib import Path

from conftest import FIXTURES, mikotui_command
from notify_support import Server, settings_for, write

RUNS = 50
VOICEMAIL = (FIXTURES / "asterisk-voicemail-default.eml").read_bytes()


def check_whole(entry: Path) -> dict:
    meta = json.loads((entry / "meta.json").read_bytes())
    if meta["stage"] == "event":  # a --queue-only missed call: the event, no mail yet
        assert meta["event"]["called"] == "201" and os.listdir(entry) == ["meta.json"]
        return meta
    name = "raw.eml" if meta["stage"] == "raw" else "message.eml"
    data = (entry / name).read_bytes()
    assert len(data) == meta["size"], entry
    if meta["stage"] == "raw":
        assert data == VOICEMAIL
    else:
        msg = email.message_from_bytes(data, policy=email.policy.default)
        assert msg["Message-ID"] and msg["To"] and not msg.defects
    return meta


def base_args(conf: str, run: int) -> list[str]:
    """Runs take turns: missed --queue-only, missed sent at once, voicemail."""
    args = ["--config", conf, "notify"]
    if run % 3 == 2:
        return [*args, "voicemail", "--queue-only"]
    args += ["missed", "--caller", str(run), "--called", "201"]
    return args + ["--queue-only"] if run % 3 == 0 else args


def test_kill_9_of_notify_leaves_no_torn_entry(cli, tmp_path):
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    env = {**os.environ, "MIKOTUI_DEBUG": ""}
    with Server() as server:
        conf = write(tmp_path, settings_for(tmp_path, server.port))
        # One run of each kind to the end first: the longest sets the window the
        # kills fall in, so a slow (loaded) machine still gets kills at every
        # stage and some runs of every kind finish.
        life = 0.0
        for run in (1, 2, 3):
            started = time.monotonic()
            whole = cli(*base_args(conf, run), input=VOICEMAIL if run % 3 == 2 else b"")
            assert whole.returncode == 0, whole.stderr_text
            life = max(life, time.monotonic() - started)
        finished = killed = 0
        for run in range(1, RUNS + 1):
            kind = run % 3
            proc = subprocess.Popen(mikotui_command() + base_args(conf, run),
                                    stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    env=env)
            try:
                proc.stdin.write(VOICEMAIL if kind == 2 else b"")
                proc.stdin.close()
            except BrokenPipeError:
                pass
            try:  # a random moment of its life
                proc.wait(timeout=rng.uniform(0.0, life * 1.2))
                finished += proc.returncode == 0
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                killed += 1
        assert killed >= 10 and finished >= 3, (killed, finished)
        print(f"killed {killed}, finished {finished}")

        spool = tmp_path / "spool"
        waiting = [check_whole(p) for p in (spool / "queue").iterdir()]
        waiting += [check_whole(p) for p in (spool / "active").iterdir()]
        delivered_at_once = len(server.received)
        assert len(waiting) + delivered_at_once >= finished

        r = cli("--config", conf, "deliver")
        assert r.returncode == 0, r.stderr_text
    assert not list((spool / "queue").iterdir())
    assert not list((spool / "active").iterdir())
    assert not list((spool / "failed").iterdir())
    # Everything made durable arrived; an in-flight one may arrive twice.
    assert len(server.received) >= delivered_at_once + len(waiting)
