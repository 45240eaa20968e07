"""The SMTP screen's OAuth2 choice and its Sign-in dialog, driven by the pilot
against the real authorization server (oidc-provider)."""

from __future__ import annotations

import asyncio
import re
import stat
from dataclasses import replace

from oauth_browser import Browser
from oauth_support import MAILBOX, AuthServer, OAuthSmtp, oauth_settings
from smtp_servers import new_ca
from test_tui import SIZE, make_app

from mikotui import config
from mikotui.screens.oauth2_dialog import SignInDialog
from mikotui.widgets.form import Field


def field(app, key: str) -> Field:
    return next(f for f in app.screen.query(Field) if f.key == key)


async def test_choosing_oauth2_swaps_the_password_for_the_sign_in(tmp_path):
    s = config.defaults("en")
    path = config.save(replace(s, spool=replace(s.spool, path=str(tmp_path / "spool"))),
                       tmp_path / "mikotui.toml")
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        assert field(app, "smtp.password").display
        assert not field(app, "oauth2.signin").display
        await pilot.click("#auth-oauth2")
        await pilot.pause()
        assert app.settings.smtp.auth == "oauth2"
        assert not field(app, "smtp.password").display
        assert field(app, "smtp.oauth2.provider").display
        assert "not signed in" in str(app.screen.query_one("#oauth2-status").render())
        # Each provider brings its SMTP server along (Microsoft's is a preset now).
        app.screen.query_one("#oauth2-provider").value = "yandex"
        await pilot.pause()
        assert (app.settings.smtp.host, app.settings.smtp.port) == ("smtp.yandex.ru", 465)
        app.screen.query_one("#oauth2-provider").value = "microsoft"
        await pilot.pause()
        assert (app.settings.smtp.host, app.settings.smtp.port,
                app.settings.smtp.encryption) == ("smtp.office365.com", 587, "starttls")
        assert app.settings.smtp.oauth2.provider == "microsoft"


async def test_sign_in_dialog_runs_the_device_flow(tmp_path):
    with AuthServer() as op, OAuthSmtp(op, new_ca()) as mx:
        path = config.save(oauth_settings(tmp_path, op, mx), tmp_path / "mikotui.toml")
        app = make_app(path)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.click("#oauth2-signin")
            dialog = app.screen
            assert isinstance(dialog, SignInDialog)
            text = ""
            for _ in range(100):  # the worker asks the provider for a code
                await pilot.pause(0.05)
                text = str(dialog.query_one("#signin-text").render())
                if "enter the code" in text:
                    break
            code = re.search(r"enter the code\s+(\S+)", text).group(1)
            uri = re.search(r"(http://\S+/device)\b", text).group(1)
            assert str(dialog.query_one("#signin-qr").render()).strip()  # the QR code fits
            assert "good for" in str(dialog.query_one("#signin-countdown").render())
            await asyncio.to_thread(Browser(MAILBOX, user_code=code).open, uri)
            for _ in range(300):  # the provider's poll interval is 5 s
                if not isinstance(app.screen, SignInDialog):
                    break
                await pilot.pause(0.05)
            await pilot.pause()
            assert f"signed in as {MAILBOX}" in str(app.screen.query_one("#oauth2-status")
                                                    .render())
        token_file = tmp_path / "oauth2-token.json"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600


async def test_cancel_stops_the_sign_in(tmp_path):
    with AuthServer() as op, OAuthSmtp(op, new_ca()) as mx:
        path = config.save(oauth_settings(tmp_path, op, mx), tmp_path / "mikotui.toml")
        app = make_app(path)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.click("#oauth2-signin")
            await pilot.pause(0.5)
            await pilot.click("#signin-cancel")
            await pilot.pause()
            assert not isinstance(app.screen, SignInDialog)
            await app.workers.wait_for_complete()
        assert not (tmp_path / "oauth2-token.json").exists()
