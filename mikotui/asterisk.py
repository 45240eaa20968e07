"""The email Asterisk pipes to `mailcmd` -> a `VoicemailEvent`.

Three body shapes are read, in this order: the MikoPBX JSON object (every
`"` written as `%|%`), our `KEY=value`-per-line body (what `mikotui
asterisk-config` prints), and Asterisk's stock text with its
`X-Asterisk-CallerID*` headers. The recording is kept byte for byte.
"""

from __future__ import annotations

import binascii
import email
import email.policy
import itertools
import json
import re
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser
from email.utils import parsedate_to_datetime

from mikotui import audio, charsets
from mikotui.message import Attachment, one_line

MAX_INPUT = 50 * 1024 * 1024  # bigger stdin is refused before parsing
_HEADERS = BytesHeaderParser(policy=email.policy.compat32)
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")

# Every value the voicemail template can use, with what Asterisk also sends.
VM_KEYS = ("VM_NAME", "VM_DUR", "VM_MSGNUM", "VM_CONTEXT", "VM_MAILBOX", "VM_CALLERID",
           "VM_CIDNUM", "VM_CIDNAME", "VM_DATE", "VM_CATEGORY", "VM_FLAG")

# The `emailbody` we hand Asterisk: one KEY=value per line (`\n` is how
# voicemail.conf writes a newline). The caller's name goes last, so a name
# holding a line break cannot fake a key read before it.
BODY_KEYS = ("VM_MAILBOX", "VM_MSGNUM", "VM_DUR", "VM_DATE", "VM_CIDNUM", "VM_NAME",
             "VM_CIDNAME", "VM_CALLERID")
EMAILBODY = "\\n".join(f"{k}=${{{k}}}" for k in BODY_KEYS) + "\\n"
EMAIL_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
# What app_voicemail puts in VM_CIDNAME, VM_CIDNUM and VM_CALLERID (and the
# stock body's "from") for a part of the caller ID it does not have.
UNKNOWN_CALLER = "an unknown caller"


class VoicemailParseError(ValueError):
    """Input that is not a voicemail email from Asterisk; says why."""


@dataclass(frozen=True)
class VoicemailEvent:
    values: dict[str, str]  # the VM_* template parameters
    mailbox: str
    recording: Attachment | None
    date: datetime | None
    left_out: int = 0  # bytes of a recording over the size limit, not even decoded

    @property
    def expected_size(self) -> int:
        """The size a WAV recording says it has (0: unknown). More than its
        bytes: the mail was cut short on the way."""
        data = self.recording.data if self.recording else b""
        if data[:4] != b"RIFF" or len(data) < 8:
            return 0
        return int.from_bytes(data[4:8], "little") + 8

    @property
    def caller_num(self) -> str:
        return self.values.get("VM_CALLER_NUM", "")

    @property
    def caller_name(self) -> str:
        return self.values.get("VM_CALLER_NAME", "")


def parse(raw: bytes, max_recording: int | None = None) -> VoicemailEvent:
    """`max_recording`: a recording bigger than this many bytes is left out
    unread (the email module needs ~8x the input's size in memory)."""
    if len(raw) > MAX_INPUT:
        raise VoicemailParseError(f"input of {len(raw)} bytes is over the "
                                  f"{MAX_INPUT // (1024 * 1024)} MB limit")
    left_out, cut = 0, None
    # The email module needs ~8x a recording's size: a big one (or one over
    # the limit) is taken out of the mail before it is parsed.
    if len(raw) > _CUT_OVER or max_recording is not None and len(raw) > max_recording:
        raw, left_out, cut = _cut_recordings(raw, max_recording)
    msg = _read_email(raw)
    text = _body_text(msg)
    values = (_json_values(text) or _key_values(text) or _stock_values(msg, text))
    if not values:
        if not any(_is_recording(part) for part in msg.iter_attachments()):
            raise VoicemailParseError("no voicemail values in the body (neither the MikoPBX "
                                      "JSON, KEY=value lines, nor Asterisk's default text)")
        # An `emailbody` of someone's own wording, but a recording: it still
        # goes out, with what the headers tell (date, mailbox in the subject).
        values = _subject_values(msg)
    date = _date(msg)
    values = _complete(values, msg, date)
    recording = None if left_out else _recording(msg, values, date, cut)
    return VoicemailEvent(values, values.get("VM_MAILBOX", ""), recording, date, left_out)


_CUT_OVER = 1 << 20  # inputs up to this size go through the email module whole


def _cut_recordings(raw: bytes, limit: int | None) -> tuple[bytes, int, bytes | None]:
    """`raw` with the base64 body of every recording part emptied, the
    size of one over `limit` bytes (decoded; left out unread), and the
    decoded bytes of the first one within it: decoded straight from `raw`,
    never through the email module. Asterisk's mail is one flat
    multipart/mixed, so its top-level parts are all there is to look at."""
    head_end = _BLANK_LINE.search(raw)
    if head_end is None:
        return raw, 0, None
    boundary = _HEADERS.parsebytes(raw[:head_end.end()]).get_boundary()
    if not boundary:
        return raw, 0, None
    delimiter = re.compile(rb"^--" + re.escape(boundary.encode("ascii", "replace")),
                           re.MULTILINE)
    marks = [m.start() for m in delimiter.finditer(raw)]
    out, left_out, last, cut = [], 0, 0, None
    for start, end in itertools.pairwise(marks):  # indexes into raw: no copy of a part
        sep = _BLANK_LINE.search(raw, start, end)
        if sep is None:
            continue
        headers = _HEADERS.parsebytes(raw[raw.index(b"\n", start) + 1:sep.end()])
        encoding = str(headers["Content-Transfer-Encoding"] or "").strip().lower()
        if not _is_recording(headers) or encoding != "base64":
            continue
        body = sep.end()
        chars = end - body - raw.count(b"\n", body, end) - raw.count(b"\r", body, end)
        size = chars * 3 // 4 - raw.count(b"=", max(body, end - 8), end)  # as decoded
        if limit is not None and size > limit:
            left_out = max(left_out, size)
        elif cut is None:
            cut = _base64_decoded(memoryview(raw)[body:end])
        out += [raw[last:body], b"\n"]
        last = end
    return b"".join([*out, raw[last:]]), left_out, cut


def _base64_decoded(text) -> bytes:
    """Base64 with line breaks; cut off mid-group (a mail truncated on the
    way), decoded up to the last whole group."""
    try:
        return binascii.a2b_base64(text)
    except binascii.Error:
        clean = re.sub(rb"[^A-Za-z0-9+/=]", b"", bytes(text)).rstrip(b"=")
        try:
            return binascii.a2b_base64(clean[:len(clean) // 4 * 4])
        except binascii.Error:
            return b""


# --- the email -----------------------------------------------------------------

def _read_email(raw: bytes) -> EmailMessage:
    if b"\x00" in raw[:65536]:
        raise VoicemailParseError("binary data, not an email")
    # Asterisk ends the mail with a lone "." line, as if talking SMTP.
    raw = re.sub(rb"(?:\r?\n)\.\r?\n?\Z", b"\n", raw)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    if not isinstance(msg, EmailMessage) or msg.defects and not msg.keys():
        raise VoicemailParseError("not an email: no headers")
    # Presence only: parsing a damaged From: would raise inside the email package.
    if not any(name in msg for name in ("From", "Date", "X-Asterisk-CallerID")):
        raise VoicemailParseError("not an email from Asterisk: no Date, From or "
                                  "X-Asterisk-CallerID header")
    return msg


def _body_text(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    if part is None:
        return ""
    return decode_text(part.get_payload(decode=True) or b"", part.get_content_charset())


def decode_text(data: bytes, declared: str | None) -> str:
    """Asterisk labels the body with voicemail.conf's `charset` (stock:
    ISO-8859-1) whatever the caller's name really is: UTF-8 from the
    channel, or Windows-1251 / KOI8-R from an old Russian setup."""
    return charsets.decode(data, declared)


def _header(msg: EmailMessage, name: str) -> str:
    """A header Asterisk wrote as text: 8-bit bytes (a caller name as the
    channel gave it) read as the body's are; RFC 2047 encoded words decoded
    (a SIP display name can arrive so). Never trusted further: `one_line`
    cleans whatever it decodes to."""
    raw = next((v for k, v in msg.raw_items() if k.lower() == name.lower()), None)
    if raw is None:
        return ""
    if any("\udc80" <= c <= "\udcff" for c in raw):  # the parser's stand-ins for 8-bit bytes
        return charsets.decode(raw.encode("ascii", "surrogateescape"),
                               msg.get_content_charset())
    try:
        return str(msg[name])
    except (ValueError, LookupError, TypeError, IndexError, AttributeError):
        return raw  # the email package trips over some damaged values: keep the text


def _date(msg: EmailMessage) -> datetime | None:
    try:
        return parsedate_to_datetime(str(msg["Date"])) if msg["Date"] else None
    except (TypeError, ValueError):
        return None


# --- the three body shapes ---------------------------------------------------------

_JSON_QUOTE = "%|%"


def _json_values(text: str) -> dict[str, str]:
    """MikoPBX: {%|%VM_NAME%|%:%|%user%|%,...%|%}. A value may itself hold a
    real `"` (a quoted caller name), so split on the markers rather than
    trusting json.loads; try json.loads first for a clean object."""
    body = text.strip()
    if not (body.startswith("{" + _JSON_QUOTE) and body.endswith(_JSON_QUOTE + "}")):
        return {}
    try:
        data = json.loads(body.replace(_JSON_QUOTE, '"'))
        if isinstance(data, dict):
            return {str(k): str(v) for k, v in data.items() if str(k).startswith("VM_")}
    except ValueError:
        pass
    inner = body[len("{" + _JSON_QUOTE):-len(_JSON_QUOTE + "}")]
    out: dict[str, str] = {}
    for pair in inner.split(f"{_JSON_QUOTE},{_JSON_QUOTE}"):
        key, sep, value = pair.partition(f"{_JSON_QUOTE}:{_JSON_QUOTE}")
        if sep and key.startswith("VM_"):
            out.setdefault(key, value)
    return out


_KEY_LINE = re.compile(r"^(VM_[A-Z_]+)=(.*)$")


def _key_values(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = _KEY_LINE.match(line.strip("\r"))
        if m and m.group(1) in VM_KEYS:
            out.setdefault(m.group(1), m.group(2))
    return out if len(out) >= 2 else {}


_STOCK = re.compile(
    r"Dear (?P<name>.*?):\s+Just wanted to let you know you were just left a "
    r"(?P<dur>\S+) long message \(number (?P<msgnum>\d+)\)\s+in mailbox (?P<mailbox>\S+) "
    r"from (?P<from>.*?), on (?P<date>.*?) so you might", re.DOTALL)


def _stock_values(msg: EmailMessage, text: str) -> dict[str, str]:
    m = _STOCK.search(text)
    num = _header(msg, "X-Asterisk-CallerID").strip()
    name = _header(msg, "X-Asterisk-CallerIDName").strip()
    if not m and not num:
        return {}
    out: dict[str, str] = {}
    if m:
        out.update(VM_NAME=m.group("name"), VM_DUR=m.group("dur"),
                   VM_MSGNUM=m.group("msgnum"), VM_MAILBOX=m.group("mailbox"),
                   VM_DATE=" ".join(m.group("date").split()))
        if not name and not _unknown(m.group("from")):
            # The text's "from" is VM_CALLERID: the name when no header has it.
            from_name, from_num = split_callerid(m.group("from"))
            if from_num in ("", num):
                name, num = from_name, num or from_num
    if num or name:
        out["VM_CALLERID"] = f'"{name}" <{num}>' if name and num else (num or name)
    if num:
        out["VM_CIDNUM"] = num
    if name:
        out["VM_CIDNAME"] = name
    if "VM_MAILBOX" not in out:
        out.update(_subject_values(msg))
    return out


def _subject_values(msg: EmailMessage) -> dict[str, str]:
    """Asterisk's stock subject names the mailbox: "New message 3 in mailbox 201"."""
    sm = re.search(r"mailbox (\S+)", _header(msg, "Subject"))
    return {"VM_MAILBOX": sm.group(1)} if sm else {}


# --- values --------------------------------------------------------------------

def _blank_stripped(text: str) -> str:
    # ast_strip: Asterisk's "blank" is any character up to and including space.
    return text.strip("".join(map(chr, range(33))))


def _quotes_stripped(text: str) -> str:
    """ast_strip_quoted(s, "\"", "\""): one pair of surrounding quotes off."""
    text = _blank_stripped(text)
    return text[1:-1] if text[:1] == '"' and text[-1:] == '"' else text


def _unescaped(text: str) -> str:
    """ast_unescape_quoted: a backslash keeps the character after it."""
    return re.sub(r"\\(.)|\\$", lambda m: m.group(1) or "", text, flags=re.DOTALL)


def split_callerid(callerid: str) -> tuple[str, str]:
    """`"Name" <num>` / `Name <num>` / `num` -> (name, number), the way
    Asterisk's own ast_callerid_parse (main/callerid.c) splits it: the number
    is inside the LAST `<` (and the last `>` after it), whatever quotes or
    brackets the name holds; without brackets, a phone number (after dropping
    `( )-` and non-final dots, as ast_shrink_phone_number does) is a number,
    anything else a name. Unlike Asterisk, nothing is cut at 255 characters."""
    instr = _quotes_stripped(one_line(callerid))
    quoted = instr != _blank_stripped(one_line(callerid))
    if "<" in instr:
        name, _, location = instr.rpartition("<")
        location = location.rpartition(">")[0] if ">" in location else location
        return one_line(_unescaped(_quotes_stripped(name))), one_line(location)
    shrunk = _shrunk_number(instr)
    if not quoted and shrunk and re.fullmatch(r"[0-9*#+]+", shrunk):
        return "", shrunk
    return one_line(_unescaped(_quotes_stripped(instr))), ""


def _shrunk_number(text: str) -> str:
    """ast_shrink_phone_number: `(`, `)`, spaces, a `-` outside [brackets]
    and a `.` that is not the last character are dropped."""
    out, bracketed = [], 0
    for i, c in enumerate(text):
        if c == "[":
            bracketed += 1
        elif c == "]":
            bracketed -= 1
        elif c == "-" and not bracketed or c == "." and i < len(text) - 1 or c in "( )":
            continue
        out.append(c)
    return "".join(out)


def _unknown(value: str) -> bool:
    return value.strip().lower() == UNKNOWN_CALLER


def _complete(values: dict[str, str], msg: EmailMessage, date: datetime | None) -> dict[str, str]:
    out = {k: one_line(str(v)) for k, v in values.items()}
    for key in ("VM_CIDNAME", "VM_CIDNUM", "VM_CALLERID"):  # Asterisk's text, not a name
        if _unknown(out.get(key, "")):
            out[key] = ""
    name, num = split_callerid(out.get("VM_CALLERID", ""))
    num = num or out.get("VM_CIDNUM", "")
    name = name or out.get("VM_CIDNAME", "")
    out["VM_CALLER_NAME"] = name
    out["VM_CALLER_NUM"] = num
    if not out.get("VM_CALLERID") and (name or num):
        out["VM_CALLERID"] = f'"{name}" <{num}>' if name and num else (num or name)
    if not out.get("VM_DATE") and date:
        out["VM_DATE"] = date.strftime(EMAIL_DATE_FORMAT)
    return out


# --- the recording --------------------------------------------------------------

def _recording(msg: EmailMessage, values: dict[str, str], date: datetime | None,
               cut: bytes | None = None) -> Attachment | None:
    """`cut`: the recording's bytes when `_cut_recordings` took them out."""
    for part in msg.iter_attachments():
        if _is_recording(part):
            data = _decoded(part) if cut is None else cut
            kind = audio.sniff(data[:256], str(part.get_filename() or ""),
                               part.get_content_type())
            return Attachment(recording_name(values, date, kind.extension), kind.content_type,
                              data)
    return None


def _decoded(part: Message) -> bytes:
    """The part's bytes. Base64 cut off mid-group (a mail truncated on the
    way) is decoded up to the last whole group: the email module would hand
    back the base64 text itself, which no player can open."""
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if encoding != "base64":
        return part.get_payload(decode=True) or b""
    text = re.sub(rb"[^A-Za-z0-9+/=]", b"", str(part.get_payload()).encode("ascii", "ignore"))
    if len(text) % 4:
        text = text.rstrip(b"=")
        text = text[:len(text) // 4 * 4]
    try:
        return binascii.a2b_base64(text)
    except binascii.Error:  # padding in the middle: let the email module try
        return part.get_payload(decode=True) or b""


def _is_recording(part: Message) -> bool:
    filename = str(part.get_filename() or "")
    return (part.get_content_type().startswith("audio/")
            or filename.lower().endswith((".wav", ".gsm")))


def recording_name(values: dict[str, str], date: datetime | None,
                   extension: str = ".wav") -> str:
    """voicemail-<date>-<caller><extension>; Asterisk's `.WAV` (GSM in a WAV
    box) gets the same lower-case name, its bytes untouched."""
    day = date.strftime("%Y-%m-%d") if date else "unknown-date"
    caller = values.get("VM_CALLER_NUM") or values.get("VM_CALLER_NAME") or "unknown"
    caller = re.sub(r"[^\w+.-]+", "_", caller, flags=re.ASCII).strip("_.") or "unknown"
    return f"voicemail-{day}-{caller[:40]}{extension}"
