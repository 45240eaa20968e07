"""F2: the missed-call template (MikoPBX's "Оповещения о пропущенных")."""

from __future__ import annotations

from mikotui.screens.template import TemplateScreen


class MissedCallScreen(TemplateScreen):
    MODE = "missed"
    SECTION = "missed_call"
    PREVIEW = "missed"
