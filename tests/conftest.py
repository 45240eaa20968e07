"""Shared test helpers: run the real `mikotui` command, write configs."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from mikotui import config

# Property tests: `make test` and CI run the same cases every time
# (derandomized, no example database), so a fresh clone never fails on a case
# nobody has seen; `make fuzz` (HYPOTHESIS_PROFILE=fuzz) searches afresh with
# more examples, keeping what it finds in .hypothesis/ to replay next time.
hypothesis_settings.register_profile("ci", derandomize=True, database=None, deadline=None,
                                     print_blob=True)
hypothesis_settings.register_profile("fuzz", derandomize=False, deadline=None, print_blob=True)
HYPOTHESIS_PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
hypothesis_settings.load_profile(HYPOTHESIS_PROFILE)
FUZZ_FACTOR = float(os.environ.get("FUZZ_FACTOR", "10")) if HYPOTHESIS_PROFILE == "fuzz" else 1


def examples(ci: int) -> int:
    """A property's number of cases: `ci` in CI, FUZZ_FACTOR times that in `make fuzz`."""
    return max(1, round(ci * FUZZ_FACTOR))

ROOT = Path(__file__).resolve().parent.parent
# The fixtures shipped beside the project (CI has them too); a copy in
# tests/fixtures wins when present.
FIXTURES = next(
    (p for p in (ROOT / "tests" / "fixtures", ROOT.parent / "shared" / "fixtures") if p.is_dir()),
    ROOT / "tests" / "fixtures",
)


def mikotui_command() -> list[str]:
    exe = shutil.which("mikotui", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "mikotui"]


def run_cli(*args: str, input: bytes | str | None = None, env: dict | None = None,
            timeout: float = 60, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the installed `mikotui` as a user would; text output decoded."""
    # The caller's environment must not pick the config: only `env` may.
    inherited = {k: v for k, v in os.environ.items() if k not in ("MIKOTUI_CONFIG", "MIKOTUI_DEBUG")}
    full_env = {**inherited, **(env or {})}
    if isinstance(input, str):
        input = input.encode()
    proc = subprocess.run(mikotui_command() + list(args), input=input, capture_output=True,
                          env=full_env, timeout=timeout, cwd=cwd, check=False)
    proc.stdout_text = proc.stdout.decode("utf-8", "replace")  # type: ignore[attr-defined]
    proc.stderr_text = proc.stderr.decode("utf-8", "replace")  # type: ignore[attr-defined]
    return proc


@contextmanager
def running(*args: str) -> Iterator[subprocess.Popen]:
    """`mikotui ARGS` in the background for the block (stdout and stderr piped);
    killed if the block leaves it running, so no test leaves a process behind."""
    env = {k: v for k, v in os.environ.items() if k not in ("MIKOTUI_CONFIG", "MIKOTUI_DEBUG")}
    proc = subprocess.Popen(mikotui_command() + list(args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def settings(tmp_path: Path) -> config.Settings:
    """The shipped defaults with two employees and a spool under tmp_path."""
    s = config.defaults("en")
    return replace(
        s,
        spool=replace(s.spool, path=str(tmp_path / "spool")),
        employees=(
            config.Employee("201", "Smith James", "smith@mycompany.com"),
            config.Employee("202", "Brown Brandon", ""),
        ),
        path=tmp_path / "mikotui.toml",
    )


@pytest.fixture
def write_config(tmp_path: Path):
    """write_config(settings) -> path of a saved config file."""

    def write(s: config.Settings, name: str = "mikotui.toml") -> Path:
        return config.save(s, tmp_path / name)

    return write


def secret_forms(username: str, password: str) -> list[str]:
    """The password and the base64 forms AUTH PLAIN and LOGIN put on the wire,
    written out here, independent of the product's own masking code."""
    raw = [password.encode(), f"\0{username}\0{password}".encode(),
           f"{username}\0{password}".encode()]
    return [password] + [base64.b64encode(r).decode().rstrip("=") for r in raw]


def assert_no_secret(texts, username: str, password: str) -> None:
    """No text (str or bytes) holds the password in any form."""
    for text in texts:
        text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        for form in secret_forms(username, password):
            assert form not in text, "a form of the password was shown"
