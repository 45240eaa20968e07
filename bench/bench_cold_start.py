"""Cold start of `mikotui preview missed` against `python3 -c pass`.

    .venv/bin/python bench/bench_cold_start.py [--runs 20]

Prints the median and p90 wall time of each command (ms) and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd: list[str], runs: int) -> list[float]:
    subprocess.run(cmd, capture_output=True, check=True)  # warm the page cache
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        out.append((time.perf_counter() - t) * 1000)
    return sorted(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    mikotui = str(Path(sys.executable).parent / "mikotui")
    cases = {
        "python3 -c pass": [sys.executable, "-c", "pass"],
        "mikotui preview missed": [mikotui, "preview", "missed",
                                   "--config", str(ROOT / "config" / "mikotui.toml")],
        "mikotui --help": [mikotui, "--help"],
    }
    medians = {}
    for name, cmd in cases.items():
        t = timed(cmd, args.runs)
        medians[name] = statistics.median(t)
        print(f"{name:28s} median {medians[name]:6.1f} ms   p90 {t[int(len(t) * 0.9) - 1]:6.1f} ms")
    base = medians["python3 -c pass"]
    print(f"preview / python: {medians['mikotui preview missed'] / base:.2f}x")


if __name__ == "__main__":
    main()
