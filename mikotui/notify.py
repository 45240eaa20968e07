"""Events -> ready-to-send spool entries: routing picks the recipients, the
templates and `message.compose` make the mail, the spool keeps it.

Nothing here talks SMTP or imports asyncio: this is the enqueue path.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from mikotui import i18n, log, message, routing
from mikotui.config import Settings
from mikotui.spool import Entry, Meta, Spool, new_id

# Kinds of entries. An alert is what we send the administrator about a
# notification given up on; alerts and system mail never cause alerts.
MISSED, VOICEMAIL, SYSTEM, ALERT, LOGIN = "missed", "voicemail", "system", "alert", "login"
NO_ALERT_KINDS = (SYSTEM, ALERT, LOGIN)
# MikoPBX sends one sign-in alert per user and address in this many seconds.
LOGIN_WINDOW = 300
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True)
class Prepared:
    kind: str
    recipients: tuple[str, ...]
    subject: str
    # The RFC 5322 message as the email package wrote it, with a stand-in
    # line for each attachment in `spliced` (see `_prepare`).
    composed: bytes
    spliced: tuple[tuple[bytes, message.Attachment], ...] = ()

    def meta(self, **extra: object) -> Meta:
        return Meta(id=new_id(), kind=self.kind, created=time.time(),
                    recipients=self.recipients, owed=self.recipients,
                    subject=self.subject, **extra)  # type: ignore[arg-type]

    def chunks(self) -> Iterator[bytes]:
        """The whole message in pieces, as the spool writes it: each stand-in
        line replaced by its attachment's base64, made a block at a time
        from the attachment's file (or bytes), in the same 76-character lines
        the email module writes."""
        import base64

        view, at = memoryview(self.composed), 0
        for line, att in sorted(self.spliced, key=lambda s: self.composed.index(s[0])):
            start = self.composed.index(line, at)
            yield view[at:start]
            with att.open() as f:
                while block := f.read(57 * 8192):  # whole lines
                    yield base64.encodebytes(block)
            at = start + len(line)
        yield view[at:]

    @property
    def data(self) -> bytes:
        """The whole message in memory (a small one's; tests)."""
        return b"".join(self.chunks())


@dataclass(frozen=True)
class MissedCall:
    caller: str
    called: str
    caller_name: str = ""
    called_name: str = ""
    duration: str = "0"
    date: str = ""  # YYYY-MM-DD HH:MM:SS; empty -> now
    # ("queue" | "group", its name) when the call came through one; the
    # caller is still the original one, whose number the card rules judge.
    via: tuple[str, str] | None = None


_SPLICE_OVER = 1 << 20  # attachments bigger than this are base64'd outside the email module


def _prepare(kind: str, rendered: message.Rendered, recipients: tuple[str, ...],
             settings: Settings, attachments=()) -> Prepared:
    """The email module holds a big attachment several times over while it
    encodes and flattens it (a 20 MB recording took ~130 MB): a big one, or
    one in a file, is composed as a short stand-in, whose base64 line
    `Prepared.chunks` replaces with the real base64 as the message is written."""
    import os

    stand_ins, spliced = [], []
    for att in attachments:
        if att.path is not None or len(att.data) > _SPLICE_OVER:
            token = os.urandom(30)  # 40 base64 characters: one line, found once
            spliced.append((base64.b64encode(token) + b"\n", att))
            att = replace(att, data=token, path=None)
        stand_ins.append(att)
    msg = message.compose(rendered, recipients, settings, attachments=stand_ins)
    return Prepared(kind, recipients, str(msg["Subject"]), msg.as_bytes(), tuple(spliced))


def missed_call(settings: Settings, call: MissedCall) -> Prepared:
    caller_card = settings.employee(call.caller.strip())
    called_card = settings.employee(call.called.strip())
    values = {
        "NOTIFICATION_MISSEDCAUSE": "NOANSWER",
        "NOTIFICATION_CALLERID": call.caller,
        "NOTIFICATION_TO": call.called,
        "NOTIFICATION_NAME_FROM": call.caller_name or (caller_card.name if caller_card else ""),
        "NOTIFICATION_NAME_TO": call.called_name or (called_card.name if called_card else ""),
        "NOTIFICATION_DURATION": call.duration,
        "NOTIFICATION_DATE": call.date or datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
        "NOTIFICATION_VIA": (i18n.text(settings.ui.language, f"via.{call.via[0]}",
                                       name=call.via[1]) if call.via else ""),
    }
    # Outside text reaches the body as one line per value, whatever it holds.
    values = {k: message.one_line(v) for k, v in values.items()}
    rendered = message.render("missed_call", settings, values)
    recipients = routing.missed_call(settings, call.called, call.caller)
    return _prepare(MISSED, rendered, recipients, settings)


def voicemail(settings: Settings, event, missed_by: tuple[str, ...], lang: str) -> Prepared:
    """`event` is an `asterisk.VoicemailEvent`."""
    from mikotui import audio

    values = caller_values(settings, event.values, lang)
    rendered = message.render("voicemail", settings, values)
    limit_mb = settings.voicemail.max_attachment_mb
    recording, unconverted = audio.for_mail(event.recording,
                                            settings.voicemail.attachment_format, lang)
    attachments, note = message.fit_attachment(recording, limit_mb, lang)
    if event.left_out:  # too big to even read: `asterisk.parse` skipped it
        note = i18n.text(lang, "attachment.too_big", size_mb=event.left_out / 2**20,
                         limit_mb=limit_mb)
    elif attachments and event.expected_size > event.recording.size:
        note = i18n.text(lang, "attachment.incomplete", got_kb=event.recording.size / 1024,
                         expected_kb=event.expected_size / 1024)
    elif attachments and unconverted:
        note = unconverted
    rendered = message.with_note(rendered, note)
    recipients = routing.voicemail(settings, missed_by, event.mailbox or None)
    return _prepare(VOICEMAIL, rendered, recipients, settings, attachments)


def caller_values(settings: Settings, values: dict[str, str], lang: str) -> dict[str, str]:
    """The caller as every body style gives it, said the same way: a number
    with an employee card gets the card's name; VM_CALLERID is rebuilt
    from the name and number; with neither, the caller is "an unknown
    caller" once (in VM_CALLER_NAME and VM_CALLERID), never Asterisk's text."""
    values = dict(values)
    name, num = values.get("VM_CALLER_NAME", ""), values.get("VM_CALLER_NUM", "")
    if not name and num:
        card = settings.employee(num)
        name = card.name if card and card.name else ""
    if name and num:
        callerid = f'"{name}" <{num}>'
    else:
        callerid = name or num
    if not callerid:
        name = callerid = i18n.text(lang, "voicemail.unknown_caller")
    values.update(VM_CALLER_NAME=name, VM_CALLERID=callerid)
    return values


def system(settings: Settings, subject: str, text: str) -> Prepared:
    # A script's output may carry CRLF, NULs or terminal escapes: keep the
    # lines and tabs, drop the rest of the control characters.
    text = _CONTROL_BUT_LINES.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    rendered = message.render_system(subject, text)
    return _prepare(SYSTEM, rendered, routing.system(settings), settings)


@dataclass(frozen=True)
class Login:
    user: str
    address: str  # the IP address signed in from, as ipaddress writes it
    when: str = ""  # YYYY-MM-DD HH:MM:SS; empty -> now


def login(settings: Settings, event: Login, lang: str) -> Prepared:
    """The administrator's alert about a sign-in to the PBX's web interface."""
    values = {"user": message.one_line(event.user), "address": event.address,
              "when": event.when or datetime.now().strftime("%Y-%m-%d %H:%M:%S")}
    rendered = message.render_system(i18n.text(lang, "login.subject", **values),
                                     i18n.text(lang, "login.body", **values))
    return _prepare(LOGIN, rendered, routing.login(settings), settings)


def first_login_alert(spool: Spool, event: Login, now: float | None = None) -> bool:
    """False when this user from this address was already reported within
    LOGIN_WINDOW (kept in the spool, so a restart does not reset it)."""
    from mikotui import limits

    return limits.take(spool.root, f"login\0{event.user}\0{event.address}", LOGIN_WINDOW, now)


ALERT_LISTS = 20  # entries an alert about a burst of failures spells out


def needs_alert(settings: Settings, failed: Meta) -> bool:
    """Whether the administrator is to be told about `failed`: once per
    entry ever (a retried one that fails again was told already), and not
    when that would be about mail to the administrator itself."""
    if failed.alerted or failed.kind in NO_ALERT_KINDS:
        return False
    admins = {a.lower() for a in routing.admin(settings)}
    lost = _lost(failed)
    return bool(admins) and not (lost and {a.lower() for a in lost} <= admins)


def _lost(failed: Meta) -> set[str]:
    return set(failed.refused) or set(failed.owed) or set(failed.recipients)


def alert(settings: Settings, failed: Sequence[Meta], lang: str) -> Prepared | None:
    """The one mail to the administrator about the entries given up on
    together (a burst of failures is one mail, not fifty), or None when
    none needs telling (`needs_alert`)."""
    failed = sorted((m for m in failed if needs_alert(settings, m)), key=lambda m: m.id)
    if not failed:
        return None

    def details(m: Meta) -> dict[str, str]:
        refused = "\n".join(f"  {addr}: {message.excerpt(why)}"
                            for addr, why in m.refused.items())
        return {"id": m.id, "kind": m.kind, "subject": message.excerpt(m.subject) or "-",
                "reason": message.excerpt(m.failed_reason) or "-",
                "recipients": ", ".join(sorted(_lost(m))) or "-", "refused": refused or "  -"}

    if len(failed) == 1:
        [one] = failed
        subject = i18n.text(lang, "alert.subject", kind=one.kind)
        body = i18n.text(lang, "alert.body", **details(one))
    else:
        listed = [i18n.text(lang, "alerts.entry", **details(m)) for m in failed[:ALERT_LISTS]]
        if len(failed) > ALERT_LISTS:
            listed.append(i18n.text(lang, "alerts.more", count=len(failed) - ALERT_LISTS))
        subject = i18n.text(lang, "alerts.subject", count=len(failed))
        body = i18n.text(lang, "alerts.body", count=len(failed), entries="\n\n".join(listed))
    rendered = message.render_system(subject, body)
    return _prepare(ALERT, rendered, routing.admin(settings), settings)


# --- raw voicemail -> ready entry ---------------------------------------------------

def ready_voicemail(settings: Settings, spool: Spool, entry: Entry) -> tuple[Entry, str]:
    """Parse a raw entry this process holds into a ready one. On a parse
    failure the entry goes to failed/ with the reason; returns (entry, error)."""
    from mikotui import asterisk

    lang = str(entry.meta.event.get("lang") or settings.ui.language)
    missed_by = tuple(entry.meta.event.get("missed_by") or ())
    if entry.meta.size > asterisk.MAX_INPUT:
        reason = (f"input of {entry.meta.size} bytes is over the "
                  f"{asterisk.MAX_INPUT // (1024 * 1024)} MB limit; not parsed")
        return spool.fail(entry, reason), reason
    try:
        raw = entry.open_message()
    except OSError as exc:  # raw.eml gone: a hand or a disk; keep what is left
        reason = f"cannot read {entry.message_path().name}: {exc.strerror or exc}"
        return spool.fail(entry, reason), reason
    # An OSError past here is the disk refusing our writes (the recording's
    # scratch file, message.eml): the raw entry stays as it is, tried again later.
    try:
        limit = int(settings.voicemail.max_attachment_mb * 2**20)
        with raw:
            # A long recording is decoded into the entry, and converted there.
            event = asterisk.parse(raw, max_recording=limit, spill=entry.scratch("recording"))
        prepared = voicemail(settings, event, missed_by, lang)
    except asterisk.VoicemailParseError as exc:
        reason = f"not a voicemail email: {exc}"
    except (ValueError, LookupError, TypeError, AttributeError, IndexError) as exc:
        # The email package trips over some malformed input with errors of
        # its own (it did on a bare "From:" group). Left unhandled, such an
        # entry would stop every later drain at the same place.
        reason = f"not a voicemail email: unreadable ({type(exc).__name__}: {exc})"
    else:
        meta = replace(entry.meta, recipients=prepared.recipients, owed=prepared.recipients,
                       subject=prepared.subject)
        return spool.replace_message(entry, meta, prepared.chunks()), ""
    spool.clear_scratch(entry)
    return spool.fail(entry, reason), reason


def ready_event(settings: Settings, spool: Spool, entry: Entry
                ) -> tuple[Entry | None, bytes, str]:
    """The mail of a missed call stored as its event (`enqueue`'s note says
    why), rendered with the settings of now: (entry, message, ""). The
    message is not stored: the entry stays an event on disk, so a retry is
    rendered afresh, and a drain of stored calls costs no fsync per entry.
    Who gets it is decided at the first attempt (then kept in `owed`, so a
    retry never reaches someone who has it). (None, b"", "") when the
    settings send it to nobody: it is taken out, the log says why. A stored
    event that is not as `enqueue` writes it goes to failed/: (entry, b"", why)."""
    from mikotui import config

    event = entry.meta.event
    fields = ("caller", "called", "caller_name", "called_name", "duration", "date", "lang")
    via = event.get("via")
    if entry.meta.kind != MISSED or not all(isinstance(event.get(k), str) for k in fields) \
            or not (via is None or isinstance(via, list) and len(via) == 2
                    and all(isinstance(v, str) for v in via)):
        reason = "not a missed call as the enqueue path stores one"
        return spool.fail(entry, reason), b"", reason
    lang = i18n.language(event["lang"] or None, settings.ui.language)
    settings = config.with_language(settings, lang)
    call = MissedCall(caller=event["caller"], called=event["called"],
                      caller_name=event["caller_name"], called_name=event["called_name"],
                      duration=event["duration"], date=event["date"],
                      via=(via[0], via[1]) if via else None)
    prepared = missed_call(settings, call)
    if not prepared.recipients:
        why = routing.switched_off(settings, MISSED)
        why = f"{why} = false" if why else (
            "nobody to send it to (" + routing.nobody_because(settings, call.called,
                                                              call.caller) + ")")
        spool.done(entry)
        log.record(spool, id=entry.id, kind=MISSED, event="dropped", called=call.called,
                   reason=why)
        return None, b"", ""
    decided = bool(entry.meta.recipients)
    data = prepared.data  # a missed call's mail: small, joined once
    meta = replace(entry.meta, subject=prepared.subject, size=len(data),
                   recipients=entry.meta.recipients if decided else prepared.recipients,
                   owed=entry.meta.owed if decided else prepared.recipients)
    return replace(entry, meta=meta), data, ""


def alert_failed(settings: Settings, spool: Spool, failed: Sequence[Entry]) -> Entry | None:
    """Queue one administrator's alert about the `failed` entries that
    need one (`needs_alert`), and mark each as told, so that none is ever
    the subject of a second alert."""
    told = [e for e in failed if needs_alert(settings, e.meta)]
    prepared = alert(settings, [e.meta for e in told], settings.ui.language)
    if prepared is None:
        return None
    entry = spool.enqueue(prepared.meta(), prepared.chunks())
    log.record(spool, id=entry.id, kind=ALERT, event="queued",
               about=",".join(e.id for e in told), recipients=",".join(prepared.recipients))
    for e in told:
        spool.mark_alerted(e, entry.meta.created)
    return entry


TOKEN_REFUSED_MARK = "oauth2-refused"  # in the spool: the admin was told; gone once it works


def token_refused(settings: Settings, spool: Spool, reason: str) -> Entry | None:
    """The OAuth2 sign-in was refused: tell the administrator once (a log line
    and one queued alert, sent once the sign-in works again) until a send
    succeeds. Returns the alert queued, or None when already told."""
    import os

    try:
        fd = os.open(spool.root / TOKEN_REFUSED_MARK, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                     | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return None
    os.close(fd)
    log.record(spool, event="oauth2", result="refused", error=reason,
               hint="authorize again: mikotui oauth2 login")
    lang = settings.ui.language
    rendered = message.render_system(
        i18n.text(lang, "oauth2.subject"),
        i18n.text(lang, "oauth2.body", mailbox=settings.smtp.username or "-", reason=reason))
    prepared = _prepare(ALERT, rendered, routing.system(settings), settings)
    if not prepared.recipients:
        return None
    entry = spool.enqueue(prepared.meta(), prepared.chunks())
    log.record(spool, id=entry.id, kind=ALERT, event="queued", about="oauth2",
               recipients=",".join(prepared.recipients))
    return entry


def token_works(spool: Spool) -> None:
    """A send signed in with OAuth2: a later refusal is news again."""
    (spool.root / TOKEN_REFUSED_MARK).unlink(missing_ok=True)
