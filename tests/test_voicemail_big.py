"""A long voicemail (over 1 MB: its recording is cut out of the mail before
the email module parses it, and base64'd outside it when the mail is
composed) arrives byte for byte through the real command and a real SMTP
server, in a mail with no defects."""

from __future__ import annotations

import base64
import email
import email.policy
import io
import re
import wave
from dataclasses import replace
from pathlib import Path

import pytest
from notify_support import VOICEMAIL, Server, settings_for, write

CAPTURED = Path(__file__).resolve().parent / "fixtures" / "asterisk22" / \
    "keyvalue-name-number-wav.eml"


def long_wav(seconds: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes(range(256)) * (seconds * 16000 // 256))
    return buf.getvalue()


def with_recording(raw: bytes, recording: bytes, line: int) -> bytes:
    """The captured mail with its recording's base64 swapped for `recording`
    (`line` characters a line: Asterisk writes 72)."""
    text = base64.b64encode(recording)
    body = b"\n".join(text[i:i + line] for i in range(0, len(text), line))
    return re.sub(rb"(filename=\"msg0000.wav\"\n\n)[A-Za-z0-9+/=\n]+\n\n",
                  lambda m: m.group(1) + body + b"\n\n", raw, count=1)


@pytest.mark.parametrize("line", [72, 76])
def test_a_long_recording_goes_out_byte_for_byte(cli, tmp_path, line):
    recording = long_wav(100)  # 1.6 MB
    raw = with_recording(CAPTURED.read_bytes(), recording, line)
    with Server() as server:
        s = settings_for(tmp_path, server.port)
        conf = write(tmp_path, replace(s, voicemail=replace(s.voicemail,
                                                            attachment_format="original")))
        r = cli("--config", conf, "notify", "voicemail", input=raw)
        assert r.returncode == 0, r.stderr_text
        [got] = server.received
    msg = email.message_from_bytes(got.data, policy=email.policy.default)
    assert set(got.rcpt_tos) == {"smith@pbx.test", VOICEMAIL}
    assert all(not part.defects for part in msg.walk())
    assert str(msg["Subject"]) == "New Voicemail Message from Иван Ёлкин +79261112233"
    [part] = msg.iter_attachments()
    assert part.get_content() == recording
    assert part.get_filename() == "voicemail-2026-12-02-+79261112233.wav"
    assert max(len(x) for x in got.data.splitlines()) <= 998


@pytest.mark.parametrize("attachment_format", ["original", "mp3"])
def test_a_long_recording_is_readied_in_its_entry_and_sent_from_there(
        cli, tmp_path, attachment_format):
    """Queued, the entry holds the message and its metadata only (the
    recording decoded and converted in scratch files of the entry, gone
    once message.eml is written); `deliver` sends it: the original byte
    for byte, the MP3 the whole length of the call."""
    import soundfile

    recording = long_wav(400)  # 6.4 MB, past the pieces everything is read in
    raw = with_recording(CAPTURED.read_bytes(), recording, 72)
    with Server() as server:
        s = settings_for(tmp_path, server.port)
        conf = write(tmp_path, replace(s, voicemail=replace(
            s.voicemail, attachment_format=attachment_format)))
        r = cli("--config", conf, "notify", "voicemail", "--queue-only", input=raw)
        assert r.returncode == 0, r.stderr_text
        [entry] = (tmp_path / "spool" / "queue").iterdir()
        assert sorted(p.name for p in entry.iterdir()) == ["message.eml", "meta.json"]
        r = cli("--config", conf, "deliver")
        assert r.returncode == 0, r.stderr_text
        [got] = server.received
    msg = email.message_from_bytes(got.data, policy=email.policy.default)
    assert all(not part.defects for part in msg.walk())
    [part] = msg.iter_attachments()
    if attachment_format == "original":
        assert part.get_content() == recording
    else:
        assert part.get_content_type() == "audio/mpeg"
        info = soundfile.info(io.BytesIO(part.get_content()))
        assert abs(info.frames / info.samplerate - 400) < 1
    assert max(len(x) for x in got.data.splitlines()) <= 998
    assert list((tmp_path / "spool" / "queue").iterdir()) == []
