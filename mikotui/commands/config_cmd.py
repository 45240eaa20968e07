"""mikotui config check"""

from __future__ import annotations

import argparse
import os


def register(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("config", parents=[common], help="check the config file")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser("check", parents=[common],
                               help="validate; print every problem with its key and line")
    check.set_defaults(handler=run_check)


def run_check(args: argparse.Namespace) -> int:
    from mikotui import config

    path = config.resolve_path(args.config)
    lang = args.lang or "en"
    try:
        settings = config.load(path)
        problems: list[config.Problem] = []
    except config.ConfigError as exc:
        if exc.settings is None:  # no file, or not TOML: nothing more to check
            raise
        # Wrong values were left at their defaults; check the rest as well.
        settings, problems = exc.settings, list(exc.problems)
    wrong = {p.key for p in problems}
    problems += [p for p in config.validate(settings) if p.key not in wrong]
    problems.sort(key=lambda p: (p.line or 0, p.key))
    for p in problems:
        where = f" (line {p.line})" if p.line else ""
        print(f"{p.level}: {p.key}: {p.text(lang)}{where}")
    errors = config.errors(problems)
    if errors:
        print(f"{path}: {len(errors)} error(s), {len(problems) - len(errors)} warning(s)")
        return os.EX_CONFIG
    print(f"{path}: OK" + (f", {len(problems)} warning(s)" if problems else ""))
    return 0
