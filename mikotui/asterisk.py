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
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import BinaryIO

from mikotui import audio, charsets
from mikotui.durable import open_private
from mikotui.message import Attachment, one_line

MAX_INPUT = 50 * 1024 * 1024  # bigger stdin is refused before parsing
_HEADERS = BytesHeaderParser(policy=email.policy.compat32)

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
        data = self.recording.head(8) if self.recording else b""
        if data[:4] != b"RIFF" or len(data) < 8:
            return 0
        return int.from_bytes(data[4:8], "little") + 8

    @property
    def caller_num(self) -> str:
        return self.values.get("VM_CALLER_NUM", "")

    @property
    def caller_name(self) -> str:
        return self.values.get("VM_CALLER_NAME", "")


def parse(raw: bytes | BinaryIO, max_recording: int | None = None, *,
          spill: Path | None = None) -> VoicemailEvent:
    """`raw`: the mail, in memory or an open file (a spool entry's raw.eml,
    read a line at a time). `max_recording`: a recording bigger than this
    many bytes is left out unread (the email module needs ~8x the input's
    size in memory). `spill`: the file a recording cut out of a big mail is
    decoded into (kept in memory without one)."""
    stream = io.BytesIO(raw) if isinstance(raw, (bytes, bytearray)) else raw
    size = stream.seek(0, io.SEEK_END)
    stream.seek(0)
    if size > MAX_INPUT:
        raise VoicemailParseError(f"input of {size} bytes is over the "
                                  f"{MAX_INPUT // (1024 * 1024)} MB limit")
    left_out, cut = 0, None
    # The email module needs ~8x a recording's size: a big one (or one over
    # the limit) is taken out of the mail before it is parsed.
    if size > _CUT_OVER or max_recording is not None and size > max_recording:
        skeleton, left_out, cut = _cut_recordings(stream, max_recording, spill)
    else:
        skeleton = stream.read()
    msg = _read_email(skeleton)
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
_PIECE = 1 << 16  # a line longer than this is read in pieces of it, never whole
_BLANK = (b"\n", b"\r\n")


def _lines(stream: BinaryIO) -> Iterator[tuple[bool, bytes]]:
    """(whether it starts a line, the line or a piece of a long one)."""
    starts = True
    while piece := stream.readline(_PIECE):
        yield starts, piece
        starts = piece.endswith(b"\n")


def _cut_recordings(stream: BinaryIO, limit: int | None,
                    spill: Path | None) -> tuple[bytes, int, bytes | Path | None]:
    """The mail with the base64 body of every recording part emptied, the
    size of one over `limit` bytes (decoded; left out), and the first one
    within it: decoded as it is read, a line at a time, into `spill` (its
    path is returned) or memory, never through the email module. Asterisk's
    mail is one flat multipart/mixed, so its top-level parts are all there
    is to look at. A part the mail ends in (cut short on the way) is cut too."""
    lines = _lines(stream)
    out: list[bytes] = []
    for starts, piece in lines:
        out.append(piece)
        if starts and piece in _BLANK and len(out) > 1:
            break
    else:
        return b"".join(out), 0, None
    boundary = _HEADERS.parsebytes(b"".join(out)).get_boundary()
    if not boundary:
        return b"".join([*out, stream.read()]), 0, None
    delimiter = b"--" + boundary.encode("ascii", "replace")
    left_out, cut, sink = 0, None, None
    part: _Base64Sink | None = None  # the recording part being cut
    headers: list[bytes] | None = None  # a part's headers being read
    try:
        for starts, piece in lines:
            if starts and piece.startswith(delimiter):
                if part is not None:
                    left_out, cut = _settled(part, limit, left_out, cut, spill)
                    out.append(b"\n")
                    part = None
                out += headers or ()  # a part without a blank line: kept as it is
                out.append(piece)
                headers = []
            elif part is not None:
                part.feed(piece)
            elif headers is not None:
                headers.append(piece)
                if starts and piece in _BLANK:
                    out += headers
                    part_headers = _HEADERS.parsebytes(b"".join(headers))
                    headers = None
                    encoding = str(part_headers["Content-Transfer-Encoding"] or "")
                    if _is_recording(part_headers) and encoding.strip().lower() == "base64":
                        if cut is None and sink is None:
                            sink = io.BytesIO() if spill is None else open_private(spill, "w+b")
                        part = _Base64Sink(sink if cut is None else None, limit)
            else:
                out.append(piece)
        if part is not None:
            left_out, cut = _settled(part, limit, left_out, cut, spill)
            out.append(b"\n")
        out += headers or ()
    finally:
        if sink is not None and spill is not None:
            sink.close()
    return b"".join(out), left_out, cut


def _settled(part: _Base64Sink, limit: int | None, left_out: int, cut: bytes | Path | None,
             spill: Path | None) -> tuple[int, bytes | Path | None]:
    """(left_out, cut) once a recording part has been read whole. (One over
    the limit leaves every recording out: `parse` attaches none then.)"""
    size = part.close()
    if limit is not None and size > limit:
        return max(left_out, size), cut
    if cut is None and part.sink is not None:
        sink = part.sink
        return left_out, spill if spill is not None else sink.getvalue()  # type: ignore[attr-defined]
    return left_out, cut


_NOT_BASE64 = bytes(sorted(set(range(256)) - set(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")))


class _Base64Sink:
    """Base64 text fed a piece at a time (line breaks and stray characters
    dropped), its bytes written to `sink` a block at a time (none: only
    counted). Cut off mid-group (a mail truncated on the way), it is decoded
    up to the last whole group. Past `limit` decoded bytes it stops
    writing: such a recording is left out anyway."""

    def __init__(self, sink: BinaryIO | None, limit: int | None = None) -> None:
        self.sink, self.limit = sink, limit
        self.over = False  # past the limit: no longer written
        self.chars = 0  # every character but line breaks: the size as encoded
        self.tail = b""  # the last 8 bytes, for the padding
        self.written = 0
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._carry = b""

    def feed(self, piece: bytes) -> None:
        self.chars += len(piece) - piece.count(b"\n") - piece.count(b"\r")
        self.tail = (self.tail + piece[-8:])[-8:]
        if self.sink is not None and not self.over:
            self._pending.append(piece)
            self._pending_size += len(piece)
            if self._pending_size >= _PIECE:
                self._flush()

    def _flush(self) -> None:
        text = self._carry + b"".join(self._pending).translate(None, _NOT_BASE64)
        self._pending, self._pending_size = [], 0
        whole = len(text) // 4 * 4
        self._carry = text[whole:]
        if not whole or self.sink is None or self.over:
            return
        try:
            data = binascii.a2b_base64(text[:whole])
        except binascii.Error:  # padding in the middle: the groups around it
            clean = text[:whole].replace(b"=", b"")
            data = binascii.a2b_base64(clean[:len(clean) // 4 * 4])
        if self.limit is not None and self.written + len(data) > self.limit:
            self.over = True  # left out, so no use writing it
            return
        self.sink.write(data)
        self.written += len(data)

    def close(self) -> int:
        """Write what is left; returns the size as decoded, by the text's length."""
        self._flush()
        return self.chars * 3 // 4 - self.tail.count(b"=")


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
               cut: bytes | Path | None = None) -> Attachment | None:
    """`cut`: the recording's bytes (or the file holding them) when
    `_cut_recordings` took them out."""
    for part in msg.iter_attachments():
        if _is_recording(part):
            if isinstance(cut, Path):
                found = Attachment("", "", path=cut)
            else:
                found = Attachment("", "", _decoded(part) if cut is None else cut)
            kind = audio.sniff(found.head(256), str(part.get_filename() or ""),
                               part.get_content_type())
            return replace(found, filename=recording_name(values, date, kind.extension),
                           content_type=kind.content_type)
    return None


def _decoded(part: Message) -> bytes:
    """The part's bytes. Base64 cut off mid-group (a mail truncated on the
    way) is decoded up to the last whole group: the email module would hand
    back the base64 text itself, which no player can open."""
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if encoding != "base64":
        return part.get_payload(decode=True) or b""
    out = io.BytesIO()
    decoder = _Base64Sink(out)
    decoder.feed(str(part.get_payload()).encode("ascii", "ignore"))
    decoder.close()
    return out.getvalue()


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
