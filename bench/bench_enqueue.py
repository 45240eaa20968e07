"""Enqueue cost: `mikotui notify missed --queue-only` against the stdlib floor
(bench/enqueue_floor.py: the same durable work, argparse + tomllib +
hand-built MIME + the same four fsyncs) and `python -c pass`, in one run.

    python3 -m venv /tmp/v && /tmp/v/bin/pip install .     # installed, not editable
    /tmp/v/bin/python bench/bench_enqueue.py [--runs 40]

Measure on a normal `pip install .` venv, as README installs it: an editable
install's import hook makes even `python -c pass` twice as slow, so this
refuses one. Target (issue 10): within 1.3x of the floor. Runs are
interleaved so load from elsewhere hits all sides alike; bytecode is cached
as an installed package has it (PYTHONDONTWRITEBYTECODE is lifted).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import mikotui
from mikotui import config

ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
FLOOR = Path(__file__).with_name("enqueue_floor.py")


def wall(cmd: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, env=ENV)
    if done.returncode:
        sys.exit(f"{' '.join(cmd)}: exit {done.returncode}\n{done.stderr.decode()}")
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=40)
    args = ap.parse_args()
    if "site-packages" not in mikotui.__file__:
        sys.exit(f"mikotui is imported from {mikotui.__file__}: an editable install. "
                 "Run this with the python of a `pip install .` venv.")
    mikotui_exe = shutil.which("mikotui", path=str(Path(sys.executable).parent)) or "mikotui"
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as d:
        s = config.defaults("en")
        s = replace(s, spool=replace(s.spool, path=str(Path(d) / "spool")),
                    employees=(config.Employee("201", "Smith James", "smith@pbx.test"),))
        conf = str(config.save(s, Path(d) / "mikotui.toml"))
        event = ["--config", conf, "--caller", "79261234567", "--called", "201",
                 "--queue-only"]
        sides = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "stdlib floor (bench/enqueue_floor.py)": [sys.executable, str(FLOOR), *event],
            "mikotui notify missed --queue-only": [
                mikotui_exe, "--config", conf, "notify", "missed", "--caller", "79261234567",
                "--caller-name", "Ivan Petrov", "--called", "201", "--duration", "12",
                "--queue-only"],
        }
        # The same with OAuth2 sign-in: queueing must cost nothing more for it.
        oauth = replace(s, smtp=replace(s.smtp, auth="oauth2", username="pbx@company.com",
                                        oauth2=config.OAuth2(client_id="x")))
        oauth_conf = str(config.save(oauth, Path(d) / "oauth2.toml"))
        sides['... the same with auth = "oauth2"'] = [
            *sides["mikotui notify missed --queue-only"][:2], oauth_conf,
            *sides["mikotui notify missed --queue-only"][3:]]
        subprocess.run([mikotui_exe, "--config", conf, "queue", "list"], check=True,
                       stdout=subprocess.DEVNULL, env=ENV)  # makes the spool's folders
        times: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(3):  # warm the page cache
            for cmd in sides.values():
                wall(cmd)
        for _ in range(args.runs):
            for name, cmd in sides.items():
                times[name].append(wall(cmd))
        queued = len(os.listdir(Path(d) / "spool" / "queue"))
    med = {name: statistics.median(t) for name, t in times.items()}
    floor = med["stdlib floor (bench/enqueue_floor.py)"]
    print(f"{args.runs} interleaved runs each ({queued} entries queued, each fsynced), "
          f"{sys.executable}:")
    for name, m in med.items():
        print(f"  {name:40} median {m * 1000:6.1f} ms  = {m / floor:.2f}x the floor")


if __name__ == "__main__":
    main()
