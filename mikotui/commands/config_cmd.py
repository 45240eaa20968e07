"""mikotui config check"""

from __future__ import annotations

import argparse
import os


def register(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("config", parents=[common], help="check the config file")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser("check", parents=[common],
                               help="validate; print each problem with its key")
    check.set_defaults(handler=run_check)


def run_check(args: argparse.Namespace) -> int:
    from mikotui import config

    path = config.resolve_path(args.config)
    settings = config.load(path)
    problems = config.validate(settings)
    for p in problems:
        where = f" (line {p.line})" if p.line else ""
        print(f"{p.level}: {p}{where}")
    errors = config.errors(problems)
    if errors:
        print(f"{path}: {len(errors)} error(s), {len(problems) - len(errors)} warning(s)")
        return os.EX_CONFIG
    print(f"{path}: OK" + (f", {len(problems)} warning(s)" if problems else ""))
    return 0
