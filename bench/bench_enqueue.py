"""Enqueue cost: median wall time of `mikotui notify missed --queue-only`
against `python3 -c pass` (the floor of any Python program).

    .venv/bin/python bench/bench_enqueue.py [--runs 40]

The target (issue 4): within 4x of `python3 -c pass`. Runs are interleaved
so load from elsewhere hits both sides alike. Floors: `python3` as found on
PATH (here possibly a pyenv shim, a shell script), the interpreter itself,
and the project's venv interpreter. mikotui runs with its bytecode cached, as
an installed package has it (PYTHONDONTWRITEBYTECODE is lifted for it).
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

from mikotui import config

ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


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
    mikotui = shutil.which("mikotui", path=str(Path(sys.executable).parent)) or "mikotui"
    python3 = shutil.which("python3") or sys.executable
    with tempfile.TemporaryDirectory() as d:
        s = config.defaults("en")
        s = replace(s, spool=replace(s.spool, path=str(Path(d) / "spool")),
                    employees=(config.Employee("201", "Smith James", "smith@pbx.test"),))
        conf = str(config.save(s, Path(d) / "mikotui.toml"))
        enqueue = [mikotui, "--config", conf, "notify", "missed", "--caller", "79261234567",
                   "--caller-name", "Ivan Petrov", "--called", "201", "--duration", "12",
                   "--queue-only"]
        base = getattr(sys, "_base_executable", sys.executable)
        floors: dict[str, list[float]] = {python3: [], base: [], sys.executable: []}
        times: list[float] = []
        for _ in range(3):  # warm the page cache
            wall([python3, "-c", "pass"])
            wall(enqueue)
        for _ in range(args.runs):
            for exe, samples in floors.items():
                samples.append(wall([exe, "-c", "pass"]))
            times.append(wall(enqueue))
        queued = len(list((Path(d) / "spool" / "queue").iterdir()))
    med = statistics.median(times)
    print(f"runs: {args.runs} each (queued {queued} entries, each fsynced)")
    print(f"mikotui notify missed --queue-only: median {med * 1000:6.1f} ms "
          f"(p90 {sorted(times)[int(len(times) * 0.9)] * 1000:.1f} ms)")
    for exe, samples in floors.items():
        floor = statistics.median(samples)
        print(f"{exe} -c pass: median {floor * 1000:6.1f} ms -> ratio {med / floor:.2f}x "
              "(target <= 4x)")


if __name__ == "__main__":
    main()
