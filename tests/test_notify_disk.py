"""`mikotui notify ...` when the disk fails at one exact point: a wrapper
runs the real command (`mikotui.cli.main`) with one spool step raising
ENOSPC or EIO, against a real SMTP server on 127.0.0.1. No voicemail byte may
be lost, and nothing stored may be sent twice."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import FIXTURES, ROOT, run_cli
from notify_support import VOICEMAIL, Server, entries, settings_for, write

from mikotui import config

RAW = (FIXTURES / "asterisk-voicemail-default.eml").read_bytes()

# argv[1] is "raw.eml:ERRNO" (every write to a raw.eml fails, e.g. a full
# disk), "raw.eml@N:ERRNO" (the disk fills up once a raw.eml holds N bytes:
# the write that crosses it writes what fits, then fails) or
# "Spool.<method>:ERRNO" (that spool step fails); the rest goes to `mikotui`.
FAULT = """
import errno, os, sys
from mikotui import cli, durable, spool

what, name = sys.argv[1].split(":")
code = getattr(errno, name)
what, _, room = what.partition("@")
room = int(room or 0)

def fail(*args, **kwargs):
    raise OSError(code, os.strerror(code))

if what == "raw.eml":
    real = durable.write_all
    def write_all(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}").endswith("/raw.eml"):
            fits = room - os.fstat(fd).st_size
            if fits < len(data):
                real(fd, data[:max(fits, 0)])
                fail()
        real(fd, data)
    durable.write_all = spool.write_all = write_all
else:
    setattr(spool.Spool, what.removeprefix("Spool."), fail)
sys.exit(cli.main(sys.argv[2:]))
"""


def run_with_fault(fault: str, *args: str, input: bytes | None = None,
                   env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("MIKOTUI_CONFIG", "MIKOTUI_DEBUG")}
    r = subprocess.run([sys.executable, "-c", FAULT, fault, *args], input=input,
                       capture_output=True, env={**base, **(env or {})}, cwd=ROOT,
                       timeout=60, check=False)
    r.stderr_text = r.stderr.decode("utf-8", "replace")  # type: ignore[attr-defined]
    return r


@pytest.fixture
def server():
    with Server() as s:
        yield s


@pytest.fixture
def rescue(tmp_path: Path) -> Path:
    folder = tmp_path / "rescue"
    folder.mkdir()
    return folder


def spool_entries(tmp_path: Path) -> list[dict]:
    spool = tmp_path / "spool"
    return [e for state in ("queue", "active", "failed") for e in entries(spool, state)]


def test_a_full_disk_while_the_voicemail_is_written_keeps_every_byte(tmp_path, server, rescue):
    conf = write(tmp_path, settings_for(tmp_path, server.port))
    r = run_with_fault("raw.eml:ENOSPC", "--config", conf, "notify", "voicemail",
                       input=RAW, env={"TMPDIR": str(rescue)})
    assert r.returncode == 73, r.stderr_text
    [kept] = rescue.iterdir()
    assert kept.read_bytes() == RAW
    assert f"voicemail kept in {kept}" in r.stderr_text and "Traceback" not in r.stderr_text
    assert "No space left on device" in r.stderr_text
    assert spool_entries(tmp_path) == [] and server.received == []

    # Fed back in as the line says, it is delivered.
    r = run_cli("--config", conf, "notify", "voicemail", input=kept.read_bytes())
    assert r.returncode == 0, r.stderr_text
    [got] = server.received
    assert set(got.rcpt_tos) == {"smith@pbx.test", VOICEMAIL}


def test_a_full_disk_keeps_every_byte_of_input_over_the_limit_too(tmp_path, server, rescue):
    """Past 50 MB stdin is not held in memory: the rest is copied after
    what was, into the rescue file as into the spool."""
    conf = write(tmp_path, settings_for(tmp_path, server.port))
    big = b"X-Asterisk-CallerID: 1\n\n" + b"A" * (50 * 1024 * 1024) + b"the end\n"
    r = run_with_fault("raw.eml:ENOSPC", "--config", conf, "notify", "voicemail",
                       input=big, env={"TMPDIR": str(rescue)})
    assert r.returncode == 73, r.stderr_text
    [kept] = rescue.iterdir()
    assert kept.stat().st_size == len(big) and kept.read_bytes() == big
    assert f"voicemail kept in {kept};" in r.stderr_text and "lost" not in r.stderr_text


@pytest.mark.parametrize("room", [0, 600_000, 1 << 18])
def test_a_disk_filling_up_partway_through_the_voicemail_keeps_every_byte(
        tmp_path, server, rescue, room):
    """stdin goes straight into the spool, never held whole: what the
    failed write took is read back from it into the rescue file, then the
    rest of stdin; the half-written entry is gone (left, it would be
    salvaged and sent besides)."""
    conf = write(tmp_path, settings_for(tmp_path, server.port))
    recording = bytes(range(256)) * (3 * 2**20 // 256)
    big = with_recording(RAW, recording)
    assert len(big) > 4 * 2**20  # several chunks of stdin
    r = run_with_fault(f"raw.eml@{room}:ENOSPC", "--config", conf, "notify", "voicemail",
                       input=big, env={"TMPDIR": str(rescue)})
    assert r.returncode == 73, r.stderr_text
    [kept] = rescue.iterdir()
    assert kept.read_bytes() == big
    assert f"voicemail kept in {kept};" in r.stderr_text and "lost" not in r.stderr_text
    assert os.listdir(tmp_path / "spool" / "tmp") == [] and spool_entries(tmp_path) == []


def with_recording(raw: bytes, recording: bytes) -> bytes:
    """The fixture mail with its recording's base64 swapped for `recording`'s."""
    import base64
    import re

    return re.sub(rb"(Content-Disposition: attachment;[^\n]*\n\n)[A-Za-z0-9+/=\n]+\n\n",
                  lambda m: m.group(1) + base64.encodebytes(recording) + b"\n", raw, count=1)


def test_a_full_disk_with_a_broken_config_keeps_every_byte(tmp_path, rescue):
    conf = tmp_path / "mikotui.toml"
    conf.write_text("[smtp\n")
    r = run_with_fault("raw.eml:ENOSPC", "--config", str(conf), "notify", "voicemail",
                       input=RAW, env={"TMPDIR": str(rescue)})
    assert r.returncode == 78, r.stderr_text  # the config error
    [kept] = rescue.iterdir()
    assert kept.read_bytes() == RAW
    assert f"voicemail kept in {kept}" in r.stderr_text and "Traceback" not in r.stderr_text


@pytest.mark.parametrize("kind", [
    ["missed", "--caller", "5", "--called", "201"],
    ["system", "--subject", "disk trouble", "--message", "sdb1 is failing"],
])
def test_a_disk_error_after_sending_does_not_send_it_again(tmp_path, server, kind):
    """The batch's closing fsync fails after the server took the message:
    nothing may send it again, neither now nor a later `deliver`."""
    conf = write(tmp_path, settings_for(tmp_path, server.port))
    r = run_with_fault("Spool.sync:EIO", "--config", conf, "notify", *kind)
    assert r.returncode == 0, r.stderr_text
    assert "Input/output error" in r.stderr_text and "Traceback" not in r.stderr_text
    assert "sent without the spool" not in r.stderr_text
    assert len(server.received) == 1
    assert run_cli("--config", conf, "deliver").returncode == 0
    assert len(server.received) == 1 and spool_entries(tmp_path) == []


def test_a_disk_error_while_queueing_for_a_retry_leaves_it_for_deliver(tmp_path):
    """The server is down and the retry can't be written: the entry is
    stored all the same, the line says where, and `deliver` sends it once."""
    with Server() as gone:
        port = gone.port
    conf = write(tmp_path, settings_for(tmp_path, port))
    r = run_with_fault("Spool.defer:EIO", "--config", conf, "notify", "missed",
                       "--caller", "5", "--called", "201")
    assert r.returncode == 0, r.stderr_text
    [entry] = spool_entries(tmp_path)
    assert "`mikotui deliver` sends it" in r.stderr_text and entry["id"] in r.stderr_text
    assert "is lost" not in r.stderr_text and "Traceback" not in r.stderr_text
    with Server(port=port) as server:
        assert run_cli("--config", conf, "deliver").returncode == 0
        assert run_cli("--config", conf, "deliver").returncode == 0
        [got] = server.received
    assert got.rcpt_tos == ("smith@pbx.test",) and spool_entries(tmp_path) == []


def test_a_full_disk_after_the_voicemail_is_stored_keeps_it_in_the_spool(
        tmp_path, server, rescue):
    """Parsed, but the ready message can't be written: the raw one is safe
    in the spool; no rescue file, exit 0, and `deliver` sends it once."""
    conf = write(tmp_path, settings_for(tmp_path, server.port))
    r = run_with_fault("Spool.replace_message:ENOSPC", "--config", conf, "notify",
                       "voicemail", input=RAW, env={"TMPDIR": str(rescue)})
    assert r.returncode == 0, r.stderr_text
    assert list(rescue.iterdir()) == [] and server.received == []
    [entry] = spool_entries(tmp_path)
    assert entry["stage"] == "raw" and entry["id"] in r.stderr_text
    assert "`mikotui deliver` sends it" in r.stderr_text and "Traceback" not in r.stderr_text
    assert run_cli("--config", conf, "deliver").returncode == 0
    [got] = server.received
    assert set(got.rcpt_tos) == {"smith@pbx.test", VOICEMAIL}
    assert spool_entries(tmp_path) == []


def test_a_voicemail_kept_while_the_config_is_broken_is_sent_by_the_printed_command(
        tmp_path, server):
    """The fixed config names a spool of its own: the command printed must
    still deliver the voicemail, run as printed."""
    conf = tmp_path / "etc" / "mikotui.toml"
    conf.parent.mkdir()
    conf.write_text("[smtp\n")
    r = run_cli("--config", str(conf), "notify", "voicemail", input=RAW)
    assert r.returncode == 78 and "Traceback" not in r.stderr_text
    [line] = [ln for ln in r.stderr_text.splitlines() if "voicemail kept in" in ln]
    command = line.split("once the config is fixed: ", 1)[1]
    assert command.startswith("mikotui ") and "queue retry" not in r.stderr_text

    s = settings_for(tmp_path, server.port)
    config.save(replace(s, spool=replace(s.spool, path=str(tmp_path / "elsewhere"))), conf)
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if k not in ("MIKOTUI_CONFIG", "MIKOTUI_DEBUG")}
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    done = subprocess.run(["/bin/sh", "-c", command], capture_output=True, env=env,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    [got] = server.received
    assert set(got.rcpt_tos) == {"smith@pbx.test", VOICEMAIL}
    assert shlex.split(command)[2] == str(conf)
