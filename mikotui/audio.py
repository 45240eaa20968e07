"""Voicemail recordings: what Asterisk attached, and a copy every mail client plays.

Asterisk attaches one of three things (voicemail.conf `format`): PCM WAV
(`wav`), GSM 6.10 in a WAV box (`wav49`, named `.WAV`) and raw GSM 6.10
without any header (`gsm`). Phones play none of the GSM ones, and PCM is
about 1 MB a minute, so by default the recording goes out as MP3: MPEG-2
Layer III at 16 kHz (8 kHz would make it MPEG-2.5, which not every player
takes), 24 kbit/s, about 180 kB a minute.

Decoding and encoding are libsndfile's (through `soundfile`), block by
block, so a long message never sits in memory as samples.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import BinaryIO

FORMATS = ("mp3", "wav", "original")  # voicemail.attachment_format
DEFAULT_FORMAT = "mp3"

PCM_WAV, GSM_WAV, RAW_GSM, UNKNOWN = "wav", "wav49", "gsm", "unknown"
_GSM_FRAME = 33  # bytes of one raw GSM 6.10 frame (160 samples, 20 ms)
_BLOCK = 8000 * 10  # samples converted at a time: 10 s of 8 kHz audio
_MP3_RATE = 16000
# libsndfile's compression level -> a constant bitrate: 0.9 is 24 kbit/s for
# MPEG-2 (measured: 60 s of speech band audio -> 180 kB).
_MP3_LEVEL = 0.9


class AudioError(ValueError):
    """A recording libsndfile cannot read (or a format it cannot write)."""


@dataclass(frozen=True)
class Kind:
    name: str  # PCM_WAV / GSM_WAV / RAW_GSM / UNKNOWN
    extension: str  # what the original bytes are named with
    content_type: str
    description: str  # for the note when they can't be converted


KINDS = {
    PCM_WAV: Kind(PCM_WAV, ".wav", "audio/x-wav", "PCM WAV"),
    GSM_WAV: Kind(GSM_WAV, ".wav", "audio/x-wav", "GSM 6.10 in WAV"),
    RAW_GSM: Kind(RAW_GSM, ".gsm", "audio/x-gsm", "raw GSM 6.10"),
    UNKNOWN: Kind(UNKNOWN, ".bin", "application/octet-stream", "unknown"),
}
TARGETS = {"mp3": (".mp3", "audio/mpeg"), "wav": (".wav", "audio/x-wav")}


def sniff(head: bytes, filename: str = "", content_type: str = "") -> Kind:
    """What a recording is, from its first bytes (and Asterisk's name for it
    when there is no header to read: raw GSM has none)."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        fmt = head.find(b"fmt ")
        tag = int.from_bytes(head[fmt + 8:fmt + 10], "little") if fmt >= 0 else 0
        return KINDS[GSM_WAV if tag == 0x31 else PCM_WAV]  # 0x31: WAVE_FORMAT_GSM610
    named = filename.lower().endswith(".gsm") or content_type.lower() == "audio/x-gsm"
    # Every raw GSM 6.10 frame starts with the magic nibble 0xD.
    if named or (head and len(head) % _GSM_FRAME == 0 and head[0] >> 4 == 0xD):
        return KINDS[RAW_GSM]
    return KINDS[UNKNOWN]


def convert(src: BinaryIO, kind: Kind, target: str, dst: BinaryIO) -> None:
    """Decode `src` (a recording of `kind`) and write it to `dst` as `target`
    ("mp3" or "wav"), in blocks. Raises AudioError if it can't be read."""
    import numpy as np
    import soundfile as sf

    try:
        if kind.name == RAW_GSM:
            reader = sf.SoundFile(src, format="RAW", subtype="GSM610", samplerate=8000,
                                  channels=1)
        else:
            reader = sf.SoundFile(src)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(f"not a recording libsndfile reads: {exc}") from None
    with reader:
        rate, channels = reader.samplerate, reader.channels
        try:
            if target == "mp3":
                up = max(1, _MP3_RATE // rate) if rate < _MP3_RATE else 1
                writer = sf.SoundFile(dst, "w", samplerate=rate * up, channels=channels,
                                      format="MP3", subtype="MPEG_LAYER_III",
                                      compression_level=_MP3_LEVEL,
                                      bitrate_mode="CONSTANT")
            else:
                up = 1
                writer = sf.SoundFile(dst, "w", samplerate=rate, channels=channels,
                                      format="WAV", subtype="PCM_16")
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
            raise AudioError(f"cannot write {target}: {exc}") from None
        with writer:
            last = None
            while True:
                try:
                    block = reader.read(_BLOCK, dtype="float32", always_2d=True)
                except (sf.LibsndfileError, RuntimeError) as exc:
                    raise AudioError(f"the recording breaks off: {exc}") from None
                if not len(block):
                    break
                if up > 1:
                    block, last = _upsampled(np, block, up, last)
                writer.write(block)


def _upsampled(np, block, factor: int, last):
    """Linear interpolation (enough for speech that ends at 4 kHz; the MP3
    encoder's low-pass does the rest). `last`: the previous block's last
    sample, so the seam between blocks is interpolated too."""
    prev = block[:1] if last is None else last
    joined = np.concatenate([prev, block])
    out = np.empty((len(block) * factor, block.shape[1]), dtype="float32")
    for i in range(factor):
        w = (i + 1) / factor
        out[i::factor] = joined[:-1] * (1 - w) + joined[1:] * w
    return out, block[-1:]


def for_mail(recording, attachment_format: str, lang: str):
    """(the attachment to send, a note for the body): `recording` (a
    `message.Attachment` with Asterisk's bytes) as `attachment_format` asks.
    One in a file is converted into a file beside it (a block at a time:
    neither copy is ever held whole). A recording that can't be converted
    goes as it came, and the note says so: a voicemail is never lost to a codec."""
    from dataclasses import replace

    from mikotui import i18n

    if recording is None or attachment_format not in TARGETS:
        return recording, ""
    kind = sniff(recording.head(256), recording.filename, recording.content_type)
    extension, content_type = TARGETS[attachment_format]
    stem = recording.filename.rsplit(".", 1)[0] if "." in recording.filename \
        else recording.filename
    if kind.name == PCM_WAV and attachment_format == "wav":
        return replace(recording, filename=stem + extension, content_type=content_type), ""
    try:
        copy = _converted(recording, kind, attachment_format, extension)
    except (AudioError, RuntimeError, OSError, ImportError, MemoryError) as exc:
        note = i18n.text(lang, "attachment.unconverted", target=attachment_format.upper(),
                         why=str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__,
                         kind=kind.description)
        return recording, note
    return replace(copy, filename=stem + extension, content_type=content_type), ""


def _converted(recording, kind: Kind, target: str, extension: str):
    """`recording` converted to `target`: in memory, or in a file beside its own."""
    from dataclasses import replace

    from mikotui.durable import open_private

    if recording.path is None:
        out = io.BytesIO()
        convert(io.BytesIO(recording.data), kind, target, out)
        return replace(recording, data=out.getvalue())
    path = recording.path.with_name(recording.path.name + extension)
    with recording.open() as src, open_private(path, "w+b") as dst:
        convert(src, kind, target, dst)
    return replace(recording, path=path)
