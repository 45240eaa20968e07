"""A crash at any point of `save` leaves the old file or the new one, never a
torn one: a subprocess saves in a loop and is killed with SIGKILL at random
moments."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from mikotui import config

SAVER = r"""
import sys
from dataclasses import replace
from pathlib import Path
from mikotui import config
path = Path(sys.argv[1])
base = config.defaults()
# Two versions, large enough that a write takes more than one syscall's luck.
versions = [replace(base, missed_call=replace(base.missed_call, body=ch * 200_000))
            for ch in "AB"]
# One whole save first: the TOML writer is loaded and the file holds a version,
# so every kill lands in a save loop already going, however slow the machine.
config.save(versions[1], path)
print("ready", flush=True)
i = 0
while True:
    config.save(versions[i % 2], path)
    i += 1
"""


def test_killed_mid_save_never_leaves_a_torn_file(tmp_path: Path) -> None:
    path = tmp_path / "mikotui.toml"
    config.save(config.defaults(), path)
    allowed = {"A" * 200_000, "B" * 200_000, config.defaults().missed_call.body}
    rng = random.Random(7)
    for _ in range(30):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path)],
                                stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0, 0.15))  # a random moment in the save loop, not a sync
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        body = config.load(path).missed_call.body
        assert body in allowed
        backup = path.with_name(path.name + ".bak")
        if backup.exists():
            assert config.load(backup).missed_call.body in allowed


# Dies by SIGKILL at the save's first rename: its temporary file (holding
# the new password) is written, the config not yet replaced.
KILLED_AT_RENAME = r"""
import os, signal, sys
from dataclasses import replace
from pathlib import Path
from mikotui import config

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

os.replace = die
s = config.defaults()
config.save(replace(s, smtp=replace(s.smtp, password=sys.argv[2])), Path(sys.argv[1]))
"""


def temporary_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_killed_save_leaves_no_password_behind(tmp_path: Path, cli) -> None:
    path = tmp_path / "mikotui.toml"
    config.save(config.defaults(), path)
    def killed_save(password: str) -> list[Path]:
        proc = subprocess.run([sys.executable, "-c", KILLED_AT_RENAME, str(path), password],
                              capture_output=True, check=False)
        assert proc.returncode == -signal.SIGKILL
        left = temporary_files(tmp_path)
        assert any(password in p.read_text() for p in left)
        return left

    first = killed_save("first-new-pw")
    # The next save removes what the killed one left (and leaves its own when killed) ...
    second = killed_save("second-new-pw")
    assert not set(first) & set(second)
    # ... and so does the next load (any command).
    assert cli("--config", str(path), "config", "check").returncode == 0
    assert temporary_files(tmp_path) == []
    assert "new-pw" not in path.read_text()
