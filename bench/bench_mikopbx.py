"""import-mikopbx / export-mikopbx wall time on the sample database grown to
N employees, and how long a locked database takes to be refused.

    .venv/bin/python bench/bench_mikopbx.py [--employees 2000] [--runs 7]

Prints the median wall time (ms) of each command.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = next(p for p in (ROOT / "tests" / "fixtures" / "mikopbx-sample.sql",
                          ROOT.parent / "shared" / "fixtures" / "mikopbx-sample.sql")
              if p.exists())
MIKOTUI = [str(Path(sys.executable).parent / "mikotui")]


def build(db: Path, employees: int) -> None:
    conn = sqlite3.connect(db)
    conn.executescript(SAMPLE.read_text(encoding="utf-8"))
    conn.executemany("INSERT INTO m_Users (id, email, username, role) VALUES (?, ?, ?, 'user')",
                     [(1000 + i, f"u{i}@mycompany.ru", f"Сотрудник {i}") for i in range(employees)])
    conn.executemany("INSERT INTO m_Extensions (number, type, callerid, userid)"
                     " VALUES (?, 'SIP', ?, ?)",
                     [(str(3000 + i), f"Сотрудник {i}", 1000 + i) for i in range(employees)])
    conn.commit()
    conn.close()


def run(*args: str) -> tuple[float, int]:
    t = time.perf_counter()
    proc = subprocess.run(MIKOTUI + list(args), capture_output=True, check=False)
    return (time.perf_counter() - t) * 1000, proc.returncode


def median_ms(runs: int, *args: str) -> float:
    return statistics.median(run(*args)[0] for _ in range(runs))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--employees", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=7)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db, cfg = Path(tmp) / "mikopbx.db", Path(tmp) / "mikotui.toml"
        build(db, a.employees)
        first, rc = run("--config", str(cfg), "import-mikopbx", str(db))
        assert rc == 0, rc
        print(f"employees: {a.employees + 3}")
        print(f"import (new config):      {first:7.1f} ms")
        conf = ("--config", str(cfg))
        dry = median_ms(a.runs, *conf, "import-mikopbx", str(db), "--dry-run")
        print(f"import --dry-run (same):  {dry:7.1f} ms")
        noop = median_ms(a.runs, *conf, "export-mikopbx", str(db))
        print(f"export (nothing to do):   {noop:7.1f} ms")
        cfg.write_text(cfg.read_text(encoding="utf-8").replace("port = 465", "port = 2525"),
                       encoding="utf-8")
        took, rc = run("--config", str(cfg), "export-mikopbx", str(db))
        print(f"export (1 key + backup):  {took:7.1f} ms (exit {rc})")
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        took, rc = run("--config", str(cfg), "export-mikopbx", str(db))
        holder.execute("ROLLBACK")
        holder.close()
        print(f"export, database locked: {took:7.1f} ms (exit {rc})")


if __name__ == "__main__":
    main()
