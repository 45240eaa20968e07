"""MikoPBX's OAuth2 keys: a PBX that is signed in stays signed in when its
settings come over (import-mikopbx) and go back (export-mikopbx), against the
real authorization server; tokens go to the token file, never to the config
or the output."""

from __future__ import annotations

import json
import stat

from conftest import run_cli
from oauth_support import MAILBOX, AuthServer, OAuthSmtp, oauth_settings, paste_login
from smtp_servers import new_ca, trust_ca
from test_mikopbx import make_db, rows

from mikotui import config


def test_a_signed_in_pbx_stays_signed_in_both_ways(tmp_path):
    ca = new_ca()
    env = trust_ca(ca, tmp_path)
    with AuthServer() as op, OAuthSmtp(op, ca) as mx:
        conf = str(config.save(oauth_settings(tmp_path, op, mx), tmp_path / "mikotui.toml"))
        assert paste_login(conf, env)[0].returncode == 0  # what the PBX's web sign-in did
        token_file = tmp_path / "oauth2-token.json"
        refresh = json.loads(token_file.read_text())["refresh_token"]
        token_file.unlink()
        db = make_db(tmp_path / "mikopbx.db", {
            "MailSMTPHost": "127.0.0.1", "MailSMTPPort": str(mx.port), "MailSMTPUseTLS": "tls",
            "MailSMTPUsername": MAILBOX, "MailSMTPPassword": "",
            "MailSMTPSenderAddress": MAILBOX, "MailSMTPAuthType": "oauth2",
            "MailOAuth2Provider": "google", "MailOAuth2ClientId": "mikotui",
            "MailOAuth2ClientSecret": "", "MailOAuth2RefreshToken": refresh,
            "MailOAuth2AccessToken": "expired-long-ago", "MailOAuth2TokenExpires": "0"})

        imported = run_cli("--config", conf, "import-mikopbx", str(db), env=env)
        assert imported.returncode == 0, imported.stderr_text
        s = config.load(conf)
        assert s.smtp.auth == "oauth2" and s.smtp.oauth2.provider == "google"
        assert s.smtp.oauth2.client_id == "mikotui"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert json.loads(token_file.read_text())["refresh_token"] == refresh
        assert "OAuth2 sign-in: the refresh token is kept in" in imported.stdout_text

        sent = run_cli("--config", conf, "test-email", "--to", "it@pbx.test", env=env)
        assert sent.returncode == 0, sent.stdout_text  # no new consent was needed
        rotated = json.loads(token_file.read_text())["refresh_token"]
        assert rotated != refresh

        exported = run_cli("--config", conf, "export-mikopbx", str(db), env=env)
        assert exported.returncode == 0, exported.stderr_text
        back = rows(db)
        assert back["MailOAuth2RefreshToken"] == rotated  # the PBX keeps working too
        assert back["MailSMTPAuthType"] == "oauth2"
        for text in (imported.stdout_text, imported.stderr_text, exported.stdout_text,
                     exported.stderr_text, (tmp_path / "mikotui.toml").read_text()):
            assert refresh not in text and rotated not in text


def test_an_older_pbx_without_oauth2_keys_is_left_without_them(tmp_path):
    db = make_db(tmp_path / "mikopbx.db")
    s = config.defaults("en")
    conf = str(config.save(s, tmp_path / "mikotui.toml"))
    assert run_cli("--config", conf, "import-mikopbx", str(db)).returncode in (0, 65)
    assert config.load(conf).smtp.auth == "password"
    run_cli("--config", conf, "export-mikopbx", str(db))
    assert not {k for k in rows(db) if k.startswith("MailOAuth2") or k == "MailSMTPAuthType"}


def test_an_unknown_sign_in_type_is_reported_and_not_guessed(tmp_path):
    db = make_db(tmp_path / "mikopbx.db", {"MailSMTPAuthType": "kerberos"})
    conf = str(config.save(config.defaults("en"), tmp_path / "mikotui.toml"))
    r = run_cli("--config", conf, "import-mikopbx", str(db), "--dry-run")
    assert r.returncode == 65 and "MailSMTPAuthType: unknown sign-in 'kerberos'" in r.stderr_text
