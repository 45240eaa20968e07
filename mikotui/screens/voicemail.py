"""F3: the voicemail template (MikoPBX's "Голосовая почта"); its preview
shows the recording as an attachment line."""

from __future__ import annotations

from mikotui.screens.template import TemplateScreen


class VoicemailScreen(TemplateScreen):
    MODE = "voicemail"
    SECTION = "voicemail"
    PREVIEW = "voicemail"
