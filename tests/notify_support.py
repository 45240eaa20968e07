"""Helpers for the notify/deliver/spool tests: a real aiosmtpd server whose
answers per recipient can be set, and configs pointing at it."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import threading
from dataclasses import dataclass, replace
from email.message import EmailMessage
from pathlib import Path
from typing import Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from mikotui import config
from mikotui.sandbox import free_port

ADMIN = "admin@pbx.test"
VOICEMAIL = "voicemail@pbx.test"
GENERAL_MISSED = "missed@pbx.test"


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes

    def parse(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]

    @property
    def message_id(self) -> str:
        return str(self.parse()["Message-ID"])

    @property
    def subject(self) -> str:
        return str(self.parse()["Subject"])


class Handler:
    """Accepts everything unless told otherwise: `rcpt_codes` maps a
    recipient (lower case) to the reply its RCPT TO gets."""

    def __init__(self) -> None:
        self.rcpt_codes: dict[str, str] = {}
        self.data_codes: dict[str, str] = {}  # the same, for the end of DATA
        self.received: list[Received] = []
        self.changed = threading.Condition()
        # Set `hold` to keep every DATA waiting until it is set; `holding`
        # tells the test one is waiting (a client is mid-send).
        self.hold: threading.Event | None = None
        self.holding = threading.Event()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.rcpt_codes.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.hold is not None:
            self.holding.set()
            await asyncio.get_running_loop().run_in_executor(None, self.hold.wait)
        for rcpt in envelope.rcpt_tos:
            if rcpt.lower() in self.data_codes:
                return self.data_codes[rcpt.lower()]
        got = Received(envelope.mail_from, tuple(envelope.rcpt_tos),
                       envelope.original_content or envelope.content)
        with self.changed:
            self.received.append(got)
            self.changed.notify_all()
        return "250 OK queued"

    def wait_for(self, count: int, timeout: float = 10) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: len(self.received) >= count, timeout)


class Server:
    """A real SMTP server on 127.0.0.1 (plain; AUTH when `auth` is given)."""

    def __init__(self, port: int | None = None, auth: tuple[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.handler = Handler()
        self.auth = auth
        self.logins: list[tuple[str, bool]] = []
        kwargs = {}
        if auth:
            kwargs = {"authenticator": self._authenticate, "auth_require_tls": False}
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port,
                                     **kwargs)

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and (auth_data.login.decode(), auth_data.password.decode()) == self.auth)
        self.logins.append((mechanism, ok))
        return AuthResult(success=ok, handled=False)

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def start(self) -> Server:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def settings_for(tmp_path: Path, port: int, **smtp: object) -> config.Settings:
    s = config.defaults("en")
    return replace(
        s,
        smtp=replace(s.smtp, host="127.0.0.1", port=port, encryption="none",
                     sender_address="pbx@pbx.test", timeout=5, **smtp),
        notifications=replace(s.notifications, admin_email=ADMIN),
        missed_call=replace(s.missed_call, email=GENERAL_MISSED),
        voicemail=replace(s.voicemail, email=VOICEMAIL),
        spool=replace(s.spool, path=str(tmp_path / "spool")),
        employees=(
            config.Employee("201", "Smith James", "smith@pbx.test"),
            config.Employee("202", "Brown Brandon", ""),
            config.Employee("203", "Ivanova Anna", "Anna@pbx.test"),
            config.Employee("204", "Petrov Oleg", "oleg@pbx.test"),
        ),
    )


def write(tmp_path: Path, settings: config.Settings) -> str:
    return str(config.save(settings, tmp_path / "mikotui.toml"))


def entries(spool: Path, state: str) -> list[dict]:
    folder = spool / state
    if not folder.is_dir():
        return []
    return [json.loads((p / "meta.json").read_bytes()) for p in sorted(folder.iterdir())]
