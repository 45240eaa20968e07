"""The Textual app: four screens (modes), the current and the saved Settings,
save, the quit guard, the test send worker and the `--sandbox` capture server.

The App is the one holder of the truth: `settings` is what the screens show,
`saved` is what the file holds; "unsaved" is simply `settings != saved`.
Screens turn an edit into a new Settings and hand it to `edit`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.screen import Screen

from mikotui import config, i18n
from mikotui.config import Problem, Settings
from mikotui.screens.base import translate_bindings
from mikotui.screens.dialogs import (
    Dialog,
    HelpScreen,
    QuitDialog,
    SendTestDialog,
    TranscriptScreen,
)
from mikotui.screens.employees import EmployeesScreen
from mikotui.screens.missed_call import MissedCallScreen
from mikotui.screens.outbox import OutboxScreen
from mikotui.screens.smtp import SmtpScreen
from mikotui.screens.voicemail import VoicemailScreen
from mikotui.widgets.transcript_view import SendReport

if TYPE_CHECKING:
    from mikotui.sandbox import CapturedMessage, Sandbox


# The app's own keys (not the dialogs'): see MikoApp.check_action.
MAIN_ACTIONS = frozenset({"save", "send_test", "transcript", "quit", "switch_mode", "help"})


class MailCaptured(Message):
    """The sandbox received a mail (posted from its server thread)."""

    def __init__(self, subject: str) -> None:
        super().__init__()
        self.subject = subject


@dataclass(frozen=True)
class Phase:
    """Where a running test send is, for the progress line."""

    name: str  # "connect", "tls", "auth", "send", "done", or "" when idle
    to: str = ""
    started: float = 0.0  # time.monotonic() at the start


class MikoApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "mikotui"
    MODES: ClassVar[dict[str, str | Callable[[], Screen]]] = {
        "smtp": SmtpScreen,
        "missed": MissedCallScreen,
        "voicemail": VoicemailScreen,
        "outbox": OutboxScreen,
        "employees": EmployeesScreen,
    }
    DEFAULT_MODE = "smtp"
    # From this width on, the SMTP screen shows the connection and test mail beside the form.
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-narrow"), (110, "-wide")]
    ENABLE_COMMAND_PALETTE = False
    # Descriptions are i18n keys; __init__ puts them in the UI language. F1-F4
    # are shown (and clickable) in the bar of screens at the top, which leaves
    # the footer room for the actions even in Russian at 80 columns.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f1", "switch_mode('smtp')", "nav.smtp", key_display="F1", show=False),
        Binding("f2", "switch_mode('missed')", "nav.missed", key_display="F2", show=False),
        Binding("f3", "switch_mode('voicemail')", "nav.voicemail", key_display="F3", show=False),
        Binding("f4", "switch_mode('outbox')", "nav.outbox", key_display="F4", show=False),
        Binding("f5", "switch_mode('employees')", "nav.employees", key_display="F5", show=False),
        Binding("ctrl+s", "save", "key.save", key_display="^S", priority=True),
        Binding("ctrl+t", "send_test", "key.test", key_display="^T", priority=True),
        Binding("f6", "transcript", "key.transcript", key_display="F6"),
        # Not a printable key: every screen is full of fields where ? types a ?.
        Binding("f9", "help", "key.help", key_display="F9"),
        Binding("ctrl+q", "quit", "key.quit", key_display="^Q", priority=True),
        Binding("escape", "cancel_send", "key.cancel", key_display="Esc", show=False),
    ]

    def __init__(self, settings: Settings, path: Path, lang: str, *,
                 sandbox: bool = False, blink: bool = True,
                 clock: Callable[[], datetime] | None = None) -> None:
        super().__init__()
        self.lang = lang
        self.path = path
        self.saved = settings
        self._settings = settings
        # Text typed into a field that is not yet a value (port "58x"): key -> problem code.
        self.input_errors: dict[str, str] = {}
        self.problems: list[Problem] = config.validate(settings)
        self.blink = blink
        self.clock = clock or datetime.now
        self.sandbox_mode = sandbox
        self.sandbox: Sandbox | None = None  # while running
        self._sandbox_dir: tempfile.TemporaryDirectory[str] | None = None
        self.phase = Phase("")
        self.last_report: SendReport | None = None
        self._exit_after_send = False
        translate_bindings(self, lang)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Over a dialog the app's keys wait (no second dialog on top of one,
        no save behind a question), except quitting, which asks anyway."""
        if isinstance(self.screen, Dialog) and action in MAIN_ACTIONS:
            return action == "quit" and not isinstance(self.screen, QuitDialog)
        return True

    # --- the truth -------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        return self._settings

    def edit(self, settings: Settings) -> None:
        """Take an edited Settings; validate it and refresh what shows it."""
        if settings == self._settings:
            return
        self._settings = settings
        self.problems = config.validate(settings)
        self.refresh_state()

    def set_input_error(self, key: str, code: str | None) -> None:
        if code:
            self.input_errors[key] = code
        else:
            self.input_errors.pop(key, None)
        self.refresh_state()

    @property
    def unsaved(self) -> bool:
        return self._settings != self.saved or bool(self.input_errors)

    def errors(self) -> list[Problem]:
        typed = [Problem(k, m) for k, m in self.input_errors.items()]
        return typed + [p for p in self.problems
                        if p.level == "error" and p.key not in self.input_errors]

    def t(self, key: str, /, **values: object) -> str:
        return i18n.ui(self.lang, key, **values)

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """Messages go to the message line above the footer of the main
        screen, which takes its own rows: a toast floated over the form and
        hid what it pointed to (the Save button, the transcript's Close).
        The notification itself is kept too, for anything that lists them."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)
        for screen in reversed(self.screen_stack):
            show = getattr(screen, "show_message", None)
            if show is not None:
                show(message, title, severity, timeout or self.NOTIFICATION_TIMEOUT)
                return

    def _refresh_notifications(self) -> None:
        """No toasts (Textual shows them from here; textual is pinned): the
        message line of `notify` shows each one."""

    def refresh_state(self) -> None:
        """The current screen redraws its markers, messages and preview."""
        refresh = getattr(self.screen, "refresh_state", None)
        if refresh:
            refresh()

    # --- start and stop ----------------------------------------------------------

    def on_mount(self) -> None:
        if self.sandbox_mode:
            self.start_sandbox()

    def start_sandbox(self) -> None:
        from mikotui import sandbox

        self._sandbox_dir = tempfile.TemporaryDirectory(prefix="mikotui-sandbox-")
        self.sandbox = sandbox.for_app(Path(self._sandbox_dir.name) / "mail", self.saved,
                                       on_message=self._captured_from_thread)
        self.refresh_state()

    def _captured_from_thread(self, message: CapturedMessage) -> None:
        # post_message is thread-safe and does not wait: the server thread is
        # never blocked on the UI (nor deadlocked with it at quit).
        self.post_message(MailCaptured(message.subject))

    def on_mail_captured(self, event: MailCaptured) -> None:
        if not self.phase.name:  # during a test send, its own toast says it arrived
            self.notify(self.t("sandbox.captured", subject=event.subject), timeout=4)
        if isinstance(self.screen, OutboxScreen):
            self.screen.refresh_state()

    def on_unmount(self) -> None:
        if self.sandbox is not None:
            self.sandbox.stop()
        if self._sandbox_dir is not None:
            self._sandbox_dir.cleanup()

    # --- save ----------------------------------------------------------------

    def action_save(self) -> None:
        self.save()

    def save(self) -> bool:
        """Write the file if nothing blocks it; a changed SMTP setup is then
        tested by mailing the admin, so a broken
        setup shows at once and not at the next missed call."""
        errors = self.errors()
        if errors:
            shown = [self.t("save.blocked", key=p.key, message=p.text(self.lang))
                     for p in errors[:3]]
            if len(errors) > 3:
                shown.append(self.t("save.more", n=len(errors) - 3))
            self.notify("\n".join(shown), title=self.t("save.blocked_title"),
                        severity="error", timeout=10)
            focus = getattr(self.screen, "focus_key", None)
            if focus:
                focus(errors[0].key)
            return False
        before = self.saved
        try:
            config.save(self._settings, self.path)
        except OSError as exc:
            self.notify(self.t("save.failed", path=str(self.path), error=exc.strerror or exc),
                        severity="error", timeout=10)
            return False
        self.saved = self._settings
        # Some checks look at the file itself (its mode), which just changed.
        self.problems = config.validate(self._settings)
        done = self.t("save.done", path=self.path.name)
        self.refresh_state()
        if before.smtp != self._settings.smtp and self._settings.notifications.admin_email:
            # One toast, not two: at 80x24 a stack of them hides the form.
            self.notify(f"{done}\n{self.t('save.testing', to=self._settings.notifications.admin_email)}",
                        timeout=4)
            self.send_test(None)
        else:
            self.notify(done, timeout=3)
        return True

    # --- test send ----------------------------------------------------------------

    def action_send_test(self) -> None:
        """^T: on a template screen, that mail as it will look (sample values,
        the sample recording); elsewhere the SMTP test mail. One at a time."""
        if self.phase.name:
            self.notify(self.t("send.running"), timeout=4)
            return
        kind = getattr(self.screen, "PREVIEW", "") or "test"

        def chosen(to: str | None) -> None:
            if to is not None:
                self.send_test(to or None, kind)

        self.push_screen(SendTestDialog(self._settings.notifications.admin_email, kind), chosen)

    def action_cancel_send(self) -> None:
        """Esc while a send runs: stop it (the connection is closed)."""
        if self.phase.name:
            self.workers.cancel_group(self, "send")

    def action_use_sandbox(self) -> None:
        """Fill the SMTP fields with the sandbox's address and login (not saved)."""
        if self.sandbox is None:
            return
        self.edit(self.sandbox.point(self._settings))
        sync = getattr(self.screen, "sync_widgets", None)
        if sync:
            sync()

    def set_phase(self, name: str) -> None:
        self.phase = dataclasses.replace(self.phase, name=name)
        self.refresh_state()

    def _tick(self) -> None:
        if self.phase.name:
            self.refresh_state()

    @work(exclusive=True, group="send", exit_on_error=False)
    async def send_test(self, to: str | None, kind: str = "test") -> None:
        from mikotui import smtp

        errors = self.errors()
        if errors:
            self.notify(self.t("send.blocked", key=errors[0].key,
                               message=errors[0].text(self.lang)),
                        severity="error", timeout=8)
            return
        target = to or self._settings.notifications.admin_email
        self.phase = Phase("connect", target, time.monotonic())
        self.refresh_state()
        ticker = self.set_interval(1.0, self._tick)  # the elapsed seconds move
        try:
            # Where the form says, in --sandbox too: the sandbox is a server
            # like any other, and the panel's "connect to" is the truth.
            if kind == "test":
                result = await smtp.send_test_email(self._settings, self.lang, to,
                                                    on_event=self.set_phase)
            else:
                result = await smtp.send_message(self._settings.smtp,
                                                 self.template_mail(kind, target), [target],
                                                 on_event=self.set_phase)
        except smtp.SmtpFailure as failure:
            self.last_report = SendReport.failed(failure, self.lang, target)
            self.notify(f"{failure.hint(self.lang)}\n{self.t('send.see_transcript')}",
                        title=self.t("send.failed_title", kind=failure.kind_name(self.lang)),
                        severity="error", timeout=12)
        except asyncio.CancelledError:
            self.notify(self.t("send.cancelled", to=target), timeout=4)
            raise
        except Exception as exc:  # noqa: BLE001 - a toast, never a dead app
            self.notify(f"{type(exc).__name__}: {exc}", title=self.t("send.failed_title",
                        kind=self.t("failure.internal")), severity="error", timeout=12)
        else:
            self.last_report = SendReport.sent(result, target)
            self.notify(self.t("send.done", to=target,
                               seconds=f"{time.monotonic() - self.phase.started:.2f}"),
                        title=self.t("send.done_title"), timeout=6)
        finally:
            ticker.stop()
            self.phase = Phase("")
            self.refresh_state()
            if self._exit_after_send:
                self.exit(0)

    def template_mail(self, kind: str, to: str) -> EmailMessage:
        """The missed-call or voicemail mail with the sample values (and the
        sample recording), addressed to `to`: what the admin checks in their
        own mail client."""
        from mikotui import message, preview

        shown = preview.build(kind, self._settings, self.lang)
        return message.compose(shown.rendered, [to], self._settings,
                               attachments=shown.attachments)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_transcript(self) -> None:
        if self.last_report is None:
            self.notify(self.t("transcript.none"), timeout=4)
            return
        self.push_screen(TranscriptScreen(self.last_report))

    # --- quit ----------------------------------------------------------------

    async def action_quit(self) -> None:
        if not self.unsaved or self._exit_after_send:
            self.exit(0)
            return

        def answered(choice: str | None) -> None:
            if choice == "discard":
                self.exit(0)
            elif choice == "save":
                smtp_changed = self.saved.smtp != self._settings.smtp
                if self.save():
                    if smtp_changed and self._settings.notifications.admin_email:
                        # Exit once the test mail is out; say so, it can take
                        # up to smtp.timeout, and ^Q again quits at once.
                        self._exit_after_send = True
                        self.notify(self.t("quit.after_send",
                                           seconds=f"{self._settings.smtp.timeout:g}"),
                                    timeout=max(5.0, self._settings.smtp.timeout))
                    else:
                        self.exit(0)

        self.push_screen(QuitDialog(), answered)


def build(args: argparse.Namespace, **kwargs: object) -> MikoApp:
    """The app for `mikotui [--config P] [--lang L] [--sandbox]`. A config
    file that does not exist yet starts from the defaults and is created on
    save; a broken one raises ConfigError (one line from the CLI)."""
    path = config.resolve_path(getattr(args, "config", None))
    if path.exists():
        settings = config.load(path)
    else:
        settings = dataclasses.replace(
            config.defaults(i18n.language(getattr(args, "lang", None))), path=path)
    # [ui] language counts only when the file says it; else $LANG decides.
    configured = settings.ui.language if "ui.language" in settings.lines else None
    lang = i18n.language(getattr(args, "lang", None), configured)
    return MikoApp(settings, path, lang, sandbox=bool(getattr(args, "sandbox", False)),
                   **kwargs)  # type: ignore[arg-type]


def run(args: argparse.Namespace) -> int:
    app = build(args)
    code = app.run()
    return code if isinstance(code, int) else 0
