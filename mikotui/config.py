"""Settings: frozen dataclasses <-> the TOML file.

Read with the stdlib `tomllib`; `tomlkit` is imported only when saving, so the
headless path stays light, and it edits the file in place so an admin's
comments survive a save. Every problem a person can fix names its key (and,
when the value came from a file, its line).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from mikotui import durable, enqueue

ENCRYPTIONS = ("none", "starttls", "ssl")
AUTHS = ("password", "oauth2")
OAUTH2_PROVIDERS = ("microsoft", "google", "yandex", "custom")
LANGUAGES = ("en", "ru")
DEFAULT_SENDER_NAME = "MikoPBX notification"
DEFAULT_CONFIG = Path(enqueue.DEFAULT_CONFIG)
# Who of the employees gets a missed call, by where the caller is.
MISSED_CALL_RULES = ("all", "external", "internal", "off")
# A caller number this short is an extension of ours (MikoPBX numbers them so).
DEFAULT_INTERNAL_PATTERN = "[0-9]{2,5}"
# Fields that take a list of addresses: "a@x, b@y" (as MikoPBX's fields
# accept) or a TOML array; kept as the comma-separated string.
ADDRESS_FIELDS = ("notifications.admin_email", "missed_call.email", "voicemail.email",
                  "employees.email")


class ConfigError(Exception):
    """A config a person must fix: names the file, key and line when known.
    A file with wrong values carries every one of them as `problems`, and
    `settings` as read with those values left at their defaults (so
    `config check` can go on and report the rest)."""

    def __init__(
        self, message: str, *, key: str | None = None, line: int | None = None,
        path: Path | str | None = None, problems: tuple[Problem, ...] = (),
        settings: Settings | None = None,
    ) -> None:
        self.message = message
        self.key = key
        self.line = line
        self.path = Path(path) if path else None
        self.problems = problems
        self.settings = settings
        where = []
        if self.path:
            where.append(str(self.path) + (f":{line}" if line else ""))
        if key:
            where.append(key)
        super().__init__(": ".join([*where, message]))


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a config, as a catalog code ("problem.<code>" in
    i18n) with its arguments, so the CLI and the TUI each show it in their
    language. `level` is "error" or "warning"."""

    key: str
    code: str
    args: Mapping[str, object] = field(default_factory=dict, hash=False)
    level: str = "error"
    line: int | None = None

    def text(self, lang: str = "en") -> str:
        from mikotui import i18n

        return i18n.text(lang, f"problem.{self.code}", **self.args)

    @property
    def message(self) -> str:
        return self.text("en")

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


class EndpointError(ValueError):
    """A host/encryption that cannot be connected to, as a Problem code."""

    def __init__(self, code: str, **args: object) -> None:
        self.code, self.values = code, args
        super().__init__(Problem("smtp.host", code, args).message)


# --- the sections ----------------------------------------------------------------

@dataclass(frozen=True)
class OAuth2:
    """[smtp.oauth2]: who signs the mailbox in. The presets know the URLs and
    scope (mikotui/oauth2.py); a non-empty URL or scope here overrides them.
    The tokens themselves never live in this file (see `token_file`)."""

    provider: str = "microsoft"
    client_id: str = ""
    client_secret: str = ""  # empty for a public client
    tenant: str = "common"  # microsoft only
    authorization_url: str = ""
    token_url: str = ""
    device_authorization_url: str = ""
    revocation_url: str = ""
    scope: str = ""
    token_file: str = ""  # empty -> oauth2-token.json beside the spool folder


@dataclass(frozen=True)
class Smtp:
    host: str = "smtp.gmail.com"
    port: int = 587
    encryption: str = "starttls"
    verify_certificate: bool = True
    username: str = ""
    password: str = ""
    sender_address: str = ""
    sender_name: str = ""
    timeout: float = 30
    allow_insecure_auth: bool = False
    auth: str = "password"  # "password" | "oauth2" (XOAUTH2 as `username`)
    oauth2: OAuth2 = field(default_factory=OAuth2)

    def endpoint(self) -> Endpoint:
        """Where and how we actually connect: `ssl://`/`tls://` and `:port` in
        the host override the separate fields, as MikoPBX users were told."""
        return parse_endpoint(self.host, self.port, self.encryption)

    def shown_endpoint(self) -> Endpoint:
        """The endpoint to name in a log or a mail: the fields as written when
        they do not parse (sending refuses them; saying them is still right)."""
        try:
            return self.endpoint()
        except ValueError:
            return Endpoint(self.host, self.port, self.encryption)

    @property
    def from_address(self) -> str:
        return self.sender_address or self.username

    @property
    def from_name(self) -> str:
        return self.sender_name or DEFAULT_SENDER_NAME


@dataclass(frozen=True)
class Notifications:
    enabled: bool = True  # the master switch: off, nothing at all is sent
    admin_email: str = "admin@mycompany.com"
    # One switch per kind (MikoPBX's Send*Notifications), under the master.
    missed_call: bool = True
    voicemail: bool = True
    system: bool = True
    login: bool = False


@dataclass(frozen=True)
class MissedCall:
    email: str = ""
    subject: str = ""
    body: str = ""
    footer: str = ""
    # A caller matching this (whole number) is internal, as is one with a card.
    internal_pattern: str = DEFAULT_INTERNAL_PATTERN


@dataclass(frozen=True)
class Voicemail:
    email: str = "admin@mycompany.com"
    subject: str = ""
    body: str = ""
    footer: str = ""
    max_attachment_mb: float = 10
    attachment_format: str = "mp3"  # mp3 | wav | original (audio.FORMATS)


@dataclass(frozen=True)
class Spool:
    path: str = enqueue.DEFAULT_SPOOL
    max_age_hours: float = 120


@dataclass(frozen=True)
class Ui:
    language: str = "en"


@dataclass(frozen=True)
class Employee:
    extension: str
    name: str = ""
    email: str = ""
    missed_calls: str = "all"  # one of MISSED_CALL_RULES
    voicemail: bool = True     # gets the voicemail left for a call they missed


SECTIONS: dict[str, type] = {
    "smtp": Smtp,
    "notifications": Notifications,
    "missed_call": MissedCall,
    "voicemail": Voicemail,
    "spool": Spool,
    "ui": Ui,
}


@dataclass(frozen=True)
class Settings:
    smtp: Smtp = field(default_factory=Smtp)
    notifications: Notifications = field(default_factory=Notifications)
    missed_call: MissedCall = field(default_factory=MissedCall)
    voicemail: Voicemail = field(default_factory=Voicemail)
    spool: Spool = field(default_factory=Spool)
    ui: Ui = field(default_factory=Ui)
    employees: tuple[Employee, ...] = ()
    # Keys we do not know, kept so a load -> save round trip loses nothing.
    unknown: Mapping[str, Any] = field(default_factory=dict, compare=False)
    # Where the values came from: dotted key -> line, for error messages.
    path: Path | None = field(default=None, compare=False)
    lines: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)

    def spool_dir(self) -> Path:
        """Relative spool paths are relative to the config file's folder."""
        return Path(enqueue.spool_root(self.path, self.spool.path))

    def token_path(self) -> Path:
        """The OAuth2 token file: `smtp.oauth2.token_file` (relative to the
        config's folder), else beside the spool folder."""
        name = self.smtp.oauth2.token_file
        if not name:
            return self.spool_dir().parent / "oauth2-token.json"
        p = Path(name).expanduser()
        if not p.is_absolute():
            p = (self.path.parent if self.path else Path.cwd()) / p
        return Path(os.path.abspath(p))

    def employee(self, extension: str) -> Employee | None:
        for e in self.employees:
            if e.extension == extension:
                return e
        return None


def defaults(language: str = "en") -> Settings:
    """A fresh config: MikoPBX's defaults with the templates in `language`."""
    from mikotui import i18n

    lang = language if language in LANGUAGES else "en"
    t = i18n.default_templates(lang)
    return Settings(
        missed_call=MissedCall(**t["missed_call"]),
        voicemail=Voicemail(**t["voicemail"]),
        ui=Ui(language=lang),
    )


def with_language(settings: Settings, lang: str) -> Settings:
    """Switch the language; templates still at the old language's defaults
    follow it, edited ones are left alone."""
    from mikotui import i18n

    if lang not in LANGUAGES or lang == settings.ui.language:
        return settings
    old = i18n.default_templates(settings.ui.language)
    new = i18n.default_templates(lang)
    changes = {}
    for section in ("missed_call", "voicemail"):
        tpl = getattr(settings, section)
        parts = {part: new[section][part] for part in ("subject", "body", "footer")
                 if getattr(tpl, part) == old[section][part]}
        changes[section] = replace(tpl, **parts)
    return replace(settings, ui=Ui(language=lang), **changes)


# --- endpoint ----------------------------------------------------------------

@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    encryption: str
    # Why the effective values differ from the fields, for the UI and transcript.
    note: str = ""

    def port_mistake(self) -> str:
        """The classic mistakes: "tls_port" when 465 (implicit TLS)
        is used without ssl, "plain_port" when 25 or 587 is used with ssl."""
        if self.port == 465 and self.encryption != "ssl":
            return "tls_port"
        if self.port in (25, 587) and self.encryption == "ssl":
            return "plain_port"
        return ""


_HOST_RE = re.compile(
    r"^(?:(?P<scheme>[A-Za-z]+)://)?"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+)"
    r"(?::(?P<port>\d+))?/?$"
)
_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$"
)


def parse_endpoint(host: str, port: int, encryption: str) -> Endpoint:
    if encryption not in ENCRYPTIONS:
        # Never guess: an unknown mode must not end up as a plain connection.
        raise EndpointError("bad_encryption", choices=", ".join(ENCRYPTIONS),
                            value=repr(encryption))
    m = _HOST_RE.match(host.strip())
    if not m:
        raise EndpointError("not_host", value=repr(host))
    scheme = (m.group("scheme") or "").lower()
    name = m.group("host").strip("[]")
    notes = []
    if scheme == "ssl":
        if encryption != "ssl":
            notes.append("ssl:// in the host: implicit TLS")
        encryption = "ssl"
    elif scheme == "tls":
        if encryption != "starttls":
            notes.append("tls:// in the host: STARTTLS")
        encryption = "starttls"
    elif scheme:
        raise EndpointError("unknown_scheme", scheme=scheme)
    if m.group("port"):
        if int(m.group("port")) != port:
            notes.append(f"port {m.group('port')} from the host")
        port = int(m.group("port"))
    elif scheme == "ssl" and port == 587:
        # MikoPBX users wrote ssl://smtp.gmail.com and left port 587 behind.
        port = 465
        notes.append("port 465 for ssl://")
    return Endpoint(name, port, encryption, "; ".join(notes))


# --- load ----------------------------------------------------------------

def resolve_path(arg: str | os.PathLike[str] | None = None) -> Path:
    """--config, else $MIKOTUI_CONFIG, else config/mikotui.toml under the cwd."""
    return Path(enqueue.config_path(arg))


def load(path: str | os.PathLike[str]) -> Settings:
    path = Path(path)
    _remove_dead_saves(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no config file here (create one with the TUI or copy "
                          "config/mikotui.toml)", path=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", path=path) from None
    return loads(text, path=path)


def load_valid(path: str | os.PathLike[str]) -> Settings:
    """`load`, refusing a config that `validate` finds errors in: for commands
    that would act on it (send, export). One ConfigError names them all."""
    settings = load(path)
    found = errors(validate(settings))
    if found:
        listed = "; ".join(str(p) for p in found)
        raise ConfigError(f"{listed} (see `mikotui config check`)", path=path)
    return settings


_TOML_POS = re.compile(r"\(at line (\d+), column (\d+)\)")


def loads(text: str, *, path: Path | None = None) -> Settings:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = _TOML_POS.search(msg)
        line = int(m.group(1)) if m else None
        if m:
            msg = f"{_TOML_POS.sub('', msg).strip()} (line {m.group(1)}, column {m.group(2)})"
        raise ConfigError(f"broken TOML: {msg}", line=line, path=path) from None
    lines = _locate_keys(text)
    return from_dict(data, path=path, lines=lines)


def from_dict(data: Mapping[str, Any], *, path: Path | None = None,
              lines: Mapping[str, int] | None = None) -> Settings:
    """Settings from parsed TOML. Every wrong value is reported at once (one
    ConfigError with all of them), not just the first."""
    lines = dict(lines or {})
    lang = data.get("ui", {}).get("language", "en") if isinstance(data.get("ui"), dict) else "en"
    base = defaults(lang if lang in LANGUAGES else "en")
    unknown: dict[str, Any] = {}
    built: dict[str, Any] = {}
    problems: list[Problem] = []

    def fail(key: str, code: str, **args: object) -> None:
        problems.append(Problem(key, code, args, line=lines.get(key)))

    for name, value in data.items():
        if name == "employees":
            continue
        if name not in SECTIONS:
            unknown[name] = value
        elif not isinstance(value, dict):
            fail(name, "not_table", name=name)
        else:
            built[name] = _section(getattr(base, name), name, value, unknown, fail)

    employees = []
    raw = data.get("employees", [])
    if not isinstance(raw, list):
        fail("employees", "not_cards")
        raw = []
    for i, item in enumerate(raw):
        key = f"employees[{i}]"
        if not isinstance(item, dict):
            fail(key, "not_card")
        elif "extension" not in item:
            fail(key, "no_extension")
        else:
            employees.append(_section(Employee(extension=""), key, item, unknown, fail))
    settings = replace(base, **built, employees=tuple(employees), unknown=unknown,
                       path=path, lines=lines)
    if problems:
        first = problems[0]
        message = "; ".join(
            f"{p.key}: {p.message}" + (f" (line {p.line})" if p.line else "") for p in problems
        ) if len(problems) > 1 else first.message
        key, line = (first.key, first.line) if len(problems) == 1 else (None, None)
        raise ConfigError(message, key=key, line=line, path=path, problems=tuple(problems),
                          settings=settings)
    return settings


_WRONG = object()  # a value _coerce refused; the field keeps its default


def _section(section: Any, name: str, value: Mapping[str, Any],
             unknown: dict[str, Any], fail: Callable[..., None]) -> Any:
    kinds = {f.name: f.type for f in fields(section)}
    changes = {}
    for k, v in value.items():
        key = f"{name}.{k}"
        if k not in kinds:
            unknown.setdefault(name, {})[k] = v
            continue
        nested = getattr(section, k)
        if dataclasses.is_dataclass(nested):  # a sub-table such as [smtp.oauth2]
            if isinstance(v, dict):
                changes[k] = _section(nested, key, v, unknown, fail)
            else:
                fail(key, "not_table", name=f"[{key}]")
            continue
        if isinstance(v, list) and _takes_addresses(key):
            v = _address_array(key, v, fail)
            if v is _WRONG:
                continue
        coerced = _coerce(key, kinds[k], v, fail)
        if coerced is not _WRONG:
            changes[k] = coerced
    return replace(section, **changes)


def _takes_addresses(key: str) -> bool:
    return re.sub(r"\[\d+\]", "", key) in ADDRESS_FIELDS


def _address_array(key: str, value: list[Any], fail: Callable[..., None]) -> Any:
    if not all(isinstance(a, str) for a in value):
        fail(key, "not_address_list", value=repr(value))
        return _WRONG
    return ", ".join(a.strip() for a in value if a.strip())


def addresses(value: str) -> tuple[str, ...]:
    """The addresses in an address field, as written: "a@x, b@y" -> both."""
    return tuple(a.strip() for a in value.split(",") if a.strip())


def _coerce(key: str, kind: Any, v: Any, fail: Callable[..., None]) -> Any:
    kind = kind if isinstance(kind, str) else kind.__name__
    if kind == "bool":
        if isinstance(v, bool):
            return v
        code = "not_bool"
    elif kind == "int":
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        if isinstance(v, str) and v.strip().isdigit():
            return int(v)
        code = "not_int"
    elif kind == "float":
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return v
        code = "not_number"
    elif isinstance(v, (int, float)) and not isinstance(v, bool) and key.endswith("extension"):
        return str(v)
    elif isinstance(v, str):
        return v
    else:
        code = "not_string"
    fail(key, code, value=_shown(key, v))
    return _WRONG


def _shown(key: str, value: Any) -> str:
    """A wrong value as an error may show it: never the password itself."""
    if key in ("smtp.password", "smtp.oauth2.client_secret"):
        return f"a {type(value).__name__} (quote it)"
    return repr(value)


_TABLE_RE = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.-]+)\s*\]\]?")
_KEY_RE = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")


def _locate_keys(text: str) -> dict[str, int]:
    """Dotted key -> 1-based line, for errors. tomllib keeps no positions, so
    this reads the simple shapes our config uses (tables, arrays of tables)."""
    out: dict[str, int] = {}
    table = ""
    counts: dict[str, int] = {}
    in_multiline = False
    for no, line in enumerate(text.splitlines(), 1):
        if in_multiline:
            if line.count('"""') % 2 == 1 or line.count("'''") % 2 == 1:
                in_multiline = False
            continue
        if m := _TABLE_RE.match(line):
            name = m.group(1)
            if line.lstrip().startswith("[["):
                idx = counts.get(name, 0)
                counts[name] = idx + 1
                table = f"{name}[{idx}]"
            else:
                table = name
            out.setdefault(table, no)
            continue
        if m := _KEY_RE.match(line):
            out.setdefault(f"{table}.{m.group(1)}" if table else m.group(1), no)
            rest = line[m.end():]
            if rest.count('"""') % 2 == 1 or rest.count("'''") % 2 == 1:
                in_multiline = True
    return out


# --- validate ----------------------------------------------------------------

_EMAIL_RE = re.compile(r"^[^@\s<>(),;:\"\[\]\\]+@[^@\s<>(),;:\"\[\]\\]+\.[^@\s<>(),;:\"\[\]\\]+$")


def is_email(value: str) -> bool:
    return bool(_EMAIL_RE.match(value)) and not any(ord(c) < 32 for c in value)


def validate(settings: Settings) -> list[Problem]:
    """Every problem at once, each with its key. Errors block saving and
    sending; warnings are shown but allowed."""
    from mikotui import templates

    problems: list[Problem] = []

    def add(key: str, code: str, level: str = "error", **args: object) -> None:
        problems.append(Problem(key, code, args, level, settings.lines.get(key)))

    s = settings.smtp
    if not s.host.strip():
        add("smtp.host", "empty")
    else:
        try:
            # The host on its own: a bad encryption is smtp.encryption's problem.
            known = s.encryption if s.encryption in ENCRYPTIONS else "none"
            ep = parse_endpoint(s.host, s.port, known)
            if not (_HOSTNAME_RE.match(ep.host) or _is_ip(ep.host)):
                add("smtp.host", "bad_host", value=repr(ep.host))
            elif not 1 <= ep.port <= 65535 and ep.port != s.port:
                # Only a port written in the host is the host's problem; the
                # port field's own check below names the right key.
                add("smtp.host", "host_port_range", value=ep.port)
        except EndpointError as exc:
            add("smtp.host", exc.code, **exc.values)
    if not 1 <= s.port <= 65535:
        add("smtp.port", "port_range", value=s.port)
    if s.encryption not in ENCRYPTIONS:
        add("smtp.encryption", "one_of", choices=", ".join(ENCRYPTIONS), value=repr(s.encryption))
    if not s.timeout > 0:
        add("smtp.timeout", "timeout_positive", value=s.timeout)
    if s.auth not in AUTHS:
        add("smtp.auth", "one_of", choices=", ".join(AUTHS), value=repr(s.auth))
    elif s.auth == "oauth2":
        _validate_oauth2(s, add)
    if s.password and not s.username:
        add("smtp.password", "password_unused", "warning")
    if s.password and _readable_by_others(settings.path):
        add("smtp.password", "password_exposed", "warning", path=settings.path)
    if s.oauth2.client_secret and _readable_by_others(settings.path):
        add("smtp.oauth2.client_secret", "secret_exposed", "warning", path=settings.path)
    if s.encryption == "none" and s.username and not s.allow_insecure_auth:
        add("smtp.encryption", "insecure_login", "warning")
    if s.sender_address and not is_email(s.sender_address):
        add("smtp.sender_address", "bad_email", value=repr(s.sender_address))
    for key, value in (
        ("notifications.admin_email", settings.notifications.admin_email),
        ("missed_call.email", settings.missed_call.email),
        ("voicemail.email", settings.voicemail.email),
    ):
        for bad in bad_addresses(value):
            add(key, "bad_email", value=repr(bad))
    if not s.sender_address and s.username and not is_email(s.username):
        add("smtp.sender_address", "login_not_address")
    if not s.from_address:
        add("smtp.sender_address", "no_sender", "warning")
    if _has_control(s.sender_name):
        add("smtp.sender_name", "one_line")
    if not settings.notifications.admin_email:
        add("notifications.admin_email", "no_admin", "warning")

    for section in ("missed_call", "voicemail"):
        tpl = getattr(settings, section)
        known = templates.parameter_names(section)
        for part in ("subject", "body", "footer"):
            for token in templates.unknown_parameters(getattr(tpl, part), known):
                guess = templates.suggest(token, known)
                add(f"{section}.{part}", "unknown_parameter_guess" if guess else "unknown_parameter",
                    "warning", token=token, guess=guess)
        if _has_control(tpl.subject):
            add(f"{section}.subject", "one_line")
        elif not tpl.subject.strip():
            add(f"{section}.subject", "no_subject", "warning")
    if not internal_pattern(settings.missed_call.internal_pattern):
        add("missed_call.internal_pattern", "bad_pattern",
            value=repr(settings.missed_call.internal_pattern),
            default=repr(DEFAULT_INTERNAL_PATTERN))
    if settings.voicemail.max_attachment_mb < 0:
        add("voicemail.max_attachment_mb", "not_negative")
    if settings.voicemail.attachment_format not in ("mp3", "wav", "original"):
        add("voicemail.attachment_format", "one_of", choices="mp3, wav, original",
            value=repr(settings.voicemail.attachment_format))
    if not settings.spool.path.strip():
        add("spool.path", "empty")
    if not settings.spool.max_age_hours > 0:
        add("spool.max_age_hours", "positive", value=settings.spool.max_age_hours)
    if settings.ui.language not in LANGUAGES:
        add("ui.language", "one_of", choices=", ".join(LANGUAGES), value=repr(settings.ui.language))

    for p in employee_problems(settings.employees):
        add(p.key, p.code, p.level, **p.args)

    # A misspelt name is an error: its value is silently not used (a card under
    # [[employee]] routes nobody). The file keeps it as written on save.
    for section, value in settings.unknown.items():
        if section.split(".")[0] in SECTIONS or section.startswith("employees["):
            kind = OAuth2 if section == "smtp.oauth2" else SECTIONS.get(section, Employee)
            known = [f.name for f in fields(kind)]
            for k in value:
                guess = _guess(k, known)
                add(f"{section}.{k}", "unknown_key_guess" if guess else "unknown_key", guess=guess)
        else:
            guess = _guess(section, [*SECTIONS, "employees"])
            problems.append(Problem(
                section, "unknown_section_guess" if guess else "unknown_section",
                {"name": _table(section, isinstance(value, list)),
                 "guess": _table(guess, guess == "employees") if guess else None},
                "error", settings.lines.get(section) or settings.lines.get(f"{section}[0]")))
    return problems


def employee_problems(employees: tuple[Employee, ...]) -> list[Problem]:
    """The cards' own problems, keyed employees[i].field (also what the
    Employees screen shows beside a card)."""
    problems = []
    seen: dict[str, int] = {}
    for i, e in enumerate(employees):
        key = f"employees[{i}]"
        if not e.extension.strip():
            problems.append(Problem(f"{key}.extension", "empty"))
        elif e.extension in seen:
            problems.append(Problem(f"{key}.extension", "duplicate_extension", {
                "extension": e.extension, "other": f"employees[{seen[e.extension]}]"}))
        else:
            seen[e.extension] = i
        problems += [Problem(f"{key}.email", "bad_email", {"value": repr(bad)})
                     for bad in bad_addresses(e.email)]
        if e.missed_calls not in MISSED_CALL_RULES:
            problems.append(Problem(f"{key}.missed_calls", "one_of", {
                "choices": ", ".join(MISSED_CALL_RULES), "value": repr(e.missed_calls)}))
    return problems


def bad_addresses(value: str) -> list[str]:
    """The addresses of an address field that are not addresses, each alone."""
    return [a for a in addresses(value) if not is_email(a)]


@functools.lru_cache(maxsize=8)
def internal_pattern(pattern: str) -> re.Pattern[str] | None:
    """The compiled [missed_call] internal_pattern; None when it is broken."""
    try:
        return re.compile(pattern)
    except (re.error, RecursionError, OverflowError):
        return None


def _table(name: str, array: bool) -> str:
    return f"[[{name}]]" if array else f"[{name}]"


def _guess(name: str, known: list[str]) -> str | None:
    import difflib

    match = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return match[0] if match else None


def _validate_oauth2(s: Smtp, add: Callable[..., None]) -> None:
    o = s.oauth2
    if not s.username:
        add("smtp.username", "oauth2_mailbox")
    if o.provider not in OAUTH2_PROVIDERS:
        add("smtp.oauth2.provider", "one_of", choices=", ".join(OAUTH2_PROVIDERS),
            value=repr(o.provider))
    elif o.provider == "custom" and not o.token_url:
        add("smtp.oauth2.token_url", "oauth2_token_url")
    if not o.client_id:
        add("smtp.oauth2.client_id", "oauth2_client_id", "warning")
    for name in ("authorization_url", "token_url", "device_authorization_url",
                 "revocation_url"):
        url = getattr(o, name)
        if url and not _safe_url(url):
            add(f"smtp.oauth2.{name}", "oauth2_url", value=repr(url))
    for name in ("scope", "tenant"):
        if _has_control(getattr(o, name)):
            add(f"smtp.oauth2.{name}", "one_line")


def _safe_url(url: str) -> bool:
    """Tokens travel only over TLS, or to this machine itself (a test server)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if _has_control(url) or not parts.hostname:
        return False
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.level == "error"]


def untrusted(settings: Settings) -> str:
    """Why a config holding the SMTP password must not be used to send
    ("" when it may): another user owns it or can change it, and could
    point the server (and the password) anywhere. One line with the fix,
    as msmtp and OpenSSH say it."""
    path = settings.path
    if not (settings.smtp.password and path):
        return ""
    try:
        st = os.stat(path)
    except OSError:
        return ""
    import pwd

    def user(uid: int) -> str:
        try:
            return pwd.getpwuid(uid).pw_name
        except KeyError:
            return f"uid {uid}"

    me = os.geteuid()
    if st.st_uid != me:
        return (f"{path} holds the SMTP password but belongs to {user(st.st_uid)}, not to "
                f"{user(me)} who runs mikotui (run it as {user(st.st_uid)}, or: "
                f"chown {user(me)} {path}; chmod 600 {path})")
    if st.st_mode & 0o022:
        return (f"{path} holds the SMTP password and others can change it "
                f"(mode {stat.S_IMODE(st.st_mode):o}; fix: chmod 600 {path})")
    return ""


def _remove_dead_saves(path: Path) -> None:
    """The temporary files of saves killed midway (.<name>.<pid>.tmp and
    .<name>.bak.<pid>.tmp) may hold the new password: removed once their
    process is gone. Best effort: the folder may not be ours to write."""
    folder = path.parent if str(path.parent) else Path(".")
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        match = _SAVE_TMP.fullmatch(name)
        if not match or match["name"] != path.name or _alive(int(match["pid"])):
            continue
        with contextlib.suppress(OSError):
            os.unlink(folder / name)


_SAVE_TMP = re.compile(r"\.(?P<name>.+?)(?:\.bak)?\.(?P<pid>[0-9]+)\.tmp")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # someone else's live process (or not a pid we can ask about)
    return True


def _readable_by_others(path: Path | None) -> bool:
    try:
        return bool(path and path.stat().st_mode & 0o077)
    except OSError:
        return False


def _has_control(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


# --- save ----------------------------------------------------------------

def to_dict(settings: Settings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in SECTIONS:
        section = dataclasses.asdict(getattr(settings, name))
        extra = settings.unknown.get(name)
        if isinstance(extra, dict):
            section.update(extra)
        for sub, value in section.items():
            extra = settings.unknown.get(f"{name}.{sub}")
            if isinstance(value, dict) and isinstance(extra, dict):
                value.update(extra)
        out[name] = section
    for name, value in settings.unknown.items():
        if name.split(".")[0] not in SECTIONS and name != "employees":
            out[name] = value
    out["employees"] = [_lean_card(dataclasses.asdict(e)) for e in settings.employees]
    for i, e in enumerate(out["employees"]):
        extra = settings.unknown.get(f"employees[{i}]")
        if isinstance(extra, dict):
            e.update(extra)
    return out


_CARD_RULES = {"missed_calls": "all", "voicemail": True}


def _lean_card(card: dict[str, Any]) -> dict[str, Any]:
    """A card as written: a who-gets-what rule at its default is left out,
    so the cards of a file written before the rules existed stay as they are."""
    return {k: v for k, v in card.items()
            if not (k in _CARD_RULES and v == _CARD_RULES[k] and type(v) is type(_CARD_RULES[k]))}


def dumps(settings: Settings, previous: str | None = None) -> str:
    """The file's text for `settings`. Given the file as it is now, that text
    is edited in place (tomlkit), so what an admin wrote by hand stays: their
    comments, blank lines and key order; only values that changed are
    rewritten. We chose this over writing our own comments for every key
    because those would replace the admin's own notes on every save."""
    import tomlkit

    data = to_dict(settings)
    employees = data.pop("employees")
    doc = None
    if previous is not None:
        try:
            doc = tomlkit.parse(previous)
        except Exception:  # noqa: BLE001 - a file we cannot edit is written anew
            doc = None
    if doc is None:
        doc = tomlkit.document()
    for name in [k for k in doc if k not in data and k != "employees"]:
        del doc[name]
    for name, value in data.items():
        if not isinstance(value, dict):
            _put(doc, name, value)
            continue
        _merge(doc, name, value)
    old = doc.get("employees")
    if old is None or [_lean_card(c) if isinstance(c, dict) else c
                       for c in old.unwrap()] != employees:
        if old is not None:
            del doc["employees"]
        if employees:
            # One [[employees]] block per card, at the end, as people write them.
            cards = tomlkit.aot()
            for card in employees:
                table = tomlkit.table()
                for key, item in card.items():
                    _put(table, key, item)
                cards.append(table)
            doc["employees"] = cards
    return tomlkit.dumps(doc)


def _merge(parent: Any, name: str, value: dict[str, Any]) -> None:
    """The table `name` of `parent` made to hold `value`, key by key; a
    sub-table ([smtp.oauth2]) the same way, so its comments stay too."""
    import tomlkit

    if not isinstance(parent.get(name), dict):
        parent[name] = tomlkit.table()
    table = parent[name]
    for key in [k for k in table if k not in value]:
        del table[key]
    for key, item in value.items():
        if isinstance(item, dict):
            _merge(table, key, item)
        else:
            _put(table, key, item)


def _put(table: Any, key: str, value: Any) -> None:
    """Set `key` unless it already holds `value` (keeps its formatting);
    text with line breaks as a multi-line string, as a template is read."""
    import tomlkit

    current = table.get(key)
    if current is not None and _plain(current) == value and type(_plain(current)) is type(value):
        return
    if isinstance(value, str) and "\n" in value and "\r" not in value:
        table[key] = tomlkit.string(value, multiline=True)
    else:
        table[key] = value


def _plain(item: Any) -> Any:
    return item.unwrap() if hasattr(item, "unwrap") else item


def save(settings: Settings, path: str | os.PathLike[str]) -> Path:
    """Atomic: temp file in the same folder, fsync, rename, fsync the folder.
    The previous file is kept as <name>.bak. 0600 whenever a password is in it.
    A crash at any point leaves the old file or the new one, never a torn one."""
    path = Path(path)
    try:
        previous: str | None = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        previous = None
    text = dumps(settings, previous).encode("utf-8")
    folder = path.parent if str(path.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    secret = bool(settings.smtp.password or settings.smtp.oauth2.client_secret)
    mode = 0o600 if secret else 0o644
    _remove_dead_saves(path)
    tmp = folder / f".{path.name}.{os.getpid()}.tmp"
    durable.write_file(tmp, text, mode)
    try:
        if path.exists():
            bak = folder / f"{path.name}.bak"
            # A hard link keeps the old file whole under .bak before the rename.
            # The old file may hold a password whatever the new one holds, so
            # the backup is always private.
            bak_tmp = folder / f".{path.name}.bak.{os.getpid()}.tmp"
            try:
                bak_tmp.unlink(missing_ok=True)
                os.link(path, bak_tmp)
                os.chmod(bak_tmp, 0o600)
                os.replace(bak_tmp, bak)
            except OSError:
                bak_tmp.unlink(missing_ok=True)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    durable.fsync_dir(folder)
    return path
