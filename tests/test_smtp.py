"""smtp.py against real aiosmtpd servers on 127.0.0.1 (certificates from trustme)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
import trustme
from aiosmtpd.smtp import AuthResult
from hypothesis import HealthCheck, given
from hypothesis import settings as settings_
from hypothesis import strategies as st
from smtp_servers import (
    SENDER,
    Replies,
    closed_port,
    server_context,
    silent_server,
    smtp_server,
    trust_ca,
)

from mikotui import smtp
from mikotui.config import Settings
from mikotui.sandbox import Sandbox
from mikotui.smtp import Connection, SmtpFailure, send_message, send_test_email

PASSWORD = "Sup3r-S3cret-pw"
USER = "pbx@example.com"
TO = "admin@example.com"


@pytest.fixture
def ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> trustme.CA:
    """A CA the client trusts, as the default context reads SSL_CERT_FILE."""
    ca = trustme.CA()
    for k, v in trust_ca(ca, tmp_path).items():
        monkeypatch.setenv(k, v)
    return ca


def _msg(subject: str = "Hello", to: str = TO) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = SENDER
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content("Body text\n")
    return msg


async def _fail(settings: Settings, msg: EmailMessage | None = None,
                recipients: list[str] | None = None) -> SmtpFailure:
    with pytest.raises(SmtpFailure) as info:
        await send_message(settings.smtp, msg or _msg(), recipients)
    return info.value


def _all_text(failure_or_result) -> str:
    t = failure_or_result.transcript
    return "\n".join([str(failure_or_result), t.text() if t else "", repr(t)])


# --- success paths ----------------------------------------------------------------

async def test_plain_without_auth(settings: Settings) -> None:
    events: list[str] = []
    with smtp_server("plain") as srv:
        result = await send_message(srv.point(settings).smtp, _msg(), on_event=events.append)
    assert result.accepted == (TO,)
    assert result.refused == {}
    [got] = srv.handler.messages
    assert got.mail_from == SENDER and got.rcpt_tos == (TO,)
    assert got.message["Subject"] == "Hello"
    assert events == ["connect", "send", "done"]
    text = result.transcript.text()
    assert " -> EHLO " in text and " <- 250 " in text and " -> QUIT" in text
    assert " <- 221 " in text and " ~> " not in text
    assert "connect" in result.transcript.phases and "send" in result.transcript.phases


async def test_starttls_with_auth(settings: Settings, ca: trustme.CA) -> None:
    events: list[str] = []
    with smtp_server("starttls", auth=(USER, PASSWORD), ca=ca) as srv:
        result = await send_message(srv.point(settings).smtp, _msg(), on_event=events.append)
    assert result.accepted == (TO,)
    assert len(srv.handler.messages) == 1
    assert events == ["connect", "tls", "auth", "send", "done"]
    t = result.transcript
    assert t.tls is not None and t.tls.version.startswith("TLS") and t.tls.verified
    assert "trustme" in t.tls.issuer and t.tls.not_after.startswith("3000-")
    assert t.auth == f"succeeded as {USER}"
    text = t.text()
    assert " -> STARTTLS" in text and " <- 220" in text
    assert " ~> AUTH " in text and " <~ 235" in text
    assert "TLS started with cipher" in text
    assert PASSWORD not in _all_text(result)


async def test_implicit_tls_with_auth(settings: Settings, ca: trustme.CA) -> None:
    with smtp_server("ssl", auth=(USER, PASSWORD), ca=ca) as srv:
        result = await send_message(srv.point(settings).smtp, _msg())
    assert result.accepted == (TO,) and len(srv.handler.messages) == 1
    text = result.transcript.text()
    assert " <~ 220" in text and " ~> EHLO" in text and " -> " not in text
    assert result.transcript.tls is not None


async def test_ssl_scheme_in_host_overrides_mode(settings: Settings, ca: trustme.CA) -> None:
    with smtp_server("ssl", ca=ca) as srv:
        s = srv.point(settings, host=f"ssl://127.0.0.1:{srv.port}", port=25,
                      encryption="none")
        result = await send_message(s.smtp, _msg())
    assert result.accepted == (TO,)
    assert result.transcript.tls is not None


async def test_one_connection_many_messages(settings: Settings) -> None:
    with smtp_server("plain") as srv:
        async with Connection(srv.point(settings).smtp) as conn:
            for i in range(3):
                r = await conn.send(_msg(f"n{i}"))
                assert r.accepted == (TO,)
        text = conn.transcript.text()
    assert [m.message["Subject"] for m in srv.handler.messages] == ["n0", "n1", "n2"]
    assert text.count(" -> EHLO") == 1 and text.count(" -> MAIL FROM") == 3


async def test_cyrillic_subject_delivered_intact(settings: Settings) -> None:
    subject = "Пропущенный вызов от «Алексей» 101 — тест ёЁ"
    with smtp_server("plain") as srv:
        await send_message(srv.point(settings).smtp, _msg(subject))
    [got] = srv.handler.messages
    assert got.message["Subject"] == subject
    assert b"Subject: =?utf-8?" in got.raw  # RFC 2047 on the wire, decoded intact


async def test_partial_refusal_returns_refused(settings: Settings) -> None:
    replies = Replies(rcpt={"gone@example.com": "550 5.1.1 No such user"})
    with smtp_server("plain", replies=replies) as srv:
        result = await send_message(srv.point(settings).smtp, _msg(),
                                    [TO, "gone@example.com"])
    assert result.accepted == (TO,)
    assert result.refused == {"gone@example.com": (550, "5.1.1 No such user")}
    assert srv.handler.messages[0].rcpt_tos == (TO,)


async def test_test_email_to_sandbox_ru(settings: Settings, tmp_path: Path) -> None:
    off = replace(settings, notifications=replace(settings.notifications, enabled=False))
    with Sandbox(tmp_path / "mail") as sb:
        result = await send_test_email(sb.point(off), "ru", to="someone@example.com")
        [got] = sb.messages()
    assert result.accepted == ("someone@example.com",)
    assert got.subject == "Тест настроек SMTP"
    assert got.rcpt_tos == ("someone@example.com",)
    body = got.parse().get_body(("plain",)).get_content()
    assert "настройки почты выполнены правильно" in body and str(sb.port) in body


# --- failures ---------------------------------------------------------------------

async def test_wrong_password_is_auth_failed(settings: Settings, ca: trustme.CA) -> None:
    with smtp_server("starttls", auth=(USER, "right-one"), ca=ca) as srv:
        f = await _fail(srv.point(settings, password=PASSWORD))
    assert f.kind == "auth_failed" and f.code == 535 and f.permanent
    assert "login or password" in f.hint("en") and "логин или пароль" in f.hint("ru")
    assert f.transcript.auth.startswith("failed: 535")
    assert srv.handler.messages == []
    assert PASSWORD not in _all_text(f)


def test_auth_failed_hint_for_providers() -> None:
    for host in ("smtp.gmail.com", "smtp.yandex.ru", "smtp.mail.ru"):
        f = SmtpFailure("auth_failed", "5.7.8 Username and Password not accepted", 535,
                        variant="app_password" if smtp._needs_app_password(host) else "")
        assert "app password" in f.hint("en") and "пароль приложения" in f.hint("ru")
    assert not smtp._needs_app_password("mail.example.com")
    assert not smtp._needs_app_password("notgmail.com")


async def test_self_signed_certificate(settings: Settings, tmp_path: Path) -> None:
    with Sandbox(tmp_path / "mail", tls=True) as sb:
        checked = replace(sb.point(settings).smtp, verify_certificate=True)
        with pytest.raises(SmtpFailure) as info:
            await send_message(checked, _msg())
        assert info.value.kind == "certificate" and info.value.variant == "self_signed"
        assert "self-signed" in info.value.hint("en")
        assert info.value.permanent
        result = await send_message(sb.point(settings).smtp, _msg())  # check off
        assert result.accepted == (TO,)
        assert result.transcript.tls is not None and not result.transcript.tls.verified
        assert [m.subject for m in sb.messages()] == ["Hello"]


async def test_expired_certificate(settings: Settings, ca: trustme.CA) -> None:
    past = datetime.now(UTC) - timedelta(days=1)
    ctx = server_context(ca, "127.0.0.1", not_before=past - timedelta(days=30),
                         not_after=past)
    with smtp_server("ssl", tls_context=ctx) as srv:
        f = await _fail(srv.point(settings))
    assert (f.kind, f.variant) == ("certificate", "expired")
    assert "expired" in f.server_message
    assert f".. {past:%Y-%m-%d}" in f.transcript.text()  # the expiry, shown to the admin


async def test_wrong_host_certificate(settings: Settings, ca: trustme.CA) -> None:
    ctx = server_context(ca, "mail.example.net")
    with smtp_server("starttls", tls_context=ctx) as srv:
        f = await _fail(srv.point(settings))
    assert (f.kind, f.variant) == ("certificate", "wrong_host")
    assert "another name" in f.hint("en")
    assert "names mail.example.net;" in f.transcript.text()
    assert srv.handler.messages == []


async def test_starttls_not_offered(settings: Settings) -> None:
    with smtp_server("plain") as srv:
        f = await _fail(srv.point(settings, encryption="starttls", username=USER,
                                  password=PASSWORD))
    assert f.kind == "starttls_unavailable" and f.permanent
    sent = [text for d, text, _ in f.transcript.lines if d in ("->", "~>")]
    assert sent == [sent[0]] and sent[0].startswith("EHLO ")  # nothing after EHLO
    assert not any("AUTH" in line for line in sent)
    assert srv.handler.messages == []


async def test_auth_over_plain_refused(settings: Settings) -> None:
    with smtp_server("plain", auth=(USER, PASSWORD), auth_require_tls=False) as srv:
        f = await _fail(srv.point(settings))
        assert f.kind == "insecure_auth_refused"
        assert " -> AUTH" not in f.transcript.text()
        assert srv.handler.auth_attempts == []
        allowed = await send_message(srv.point(settings, allow_insecure_auth=True).smtp, _msg())
    assert allowed.accepted == (TO,)
    assert PASSWORD not in _all_text(allowed) and PASSWORD not in _all_text(f)


async def test_auth_unavailable(settings: Settings, ca: trustme.CA) -> None:
    with smtp_server("starttls", ca=ca, auth_exclude_mechanism=["LOGIN", "PLAIN"]) as srv:
        f = await _fail(srv.point(settings, username=USER, password=PASSWORD))
    assert f.kind == "auth_unavailable" and f.permanent


async def test_plain_client_on_implicit_tls_port(settings: Settings, ca: trustme.CA) -> None:
    with smtp_server("ssl", ca=ca) as srv:
        started = time.monotonic()
        f = await _fail(srv.point(settings, encryption="starttls", timeout=30))
        took = time.monotonic() - started
    assert f.kind == "protocol_mismatch" and f.variant == "tls_port"
    assert took < 5
    assert "ssl" in f.hint("en")


async def test_tls_client_on_plain_port(settings: Settings) -> None:
    with smtp_server("plain") as srv:
        started = time.monotonic()
        f = await _fail(srv.point(settings, encryption="ssl", timeout=30))
        took = time.monotonic() - started
    assert f.kind == "protocol_mismatch" and f.variant == "plain_port"
    assert took < 5
    assert "starttls" in f.hint("en")


async def test_nothing_listening_is_refused(settings: Settings) -> None:
    s = replace(settings.smtp, host="127.0.0.1", port=closed_port(), encryption="none")
    with pytest.raises(SmtpFailure) as info:
        await send_message(s, _msg())
    assert info.value.kind == "refused" and not info.value.permanent


async def test_dns_failure(settings: Settings) -> None:
    # A 64-letter label fails inside the resolver library: no query leaves the host.
    s = replace(settings.smtp, host="x" * 64 + ".invalid", port=25, encryption="none")
    with pytest.raises(SmtpFailure) as info:
        await send_message(s, _msg())
    assert info.value.kind == "dns" and not info.value.permanent
    assert "DNS" in info.value.hint("en")


@pytest.mark.parametrize("encryption", ["none", "ssl"])
async def test_silent_server_times_out(settings: Settings, encryption: str) -> None:
    with silent_server() as port:
        s = replace(settings.smtp, host="127.0.0.1", port=port, encryption=encryption,
                    timeout=1.5)
        started = time.monotonic()
        with pytest.raises(SmtpFailure) as info:
            await send_message(s, _msg())
        took = time.monotonic() - started
    assert info.value.kind == "timeout" and not info.value.permanent
    assert took < 1.5 + 1


def test_port_mistakes_are_named_in_the_hint() -> None:
    from mikotui.config import Endpoint

    for port, enc, word in ((465, "starttls", "ssl"), (587, "ssl", "starttls")):
        variant = Endpoint("smtp.example.com", port, enc).port_mistake()
        f = SmtpFailure("timeout", "no answer", variant=variant)
        assert str(port) in f.hint("en") and word in f.hint("en") and str(port) in f.hint("ru")
    assert Endpoint("smtp.example.com", 587, "starttls").port_mistake() == ""


async def test_events_end_with_done_on_failure(settings: Settings) -> None:
    events: list[str] = []
    s = replace(settings.smtp, host="127.0.0.1", port=closed_port(), encryption="none")
    with pytest.raises(SmtpFailure):
        await send_message(s, _msg(), on_event=events.append)
    assert events == ["connect", "done"]


async def test_message_too_big(settings: Settings) -> None:
    with smtp_server("plain", replies=Replies(data="552 5.3.4 Message size exceeds limit")) as srv:
        f = await _fail(srv.point(settings))
    assert (f.kind, f.code, f.permanent) == ("too_big", 552, True)
    assert "max_attachment_mb" in f.hint("en")


async def test_aiosmtpd_size_limit_is_too_big(settings: Settings) -> None:
    with smtp_server("plain", data_size_limit=200) as srv:
        f = await _fail(srv.point(settings), _msg("x" * 50))
    assert f.kind == "too_big"


async def test_temporary_451(settings: Settings) -> None:
    replies = Replies(rcpt={TO: "451 4.7.1 Greylisted, try again later"})
    with smtp_server("plain", replies=replies) as srv:
        f = await _fail(srv.point(settings))
    assert (f.kind, f.code, f.permanent) == ("temporary", 451, False)
    assert f.refused == {TO: (451, "4.7.1 Greylisted, try again later")}


async def test_recipient_refused_550(settings: Settings) -> None:
    replies = Replies(rcpt={TO: "550 5.1.1 User unknown"})
    with smtp_server("plain", replies=replies) as srv:
        f = await _fail(srv.point(settings))
    assert (f.kind, f.code, f.permanent) == ("recipient_refused", 550, True)
    assert f.server_message == "5.1.1 User unknown"


async def test_sender_refused(settings: Settings) -> None:
    with smtp_server("plain", replies=Replies(mail="553 5.7.1 Sender not owned")) as srv:
        f = await _fail(srv.point(settings))
    assert (f.kind, f.code, f.permanent) == ("sender_refused", 553, True)


async def test_temporary_at_data(settings: Settings) -> None:
    with smtp_server("plain", replies=Replies(data="451 4.3.0 Try later")) as srv:
        f = await _fail(srv.point(settings))
    assert (f.kind, f.permanent) == ("temporary", False)


async def test_password_never_in_any_output(settings: Settings, ca: trustme.CA) -> None:
    """Every path that meets the password: success, wrong password (PLAIN and
    LOGIN both tried), refused insecure auth."""
    outputs: list[str] = []
    with smtp_server("starttls", auth=(USER, PASSWORD), ca=ca) as srv:
        ok = await send_message(srv.point(settings).smtp, _msg())
        outputs.append(_all_text(ok))
        bad = await _fail(srv.point(settings, password=PASSWORD + "x"))
        outputs.append(_all_text(bad) + bad.hint("en") + bad.hint("ru"))
        assert {m for m, _ in srv.handler.auth_attempts} >= {"PLAIN", "LOGIN"}
    for secret in smtp.secret_forms(USER, PASSWORD) + smtp.secret_forms(USER, PASSWORD + "x"):
        for out in outputs:
            assert secret not in out
    assert "[credentials hidden]" in outputs[0]


async def test_server_echoing_the_password_is_scrubbed(settings: Settings) -> None:
    def echo(server, session, envelope, mechanism, data) -> AuthResult:
        return AuthResult(success=False, handled=False,
                          message=f"535 5.7.8 bad password {data.password.decode()}")

    with smtp_server("plain", auth=(USER, "x"), auth_require_tls=False,
                     authenticator=echo) as srv:
        s = srv.point(settings, allow_insecure_auth=True, password=PASSWORD).smtp
        for record in (True, False):
            with pytest.raises(SmtpFailure) as info:
                async with Connection(s, record=record):
                    pass
            f = info.value
            assert f.kind == "auth_failed" and "bad password ********" in f.server_message
            assert PASSWORD not in _all_text(f)


# The "pw-" start keeps a password from matching ordinary transcript text (a
# password "250" would "appear" in every reply) while the rest is anything.
@given(password=st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
                        min_size=1, max_size=40).map(lambda rest: "pw-" + rest))
@settings_(max_examples=25, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_no_password_form_leaks(password: str, auth_server) -> None:
    """Any password, refused after PLAIN and LOGIN both put it on the wire:
    neither it nor its base64 forms reach the transcript, the error or a hint."""
    s = replace(Settings().smtp, host="127.0.0.1", port=auth_server.port, encryption="none",
                allow_insecure_auth=True, username=USER, password=password,
                sender_address=SENDER, timeout=5)
    with pytest.raises(SmtpFailure) as info:
        asyncio.run(send_message(s, _msg()))
    f = info.value
    assert f.kind == "auth_failed"
    out = _all_text(f) + f.hint("en") + f.hint("ru") + f.summary()
    for secret in smtp.secret_forms(USER, password):
        assert secret not in out


@pytest.fixture(scope="module")
def auth_server():
    with smtp_server("plain", auth=(USER, "only-this-one"), auth_require_tls=False) as srv:
        yield srv


# --- a stored message, sent a piece at a time ------------------------------------

def _as_aiosmtplib_sends(data: bytes, *, stuffed: bool = True) -> bytes:
    """The DATA aiosmtplib's sendmail writes for `data` (the closing "." aside)."""
    from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

    data = normalize_message_line_endings(data)
    return PERIOD_REGEX.sub(b"..", data) if stuffed else data


@settings_(max_examples=300, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b".", b"..", b"x", b"ab"]),
                     max_size=60).map(b"".join),
       piece=st.integers(1, 9))
def test_pieces_on_the_wire_are_what_sendmail_writes_whole(
        monkeypatch: pytest.MonkeyPatch, data: bytes, piece: int) -> None:
    """Line endings and dot-stuffing are done per piece: a CR LF split
    between two reads, or a "." opening the line after one, come out as
    they would from the whole message."""
    import io

    monkeypatch.setattr(smtp, "_PIECE", piece)
    for stuffed in (True, False):
        pieces = list(smtp.wire_pieces(io.BytesIO(data), stuffed=stuffed))
        assert b"".join(pieces) == _as_aiosmtplib_sends(data, stuffed=stuffed)
        assert all(p.endswith(b"\r\n") for p in pieces)


@pytest.mark.parametrize("mode", ["plain", "starttls"])
async def test_a_stored_message_goes_out_in_pieces_as_it_is(
        settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        ca: trustme.CA, mode: str) -> None:
    """A stored message read in small pieces arrives byte for byte (the
    server undoes the dot-stuffing), with SIZE declared, and the transcript
    shows its header lines and its body summed up, as for one write."""
    monkeypatch.setattr(smtp, "_PIECE", 7)
    stored = (b"From: " + SENDER.encode() + b"\nTo: " + TO.encode() + b"\nSubject: Pieces\n\n"
              b".starts with a dot\n.\n..\nmiddle\r\nlast line without a break")
    path = tmp_path / "message.eml"
    path.write_bytes(stored)
    with smtp_server(mode, ca=ca) as srv:
        async with Connection(srv.point(settings).smtp) as conn:
            with path.open("rb") as f:
                result = await conn.send(f, [TO])
            assert conn.transcript is not None
            text = conn.transcript.text()
    assert result.accepted == (TO,)
    [got] = srv.handler.messages
    assert got.raw == _as_aiosmtplib_sends(stored, stuffed=False)
    size = len(_as_aiosmtplib_sends(stored, stuffed=False))
    arrow = "->" if mode == "plain" else "~>"
    assert f"MAIL FROM:<{SENDER}> size={size}" in text
    assert f" {arrow} Subject: Pieces\n" in text and f" {arrow} .\n" in text
    body = _as_aiosmtplib_sends(stored).partition(b"\r\n\r\n")[2]
    lines = body.count(b"\r\n")
    assert f"[body: {len(body)} bytes, {lines} lines]" in text
    assert "starts with a dot" not in text
