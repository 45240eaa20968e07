"""<spool>/mikotui.log: rotated by size, with several processes writing at once."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

from mikotui.log import LOG
from mikotui.spool import Spool

WRITER = """
import sys
from pathlib import Path
from mikotui.spool import Spool

spool = Spool(Path(sys.argv[1]))
spool.log_max, spool.log_keep = int(sys.argv[2]), int(sys.argv[3])
name, count = sys.argv[4], int(sys.argv[5])
sys.stdin.read(1)  # all writers start together
for n in range(count):
    spool.log(f"writer={name} seq={n} pad={'x' * 60} end=1")
"""
LINE = re.compile(r"writer=(w\d) seq=(\d+) pad=x{60} end=1")


def log_files(root: Path) -> list[Path]:
    return sorted(root.glob(LOG + "*"), key=lambda p: p.name)


def run_writers(root: Path, writers: int, lines: int, log_max: int, keep: int) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(log_max), str(keep),
                               f"w{i}", str(lines)], stdin=subprocess.PIPE)
             for i in range(writers)]
    for p in procs:  # every writer is running before any writes
        p.stdin.write(b"go")
        p.stdin.close()
    for p in procs:
        assert p.wait(timeout=60) == 0


def test_concurrent_writers_lose_no_line_across_rotations(tmp_path: Path):
    root = Spool(tmp_path / "spool").ensure().root
    writers, lines, log_max = 4, 1500, 16_000
    run_writers(root, writers, lines, log_max, keep=10_000)  # nothing old is dropped

    files = [p for p in log_files(root) if not p.name.endswith(".lock")]
    assert len(files) > 20  # it did rotate, many times, under contention
    seen: dict[str, list[int]] = {f"w{i}": [] for i in range(writers)}
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        for line in path.read_text().splitlines():
            m = LINE.fullmatch(line)
            assert m, f"torn line in {path.name}: {line!r}"
            seen[m.group(1)].append(int(m.group(2)))
    for name, seqs in seen.items():
        assert sorted(seqs) == list(range(lines)), name  # each line once, none lost
    # Files stay near the limit: only lines racing a rotation overshoot it.
    assert max(p.stat().st_size for p in files) < log_max + writers * 200


def test_only_the_newest_files_are_kept(tmp_path: Path):
    spool = Spool(tmp_path / "spool").ensure()
    spool.log_max, spool.log_keep = 1000, 2
    for n in range(200):
        spool.log(f"line {n:04d} {'y' * 40}")
    names = sorted(p.name for p in log_files(spool.root) if not p.name.endswith(".lock"))
    assert names == [LOG, LOG + ".1", LOG + ".2"]
    newest = (spool.root / LOG).read_text().splitlines()
    assert newest[-1].startswith("line 0199")
    older = (spool.root / (LOG + ".1")).read_text().splitlines()
    assert older[-1] < newest[0]  # .1 holds the lines just before the current file
    assert all(os.path.getsize(spool.root / n) <= 1000 for n in names)


def test_one_line_bigger_than_the_limit_is_still_written(tmp_path: Path):
    spool = Spool(tmp_path / "spool").ensure()
    spool.log_max = 100
    spool.log("z" * 500)
    spool.log("z" * 500)
    assert (spool.root / LOG).read_text() == "z" * 500 + "\n"
    assert (spool.root / (LOG + ".1")).read_text() == "z" * 500 + "\n"
