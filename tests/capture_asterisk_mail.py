"""Capture what a real Asterisk 22 pipes to `mailcmd`, as fixtures for the fast tests.

    .venv/bin/python tests/capture_asterisk_mail.py      # rewrites tests/fixtures/asterisk22/

Each body style (mikotui's `asterisk-config` lines, MikoPBX's JSON body as
its VoiceMailConf.php writes it, Asterisk's stock text) × each caller-ID case,
plus the three formats; the mailcmd only saves the email. The tests that use
these files need no Asterisk; test_pbx_*.py check the same paths live.
"""

from __future__ import annotations

import base64
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from pbx import Pbx, wait_until

OUT = HERE / "fixtures" / "asterisk22"
FORMATS = ("wav", "wav49", "gsm")
CALLERS = {  # case -> CALLERID(all)
    "name-number": '"Иван Ёлкин" <+7 (926) 111-22-33>',
    "number-employee": "202",
    "number-only": "74951234567",
    "none": "",
}
# MikoPBX's [general] (src/Core/Asterisk/Configs/VoiceMailConf.php), with its
# json_encode'd emailbody; only mailcmd and the format list differ (the format
# list so that one Asterisk attaches each of the three).
MIKOPBX_BODY = ("{%|%VM_NAME%|%:%|%${VM_NAME}%|%,%|%VM_DUR%|%:%|%${VM_DUR}%|%,"
                "%|%VM_MSGNUM%|%:%|%${VM_MSGNUM}%|%,%|%VM_MAILBOX%|%:%|%${VM_MAILBOX}%|%,"
                "%|%VM_CALLERID%|%:%|%${VM_CALLERID}%|%,%|%VM_DATE%|%:%|%${VM_DATE}%|%}")


def mikopbx_general(mailcmd: str) -> str:
    return ("[general]\nformat=wav49|gsm|wav\nattach=yes\nmaxmsg=100\nmaxsecs=120\n"
            "maxgreet=60\nmaxsilence=10\nsilencethreshold=128\nmaxlogins=3\nmoveheard=yes\n"
            "charset=UTF-8\npbxskip=yes\nfromstring=VoiceMail\nemailsubject=\n"
            f"emailbody={MIKOPBX_BODY}\nemaildateformat=%A, %d %B %Y в %H:%M:%S\n"
            f"pagerdateformat=%T %D\nmailcmd={mailcmd}\nserveremail=pbx@pbx.test\n\n"
            "[zonemessages]\nlocal=UTC|'vm-received' q 'digits/at' H 'hours' M 'minutes'\n\n")


EXTENSIONS = """
[leave]
exten => _vm.,1,Set(CALLERID(all)=${BASE64_DECODE(${CALL${EXTEN:2}})})
 same => n,VoiceMail(${BOX${EXTEN:2}},s)
 same => n,Hangup()

[talk]
exten => play,1,Wait(0.3)
 same => n,Playback(custom/msg)
 same => n,Hangup()
"""


def mailboxes(box: str) -> str:
    return "".join(f"\n[{fmt}]\n{box} => 1234,Smith James,smith@pbx.test,,attach=yes|"
                   f"attachfmt={fmt}|tz=local\n" for fmt in FORMATS)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode() or "=="


def main() -> None:
    sys.path.insert(0, str(HERE.parent))
    from mikotui import asterisk

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pbx") as tmp:
        inbox = Path(tmp) / "inbox"
        inbox.mkdir()
        mailcmd = f"/bin/sh -c 'cat > {inbox}/mail-$$.eml'"
        ours = ("[general]\nattach=yes\ncharset=UTF-8\n"
                f"mailcmd={mailcmd}\nemaildateformat={asterisk.EMAIL_DATE_FORMAT}\n"
                "emailsubject=New voicemail in mailbox ${VM_MAILBOX}\n"
                f"emailbody={asterisk.EMAILBODY}\nformat=wav49|gsm|wav\n")
        stock = f"[general]\nattach=yes\nformat=wav49|gsm|wav\nmailcmd={mailcmd}\n"
        styles = {"keyvalue": (ours, "201"), "mikopbx": (mikopbx_general(mailcmd), "admin"),
                  "stock": (stock, "201")}
        n = 0
        for style, (general, box) in styles.items():
            pbx = Pbx.start(Path(tmp) / style, voicemail_conf=general + mailboxes(box),
                            extensions_conf=EXTENSIONS, tone_seconds=1.0)
            try:
                cases = [(c, "wav") for c in CALLERS] + [("name-number", f) for f in FORMATS[1:]]
                for case, fmt in cases:
                    n += 1
                    pbx.cli(f"dialplan set global CALL{n} {b64(CALLERS[case])}")
                    pbx.cli(f"dialplan set global BOX{n} {box}@{fmt}")
                    pbx.originate(f"Local/vm{n}@leave", "play@talk")
                    mail = wait_until(lambda: sorted(inbox.glob("mail-*.eml")), 30, "the mail")
                    wait_until(lambda m=mail[0]: m.stat().st_size and _complete(m), 10, "all")
                    name = f"{style}-{case}-{fmt}.eml"
                    shutil.move(mail[0], OUT / name)
                    print(name, (OUT / name).stat().st_size)
            finally:
                pbx.stop()


def _complete(path: Path) -> bool:
    # app_voicemail ends its mail with the closing boundary and a lone "." line.
    return path.read_bytes().rstrip().endswith(b"--\n.")


if __name__ == "__main__":
    main()
