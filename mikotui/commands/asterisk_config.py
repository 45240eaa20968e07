"""mikotui asterisk-config: the voicemail.conf lines that hook Asterisk to us.

`general_lines` is the one source of these lines: this command prints them
with the paths of this install, config/voicemail.conf.example is the same
text with the paths README uses (a test holds the two together), and the
PBX tests paste this command's output into a real Asterisk.
"""

from __future__ import annotations

import argparse

EXAMPLE_COMMAND = ["/opt/mikotui/.venv/bin/mikotui", "--config", "/etc/mikotui/mikotui.toml",
                   "notify", "voicemail"]


def register(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("asterisk-config", parents=[common],
                       help="print the voicemail.conf lines that hand voicemail to mikotui",
                       description="Print the [general] lines of voicemail.conf: Asterisk "
                                   "pipes each voicemail email to `mikotui notify "
                                   "voicemail`, with a body mikotui reads reliably. They "
                                   "replace the [general] line of voicemail.conf.")
    p.set_defaults(handler=run)


def general_lines(command: list[str]) -> str:
    """The block, header comment included; `command` runs `notify voicemail`."""
    import shlex

    from mikotui import asterisk

    return "\n".join([
        "; voicemail.conf: these lines take the place of the [general] line, so they come",
        "; first in that section. Asterisk keeps the FIRST value of a key given twice",
        "; (22.10 included), so a mailcmd or emailbody further down no longer counts,",
        "; and a second [general] or a [general](+) after the first is ignored for them.",
        "; Asterisk runs mailcmd with the email on stdin; mikotui queues it durably,",
        "; then sends it to the employees and the voicemail address.",
        "[general]",
        "attach=yes",
        "charset=UTF-8",  # label the body as what the caller's name really is
        f"mailcmd={shlex.join(command)}",
        f"emaildateformat={asterisk.EMAIL_DATE_FORMAT}",
        "emailsubject=New voicemail in mailbox ${VM_MAILBOX}",
        f"emailbody={asterisk.EMAILBODY}",
    ]) + "\n"


def run(args: argparse.Namespace) -> int:
    import shutil
    import sys
    from pathlib import Path

    from mikotui import config

    exe = shutil.which("mikotui") or str(Path(sys.argv[0]).resolve())
    command = [str(Path(exe).resolve()), "--config",
               str(config.resolve_path(args.config).resolve()), "notify", "voicemail"]
    sys.stdout.write(general_lines(command))
    return 0
