"""Drain speed: 1,000 queued notifications to a local SMTP server.

    .venv/bin/python bench/bench_drain.py [--count 1000] [--no-msmtp]

1. Queues COUNT missed-call notifications through the enqueue code, then
   times `mikotui deliver` (the whole process: start, recovery, one
   connection per batch of 200, every entry removed only after its 250).
2. For comparison, sends the same COUNT messages the usual way, one `msmtp`
   process per message (Debian package `msmtp`), if msmtp is installed.

The server is aiosmtpd in its own process, accepting and discarding (it
counts what it got, and the counts are checked). Target (issue 4): at least
500 messages/s for the drain on a 2-core machine.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from mikotui import config, notify
from mikotui.sandbox import free_port
from mikotui.spool import Spool

SERVER = r"""
import sys, threading
from aiosmtpd.controller import Controller
count = 0
lock = threading.Lock()
class Sink:
    async def handle_DATA(self, server, session, envelope):
        global count
        with lock:
            count += 1
        return "250 OK"
c = Controller(Sink(), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
print("ready", flush=True)
for line in sys.stdin:
    print(count, flush=True)
c.stop()
"""


class SinkServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, str(self.port)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def count(self) -> int:
        self.proc.stdin.write("?\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--no-msmtp", action="store_true")
    args = ap.parse_args()
    n = args.count
    mikotui = shutil.which("mikotui", path=str(Path(sys.executable).parent)) or "mikotui"
    server = SinkServer()
    try:
        with tempfile.TemporaryDirectory() as d:
            s = config.defaults("en")
            s = replace(
                s,
                smtp=replace(s.smtp, host="127.0.0.1", port=server.port, encryption="none",
                             sender_address="pbx@pbx.test"),
                spool=replace(s.spool, path=str(Path(d) / "spool")),
                employees=(config.Employee("201", "Smith James", "smith@pbx.test"),))
            conf = str(config.save(s, Path(d) / "mikotui.toml"))
            spool = Spool(s.spool_dir()).ensure()
            copies = Path(d) / "eml"
            copies.mkdir()
            started = time.perf_counter()
            for i in range(n):
                p = notify.missed_call(s, notify.MissedCall(str(70000 + i), "201", duration="9"))
                spool.enqueue(p.meta(), p.data)
                (copies / f"{i}.eml").write_bytes(p.data)
            queued_s = time.perf_counter() - started

            cpu0 = _children_cpu()
            started = time.perf_counter()
            out = subprocess.run([mikotui, "--config", conf, "deliver"], check=True,
                                 capture_output=True, text=True).stdout
            drain_s = time.perf_counter() - started
            drain_cpu = _children_cpu() - cpu0
            got = server.count()
            assert got == n and f"sent {n}," in out, (got, out)
            assert not any((Path(d) / "spool" / "queue").iterdir())
            print(f"queue {n} (in-process enqueue, fsynced): {queued_s:.2f} s")
            print(f"mikotui deliver: {n} messages in {drain_s:.2f} s = "
                  f"{n / drain_s:.0f} messages/s (target >= 500); its CPU time "
                  f"{drain_cpu:.2f} s (the server's is not counted)")

            msmtp = shutil.which("msmtp")
            if args.no_msmtp or not msmtp:
                print("msmtp: skipped" + ("" if msmtp else " (not installed)"))
                return
            before = server.count()
            cpu0 = _children_cpu()
            started = time.perf_counter()
            for i in range(n):
                with open(copies / f"{i}.eml", "rb") as f:
                    subprocess.run([msmtp, "--host=127.0.0.1", f"--port={server.port}",
                                    "--tls=off", "--auth=off", "--from=pbx@pbx.test",
                                    "--", "smith@pbx.test"], stdin=f, check=True)
            msmtp_s = time.perf_counter() - started
            msmtp_cpu = _children_cpu() - cpu0
            assert server.count() - before == n
            print(f"msmtp, one process per message: {n} messages in {msmtp_s:.2f} s = "
                  f"{n / msmtp_s:.0f} messages/s; CPU time {msmtp_cpu:.2f} s")
            print(f"mikotui deliver is {msmtp_s / drain_s:.1f}x faster")
    finally:
        server.close()


if __name__ == "__main__":
    main()
