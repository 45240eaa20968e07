"""TUI speed: start to the first screen drawn, and a keystroke in a template
to the preview updated (5 kB body). Not a test: prints numbers.

    .venv/bin/python bench/bench_tui.py [--runs N] [--keys N]

Start: the real `mikotui` command in a pseudo-terminal (80x24), timed from
spawn until the SMTP screen's labels have been written to the terminal.
Keystroke: the app in-process (headless, 80x24); each key goes through the
real event path (driver -> TextArea -> new Settings -> validate -> preview),
timed until the first frame painted after the preview took the edit.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import pty
import select
import shutil
import statistics
import struct
import sys
import tempfile
import termios
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mikotui import config


def sample_config(folder: Path) -> Path:
    s = config.defaults("en")
    s = replace(s, spool=replace(s.spool, path=str(folder / "spool")))
    return config.save(s, folder / "mikotui.toml")


def mikotui_command() -> list[str]:
    exe = shutil.which("mikotui", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "mikotui"]


def time_start(path: Path, marker: bytes = b"SMTP host", timeout: float = 10.0) -> float:
    """Seconds from spawn to `marker` on the terminal; then quit with Ctrl+Q."""
    started = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:  # child: a plain 80x24 console
        os.environ.update(TERM="xterm-256color", COLUMNS="80", LINES="24")
        os.execvp(mikotui_command()[0], [*mikotui_command(), "--config", str(path)])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    seen = b""
    elapsed = float("nan")
    try:
        while time.perf_counter() - started < timeout:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if not ready:
                continue
            try:
                seen += os.read(fd, 65536)
            except OSError:
                break
            # Labels are drawn as runs of cells; match without the escapes between.
            if marker in seen or marker.replace(b" ", b"") in _plain(seen):
                elapsed = time.perf_counter() - started
                break
        os.write(fd, b"\x11")  # Ctrl+Q: nothing unsaved, so it quits
        _drain(fd, pid)
    finally:
        os.close(fd)
    return elapsed


def _plain(data: bytes) -> bytes:
    import re

    return re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]|\s", b"", data)


def _drain(fd: int, pid: int) -> None:
    deadline = time.perf_counter() + 5
    while time.perf_counter() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                os.read(fd, 65536)
            except OSError:
                pass
    os.kill(pid, 9)
    os.waitpid(pid, 0)


async def time_keystrokes(path: Path, keys: int) -> list[float]:
    """Key event sent to the app -> the first frame painted after the
    preview took the edit (the compositor's refresh of the screen)."""
    from textual import events
    from textual.screen import Screen

    from mikotui.app import build
    from mikotui.widgets.email_preview import EmailPreview

    app = build(argparse.Namespace(config=str(path), lang="en", sandbox=False), blink=False)
    line = "Caller NOTIFICATION_CALLERID rang NOTIFICATION_TO at NOTIFICATION_DATE. "
    body = (line * (5120 // len(line) + 1))[:5120]
    times: list[float] = []
    state: dict[str, object] = {"shown": False, "painted": None}
    show, paint = EmailPreview.show, Screen._compositor_refresh

    def shown(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        show(self, *args, **kwargs)
        state["shown"] = True

    def painted(self):  # type: ignore[no-untyped-def]
        paint(self)
        if state["shown"] and isinstance(state["painted"], asyncio.Event):
            state["painted"].set()

    EmailPreview.show = shown  # type: ignore[method-assign]
    Screen._compositor_refresh = painted  # type: ignore[method-assign]
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("f2")
            await pilot.pause()
            area = app.screen.query_one("#missed_call--body")
            area.text = body
            area.focus()
            await pilot.pause()
            area.move_cursor(area.document.end)
            await pilot.pause()
            for i in range(keys):
                ch = "abcdefghij"[i % 10]
                done = asyncio.Event()
                state.update(shown=False, painted=done)
                t0 = time.perf_counter()
                app._driver.send_message(events.Key(ch, ch))
                await asyncio.wait_for(done.wait(), 5)
                times.append(time.perf_counter() - t0)
                await pilot.pause()
                if not app.settings.missed_call.body.endswith(ch):
                    raise SystemExit("the key did not reach the template")
            preview = app.screen.query_one(EmailPreview)
            if not preview.plain.endswith("convenience.") or "jabcdefghij" not in preview.plain:
                raise SystemExit("preview not showing the footer")
            if len(app.settings.missed_call.body) != 5120 + keys:
                raise SystemExit("lost keystrokes")
    finally:
        EmailPreview.show, Screen._compositor_refresh = show, paint  # type: ignore[method-assign]
    return times


def time_render(path: Path, n: int = 200) -> list[float]:
    """The preview alone: build + Rich text of a 5 kB body."""
    from mikotui.widgets.email_preview import render_preview

    s = config.load(path)
    line = "Caller NOTIFICATION_CALLERID rang NOTIFICATION_TO at NOTIFICATION_DATE. "
    s = replace(s, missed_call=replace(s.missed_call, body=(line * 80)[:5120]))
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        render_preview("missed", replace(s, missed_call=replace(s.missed_call,
                                                                  subject=f"x{i}")), "en")
        out.append(time.perf_counter() - t0)
    return out


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def report(name: str, values: list[float], unit: float = 1000, label: str = "ms") -> None:
    print(f"{name}: n={len(values)} median={statistics.median(values) * unit:.1f} {label} "
          f"p95={pct(values, 95) * unit:.1f} {label} max={max(values) * unit:.1f} {label}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="cold starts to time")
    parser.add_argument("--keys", type=int, default=100, help="keystrokes to time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = sample_config(Path(tmp))
        starts = [time_start(path) for _ in range(args.runs)]
        report("start to first screen (real mikotui, pty 80x24)", starts)
        report("preview render alone (5 kB body)", time_render(path))
        keys = asyncio.run(time_keystrokes(path, args.keys))
        report("keystroke to preview updated (5 kB body, headless 80x24)", keys)


if __name__ == "__main__":
    main()
