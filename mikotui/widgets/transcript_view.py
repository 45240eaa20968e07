"""The result of a test send: the failure kind and its hint, or who
accepted it, then the SMTP transcript (the same text `mikotui test-email`
prints; it never holds the password)."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from mikotui import i18n


@dataclass(frozen=True)
class SendReport:
    ok: bool
    to: str
    transcript: str
    kind: str = ""
    hint: str = ""
    code: int | None = None
    server_message: str = ""
    elapsed: float | None = None
    accepted: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()

    @classmethod
    def failed(cls, failure: object, lang: str, to: str) -> SendReport:
        transcript = getattr(failure, "transcript", None)
        return cls(
            ok=False, to=to, transcript=transcript.text() if transcript else "",
            kind=str(getattr(failure, "kind", "")), hint=failure.hint(lang),  # type: ignore[attr-defined]
            code=getattr(failure, "code", None),
            server_message=str(getattr(failure, "server_message", "") or ""),
        )

    @classmethod
    def sent(cls, result: object, to: str) -> SendReport:
        transcript = getattr(result, "transcript", None)
        return cls(
            ok=True, to=to, transcript=transcript.text() if transcript else "",
            elapsed=getattr(result, "elapsed", None),
            accepted=tuple(getattr(result, "accepted", ()) or ()),
            refused=tuple(getattr(result, "refused", ()) or ()),
        )


def summary(report: SendReport, lang: str) -> Text:
    out = Text()
    if report.ok:
        out.append(i18n.ui(lang, "transcript.ok", to=report.to), style="bold green")
        if report.elapsed is not None:
            out.append(f"  ({report.elapsed:.2f} s)")
        if report.refused:
            out.append("\n" + i18n.ui(lang, "transcript.refused",
                                      who=", ".join(report.refused)), style="yellow")
        return out
    out.append(i18n.ui(lang, "transcript.failed", kind=i18n.ui(lang, f"failure.{report.kind}")),
               style="bold red")
    if report.code or report.server_message:
        out.append("\n" + f"{report.code or ''} {report.server_message}".strip())
    out.append("\n")
    out.append(report.hint, style="yellow")
    return out


class TranscriptView(VerticalScroll):
    def __init__(self, report: SendReport, lang: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.report = report
        self.lang = lang

    def compose(self) -> ComposeResult:
        yield Static(summary(self.report, self.lang), classes="transcript-summary")
        yield Static(Text(self.report.transcript or i18n.ui(self.lang, "transcript.empty")),
                     classes="transcript-text")
