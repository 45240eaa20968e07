"""The house rule: the CLI and the core never load Textual or Rich,
and the headless enqueue path does not load asyncio either."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import mikotui

TUI_ONLY = {"mikotui.app", "mikotui.__main__"}


def core_modules() -> list[str]:
    names = ["mikotui", "mikotui.cli"]
    for info in pkgutil.walk_packages(mikotui.__path__, "mikotui."):
        if info.name in TUI_ONLY or info.name.startswith(("mikotui.screens", "mikotui.widgets")):
            continue
        names.append(info.name)
    return sorted(set(names))


def loaded_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\n"
                          "print('\\n'.join(sys.modules))"],
                         capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_core_and_cli_never_import_textual_or_rich() -> None:
    modules = core_modules()
    assert "mikotui.config" in modules and "mikotui.commands.preview" in modules
    code = f"import importlib\nfor m in {modules!r}: importlib.import_module(m)"
    loaded = loaded_after(code)
    heavy = {m for m in loaded if m.split(".")[0] in ("textual", "rich")}
    assert heavy == set()


def test_building_the_cli_parser_stays_light() -> None:
    loaded = loaded_after("from mikotui import cli\ncli.build_parser()")
    assert not {m for m in loaded if m.split(".")[0] in ("textual", "rich", "asyncio",
                                                         "aiosmtplib", "aiosmtpd", "tomlkit")}


def test_the_tui_does_load_textual() -> None:
    # The check above could pass vacuously if nothing could import Textual.
    loaded = loaded_after("import textual.app")
    assert "textual" in loaded


def test_queueing_with_oauth2_loads_no_oauth2_and_no_http(tmp_path) -> None:
    # The PBX runs `notify` per event: signing in is the deliverer's business.
    from dataclasses import replace

    from mikotui import config

    s = config.defaults("en")
    s = replace(s, smtp=replace(s.smtp, auth="oauth2", username="pbx@company.test",
                                oauth2=config.OAuth2(provider="microsoft", client_id="x")),
                missed_call=replace(s.missed_call, email="missed@pbx.test"),
                spool=replace(s.spool, path=str(tmp_path / "spool")))
    conf = config.save(s, tmp_path / "mikotui.toml")
    loaded = loaded_after(
        "from mikotui import cli\n"
        f"code = cli.main(['--config', {str(conf)!r}, 'notify', 'missed', '--caller', '5551',"
        " '--called', '201', '--queue-only'])\n"
        "assert code == 0, code")
    assert "mikotui.notify" in loaded  # it did run the enqueue path
    assert list((tmp_path / "spool" / "queue").iterdir())
    heavy = {m for m in loaded if m in ("mikotui.oauth2", "urllib.request", "http.client",
                                        "segno", "asyncio", "aiosmtplib", "ssl")}
    assert heavy == set()
