"""`mikotui notify login` (the sign-in alert and its rate limit) and
`notify missed --via queue|group NAME`, run as the PBX runs them, against a
real SMTP server."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import run_cli
from notify_support import ADMIN, Server, entries, settings_for, write

from mikotui import config, limits


@pytest.fixture
def server():
    with Server() as s:
        yield s


def login_on(tmp_path: Path, server: Server, **notifications) -> str:
    s = settings_for(tmp_path, server.port)
    return write(tmp_path, replace(s, notifications=replace(
        s.notifications, login=True, admin_email=f"{ADMIN}, second@pbx.test", **notifications)))


def login(conf: str, user: str = "admin", address: str = "192.0.2.7", *more: str):
    return run_cli("--config", conf, "notify", "login", "--user", user, "--address", address,
                   *more)


# --- notify login -------------------------------------------------------------------

def test_login_alert_says_who_from_where_and_when_to_every_admin_address(tmp_path, server):
    conf = login_on(tmp_path, server)
    r = login(conf, "Администратор", "2001:DB8::1", "--when", "2026-12-02 09:15:00")
    assert r.returncode == 0, r.stderr_text
    [got] = server.received
    assert got.rcpt_tos == (ADMIN, "second@pbx.test")
    assert got.subject == "Sign-in to the PBX web interface: Администратор from 2001:db8::1"
    text = got.parse().get_body(("plain",)).get_content()
    assert "User: Администратор" in text and "From: 2001:db8::1" in text
    assert "When: 2026-12-02 09:15:00" in text


def test_login_alert_in_russian(tmp_path, server):
    conf = login_on(tmp_path, server)
    r = run_cli("--config", conf, "--lang", "ru", "notify", "login", "--user", "admin",
                "--address", "10.0.0.5")
    assert r.returncode == 0, r.stderr_text
    assert server.received[0].subject == "Вход в веб-интерфейс АТС: admin с адреса 10.0.0.5"


def test_login_is_off_by_default_and_dropped_with_one_line(tmp_path, server):
    conf = write(tmp_path, settings_for(tmp_path, server.port))
    r = login(conf)
    assert r.returncode == 0
    assert r.stderr_text.count("\n") == 1
    assert 'event=dropped reason="notifications.login = false"' in r.stderr_text
    assert server.received == []
    # Dropped while off did not use up the limit: switched on, it goes.
    conf = login_on(tmp_path, server)
    assert login(conf).returncode == 0 and len(server.received) == 1


def test_one_alert_per_user_and_address_in_five_minutes_across_runs(tmp_path, server):
    conf = login_on(tmp_path, server)
    assert login(conf).returncode == 0
    again = login(conf)
    assert again.returncode == 0 and "already reported within 5 minutes" in again.stderr_text
    assert len(server.received) == 1
    assert login(conf, "admin", "192.0.2.8").returncode == 0  # another address
    assert login(conf, "root", "192.0.2.7").returncode == 0   # another user
    assert len(server.received) == 3
    assert entries(tmp_path / "spool", "queue") == []
    stamps = list((tmp_path / "spool" / limits.FOLDER).iterdir())
    assert len(stamps) == 3
    assert all(os.stat(p).st_mode & 0o777 == 0o600 for p in stamps)
    assert not any("admin" in p.name or "192" in p.name for p in stamps)


def test_the_limit_window_and_a_clock_set_back(tmp_path: Path) -> None:
    assert limits.take(tmp_path, "k", 300, now=1000.0)
    assert not limits.take(tmp_path, "k", 300, now=1299.0)
    assert limits.take(tmp_path, "k", 300, now=1300.0)
    # The clock went back an hour: the stamp is in the future, it holds nothing.
    assert limits.take(tmp_path, "k", 300, now=1300.0 - 3600)
    assert not limits.take(tmp_path, "k", 300, now=1300.0 - 3500)


def test_a_damaged_stamp_holds_nothing_back_and_old_stamps_are_swept(tmp_path: Path) -> None:
    assert limits.take(tmp_path, "a", 300, now=1000.0)
    [stamp] = (tmp_path / limits.FOLDER).iterdir()
    stamp.write_bytes(b"\xffgarbage")
    assert limits.take(tmp_path, "a", 300, now=1001.0)
    assert limits.take(tmp_path, "b", 300, now=5000.0)
    assert [p.name for p in (tmp_path / limits.FOLDER).iterdir()] != [stamp.name]
    assert len(list((tmp_path / limits.FOLDER).iterdir())) == 1


@pytest.mark.parametrize("args, said", [
    (["--user", "admin", "--address", "192.0.2.300"], "--address '192.0.2.300' is not"),
    (["--user", "admin", "--address", "host.example"], "is not an IP address"),
    (["--user", "ad\nmin", "--address", "192.0.2.7"], "is not a user name"),
    (["--user", " ", "--address", "192.0.2.7"], "is not a user name"),
    (["--user", "admin", "--address", "192.0.2.7", "--when", "yesterday"],
     "--when 'yesterday' is not"),
])
def test_login_with_bad_input_is_one_line_and_exit_64(tmp_path, server, args, said):
    conf = login_on(tmp_path, server)
    r = run_cli("--config", conf, "notify", "login", *args)
    assert r.returncode == 64 and r.stderr_text.count("\n") == 1, r.stderr_text
    assert said in r.stderr_text
    assert server.received == []
    assert not (tmp_path / "spool" / limits.FOLDER).exists() or not any(
        (tmp_path / "spool" / limits.FOLDER).iterdir())


# --- notify missed --via ----------------------------------------------------------------

def via_conf(tmp_path: Path, server: Server, lang: str = "en", **card) -> str:
    s = settings_for(tmp_path, server.port)
    s = config.with_language(s, lang)
    s = replace(s, missed_call=replace(s.missed_call,
                                       subject="Missed call NOTIFICATION_VIA",
                                       body=s.missed_call.body + "\nVia: [NOTIFICATION_VIA]"))
    s = replace(s, employees=tuple(replace(e, **card) if e.extension == "201" else e
                                   for e in s.employees))
    return write(tmp_path, s)


def missed(conf: str, *args: str, caller: str = "74951234567"):
    return run_cli("--config", conf, "notify", "missed", "--caller", caller, "--called", "201",
                   *args)


@pytest.mark.parametrize("via, lang, said", [
    (["queue", "Sales"], "en", "via Sales queue"),
    (["group", "Support"], "en", "via Support ring group"),
    (["Queue", "Отдел продаж"], "ru", "через очередь Отдел продаж"),
    (["group", "Support"], "ru", "через группу Support"),
])
def test_via_names_the_queue_or_group_in_subject_and_body(tmp_path, server, via, lang, said):
    r = missed(via_conf(tmp_path, server, lang), "--via", *via)
    assert r.returncode == 0, r.stderr_text
    [got] = server.received
    assert got.subject == f"Missed call {said}"
    assert f"[{said}]" in got.parse().get_body(("plain",)).get_content()


def test_a_direct_call_leaves_notification_via_empty(tmp_path, server):
    assert missed(via_conf(tmp_path, server)).returncode == 0
    [got] = server.received
    assert got.subject == "Missed call"
    assert "Via: []" in got.parse().get_body(("plain",)).get_content()


def test_via_a_queue_the_members_rule_judges_the_original_caller(tmp_path, server):
    conf = via_conf(tmp_path, server, missed_calls="external")
    assert missed(conf, "--via", "queue", "Sales", caller="104").returncode == 0
    assert server.received == []  # an internal caller, through a queue: still internal
    assert missed(conf, "--via", "queue", "Sales").returncode == 0
    assert [g.rcpt_tos for g in server.received] == [("smith@pbx.test",)]


@pytest.mark.parametrize("via", [["line", "Sales"], ["queue", " "]])
def test_a_bad_via_is_a_usage_error(tmp_path, server, via):
    r = missed(via_conf(tmp_path, server), "--via", *via)
    assert r.returncode == 64 and r.stderr_text.count("\n") == 1, r.stderr_text
    assert "is not 'queue NAME' or 'group NAME'" in r.stderr_text
    assert server.received == []
