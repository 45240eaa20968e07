"""SIGTERM (a service stop, a PBX shutting down) while `notify` or `deliver`
is talking to the server: the message on the wire is finished, nothing is
sent twice, the rest stays queued, the exit code says "done or queued"."""

from __future__ import annotations

import signal
import subprocess
import threading
from pathlib import Path

from conftest import mikotui_command
from notify_support import Server, entries, settings_for, write


def signal_taken(proc: subprocess.Popen) -> bool:
    """True once `proc` has taken delivery of its pending signals (caught or
    died of them): nothing shows in /proc/PID/status as pending any more."""
    try:
        status = Path(f"/proc/{proc.pid}/status").read_text()
    except FileNotFoundError:
        return True
    pending = [line.split()[1] for line in status.splitlines()
               if line.startswith(("SigPnd:", "ShdPnd:"))]
    return all(int(mask, 16) == 0 for mask in pending) or proc.poll() is not None


def stop_mid_send(server: Server, proc: subprocess.Popen) -> tuple[int, str]:
    assert server.handler.holding.wait(20), "the command never reached DATA"
    proc.send_signal(signal.SIGTERM)
    while not signal_taken(proc):  # a state to reach, not a delay
        pass
    server.handler.hold.set()
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err.decode()


def test_sigterm_during_notify_finishes_the_send_and_exits_0(tmp_path: Path):
    with Server() as server:
        server.handler.hold = threading.Event()
        conf = write(tmp_path, settings_for(tmp_path, server.port))
        proc = subprocess.Popen([*mikotui_command(), "--config", conf, "notify", "missed",
                                 "--caller", "5", "--called", "201"], stderr=subprocess.PIPE)
        code, err = stop_mid_send(server, proc)
        assert code == 0, err
        assert "result=sent" in err and "Traceback" not in err
        assert [r.rcpt_tos for r in server.received] == [("smith@pbx.test",)]
    spool = tmp_path / "spool"
    assert entries(spool, "queue") == [] and entries(spool, "active") == []


def test_sigterm_during_deliver_sends_once_and_puts_the_rest_back(cli, tmp_path: Path):
    with Server() as server:
        conf = write(tmp_path, settings_for(tmp_path, server.port))
        for n in range(5):
            r = cli("--config", conf, "notify", "missed", "--queue-only", "--caller", str(n),
                    "--called", "201")
            assert r.returncode == 0, r.stderr_text
        server.handler.hold = threading.Event()
        proc = subprocess.Popen([*mikotui_command(), "--config", conf, "deliver"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        code, err = stop_mid_send(server, proc)
        assert code == 0, err
        assert len(server.received) == 1  # the one on the wire, finished
        spool = tmp_path / "spool"
        assert len(entries(spool, "queue")) == 4 and entries(spool, "active") == []
        # Untried, not failed (a stored call's meta.json has only what it holds).
        assert all(e.get("attempts", 0) == 0 for e in entries(spool, "queue"))

        r = cli("--config", conf, "deliver")  # the next run sends the rest, once each
        assert r.returncode == 0, r.stderr_text
        callers = sorted(str(m.parse()["Subject"]) for m in server.received)
        assert callers == [f"Missed Call from {n}" for n in range(5)]
