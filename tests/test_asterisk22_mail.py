"""What a real Asterisk 22.10.1 sends, read back: the mails in
fixtures/asterisk22/ were captured from app_voicemail's `mailcmd` by
capture_asterisk_mail.py (one per body style × caller-ID case, and the three
formats). test_pbx_voicemail.py runs the same paths against a live Asterisk."""

from __future__ import annotations

import email
import email.policy
import shutil
import subprocess
from dataclasses import replace
from email.message import EmailMessage
from pathlib import Path

import pytest

from mikotui import asterisk, audio, config, notify

HERE = Path(__file__).resolve().parent / "fixtures" / "asterisk22"
STYLES = ("keyvalue", "mikopbx", "stock")
# case -> (the caller's name, number, VM_CALLERID, subject's tail, file name's caller)
CASES = {
    "name-number": ("Иван Ёлкин", "+79261112233", '"Иван Ёлкин" <+79261112233>',
                    "Иван Ёлкин +79261112233", "+79261112233"),
    "number-employee": ("Brown Brandon", "202", '"Brown Brandon" <202>', "Brown Brandon 202",
                        "202"),
    "number-only": ("", "74951234567", "74951234567", "74951234567", "74951234567"),
    "none": ("an unknown caller", "", "an unknown caller", "an unknown caller", "unknown"),
}


def captured(style: str, case: str = "name-number", fmt: str = "wav") -> bytes:
    return (HERE / f"{style}-{case}-{fmt}.eml").read_bytes()


def sent(settings: config.Settings, raw: bytes, lang: str = "en") -> EmailMessage:
    prepared = notify.voicemail(settings, asterisk.parse(raw), (), lang)
    return email.message_from_bytes(prepared.data, policy=email.policy.default)  # type: ignore[return-value]


def text_of(msg: EmailMessage) -> str:
    return msg.get_body(preferencelist=("plain",)).get_content()


def original(settings: config.Settings, fmt: str = "original") -> config.Settings:
    return replace(settings, voicemail=replace(settings.voicemail, attachment_format=fmt))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("style", STYLES)
def test_the_caller_reads_the_same_in_every_body_style(settings, style: str, case: str):
    _, _, callerid, subject, file_caller = CASES[case]
    ev = asterisk.parse(captured(style, case))
    assert "unknown caller" not in " ".join(ev.values.get(k, "") for k in (
        "VM_CALLER_NAME", "VM_CALLER_NUM", "VM_CALLERID", "VM_CIDNAME", "VM_CIDNUM"))
    msg = sent(original(settings), captured(style, case))
    assert str(msg["Subject"]) == f"New Voicemail Message from {subject}"
    assert f"From: {callerid}\n" in text_of(msg)
    (part,) = msg.iter_attachments()
    assert part.get_filename() == f"voicemail-2026-12-02-{file_caller}.wav"


def test_no_caller_id_in_russian_says_so_once(settings):
    for style in STYLES:
        msg = sent(original(config.with_language(settings, "ru")), captured(style, "none"),
                   "ru")
        assert str(msg["Subject"]).count("неизвестного абонента") == 1
        assert "unknown" not in str(msg["Subject"])


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("fmt, name, ctype, riff", [
    ("wav", ".wav", "audio/x-wav", True),
    ("wav49", ".wav", "audio/x-wav", True),
    ("gsm", ".gsm", "audio/x-gsm", False),  # raw GSM 6.10: no header at all
])
def test_the_original_recording_is_named_and_typed_for_what_it_is(
        settings, style: str, fmt: str, name: str, ctype: str, riff: bool):
    raw = captured(style, "name-number", fmt)
    asterisk_part = next(email.message_from_bytes(
        raw, policy=email.policy.default).iter_attachments())
    (part,) = sent(original(settings), raw).iter_attachments()
    assert part.get_filename() == f"voicemail-2026-12-02-+79261112233{name}"
    assert part.get_content_type() == ctype
    assert part.get_content() == asterisk_part.get_content()  # byte for byte
    data = part.get_content()
    # GSM 6.10 frames are 33 bytes, each starting with the magic nibble 0xD.
    assert data[:4] == b"RIFF" if riff else (len(data) % 33, data[0] >> 4) == (0, 0xD)


def decoded_seconds(tmp_path: Path, data: bytes, suffix: str) -> float:
    """The length a second decoder (sox) reads, independent of libsndfile."""
    path = tmp_path / f"x{suffix}"
    path.write_bytes(data)
    r = subprocess.run(["sox", str(path), "-n", "stat"], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0, r.stderr
    return float(next(line.split(":")[1] for line in r.stderr.splitlines()
                      if line.startswith("Length")))


needs_sox = pytest.mark.skipif(shutil.which("sox") is None,
                               reason="no sox here (.ci/run installs it)")


@needs_sox
@pytest.mark.parametrize("fmt", ["wav", "wav49", "gsm"])
@pytest.mark.parametrize("target, suffix, ctype", [("mp3", ".mp3", "audio/mpeg"),
                                                   ("wav", ".wav", "audio/x-wav")])
def test_every_format_goes_out_as_a_file_any_player_opens(
        settings, tmp_path, fmt: str, target: str, suffix: str, ctype: str):
    (part,) = sent(original(settings, target),
                   captured("keyvalue", "name-number", fmt)).iter_attachments()
    assert part.get_filename() == f"voicemail-2026-12-02-+79261112233{suffix}"
    assert part.get_content_type() == ctype
    data = part.get_content()
    if target == "mp3":
        # MPEG-2 (not 2.5) Layer III at 16 kHz: the frame header says so.
        assert data[0] == 0xFF and data[1] & 0xF8 == 0xF0 and data[1] & 0x06 == 0x02
        assert (data[2] >> 2) & 3 == 2  # 16 kHz in MPEG-2
    else:
        assert data[:4] == b"RIFF" and data[20:22] == b"\x01\x00"  # PCM
    assert 0.9 < decoded_seconds(tmp_path, data, suffix) < 1.2


def test_mp3_is_the_default_format():
    assert config.defaults().voicemail.attachment_format == "mp3" == audio.DEFAULT_FORMAT


def test_a_recording_that_cannot_be_decoded_goes_as_it_came_with_a_line_saying_so(settings):
    raw = captured("keyvalue", "name-number", "wav")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    garbage = b"RIFF\x10\x00\x00\x00WAVEfmt " + b"\x07" * 200
    att = next(msg.iter_attachments())
    att.set_content(garbage, maintype="audio", subtype="x-wav", filename="msg0000.wav")
    out = sent(settings, msg.as_bytes())
    (part,) = out.iter_attachments()
    assert part.get_content() == garbage and part.get_filename().endswith(".wav")
    assert "could not be converted to MP3" in text_of(out)
