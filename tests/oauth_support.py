"""OAuth2 test parts, all real: panva's `oidc-provider` (a certified OAuth 2.0 /
OpenID server, run by node from a cache folder outside the repository, see
tests/oauth/install.sh) as the authorization server, and an aiosmtpd server
whose AUTH XOAUTH2 / OAUTHBEARER asks that server's introspection endpoint
about every token it is given, as a mail provider's server does.

    with AuthServer() as op, OAuthSmtp(op, ca) as mx:
        settings = oauth_settings(tmp_path, op, mx)
"""

from __future__ import annotations

import base64
import json
import os
import re
import select
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any, Self

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from conftest import mikotui_command
from notify_support import ADMIN, Handler
from oauth_browser import Browser
from smtp_servers import server_context

from mikotui import config
from mikotui.sandbox import free_port

HERE = Path(__file__).resolve().parent
MAILBOX = "pbx@company.test"
NODE_MODULES = Path(os.environ.get("MIKOTUI_TEST_CACHE",
                                   Path.home() / ".cache" / "mikotui-test")) / "node_modules"
PROVIDER_MODULE = NODE_MODULES / "oidc-provider" / "lib" / "index.js"


def need_provider() -> None:
    """Skip (saying why) when node or oidc-provider is missing; in CI they
    are installed by `make test`, so there it is a failure instead."""
    missing = ("node is not installed" if shutil.which("node") is None else
               f"oidc-provider is not installed in {NODE_MODULES} (make test installs it)"
               if not PROVIDER_MODULE.is_file() else "")
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the OAuth2 tests: {missing}")
        pytest.skip(f"OAuth2 tests need a real authorization server: {missing}")


class AuthServer:
    """oidc-provider on 127.0.0.1 with the device flow, PKCE, rotating
    refresh tokens, introspection and revocation (tests/oauth/provider.mjs)."""

    def __init__(self, access_ttl: int = 3600) -> None:
        need_provider()
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.access_ttl = access_ttl
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Self:
        env = {**os.environ, "PORT": str(self.port), "ACCESS_TTL": str(self.access_ttl),
               "OIDC_PROVIDER_MODULE": str(PROVIDER_MODULE)}
        self.proc = subprocess.Popen(["node", str(HERE / "oauth" / "provider.mjs")],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env=env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode() if _readable(self.proc.stdout, 30) else ""
        if not line.startswith("ready"):
            self.__exit__()
            raise RuntimeError(f"oidc-provider did not start: {line!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def introspect(self, token: str) -> dict[str, Any]:
        body = urllib.parse.urlencode({"token": token, "client_id": "smtp-server",
                                       "client_secret": "smtp-server-secret"}).encode()
        req = urllib.request.Request(f"{self.issuer}/token/introspection", data=body)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(req, timeout=10) as resp:
            return json.loads(resp.read())

    def revoke(self, token: str) -> None:
        """What an admin does in the provider's console ("revoke sessions")."""
        body = urllib.parse.urlencode({"token": token, "client_id": "mikotui"}).encode()
        req = urllib.request.Request(f"{self.issuer}/token/revocation", data=body)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(req, timeout=10) as resp:
            assert resp.status == 200


class OAuthHandler(Handler):
    """notify_support's recording handler, plus the two OAuth2 mechanisms,
    each token checked at the authorization server."""

    def __init__(self, op: AuthServer) -> None:
        super().__init__()
        self.op = op
        self.tokens: list[str] = []  # every token a client offered
        self.verdicts: list[tuple[str, bool]] = []  # (mechanism, accepted)

    async def auth_XOAUTH2(self, server: Any, args: list[str]) -> AuthResult:
        return await self._check(server, args, "XOAUTH2")

    async def auth_OAUTHBEARER(self, server: Any, args: list[str]) -> AuthResult:
        return await self._check(server, args, "OAUTHBEARER")

    async def _check(self, server: Any, args: list[str], mechanism: str) -> AuthResult:
        import asyncio

        if len(args) < 2:
            return AuthResult(success=False, handled=False)
        raw = base64.b64decode(args[1]).decode("utf-8", "replace")
        if mechanism == "XOAUTH2":
            m = re.fullmatch(r"user=([^\x01]*)\x01auth=Bearer ([^\x01]+)\x01\x01", raw)
        else:
            m = re.fullmatch(r"n,a=([^,]*),\x01auth=Bearer ([^\x01]+)\x01\x01", raw)
        user, token = (m.group(1), m.group(2)) if m else ("", "")
        self.tokens.append(token)
        info = await asyncio.get_running_loop().run_in_executor(None, self.op.introspect, token)
        ok = bool(m) and info.get("active") is True and info.get("sub") == user \
            and "smtp.send" in str(info.get("scope", "")).split()
        self.verdicts.append((mechanism, ok))
        if ok:
            return AuthResult(success=True, auth_data=user)
        # As Gmail and Outlook do: a JSON challenge first, then 535 after the
        # client's empty (XOAUTH2) or ^A (OAUTHBEARER) answer.
        await server.challenge_auth(json.dumps({"status": "invalid_token",
                                                "schemes": "bearer"}))
        return AuthResult(success=False, handled=False)


class OAuthSmtp:
    """aiosmtpd with STARTTLS and only OAuth2 mechanisms (no PLAIN/LOGIN)."""

    def __init__(self, op: AuthServer, ca, mechanisms: tuple[str, ...] = ("XOAUTH2",
                                                                          "OAUTHBEARER")):
        self.port = free_port()
        self.handler = OAuthHandler(op)
        exclude = [m for m in ("PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER")
                   if m not in mechanisms]
        self.controller = Controller(
            self.handler, hostname="127.0.0.1", port=self.port, server_hostname="mx.test",
            tls_context=server_context(ca), require_starttls=True, auth_required=True,
            auth_exclude_mechanism=exclude)

    def __enter__(self) -> Self:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


def oauth_settings(tmp_path: Path, op: AuthServer, mx: OAuthSmtp) -> config.Settings:
    s = config.defaults("en")
    oauth = config.OAuth2(
        provider="custom", client_id="mikotui", authorization_url=f"{op.issuer}/auth",
        token_url=f"{op.issuer}/token", device_authorization_url=f"{op.issuer}/device/auth",
        revocation_url=f"{op.issuer}/token/revocation", scope="smtp.send offline_access")
    return replace(
        s,
        smtp=replace(s.smtp, host="127.0.0.1", port=mx.port, encryption="starttls",
                     username=MAILBOX, password="", auth="oauth2", oauth2=oauth, timeout=10),
        notifications=replace(s.notifications, admin_email=ADMIN),
        missed_call=replace(s.missed_call, email="missed@pbx.test"),
        spool=replace(s.spool, path=str(tmp_path / "spool")),
    )


def paste_login(config_path: str, env: dict[str, str], login: str = MAILBOX,
                tamper=None) -> tuple[subprocess.CompletedProcess, Browser]:
    """`mikotui oauth2 login --paste` as an admin runs it: read the address it
    prints, sign in through the provider's pages, paste back where the
    browser landed (`tamper` may change that first)."""
    proc = subprocess.Popen(mikotui_command() + ["oauth2", "login", "--paste", "--config",
                                                 config_path],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, **env})
    assert proc.stdout is not None and proc.stdin is not None
    out = read_until(proc.stdout, b"Address: ")
    url = re.search(rb"^  (http\S+/auth\?\S+)$", out, re.MULTILINE)
    redirect = re.search(rb"goes to (http://127\.0\.0\.1:\d+/)", out)
    assert url and redirect, out
    browser = Browser(login)
    landed = browser.open(url.group(1).decode(), stop_at=redirect.group(1).decode())
    assert landed.startswith(redirect.group(1).decode()), browser.pages[-2:]
    if tamper:
        landed = tamper(landed)
    stdout, stderr = proc.communicate(landed.encode() + b"\n", timeout=30)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out + stdout, stderr)
    return done, browser


def read_until(stream, marker: bytes, timeout: float = 30) -> bytes:
    """Bytes from a child's pipe up to and including `marker`."""
    got = b""
    deadline = time.monotonic() + timeout
    fd = stream.fileno()
    while marker not in got:
        left = deadline - time.monotonic()
        if not _readable(fd, max(0, left)):
            raise AssertionError(f"no {marker!r} within {timeout} s; got {got!r}")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise AssertionError(f"output ended before {marker!r}; got {got!r}")
        got += chunk
    return got


def _readable(stream, timeout: float) -> bool:
    """poll(), not select(): a full suite runs past descriptor 1024."""
    poller = select.poll()
    poller.register(stream, select.POLLIN | select.POLLHUP)
    return bool(poller.poll(timeout * 1000))


def background(target, *args) -> threading.Thread:
    t = threading.Thread(target=target, args=args, daemon=True)
    t.start()
    return t
