"""F4: the outbox (spool): queued and failed notifications, retry, purge;
in --sandbox also the mail the capture server received."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Label

from mikotui.screens.base import BaseScreen


class OutboxScreen(BaseScreen):
    MODE = "outbox"

    def compose_body(self) -> ComposeResult:
        with Vertical(classes="outbox"):
            yield Label(self.t("outbox.spool"), classes="area-label")
            yield DataTable(id="spool", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        super().on_mount()
        self.refresh_state()
