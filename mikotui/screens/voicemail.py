"""F3: the voicemail template (MikoPBX's "Голосовая почта"); its preview
shows the recording as an attachment line (name, size, type), in the format
chosen here."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.widgets import Select

from mikotui.audio import FORMATS
from mikotui.screens.template import TemplateScreen
from mikotui.widgets.form import Field, with_value


class VoicemailScreen(TemplateScreen):
    MODE = "voicemail"
    SECTION = "voicemail"
    PREVIEW = "voicemail"
    NUMBER_KEYS = ("voicemail.max_attachment_mb",)

    def extra_fields(self) -> ComposeResult:
        chosen = self.miko.settings.voicemail.attachment_format
        names = {"mp3": self.t("audio.mp3"), "wav": self.t("audio.wav"),
                 "original": self.t("audio.original")}
        yield Field("voicemail.attachment_format", self.t("label.voicemail.attachment_format"),
                    Select([(names[f], f) for f in FORMATS], value=chosen, allow_blank=False,
                           id="voicemail--attachment_format", compact=True))

    @on(Select.Changed, "#voicemail--attachment_format")
    def format_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, str) and event.value in FORMATS:
            self.miko.edit(with_value(self.miko.settings, "voicemail.attachment_format",
                                      event.value))
