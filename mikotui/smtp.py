"""One SMTP connection from the settings: TLS modes, certificate checks, AUTH
only where it is safe, a bound on the whole send, a swaks-like transcript, and
every failure as one `SmtpFailure` with a kind a person (or the deliverer) can
act on.

    async with Connection(settings.smtp) as conn:     # connect, TLS, AUTH
        result = await conn.send(msg)                  # as many as needed

    result = await send_message(settings.smtp, msg)   # one-shot, bounded by smtp.timeout

aiosmtplib does the protocol; this module decides the steps itself (no
`start_tls=None` guess, an explicit local hostname so no DNS lookup happens at
connect) and watches the bytes on the wire for the transcript.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import os
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from email.message import Message
from typing import TYPE_CHECKING, Any, BinaryIO, Self

import aiosmtplib
from aiosmtplib.email import extract_recipients, parse_address

from mikotui import config

if TYPE_CHECKING:
    from mikotui.config import Settings

# How long a silent server may keep us waiting for its greeting before we ask
# whether it is an implicit-TLS port (a plain client there waits forever).
GREETING_PATIENCE = 2.0
PROBE_TIMEOUT = 2.0
QUIT_TIMEOUT = 2.0

# --- failures --------------------------------------------------------------------

# Failures where the same send later would fail the same way.
PERMANENT_KINDS = frozenset({
    "config", "certificate", "tls_handshake", "protocol_mismatch", "starttls_unavailable",
    "insecure_auth_refused", "auth_failed", "auth_unavailable", "auth_required",
    "too_big", "permanent",
})
OAUTH_MECHANISMS = ("XOAUTH2", "OAUTHBEARER")
# Providers whose 535 means "use an app password" (their own help pages say so).
APP_PASSWORD_HOSTS = ("gmail.com", "googlemail.com", "google.com", "yandex.ru", "yandex.com",
                      "ya.ru", "mail.ru")


class SmtpFailure(Exception):
    """A send that did not happen, as one kind with the server's words."""

    def __init__(self, kind: str, server_message: str = "", code: int | None = None, *,
                 variant: str = "", endpoint: config.Endpoint | None = None,
                 transcript: Transcript | None = None,
                 refused: dict[str, tuple[int, str]] | None = None) -> None:
        self.kind = kind
        self.code = code
        self.server_message = server_message
        self.variant = variant  # e.g. "expired" for a certificate
        self.endpoint = endpoint
        self.transcript = transcript
        self.refused = refused or {}  # recipient -> (code, message) when all were refused
        super().__init__(self.summary())

    @property
    def permanent(self) -> bool:
        if self.kind in ("sender_refused", "recipient_refused"):
            return self.code is None or self.code >= 500
        return self.kind in PERMANENT_KINDS

    def hint(self, lang: str = "en") -> str:
        """What to do about it: the catalog's fix.<kind>/<variant>, else fix.<kind>."""
        from mikotui import i18n

        keys = (f"fix.{self.kind}/{self.variant}", f"fix.{self.kind}")
        return i18n.text(lang, next((k for k in keys if k in i18n.CATALOG), "fix.permanent"))

    def kind_name(self, lang: str = "en") -> str:
        """The kind as a person reads it ("login rejected"), in `lang`."""
        from mikotui import i18n

        return i18n.text(lang, f"failure.{self.kind}")

    def summary(self) -> str:
        """The server's answer or what happened, on one line."""
        code = f"{self.code} " if self.code else ""
        return " ".join(f"{code}{self.server_message}".split()) or self.kind


# --- transcript ----------------------------------------------------------------

@dataclass
class TlsInfo:
    version: str
    cipher: str
    bits: int | None
    subject: str
    issuer: str
    not_after: str  # "YYYY-MM-DD HH:MM UTC"
    verified: bool
    names: tuple[str, ...] = ()  # subjectAltName: the hosts it is valid for
    not_before: str = ""


@dataclass
class Transcript:
    """What swaks shows. A line's direction: "->"/"<-" sent/received in the
    clear, "~>"/"<~" inside TLS, "==" our own note, "**" an error. `t` is
    seconds since the start. Secrets are masked when recorded and scrubbed
    again on the way out."""

    lines: list[tuple[str, str, float]] = field(default_factory=list)
    tls: TlsInfo | None = None
    auth: str = ""  # "" (none tried), "succeeded as USER", "failed: 535 ..."
    phases: dict[str, float] = field(default_factory=dict)  # phase -> seconds
    started: float = field(default_factory=time.monotonic, repr=False)
    secrets: tuple[str, ...] = field(default=(), repr=False, compare=False)

    def add(self, direction: str, text: str) -> None:
        self.lines.append((direction, self.scrub(text), time.monotonic() - self.started))

    def note(self, text: str) -> None:
        self.add("==", text)

    def timed(self, phase: str, seconds: float) -> None:
        self.phases[phase] = self.phases.get(phase, 0.0) + seconds

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "********")
        return text

    def text(self) -> str:
        out = [f"{'===' if d == '==' else '***' if d == '**' else ' ' + d} {line}"
               for d, line, _ in self.lines]
        if self.phases:
            times = ", ".join(f"{k} {_duration(v)}" for k, v in self.phases.items())
            out.append(f"=== Time: {times}")
        return self.scrub("\n".join(out) + "\n")


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def secret_forms(username: str, password: str) -> tuple[str, ...]:
    """The password and the base64 forms AUTH PLAIN / LOGIN put on the wire."""
    if len(password) < 3:  # a shorter one would blank out ordinary words
        return ()
    u, p = username.encode(), password.encode()
    forms = {password}
    for raw in (p, b"\0" + u + b"\0" + p, u + b"\0" + p):
        b64 = base64.b64encode(raw).decode()
        forms.add(b64)
        forms.add(b64.rstrip("="))
    return tuple(sorted(forms, key=len, reverse=True))


def _token_forms(username: str, token: str) -> tuple[str, ...]:
    """The token and the base64 forms XOAUTH2 and OAUTHBEARER put on the wire."""
    u, t = username.encode(), token.encode()
    forms = {token}
    for raw in (b"user=" + u + b"\x01auth=Bearer " + t + b"\x01\x01",
                b"n,a=" + u + b",\x01auth=Bearer " + t + b"\x01\x01"):
        b64 = base64.b64encode(raw).decode()
        forms.update((b64, b64.rstrip("=")))
    return tuple(forms)


async def _oauth_auth(client: aiosmtplib.SMTP, mechanism: str, username: str,
                      token: str) -> None:
    if mechanism == "XOAUTH2":
        await client.auth_xoauth2(username, token)
        return
    # OAUTHBEARER: a GS2 header naming the user, then the bearer token. On a
    # refusal the server sends a JSON challenge; a lone ^A ends the exchange.
    user = username.replace("=", "=3D").replace(",", "=2C")
    raw = f"n,a={user},\x01auth=Bearer {token}\x01\x01".encode()
    response = await client.execute_command(b"AUTH", b"OAUTHBEARER",
                                            base64.b64encode(raw))
    if response.code == 334:
        response = await client.execute_command(base64.b64encode(b"\x01"))
    if response.code != 235:
        raise aiosmtplib.SMTPAuthenticationError(response.code, response.message)


class _Wiretap:
    """Records each SMTP line as it crosses the wire, on an aiosmtplib protocol.
    Credentials after AUTH are masked before they are stored, and a message
    body is summed up, not copied: from the server's 354 to the closing "."
    everything sent is the message, in one write or in many (`_Message`)."""

    def __init__(self, transcript: Transcript) -> None:
        self.t = transcript
        self.tls = False
        self._in = b""
        self._auth = False
        self._data_sent = False  # DATA sent, its 354 not yet come
        self._message: _Message | None = None

    def attach(self, protocol: Any) -> None:
        write, received = protocol.write, protocol.data_received

        def tapped_write(data: bytes) -> None:
            self.sent(data)
            write(data)

        def tapped_received(data: bytes) -> None:
            self.received(data)
            received(data)

        protocol.write = tapped_write
        protocol.data_received = tapped_received

    @property
    def arrow(self) -> str:
        return "~>" if self.tls else "->"

    def sent(self, data: bytes) -> None:
        if self._message is not None:
            if self._message.feed(data):
                self._message = None
            return
        line = data.decode("utf-8", "replace").rstrip("\r\n")
        self._data_sent = line.upper() == "DATA"
        if line.upper().startswith("AUTH "):
            self._auth = True
            parts = line.split(" ", 2)
            hidden = "token" if parts[1].upper() in OAUTH_MECHANISMS else "credentials"
            line = " ".join(parts[:2]) + (f" [{hidden} hidden]" if len(parts) > 2 else "")
        elif self._auth:
            line = "[credentials hidden]"
        self.t.add(self.arrow, line)

    def received(self, data: bytes) -> None:
        self._in += data
        *lines, self._in = self._in.split(b"\n")
        arrow = "<~" if self.tls else "<-"
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip("\r")
            if self._auth and not line.startswith("334"):
                self._auth = False
            if self._data_sent and line.startswith("354"):
                self._message = _Message(self)
            self._data_sent = False
            self.t.add(arrow, line)


class _Message:
    """The message of one DATA phase as the transcript shows it: its header
    lines, then its body's size, then the closing "."."""

    def __init__(self, tap: _Wiretap) -> None:
        self.tap = tap
        self.head = b""  # until the blank line that ends the header block
        self.in_body = False
        self.body = 0
        self.lines = 0
        self.tail = b""  # the last bytes sent, to see the closing "." line

    def feed(self, data: bytes) -> bool:
        """Take what was sent; True once the closing "." line went."""
        self.tail = (self.tail + data[-5:])[-5:]
        if not self.in_body:
            self.head += data
            head, sep, data = self.head.partition(b"\r\n\r\n")
            if sep or len(self.head) > _HEAD_MAX:
                self.head, self.in_body = head, True
                self._show_head()
            else:
                data = b""
        self.body += len(data)
        self.lines += data.count(b"\n")
        ended = self.tail.endswith(b"\r\n.\r\n") or self.tail == b".\r\n"
        if ended:
            if not self.in_body:  # no blank line: all of it was the header block
                self.head = self.head.removesuffix(b".\r\n")
                self._show_head()
            self.tap.t.add(self.tap.arrow, f"[body: {max(self.body - 3, 0)} bytes, "
                                           f"{max(self.lines - 1, 0)} lines]")
            self.tap.t.add(self.tap.arrow, ".")
        return ended

    def _show_head(self) -> None:
        for line in self.head.decode("utf-8", "replace").split("\r\n"):
            self.tap.t.add(self.tap.arrow, line)
        self.tap.t.add(self.tap.arrow, "")


# --- results and the connection ------------------------------------------------

@dataclass
class SendResult:
    accepted: tuple[str, ...]
    refused: dict[str, tuple[int, str]]
    elapsed: float
    transcript: Transcript | None


Event = Callable[[str], None]


class Connection:
    """One SMTP session: connect, TLS, AUTH on entry; any number of `send`s;
    QUIT on exit. Each step is bounded by `smtp.timeout`."""

    def __init__(self, smtp: config.Smtp, *, on_event: Event | None = None,
                 record: bool = True, token_file: os.PathLike[str] | None = None) -> None:
        self.smtp = smtp
        self.token_file = token_file  # OAuth2's (Settings.token_path()); needed then
        self.on_event = on_event
        self._secrets = secret_forms(smtp.username, smtp.password)
        self.transcript: Transcript | None = (
            Transcript(secrets=self._secrets) if record else None)
        self._client: aiosmtplib.SMTP | None = None
        self._tap = _Wiretap(self.transcript) if self.transcript else None
        self.endpoint: config.Endpoint | None = None

    # The context manager ------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.is_connected

    async def open(self) -> None:
        """Connect, secure and log in, within `smtp.timeout`."""
        try:
            async with asyncio.timeout(self.smtp.timeout):
                await self._open()
        except TimeoutError:
            self.abort()
            raise self.timed_out() from None
        except ConnectionError as exc:  # the server hung up between our steps
            self.abort()
            raise self._failure("disconnected", str(exc) or type(exc).__name__) from None
        except BaseException:
            self.abort()
            raise

    async def close(self) -> None:
        """QUIT politely (briefly), then drop the connection."""
        client = self._client
        if client is not None and client.is_connected:
            try:
                async with asyncio.timeout(QUIT_TIMEOUT):
                    await client.quit()
            except (TimeoutError, aiosmtplib.SMTPException, OSError):
                pass
        self.abort()
        self.finished()

    def finished(self) -> None:
        """Tell the progress listener this connection's work is over."""
        self._event("done")

    def timed_out(self) -> SmtpFailure:
        """The failure for a step that ran past `smtp.timeout`."""
        return self._failure("timeout", f"no answer within {self.smtp.timeout:g} s "
                             f"(while in {self._phase})")

    def abort(self) -> None:
        """Drop the connection at once, nothing more sent."""
        if self._client is not None:
            self._client.close()
            self._client = None

    async def send(self, msg: Message | bytes | BinaryIO,
                   recipients: Sequence[str] | None = None) -> SendResult:
        """Send one message. Recipients the server refused while it took others
        come back in `.refused`; if it took none, `SmtpFailure`. The deliverer
        passes the spooled message (its file, or bytes), which goes out as it
        is (with `recipients`), read a piece at a time."""
        if not self.connected:
            await self.open()
        assert self._client is not None
        started = time.monotonic()
        self._phase = "send"
        self._event("send")
        rcpts = list(recipients) if recipients is not None else None
        try:
            async with asyncio.timeout(self.smtp.timeout):
                if isinstance(msg, Message):
                    refused, _ = await self._client.send_message(
                        msg, sender=self.smtp.from_address or None, recipients=rcpts)
                else:
                    assert rcpts is not None
                    stored = io.BytesIO(msg) if isinstance(msg, bytes) else msg
                    refused = await self._send_stored(stored, rcpts)
        except TimeoutError:
            self.abort()
            raise self.timed_out() from None
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise self._all_refused(exc) from None
        except aiosmtplib.SMTPSenderRefused as exc:
            raise self._failure(_coded_kind(exc.code, "sender_refused"), exc.message,
                                exc.code) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise self._failure(_coded_kind(exc.code, "permanent"), exc.message,
                                exc.code) from None
        except (aiosmtplib.SMTPServerDisconnected, ConnectionError) as exc:
            self.abort()
            raise self._failure("disconnected", str(exc)) from None
        except (aiosmtplib.SMTPNotSupported, ValueError) as exc:
            raise self._failure("permanent", str(exc)) from None
        except OSError:
            # The stored message could not be read, perhaps mid-DATA: this
            # connection can carry nothing more.
            self.abort()
            raise
        elapsed = time.monotonic() - started
        if self.transcript:
            self.transcript.timed("send", elapsed)
        wanted = rcpts if rcpts is not None else extract_recipients(msg)  # type: ignore[arg-type]
        refused_map = {r: (resp.code, resp.message) for r, resp in refused.items()}
        accepted = tuple(r for r in wanted if r not in refused_map)
        return SendResult(accepted, refused_map, elapsed, self.transcript)

    async def _send_stored(self, stored: BinaryIO, recipients: list[str]
                           ) -> dict[str, aiosmtplib.SMTPResponse]:
        """A stored message as it is: what aiosmtplib's sendmail does (MAIL,
        RCPT, DATA; RSET after a refusal), but the message is read from its
        file and sent a piece at a time (`_data`): sendmail would hold a
        long voicemail several times over. No parse and re-flatten either
        (our messages are 7-bit already)."""
        client = self._client
        assert client is not None
        sender = self.smtp.from_address or _header_sender(_stored_head(stored))
        if not sender:
            raise ValueError("No From header provided in message")
        for address in (sender, *recipients):  # refused before anything is sent
            parse_address(address)
        await client._ehlo_or_helo_if_needed()
        options, encoding = [], "ascii"
        if not (sender + "".join(recipients)).isascii():
            if not client.supports_extension("smtputf8"):
                raise aiosmtplib.SMTPNotSupported(
                    "An address containing non-ASCII characters was provided, but "
                    "SMTPUTF8 is not supported by this server")
            options.append("SMTPUTF8")
            encoding = "utf-8"
        size, eight_bit = _measured(stored)
        if eight_bit and client.supports_extension("8BITMIME"):
            options.append("BODY=8BITMIME")
        if client.supports_extension("size"):
            options.insert(0, f"size={size}")
        try:
            await client.mail(sender, options=options, encoding=encoding)
            refused = {}
            for rcpt in recipients:
                try:
                    await client.rcpt(rcpt, encoding=encoding)
                except aiosmtplib.SMTPRecipientRefused as exc:
                    refused[rcpt] = aiosmtplib.SMTPResponse(exc.code, exc.message)
            if len(refused) == len(recipients):
                raise aiosmtplib.SMTPRecipientsRefused(
                    [aiosmtplib.SMTPRecipientRefused(r.code, r.message, a)
                     for a, r in refused.items()])
            await self._data(stored)
        except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
            with contextlib.suppress(ConnectionError, aiosmtplib.SMTPResponseException):
                await client.rset()
            raise
        return refused

    async def _data(self, stored: BinaryIO) -> None:
        """DATA, then the message a piece at a time as it goes on the wire
        (`wire_pieces`), each written once the connection has taken the one
        before (flow control: the transport never buffers the whole)."""
        client = self._client
        assert client is not None and client.protocol is not None
        response = await client.execute_command(b"DATA")
        if response.code != 354:
            raise aiosmtplib.SMTPDataError(response.code, response.message)
        protocol = client.protocol
        # As aiosmtplib's own DATA does: a reply the server sends before the
        # message ends (a refusal, then hanging up) is kept for us to read.
        protocol._response_pending = True
        for piece in wire_pieces(stored):
            protocol.write(piece)
            await protocol._drain_helper()
        protocol.write(b".\r\n")
        response = await protocol.read_response(timeout=client.timeout)
        if response.code != 250:
            raise aiosmtplib.SMTPDataError(response.code, response.message)

    # The steps ----------------------------------------------------------------

    _phase = "connect"

    async def _open(self) -> None:
        try:
            ep = self.smtp.endpoint()
        except ValueError as exc:
            raise SmtpFailure("config", str(exc)) from None
        self.endpoint = ep
        if self.transcript is not None:
            self.transcript.started = time.monotonic()
            self.transcript.note(f"Trying {ep.host}:{ep.port} ({_mode_name(ep.encryption)})"
                                 + (f" — {ep.note}" if ep.note else "") + "...")
        await self._timed("connect", self._connect(ep))
        if ep.encryption == "starttls":
            await self._timed("tls", self._starttls(ep))
        if self.smtp.auth == "oauth2":
            await self._timed("auth", self._login_oauth2())
        elif self.smtp.username:
            await self._timed("auth", self._login(ep))

    async def _timed(self, phase: str, step: Any) -> None:
        self._phase = phase
        self._event(phase)
        started = time.monotonic()
        try:
            await step
        finally:
            if self.transcript:
                self.transcript.timed(phase, time.monotonic() - started)

    async def _connect(self, ep: config.Endpoint) -> None:
        sock, addr = await self._tcp(ep)
        local = _local_hostname(sock)
        implicit = ep.encryption == "ssl"
        client = aiosmtplib.SMTP(
            # start_tls=False: we decide about STARTTLS ourselves (never a guess).
            hostname=ep.host, sock=sock, use_tls=implicit, start_tls=False,
            tls_context=self._tls_context() if implicit else None,
            local_hostname=local, timeout=self.smtp.timeout,
        )
        self._client = client
        task = asyncio.ensure_future(client.connect())
        try:
            done, _ = await asyncio.wait({task}, timeout=GREETING_PATIENCE)
            if not done and not implicit and await _speaks_tls(addr, ep.host):
                raise self._failure("protocol_mismatch", "no greeting; the port answers TLS",
                                    variant="tls_port")
            greeting = await task
        except aiosmtplib.SMTPConnectResponseError as exc:
            raise self._failure(_coded_kind(exc.code, "permanent"), exc.message,
                                exc.code) from None
        except aiosmtplib.SMTPConnectTimeoutError:
            raise TimeoutError from None
        except aiosmtplib.SMTPConnectError as exc:
            raise await self._connect_error(exc, addr, ep) from None
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
        assert client.protocol is not None
        if self._tap:
            self._tap.tls = implicit
            self._tap.attach(client.protocol)
        if self.transcript is not None:
            self.transcript.note(f"Connected to {addr[0]}.")
            if implicit:
                self._tls_noted()
            arrow = "<~" if implicit else "<-"
            for line in _response_lines(greeting):
                self.transcript.add(arrow, line)
        await self._ehlo()

    async def _tcp(self, ep: config.Endpoint) -> tuple[socket.socket, tuple]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(ep.host, ep.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise self._failure("dns", f"{ep.host}: {exc.strerror or exc}") from None
        except UnicodeError:  # the IDNA codec refuses it before any lookup
            raise self._failure("dns", f"{ep.host}: not a valid host name") from None
        last: OSError | None = None
        for family, kind, proto, _, addr in infos:
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, addr)
                return sock, addr
            except OSError as exc:
                sock.close()
                last = exc
            except BaseException:
                sock.close()
                raise
        # asyncio words ECONNREFUSED as "Connect call failed"; say what it is.
        reason = os.strerror(last.errno) if last and last.errno else str(last)
        raise self._failure("refused", f"{ep.host}:{ep.port}: {reason}")

    async def _connect_error(self, exc: Exception, addr: tuple,
                             ep: config.Endpoint) -> SmtpFailure:
        cause = exc.__cause__
        if isinstance(cause, ssl.SSLCertVerificationError):
            return await self._certificate_failure(cause, ep)
        if isinstance(cause, ssl.SSLError):
            if await _speaks_plain_smtp(addr):
                return self._failure("protocol_mismatch",
                                     "TLS handshake failed; the port answers plain SMTP",
                                     variant="plain_port")
            return self._failure("tls_handshake", _ssl_reason(cause))
        if isinstance(cause, ConnectionError | aiosmtplib.SMTPServerDisconnected):
            return self._failure("disconnected", str(cause))
        return self._failure("refused", str(cause or exc))

    async def _ehlo(self) -> None:
        assert self._client is not None
        try:
            try:
                await self._client.ehlo()
            except aiosmtplib.SMTPHeloError:
                await self._client.helo()  # an old server without ESMTP
        except aiosmtplib.SMTPResponseException as exc:
            raise self._failure(_coded_kind(exc.code, "permanent"), exc.message,
                                exc.code) from None

    async def _starttls(self, ep: config.Endpoint) -> None:
        client = self._client
        assert client is not None
        if not client.supports_extension("starttls"):
            raise self._failure("starttls_unavailable",
                                "the server's EHLO does not offer STARTTLS")
        try:
            await client.starttls(server_hostname=ep.host, tls_context=self._tls_context())
        except ssl.SSLCertVerificationError as exc:
            raise await self._certificate_failure(exc, ep) from None
        except ssl.SSLError as exc:
            raise self._failure("tls_handshake", _ssl_reason(exc)) from None
        except aiosmtplib.SMTPTimeoutError:
            raise TimeoutError from None
        except aiosmtplib.SMTPResponseException as exc:
            raise self._failure("tls_handshake", exc.message, exc.code) from None
        except (aiosmtplib.SMTPServerDisconnected, ConnectionError) as exc:
            raise self._failure("tls_handshake", str(exc)) from None
        if self._tap:
            self._tap.tls = True
        self._tls_noted()
        await self._ehlo()

    async def _login(self, ep: config.Endpoint) -> None:
        client = self._client
        assert client is not None
        secure = client.get_transport_info("sslcontext") is not None
        if not secure and not self.smtp.allow_insecure_auth:
            raise self._failure("insecure_auth_refused",
                                "the connection is not encrypted; AUTH not sent")
        if not client.supports_extension("auth"):
            raise self._failure("auth_unavailable", "the server's EHLO offers no AUTH")
        try:
            await client.login(self.smtp.username, self.smtp.password)
        except aiosmtplib.SMTPAuthenticationError as exc:
            if self.transcript:
                self.transcript.auth = self.transcript.scrub(f"failed: {exc.code} {exc.message}")
            kind = _coded_kind(exc.code, "auth_failed") if exc.code < 500 else "auth_failed"
            variant = "app_password" if _needs_app_password(ep.host) else ""
            raise self._failure(kind, exc.message, exc.code, variant=variant) from None
        except aiosmtplib.SMTPException as exc:
            raise self._failure("auth_unavailable", str(exc)) from None
        if self.transcript:
            self.transcript.auth = f"succeeded as {self.smtp.username}"
            self.transcript.note(f"Authenticated as {self.smtp.username}.")

    async def _login_oauth2(self) -> None:
        """XOAUTH2, or OAUTHBEARER (RFC 7628) where only that is offered. A
        token the server refuses is refreshed once and tried again: it may
        have been revoked or cut short before its stated expiry."""
        client = self._client
        assert client is not None
        if client.get_transport_info("sslcontext") is None and not self.smtp.allow_insecure_auth:
            raise self._failure("insecure_auth_refused",
                                "the connection is not encrypted; AUTH not sent")
        offered = {m.upper() for m in client.server_auth_methods}
        mechanism = next((m for m in OAUTH_MECHANISMS if m.lower() in
                          {o.lower() for o in offered}), "")
        if not client.supports_extension("auth") or not mechanism:
            raise self._failure("auth_unavailable", "the server's EHLO offers neither "
                                "XOAUTH2 nor OAUTHBEARER")
        stale = ""
        for _ in range(2):
            token = await self._access_token(refused=stale)
            try:
                await _oauth_auth(client, mechanism, self.smtp.username, token)
                break
            except aiosmtplib.SMTPAuthenticationError as exc:
                if exc.code >= 500 and not stale:
                    stale = token
                    continue
                if self.transcript:
                    self.transcript.auth = f"failed: {exc.code} {exc.message}"
                kind = "token_refused" if exc.code >= 500 else _coded_kind(exc.code, "")
                raise self._failure(kind, exc.message, exc.code) from None
        if self.transcript:
            self.transcript.auth = f"succeeded as {self.smtp.username} ({mechanism})"
            self.transcript.note(f"Authenticated as {self.smtp.username} with {mechanism}.")

    async def _access_token(self, *, refused: str = "") -> str:
        from mikotui import oauth2

        if self.token_file is None:
            raise self._failure("config", "no OAuth2 token file given")
        try:
            token = await asyncio.to_thread(oauth2.access_token, self.smtp,
                                            self.token_file, refused=refused)
        except oauth2.OAuth2Error as exc:
            raise self._failure("config" if exc.kind == "config" else exc.kind,
                                exc.message) from None
        forms = _token_forms(self.smtp.username, token)
        self._secrets = tuple(sorted({*self._secrets, *forms}, key=len, reverse=True))
        if self.transcript is not None:
            self.transcript.secrets = self._secrets
        return token

    # Helpers ----------------------------------------------------------------

    def _tls_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if not self.smtp.verify_certificate:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _tls_noted(self) -> None:
        if self.transcript is None or self._client is None:
            return
        info = _tls_info(self._client.get_transport_info("ssl_object"),
                         self.smtp.verify_certificate)
        self.transcript.tls = info
        if info:
            bits = f":{info.bits}" if info.bits else ""
            self.transcript.note(f"TLS started with cipher {info.version}:{info.cipher}{bits}")
            self.transcript.note(f"TLS peer subject: {info.subject}; names: "
                                 f"{', '.join(info.names) or '-'}")
            self.transcript.note(f"TLS peer issuer: {info.issuer}; expires {info.not_after}"
                                 + ("" if info.verified else " (not verified)"))

    async def _certificate_failure(self, exc: ssl.SSLCertVerificationError,
                                   ep: config.Endpoint) -> SmtpFailure:
        reason = exc.verify_message or _ssl_reason(exc)
        if self.transcript is not None:
            # What the server showed, fetched again without the check, so the
            # admin sees whose certificate it is and when it expires.
            info = await _peek_certificate(ep)
            if info is not None:
                self.transcript.note(f"Server certificate: {info.subject}; names "
                                     f"{', '.join(info.names) or '-'}; issuer {info.issuer}; "
                                     f"valid {info.not_before} .. {info.not_after}")
        return self._failure("certificate", reason, variant=_cert_variant(exc))

    def _all_refused(self, exc: aiosmtplib.SMTPRecipientsRefused) -> SmtpFailure:
        refused = {e.recipient: (e.code, e.message) for e in exc.recipients}
        first = exc.recipients[0]
        codes = [e.code for e in exc.recipients]
        if any(c < 500 for c in codes):
            code = next(c for c in codes if c < 500)
            kind = "temporary"
        else:
            code = first.code
            kind = "too_big" if code == 552 else "recipient_refused"
        message = next(e.message for e in exc.recipients if e.code == code)
        return self._failure(kind, message, code, refused=refused)

    def _failure(self, kind: str, message: str = "", code: int | None = None, *,
                 variant: str = "", refused: dict | None = None) -> SmtpFailure:
        for secret in self._secrets:  # a server may echo what it was sent
            message = message.replace(secret, "********")
        t = self.transcript
        if t is not None:
            t.add("**", f"{kind}: {f'{code} ' if code else ''}{message}")
        if variant == "" and kind in ("timeout", "tls_handshake") and self.endpoint:
            variant = self.endpoint.port_mistake()
        return SmtpFailure(kind, message, code, variant=variant, endpoint=self.endpoint,
                           transcript=t, refused=refused)

    def _event(self, name: str) -> None:
        if self.on_event is not None:
            self.on_event(name)


# --- one-shot sends -------------------------------------------------------------

async def send_message(smtp: config.Smtp, msg: Message,
                       recipients: Sequence[str] | None = None, *,
                       on_event: Event | None = None,
                       token_file: os.PathLike[str] | None = None) -> SendResult:
    """Connect, send one message, QUIT. The whole send is bounded by
    `smtp.timeout`; the QUIT after an accepted message cannot undo it."""
    started = time.monotonic()
    conn = Connection(smtp, on_event=on_event, token_file=token_file)
    try:
        async with asyncio.timeout(smtp.timeout):
            await conn.open()
            result = await conn.send(msg, recipients)
    except TimeoutError:
        failure = conn.timed_out()
        conn.abort()
        conn.finished()
        raise failure from None
    except BaseException:
        conn.abort()
        conn.finished()
        raise
    await conn.close()
    return replace(result, elapsed=time.monotonic() - started)


async def send_test_email(settings: Settings, lang: str, to: str | None = None, *,
                          on_event: Event | None = None) -> SendResult:
    """The test mail to `to` or the admin; sent even with the master
    switch off, since a person asked for it."""
    from mikotui import message, routing

    # The kind switches do not apply either: routing.admin, not routing.system.
    recipients = list(config.addresses(to) if to else routing.admin(settings))
    if not recipients:
        raise SmtpFailure("config", "no recipient: give --to or set notifications.admin_email")
    msg = message.compose(message.render_test(settings, lang), recipients, settings)
    return await send_message(settings.smtp, msg, recipients, on_event=on_event,
                              token_file=settings.token_path())


# --- small pure helpers -----------------------------------------------------------

def _header_sender(head: bytes) -> str | None:
    """The From of a stored message's header block (sender_address unset)."""
    import email.policy
    from email.parser import BytesHeaderParser

    from aiosmtplib.email import extract_sender

    return extract_sender(BytesHeaderParser(policy=email.policy.compat32).parsebytes(head))


_HEAD_MAX = 1 << 20  # header blocks are a few kB; this much is read at most


def _stored_head(stored: BinaryIO) -> bytes:
    """The header block of a stored message, read from its start (which
    the stream is left at)."""
    head = b""
    while len(head) < _HEAD_MAX and (block := stored.read(1 << 16)):
        head += block
        if (end := re.search(rb"\r?\n\r?\n", head)) is not None:
            head = head[:end.end()]
            break
    stored.seek(0)
    return head


_PIECE = 1 << 18  # bytes of the message read at a time to send
_LINE_ENDS = re.compile(rb"\r\n|\n|\r(?!\n)")
_LINE_STARTS_WITH_DOT = re.compile(rb"(?m)^\.")


def wire_pieces(stored: BinaryIO, *, stuffed: bool = True) -> Iterator[bytes]:
    """The message as the DATA phase sends it, a piece at a time: every line
    ending CRLF (as aiosmtplib writes them: a lone CR or LF too), a line
    starting with "." given another (RFC 5321 4.5.2; not when `stuffed` is
    False, as SIZE counts it), and a line break at the end; the closing "."
    line is the caller's. Each piece ends at a line break, so no line ending
    and no line's start is ever split between two pieces."""
    carry, empty = b"", True
    while block := stored.read(_PIECE):
        block = carry + block
        cut = block.rfind(b"\n") + 1  # a CR at the end stays: its LF may open the next block
        carry = block[cut:]
        if cut:
            empty = False
            yield _on_the_wire(block[:cut], stuffed)
    if carry or empty:
        yield _on_the_wire(carry if carry.endswith(b"\n") else carry + b"\n", stuffed)


def _on_the_wire(lines: bytes, stuffed: bool) -> bytes:
    lines = _LINE_ENDS.sub(b"\r\n", lines)
    return _LINE_STARTS_WITH_DOT.sub(b"..", lines) if stuffed else lines


def _measured(stored: BinaryIO) -> tuple[int, bool]:
    """(the size SIZE declares: the message as sent, before dot-stuffing;
    whether it has 8-bit bytes), read through once; the stream is left at
    its start."""
    size, eight_bit = 0, False
    for piece in wire_pieces(stored, stuffed=False):
        size += len(piece)
        eight_bit = eight_bit or not piece.isascii()
    stored.seek(0)
    return size, eight_bit


def _coded_kind(code: int, kind_5xx: str) -> str:
    if code == 552:
        return "too_big"
    if code == 530:
        return "auth_required"
    if 400 <= code < 500:
        return "temporary"
    return kind_5xx


def _needs_app_password(host: str) -> bool:
    host = host.lower().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in APP_PASSWORD_HOSTS)


def _mode_name(encryption: str) -> str:
    return {"ssl": "implicit TLS", "starttls": "STARTTLS", "none": "no encryption"}.get(
        encryption, encryption)


def _cert_variant(exc: ssl.SSLCertVerificationError) -> str:
    code = exc.verify_code
    message = (exc.verify_message or "").lower()
    if code == 10 or "expired" in message:
        return "expired"
    if code in (18, 19) or "self-signed" in message or "self signed" in message:
        return "self_signed"
    if code == 62 or "hostname mismatch" in message or "ip address mismatch" in message:
        return "wrong_host"
    return ""


def _ssl_reason(exc: ssl.SSLError) -> str:
    return exc.reason or exc.strerror or str(exc) or type(exc).__name__


def _response_lines(response: Any) -> list[str]:
    lines = str(response.message).split("\n") or [""]
    return [f"{response.code}{'-' if i < len(lines) - 1 else ' '}{line}"
            for i, line in enumerate(lines)]


def _local_hostname(sock: socket.socket) -> str:
    """The name for EHLO without asking DNS: the host name when it is fully
    qualified, else our address literal (RFC 5321 4.1.3)."""
    name = socket.gethostname()
    if "." in name and name.isascii() and not any(c.isspace() for c in name):
        return name
    try:
        ip = sock.getsockname()[0]
    except OSError:
        return "localhost"
    return f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]"


def _tls_info(obj: ssl.SSLObject | None, verified: bool) -> TlsInfo | None:
    if obj is None:
        return None
    cipher = obj.cipher() or ("", "", None)
    info = TlsInfo(obj.version() or "?", cipher[0], cipher[2], "?", "?", "?", verified)
    der = obj.getpeercert(binary_form=True)
    if not der:
        return info
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(str(n.value) for n in san)
    except (x509.ExtensionNotFound, ValueError):
        names = ()
    stamp = "%Y-%m-%d %H:%M UTC"
    return replace(info, subject=cert.subject.rfc4514_string() or "(empty)",
                   issuer=cert.issuer.rfc4514_string() or "(empty)",
                   not_after=cert.not_valid_after_utc.strftime(stamp),
                   not_before=cert.not_valid_before_utc.strftime(stamp), names=names)


async def _peek_certificate(ep: config.Endpoint) -> TlsInfo | None:
    """The server's certificate without checking it, for a diagnosis only:
    nothing but EHLO (and STARTTLS) is sent on this connection."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    implicit = ep.encryption == "ssl"
    client = aiosmtplib.SMTP(hostname=ep.host, port=ep.port, use_tls=implicit,
                             start_tls=not implicit, tls_context=ctx,
                             local_hostname="localhost", timeout=PROBE_TIMEOUT)
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            await client.connect()
            return _tls_info(client.get_transport_info("ssl_object"), False)
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        return None
    finally:
        client.close()


async def _speaks_tls(addr: tuple, host: str) -> bool:
    """Does this address complete a TLS handshake (an implicit-TLS port)?"""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            _, writer = await asyncio.open_connection(addr[0], addr[1], ssl=ctx,
                                                      server_hostname=host)
    except (OSError, TimeoutError, ssl.SSLError):
        return False
    writer.close()
    return True


async def _speaks_plain_smtp(addr: tuple) -> bool:
    """Does this address greet in the clear with 220 (a plain/STARTTLS port)?"""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            reader, writer = await asyncio.open_connection(addr[0], addr[1])
            try:
                first = await reader.read(4)
            finally:
                writer.close()
    except (OSError, TimeoutError):
        return False
    return first[:3] == b"220"
