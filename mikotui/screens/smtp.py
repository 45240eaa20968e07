"""F1: the SMTP connection (MikoPBX's mail settings page): server, login, sender,
admin address, encryption, certificate check, the master switch and each
kind's own switch; provider
presets; what the host/port/encryption combination will really do."""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, HorizontalGroup, Vertical, VerticalScroll
from textual.widgets import (
    Button,
    Checkbox,
    Input,
    Label,
    RadioButton,
    RadioSet,
    Select,
    Static,
)

from mikotui.config import AUTHS, ENCRYPTIONS, OAUTH2_PROVIDERS, Problem, Settings
from mikotui.screens.base import BaseScreen
from mikotui.widgets.email_preview import EmailPreview
from mikotui.widgets.form import (
    Choice,
    Field,
    Switch,
    key_of,
    number,
    value_of,
    widget_id,
    with_value,
)

# The three providers most PBX admins use: host, port, encryption.
PRESETS: dict[str, tuple[str, int, str]] = {
    "microsoft": ("smtp.office365.com", 587, "starttls"),
    "gmail": ("smtp.gmail.com", 587, "starttls"),
    "yandex": ("smtp.yandex.ru", 465, "ssl"),
    "mailru": ("smtp.mail.ru", 465, "ssl"),
}
# The usual port of each mode (MikoPBX moves the port between these).
DEFAULT_PORTS = {"none": 25, "starttls": 587, "ssl": 465}
TEXT_KEYS = ("smtp.host", "smtp.port", "smtp.username", "smtp.password",
             "smtp.sender_address", "smtp.sender_name", "smtp.timeout",
             "notifications.admin_email")
# The kinds' own switches: under the master switch, which wins.
KIND_KEYS = ("notifications.missed_call", "notifications.voicemail", "notifications.system",
             "notifications.login")
BOOL_KEYS = ("smtp.verify_certificate", "notifications.enabled", *KIND_KEYS)
# The OAuth2 rows (ids without "--": [smtp.oauth2] is a table inside [smtp]).
OAUTH2_TEXT = ("client_id", "client_secret")
# The SMTP preset that goes with each OAuth2 provider.
PROVIDER_PRESET = {"microsoft": "microsoft", "google": "gmail", "yandex": "yandex"}


def preset_of(host: str) -> str:
    name = host.split("://")[-1].split(":")[0].strip().lower()
    return next((p for p, (h, _, _) in PRESETS.items() if h == name), "other")


def port_hint(settings: Settings) -> tuple[str, dict[str, object]] | None:
    """The classic mistakes: 465 wants implicit TLS, 587 STARTTLS."""
    try:
        ep = settings.smtp.endpoint()
    except ValueError:
        return None
    mistake = ep.port_mistake()
    if mistake == "tls_port":
        return "hint.465", {"enc": ep.encryption}
    if mistake == "plain_port":
        return f"hint.{ep.port}", {}
    return None


class SmtpScreen(BaseScreen):
    MODE = "smtp"
    AUTO_FOCUS = "#smtp--host"
    BINDINGS: ClassVar[list[BindingType]] = [
        # F5 is the Employees screen; F8 is free on every screen.
        Binding("f8", "use_sandbox", "key.use_sandbox", key_display="F8"),
    ]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "use_sandbox":
            return self.miko.sandbox is not None
        return True

    def action_use_sandbox(self) -> None:
        self.miko.action_use_sandbox()

    def compose_body(self) -> ComposeResult:
        s = self.miko.settings
        t = self.t
        with Horizontal(classes="smtp"):
            with VerticalScroll(id="smtp-form", classes="form", can_focus=False):
                yield Field("preset", t("label.preset"), Select(
                    [(t(f"preset.{p}"), p) for p in (*PRESETS, "other")],
                    value=preset_of(s.smtp.host), allow_blank=False, compact=True, id="preset"))
                yield Field("smtp.host", t("label.smtp.host"),
                            Input(s.smtp.host, id="smtp--host", compact=True, select_on_focus=False,
                                  placeholder="smtp.example.com"))
                yield Field("smtp.port", t("label.smtp.port"),
                            Input(str(s.smtp.port), id="smtp--port", compact=True, select_on_focus=False, type="integer",
                                  classes="short"))
                yield Field("smtp.encryption", t("label.smtp.encryption"), RadioSet(
                    *(Choice(t(f"enc.{e}"), value=e == s.smtp.encryption, id=f"enc-{e}",
                                  compact=True) for e in ENCRYPTIONS),
                    id="smtp--encryption", compact=True))
                yield Field("smtp.verify_certificate", "", Switch(
                    t("label.smtp.verify_certificate"), s.smtp.verify_certificate,
                    id="smtp--verify_certificate", compact=True))
                yield Field("smtp.username", t("label.smtp.username"),
                            Input(s.smtp.username, id="smtp--username", compact=True, select_on_focus=False))
                yield Field("smtp.auth", t("label.smtp.auth"), RadioSet(
                    *(Choice(t(f"auth.{a}"), value=a == s.smtp.auth, id=f"auth-{a}",
                             compact=True) for a in AUTHS),
                    id="smtp--auth", compact=True))
                yield from self.compose_oauth2()
                yield Field("smtp.password", t("label.smtp.password"),
                            Input(s.smtp.password, id="smtp--password", password=True,
                                  compact=True, select_on_focus=False),
                            Button(t("password.show"), id="show-password", compact=True))
                yield Field("smtp.sender_address", t("label.smtp.sender_address"),
                            Input(s.smtp.sender_address, id="smtp--sender_address", compact=True, select_on_focus=False,
                                  placeholder=t("placeholder.sender_address")))
                yield Field("smtp.sender_name", t("label.smtp.sender_name"),
                            Input(s.smtp.sender_name, id="smtp--sender_name", compact=True, select_on_focus=False,
                                  placeholder="MikoPBX notification"))
                yield Field("smtp.timeout", t("label.smtp.timeout"),
                            Input(f"{s.smtp.timeout:g}", id="smtp--timeout", compact=True,
                                  select_on_focus=False, type="number", classes="short"))
                yield Field("notifications.admin_email", t("label.notifications.admin_email"),
                            Input(s.notifications.admin_email, id="notifications--admin_email",
                                  compact=True, select_on_focus=False))
                yield Field("notifications.enabled", "", Switch(
                    t("label.notifications.enabled"), s.notifications.enabled,
                    id="notifications--enabled", compact=True))
                yield Field("notifications.kinds", t("label.notifications.kinds"), *(
                    Switch(t(f"label.{key}"), bool(value_of(s, key)), id=widget_id(key),
                             compact=True, classes="kind") for key in KIND_KEYS))
                with HorizontalGroup(classes="buttons"):
                    yield Button(t("button.test"), id="send-test", variant="primary", compact=True)
                    yield Button(t("button.save"), id="save", compact=True)
                    yield Button(t("button.transcript"), id="show-transcript", compact=True)
            # Beside the form when the terminal is wide: what a send will do, and
            # the test mail itself.
            with Vertical(id="smtp-side"):
                yield Label(t("label.connection"), classes="area-label")
                yield Static(id="connection")
                yield Label(t("label.test_preview"), classes="area-label")
                yield EmailPreview("test", id="preview")

    def compose_oauth2(self) -> ComposeResult:
        o = self.miko.settings.smtp.oauth2
        t = self.t
        yield Field("smtp.oauth2.provider", t("label.smtp.oauth2.provider"), Select(
            [(t(f"provider.{p}"), p) for p in OAUTH2_PROVIDERS],
            value=o.provider if o.provider in OAUTH2_PROVIDERS else "custom",
            allow_blank=False, compact=True, id="oauth2-provider"))
        yield Field("smtp.oauth2.client_id", t("label.smtp.oauth2.client_id"),
                    Input(o.client_id, id="oauth2-client_id", compact=True,
                          select_on_focus=False))
        yield Field("smtp.oauth2.client_secret", t("label.smtp.oauth2.client_secret"),
                    Input(o.client_secret, id="oauth2-client_secret", password=True,
                          compact=True, select_on_focus=False))
        yield Field("oauth2.signin", "", Button(t("oauth2.signin"), id="oauth2-signin",
                                                compact=True),
                    Static("", id="oauth2-status"))

    def on_mount(self) -> None:
        super().on_mount()
        # The radio cursor starts on the chosen mode, not on the first one.
        for radio in self.query(RadioSet):
            radio._selected = radio.pressed_index if radio.pressed_index >= 0 else None
        self.signed_in = self.sign_in_state()
        self.refresh_state()

    # --- OAuth2 -----------------------------------------------------------------

    def sign_in_state(self) -> str:
        from mikotui import oauth2

        s = self.miko.settings
        if s.smtp.auth != "oauth2":
            return ""
        try:
            tokens = oauth2.status(s)
        except (oauth2.OAuth2Error, OSError):
            tokens = None
        if tokens is None:
            return self.t("oauth2.not_signed_in")
        if tokens.refused:
            return self.t("oauth2.refused")
        return self.t("oauth2.signed_in", user=tokens.username or s.smtp.username)

    def with_oauth2(self, **changes: object) -> None:
        s = self.miko.settings
        self.miko.edit(replace(s, smtp=replace(s.smtp, oauth2=replace(s.smtp.oauth2,
                                                                      **changes))))

    @on(RadioSet.Changed, "#smtp--auth")
    def auth_changed(self, event: RadioSet.Changed) -> None:
        if event.pressed.id:
            self.miko.edit(with_value(self.miko.settings, "smtp.auth",
                                      event.pressed.id.removeprefix("auth-")))
            self.signed_in = self.sign_in_state()
            self.refresh_state()

    @on(Input.Changed, "#oauth2-client_id, #oauth2-client_secret")
    def oauth2_text_changed(self, event: Input.Changed) -> None:
        name = (event.input.id or "").removeprefix("oauth2-")
        if name in OAUTH2_TEXT:
            self.with_oauth2(**{name: event.value})

    @on(Select.Changed, "#oauth2-provider")
    def provider_changed(self, event: Select.Changed) -> None:
        provider = str(event.value)
        if provider == self.miko.settings.smtp.oauth2.provider:
            return
        self.with_oauth2(provider=provider)
        preset = PROVIDER_PRESET.get(provider)
        if preset:  # the provider's own SMTP server, as the preset list knows it
            self.query_one("#preset", Select).value = preset
        self.refresh_state()

    @on(Button.Pressed, "#oauth2-signin")
    def sign_in(self) -> None:
        from mikotui.screens.oauth2_dialog import SignInDialog

        def done(user: str | None) -> None:
            self.signed_in = self.sign_in_state()
            self.refresh_state()

        self.app.push_screen(SignInDialog(self.miko.settings), done)

    # --- edits ----------------------------------------------------------------

    @on(Input.Changed)
    def text_changed(self, event: Input.Changed) -> None:
        key = key_of(event.input)
        if key not in TEXT_KEYS:
            return
        value: object = event.value
        if key == "smtp.port":
            try:
                value = int(event.value)
            except ValueError:
                self.miko.set_input_error(key, "whole_number")
                return
            self.miko.set_input_error(key, None)
        elif key == "smtp.timeout":
            value = number(event.value)
            self.miko.set_input_error(key, None if value is not None else "number")
            if value is None:
                return
        self.miko.edit(with_value(self.miko.settings, key, value))

    @on(Checkbox.Changed)
    def switch_changed(self, event: Checkbox.Changed) -> None:
        key = key_of(event.checkbox)
        if key in BOOL_KEYS:
            self.miko.edit(with_value(self.miko.settings, key, event.value))

    @on(RadioSet.Changed, "#smtp--encryption")
    def encryption_changed(self, event: RadioSet.Changed) -> None:
        """A new mode; a port still at the old mode's usual one moves to the
        new mode's (as MikoPBX does), a port someone chose stays."""
        if not event.pressed.id:
            return
        s = self.miko.settings
        new = event.pressed.id.removeprefix("enc-")
        if new == s.smtp.encryption:
            return
        smtp = replace(s.smtp, encryption=new)
        if ("smtp.port" not in self.miko.input_errors
                and s.smtp.port == DEFAULT_PORTS.get(s.smtp.encryption)):
            smtp = replace(smtp, port=DEFAULT_PORTS[new])
            self.query_one("#smtp--port", Input).value = str(smtp.port)
        self.miko.edit(replace(s, smtp=smtp))

    @on(Select.Changed, "#preset")
    def preset_changed(self, event: Select.Changed) -> None:
        preset = PRESETS.get(str(event.value))
        s = self.miko.settings
        if preset and preset_of(s.smtp.host) != event.value:
            host, port, encryption = preset
            self.miko.edit(replace(s, smtp=replace(s.smtp, host=host, port=port,
                                                   encryption=encryption)))
            self.sync_widgets()
        self.refresh_state()

    def sync_widgets(self) -> None:
        """Show the App's settings in the fields (after a preset filled some)."""
        s = self.miko.settings
        for key in TEXT_KEYS:
            widget = self.query_one(f"#{widget_id(key)}", Input)
            if key in self.miko.input_errors:
                continue
            value = value_of(s, key)
            text = f"{value:g}" if isinstance(value, float) else str(value)
            if widget.value != text:
                widget.value = text
        self.query_one(f"#enc-{s.smtp.encryption}", RadioButton).value = True
        for key in BOOL_KEYS:
            self.query_one(f"#{widget_id(key)}", Checkbox).value = bool(value_of(s, key))

    # --- buttons ----------------------------------------------------------------

    @on(Button.Pressed, "#show-password")
    def toggle_password(self, event: Button.Pressed) -> None:
        field = self.query_one("#smtp--password", Input)
        field.password = not field.password
        event.button.label = self.t("password.show" if field.password else "password.hide")

    @on(Button.Pressed, "#send-test")
    def send_test(self) -> None:
        self.miko.action_send_test()

    @on(Button.Pressed, "#save")
    def save(self) -> None:
        self.miko.save()

    @on(Button.Pressed, "#show-transcript")
    def transcript(self) -> None:
        self.miko.action_transcript()

    # --- state ----------------------------------------------------------------

    def port_broken(self) -> bool:
        """The port field holds no usable port: the settings keep the last
        one that parsed, which must not be shown as where mail will go."""
        app = self.miko
        return "smtp.port" in app.input_errors or any(
            p.key == "smtp.port" and p.level == "error" for p in app.problems)

    def connection_summary(self) -> str:
        """What a send will do with these settings, in plain words."""
        s = self.miko.settings.smtp
        t = self.t
        try:
            if self.port_broken():
                raise ValueError
            ep = s.endpoint()
        except ValueError:
            return t("connection.invalid")
        lines = [t("connection.to", host=ep.host, port=ep.port, enc=t(f"enc.{ep.encryption}"))]
        if ep.encryption != "none":
            lines.append(t("connection.cert_on" if s.verify_certificate else "connection.cert_off"))
        if s.auth == "oauth2":
            lines.append(t("connection.oauth2", user=s.username or "?"))
        else:
            lines.append(t("connection.login", user=s.username) if s.username
                         else t("connection.no_login"))
        if not self.miko.settings.notifications.enabled:
            lines.append(t("connection.disabled"))
        return "\n".join(f"• {line}" for line in lines)

    def refresh_state(self) -> None:
        super().refresh_state()
        app = self.miko
        hints: dict[str, str] = {}
        try:
            if self.port_broken():
                raise ValueError
            ep = app.settings.smtp.endpoint()
            if (ep.host, ep.port, ep.encryption) != (app.settings.smtp.host, app.settings.smtp.port,
                                                     app.settings.smtp.encryption):
                hints["smtp.host"] = self.t("hint.endpoint", host=ep.host, port=ep.port,
                                            enc=self.t(f"enc.{ep.encryption}"))
        except ValueError:
            pass
        mistake = None if self.port_broken() else port_hint(app.settings)
        if mistake:
            hints["smtp.port"] = self.t(mistake[0], **mistake[1])
        if not app.settings.notifications.enabled:
            hints["notifications.enabled"] = self.t("connection.disabled")
        preset = str(self.query_one("#preset", Select).value)
        if preset in PRESETS:
            hints["preset"] = self.t(f"preset.{preset}.note")
        oauth = app.settings.smtp.auth == "oauth2"
        for field in self.query(Field):
            if field.key.startswith(("smtp.oauth2.", "oauth2.")):
                field.display = oauth
            elif field.key == "smtp.password":
                field.display = not oauth  # the password gives way to the sign-in
        self.query_one("#oauth2-status", Static).update(getattr(self, "signed_in", ""))
        self.query_one("#connection", Static).update(self.connection_summary())
        self.query_one(EmailPreview).show(app.settings, app.lang)
        for key in KIND_KEYS:  # off under the master switch: shown so, kept as set
            self.query_one(f"#{widget_id(key)}", Checkbox).disabled = (
                not app.settings.notifications.enabled)
        for field in self.query(Field):
            if field.key == "smtp.verify_certificate":
                # No TLS, no certificate to check: the switch would only mislead.
                field.display = app.settings.smtp.encryption != "none"
            problems = [p for p in app.problems if p.key == field.key]
            if field.key in app.input_errors:
                problems = [Problem(field.key, app.input_errors[field.key])]
            field.show(problems, hints.get(field.key, ""), app.lang)
