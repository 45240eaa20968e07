"""Nothing lost outright: a missed call or system alert that neither the
spool nor the server takes is kept in a rescue file, as a voicemail is; an
entry whose `notify` was killed before its metadata is recovered, never
deleted. The real command, a real aiosmtpd server, real kills."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FIXTURES, ROOT
from notify_support import VOICEMAIL, Server, entries, settings_for, write
from test_notify_disk import run_with_fault

from mikotui.sandbox import free_port

RAW = (FIXTURES / "asterisk-voicemail-default.eml").read_bytes()
HOSTILE_NAME = "O'Brien \"$(touch pwned)\" `id` \\ ; Пётр"


@pytest.fixture
def rescue(tmp_path: Path) -> Path:
    folder = tmp_path / "rescue"
    folder.mkdir()
    return folder


def test_queue_only_on_a_full_spool_still_sends_it_now(tmp_path):
    """README: if the spool can't be written, notify still sends a missed
    call straight away; the dialplan's --queue-only form too."""
    with Server() as server:
        conf = write(tmp_path, settings_for(tmp_path, server.port))
        r = run_with_fault("Spool.enqueue:ENOSPC", "--config", conf, "notify", "missed",
                           "--queue-only", "--caller", "5", "--called", "201")
        assert r.returncode == 0, r.stderr_text
        assert "sent without the spool" in r.stderr_text
        assert [m.rcpt_tos for m in server.received] == [("smith@pbx.test",)]


@pytest.mark.parametrize("queue_only", [["--queue-only"], []])
@pytest.mark.parametrize("event", [
    ["missed", "--caller", "5", "--called", "201", "--caller-name", HOSTILE_NAME],
    ["system", "--subject", "disk full", "--message", f"/var is full\n{HOSTILE_NAME}"],
])
def test_a_full_spool_and_a_server_down_keep_the_event_in_a_rescue_file(
        tmp_path, rescue, event, queue_only):
    port = free_port()
    conf = write(tmp_path, settings_for(tmp_path, port))
    r = run_with_fault("Spool.enqueue:ENOSPC", "--config", conf, "notify", *event,
                       *queue_only, env={"TMPDIR": str(rescue)})
    assert r.returncode == os.EX_CANTCREAT
    [kept] = rescue.iterdir()
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    [line] = r.stderr_text.splitlines()
    assert "No space left on device" in line and f"is kept in {kept}" in line
    assert f"sh {kept}" in line
    # Once the spool (and the server) work again, the file sends it.
    with Server(port) as server:
        path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
        again = subprocess.run(["sh", str(kept)], capture_output=True, text=True,
                               cwd="/", env={**os.environ, "PATH": path}, check=False)
        assert again.returncode == 0, again.stderr
        assert server.handler.wait_for(1)
    [got] = server.received
    text = got.parse().get_body(("plain",)).get_content()
    assert HOSTILE_NAME in text
    assert not (tmp_path / "pwned").exists()
    if event[0] == "missed":
        assert "--date" in kept.read_text()


# Dies by SIGKILL the moment the spool writes an entry's meta.json in tmp/:
# `notify` killed after the message (or Asterisk's raw email) was written.
KILLED_BEFORE_META = """
import os, signal, sys
from mikotui import cli, spool

real = spool.write_file
def write_file(path, data, mode=0o600):
    if path.name == "meta.json" and path.parent.parent.name == "tmp":
        os.kill(os.getpid(), signal.SIGKILL)
    real(path, data, mode)
spool.write_file = write_file
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("event", [["voicemail"], ["missed", "--caller", "5", "--called", "201"]])
def test_an_entry_whose_notify_was_killed_before_its_metadata_is_recovered(
        cli, tmp_path, event):
    with Server() as server:
        conf = write(tmp_path, settings_for(tmp_path, server.port))
        killed = subprocess.run([sys.executable, "-c", KILLED_BEFORE_META, "--config", conf,
                                 "notify", *event], input=RAW, capture_output=True,
                                cwd=ROOT, check=False)
        assert killed.returncode == -9
        spool = tmp_path / "spool"
        [left] = (spool / "tmp").iterdir()
        assert "meta.json" not in os.listdir(left)
        old = time.time() - 7200  # past the hour a writer may still be at it
        os.utime(left, (old, old))
        r = cli("--config", conf, "deliver")
        assert r.returncode == 0, r.stderr_text
        assert "event=recovered" in r.stderr_text and "sent 1" in r.stdout_text
        assert server.handler.wait_for(1)
    [got] = server.received
    if event == ["voicemail"]:
        assert set(got.rcpt_tos) == {"smith@pbx.test", VOICEMAIL}
        assert any(True for _ in got.parse().iter_attachments())
    else:
        assert got.rcpt_tos == ("smith@pbx.test",)
    assert os.listdir(spool / "tmp") == [] and entries(spool, "failed") == []
