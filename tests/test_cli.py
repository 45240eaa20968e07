"""The command line as a whole: help for every command, and one clear line
(never a traceback) for the errors a person meets first."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from mikotui.cli import COMMANDS


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(cli, command: str) -> None:
    res = cli(command, "--help")
    assert res.returncode == 0, res.stderr_text
    assert res.stdout_text.startswith(f"usage: mikotui {command}")


def test_top_level_help_lists_every_command(cli) -> None:
    res = cli("--help")
    assert res.returncode == 0
    for command in COMMANDS:
        assert command in res.stdout_text


def test_unknown_command_is_a_usage_error(cli) -> None:
    res = cli("sendmail")
    assert res.returncode == os.EX_USAGE
    assert "invalid choice: 'sendmail'" in res.stderr_text


@pytest.mark.parametrize("args", [
    ("queue", "list"),
    ("deliver",),
    ("notify", "missed", "--caller", "101", "--called", "201", "--queue-only"),
])
def test_unusable_spool_is_one_line_and_73(cli, settings, write_config, tmp_path, args) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    s = replace(settings, spool=replace(settings.spool, path=str(blocker / "spool")))
    res = cli(*args, "--config", str(write_config(s)))
    assert res.returncode == os.EX_CANTCREAT, res.stderr_text
    assert "Traceback" not in res.stderr_text
    assert "spool" in res.stderr_text and len(res.stderr_text.strip().splitlines()) == 1


BAD_CONFIG = """\
[smtp]
host = "smtp.gmail.com"
port = "587x"
timeout = "thirty"
encryption = "tls"
prot = 25

[[employee]]
extension = "201"
"""


def test_config_check_names_every_problem_with_its_line(cli, tmp_path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BAD_CONFIG)
    res = cli("config", "check", "--config", str(path))
    assert res.returncode == os.EX_CONFIG, res.stdout_text
    out = res.stdout_text
    for line in ("error: smtp.port: must be a whole number, got '587x' (line 3)",
                 "error: smtp.timeout: must be a number, got 'thirty' (line 4)",
                 "error: smtp.encryption: must be one of none, starttls, ssl, got 'tls' (line 5)",
                 "error: smtp.prot: unknown key: did you mean port? (line 6)",
                 ("error: employee: unknown section [[employee]]: did you mean [[employees]]? "
                 "(line 8)")):
        assert line in out.splitlines(), out
    assert "5 error(s)" in out and "Traceback" not in res.stderr_text


def test_config_check_speaks_russian(cli, tmp_path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BAD_CONFIG)
    res = cli("config", "check", "--config", str(path), "--lang", "ru")
    assert "error: smtp.prot: неизвестный ключ: может быть, port? (line 6)" in res.stdout_text
    assert "got" not in res.stdout_text


def test_no_stale_references_in_the_code() -> None:
    """Comments say the rule in place: no section numbers of documents the
    repository does not hold, no words from before the UI existed."""
    from conftest import ROOT

    stale = ("SPEC §", "DESIGN §", "the seed", "seed's", "not built yet")
    files = [*(ROOT / "mikotui").rglob("*.py"), *(ROOT / "tests").glob("*.py"),
             ROOT / "config" / "mikotui.toml", ROOT / "README.md"]
    found = [f"{path.relative_to(ROOT)}: {word}" for path in files
             if path.name != "test_cli.py" for word in stale if word in path.read_text()]
    assert found == []


def test_tui_without_textual_is_one_line(tmp_path) -> None:
    """A PBX with only the headless part: `mikotui` says what is missing."""
    import subprocess
    import sys

    from conftest import ROOT

    blocker = tmp_path / "textual.py"
    blocker.write_text("raise ModuleNotFoundError('No module named textual', name='textual')\n")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from mikotui.cli import main; "
            "sys.exit(main(['--config', 'x.toml']))")
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=False,
                         capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == os.EX_UNAVAILABLE, res.stderr
    assert res.stderr.startswith("mikotui: the terminal UI needs textual")
    assert "Traceback" not in res.stderr
