"""Messages: headers, parts, escaping, and the header-injection guard."""

from __future__ import annotations

import email
from dataclasses import replace
from email import policy

from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from mikotui import config, message
from mikotui.message import Attachment


def build(s: config.Settings, kind: str, values: dict, to=("a@example.com",), **kw):
    rendered = message.render(kind, s, values)
    return message.compose(rendered, to, s, **kw)


def reparse(msg) -> email.message.EmailMessage:
    parsed = email.message_from_bytes(msg.as_bytes(), policy=policy.default)
    assert not parsed.defects
    for part in parsed.walk():
        assert not part.defects
    return parsed


def test_parts_and_headers() -> None:
    s = config.defaults()
    s = replace(s, smtp=replace(s.smtp, username="pbx@mycompany.com"))
    parsed = reparse(build(s, "missed_call", {"NOTIFICATION_CALLERID": "101"}))
    assert parsed.get_content_type() == "multipart/alternative"
    assert str(parsed["From"]) == "MikoPBX notification <pbx@mycompany.com>"
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["Message-ID"].endswith("@mycompany.com>")
    assert parsed["Date"]
    plain = parsed.get_body(("plain",)).get_content()
    html = parsed.get_body(("html",)).get_content()
    assert "You have a missed call" in plain
    assert "Please contact the caller" in plain
    assert "<br>" in html and "101" in html


def test_sender_address_and_name_win_over_the_login() -> None:
    s = config.defaults()
    s = replace(s, smtp=replace(s.smtp, username="login@x.ru", sender_address="pbx@x.ru",
                                sender_name="АТС офиса"))
    parsed = reparse(build(s, "missed_call", {}))
    assert parsed["From"].addresses[0].addr_spec == "pbx@x.ru"
    assert parsed["From"].addresses[0].display_name == "АТС офиса"


def test_cyrillic_subject_and_names_survive_bytes_and_back() -> None:
    s = config.defaults("ru")
    s = replace(s, smtp=replace(s.smtp, sender_name="Офисная АТС", username="pbx@x.ru"))
    msg = build(s, "missed_call", {"NOTIFICATION_CALLERID": "Иван Петров"},
                to=("ivan@x.ru",))
    raw = msg.as_bytes()
    assert raw.isascii()  # RFC 2047 headers and a 7-bit clean body
    parsed = reparse(msg)
    assert parsed["Subject"] == "Пропущенный вызов от Иван Петров"
    assert parsed["From"].addresses[0].display_name == "Офисная АТС"
    assert "Иван Петров" in parsed.get_body(("plain",)).get_content()


def test_html_part_escapes_values() -> None:
    s = config.defaults()
    parsed = reparse(build(s, "missed_call", {"NOTIFICATION_NAME_FROM": "<script>x</script>&"}))
    html = parsed.get_body(("html",)).get_content()
    assert "<script>" not in html
    assert "&lt;script&gt;x&lt;/script&gt;&amp;" in html


def test_attachment_beside_the_alternative() -> None:
    s = config.defaults()
    wav = b"RIFF" + bytes(range(256)) * 10
    parsed = reparse(build(s, "voicemail", {},
                           attachments=[Attachment("vm.wav", "audio/x-wav", wav)]))
    assert parsed.get_content_type() == "multipart/mixed"
    att = next(parsed.iter_attachments())
    assert att.get_filename() == "vm.wav"
    assert att.get_content_type() == "audio/x-wav"
    assert att.get_content() == wav


def test_too_big_recording_is_left_out_and_the_text_says_so() -> None:
    att = Attachment("vm.wav", "audio/x-wav", b"x" * (2 * 1024 * 1024))
    kept, note = message.fit_attachment(att, 1, "en")
    assert kept == () and "2.0 MB" in note and "1 MB" in note
    kept, note = message.fit_attachment(att, 10, "ru")
    assert kept == (att,) and note == ""


def test_missing_values_are_blank_not_raw_names() -> None:
    r = message.render("missed_call", config.defaults(), {"NOTIFICATION_CALLERID": "5"})
    assert "NOTIFICATION_" not in r.subject + r.text


# Anything from outside: caller IDs, names, templates, sender name, filenames.
outside = st.text(alphabet=st.characters(codec="utf-8"), max_size=60)
controls = st.text(alphabet=st.sampled_from("\r\n\t\x00\x0b\x0c\x1b\x7f\x85\u2028\u2029: <>\"=?"),
                   max_size=10)
hostile = st.builds(lambda a, b, c: a + b + c, outside, controls, outside)


@hsettings(max_examples=200, deadline=None)
@given(caller=hostile, name=hostile, subject=hostile, sender_name=hostile, filename=hostile)
def test_no_outside_value_puts_a_control_character_into_a_header(
    caller: str, name: str, subject: str, sender_name: str, filename: str
) -> None:
    s = config.defaults()
    s = replace(
        s,
        smtp=replace(s.smtp, sender_name=sender_name, username="pbx@x.ru"),
        missed_call=replace(s.missed_call, subject=subject + " NOTIFICATION_NAME_FROM "
                            "NOTIFICATION_CALLERID"),
    )
    msg = build(s, "missed_call", {"NOTIFICATION_CALLERID": caller,
                                   "NOTIFICATION_NAME_FROM": name},
                attachments=[Attachment(filename or "x", "audio/x-wav", b"1")])
    raw = msg.as_bytes()
    head = raw.split(b"\n\n", 1)[0]
    for line in head.split(b"\n"):
        # Every header line is a header or its folded continuation: no smuggled ones.
        assert line.startswith((b" ", b"\t")) or b":" in line
        assert not any(c < 32 and c != 9 for c in line.rstrip(b"\r"))
    parsed = email.message_from_bytes(raw, policy=policy.default)
    names = [k.lower() for k in parsed]
    assert names.count("subject") == 1 and names.count("to") == 1 and names.count("bcc") == 0
    assert "\n" not in str(parsed["Subject"]) and "\r" not in str(parsed["Subject"])
