"""mikotui asterisk-config: the voicemail.conf lines that hook Asterisk to us."""

from __future__ import annotations

import argparse


def register(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("asterisk-config", parents=[common],
                       help="print the voicemail.conf lines that hand voicemail to mikotui",
                       description="Print the [general] lines of voicemail.conf: Asterisk "
                                   "pipes each voicemail email to `mikotui notify "
                                   "voicemail`, with a body mikotui reads reliably.")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import shlex
    import shutil
    import sys
    from pathlib import Path

    from mikotui import asterisk, config

    exe = shutil.which("mikotui") or str(Path(sys.argv[0]).resolve())
    command = [str(Path(exe).resolve()), "--config",
               str(config.resolve_path(args.config).resolve()), "notify", "voicemail"]
    print("; voicemail.conf, [general] section: lines for mikotui")
    print("; Asterisk runs mailcmd with the email on stdin; mikotui queues it durably,")
    print("; then sends it to the employees and the voicemail address.")
    print("[general]")
    print("attach=yes")
    print("charset=UTF-8")  # label the body as what the caller's name really is
    print(f"mailcmd={shlex.join(command)}")
    print(f"emaildateformat={asterisk.EMAIL_DATE_FORMAT}")
    print("emailsubject=New voicemail in mailbox ${VM_MAILBOX}")
    print(f"emailbody={asterisk.EMAILBODY}")
    return 0
