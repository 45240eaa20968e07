"""Reading the email Asterisk pipes to mailcmd (voicemail.conf's mailcmd)."""

from __future__ import annotations

import re

import pytest
from conftest import FIXTURES, examples
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mikotui import asterisk

WAV = (FIXTURES / "voicemail-1s.wav").read_bytes()


def fixture(name: str) -> bytes:
    return (FIXTURES / f"asterisk-voicemail-{name}.eml").read_bytes()


def test_stock_asterisk_body_and_headers():
    ev = asterisk.parse(fixture("default"))
    v = ev.values
    assert (v["VM_CALLER_NAME"], v["VM_CALLER_NUM"]) == ("John Doe", "74951234567")
    assert v["VM_CALLERID"] == '"John Doe" <74951234567>'
    assert (v["VM_DUR"], v["VM_MSGNUM"], v["VM_NAME"]) == ("0:12", "3", "James Smith")
    assert ev.mailbox == "201"
    assert ev.recording.data == WAV
    assert ev.recording.filename == "voicemail-2026-11-26-74951234567.wav"


def test_mikopbx_json_body_with_quotes_inside_a_value():
    ev = asterisk.parse(fixture("mikopbx-json"))
    v = ev.values
    assert (v["VM_CALLER_NAME"], v["VM_CALLER_NUM"]) == ("Иван Петров", "79261234567")
    assert v["VM_DATE"] == "Thursday, 26 November 2026 в 14:03:12"
    assert (v["VM_DUR"], ev.mailbox) == ("0:07", "admin")
    assert ev.recording.data == WAV


def test_no_attachment_and_unknown_caller():
    ev = asterisk.parse(fixture("noattach"))
    assert ev.recording is None
    assert ev.values["VM_CALLER_NUM"] == "" and ev.values["VM_CALLER_NAME"] == ""
    assert ev.mailbox == "202" and ev.values["VM_DUR"] == "0:03"


def test_gsm_wav_keeps_its_bytes_under_a_lower_case_name():
    raw = fixture("default").replace(b'name="msg0002.wav"', b'name="msg0002.WAV"')
    raw = raw.replace(b"audio/x-wav", b"audio/x-WAV").replace(
        b'filename="msg0002.wav"', b'filename="msg0002.WAV"')
    ev = asterisk.parse(raw)
    assert ev.recording.data == WAV
    assert ev.recording.filename.endswith(".wav") and ev.recording.content_type == "audio/x-wav"


def test_crlf_line_endings_read_the_same():
    a = asterisk.parse(fixture("default"))
    b = asterisk.parse(fixture("default").replace(b"\n", b"\r\n"))
    assert a.values == b.values and a.recording.data == b.recording.data


@pytest.mark.parametrize("raw", [b"", b"\x00\x01\x02", b"hello", b"Subject: x\n\nplain words\n"])
def test_not_a_voicemail(raw: bytes):
    with pytest.raises(asterisk.VoicemailParseError):
        asterisk.parse(raw)


@pytest.mark.parametrize("callerid, expected", [
    ('"Alexey Portnov" <101>', ("Alexey Portnov", "101")),
    ("Alexey <101>", ("Alexey", "101")),
    ("<101>", ("", "101")),
    ("+7 (926) 123-45-67", ("", "+79261234567")),  # shrunk, as Asterisk does
    ('"A \\"B\\" C" <5>', ('A "B" C', "5")),
    ("Unknown", ("Unknown", "")),
    ('"<"" <0>', ('<"', "0")),  # the number is in the last <...>
    ('"x <1>" <2>', ("x <1>", "2")),
    ('"Anna" <203', ("Anna", "203")),  # a missing > is tolerated
    ('"201"', ("201", "")),  # quoted: a name, even when it looks like a number
    ("", ("", "")),
])
def test_split_callerid(callerid: str, expected: tuple[str, str]):
    assert asterisk.split_callerid(callerid) == expected


def _key_value_mail(name: str, num: str) -> bytes:
    body = (f"VM_MAILBOX=201\nVM_DUR=0:05\nVM_CIDNUM={num}\n"
            f"VM_CIDNAME={name}\nVM_CALLERID=\"{name}\" <{num}>\n")
    return ("Date: Fri, 27 Nov 2026 10:00:00 +0000\nFrom: asterisk@pbx\n"
            "Content-Type: text/plain; charset=UTF-8\n\n" + body).encode()


@settings(max_examples=examples(200), deadline=None)
@given(st.text(max_size=60), st.from_regex(r"\+?[0-9]{1,15}", fullmatch=True))
@example('<"', "0")  # once split as ('', '"" <0'): the number is in the LAST <...>
@example('a" <1>', "2")
def test_any_caller_name_gives_one_line_values(name: str, num: str):
    """Whatever a caller ID holds, no value carries a line break or control
    character on toward a header, and the mailbox is never overridden."""
    try:
        ev = asterisk.parse(_key_value_mail(name, num))
    except asterisk.VoicemailParseError:
        return
    for value in ev.values.values():
        assert not re.search(r"[\x00-\x1f\x7f\u2028\u2029]", value)
    assert ev.mailbox == "201"
    assert ev.values["VM_CALLER_NUM"] in (num, "")


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_parse_or_fail_cleanly(raw: bytes):
    try:
        asterisk.parse(raw)
    except asterisk.VoicemailParseError:
        pass


@pytest.mark.parametrize("crlf", [False, True])
def test_a_recording_over_the_limit_is_left_out_unread_with_its_size(crlf):
    raw = fixture("default")
    if crlf:
        raw = raw.replace(b"\n", b"\r\n")
    kept = asterisk.parse(raw, max_recording=len(WAV))  # exactly at the limit: attached
    assert kept.recording.data == WAV and kept.left_out == 0
    over = asterisk.parse(raw, max_recording=len(WAV) - 1)
    assert over.recording is None and over.left_out == len(WAV)
    assert over.values == kept.values  # the rest of the mail read the same


@pytest.mark.parametrize("cut", [5000, 5001, 5002, 5003])  # every place in a base64 group
def test_a_recording_cut_short_is_decoded_as_far_as_it_goes(cut):
    raw = fixture("default")
    start = raw.index(b"UklGR")
    raw = raw[:start + cut] + b"\n\n------voicemail_3201515146930886--\n"
    ev = asterisk.parse(raw)
    data = ev.recording.data
    assert data.startswith(b"RIFF") and WAV.startswith(data) and len(data) > 3000
    assert ev.expected_size == len(WAV)


@pytest.mark.parametrize("crlf", [False, True])
@pytest.mark.parametrize("cut", [None, 5000, 5001, 5002, 5003])
def test_a_big_mail_read_from_its_file_decodes_the_recording_into_the_spill(
        tmp_path, crlf, cut):
    """A mail past 1 MB is read a line at a time: its recording is decoded
    into `spill` as it is read (also when the mail ends inside it, cut short
    on the way), the same bytes the whole mail gives in memory."""
    raw = fixture("default")
    start = raw.index(b"UklGR")
    if cut is not None:
        raw = raw[:start + cut]  # no closing boundary: the part runs to the end
    # Past _CUT_OVER: a header line longer than the pieces a line is read in.
    raw = raw.replace(b"\nFrom:", b"\nX-Padding: " + b"p" * (1 << 20) + b"\nFrom:", 1)
    if crlf:
        raw = raw.replace(b"\n", b"\r\n")
    path, spill = tmp_path / "raw.eml", tmp_path / "part-recording"
    path.write_bytes(raw)
    with path.open("rb") as f:
        ev = asterisk.parse(f, spill=spill)
    assert ev.recording.path == spill and ev.recording.data == b""
    data = spill.read_bytes()
    assert ev.recording.filename == "voicemail-2026-11-26-74951234567.wav"
    if cut is None:
        assert data == WAV
    else:
        assert data.startswith(b"RIFF") and WAV.startswith(data) and len(data) > 3000
        assert ev.expected_size == len(WAV) > ev.recording.size
    assert ev.values == asterisk.parse(fixture("default")).values
