"""F4: the outbox (the spool): queued and failed notifications with their
attempts, next attempt and last error; retry, purge (confirmed) and undo of
the last purge. In --sandbox mode also the mail the capture server received."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Label, Static
from textual.widgets.data_table import CellDoesNotExist

from mikotui import i18n
from mikotui.screens.base import BaseScreen
from mikotui.screens.dialogs import ConfirmDialog, MailScreen
from mikotui.spool import Entry, Spool, SpoolError

# The last error gets what the other columns leave (at least a few words;
# the whole error is one Enter away). Around each column: a cell of padding
# on both sides; around the table: the screen's padding and a scrollbar.
PADDING = 2
FRAME = 4
MIN_ERROR = 12
MAX_TO = 24  # several recipients: the rest is in the entry's view


def when(epoch: float, now: float, lang: str) -> str:
    """A next attempt as a person plans around it: now, in N min, or a time."""
    if epoch <= now:
        return i18n.ui(lang, "outbox.now")
    minutes = (epoch - now) / 60
    if minutes < 60:
        return i18n.ui(lang, "outbox.in_min", n=max(1, round(minutes)))
    return datetime.fromtimestamp(epoch).strftime("%m-%d %H:%M")


def cell(text: str, style: str = "") -> Text:
    """A table cell taken as plain text (a "[" in an error is not markup)."""
    return Text(text, style=style, end="", no_wrap=True)


def error_cell(error: str, recipients: tuple[str, ...]) -> str:
    """An error as the narrow column shows it: without the recipient it
    names (the To column has it), so the SMTP reply itself is what fits."""
    for address in recipients:
        error = error.replace(f"{address}: ", "")
    return error


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


class OutboxScreen(BaseScreen):
    MODE = "outbox"
    BINDINGS: ClassVar[list[BindingType]] = [
        # The same keys on a Russian layout (к, в, г), shown as r, d, u.
        Binding("r,к", "retry", "key.retry", key_display="r"),
        Binding("d,в,delete", "purge", "key.purge", key_display="d"),
        Binding("u,г", "undo", "key.undo", key_display="u"),
        # Not in the footer: the table looks again every few seconds anyway,
        # and the Russian footer needs the room for u (undo) at 80 columns.
        # (Ctrl+R: F5 is the Employees screen.)
        Binding("ctrl+r", "refresh", "key.refresh", key_display="^R", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.purged: list[str] = []  # purged here, newest last: `u` restores them in turn

    def compose_body(self) -> ComposeResult:
        with Vertical(classes="outbox"):
            yield Label(self.t("outbox.spool"), classes="area-label")
            yield Static(id="deliverer")
            yield DataTable(id="spool", cursor_type="row", zebra_stripes=True)
            yield Static(self.t("outbox.empty"), id="spool-empty", classes="empty")
            if self.miko.sandbox_mode:
                yield Label(self.t("outbox.captured"), classes="area-label")
                yield DataTable(id="captured", cursor_type="row", zebra_stripes=True)
                yield Static(self.t("outbox.no_captured"), id="captured-empty",
                             classes="empty")

    def on_mount(self) -> None:
        super().on_mount()
        t = self.t
        self._heads = [t(f"outbox.col.{c}")
                       for c in ("state", "kind", "to", "attempts", "next", "error")]
        self.query_one("#spool", DataTable).add_columns(*self._heads)
        if self.miko.sandbox_mode:
            self.query_one("#captured", DataTable).add_columns(
                *(t(f"outbox.col.{c}") for c in ("time", "to", "subject", "size")))
        self.refresh_state()
        # A deliverer in another process moves entries; look again now and then.
        self.set_interval(3.0, self.refresh_state)

    def kind_name(self, kind: str) -> str:
        name = self.t(f"kind.{kind}")
        return kind if name == f"kind.{kind}" else name

    @property
    def spool(self) -> Spool:
        s = self.miko.settings
        return Spool(s.spool_dir(), s.spool.max_age_hours)

    # --- state ----------------------------------------------------------------

    def deliverer_status(self) -> str:
        """Whether anything will send what is queued: a retry only marks it due."""
        pid = self.spool.deliverer()
        return (self.t("outbox.deliverer", pid=pid) if pid is not None
                else self.t("outbox.no_deliverer"))

    def refresh_state(self) -> None:
        super().refresh_state()
        self.query_one("#deliverer", Static).update(self.deliverer_status())
        self._read_spool()
        if self.miko.sandbox_mode:
            self._fill_captured()
        self._focus_a_shown_table()

    _reading = False  # a read of the spool is under way
    _again = False  # the spool changed (or was asked for) while it was read

    def _read_spool(self) -> None:
        """The spool is read off the UI thread: with thousands of entries
        waiting out an outage, reading every meta.json takes seconds, and
        the screen must not freeze meanwhile (nor every 3 s). One read at a
        time: a slow one is not replaced by the next tick's, or nothing
        would ever be shown."""
        if self._reading:
            self._again = True
            return
        self._reading, self._again = True, False
        self._read_spool_in_thread()

    @work(thread=True, group="spool", exit_on_error=False)
    def _read_spool_in_thread(self) -> None:
        # Rows are made here too: for thousands of entries that is work as well.
        found: list[tuple[str, tuple]] | OSError | SpoolError = SpoolError("not read")
        try:
            found = self._spool_rows(self._entries())
        except (SpoolError, OSError) as exc:
            found = exc
        finally:  # whatever happened, the next read is not held up
            self.app.call_from_thread(self._show_spool, found)

    def _show_spool(self, found: list[tuple[str, tuple]] | OSError | SpoolError) -> None:
        self._reading = False
        self._fill_spool(found)
        self._focus_a_shown_table()
        if self._again:  # what it read may predate an action: look once more
            self._read_spool()

    def _focus_a_shown_table(self) -> None:
        """Keys go to a table that is there: an emptied spool table hides,
        and Enter on it would open nothing (the captured mail is below)."""
        focused = self.focused
        if isinstance(focused, DataTable) and focused.display:
            return
        if focused is not None and not isinstance(focused, DataTable):
            return
        for table in self.query(DataTable):
            if table.display:
                table.focus()
                return

    def _entries(self) -> list[Entry]:
        spool = self.spool
        return [e for state in ("active", "queue", "failed") for e in spool.entries(state)]

    def _fill_spool(self, rows: list[tuple[str, tuple]] | OSError | SpoolError) -> None:
        table = self.query_one("#spool", DataTable)
        empty = self.query_one("#spool-empty", Static)
        if isinstance(rows, Exception):
            exc = rows
            # Another user's 0700 spool, or a path that is a file: say so in
            # place of the table, and keep the rest of the app working.
            self._replace_rows(table, [])
            table.display = False
            empty.update(self.t("outbox.unreadable", path=self.spool.root,
                                error=getattr(exc, "strerror", None) or exc))
            empty.display = True
            return
        empty.update(self.t("outbox.empty"))
        self._replace_rows(table, rows)
        table.display = bool(rows)
        empty.display = not rows

    def _spool_rows(self, entries: list[Entry]) -> list[tuple[str, tuple]]:
        """The table's rows for `entries` (in the reading thread: it only reads)."""
        now = self.miko.clock().timestamp()
        texts = []
        for e in entries:
            m = e.meta
            state = {"queue": "queued", "failed": "failed"}.get(e.state, e.state)
            nxt = {"queue": when(m.next_attempt, now, self.miko.lang), "failed": "-"}.get(e.state, "…")
            error = m.failed_reason or m.last_error or "-"
            texts.append((e, [self.t(f"outbox.{state}"), self.kind_name(m.kind),
                              _short(", ".join(m.owed or m.recipients) or "-", MAX_TO),
                              str(m.attempts), nxt, error_cell(error, m.recipients)]))
        heads = self._heads
        others = sum(max(len(x) for x in [heads[i], *(cols[i] for _, cols in texts)]) + PADDING
                     for i in range(len(heads) - 1))
        width = max(MIN_ERROR, self.app.size.width - FRAME - others - PADDING)
        rows = [(e.id, (cell(cols[0], "red" if e.state == "failed" else ""),
                        *(cell(x) for x in cols[1:5]), cell(_short(cols[5], width))))
                for e, cols in texts]
        return rows

    def _fill_captured(self) -> None:
        table = self.query_one("#captured", DataTable)
        sandbox = self.miko.sandbox
        messages = sandbox.messages() if sandbox is not None else []
        rows = [(str(m.path), (cell(m.received.astimezone().strftime("%H:%M:%S")),
                               cell(", ".join(m.rcpt_tos)), cell(_short(m.subject, 40)),
                               cell(f"{m.size} B")))
                for m in reversed(messages)]
        self._replace_rows(table, rows)
        table.display = bool(rows)
        self.query_one("#captured-empty").display = not rows

    @staticmethod
    def _replace_rows(table: DataTable, rows: list[tuple[str, tuple]]) -> None:  # type: ignore[type-arg]
        """Refill a table, keeping the cursor on the same entry if it is still there."""
        keys = [k for k, _ in rows]
        current = None
        if table.row_count:
            try:
                current = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            except CellDoesNotExist:
                current = None
        shown = [(k, tuple(map(str, cells))) for k, cells in rows]
        if getattr(table, "rows_shown", None) == shown:  # as it is: keep the cursor and scroll
            return
        table.rows_shown = shown  # type: ignore[attr-defined]
        table.clear()
        for key, cells in rows:
            table.add_row(*cells, key=key)
        if current in keys:
            table.move_cursor(row=keys.index(current))

    # --- actions ----------------------------------------------------------------

    def _selected(self, table_id: str) -> str | None:
        table = self.query_one(f"#{table_id}", DataTable)
        if not table.row_count or not table.display:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def action_refresh(self) -> None:
        self.refresh_state()

    def action_retry(self) -> None:
        entry_id = self._selected("spool")
        if entry_id is None:
            self.notify(self.t("outbox.nothing_selected"), severity="warning")
            return
        try:
            spool = self.spool.ensure()
            with spool.owner() as owner:
                spool.retry(entry_id, owner)
        except (SpoolError, OSError) as exc:
            self.notify(self.t("outbox.error", id=entry_id, error=exc), severity="error")
        else:
            self.notify(f"{self.t('outbox.retry_done', id=entry_id)}\n{self.deliverer_status()}")
        self.refresh_state()

    def action_purge(self) -> None:
        entry_id = self._selected("spool")
        if entry_id is None:
            self.notify(self.t("outbox.nothing_selected"), severity="warning")
            return
        entry = self.spool.find(entry_id)
        if entry is None:
            self.refresh_state()
            return
        question = self.t("outbox.purge_question", id=entry_id, kind=self.kind_name(entry.meta.kind),
                          to=", ".join(entry.meta.recipients) or "-")

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            try:
                self.spool.purge(entry_id)
            except (SpoolError, OSError) as exc:
                self.notify(self.t("outbox.error", id=entry_id, error=exc), severity="error")
            else:
                self.purged.append(entry_id)
                self.refresh_bindings()
                self.notify(self.t("outbox.purge_done", id=entry_id))
            self.refresh_state()

        self.app.push_screen(ConfirmDialog(question, self.t("outbox.purge_yes")), answered)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`u` is in the footer only while there is a purge to undo."""
        if action == "undo":
            return bool(self.purged)
        return True

    def action_undo(self) -> None:
        if not self.purged:
            return
        entry_id = self.purged.pop()
        try:
            spool = self.spool.ensure()
            with spool.owner() as owner:
                spool.restore(entry_id, owner)
        except (SpoolError, OSError) as exc:
            self.notify(self.t("outbox.error", id=entry_id, error=exc), severity="error")
        else:
            self.notify(self.t("outbox.restore_done", id=entry_id))
        self.refresh_bindings()
        self.refresh_state()
        table = self.query_one("#spool", DataTable)
        if entry_id in [k.value for k in table.rows]:
            table.move_cursor(row=table.get_row_index(entry_id))

    @on(DataTable.RowSelected, "#spool")
    def open_entry(self, event: DataTable.RowSelected) -> None:
        try:
            entry = self.spool.find(str(event.row_key.value))
        except (SpoolError, OSError):
            entry = None  # the next refresh says what is wrong with the spool
        if entry is None:
            return
        m = entry.meta
        t = self.t
        state = t("outbox." + {"queue": "queued"}.get(entry.state, entry.state))
        if entry.state == "queue":
            now = self.miko.clock().timestamp()
            state += f" ({t('outbox.col.next')}: {when(m.next_attempt, now, self.miko.lang)})"
        lines = [f"ID: {m.id}", f"{t('outbox.col.state')}: {state}",
                 f"{t('outbox.col.kind')}: {self.kind_name(m.kind)}",
                 f"{t('outbox.col.to')}: {', '.join(m.recipients)}",
                 f"{t('outbox.owed')}: {', '.join(m.owed) or '-'}",
                 f"{t('outbox.col.subject')}: {m.subject}",
                 f"{t('outbox.col.attempts')}: {m.attempts}"]
        # The reason it failed usually is the last error: say it once.
        if m.last_error and m.last_error not in m.failed_reason:
            lines.append(f"{t('outbox.col.error')}: {m.last_error}")
        if m.failed_reason:
            lines.append(f"{t('outbox.why_failed')}: {m.failed_reason}")
        lines += [f"{t('transcript.refused', who=a)} {why}" for a, why in m.refused.items()
                  if why not in m.failed_reason]
        self.app.push_screen(MailScreen(m.subject or m.id, "\n".join(lines)))

    @on(DataTable.RowSelected, "#captured")
    def open_captured(self, event: DataTable.RowSelected) -> None:
        sandbox = self.miko.sandbox
        found = [m for m in (sandbox.messages() if sandbox else [])
                 if str(m.path) == event.row_key.value]
        if not found:
            return
        msg = found[0].parse()
        headers = [f"{h}: {msg[h]}" for h in ("From", "To", "Subject", "Date") if msg[h]]
        body = msg.get_body(("plain",))
        text = body.get_content() if body is not None else ""
        attachments = [f"Attachment: {a.get_filename()} ({a.get_content_type()})"
                       for a in msg.iter_attachments()]
        self.app.push_screen(MailScreen(found[0].subject,
                                        "\n".join([*headers, *attachments, "", text])))
