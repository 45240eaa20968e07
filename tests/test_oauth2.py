"""OAuth2 end to end against a real authorization server (oidc-provider) and
a real SMTP server that checks every token at that server's introspection
endpoint; `mikotui` runs as the admin runs it, in a subprocess."""

from __future__ import annotations

import http.server
import json
import os
import re
import stat
import subprocess
import threading
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import mikotui_command, run_cli
from oauth_browser import Browser
from oauth_support import (
    MAILBOX,
    AuthServer,
    OAuthSmtp,
    oauth_settings,
    paste_login,
    read_until,
)
from smtp_servers import new_ca, trust_ca

from mikotui import config


@pytest.fixture
def ca():
    return new_ca()


@pytest.fixture
def env(ca, tmp_path):
    return trust_ca(ca, tmp_path)


def save(tmp_path: Path, settings: config.Settings) -> str:
    return str(config.save(settings, tmp_path / "mikotui.toml"))


def token_file(tmp_path: Path) -> dict:
    path = tmp_path / "oauth2-token.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    return json.loads(path.read_text())


def everything_written(tmp_path: Path) -> list[bytes]:
    """Every file mikotui may have written except the token file itself."""
    return [p.read_bytes() for p in tmp_path.rglob("*")
            if p.is_file() and not p.name.startswith("oauth2-token.json")]


def assert_hidden(texts, secrets) -> None:
    secrets = [s for s in secrets if s]
    assert secrets
    for text in texts:
        text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        for secret in secrets:
            assert secret not in text, "a token was shown or written"


def missed_call(conf: str, env: dict, called: str = "301") -> None:
    r = run_cli("--config", conf, "notify", "missed", "--caller", "5551234", "--called",
                called, "--queue-only", env=env)
    assert r.returncode == 0, r.stderr_text


def queued(tmp_path: Path, state: str = "queue") -> list[dict]:
    folder = tmp_path / "spool" / state
    return [json.loads((p / "meta.json").read_bytes()) for p in sorted(folder.iterdir())] \
        if folder.is_dir() else []


def start_device_login(conf: str, env: dict) -> subprocess.Popen:
    """`mikotui oauth2 login --device` as the admin runs it, its output piped."""
    return subprocess.Popen(mikotui_command() + ["oauth2", "login", "--device", "--config", conf],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, **env})


def device_prompt(proc: subprocess.Popen) -> tuple[str, str, str]:
    """What the device login showed, and the address and code in it."""
    shown = read_until(proc.stdout, b"Waiting for the sign-in").decode()
    uri = re.search(r"^  (http\S+)$", shown, re.MULTILINE).group(1)
    code = re.search(r"enter the code:\s+(\S+)", shown).group(1)
    return shown, uri, code


# --- sign-in ---------------------------------------------------------------------

def test_device_login_end_to_end_then_a_mail_with_xoauth2(tmp_path, ca, env):
    with AuthServer() as op, OAuthSmtp(op, ca) as mx:
        conf = save(tmp_path, oauth_settings(tmp_path, op, mx))
        proc = start_device_login(conf, env)
        try:
            shown, uri, code = device_prompt(proc)
            # The admin on another computer: the provider's own pages, code typed in.
            browser = Browser(MAILBOX, user_code=code)
            assert "Success" in browser.open(uri)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err
        assert f"Signed in as {MAILBOX}" in out.decode()
        tokens = token_file(tmp_path)
        assert op.introspect(tokens["access_token"])["sub"] == MAILBOX

        status = run_cli("--config", conf, "oauth2", "status", env=env)
        assert status.returncode == 0 and f"signed in as {MAILBOX}" in status.stdout_text

        sent = run_cli("--config", conf, "test-email", "--to", "it@pbx.test", env=env)
        assert sent.returncode == 0, sent.stdout_text + sent.stderr_text
        assert "AUTH XOAUTH2 [token hidden]" in sent.stdout_text
        assert mx.handler.verdicts == [("XOAUTH2", True)]
        assert len(mx.handler.received) == 1
        assert_hidden([shown, out, err, status.stdout_text, status.stderr_text,
                       sent.stdout_text, sent.stderr_text, *everything_written(tmp_path)],
                      [tokens["access_token"], tokens["refresh_token"], *mx.handler.tokens])


def test_a_declined_device_login_says_so_and_stores_nothing(tmp_path, ca, env):
    with AuthServer() as op, OAuthSmtp(op, ca) as mx:
        conf = save(tmp_path, oauth_settings(tmp_path, op, mx))
        proc = start_device_login(conf, env)
        try:
            _, uri, code = device_prompt(proc)
            Browser(MAILBOX, user_code=code, decline=True).open(uri)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == os.EX_NOPERM
        assert b"declined" in err
        assert not (tmp_path / "oauth2-token.json").exists()


def test_paste_login_with_pkce_and_a_wrong_state_is_refused(tmp_path, ca, env):
    with AuthServer() as op, OAuthSmtp(op, ca) as mx:
        conf = save(tmp_path, oauth_settings(tmp_path, op, mx))

        def other_state(url: str) -> str:
            return re.sub(r"state=[^&]+", "state=someone-elses", url)

        bad, _ = paste_login(conf, env, tamper=other_state)
        assert bad.returncode == os.EX_NOPERM
        assert b"state does not match" in bad.stderr
        assert not (tmp_path / "oauth2-token.json").exists()

        good, browser = paste_login(conf, env)
        assert good.returncode == 0, good.stderr
        assert b"code_challenge_method=S256" in good.stdout  # PKCE, and the server checked it
        tokens = token_file(tmp_path)
        assert op.introspect(tokens["access_token"])["active"] is True
        code = re.search(r"code=([^&]+)", browser.landed).group(1)
        assert_hidden([good.stdout, good.stderr, *everything_written(tmp_path)],
                      [tokens["access_token"], tokens["refresh_token"], code])


def test_oauthbearer_where_the_server_offers_only_that(tmp_path, ca, env):
    with AuthServer() as op, OAuthSmtp(op, ca, mechanisms=("OAUTHBEARER",)) as mx:
        conf = save(tmp_path, oauth_settings(tmp_path, op, mx))
        assert paste_login(conf, env)[0].returncode == 0
        sent = run_cli("--config", conf, "test-email", "--to", "it@pbx.test", env=env)
        assert sent.returncode == 0, sent.stdout_text
        assert "AUTH OAUTHBEARER [token hidden]" in sent.stdout_text
        assert mx.handler.verdicts == [("OAUTHBEARER", True)]
        assert_hidden([sent.stdout_text, sent.stderr_text], mx.handler.tokens)


# --- using and renewing the token ------------------------------------------------

def test_refresh_after_the_access_token_expires_saves_the_rotated_refresh_token(
        tmp_path, ca, env):
    with AuthServer(access_ttl=2) as op, OAuthSmtp(op, ca) as mx:
        conf = save(tmp_path, oauth_settings(tmp_path, op, mx))
        assert paste_login(conf, env)[0].returncode == 0
        first = token_file(tmp_path)
        threading.Event().wait(2.5)  # the provider's clock: the access token runs out
        assert op.introspect(first["access_token"])["active"] is False

        missed_call(conf, env)
        r = run_cli("--config", conf, "deliver", env=env)
        assert r.returncode == 0 and "sent 1," in r.stdout_text, r.stderr_text
        second = token_file(tmp_path)
        assert second["access_token"] != first["access_token"]
        assert second["refresh_token"] != first["refresh_token"]  # rotated, and kept
        assert op.introspect(first["refresh_token"])["active"] is False  # the old one is spent

        threading.Event().wait(2.5)
        missed_call(conf, env)
        r = run_cli("--config", conf, "deliver", env=env)
        assert "sent 1," in r.stdout_text, r.stderr_text  # the rotated one worked too
        assert token_file(tmp_path)["refresh_token"] not in (first["refresh_token"],
                                                            second["refresh_token"])
        assert [v for _, v in mx.handler.verdicts] == [True, True]
        assert_hidden([r.stdout_text, r.stderr_text, *everything_written(tmp_path)],
                      [first["refresh_token"], second["refresh_token"], *mx.handler.tokens])


def test_a_revoked_token_keeps_mail_queued_and_tells_the_admin_once(tmp_path, ca, env):
    with AuthServer() as op, OAuthSmtp(op, ca) as mx:
        settings = oauth_settings(tmp_path, op, mx)
        # Old enough to be given up on, were it an ordinary failure.
        settings = replace(settings, spool=replace(settings.spool, max_age_hours=0.0001))
        conf = save(tmp_path, settings)
        assert paste_login(conf, env)[0].returncode == 0
        op.revoke(token_file(tmp_path)["refresh_token"])  # e.g. the tenant admin revoked it

        missed_call(conf, env, "301")
        missed_call(conf, env, "302")
        first = run_cli("--config", conf, "deliver", env=env)
        assert first.returncode == 0
        assert "authorize again: mikotui oauth2 login" in first.stderr_text
        assert queued(tmp_path, "failed") == []
        waiting = queued(tmp_path)
        assert sorted(e["kind"] for e in waiting) == ["alert", "missed", "missed"]

        threading.Event().wait(0.5)  # past max_age since the first try
        run_cli("--config", conf, "queue", "retry", "--all", env=env)
        again = run_cli("--config", conf, "deliver", env=env)
        assert "deferred 3," in again.stdout_text, again.stdout_text + again.stderr_text
        assert again.returncode == 0
        assert queued(tmp_path, "failed") == []
        assert len(queued(tmp_path)) == 3  # no second alert
        status = run_cli("--config", conf, "oauth2", "status", env=env)
        assert status.returncode == os.EX_CONFIG
        assert "authorize again: mikotui oauth2 login" in status.stdout_text

        assert paste_login(conf, env)[0].returncode == 0  # the admin signs in again
        run_cli("--config", conf, "queue", "retry", "--all", env=env)
        done = run_cli("--config", conf, "deliver", env=env)
        assert "sent 3," in done.stdout_text, done.stderr_text
        subjects = sorted(m.subject for m in mx.handler.received)
        assert any("sign-in (OAuth2) was refused" in s for s in subjects)
        listing = run_cli("--config", conf, "queue", "list", env=env)
        assert_hidden([first.stderr_text, again.stderr_text, done.stderr_text,
                       listing.stdout_text, *everything_written(tmp_path)],
                      [token_file(tmp_path)["refresh_token"], *mx.handler.tokens])


class _HoldingProxy(http.server.ThreadingHTTPServer):
    """In front of the token endpoint: holds each refresh until a second one
    arrives (or 3 s pass), so two deliverers that do not wait for each
    other are sure to present the same refresh token."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.arrived = threading.Semaphore(0)
        self.count = 0
        super().__init__(("127.0.0.1", 0), _Forward)


class _Forward(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        server: _HoldingProxy = self.server  # type: ignore[assignment]
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server.count += 1
        server.arrived.release()
        if server.count == 1:
            server.arrived.acquire(timeout=3)  # the other one, if it comes
        req = urllib.request.Request(server.target, data=body, headers={
            "Content-Type": self.headers["Content-Type"]})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=10) as resp:
                status, data = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, data = exc.code, exc.read()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def test_two_deliverers_refreshing_at_once_keep_the_newer_token(tmp_path, ca, env):
    with AuthServer(access_ttl=2) as op, OAuthSmtp(op, ca) as mx:
        settings = oauth_settings(tmp_path, op, mx)
        conf = save(tmp_path, settings)
        assert paste_login(conf, env)[0].returncode == 0
        proxy = _HoldingProxy(f"{op.issuer}/token")
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        try:
            slow = replace(settings.smtp.oauth2,
                           token_url=f"http://127.0.0.1:{proxy.server_address[1]}/")
            conf = save(tmp_path, replace(settings, smtp=replace(settings.smtp, oauth2=slow)))
            threading.Event().wait(2.5)  # the access token has run out
            for called in ("301", "302", "303", "304"):
                missed_call(conf, env, called)
            both = [subprocess.Popen(mikotui_command() + ["--config", conf, "deliver"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env={**os.environ, **env}) for _ in range(2)]
            outs = [p.communicate(timeout=60) for p in both]
        finally:
            proxy.shutdown()
        assert all(p.returncode == 0 for p in both), outs
        assert len(mx.handler.received) == 4, outs
        assert all(ok for _, ok in mx.handler.verdicts)
        assert queued(tmp_path) == []
        # The token kept is the newest one: it still refreshes.
        status = run_cli("--config", conf, "oauth2", "status", env=env)
        assert status.returncode == 0, status.stdout_text
        assert op.introspect(token_file(tmp_path)["refresh_token"])["active"] is True


# --- the token file by hand, and the commands' edges --------------------------------

def test_token_from_stdin_is_stored_private_and_used(tmp_path, ca, env):
    with AuthServer() as op, OAuthSmtp(op, ca) as mx:
        conf = save(tmp_path, oauth_settings(tmp_path, op, mx))
        assert paste_login(conf, env)[0].returncode == 0
        refresh = token_file(tmp_path)["refresh_token"]
        (tmp_path / "oauth2-token.json").unlink()

        bad = run_cli("--config", conf, "oauth2", "token", "--stdin", input="two words\n",
                      env=env)
        assert bad.returncode == os.EX_DATAERR
        r = run_cli("--config", conf, "oauth2", "token", "--stdin", input=refresh + "\n",
                    env=env)
        assert r.returncode == 0, r.stderr_text
        assert token_file(tmp_path)["access_token"] == ""
        sent = run_cli("--config", conf, "test-email", "--to", "it@pbx.test", env=env)
        assert sent.returncode == 0, sent.stdout_text
        assert_hidden([r.stdout_text, r.stderr_text, sent.stdout_text],
                      [refresh, token_file(tmp_path)["refresh_token"]])

        out = run_cli("--config", conf, "oauth2", "logout", env=env)
        assert out.returncode == 0 and "revoked" in out.stdout_text
        assert not (tmp_path / "oauth2-token.json").exists()
        assert op.introspect(refresh)["active"] is False
        status = run_cli("--config", conf, "oauth2", "status", env=env)
        assert status.returncode == os.EX_CONFIG and "not signed in" in status.stdout_text


def test_oauth2_commands_need_oauth2_in_the_config(tmp_path):
    conf = save(tmp_path, config.defaults("en"))
    r = run_cli("--config", conf, "oauth2", "status")
    assert r.returncode == os.EX_CONFIG and "smtp.auth" in r.stderr_text


def test_oauth2_config_round_trips_and_is_checked():
    text = ('[smtp]\nauth = "oauth2"\nusername = "pbx@company.com"\n'
            '[smtp.oauth2]\nprovider = "microsoft"\nclient_id = "abc"\n'
            'token_url = "http://login.example.com/token"\n')
    s = config.loads(text)
    assert s.smtp.auth == "oauth2" and s.smtp.oauth2.client_id == "abc"
    assert config.loads(config.dumps(s)) == s
    keys = {p.key for p in config.errors(config.validate(s))}
    assert keys == {"smtp.oauth2.token_url"}  # tokens over plain http to another host: no
    wrong = config.loads('[smtp]\nauth = "oauth"\n[smtp.oauth2]\nprovider = "aol"\n')
    assert {"smtp.auth"} <= {p.key for p in config.errors(config.validate(wrong))}
    with pytest.raises(config.ConfigError, match="smtp.oauth2"):
        config.loads('[smtp]\noauth2 = "microsoft"\n')
