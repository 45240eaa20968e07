"""MikoPBX's own settings and employee cards <-> our config.

MikoPBX keeps the mail settings as string rows in `m_PbxSettings` of its
SQLite database and the employees in `m_Users` + `m_Extensions`. Import reads
them read-only (the PBX keeps running and writing); export writes the mail
keys back in one transaction after a backup copy. Employees and the PBX
language are owned by the PBX: import takes them, export never writes them.

Every value that cannot be mapped is reported with its MikoPBX key, and the
field it would have set is left as it was: nothing is guessed.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mikotui import config

# Long enough to ride out one of the PBX's own short writes, short enough that
# a held lock is refused at once instead of hanging an SSH session.
BUSY_TIMEOUT = 2.0
MASK = "********"

# MikoPBX key -> (section, field) of our config.
MAPPED: dict[str, tuple[str, str]] = {
    "MailSMTPHost": ("smtp", "host"),
    "MailSMTPPort": ("smtp", "port"),
    "MailSMTPUsername": ("smtp", "username"),
    "MailSMTPPassword": ("smtp", "password"),
    "MailSMTPSenderAddress": ("smtp", "sender_address"),
    "MailSMTPFromUsername": ("smtp", "sender_name"),
    "MailSMTPUseTLS": ("smtp", "encryption"),
    "MailSMTPCertCheck": ("smtp", "verify_certificate"),
    "MailEnableNotifications": ("notifications", "enabled"),
    "SendMissedCallNotifications": ("notifications", "missed_call"),
    "SendVoicemailNotifications": ("notifications", "voicemail"),
    "SendSystemNotifications": ("notifications", "system"),
    "SendLoginNotifications": ("notifications", "login"),
    "SystemNotificationsEmail": ("notifications", "admin_email"),
    "SystemEmailForMissed": ("missed_call", "email"),
    "VoicemailNotificationsEmail": ("voicemail", "email"),
    "MailTplMissedCallSubject": ("missed_call", "subject"),
    "MailTplMissedCallBody": ("missed_call", "body"),
    "MailTplMissedCallFooter": ("missed_call", "footer"),
    "MailTplVoicemailSubject": ("voicemail", "subject"),
    "MailTplVoicemailBody": ("voicemail", "body"),
    "MailTplVoicemailFooter": ("voicemail", "footer"),
}
# MikoPBX's OAuth2 sign-in (its 2025 releases; older ones have none of these):
# key -> field of [smtp] ("oauth2.x" is [smtp.oauth2] x). Exported only when we
# sign in with OAuth2 or the PBX already has the key.
OAUTH2_MAPPED: dict[str, str] = {
    "MailSMTPAuthType": "auth",
    "MailOAuth2Provider": "oauth2.provider",
    "MailOAuth2ClientId": "oauth2.client_id",
    "MailOAuth2ClientSecret": "oauth2.client_secret",
}
# The tokens go to the token file, never into the config: a PBX that is
# signed in stays signed in, with no new consent.
REFRESH_KEY, ACCESS_KEY, EXPIRES_KEY = (
    "MailOAuth2RefreshToken", "MailOAuth2AccessToken", "MailOAuth2TokenExpires")
TOKEN_KEYS = (REFRESH_KEY, ACCESS_KEY, EXPIRES_KEY)
# Read on import only: the PBX's language also drives its prompts and web UI.
LANGUAGE_KEY = "PBXLanguage"
SECRET_KEYS = {"MailSMTPPassword", "smtp.password", "MailOAuth2ClientSecret",
               "smtp.oauth2.client_secret", REFRESH_KEY, ACCESS_KEY}


class MikoPbxError(Exception):
    """A database we cannot use as asked; `code` is the sysexits status."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Issue:
    """A value we could not map, named by where it came from."""

    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


@dataclass(frozen=True)
class Change:
    key: str
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.key}: {_show(self.key, self.old)} -> {_show(self.key, self.new)}"


@dataclass(frozen=True)
class Imported:
    settings: config.Settings
    changes: list[Change]
    issues: list[Issue]
    notes: list[str]
    tokens: dict[str, str] = field(default_factory=dict)  # TOKEN_KEYS found, non-empty


# --- values: MikoPBX string <-> our typed field ------------------------------

def _text(value: str) -> str:
    return value


def _port(value: str) -> int:
    if not value.strip().isdigit() or not 1 <= int(value) <= 65535:
        raise ValueError(f"not a port number (1..65535): {value!r}")
    return int(value)


def _flag(value: str) -> bool:
    if value not in ("0", "1"):
        raise ValueError(f"not a boolean (\"1\" or \"0\"): {value!r}")
    return value == "1"


# Both forms MikoPBX has stored: the old checkbox and the newer mode names.
_TLS = {"": "none", "0": "none", "1": "starttls",
        "none": "none", "tls": "starttls", "ssl": "ssl"}


def _tls(value: str) -> str:
    try:
        return _TLS[value.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown encryption {value!r} (expected none, tls, ssl, 1 or 0)") from None


DECODE: dict[str, Callable[[str], Any]] = {
    "MailSMTPPort": _port,
    "MailSMTPUseTLS": _tls,
    "MailSMTPCertCheck": _flag,
    "MailEnableNotifications": _flag,
    "SendMissedCallNotifications": _flag,
    "SendVoicemailNotifications": _flag,
    "SendSystemNotifications": _flag,
    "SendLoginNotifications": _flag,
}


def decode(key: str, value: str) -> Any:
    """A MikoPBX string as our field's value; ValueError names what is wrong."""
    return DECODE.get(key, _text)(value)


def encode(key: str, value: Any, stored: str | None = None) -> str:
    """Our field's value as the string MikoPBX stores. A stored value that
    already means the same is kept as written, so an older PBX keeps its
    legacy forms (`MailSMTPUseTLS` "1"/"0") and a no-op export writes nothing."""
    if stored is not None:
        try:
            if decode(key, stored) == value:
                return stored
        except ValueError:
            pass
    if key == "MailSMTPUseTLS":
        if stored in ("", "0", "1") and value != "ssl":
            return "1" if value == "starttls" else "0"  # the checkbox it knows
        return {"none": "none", "starttls": "tls", "ssl": "ssl"}[value]
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def pbx_language(value: str) -> str:
    """"ru-ru" -> "ru"; ValueError for a language mikotui does not speak."""
    lang = value.strip().lower().split("-")[0]
    if lang not in config.LANGUAGES:
        raise ValueError(f"mikotui speaks {', '.join(config.LANGUAGES)}, not {value!r}")
    return lang


# --- reading the database ---------------------------------------------------

@dataclass(frozen=True)
class Card:
    """One employee row: a SIP extension and the user who owns it."""

    user_id: int
    extension: str
    name: str
    email: str


@dataclass(frozen=True)
class PbxData:
    settings: dict[str, str]
    cards: list[Card]
    orphans: list[str]  # SIP extensions without a user


def connect_readonly(db: Path) -> sqlite3.Connection:
    _require_file(db)
    uri = db.resolve().as_uri() + "?mode=ro"
    try:
        return sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT)
    except sqlite3.Error as exc:
        raise _refusal(db, exc) from None


def read(db: Path) -> PbxData:
    conn = connect_readonly(db)
    try:
        _require_tables(conn, db, ("m_PbxSettings", "m_Users", "m_Extensions"))
        rows = conn.execute("SELECT key, value FROM m_PbxSettings").fetchall()
        cards = conn.execute(
            "SELECT u.id, e.number, COALESCE(NULLIF(u.username, ''), e.callerid, ''),"
            " COALESCE(u.email, '')"
            " FROM m_Extensions e JOIN m_Users u ON u.id = e.userid"
            " WHERE e.type = 'SIP' ORDER BY length(e.number), e.number"
        ).fetchall()
        orphans = conn.execute(
            "SELECT number FROM m_Extensions WHERE type = 'SIP' AND"
            " (userid IS NULL OR userid NOT IN (SELECT id FROM m_Users))"
            " ORDER BY length(number), number"
        ).fetchall()
    except sqlite3.Error as exc:
        raise _refusal(db, exc) from None
    finally:
        conn.close()
    # A NULL value is as good as a missing row: MikoPBX then uses its default.
    settings = {str(k): str(v) for k, v in rows if v is not None}
    return PbxData(settings, [Card(int(i), str(n), str(name), str(mail).strip())
                              for i, n, name, mail in cards],
                   [str(n) for (n,) in orphans])


def _require_file(db: Path) -> None:
    if not db.is_file():
        raise MikoPbxError(f"{db}: no such database file", os.EX_NOINPUT)


def _require_tables(conn: sqlite3.Connection, db: Path, names: tuple[str, ...]) -> None:
    have = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    for name in names:
        if name not in have:
            raise MikoPbxError(f"{db}: no table {name} (not a MikoPBX database?)",
                               os.EX_DATAERR)


def _refusal(db: Path, exc: sqlite3.Error) -> MikoPbxError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return MikoPbxError(f"{db}: the database is locked by another program; "
                            "nothing was changed, try again in a moment", os.EX_TEMPFAIL)
    if "not a database" in text or "malformed" in text:
        return MikoPbxError(f"{db}: not an SQLite database ({text})", os.EX_DATAERR)
    if "unable to open" in text or "readonly" in text or "read-only" in text:
        return MikoPbxError(f"{db}: cannot open ({text})", os.EX_NOINPUT)
    return MikoPbxError(f"{db}: {text}", os.EX_UNAVAILABLE)


# --- import --------------------------------------------------------------

def import_settings(current: config.Settings, data: PbxData) -> Imported:
    """`current` with every mapped value from the PBX; what changed; what
    could not be mapped (those fields keep their current value)."""
    issues: list[Issue] = []
    notes: list[str] = []
    lang = current.ui.language
    if LANGUAGE_KEY in data.settings:
        try:
            lang = pbx_language(data.settings[LANGUAGE_KEY])
        except ValueError as exc:
            issues.append(Issue(LANGUAGE_KEY, f"{exc}; ui.language stays {lang!r}"))
    defaults = config.defaults(lang)
    values: dict[tuple[str, str], Any] = {}
    for key, (section, name) in MAPPED.items():
        if key not in data.settings:
            values[(section, name)] = getattr(getattr(defaults, section), name)
            notes.append(f"{key} is not in the database: the default is used")
            continue
        try:
            values[(section, name)] = decode(key, data.settings[key])
        except ValueError as exc:
            issues.append(Issue(key, f"{exc}; {section}.{name} left as it was"))
    new = _apply(current, values, lang)
    new, more = _reject_invalid(current, new)
    issues += more
    new = _import_oauth2(new, data.settings, issues)
    tokens = {k: data.settings[k] for k in TOKEN_KEYS if data.settings.get(k, "").strip()}
    employees, card_issues = _employees(data.cards)
    issues += card_issues
    employees = _keep_rules(current, employees)
    notes += [f"SIP extension {n} has no user: no employee card" for n in data.orphans]
    new = replace(new, employees=employees, unknown=_carry_unknown(current, employees))
    return Imported(new, diff(current, new), issues, notes, tokens)


def _import_oauth2(new: config.Settings, pbx: dict[str, str],
                   issues: list[Issue]) -> config.Settings:
    smtp, oauth = new.smtp, new.smtp.oauth2
    for key, name in OAUTH2_MAPPED.items():
        if key not in pbx:
            continue
        value = pbx[key].strip()
        if name == "auth":
            value = value.lower() or "password"
            if value not in config.AUTHS:
                issues.append(Issue(key, f"unknown sign-in {value!r} (expected password or "
                                    "oauth2); smtp.auth left as it was"))
                continue
            smtp = replace(smtp, auth=value)
        elif name == "oauth2.provider":
            value = value.lower()
            if not value:
                continue
            if value not in config.OAUTH2_PROVIDERS:
                issues.append(Issue(key, f"unknown provider {value!r}; smtp.oauth2.provider "
                                    "left as it was"))
                continue
            oauth = replace(oauth, provider=value)
        else:
            oauth = replace(oauth, **{name.removeprefix("oauth2."): value})
    return replace(new, smtp=replace(smtp, oauth2=oauth))


def token_expiry(value: str) -> float:
    """MailOAuth2TokenExpires as epoch seconds (0 when it can't be read: the
    access token is then fetched afresh on first use)."""
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        stamp = datetime.fromisoformat(text.replace(" ", "T"))
    except ValueError:
        return 0.0
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


def _apply(current: config.Settings, values: dict[tuple[str, str], Any],
           lang: str) -> config.Settings:
    sections = {}
    for section in {s for s, _ in values}:
        parts = {name: v for (s, name), v in values.items() if s == section}
        sections[section] = replace(getattr(current, section), **parts)
    return replace(current, **sections, ui=replace(current.ui, language=lang))


def _reject_invalid(current: config.Settings,
                    new: config.Settings) -> tuple[config.Settings, list[Issue]]:
    """Fields our own validation refuses (a bad address, a broken host) keep
    their current value and are reported under their MikoPBX key."""
    by_field = {f"{s}.{n}": k for k, (s, n) in MAPPED.items()}
    issues = []
    for problem in config.errors(config.validate(replace(new, employees=()))):
        key = by_field.get(problem.key)
        if key is None:
            continue
        section, name = MAPPED[key]
        old = getattr(getattr(current, section), name)
        if getattr(getattr(new, section), name) == old:
            continue
        new = replace(new, **{section: replace(getattr(new, section), **{name: old})})
        issues.append(Issue(key, f"{problem.message}; {problem.key} left as it was"))
    return new, issues


def _employees(cards: list[Card]) -> tuple[tuple[config.Employee, ...], list[Issue]]:
    out: list[config.Employee] = []
    issues: list[Issue] = []
    seen: set[str] = set()
    for card in cards:
        where = f"m_Users[{card.user_id}]"
        if card.extension in seen:
            issues.append(Issue(f"m_Extensions {card.extension}",
                                f"extension is listed twice; {where} is left out"))
            continue
        seen.add(card.extension)
        email = card.email
        if bad := config.bad_addresses(email):
            issues.append(Issue(f"{where}.email", "not a valid email address: "
                                f"{', '.join(map(repr, bad))}; "
                                f"the card for {card.extension} gets no email"))
            email = ""
        out.append(config.Employee(card.extension, card.name, email))
    return tuple(out), issues


def _keep_rules(current: config.Settings,
                employees: tuple[config.Employee, ...]) -> tuple[config.Employee, ...]:
    """Who gets what per card (missed_calls, voicemail) is ours alone: MikoPBX
    has no such field, so a card keeps its rules by extension."""
    out = []
    for e in employees:
        old = current.employee(e.extension)
        out.append(replace(e, missed_calls=old.missed_calls, voicemail=old.voicemail)
                   if old else e)
    return tuple(out)


def _carry_unknown(current: config.Settings,
                   employees: tuple[config.Employee, ...]) -> dict[str, Any]:
    """Our own extra keys on a card follow its extension to its new place."""
    unknown = {k: v for k, v in current.unknown.items() if not k.startswith("employees[")}
    where = {e.extension: i for i, e in enumerate(employees)}
    for i, e in enumerate(current.employees):
        extra = current.unknown.get(f"employees[{i}]")
        if extra and e.extension in where:
            unknown[f"employees[{where[e.extension]}]"] = extra
    return unknown


# --- diff ----------------------------------------------------------------

def diff(old: config.Settings, new: config.Settings) -> list[Change]:
    """Field by field, in the config's order; employees by extension."""
    changes = []
    for section in config.SECTIONS:
        a, b = getattr(old, section), getattr(new, section)
        for f in fields(a):
            va, vb = getattr(a, f.name), getattr(b, f.name)
            if is_dataclass(va):  # [smtp.oauth2]: field by field, secrets masked
                changes += [Change(f"{section}.{f.name}.{g.name}", getattr(va, g.name),
                                   getattr(vb, g.name)) for g in fields(va)
                            if getattr(va, g.name) != getattr(vb, g.name)]
            elif va != vb:
                changes.append(Change(f"{section}.{f.name}", va, vb))
    before = {e.extension: e for e in old.employees}
    after = {e.extension: e for e in new.employees}
    for ext in [*before, *(x for x in after if x not in before)]:
        a, b = before.get(ext), after.get(ext)
        if a != b:
            changes.append(Change(f"employees[{ext}]", _card(a), _card(b)))
    return changes


def _card(e: config.Employee | None) -> str | None:
    if e is None:
        return None
    return f"{e.name} <{e.email}>" if e.email else f"{e.name} (no email)"


def _show(key: str, value: Any) -> str:
    if value is None:
        return "(none)"
    if key in SECRET_KEYS:
        return MASK if value else '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


# --- export --------------------------------------------------------------

@dataclass(frozen=True)
class Exported:
    changes: list[Change]
    backup: Path | None


def wanted(settings: config.Settings, stored: dict[str, str | None] | None = None,
           tokens: dict[str, str] | None = None) -> dict[str, Any]:
    """The value of every mapped key, from our config; the OAuth2 keys when
    we sign in with OAuth2 or the PBX has them (`stored`), and `tokens`."""
    out: dict[str, Any] = {key: getattr(getattr(settings, s), n)
                           for key, (s, n) in MAPPED.items()}
    oauth = settings.smtp.auth == "oauth2"
    for key, name in OAUTH2_MAPPED.items():
        if oauth or key in (stored or {}):
            head, _, tail = name.partition(".")
            value = getattr(settings.smtp, head)
            out[key] = getattr(value, tail) if tail else value
    if oauth:
        out.update(tokens or {})
    return out


def export_settings(settings: config.Settings, db: Path, now: datetime | None = None,
                    tokens: dict[str, str] | None = None) -> Exported:
    """Write the mapped keys into `m_PbxSettings`: one transaction, after a
    backup copy; nothing else in the database is touched. Refused, with
    nothing written and no backup left behind, if any step fails."""
    _require_file(db)
    backup: Path | None = None
    try:
        conn = sqlite3.connect(db, timeout=BUSY_TIMEOUT, isolation_level=None)
    except sqlite3.Error as exc:
        raise _refusal(db, exc) from None
    try:
        # IMMEDIATE: no one else may write between the backup and our update.
        conn.execute("BEGIN IMMEDIATE")
        _require_tables(conn, db, ("m_PbxSettings",))
        stored = {str(k): _str_or_none(v)
                  for k, v in conn.execute("SELECT key, value FROM m_PbxSettings")}
        pbx_defaults = wanted(config.defaults(settings.ui.language))
        # A key the PBX does not store means its default, as on import: our
        # value that is that default adds no row (a no-op export writes
        # nothing, and the shipped schema keeps its shape).
        updates = {key: encode(key, value, stored.get(key))
                   for key, value in wanted(settings, stored, tokens).items()
                   if stored.get(key) is not None or key not in pbx_defaults
                   or value != pbx_defaults[key]}
        updates = {k: v for k, v in updates.items() if stored.get(k) != v}
        if not updates:
            conn.execute("ROLLBACK")
            return Exported([], None)
        backup = _backup(db, now or datetime.now(UTC))
        _write(conn, updates)
        conn.execute("COMMIT")  # waits out readers for at most BUSY_TIMEOUT
    except BaseException as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if backup is not None:
            backup.unlink(missing_ok=True)  # nothing changed: no copy to explain
        if isinstance(exc, sqlite3.Error):
            raise _refusal(db, exc) from None
        raise
    finally:
        conn.close()
    return Exported([Change(k, stored.get(k), v) for k, v in updates.items()], backup)


def _write(conn: sqlite3.Connection, updates: dict[str, str]) -> None:
    # UPDATE, then INSERT for a key the PBX never stored: works whether or
    # not this MikoPBX release declares `key` unique.
    for key, value in updates.items():
        if conn.execute("UPDATE m_PbxSettings SET value = ? WHERE key = ?",
                        (value, key)).rowcount == 0:
            conn.execute("INSERT INTO m_PbxSettings (key, value) VALUES (?, ?)", (key, value))


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _backup(db: Path, now: datetime) -> Path:
    """A consistent copy through SQLite's backup API (a file copy could catch
    a half-written page). Private: it holds the SMTP password."""
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    target = db.with_name(f"{db.name}.bak-{stamp}")
    n = 1
    while True:
        try:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            break
        except FileExistsError:
            target = db.with_name(f"{db.name}.bak-{stamp}.{n}")
            n += 1
        except OSError as exc:
            raise MikoPbxError(f"{target}: cannot write the backup ({exc.strerror}); "
                               "nothing was changed", os.EX_CANTCREAT) from None
    # A second connection: SQLite refuses to back up from a connection that
    # holds the write lock, and our lock already keeps other writers out.
    source = sqlite3.connect(db, timeout=BUSY_TIMEOUT)
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)
    except BaseException:
        copy.close()
        target.unlink(missing_ok=True)
        raise
    finally:
        source.close()
        copy.close()
    return target
