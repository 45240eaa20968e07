"""A local capture SMTP server on aiosmtpd: every message it accepts lands in
a Maildir, nothing is relayed. `mikotui sandbox`, the TUI's `--sandbox` mode
and the tests all use this one class.

    with Sandbox(tmp_path / "mail", tls=True, auth=("user", "pass")) as sb:
        settings = sb.point(settings)      # send here instead of the real server
        ...
        sb.messages()                      # what arrived, oldest first

The server runs in its own thread with its own event loop (aiosmtpd's
`Controller`), so it serves a caller's asyncio loop, a Textual app or a plain
blocking test alike. `on_message` is called from that thread.
"""

from __future__ import annotations

import email
import email.policy
import logging
import mailbox
import socket
import ssl
import tempfile
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from mikotui.config import Settings

# Our own envelope headers, written above the message as it arrived, so the
# Maildir alone tells who sent it to whom (a reader may show them, which is
# what a sandbox is for).
ENVELOPE_FROM = "X-Sandbox-Envelope-From"
ENVELOPE_TO = "X-Sandbox-Envelope-To"
SIZE = "X-Sandbox-Size"
SERVER_NAME = "mikotui-sandbox"
# The TUI's sandbox: a server you configure against like a real one, with a
# login of its own, so a wrong port, mode or password fails as it would there.
LOGIN = "sandbox@localhost"
PORT = 2525
LOCAL_HOSTS = ("127.0.0.1", "localhost")
# A sender for a form that has none of its own (.test is reserved, RFC 2606).
SENDER = "pbx@sandbox.test"

# aiosmtpd warns about AUTH without TLS; in a local sandbox that is deliberate.
logging.getLogger("mail.log").setLevel(logging.ERROR)


@dataclass(frozen=True)
class CapturedMessage:
    path: Path
    mail_from: str
    rcpt_tos: tuple[str, ...]
    subject: str  # decoded
    size: int  # bytes as the client sent them
    received: datetime

    def parse(self) -> EmailMessage:
        with open(self.path, "rb") as f:
            return email.message_from_binary_file(f, policy=email.policy.default)  # type: ignore[return-value]

    def summary(self) -> str:
        """One line for a console: time, from, to, subject, size."""
        return (f"{self.received.astimezone():%H:%M:%S}  from {self.mail_from or '<>'}  "
                f"to {', '.join(self.rcpt_tos)}  \"{self.subject}\"  {self.size} bytes")


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (aiosmtpd cannot bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def self_signed_context(hostnames: tuple[str, ...] = ("localhost", "127.0.0.1")) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate for `hostnames`,
    made with `cryptography`; the key never touches a lasting file."""
    import ipaddress
    from datetime import timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_NAME)])
    alt: list[x509.GeneralName] = []
    for h in hostnames:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            alt.append(x509.DNSName(h))
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    # load_cert_chain reads only files; a private temp dir, gone right after.
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "sandbox.pem"
        p.write_bytes(pem)
        ctx.load_cert_chain(p)
    return ctx


class MaildirHandler:
    """aiosmtpd handler: store each message in a Maildir, then tell `on_message`."""

    def __init__(self, maildir: Path,
                 on_message: Callable[[CapturedMessage], None] | None = None) -> None:
        self.maildir = Path(maildir)
        self.box = mailbox.Maildir(self.maildir, create=True)
        # Maildir(create=True) makes cur/new/tmp only for a folder it makes
        # itself: an existing empty one answered every message with a 500.
        for sub in ("tmp", "new", "cur"):
            (self.maildir / sub).mkdir(mode=0o700, exist_ok=True)
        self.on_message = on_message
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw: bytes = envelope.original_content or b""
        received = datetime.now(UTC)
        head = (
            f"{ENVELOPE_FROM}: {envelope.mail_from or ''}\n"
            f"{ENVELOPE_TO}: {', '.join(envelope.rcpt_tos)}\n"
            f"{SIZE}: {len(raw)}\n"
            f"Received: from {session.host_name or 'unknown'} ({session.peer[0]}) "
            f"by {SERVER_NAME}; {format_datetime(received)}\n"
        ).encode("utf-8", "replace")
        # Maildir files use the local line ending, as mail readers expect.
        body = raw.replace(b"\r\n", b"\n")
        with self._lock:
            key = self.box.add(head + body)
        captured = read_captured(Path(self.box._path) / "new" / key)
        if self.on_message is not None:
            try:
                self.on_message(captured)
            except Exception:  # a listener's bug must not fail the client's send
                logging.getLogger(__name__).exception("on_message failed")
        return "250 OK stored"


def read_captured(path: Path) -> CapturedMessage:
    """A stored message's summary, from its own headers."""
    with open(path, "rb") as f:
        raw = f.read()
    end = raw.find(b"\n\n")
    headers = email.message_from_bytes(raw if end < 0 else raw[:end + 2])
    rcpts = tuple(r.strip() for r in str(headers.get(ENVELOPE_TO, "")).split(",") if r.strip())
    try:
        received = parsedate_to_datetime(str(headers["Received"]).rsplit(";", 1)[1].strip())
    except (IndexError, TypeError, ValueError):
        received = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    return CapturedMessage(
        path=path,
        mail_from=str(headers.get(ENVELOPE_FROM, "")).strip(),
        rcpt_tos=rcpts,
        subject=_decode(headers.get("Subject", "")),
        size=_int(headers.get(SIZE), len(raw)),
        received=received,
    )


def _int(value: Any, default: int) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        return default


def _decode(value: Any) -> str:
    try:
        return str(make_header(decode_header(str(value)))).strip()
    except (ValueError, LookupError):
        return str(value).strip()


class Sandbox:
    """The capture server. A context manager: `with Sandbox(maildir) as sb:`."""

    def __init__(self, maildir: Path, *, host: str = "127.0.0.1", port: int | None = None,
                 tls: bool = False, auth: tuple[str, str] | None = None,
                 on_message: Callable[[CapturedMessage], None] | None = None) -> None:
        self.maildir = Path(maildir)
        self.host = host
        self.port = port or 0
        self.tls = tls
        self.auth = auth
        self.handler = MaildirHandler(self.maildir, on_message)
        self._fixed_port = port is not None
        self._controller: Controller | None = None

    def start(self) -> Sandbox:
        if self._controller is not None:
            return self
        kwargs: dict[str, Any] = {"server_hostname": SERVER_NAME}
        if self.tls:
            kwargs["tls_context"] = self_signed_context(_cert_names(self.host))
        if self.auth:
            # Set here, not at import: test runners reset the filters per test.
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS",
                                    UserWarning)
            kwargs.update(authenticator=self._authenticate, auth_required=True,
                          auth_require_tls=self.tls)
        # A free port can be taken between our probe and the bind; try again.
        for attempt in range(5):
            port = self.port if self._fixed_port else free_port(self.host)
            try:
                _check_bindable(self.host, port)
            except OSError:
                if self._fixed_port or attempt == 4:
                    raise
                continue
            controller = Controller(self.handler, hostname=self.host, port=port, **kwargs)
            try:
                controller.start()
            except BaseException:
                controller.stop(no_assert=True)
                controller.loop.close()
                raise
            self.port, self._controller = port, controller
            return self
        raise RuntimeError("unreachable")

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _authenticate(self, server: Any, session: Any, envelope: Any,
                      mechanism: str, data: Any) -> AuthResult:
        ok = (isinstance(data, LoginPassword) and self.auth is not None
              and data.login.decode("utf-8", "replace") == self.auth[0]
              and data.password.decode("utf-8", "replace") == self.auth[1])
        # handled=False lets aiosmtpd answer 535 itself; True would hang the client.
        return AuthResult(success=ok, handled=False)

    def messages(self) -> list[CapturedMessage]:
        """Everything captured so far, oldest first."""
        found = []
        for sub in ("new", "cur"):
            folder = self.maildir / sub
            if folder.is_dir():
                found.extend(read_captured(p) for p in folder.iterdir() if p.is_file())
        return sorted(found, key=lambda m: (m.received, _maildir_order(m.path.name)))

    def point(self, settings: Settings) -> Settings:
        """A copy of `settings` that sends here: this host and port, STARTTLS
        without a certificate check when `tls` (the certificate is our own
        self-signed one), the sandbox's login if any."""
        s = settings.smtp
        from mikotui.config import is_email

        sender = s.sender_address or (s.username if is_email(s.username) else SENDER)
        user, password = self.auth or ("", "")
        smtp = replace(
            s, host=self.host, port=self.port,
            encryption="starttls" if self.tls else "none",
            verify_certificate=not self.tls and s.verify_certificate,
            username=user, password=password, sender_address=sender,
            allow_insecure_auth=bool(self.auth) and not self.tls,
        )
        return replace(settings, smtp=smtp)


def new_password() -> str:
    """A sandbox password: random, and plain to read off the banner."""
    import secrets

    return secrets.token_hex(6)


def pointed_at(settings: Settings) -> bool:
    """The config's SMTP settings are a sandbox login on this machine."""
    s = settings.smtp
    return s.username == LOGIN and s.host in LOCAL_HOSTS and bool(s.password)


def for_app(maildir: Path, settings: Settings,
            on_message: Callable[[CapturedMessage], None] | None = None) -> Sandbox:
    """The TUI's sandbox: STARTTLS, login `LOGIN`. A config already pointed
    at a sandbox keeps its port and password, so `make run`'s config works
    run after run; else port 2525 and a fresh password. Started, and moved to
    a free port when that one is taken."""
    if pointed_at(settings):
        port, password = settings.smtp.port, settings.smtp.password
    else:
        port, password = PORT, new_password()
    sandbox = Sandbox(maildir, port=port, tls=True, auth=(LOGIN, password),
                      on_message=on_message)
    try:
        return sandbox.start()
    except OSError:
        sandbox = Sandbox(maildir, tls=True, auth=(LOGIN, password), on_message=on_message)
        return sandbox.start()


def _check_bindable(host: str, port: int) -> None:
    """Raise OSError now if the port is taken: aiosmtpd would only notice after
    its whole ready timeout. Same options as asyncio's own bind."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))


def _cert_names(host: str) -> tuple[str, ...]:
    names = ["localhost", "127.0.0.1"]
    if host not in names and host not in ("", "0.0.0.0", "::"):
        names.append(host)
    return tuple(names)


def _maildir_order(name: str) -> tuple[int, int, int]:
    """Maildir names start `<seconds>.M<micro>P<pid>Q<n>.`: the order of arrival
    within a second."""
    import re

    m = re.match(r"(\d+)\.M(\d+)P\d+Q(\d+)", name)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else (0, 0, 0)
