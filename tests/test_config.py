"""Settings: load, validate, save ."""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import ROOT

from mikotui import config

SHIPPED = ROOT / "config" / "mikotui.toml"


def test_shipped_config_round_trips(tmp_path: Path) -> None:
    shipped = config.load(SHIPPED)
    assert shipped.smtp.host == "smtp.gmail.com"
    assert shipped.smtp.port == 587
    assert shipped.smtp.encryption == "starttls"
    assert shipped.notifications.admin_email == "admin@mycompany.com"
    assert shipped.voicemail.email == "admin@mycompany.com"
    assert [e.extension for e in shipped.employees] == ["201", "202"]
    assert config.errors(config.validate(shipped)) == []
    saved = config.save(shipped, tmp_path / "copy.toml")
    again = config.load(saved)
    assert again == shipped
    assert saved.read_text() == config.dumps(shipped)


def test_spool_path_is_relative_to_the_config_file() -> None:
    shipped = config.load(SHIPPED)
    assert shipped.spool_dir() == ROOT / "var" / "spool"


def test_broken_toml_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[smtp]\nhost = "a"\nport = = 5\n')
    with pytest.raises(config.ConfigError) as err:
        config.load(path)
    assert err.value.line == 3
    assert str(path) in str(err.value) and "line 3" in str(err.value)
    assert "column" in str(err.value)


@pytest.mark.parametrize(
    ("toml", "key", "line", "words"),
    [
        ('[smtp]\nport = "x"\n', "smtp.port", 2, "whole number"),
        ("[smtp]\nverify_certificate = 1\n", "smtp.verify_certificate", 2, "true or false"),
        ("[notifications]\nadmin_email = 5\n", "notifications.admin_email", 2, "string"),
        ("smtp = 1\n", "smtp", 1, "table"),
        ('[[employees]]\nname = "x"\n', "employees[0]", 1, "extension"),
    ],
)
def test_wrong_type_names_key_and_line(tmp_path: Path, toml: str, key: str,
                                       line: int | None, words: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(config.ConfigError) as err:
        config.load(path)
    assert err.value.key == key
    assert err.value.line == line
    assert words in str(err.value)


def problems_of(text: str, tmp_path: Path) -> dict[str, config.Problem]:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return {p.key: p for p in config.validate(config.load(path))}


def test_validate_reports_every_problem_at_once_with_key_and_line(tmp_path: Path) -> None:
    found = problems_of(
        "[smtp]\n"
        "host = \"bad host!\"\n"
        "port = 70000\n"
        "encryption = \"tls\"\n"
        "sender_address = \"not-an-address\"\n"
        "timeout = 0\n"
        "[notifications]\n"
        "admin_email = \"admin@@x\"\n"
        "[ui]\n"
        "language = \"de\"\n"
        "[[employees]]\nextension = \"201\"\nemail = \"a@b.c\"\n"
        "[[employees]]\nextension = \"201\"\nemail = \"nope\"\n",
        tmp_path,
    )
    assert found["smtp.port"].message == "must be 1..65535, got 70000"
    assert found["smtp.port"].line == 3
    assert found["smtp.host"].line == 2
    assert "tls" in found["smtp.encryption"].message
    assert found["smtp.sender_address"].level == "error"
    assert found["smtp.timeout"].level == "error"
    assert found["notifications.admin_email"].line == 8
    assert found["ui.language"].level == "error"
    assert "already used" in found["employees[1].extension"].message
    assert found["employees[1].extension"].line == 15
    assert "not a valid email" in found["employees[1].email"].message
    assert str(found["smtp.port"]) == "smtp.port: must be 1..65535, got 70000"


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("smtp.gmail.com", True),
        ("ssl://smtp.gmail.com", True),
        ("tls://smtp.yandex.ru:587", True),
        ("smtp.mail.ru:465", True),
        ("127.0.0.1", True),
        ("[::1]:25", True),
        ("http://smtp.gmail.com", False),
        ("smtp gmail com", False),
        ("smtp.gmail.com:99999", False),
        ("", False),
        ("-bad-.com", False),
    ],
)
def test_host_syntax(host: str, ok: bool) -> None:
    s = config.Settings(smtp=config.Smtp(host=host))
    assert ("smtp.host" not in {p.key for p in config.validate(s)}) is ok


def test_host_prefix_overrides_mode_and_port() -> None:
    ep = config.Smtp(host="ssl://smtp.gmail.com", port=587, encryption="starttls").endpoint()
    assert (ep.host, ep.port, ep.encryption) == ("smtp.gmail.com", 465, "ssl")
    assert ep.note
    ep = config.Smtp(host="tls://smtp.yandex.ru:2525", port=25, encryption="none").endpoint()
    assert (ep.host, ep.port, ep.encryption) == ("smtp.yandex.ru", 2525, "starttls")
    ep = config.Smtp(host="smtp.mail.ru", port=465, encryption="ssl").endpoint()
    assert (ep.host, ep.port, ep.encryption, ep.note) == ("smtp.mail.ru", 465, "ssl", "")


def test_empty_addresses_are_allowed_where_spec_says(tmp_path: Path) -> None:
    found = problems_of('[missed_call]\nemail = ""\n[smtp]\nsender_address = ""\n'
                        'username = "pbx@x.ru"\n', tmp_path)
    assert "missed_call.email" not in found
    assert "smtp.sender_address" not in found


def test_unknown_parameter_is_a_warning_with_suggestion(tmp_path: Path) -> None:
    found = problems_of('[missed_call]\nsubject = "Call from NOTIFICATION_CALERID"\n', tmp_path)
    p = found["missed_call.subject"]
    assert p.level == "warning"
    assert p.line == 2
    assert p.message == ("unknown parameter NOTIFICATION_CALERID → "
                         "did you mean NOTIFICATION_CALLERID?")


def test_empty_subject_is_a_warning(tmp_path: Path) -> None:
    found = problems_of('[voicemail]\nsubject = " "\n', tmp_path)
    assert found["voicemail.subject"].level == "warning"
    assert found["voicemail.subject"].line == 2


def test_unknown_keys_are_errors_and_survive_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[smtp]\nhost = "mail.x.ru"\nhelo_name = "pbx"\n'
                    '[extra]\nkeep = [1, 2]\n'
                    '[[employees]]\nextension = "7"\ndepartment = "sales"\n')
    s = config.load(path)
    found = {p.key: p for p in config.validate(s) if p.level == "error"}
    assert {"smtp.helo_name", "extra", "employees[0].department"} <= set(found)
    assert (found["smtp.helo_name"].line, found["extra"].line,
            found["employees[0].department"].line) == (3, 4, 8)
    config.save(replace(s, smtp=replace(s.smtp, port=25)), path)
    again = config.load(path)
    assert again.smtp.port == 25
    assert again.unknown == {"smtp": {"helo_name": "pbx"}, "extra": {"keep": [1, 2]},
                             "employees[0]": {"department": "sales"}}


def test_missing_templates_take_the_configured_language_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[ui]\nlanguage = "ru"\n')
    s = config.load(path)
    assert s.missed_call.subject.startswith("Пропущенный вызов")
    assert s.voicemail.footer.startswith("Вы можете прослушать")


def test_with_language_switches_only_untouched_templates() -> None:
    s = config.defaults("en")
    s = replace(s, voicemail=replace(s.voicemail, subject="My own VM_DUR"))
    ru = config.with_language(s, "ru")
    assert ru.ui.language == "ru"
    assert ru.missed_call.subject.startswith("Пропущенный вызов")
    assert ru.voicemail.subject == "My own VM_DUR"


def test_save_keeps_backup_and_is_private_with_a_password(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    s = config.defaults()
    config.save(s, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    secret = replace(s, smtp=replace(s.smtp, username="u@x.ru", password="hunter2"))
    config.save(secret, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert config.load(path.with_name("c.toml.bak")) == s
    assert config.load(path).smtp.password == "hunter2"
    assert "smtp.password" not in {p.key for p in config.validate(config.load(path))}
    path.chmod(0o644)
    assert "others can read it" in str({str(p) for p in config.validate(config.load(path))})
    config.save(s, path)  # the .bak now holds the password: it must be private too
    assert stat.S_IMODE(path.with_name("c.toml.bak").stat().st_mode) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_config_check_command(cli, tmp_path: Path, write_config, settings) -> None:
    good = write_config(settings)
    ok = cli("config", "check", "--config", str(good))
    assert ok.returncode == 0, ok.stderr_text
    assert "OK" in ok.stdout_text
    bad = replace(settings, smtp=replace(settings.smtp, port=70000),
                  missed_call=replace(settings.missed_call, subject="x NOTIFICATION_CALERID"))
    path = write_config(bad, "bad.toml")
    res = cli("config", "check", "--config", str(path))
    assert res.returncode == os.EX_CONFIG
    assert "smtp.port: must be 1..65535, got 70000" in res.stdout_text
    assert "did you mean NOTIFICATION_CALLERID?" in res.stdout_text
    warn_only = write_config(replace(settings, missed_call=bad.missed_call), "warn.toml")
    res = cli("config", "check", "--config", str(warn_only))
    assert res.returncode == 0
    assert "warning: missed_call.subject" in res.stdout_text


def test_broken_config_is_one_line_and_exit_78(cli, tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[smtp\n")
    res = cli("config", "check", "--config", str(path))
    assert res.returncode == os.EX_CONFIG
    assert "Traceback" not in res.stderr_text
    assert f"{path}:1" in res.stderr_text
    missing = cli("preview", "missed", "--config", str(tmp_path / "none.toml"))
    assert missing.returncode == os.EX_CONFIG
    assert "no config file" in missing.stderr_text


@pytest.mark.parametrize("mode", ["tls", "STARTTLS", "", "1"])
def test_an_unknown_encryption_never_means_plain(mode: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="encryption must be one of"):
        config.Smtp(encryption=mode).endpoint()
    found = problems_of(f'[smtp]\nencryption = "{mode}"\n', tmp_path)
    assert found["smtp.encryption"].level == "error"
    assert "smtp.host" not in found


def test_a_password_of_the_wrong_type_is_not_shown(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[smtp]\npassword = 83920571\n")
    with pytest.raises(config.ConfigError) as err:
        config.load(path)
    assert "83920571" not in str(err.value)
    assert err.value.key == "smtp.password" and "quote it" in str(err.value)
