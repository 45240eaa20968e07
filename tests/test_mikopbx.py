"""import-mikopbx / export-mikopbx against real SQLite databases built from
the sample MikoPBX schema, through the installed `mikotui` command."""

from __future__ import annotations

import os
import sqlite3
import stat
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import FIXTURES, ROOT, assert_no_secret
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from mikotui import config, i18n

SAMPLE_SQL = (FIXTURES / "mikopbx-sample.sql").read_text(encoding="utf-8")
PASSWORD = "app-password-123"
MAPPED_KEYS = {
    "MailSMTPHost", "MailSMTPPort", "MailSMTPUsername", "MailSMTPPassword",
    "MailSMTPSenderAddress", "MailSMTPFromUsername", "MailSMTPUseTLS", "MailSMTPCertCheck",
    "MailEnableNotifications", "SystemNotificationsEmail", "SystemEmailForMissed",
    "VoicemailNotificationsEmail", "MailTplMissedCallSubject", "MailTplMissedCallBody",
    "MailTplMissedCallFooter", "MailTplVoicemailSubject", "MailTplVoicemailBody",
    "MailTplVoicemailFooter", "SendMissedCallNotifications", "SendVoicemailNotifications",
    "SendSystemNotifications", "SendLoginNotifications",
}
SWITCH_KEYS = {"SendMissedCallNotifications": "missed_call",
               "SendVoicemailNotifications": "voicemail",
               "SendSystemNotifications": "system", "SendLoginNotifications": "login"}


def make_db(path: Path, set_: dict[str, str] | None = None, drop: tuple[str, ...] = (),
            sql: str = "") -> Path:
    """The sample database, with some settings changed or removed."""
    conn = sqlite3.connect(path)
    conn.executescript(SAMPLE_SQL)
    for key, value in (set_ or {}).items():
        conn.execute("INSERT OR REPLACE INTO m_PbxSettings (key, value) VALUES (?, ?)",
                     (key, value))
    for key in drop:
        conn.execute("DELETE FROM m_PbxSettings WHERE key = ?", (key,))
    if sql:
        conn.executescript(sql)
    conn.commit()
    conn.close()
    return path


def rows(db: Path, table: str = "m_PbxSettings") -> dict:
    conn = sqlite3.connect(db)
    try:
        if table == "m_PbxSettings":
            return dict(conn.execute("SELECT key, value FROM m_PbxSettings"))
        return {r[0]: r for r in conn.execute(f"SELECT * FROM {table}")}
    finally:
        conn.close()


def secret_free(proc, password: str = PASSWORD) -> None:
    assert_no_secret((proc.stdout_text, proc.stderr_text), "user", password)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return make_db(tmp_path / "mikopbx.db")


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return tmp_path / "mikotui.toml"


def imp(cli, cfg: Path, db: Path, *more: str):
    proc = cli("--config", str(cfg), "import-mikopbx", str(db), *more, timeout=30)
    secret_free(proc)
    return proc


def exp(cli, cfg: Path, db: Path):
    proc = cli("--config", str(cfg), "export-mikopbx", str(db), timeout=30)
    secret_free(proc)
    return proc


# --- import ----------------------------------------------------------------

def test_import_maps_every_value(cli, db, cfg):
    before = db.read_bytes()
    proc = imp(cli, cfg, db)
    assert proc.returncode == 0, proc.stderr_text
    s = config.load(cfg)
    assert s.smtp.host == "ssl://smtp.yandex.ru"
    assert s.smtp.endpoint().encryption == "ssl" and s.smtp.endpoint().port == 465
    assert s.smtp.port == 465
    assert s.smtp.username == "pbx@mycompany.ru"
    assert s.smtp.password == PASSWORD
    assert s.smtp.sender_address == "pbx@mycompany.ru"
    assert s.smtp.sender_name == "АТС офиса"
    assert s.smtp.encryption == "starttls"  # legacy "1"
    assert s.smtp.verify_certificate is True
    assert s.notifications.enabled is True
    assert s.notifications.admin_email == "admin@mycompany.ru"
    assert s.missed_call.email == "missed@mycompany.ru"
    assert s.voicemail.email == "voicemail@mycompany.ru"
    assert s.missed_call.subject == "Пропущенный вызов от NOTIFICATION_CALLERID"
    assert s.missed_call.body == ("Вам звонили (NOTIFICATION_MISSEDCAUSE) с номера "
                                  "NOTIFICATION_CALLERID на NOTIFICATION_TO в NOTIFICATION_DATE")
    assert s.missed_call.footer == ""
    assert s.voicemail.subject == "Голосовое сообщение от VM_CALLER_NAME"
    assert s.voicemail.body == "Звонил VM_CALLERID, длительность VM_DUR, VM_DATE"
    assert s.voicemail.footer == "-- АТС"
    assert s.ui.language == "ru"
    assert s.employees == (
        config.Employee("201", "Smith James", "smith@mycompany.ru"),
        config.Employee("202", "Brown Brandon", ""),
        config.Employee("203", "Collins Melanie", "collins@mycompany.ru"),
    )
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600  # it holds the password
    assert db.read_bytes() == before  # read-only
    check = cli("--config", str(cfg), "config", "check")
    assert check.returncode == 0, check.stdout_text


def test_dry_run_shows_the_diff_and_writes_nothing(cli, db, cfg, settings, write_config):
    write_config(settings)
    before = cfg.read_bytes()
    proc = imp(cli, cfg, db, "--dry-run")
    assert proc.returncode == 0, proc.stderr_text
    lines = proc.stdout_text.splitlines()
    for expected in (
        '  smtp.host: "smtp.gmail.com" -> "ssl://smtp.yandex.ru"',
        "  smtp.port: 587 -> 465",
        '  smtp.username: "" -> "pbx@mycompany.ru"',
        '  smtp.password: "" -> ********',
        '  smtp.sender_name: "" -> "АТС офиса"',
        '  notifications.admin_email: "admin@mycompany.com" -> "admin@mycompany.ru"',
        '  missed_call.email: "" -> "missed@mycompany.ru"',
        ('  voicemail.footer: "You can listen to the recording by opening the attached '
        'audio file." -> "-- АТС"'),
        '  ui.language: "en" -> "ru"',
        ('  employees[201]: "Smith James <smith@mycompany.com>" -> '
        '"Smith James <smith@mycompany.ru>"'),
        '  employees[203]: (none) -> "Collins Melanie <collins@mycompany.ru>"',
    ):
        assert expected in lines
    # Unchanged fields are not listed; Brown's card is the same on both sides.
    assert not any(line.startswith(("  smtp.encryption", "  employees[202]"))
                   for line in lines)
    assert lines[-1] == "18 changes; dry run, nothing written"
    assert cfg.read_bytes() == before


def test_a_changed_password_is_masked_on_both_sides(cli, db, cfg, settings, write_config):
    write_config(replace(settings, smtp=replace(settings.smtp, username="u@x.ru",
                                                password="old-secret-9")))
    proc = imp(cli, cfg, db, "--dry-run")
    assert '  smtp.password: ******** -> ********' in proc.stdout_text.splitlines()
    secret_free(proc, "old-secret-9")


def test_import_keeps_what_it_does_not_map(cli, db, cfg, settings, write_config):
    custom = replace(settings, smtp=replace(settings.smtp, timeout=12, allow_insecure_auth=True),
                     voicemail=replace(settings.voicemail, max_attachment_mb=3),
                     spool=replace(settings.spool, path="/var/spool/mikotui-test"))
    write_config(custom)
    assert imp(cli, cfg, db).returncode == 0
    s = config.load(cfg)
    assert (s.smtp.timeout, s.smtp.allow_insecure_auth) == (12, True)
    assert s.voicemail.max_attachment_mb == 3
    assert s.spool.path == "/var/spool/mikotui-test"


@pytest.mark.parametrize(("stored", "encryption"), [
    ("1", "starttls"), ("0", "none"), ("", "none"),
    ("none", "none"), ("tls", "starttls"), ("ssl", "ssl"),
])
def test_both_forms_of_use_tls(cli, tmp_path, cfg, stored, encryption):
    db = make_db(tmp_path / "mikopbx.db",
                 {"MailSMTPUseTLS": stored, "MailSMTPHost": "mail.mycompany.ru"})
    assert imp(cli, cfg, db).returncode == 0
    s = config.load(cfg)
    assert s.smtp.encryption == encryption
    assert s.smtp.host == "mail.mycompany.ru"


@pytest.mark.parametrize(("host", "effective"), [
    ("ssl://smtp.yandex.ru", ("smtp.yandex.ru", 465, "ssl")),
    ("tls://mail.mycompany.ru:2525", ("mail.mycompany.ru", 2525, "starttls")),
    ("smtp.mail.ru:465", ("smtp.mail.ru", 465, "none")),
])
def test_host_prefix_is_kept_and_understood(cli, tmp_path, cfg, host, effective):
    db = make_db(tmp_path / "mikopbx.db", {"MailSMTPHost": host, "MailSMTPUseTLS": "0"})
    assert imp(cli, cfg, db).returncode == 0
    s = config.load(cfg)
    assert s.smtp.host == host
    ep = s.smtp.endpoint()
    assert (ep.host, ep.port, ep.encryption) == effective


def test_empty_sender_name_stays_empty(cli, tmp_path, cfg, settings, write_config):
    write_config(replace(settings, smtp=replace(settings.smtp, sender_name="Old name")))
    db = make_db(tmp_path / "mikopbx.db", {"MailSMTPFromUsername": ""})
    assert imp(cli, cfg, db).returncode == 0
    s = config.load(cfg)
    assert s.smtp.sender_name == ""
    assert s.smtp.from_name == config.DEFAULT_SENDER_NAME


def test_missing_keys_take_our_defaults(cli, tmp_path, cfg, settings, write_config):
    write_config(replace(settings, smtp=replace(settings.smtp, verify_certificate=False)))
    db = make_db(tmp_path / "mikopbx.db", drop=(
        "MailTplMissedCallSubject", "MailTplMissedCallBody", "MailTplMissedCallFooter",
        "MailTplVoicemailSubject", "MailTplVoicemailBody", "MailTplVoicemailFooter",
        "MailSMTPCertCheck", "MailSMTPFromUsername"))
    proc = imp(cli, cfg, db)
    assert proc.returncode == 0, proc.stderr_text
    assert "  note: MailTplVoicemailBody is not in the database: the default is used" \
        in proc.stdout_text.splitlines()
    s = config.load(cfg)
    ru = i18n.default_templates("ru")
    for section in ("missed_call", "voicemail"):
        for part in ("subject", "body", "footer"):
            assert getattr(getattr(s, section), part) == ru[section][part]
    assert s.smtp.verify_certificate is True  # MikoPBX's default: check
    assert s.smtp.sender_name == ""


@pytest.mark.parametrize(("key", "value", "field", "says"), [
    ("MailSMTPPort", "smtp", ("smtp", "port"), "not a port number"),
    ("MailSMTPPort", "70000", ("smtp", "port"), "not a port number"),
    ("MailSMTPUseTLS", "starttls-please", ("smtp", "encryption"), "unknown encryption"),
    ("MailSMTPCertCheck", "yes", ("smtp", "verify_certificate"), "not a boolean"),
    ("MailEnableNotifications", "", ("notifications", "enabled"), "not a boolean"),
    ("SendMissedCallNotifications", "on", ("notifications", "missed_call"), "not a boolean"),
    ("SendLoginNotifications", "", ("notifications", "login"), "not a boolean"),
    ("SystemNotificationsEmail", "admin at mycompany", ("notifications", "admin_email"),
     "not a valid email address"),
    ("MailSMTPHost", "http://smtp.yandex.ru", ("smtp", "host"), "unknown scheme"),
    ("MailTplMissedCallSubject", "Missed\ncall", ("missed_call", "subject"), "one line"),
])
def test_malformed_values_are_reported_with_their_key(cli, tmp_path, cfg, settings,
                                                      write_config, key, value, field, says):
    write_config(settings)
    old = getattr(getattr(settings, field[0]), field[1])
    db = make_db(tmp_path / "mikopbx.db", {key: value})
    proc = imp(cli, cfg, db)
    assert proc.returncode == os.EX_DATAERR
    problem = [line for line in proc.stderr_text.splitlines() if says in line]
    assert len(problem) == 1 and problem[0].startswith(f"mikotui: not imported: {key}: ")
    assert f"{field[0]}.{field[1]} left as it was" in problem[0]
    s = config.load(cfg)
    assert getattr(getattr(s, field[0]), field[1]) == old
    assert s.smtp.username == "pbx@mycompany.ru"  # the rest is imported
    assert cli("--config", str(cfg), "config", "check").returncode == 0


def test_unsupported_pbx_language_is_reported(cli, tmp_path, cfg, settings, write_config):
    write_config(settings)
    db = make_db(tmp_path / "mikopbx.db", {"PBXLanguage": "de-de"})
    proc = imp(cli, cfg, db)
    assert proc.returncode == os.EX_DATAERR
    assert "mikotui: not imported: PBXLanguage: " in proc.stderr_text
    assert config.load(cfg).ui.language == "en"


def test_employee_variants(cli, tmp_path, cfg):
    db = make_db(tmp_path / "mikopbx.db", sql="""
        INSERT INTO m_Users (id, email, username, role) VALUES
          (113, 'ivanova@mycompany.ru', 'Иванова Мария', 'user'),
          (114, NULL, '', 'user'),
          (115, 'broken@', 'Bad Mail', 'user');
        INSERT INTO m_Extensions (number, type, callerid, userid) VALUES
          ('204', 'SIP', 'Иванова Мария', 113),
          ('205', 'SIP', 'Reception desk', 114),
          ('206', 'SIP', 'Lobby phone', NULL),
          ('207', 'SIP', 'Gone', 999),
          ('208', 'SIP', 'Bad Mail', 115),
          ('1204', 'EXTERNAL', 'Иванова Мария', 113);
    """)
    proc = imp(cli, cfg, db)
    assert proc.returncode == os.EX_DATAERR  # the malformed card email
    assert "mikotui: not imported: m_Users[115].email: not a valid email address" \
        in proc.stderr_text
    out = proc.stdout_text.splitlines()
    assert "  note: SIP extension 206 has no user: no employee card" in out
    assert "  note: SIP extension 207 has no user: no employee card" in out
    s = config.load(cfg)
    assert s.employees == (
        config.Employee("201", "Smith James", "smith@mycompany.ru"),
        config.Employee("202", "Brown Brandon", ""),
        config.Employee("203", "Collins Melanie", "collins@mycompany.ru"),
        config.Employee("204", "Иванова Мария", "ivanova@mycompany.ru"),
        config.Employee("205", "Reception desk", ""),  # no user name: the caller ID
        config.Employee("208", "Bad Mail", ""),
    )
    assert "Иванова Мария" in cfg.read_text(encoding="utf-8")
    assert cli("--config", str(cfg), "config", "check").returncode == 0


# --- the per-kind switches (Send*Notifications) -------------------------------

def test_switches_absent_from_the_shipped_schema_take_mikopbx_defaults(
        cli, db, cfg, settings, write_config):
    # MikoPBX's own sample database has none of the four keys.
    assert not SWITCH_KEYS.keys() & rows(db).keys()
    off = replace(settings.notifications, missed_call=False, voicemail=False, system=False,
                  login=True)
    write_config(replace(settings, notifications=off))
    proc = imp(cli, cfg, db, "--dry-run")
    assert proc.returncode == 0, proc.stderr_text
    out = proc.stdout_text.splitlines()
    for key in SWITCH_KEYS:
        assert f"  note: {key} is not in the database: the default is used" in out
    for line in ("  notifications.missed_call: false -> true",
                 "  notifications.voicemail: false -> true",
                 "  notifications.system: false -> true",
                 "  notifications.login: true -> false"):
        assert line in out
    assert imp(cli, cfg, db).returncode == 0
    n = config.load(cfg).notifications
    assert (n.missed_call, n.voicemail, n.system, n.login) == (True, True, True, False)


def test_switches_set_to_non_defaults_are_imported_field_by_field(cli, tmp_path, cfg,
                                                                  settings, write_config):
    write_config(settings)
    db = make_db(tmp_path / "mikopbx.db", {
        "SendMissedCallNotifications": "0", "SendVoicemailNotifications": "0",
        "SendSystemNotifications": "0", "SendLoginNotifications": "1"})
    proc = imp(cli, cfg, db, "--dry-run")
    assert proc.returncode == 0, proc.stderr_text
    out = proc.stdout_text.splitlines()
    for line in ("  notifications.missed_call: true -> false",
                 "  notifications.voicemail: true -> false",
                 "  notifications.system: true -> false",
                 "  notifications.login: false -> true"):
        assert line in out
    assert not any("is not in the database" in line and "Send" in line for line in out)
    assert imp(cli, cfg, db).returncode == 0
    n = config.load(cfg).notifications
    assert (n.missed_call, n.voicemail, n.system, n.login) == (False, False, False, True)
    # And back: a no-op export, then one switch changed here is written as "1"/"0".
    assert "nothing written" in exp(cli, cfg, db).stdout_text
    cfg.write_text(cfg.read_text().replace("system = false", "system = true"))
    proc = exp(cli, cfg, db)
    assert proc.returncode == 0, proc.stderr_text
    assert '  SendSystemNotifications: "0" -> "1"' in proc.stdout_text.splitlines()
    after = rows(db)
    assert [after[k] for k in SWITCH_KEYS] == ["0", "0", "1", "1"]


def test_export_into_the_shipped_schema_adds_only_switches_off_its_defaults(
        cli, db, cfg, settings, write_config):
    # Our defaults are MikoPBX's (1/1/1/0): a key it does not store means
    # just that, so none is added for them.
    assert imp(cli, cfg, db).returncode == 0
    assert "nothing written" in exp(cli, cfg, db).stdout_text
    assert not SWITCH_KEYS.keys() & rows(db).keys()
    cfg.write_text(cfg.read_text().replace("login = false", "login = true"))
    proc = exp(cli, cfg, db)
    assert proc.returncode == 0, proc.stderr_text
    assert proc.stdout_text.splitlines()[1:3] == [
        '  SendLoginNotifications: (none) -> "1"', "1 change; backup: " + str(
            next(db.parent.glob("mikopbx.db.bak-*")))]
    after = rows(db)
    assert after["SendLoginNotifications"] == "1"
    assert not {"SendMissedCallNotifications", "SendVoicemailNotifications",
                "SendSystemNotifications"} & after.keys()


def test_import_keeps_each_cards_rules_and_takes_address_lists(cli, tmp_path, cfg, settings,
                                                               write_config):
    s = replace(settings, employees=(
        config.Employee("201", "Smith James", "smith@mycompany.com", "internal", False),
        config.Employee("299", "Left the company", "gone@mycompany.com", "off")))
    write_config(s)
    db = make_db(tmp_path / "mikopbx.db", {
        "SystemNotificationsEmail": "admin@mycompany.ru, it@mycompany.ru"},
        sql="UPDATE m_Users SET email = 'collins@mycompany.ru, mc@home.ru' "
            "WHERE email = 'collins@mycompany.ru';")
    proc = imp(cli, cfg, db)
    assert proc.returncode == 0, proc.stderr_text
    got = config.load(cfg)
    assert got.notifications.admin_email == "admin@mycompany.ru, it@mycompany.ru"
    smith, brown, collins = got.employees
    assert (smith.email, smith.missed_calls, smith.voicemail) == (
        "smith@mycompany.ru", "internal", False)
    assert (brown.missed_calls, brown.voicemail) == ("all", True)  # new here: defaults
    assert collins.email == "collins@mycompany.ru, mc@home.ru"


# --- export ----------------------------------------------------------------

def ours(settings: config.Settings) -> config.Settings:
    """A config whose every mapped value differs from the sample database."""
    return replace(
        settings,
        smtp=replace(settings.smtp, host="smtp.mail.ru", port=2465, encryption="ssl",
                     verify_certificate=False, username="pbx@mail.ru", password="n3w-Secret",
                     sender_address="office@mail.ru", sender_name="Офис"),
        notifications=replace(settings.notifications, enabled=False,
                              admin_email="boss@mail.ru", missed_call=False, voicemail=False,
                              system=False, login=True),
        missed_call=replace(settings.missed_call, email="", subject="MC NOTIFICATION_TO",
                            body="Body\nNOTIFICATION_DATE", footer="foot"),
        voicemail=replace(settings.voicemail, email="vm@mail.ru", subject="VM VM_DUR",
                          body="Голос\nVM_CALLERID", footer=""),
    )


def test_export_writes_exactly_the_mapped_keys(cli, db, cfg, settings, write_config):
    write_config(ours(settings))
    before = rows(db)
    users, extensions = rows(db, "m_Users"), rows(db, "m_Extensions")
    proc = cli("--config", str(cfg), "export-mikopbx", str(db), timeout=30)
    secret_free(proc, "n3w-Secret")
    assert proc.returncode == 0, proc.stderr_text
    after = rows(db)
    assert after == {
        **before,
        "MailSMTPHost": "smtp.mail.ru", "MailSMTPPort": "2465",
        "MailSMTPUsername": "pbx@mail.ru", "MailSMTPPassword": "n3w-Secret",
        "MailSMTPSenderAddress": "office@mail.ru", "MailSMTPFromUsername": "Офис",
        "MailSMTPUseTLS": "ssl", "MailSMTPCertCheck": "0", "MailEnableNotifications": "0",
        "SystemNotificationsEmail": "boss@mail.ru", "SystemEmailForMissed": "",
        "VoicemailNotificationsEmail": "vm@mail.ru",
        "MailTplMissedCallSubject": "MC NOTIFICATION_TO",
        "MailTplMissedCallBody": "Body\nNOTIFICATION_DATE", "MailTplMissedCallFooter": "foot",
        "MailTplVoicemailSubject": "VM VM_DUR", "MailTplVoicemailBody": "Голос\nVM_CALLERID",
        "MailTplVoicemailFooter": "",
        # Not in the shipped schema: inserted.
        "SendMissedCallNotifications": "0", "SendVoicemailNotifications": "0",
        "SendSystemNotifications": "0", "SendLoginNotifications": "1",
    }
    assert {k for k in after if after[k] != before.get(k)} == MAPPED_KEYS
    assert after["PBXLanguage"] == "ru-ru"  # the PBX's, never written
    assert rows(db, "m_Users") == users and rows(db, "m_Extensions") == extensions
    backups = list(db.parent.glob("mikopbx.db.bak-*"))
    assert len(backups) == 1
    assert rows(backups[0]) == before
    assert stat.S_IMODE(backups[0].stat().st_mode) == 0o600
    assert f"backup: {backups[0]}" in proc.stdout_text
    assert '  MailSMTPPassword: ******** -> ********' in proc.stdout_text.splitlines()


def test_export_inserts_missing_keys_and_leaves_others(cli, tmp_path, cfg, settings,
                                                       write_config):
    db = make_db(tmp_path / "mikopbx.db", {"SomeOtherModuleKey": "keep me"},
                 drop=("MailTplVoicemailFooter", "MailSMTPCertCheck"))
    write_config(ours(settings))
    assert exp(cli, cfg, db).returncode == 0
    after = rows(db)
    assert after["MailTplVoicemailFooter"] == "" and after["MailSMTPCertCheck"] == "0"
    assert after["SomeOtherModuleKey"] == "keep me"
    assert MAPPED_KEYS <= after.keys()


def test_export_keeps_legacy_forms_and_a_noop_writes_nothing(cli, db, cfg):
    assert imp(cli, cfg, db).returncode == 0
    before = db.read_bytes()
    proc = exp(cli, cfg, db)
    assert proc.returncode == 0, proc.stderr_text
    assert "nothing written" in proc.stdout_text
    assert db.read_bytes() == before
    assert not list(db.parent.glob("mikopbx.db.bak-*"))
    # Switching to plain keeps the old checkbox form the PBX already uses.
    cfg.write_text(cfg.read_text().replace('encryption = "starttls"', 'encryption = "none"'))
    cfg.write_text(cfg.read_text().replace('host = "ssl://smtp.yandex.ru"',
                                           'host = "smtp.yandex.ru"'))
    assert exp(cli, cfg, db).returncode == 0
    assert rows(db)["MailSMTPUseTLS"] == "0"


@pytest.mark.parametrize("variant", [
    {},
    {"set_": {"MailSMTPUseTLS": "", "MailSMTPHost": "tls://mail.mycompany.ru:2525"}},
    {"set_": {"MailSMTPUseTLS": "ssl", "PBXLanguage": "en-en"}},
    {"drop": ("MailTplMissedCallBody", "MailSMTPFromUsername", "MailEnableNotifications")},
])
def test_round_trip_changes_nothing(cli, tmp_path, variant):
    db = make_db(tmp_path / "mikopbx.db", **variant)
    cfg = tmp_path / "mikotui.toml"
    assert imp(cli, cfg, db).returncode == 0
    first = cfg.read_bytes()
    assert exp(cli, cfg, db).returncode == 0
    again = imp(cli, cfg, db, "--dry-run")
    assert again.returncode == 0
    assert again.stdout_text.splitlines()[-1] == "0 changes; dry run, nothing written"
    fresh = tmp_path / "fresh.toml"
    assert imp(cli, fresh, db).returncode == 0
    assert fresh.read_bytes() == first


def test_round_trip_of_our_own_edits(cli, db, cfg, tmp_path, settings, write_config):
    mine = ours(settings)
    write_config(mine)
    assert exp(cli, cfg, db).returncode == 0
    back = tmp_path / "back.toml"
    assert imp(cli, back, db).returncode == 0
    got = config.load(back)
    for section in ("smtp", "notifications", "missed_call", "voicemail"):
        assert getattr(got, section) == getattr(mine, section)


# --- refusals --------------------------------------------------------------

def test_locked_database_is_refused_quickly_and_cleanly(cli, db, cfg, settings, write_config):
    write_config(ours(settings))
    before, config_before = rows(db), cfg.read_bytes()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        for command in ("export-mikopbx", "import-mikopbx"):
            start = time.monotonic()
            proc = cli("--config", str(cfg), command, str(db), timeout=30)
            took = time.monotonic() - start
            secret_free(proc, "n3w-Secret")
            assert proc.returncode == os.EX_TEMPFAIL, proc.stderr_text
            assert proc.stderr_text.count("\n") == 1
            assert "locked" in proc.stderr_text and "Traceback" not in proc.stderr_text
            assert took < 15  # the busy timeout is short; a hang would be minutes
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert rows(db) == before
    assert not list(db.parent.glob("mikopbx.db.bak-*"))
    assert cfg.read_bytes() == config_before


def test_export_refused_when_a_reader_never_lets_go(cli, db, cfg, settings, write_config):
    """A reader's lock lets us begin but not commit: still refused cleanly,
    and the backup made for that attempt is not left behind."""
    write_config(ours(settings))
    before = rows(db)
    reader = sqlite3.connect(db, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM m_PbxSettings").fetchone()
    try:
        proc = cli("--config", str(cfg), "export-mikopbx", str(db), timeout=30)
    finally:
        reader.execute("ROLLBACK")
        reader.close()
    secret_free(proc, "n3w-Secret")
    assert proc.returncode == os.EX_TEMPFAIL, proc.stdout_text + proc.stderr_text
    assert proc.stderr_text.count("\n") == 1 and "locked" in proc.stderr_text
    assert rows(db) == before
    assert not list(db.parent.glob("mikopbx.db.bak-*"))


def test_import_reads_while_the_pbx_writes_in_wal_mode(cli, db, cfg):
    conn = sqlite3.connect(db, isolation_level=None)
    assert conn.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE m_PbxSettings SET value = '2525' WHERE key = 'MailSMTPPort'")
    try:
        proc = imp(cli, cfg, db)
    finally:
        conn.execute("ROLLBACK")
        conn.close()
    assert proc.returncode == 0, proc.stderr_text
    assert config.load(cfg).smtp.port == 465  # the committed value, not the pending one


def test_cards_the_pbx_no_longer_has_are_removed(cli, db, cfg, settings, write_config):
    write_config(replace(settings, employees=(
        *settings.employees, config.Employee("299", "Left Company", "left@mycompany.com"))))
    proc = imp(cli, cfg, db, "--dry-run")
    assert '  employees[299]: "Left Company <left@mycompany.com>" -> (none)' \
        in proc.stdout_text.splitlines()
    assert imp(cli, cfg, db).returncode == 0
    assert config.load(cfg).employee("299") is None


def test_missing_table_is_refused(cli, tmp_path, cfg, settings, write_config):
    write_config(ours(settings))
    db = make_db(tmp_path / "mikopbx.db", sql="DROP TABLE m_PbxSettings;")
    before = db.read_bytes()
    for command in ("export-mikopbx", "import-mikopbx"):
        proc = cli("--config", str(cfg), command, str(db), timeout=30)
        assert proc.returncode == os.EX_DATAERR
        assert proc.stderr_text == f"mikotui: {db}: no table m_PbxSettings (not a MikoPBX database?)\n"
    assert db.read_bytes() == before
    assert not list(tmp_path.glob("mikopbx.db.bak-*"))


def test_missing_file_and_not_a_database(cli, tmp_path, cfg, settings, write_config):
    write_config(settings)
    missing = tmp_path / "nope.db"
    for command in ("export-mikopbx", "import-mikopbx"):
        proc = cli("--config", str(cfg), command, str(missing), timeout=30)
        assert proc.returncode == os.EX_NOINPUT
        assert proc.stderr_text == f"mikotui: {missing}: no such database file\n"
    assert not missing.exists()
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    for command in ("export-mikopbx", "import-mikopbx"):
        proc = cli("--config", str(cfg), command, str(junk), timeout=30)
        assert proc.returncode == os.EX_DATAERR
        assert "not an SQLite database" in proc.stderr_text
        assert proc.stderr_text.count("\n") == 1


def test_export_refuses_a_config_with_errors(cli, db, cfg, settings, write_config):
    write_config(replace(settings, notifications=replace(settings.notifications,
                                                         admin_email="not an address")))
    before = db.read_bytes()
    proc = exp(cli, cfg, db)
    assert proc.returncode == os.EX_CONFIG
    assert "notifications.admin_email" in proc.stderr_text
    assert db.read_bytes() == before


def test_import_will_not_write_a_config_that_fails_check(cli, db, cfg, settings,
                                                        write_config):
    write_config(replace(settings, spool=replace(settings.spool, max_age_hours=0)))
    before = cfg.read_bytes()
    proc = imp(cli, cfg, db)
    assert proc.returncode == os.EX_CONFIG
    assert "spool.max_age_hours" in proc.stderr_text
    assert proc.stderr_text.splitlines()[-1].endswith("not written")
    assert cfg.read_bytes() == before


def test_export_needs_a_config(cli, db, tmp_path):
    before = db.read_bytes()
    proc = exp(cli, tmp_path / "none.toml", db)
    assert proc.returncode == os.EX_CONFIG
    assert proc.stderr_text.count("\n") == 1
    assert db.read_bytes() == before


def test_help_says_employees_are_not_exported(cli):
    proc = cli("export-mikopbx", "--help")
    assert proc.returncode == 0
    assert "Employee cards and the PBX language are NOT written" in " ".join(
        proc.stdout_text.split())
    top = cli("--help")
    assert "import-mikopbx" in top.stdout_text and "export-mikopbx" in top.stdout_text


# --- the install files in config/ -------------------------------------------

def _settings_lines(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines()
                if "=" in line and not line.startswith(";"))


def test_voicemail_example_matches_asterisk_config(cli, tmp_path):
    example = ROOT / "config" / "voicemail.conf.example"
    ours = _settings_lines(example.read_text(encoding="utf-8"))
    printed = cli("--config", str(tmp_path / "mikotui.toml"), "asterisk-config")
    assert printed.returncode == 0, printed.stderr_text
    theirs = _settings_lines(printed.stdout_text)
    assert ours.keys() == theirs.keys()
    for key in theirs.keys() - {"mailcmd"}:
        assert ours[key] == theirs[key], key
    assert ours["attach"] == "yes"
    # Same command, only the install paths differ.
    assert ours["mailcmd"].split()[1:] == [
        "--config", "/etc/mikotui/mikotui.toml", "notify", "voicemail"]
    assert theirs["mailcmd"].split()[2:] == [str(tmp_path / "mikotui.toml"),
                                             "notify", "voicemail"]


def test_systemd_unit_runs_deliver_watch():
    import configparser
    import shlex

    from mikotui import cli as front

    unit = ROOT / "config" / "mikotui-deliver.service"
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read(unit, encoding="utf-8")
    argv = shlex.split(parser["Service"]["ExecStart"])
    assert argv[0].endswith("/bin/mikotui")
    args = front.build_parser().parse_args(argv[1:])
    assert (args.command, args.watch, args.config) == (
        "deliver", True, "/etc/mikotui/mikotui.toml")
    assert parser["Service"]["KillSignal"] == "SIGTERM"
    assert parser["Install"]["WantedBy"] == "multi-user.target"


# --- any values the PBX may hold (property) --------------------------------

_any_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
_pbx_values = st.fixed_dictionaries({
    "MailSMTPHost": st.sampled_from(["smtp.yandex.ru", "ssl://smtp.yandex.ru",
                                     "tls://mail.ru:2525", "", "http://x", "bad host"]),
    "MailSMTPPort": st.one_of(st.integers(0, 70000).map(str), _any_text),
    "MailSMTPUseTLS": st.one_of(st.sampled_from(["", "0", "1", "none", "tls", "ssl"]),
                                _any_text),
    "MailSMTPCertCheck": st.sampled_from(["0", "1", "", "yes"]),
    "MailSMTPFromUsername": _any_text,
    "MailSMTPPassword": _any_text,
    "SystemEmailForMissed": st.sampled_from(["", "a@b.ru", "not an address", "a@b.ru, c@d.ru",
                                             "a@b.ru, oops"]),
    "SendVoicemailNotifications": st.sampled_from(["0", "1", "yes"]),
    "MailTplMissedCallSubject": _any_text,
    "MailTplVoicemailBody": _any_text,
    "MailTplVoicemailFooter": _any_text,
}, optional={**{key: st.just(None) for key in ("MailTplMissedCallBody", "PBXLanguage")},
             **{key: st.one_of(st.just(None), st.sampled_from(["0", "1"]))
                for key in ("SendLoginNotifications", "SendMissedCallNotifications")}})


@hsettings(max_examples=60, deadline=None)
@given(values=_pbx_values)
def test_any_pbx_values_round_trip(values):
    """Whatever the PBX holds: import -> save -> load -> export -> import
    gives the same settings, and the password's change line is masked."""
    from mikotui import mikopbx

    with tempfile.TemporaryDirectory() as tmp:
        db = make_db(Path(tmp) / "mikopbx.db",
                     {k: v for k, v in values.items() if v is not None},
                     drop=tuple(k for k, v in values.items() if v is None))
        first = mikopbx.import_settings(config.defaults("en"), mikopbx.read(db))
        saved = config.loads(config.dumps(first.settings))
        assert saved == first.settings
        mikopbx.export_settings(saved, db)
        again = mikopbx.import_settings(saved, mikopbx.read(db))
        assert again.settings == saved
        assert again.changes == [] and again.issues == []
        for change in first.changes:
            if change.key == "smtp.password":
                masked = str(change).split(": ", 1)[1]
                assert masked in ('"" -> ********', '******** -> ""', '******** -> ********')
