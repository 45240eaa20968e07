"""The OAuth2 "Sign in" dialog of the SMTP screen: the same device or paste
flow as `mikotui oauth2 login`, in a worker thread — the code, the address,
its QR code, a countdown, Cancel. Returns the mailbox signed in, or None."""

from __future__ import annotations

import threading
import time

from textual import on, work
from textual.app import ComposeResult
from textual.containers import HorizontalGroup, Vertical
from textual.widgets import Button, Input, Label, Static

from mikotui import oauth2
from mikotui.config import Settings
from mikotui.screens.dialogs import Dialog


class SignInDialog(Dialog):
    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings
        self.flow = oauth2.endpoints(settings.smtp.oauth2).default_flow
        self.cancelled = threading.Event()
        self.expires_at = 0.0
        self.paste: oauth2.PasteAuthorization | None = None

    def compose_dialog(self) -> ComposeResult:
        with Vertical(classes="dialog signin"):
            yield Label(self.t("signin.title"), classes="dialog-title")
            yield Static(self.t("signin.starting"), id="signin-text")
            yield Static("", id="signin-qr")
            yield Static("", id="signin-countdown")
            yield Input(placeholder="http://127.0.0.1:…/?code=…", id="signin-pasted",
                        compact=True)
            with HorizontalGroup(classes="dialog-buttons"):
                yield Button(self.t("signin.done"), id="signin-done", variant="primary",
                             compact=True)
                yield Button(self.t("button.cancel"), id="signin-cancel", compact=True)

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#signin-pasted").display = False
        self.query_one("#signin-done").display = False
        self.set_interval(1, self.tick)
        self.start()

    def tick(self) -> None:
        if self.expires_at:
            left = max(0, int(self.expires_at - time.time()))
            self.query_one("#signin-countdown", Static).update(
                self.t("signin.countdown", minutes=left // 60, seconds=f"{left % 60:02d}"))

    @work(thread=True, exclusive=True)
    def start(self) -> None:
        try:
            if self.flow == "device":
                da = oauth2.start_device(self.settings)
                self.app.call_from_thread(self.show_device, da)
                tokens = oauth2.poll_device(self.settings, da,
                                            sleep=lambda s: not self.cancelled.wait(s))
                self.app.call_from_thread(self.dismiss, tokens.username)
            else:
                self.paste = oauth2.start_paste(self.settings)
                self.app.call_from_thread(self.show_paste, self.paste)
        except oauth2.OAuth2Error as exc:
            if not self.cancelled.is_set():
                self.app.call_from_thread(self.failed, exc.message)

    def show_device(self, da: oauth2.DeviceAuthorization) -> None:
        self.expires_at = da.expires_at
        self.query_one("#signin-text", Static).update(
            self.t("signin.device", url=da.verification_uri, code=da.user_code))
        self.show_qr(da.verification_uri_complete or da.verification_uri)
        self.tick()

    def show_paste(self, pa: oauth2.PasteAuthorization) -> None:
        self.query_one("#signin-text", Static).update(
            self.t("signin.paste", url=pa.url, redirect=pa.redirect_uri))
        self.show_qr(pa.url)
        self.query_one("#signin-pasted").display = True
        self.query_one("#signin-done").display = True
        self.query_one("#signin-pasted", Input).focus()

    def show_qr(self, url: str) -> None:
        width, height = self.app.size
        lines = oauth2.qr_lines(url, columns=width - 6, rows=height - 10)
        self.query_one("#signin-qr", Static).update("\n".join(lines))

    def failed(self, message: str) -> None:
        self.expires_at = 0.0
        self.query_one("#signin-countdown", Static).update(
            f"[$error]✖ {self.t('signin.failed', reason=message)}[/]")

    @on(Button.Pressed, "#signin-done")
    @on(Input.Submitted, "#signin-pasted")
    def pasted(self) -> None:
        if self.paste is not None:
            self.finish(self.paste, self.query_one("#signin-pasted", Input).value)

    @work(thread=True, exclusive=True)
    def finish(self, pa: oauth2.PasteAuthorization, text: str) -> None:
        try:
            tokens = oauth2.finish_paste(self.settings, pa, text)
        except oauth2.OAuth2Error as exc:
            self.app.call_from_thread(self.failed, exc.message)
            return
        self.app.call_from_thread(self.dismiss, tokens.username)

    @on(Button.Pressed, "#signin-cancel")
    def action_cancel(self) -> None:
        self.cancelled.set()
        self.dismiss(None)
