"""Voicemail intake: wall time and peak memory of
`mikotui notify voicemail --queue-only` on a stock Asterisk mail.

    .venv/bin/python bench/bench_voicemail.py [--runs 5] [--big-mb 20]

1. A 1-minute message (8 kHz PCM WAV, as app_voicemail's `format=wav`
   attaches it): attachment_format "mp3" against "original" — median wall
   time and max RSS (GNU time's "Maximum resident set size") of each.
2. A --big-mb recording (default 20 MB of WAV, ~21 minutes), with
   voicemail.max_attachment_mb raised so it is attached: max RSS against the
   size of the input, for "original" and "mp3" (issue 14's target: <= 3x),
   queued only, then taken in and sent at once to an SMTP server on
   127.0.0.1 (aiosmtpd, in this process: only the sender is measured).
"""

from __future__ import annotations

import argparse
import base64
import io
import math
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import replace
from pathlib import Path

from mikotui import config


def wav(seconds: float) -> bytes:
    """8 kHz mono 16-bit speech-band noise-ish tone: something an encoder works on."""
    rate = 8000
    one = b"".join(struct.pack("<h", int(6000 * math.sin(2 * math.pi * 440 * i / rate)
                                            * math.sin(2 * math.pi * 3 * i / rate)))
                   for i in range(rate))
    frames = one * int(seconds) + one[:int((seconds % 1) * rate) * 2]
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return buf.getvalue()


def stock_mail(recording: bytes) -> bytes:
    """What app_voicemail pipes to mailcmd with the stock body (captured shape)."""
    b64 = base64.encodebytes(recording)
    return (b"Date: Wed, 02 Dec 2026 14:23:48 +0000\nFrom: Asterisk PBX <pbx@pbx.test>\n"
            b"To: \"Smith James\" <smith@pbx.test>\n"
            b"Subject: [PBX]: New message 1 in mailbox 201\n"
            b"X-Asterisk-CallerID: 74951234567\nX-Asterisk-CallerIDName: Ivan Petrov\n"
            b"MIME-Version: 1.0\n"
            b"Content-Type: multipart/mixed; boundary=\"----voicemail_1\"\n\n\n"
            b"This is a multi-part message in MIME format.\n\n------voicemail_1\n"
            b"Content-Type: text/plain; charset=ISO-8859-1\nContent-Transfer-Encoding: 8bit\n\n"
            b"Dear Smith James:\n\n\tJust wanted to let you know you were just left a 1:00 "
            b"long message (number 1)\nin mailbox 201 from \"Ivan Petrov\" <74951234567>, on "
            b"Wednesday, December 02, 2026 at 02:23:48 PM so you might\nwant to check it when "
            b"you get a chance.  Thanks!\n\n\t\t\t\t--Asterisk\n\n------voicemail_1\n"
            b"Content-Type: audio/x-wav; name=\"msg0000.wav\"\n"
            b"Content-Transfer-Encoding: base64\n"
            b"Content-Description: Voicemail sound attachment.\n"
            b"Content-Disposition: attachment; filename=\"msg0000.wav\"\n\n"
            + b64 + b"\n\n------voicemail_1--\n.\n")


def measured(cmd: list[str], stdin: Path) -> tuple[float, int]:
    """(wall seconds, max RSS in kB) of one run under GNU time."""
    with open(stdin, "rb") as f:
        started = time.perf_counter()
        done = subprocess.run(["/usr/bin/time", "-v", *cmd], stdin=f, check=False,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wall = time.perf_counter() - started
    err = done.stderr.decode("utf-8", "replace")
    if done.returncode:
        sys.exit(f"{' '.join(cmd)}: exit {done.returncode}\n{err[-2000:]}")
    return wall, int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", err).group(1))


class _Sink:
    """An SMTP server's handler that takes every message and keeps its size only."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    async def handle_DATA(self, server, session, envelope):
        self.sizes.append(len(envelope.original_content or envelope.content))
        return "250 OK"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--big-mb", type=float, default=20)
    args = ap.parse_args()
    if not os.path.exists("/usr/bin/time"):
        sys.exit("needs GNU time (/usr/bin/time): apt-get install time")
    mikotui = shutil.which("mikotui", path=str(Path(sys.executable).parent)) or "mikotui"
    with tempfile.TemporaryDirectory() as d:
        def conf(fmt: str, limit_mb: float = 10) -> str:
            s = config.defaults("en")
            s = replace(s, spool=replace(s.spool, path=str(Path(d) / f"spool-{fmt}")),
                        voicemail=replace(s.voicemail, attachment_format=fmt,
                                          max_attachment_mb=limit_mb),
                        employees=(config.Employee("201", "Smith James", "smith@pbx.test"),))
            return str(config.save(s, Path(d) / f"{fmt}-{limit_mb:g}.toml"))

        minute = Path(d) / "minute.eml"
        minute.write_bytes(stock_mail(wav(60)))
        print(f"1-minute message: {minute.stat().st_size / 1024:.0f} kB mail "
              f"({len(wav(60)) / 1024:.0f} kB WAV), {args.runs} runs each, interleaved")
        results: dict[str, list[tuple[float, int]]] = {"mp3": [], "original": []}
        for _ in range(args.runs):
            for fmt, runs in results.items():
                cmd = [mikotui, "--config", conf(fmt), "notify", "voicemail", "--queue-only"]
                runs.append(measured(cmd, minute))
        for fmt, runs in results.items():
            print(f"  {fmt:8s} median {statistics.median(w for w, _ in runs) * 1000:6.0f} ms"
                  f"   max RSS {max(r for _, r in runs) / 1024:6.1f} MB")

        recording = wav(args.big_mb * 2**20 / 16000)
        big = Path(d) / "big.eml"
        big.write_bytes(stock_mail(recording))
        size_mb = len(recording) / 2**20
        print(f"{size_mb:.1f} MB recording ({big.stat().st_size / 2**20:.1f} MB mail), "
              f"max_attachment_mb raised to {args.big_mb * 2:g}:")
        for fmt in ("original", "mp3"):
            cmd = [mikotui, "--config", conf(fmt, args.big_mb * 2), "notify", "voicemail",
                   "--queue-only"]
            wall, rss = measured(cmd, big)
            print(f"  {fmt:8s} {wall:6.2f} s   max RSS {rss / 1024:6.1f} MB"
                  f" = {rss / 1024 / size_mb:.1f}x the recording")

        from aiosmtpd.controller import Controller

        from mikotui.sandbox import free_port

        sink = _Sink()
        port = free_port()
        server = Controller(sink, hostname="127.0.0.1", port=port, data_size_limit=0)
        server.start()
        try:
            print("  taken in and sent at once:")
            for fmt in ("original", "mp3"):
                s = config.load(Path(conf(fmt, args.big_mb * 2)))
                s = replace(s, smtp=replace(s.smtp, host="127.0.0.1", port=port,
                                            encryption="none", timeout=120))
                sent_conf = str(config.save(s, Path(d) / f"sent-{fmt}.toml"))
                cmd = [mikotui, "--config", sent_conf, "notify", "voicemail"]
                before = len(sink.sizes)
                wall, rss = measured(cmd, big)
                if len(sink.sizes) != before + 1:
                    sys.exit(f"{fmt}: the server got {len(sink.sizes) - before} messages")
                print(f"  {fmt:8s} {wall:6.2f} s   max RSS {rss / 1024:6.1f} MB"
                      f" = {rss / 1024 / size_mb:.1f}x the recording"
                      f"   ({sink.sizes[-1] / 2**20:.1f} MB sent)")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
