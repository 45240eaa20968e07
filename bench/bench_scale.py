"""The spool at scale: 1k, 10k, 50k entries, paired with raw clients on the
same server in the same run (the machine is noisy: compare ratios).

    .venv/bin/python bench/bench_scale.py [--sizes 1000,10000,50000] [--idle 20]

Needs Postfix's `smtp-sink` (Debian: `apt-get install postfix`), a server
that accepts and discards, fast enough not to be what is measured.

Per size N:
- drain: N missed-call entries in a spool, then `mikotui deliver` (the
  whole process: start, one scan, sending, removal) against smtp-sink, in
  messages/s; beside it the same N stored messages sent by raw aiosmtplib
  over one connection and by smtplib over one connection; mikotui's max RSS.
- events: the same N calls stored as `notify missed --queue-only` stores
  them (the event, rendered by the deliverer), drained the same way.
- queue list: N waiting entries listed by `mikotui queue list` against
  plain Python reading the same meta.json files (best of 3, interleaved).
- --watch idle (largest N only): `mikotui deliver --watch` with N entries
  waiting for a retry an hour away; its CPU time over --idle seconds once
  it has read the queue, as a share of one core.

The entries are written as `Spool.enqueue` writes them (the same files),
but without its fsyncs: filling 50k entries durably would take minutes and
measures nothing asked here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import aiosmtplib

from mikotui import config, enqueue, notify
from mikotui.sandbox import free_port
from mikotui.spool import Spool, new_id

SENDER, RCPT = "pbx@pbx.test", "smith@pbx.test"
PLAIN_READ = r"""
import json, os, sys
root = sys.argv[1]
for state in ("active", "queue", "failed"):
    folder = os.path.join(root, state)
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name, "meta.json"), "rb") as f:
            json.loads(f.read())
"""


class Sink:
    """Postfix's smtp-sink on a free port of 127.0.0.1."""

    def __init__(self) -> None:
        exe = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
        if not os.path.exists(exe):
            sys.exit("smtp-sink not found: apt-get install postfix")
        self.port = free_port()
        user = ["-u", "postfix"] if os.geteuid() == 0 else []
        self.proc = subprocess.Popen([exe, *user, f"127.0.0.1:{self.port}", "256"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=2):
                    return
            except OSError:
                time.sleep(0.05)
        sys.exit("smtp-sink did not start")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def fill(settings: config.Settings, n: int, *, waiting: bool) -> bytes:
    """N entries in queue/ (due now, or waiting an hour); returns one message."""
    root = Path(settings.spool_dir())
    Spool(root).ensure()
    prepared = notify.missed_call(settings, notify.MissedCall("5", "201", duration="9"))
    later = time.time() + 3600
    for i in range(n):
        meta = replace(prepared.meta(), id=new_id(), size=len(prepared.data))
        if waiting:
            meta = replace(meta, attempts=1, next_attempt=later, last_error="451 4.3.0 later")
        folder = root / "queue" / meta.id
        os.mkdir(folder, 0o700)
        (folder / "message.eml").write_bytes(prepared.data)
        (folder / "meta.json").write_bytes(meta.to_json())
    return prepared.data


def fill_events(settings: config.Settings, n: int) -> None:
    """N missed calls in queue/ as `notify missed --queue-only` stores them
    (the event; the deliverer renders each), without the fsyncs."""
    root = Path(settings.spool_dir())
    Spool(root).ensure()
    for i in range(n):
        meta = enqueue.missed_meta(None, caller=str(70000000000 + i), called="201",
                                   caller_name="", called_name="", duration="9", via=None)
        folder = root / "queue" / meta["id"]
        os.mkdir(folder, 0o700)
        (folder / "meta.json").write_bytes(json.dumps(meta, indent=1).encode("ascii"))


def run(cmd: list[str]) -> tuple[float, int, str]:
    """Wall seconds, max RSS (KB) and stdout of one process."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = proc.stdout.read().decode() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)}: exit {proc.returncode}")
    return time.perf_counter() - started, usage.ru_maxrss, out


async def raw_aiosmtplib(port: int, data: bytes, n: int) -> float:
    started = time.perf_counter()
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False) as client:
        for _ in range(n):
            await client.sendmail(SENDER, [RCPT], data)
    return time.perf_counter() - started


def raw_smtplib(port: int, data: bytes, n: int) -> float:
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as client:
        for _ in range(n):
            client.sendmail(SENDER, [RCPT], data)
    return time.perf_counter() - started


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000,50000")
    ap.add_argument("--idle", type=float, default=20.0, help="seconds of --watch measured")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    mikotui = shutil.which("mikotui", path=str(Path(sys.executable).parent)) or "mikotui"
    sink = Sink()
    rows = []
    try:
        for n in sizes:
            with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as d:
                s = config.defaults("en")
                s = replace(
                    s, smtp=replace(s.smtp, host="127.0.0.1", port=sink.port,
                                    encryption="none", sender_address=SENDER),
                    spool=replace(s.spool, path=str(Path(d) / "spool")),
                    employees=(config.Employee("201", "Smith James", RCPT),))
                conf = str(config.save(s, Path(d) / "mikotui.toml"))
                data = fill(s, n, waiting=False)
                drain_s, rss, out = run([mikotui, "--config", conf, "deliver"])
                assert f"sent {n}," in out, out
                assert not os.listdir(Path(d) / "spool" / "queue")
                fill_events(s, n)
                events_s, _, out = run([mikotui, "--config", conf, "deliver"])
                assert f"sent {n}," in out, out
                aio_s = asyncio.run(raw_aiosmtplib(sink.port, data, n))
                lib_s = raw_smtplib(sink.port, data, n)

                fill(s, n, waiting=True)
                lists, plains = [], []
                for _ in range(3):
                    lists.append(run([mikotui, "--config", conf, "queue", "list"])[0])
                    plains.append(run([sys.executable, "-c", PLAIN_READ,
                                       str(Path(d) / "spool")])[0])
                idle = None
                if n == max(sizes):
                    idle = watch_idle(mikotui, conf, args.idle)
                rows.append((n, n / drain_s, n / events_s, n / aio_s, n / lib_s, rss / 1024,
                             min(lists), min(plains), idle))
                print_row(rows[-1])
    finally:
        sink.close()


def watch_idle(mikotui: str, conf: str, seconds: float) -> float:
    """The share of one core `deliver --watch` uses with everything waiting."""
    proc = subprocess.Popen([mikotui, "--config", conf, "deliver", "--watch"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        assert b"event=watching" in proc.stderr.readline()
        # The first scan reads every entry once: wait until its CPU use stops.
        last = -1.0
        while (now := cpu_seconds(proc.pid)) != last:
            last = now
            time.sleep(2)
        started, cpu0 = time.monotonic(), cpu_seconds(proc.pid)
        time.sleep(seconds)
        return (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - started)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def print_row(row: tuple) -> None:
    n, rate, events, aio, lib, rss, listed, plain, idle = row
    print(f"{n:>6}: drain {rate:,.0f} msg/s (raw aiosmtplib 1 conn {aio:,.0f}/s = "
          f"{rate / aio:.2f}x, smtplib 1 conn {lib:,.0f}/s), max RSS {rss:.0f} MB; "
          f"stored events rendered and sent {events:,.0f}/s; "
          f"queue list {listed:.2f} s vs plain Python {plain:.2f} s = {listed / plain:.2f}x"
          + (f"; --watch idle {idle * 100:.2f}% of a core" if idle is not None else ""),
          flush=True)


if __name__ == "__main__":
    main()
