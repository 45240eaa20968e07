"""Real SMTP servers on 127.0.0.1 for tests: aiosmtpd in a thread, with
certificates from `trustme`. Import from test modules:

    from smtp_servers import smtp_server, silent_server, closed_port, Replies

    with smtp_server("starttls", auth=("u", "p"), ca=ca) as srv:
        settings = srv.point(settings)          # host/port/encryption/login set
        ...
        srv.handler.messages                    # what arrived (parsed), in order

Modes: "plain" (no TLS offered), "starttls" (offered, not required), "ssl"
(implicit TLS). `Replies` makes the server answer chosen codes (451, 552, 550)
for given recipients, MAIL FROM or DATA. `silent_server()` accepts TCP and
never says a word. Clients trust the `ca` through SSL_CERT_FILE (see
`trust_ca`), which is what `ssl.create_default_context()` reads — so the
product and a `mikotui` subprocess trust it the same way.
"""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from mikotui.config import Settings
from mikotui.sandbox import free_port

SENDER = "pbx@example.com"


@dataclass
class Replies:
    """Chosen answers instead of 250: recipient -> "550 5.1.1 No such user",
    and optionally for MAIL FROM and for the end of DATA."""

    rcpt: dict[str, str] = field(default_factory=dict)
    mail: str | None = None
    data: str | None = None


@dataclass
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    message: EmailMessage


class RecordingHandler:
    """Keeps every accepted message (parsed as the server got it)."""

    def __init__(self, replies: Replies | None = None) -> None:
        self.replies = replies or Replies()
        self.messages: list[Received] = []
        self.auth_attempts: list[tuple[str, str]] = []  # (mechanism, login)
        self.arrived = threading.Event()

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        if self.replies.mail:
            return self.replies.mail
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        if address in self.replies.rcpt:
            return self.replies.rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.replies.data:
            return self.replies.data
        raw = envelope.original_content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        self.messages.append(Received(envelope.mail_from, tuple(envelope.rcpt_tos), raw, msg))
        self.arrived.set()
        return "250 2.0.0 OK queued"


@dataclass
class Server:
    host: str
    port: int
    mode: str
    auth: tuple[str, str] | None
    handler: RecordingHandler

    def point(self, settings: Settings, **smtp: Any) -> Settings:
        """`settings` sending here, checking certificates, 5 s timeout."""
        user, password = self.auth or ("", "")
        base = replace(settings.smtp, host=self.host, port=self.port,
                       encryption="none" if self.mode == "plain" else self.mode,
                       verify_certificate=True, username=user, password=password,
                       sender_address=SENDER, timeout=5, allow_insecure_auth=False)
        return replace(settings, smtp=replace(base, **smtp))


def new_ca() -> trustme.CA:
    return trustme.CA()


def trust_ca(ca: trustme.CA, folder: Path) -> dict[str, str]:
    """Write the CA where OpenSSL looks (SSL_CERT_FILE) and return that env."""
    path = folder / "test-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return {"SSL_CERT_FILE": str(path)}


def server_context(ca: trustme.CA, *names: str, **cert_options: Any) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*(names or ("127.0.0.1", "localhost")), **cert_options).configure_cert(ctx)
    return ctx


@contextmanager
def smtp_server(mode: str = "plain", *, auth: tuple[str, str] | None = None,
                ca: trustme.CA | None = None, tls_context: ssl.SSLContext | None = None,
                replies: Replies | None = None, **smtp_options: Any) -> Iterator[Server]:
    """A real aiosmtpd server on 127.0.0.1, stopped on exit."""
    if mode not in ("plain", "starttls", "ssl"):
        raise ValueError(mode)
    if mode != "plain" and tls_context is None:
        tls_context = server_context(ca or new_ca())
    handler = RecordingHandler(replies)
    kwargs: dict[str, Any] = {"server_hostname": "mx.test"}
    if mode == "starttls":
        kwargs["tls_context"] = tls_context
    elif mode == "ssl":
        kwargs["ssl_context"] = tls_context
    if auth:
        def authenticate(server: Any, session: Any, envelope: Any, mechanism: str,
                         data: Any) -> AuthResult:
            ok = isinstance(data, LoginPassword) and (
                data.login.decode(), data.password.decode()) == auth
            handler.auth_attempts.append((mechanism, data.login.decode()
                                          if isinstance(data, LoginPassword) else ""))
            # handled=False: aiosmtpd answers 535 itself (True makes clients hang).
            return AuthResult(success=ok, handled=False)

        kwargs["authenticator"] = authenticate
        # aiosmtpd does not count implicit TLS as TLS for AUTH.
        kwargs["auth_require_tls"] = mode == "starttls"
    kwargs.update(smtp_options)
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield Server("127.0.0.1", port, mode, auth, handler)
    finally:
        controller.stop()


@contextmanager
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel completes them) and
    never sends a byte: a firewall that swallows, a hung server."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens."""
    return free_port()

