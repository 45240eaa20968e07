"""A real, throwaway Asterisk for integration tests (see ../shared/asterisk/README.md).

    pbx = Pbx.start(folder, voicemail_conf=..., extensions_conf=...)
    pbx.originate("Local/100@leave", "play@leave")   # a call, as from the CLI
    pbx.stop()

Everything Asterisk writes lives under `folder`; it runs as a child of the
test and is stopped (killed if it lingers) at the end. `require()` skips the
test with the reason when there is no Asterisk on this machine, and fails it
under CI (CI=true), where .ci/run builds one: the tests must have run there.
"""

from __future__ import annotations

import math
import os
import shutil
import struct
import subprocess
import time
import wave
from collections.abc import Callable
from pathlib import Path

import pytest

PREFIX = Path(os.environ.get("ASTERISK_PREFIX", "/opt/asterisk-22"))
BINARY = PREFIX / "sbin" / "asterisk"
MODULES = PREFIX / "lib" / "asterisk" / "modules"
BUILD = "../shared/asterisk/build.sh /opt/asterisk-22"


def require() -> Path:
    """The asterisk binary, or skip (fail under CI) saying why there is none."""
    missing = [str(p) for p in (BINARY, MODULES / "app_voicemail.so") if not p.exists()]
    if missing:
        why = f"no Asterisk build here ({', '.join(missing)} missing; `{BUILD}` makes one)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {why}")
        pytest.skip(why)
    return BINARY


def tone_wav(path: Path, seconds: float, freq: float = 440.0, rate: int = 8000) -> Path:
    """An 8 kHz mono 16-bit WAV: what Asterisk plays from sounds/ without
    transcoding trouble."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = bytearray()
    for i in range(int(seconds * rate)):
        frames += struct.pack("<h", int(8000 * math.sin(2 * math.pi * freq * i / rate)))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    return path


def wait_until(check: Callable[[], object], timeout: float, what: str, step: float = 0.05):
    """Poll `check` (a file appearing, a server receiving) until it is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


class Pbx:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.conf = folder / "asterisk.conf"
        self.etc = folder / "etc"
        self.proc: subprocess.Popen | None = None
        self.output = folder / "console.log"

    @classmethod
    def start(cls, folder: Path, *, voicemail_conf: str, extensions_conf: str,
              extra: dict[str, str] | None = None, tone_seconds: float = 2.0) -> Pbx:
        """`extra`: more files for etc/ (queues.conf...); `tone_seconds`: the
        length of sounds/custom/msg, what a test call says."""
        binary = require()
        pbx = cls(folder)
        pbx._write(voicemail_conf, extensions_conf, extra or {}, tone_seconds)
        with open(pbx.output, "wb") as out:
            pbx.proc = subprocess.Popen([str(binary), "-C", str(pbx.conf), "-f", "-n"],
                                        stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until(lambda: pbx.proc.poll() is not None or pbx._booted(), 60,
                       "Asterisk to boot")
            if pbx.proc.poll() is not None:
                raise AssertionError(f"Asterisk exited at start:\n{pbx.console()[-3000:]}")
        except BaseException:
            pbx.stop()
            raise
        return pbx

    def _write(self, voicemail_conf: str, extensions_conf: str, extra: dict[str, str],
               tone_seconds: float) -> None:
        f = self.folder
        dirs = {"astetcdir": self.etc, "astmoddir": MODULES, "astvarlibdir": f / "lib",
                "astdbdir": f / "db", "astkeydir": f / "keys", "astdatadir": f / "data",
                "astagidir": f / "agi", "astspooldir": f / "spool", "astrundir": f / "run",
                "astlogdir": f / "log", "astsbindir": PREFIX / "sbin"}
        for p in dirs.values():
            p.mkdir(parents=True, exist_ok=True)
        # Asterisk refuses to start without its XML documentation in astdatadir.
        doc = f / "data" / "documentation"
        if not doc.exists():
            doc.symlink_to(PREFIX / "var" / "lib" / "asterisk" / "documentation")
        sounds = f / "data" / "sounds"
        tone_wav(sounds / "en" / "beep.wav", 0.2, 1000)
        tone_wav(sounds / "custom" / "msg.wav", tone_seconds)
        # A path under /tmp may exceed the control socket's 108 bytes: keep it short.
        lines = ["[directories]", *(f"{k} => {v}" for k, v in dirs.items()),
                 "[options]", "verbose = 3", "nocolor = yes", "transmit_silence = yes"]
        self.conf.write_text("\n".join(lines) + "\n")
        files = {"modules.conf": "[modules]\nautoload=yes\n",
                 "logger.conf": "[general]\n[logfiles]\nconsole => notice,warning,error\n",
                 "voicemail.conf": voicemail_conf, "extensions.conf": extensions_conf,
                 **extra}
        for name, text in files.items():
            (self.etc / name).write_text(text)

    def _booted(self) -> bool:
        return (self.folder / "run" / "asterisk.ctl").exists() and self.cli(
            "core waitfullybooted", check=False).returncode == 0

    def cli(self, command: str, *, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(BINARY), "-C", str(self.conf), "-rx", command],
                              capture_output=True, text=True, timeout=30, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"asterisk -rx {command!r}: {proc.stdout}{proc.stderr}")
        return proc

    def originate(self, channel: str, extension: str) -> None:
        """`channel originate CHANNEL extension EXTEN@CONTEXT`: one half of a
        Local channel runs CHANNEL's extension, the other EXTEN@CONTEXT."""
        self.cli(f"channel originate {channel} extension {extension}")

    def console(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.cli("core stop now", check=False)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()

    def voicemail_dir(self, context: str = "default") -> Path:
        return self.folder / "spool" / "voicemail" / context


def second_decoder() -> list[str] | None:
    """sox or ffmpeg: the check that a file plays outside soundfile."""
    for tool in ("ffmpeg", "sox"):
        if shutil.which(tool):
            return [tool]
    return None
