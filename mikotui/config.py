"""Settings: frozen dataclasses <-> the TOML file (DESIGN §3).

Read with the stdlib `tomllib`; `tomli_w` is imported only when saving, so the
headless path stays light. Every problem a person can fix names its key (and,
when the value came from a file, its line).
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from mikotui import durable

ENCRYPTIONS = ("none", "starttls", "ssl")
LANGUAGES = ("en", "ru")
DEFAULT_SENDER_NAME = "MikoPBX notification"
DEFAULT_CONFIG = Path("config") / "mikotui.toml"


class ConfigError(Exception):
    """A config a person must fix: names the file, key and line when known."""

    def __init__(
        self, message: str, *, key: str | None = None, line: int | None = None,
        path: Path | str | None = None,
    ) -> None:
        self.message = message
        self.key = key
        self.line = line
        self.path = Path(path) if path else None
        where = []
        if self.path:
            where.append(str(self.path) + (f":{line}" if line else ""))
        if key:
            where.append(key)
        super().__init__(": ".join([*where, message]))


@dataclass(frozen=True)
class Problem:
    """One thing `validate` found. `level` is "error" or "warning"."""

    key: str
    message: str
    level: str = "error"
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


# --- the sections ----------------------------------------------------------------

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
    enabled: bool = True
    admin_email: str = "admin@mycompany.com"


@dataclass(frozen=True)
class MissedCall:
    email: str = ""
    subject: str = ""
    body: str = ""
    footer: str = ""


@dataclass(frozen=True)
class Voicemail:
    email: str = "admin@mycompany.com"
    subject: str = ""
    body: str = ""
    footer: str = ""
    max_attachment_mb: float = 10


@dataclass(frozen=True)
class Spool:
    path: str = "../var/spool"
    max_age_hours: float = 120


@dataclass(frozen=True)
class Ui:
    language: str = "en"


@dataclass(frozen=True)
class Employee:
    extension: str
    name: str = ""
    email: str = ""


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
        p = Path(self.spool.path).expanduser()
        if not p.is_absolute():
            base = self.path.parent if self.path else Path.cwd()
            p = base / p
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
        """The classic mistakes (SPEC §6): "tls_port" when 465 (implicit TLS)
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
        raise ValueError(f"encryption must be one of {', '.join(ENCRYPTIONS)}, "
                         f"got {encryption!r}")
    m = _HOST_RE.match(host.strip())
    if not m:
        raise ValueError(f"not a host name: {host!r}")
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
        raise ValueError(f"unknown scheme {scheme}:// (use ssl:// or tls://)")
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
    if arg:
        return Path(arg)
    env = os.environ.get("MIKOTUI_CONFIG")
    if env:
        return Path(env)
    return DEFAULT_CONFIG


def load(path: str | os.PathLike[str]) -> Settings:
    path = Path(path)
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
    lines = dict(lines or {})
    lang = data.get("ui", {}).get("language", "en") if isinstance(data.get("ui"), dict) else "en"
    base = defaults(lang if lang in LANGUAGES else "en")
    unknown: dict[str, Any] = {}
    built: dict[str, Any] = {}

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(message, key=key, line=lines.get(key), path=path)

    for name, value in data.items():
        if name == "employees":
            continue
        if name not in SECTIONS:
            unknown[name] = value
            continue
        if not isinstance(value, dict):
            raise fail(name, f"must be a table [{name}]")
        section = getattr(base, name)
        built[name] = _section(section, name, value, unknown, fail)

    employees = []
    raw = data.get("employees", [])
    if not isinstance(raw, list):
        raise fail("employees", "must be an array of tables [[employees]]")
    for i, item in enumerate(raw):
        key = f"employees[{i}]"
        if not isinstance(item, dict):
            raise fail(key, "must be a table")
        if "extension" not in item:
            raise fail(key, "an employee needs an extension")
        emp = _section(Employee(extension=""), key, item, unknown, fail)
        employees.append(emp)
    return replace(base, **built, employees=tuple(employees), unknown=unknown,
                   path=path, lines=lines)


def _section(section: Any, name: str, value: Mapping[str, Any],
             unknown: dict[str, Any], fail) -> Any:
    kinds = {f.name: f.type for f in fields(section)}
    changes = {}
    for k, v in value.items():
        key = f"{name}.{k}"
        if k not in kinds:
            unknown.setdefault(name, {})[k] = v
            continue
        changes[k] = _coerce(key, kinds[k], v, fail)
    return replace(section, **changes)


def _coerce(key: str, kind: Any, v: Any, fail) -> Any:
    kind = kind if isinstance(kind, str) else kind.__name__
    if kind == "bool":
        if isinstance(v, bool):
            return v
        raise fail(key, f"must be true or false, got {_shown(key, v)}")
    if kind == "int":
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        if isinstance(v, str) and v.strip().isdigit():
            return int(v)
        raise fail(key, f"must be a whole number, got {_shown(key, v)}")
    if kind == "float":
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return v
        raise fail(key, f"must be a number, got {_shown(key, v)}")
    if isinstance(v, (int, float)) and not isinstance(v, bool) and key.endswith("extension"):
        return str(v)
    if not isinstance(v, str):
        raise fail(key, f"must be a string, got {_shown(key, v)}")
    return v


def _shown(key: str, value: Any) -> str:
    """A wrong value as an error may show it: never the password itself."""
    if key == "smtp.password":
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

    def add(key: str, message: str, level: str = "error") -> None:
        problems.append(Problem(key, message, level, settings.lines.get(key)))

    s = settings.smtp
    if not s.host.strip():
        add("smtp.host", "must not be empty")
    else:
        try:
            # The host on its own: a bad encryption is smtp.encryption's problem.
            known = s.encryption if s.encryption in ENCRYPTIONS else "none"
            ep = parse_endpoint(s.host, s.port, known)
            if not (_HOSTNAME_RE.match(ep.host) or _is_ip(ep.host)):
                add("smtp.host", f"not a valid host name: {ep.host!r}")
            elif not 1 <= ep.port <= 65535 and ep.port != s.port:
                # Only a port written in the host is the host's problem; the
                # port field's own check below names the right key.
                add("smtp.host", f"port must be 1..65535, got {ep.port}")
        except ValueError as exc:
            add("smtp.host", str(exc))
    if not 1 <= s.port <= 65535:
        add("smtp.port", f"must be 1..65535, got {s.port}")
    if s.encryption not in ENCRYPTIONS:
        add("smtp.encryption", f"must be one of {', '.join(ENCRYPTIONS)}, got {s.encryption!r}")
    if not s.timeout > 0:
        add("smtp.timeout", f"must be more than 0 seconds, got {s.timeout}")
    if s.password and not s.username:
        add("smtp.password", "a password without a username is never used", "warning")
    if s.password and _readable_by_others(settings.path):
        add("smtp.password", f"{settings.path} holds a password and others can read it "
            f"(chmod 600 {settings.path}, or save it from mikotui)", "warning")
    if s.encryption == "none" and s.username and not s.allow_insecure_auth:
        add("smtp.encryption", "login over an unencrypted connection is refused "
            "(set allow_insecure_auth = true to allow it)", "warning")
    for key, value in (
        ("smtp.sender_address", s.sender_address),
        ("notifications.admin_email", settings.notifications.admin_email),
        ("missed_call.email", settings.missed_call.email),
        ("voicemail.email", settings.voicemail.email),
    ):
        if value and not is_email(value):
            add(key, f"not a valid email address: {value!r}")
    if not s.sender_address and s.username and not is_email(s.username):
        add("smtp.sender_address", "empty, and the username is not an address to send from")
    if not s.from_address:
        add("smtp.sender_address", "no sender: set sender_address or username", "warning")
    if _has_control(s.sender_name):
        add("smtp.sender_name", "must be one line")
    if not settings.notifications.admin_email:
        add("notifications.admin_email", "empty: system alerts and test mail have nowhere to go",
            "warning")

    for section in ("missed_call", "voicemail"):
        tpl = getattr(settings, section)
        known = templates.parameter_names(section)
        for part in ("subject", "body", "footer"):
            for token in templates.unknown_parameters(getattr(tpl, part), known):
                guess = templates.suggest(token, known)
                hint = f" → did you mean {guess}?" if guess else ""
                add(f"{section}.{part}", f"unknown parameter {token}{hint}", "warning")
        if _has_control(tpl.subject):
            add(f"{section}.subject", "must be one line")
        elif not tpl.subject.strip():
            add(f"{section}.subject", "empty: the mails will have no subject", "warning")
    if settings.voicemail.max_attachment_mb < 0:
        add("voicemail.max_attachment_mb", "must be 0 or more")
    if not settings.spool.path.strip():
        add("spool.path", "must not be empty")
    if not settings.spool.max_age_hours > 0:
        add("spool.max_age_hours", f"must be more than 0, got {settings.spool.max_age_hours}")
    if settings.ui.language not in LANGUAGES:
        add("ui.language", f"must be one of {', '.join(LANGUAGES)}, got {settings.ui.language!r}")

    seen: dict[str, int] = {}
    for i, e in enumerate(settings.employees):
        key = f"employees[{i}]"
        if not e.extension.strip():
            add(f"{key}.extension", "must not be empty")
        elif e.extension in seen:
            add(f"{key}.extension",
                f"extension {e.extension} is already used by employees[{seen[e.extension]}]")
        else:
            seen[e.extension] = i
        if e.email and not is_email(e.email):
            add(f"{key}.email", f"not a valid email address: {e.email!r}")

    for section, value in settings.unknown.items():
        if section in SECTIONS or section.startswith("employees["):
            for k in value:
                add(f"{section}.{k}", "unknown key (kept as it is)", "warning")
        else:
            add(section, "unknown key (kept as it is)", "warning")
    return problems


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.level == "error"]


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
        out[name] = section
    for name, value in settings.unknown.items():
        if name not in SECTIONS and name != "employees":
            out[name] = value
    out["employees"] = [dataclasses.asdict(e) for e in settings.employees]
    for i, e in enumerate(out["employees"]):
        extra = settings.unknown.get(f"employees[{i}]")
        if isinstance(extra, dict):
            e.update(extra)
    return out


def dumps(settings: Settings) -> str:
    import tomli_w

    data = to_dict(settings)
    employees = data.pop("employees")
    text = tomli_w.dumps(data, multiline_strings=True)
    # tomli_w writes short arrays of tables inline; cards read better as
    # [[employees]] blocks at the end, one per employee.
    for card in employees:
        text += "\n[[employees]]\n" + tomli_w.dumps(card, multiline_strings=True)
    return text


def save(settings: Settings, path: str | os.PathLike[str]) -> Path:
    """Atomic: temp file in the same folder, fsync, rename, fsync the folder.
    The previous file is kept as <name>.bak. 0600 whenever a password is in it.
    A crash at any point leaves the old file or the new one, never a torn one."""
    path = Path(path)
    text = dumps(settings).encode("utf-8")
    folder = path.parent if str(path.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    secret = bool(settings.smtp.password)
    mode = 0o600 if secret else 0o644
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
