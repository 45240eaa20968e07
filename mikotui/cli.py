"""The argparse front: `mikotui [options]` starts the TUI, `mikotui COMMAND`
runs one headless command. Exit codes are sysexits, as README lists
them (0 means delivered or durably queued).

Errors a person can act on reach them as one line, never a traceback; set
MIKOTUI_DEBUG=1 to see the traceback of an unexpected failure.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Command name -> its module under mikotui/commands, in --help order.
COMMANDS = {
    "notify": "notify",
    "preview": "preview",
    "test-email": "test_email",
    "oauth2": "oauth2",
    "deliver": "deliver",
    "queue": "queue",
    "config": "config_cmd",
    "sandbox": "sandbox",
    "asterisk-config": "asterisk_config",
    "import-mikopbx": "mikopbx",
    "export-mikopbx": "mikopbx",
}
# Top-level options that take a value (so the value is not taken for a command).
_VALUED = ("--config", "--lang")


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits 64 (EX_USAGE) as sysexits says."""

    def error(self, message: str):  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(os.EX_USAGE, f"{self.prog}: error: {message}\n")


def common_options() -> argparse.ArgumentParser:
    """Options every command takes, before or after its name."""
    common = Parser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                        help="config file (default: $MIKOTUI_CONFIG or config/mikotui.toml)")
    common.add_argument("--lang", choices=("en", "ru"), default=argparse.SUPPRESS,
                        help="language of the UI and default texts")
    return common


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; given argv, only the named command's module is loaded: the
    PBX runs `notify` per event, and every millisecond of start-up counts."""
    common = common_options()
    parser = Parser(
        prog="mikotui", parents=[common],
        description="Mail and notifications for a MikoPBX/Asterisk PBX. "
                    "Without a command: the terminal UI.",
    )
    parser.add_argument("--sandbox", action="store_true",
                        help="TUI: send to a local capture server, not the real one")
    parser.add_argument("--version", action="version", version="mikotui 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    named = _command_in(argv) if argv is not None else None
    modules = [COMMANDS[named]] if named else list(dict.fromkeys(COMMANDS.values()))
    for name in modules:
        importlib.import_module(f"mikotui.commands.{name}").register(sub, common)
    return parser


def _command_in(argv: list[str]) -> str | None:
    """The command named in argv, if it is one we know."""
    skip = False
    for token in argv:
        if skip:
            skip = False
        elif token in _VALUED:
            skip = True
        elif not token.startswith("-"):
            return token if token in COMMANDS else None
    return None


def main(argv: list[str] | None = None) -> int:
    from mikotui.charsets import from_argv

    # Bytes that are not UTF-8 (a cp1251 caller name) are text from here on.
    argv = [from_argv(arg) for arg in (sys.argv[1:] if argv is None else argv)]
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    args.config = getattr(args, "config", None)
    args.lang = getattr(args, "lang", None)
    try:
        if args.command is None:
            return _run_tui(args)
        return args.handler(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `mikotui preview ... | head`: the reader left, nothing to report.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # a person gets a line, not a traceback
        from mikotui.config import ConfigError

        if isinstance(exc, ConfigError):
            print(f"mikotui: config error: {exc}", file=sys.stderr)
            return os.EX_CONFIG
        if code := getattr(exc, "exit_code", None):  # a core error a person can act on
            print(f"mikotui: {exc}", file=sys.stderr)
            return code
        if os.environ.get("MIKOTUI_DEBUG"):
            raise
        print(f"mikotui: internal error: {type(exc).__name__}: {exc} "
              "(MIKOTUI_DEBUG=1 shows the details)", file=sys.stderr)
        return os.EX_SOFTWARE


def _run_tui(args: argparse.Namespace) -> int:
    # The only place the TUI stack is imported: the headless commands stay
    # free of Textual and Rich (tests/test_imports.py holds them to it).
    try:
        from mikotui.app import run
    except ModuleNotFoundError as exc:
        if exc.name not in ("textual", "rich"):
            raise
        # A PBX may carry only the headless part; say so rather than crash.
        print(f"mikotui: the terminal UI needs {exc.name}, which is not installed "
              "(pip install textual); the headless commands work without it", file=sys.stderr)
        return os.EX_UNAVAILABLE
    return run(args)
