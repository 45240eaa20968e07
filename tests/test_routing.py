"""Who gets what: one test per rule of mikotui/routing.py, a property over
any cards and switches, and the same property through `mikotui notify` to a
real SMTP server."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from conftest import FIXTURES, run_cli
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from notify_support import ADMIN, GENERAL_MISSED, VOICEMAIL, Server, settings_for, write

from mikotui import config, routing

E = config.Employee


def base(**notifications: bool) -> config.Settings:
    s = config.defaults()
    return replace(
        s,
        notifications=replace(s.notifications, admin_email="admin@x.ru", **notifications),
        missed_call=replace(s.missed_call, email="missed@x.ru"),
        voicemail=replace(s.voicemail, email="vm@x.ru"),
        employees=(E("201", "Smith", "smith@x.ru"), E("202", "Brown", ""),
                   E("203", "Anna", "anna@x.ru, anna.home@y.ru")),
    )


def with_card(s: config.Settings, ext: str, **changes) -> config.Settings:
    return replace(s, employees=tuple(replace(e, **changes) if e.extension == ext else e
                                      for e in s.employees))


# --- missed call ----------------------------------------------------------------

def test_missed_call_goes_to_the_card() -> None:
    assert routing.missed_call(base(), "201", "79261234567") == ("smith@x.ru",)


@pytest.mark.parametrize("called", ["202", "999"])  # a card without email; no card
def test_missed_call_without_a_card_address_goes_to_the_general_address(called) -> None:
    assert routing.missed_call(base(), called, "5") == ("missed@x.ru",)


def test_missed_call_with_nowhere_to_go_is_nobody() -> None:
    s = base()
    assert routing.missed_call(replace(s, missed_call=replace(s.missed_call, email="")),
                               "202", "5") == ()


def test_every_address_of_a_card_gets_it() -> None:
    assert routing.missed_call(base(), "203", "5") == ("anna@x.ru", "anna.home@y.ru")


def test_a_card_whose_addresses_are_all_broken_falls_back() -> None:
    s = with_card(base(), "201", email="smith at x, @x.ru")
    assert routing.missed_call(s, "201", "5") == ("missed@x.ru",)


def test_a_broken_address_is_left_out_and_the_rest_used() -> None:
    s = base()
    s = replace(s, missed_call=replace(s.missed_call, email="x@y.com, not an address, z@w.com"))
    assert routing.missed_call(s, "999", "5") == ("x@y.com", "z@w.com")
    assert routing.voicemail(replace(s, voicemail=replace(s.voicemail, email="nope")), []) == ()


@pytest.mark.parametrize("rule, internal, external", [
    ("all", True, True), ("internal", True, False), ("external", False, True),
    ("off", False, False),
])
def test_missed_calls_rule_of_the_card(rule, internal, external) -> None:
    s = with_card(base(), "201", missed_calls=rule)
    assert bool(routing.missed_call(s, "201", "104")) is internal
    assert bool(routing.missed_call(s, "201", "+74951234567")) is external


def test_an_opted_out_card_does_not_fall_back_to_the_general_address() -> None:
    # The general address is for calls nobody's card takes, not for opt-outs.
    s = with_card(base(), "201", missed_calls="off")
    assert routing.missed_call(s, "201", "5") == ()
    assert "missed_calls = 'off'" in routing.nobody_because(s, "201", "5")


@pytest.mark.parametrize("caller, internal", [
    ("203", True),          # a card
    ("10", True), ("99999", True),  # 2 to 5 digits
    ("1", False), ("100000", False), ("+7495", False), ("", False), ("20 1", False),
    ("74951234567", False),
])
def test_internal_is_a_card_or_the_default_pattern(caller, internal) -> None:
    assert routing.is_internal(base(), caller) is internal


def test_internal_pattern_is_configurable_and_a_card_stays_internal() -> None:
    s = base()
    s = replace(s, missed_call=replace(s.missed_call, internal_pattern=r"7\d{3}"),
                employees=(*s.employees, E("74951234567", "Front desk", "")))
    assert routing.is_internal(s, "7001")
    assert not routing.is_internal(s, "101")
    assert routing.is_internal(s, "74951234567")
    broken = replace(s, missed_call=replace(s.missed_call, internal_pattern="[0-9"))
    assert not routing.is_internal(broken, "101")  # config check names it
    assert routing.is_internal(broken, "203")


# --- voicemail ------------------------------------------------------------------

def test_voicemail_to_those_who_missed_it_and_always_the_voicemail_address() -> None:
    assert routing.voicemail(base(), ["201", "202"]) == ("smith@x.ru", "vm@x.ru")
    assert routing.voicemail(base(), [], "203") == ("anna@x.ru", "anna.home@y.ru", "vm@x.ru")


def test_voicemail_false_on_a_card_leaves_that_employee_out() -> None:
    s = with_card(base(), "201", voicemail=False)
    assert routing.voicemail(s, ["201", "203"], "201") == (
        "anna@x.ru", "anna.home@y.ru", "vm@x.ru")


def test_no_address_twice_whatever_the_case() -> None:
    s = base()
    s = replace(s, voicemail=replace(s.voicemail, email="SMITH@x.ru, vm@x.ru, Vm@X.ru"))
    s = with_card(s, "203", email="smith@X.RU")
    assert routing.voicemail(s, ["201", "203", "201"], "201") == ("smith@x.ru", "vm@x.ru")


# --- system, login, admin -------------------------------------------------------

def test_system_and_login_to_every_admin_address() -> None:
    s = base(login=True)
    s = replace(s, notifications=replace(s.notifications,
                                         admin_email="a@x.ru, b@x.ru,A@x.ru"))
    assert routing.system(s) == ("a@x.ru", "b@x.ru")
    assert routing.login(s) == ("a@x.ru", "b@x.ru")


# --- the switches ---------------------------------------------------------------

def test_login_is_off_by_default_as_in_mikopbx() -> None:
    assert routing.switched_off(config.defaults(), "login") == "notifications.login"
    assert routing.login(config.defaults()) == ()


@pytest.mark.parametrize("kind, switch", [("missed", "missed_call"), ("voicemail", "voicemail"),
                                          ("system", "system"), ("login", "login")])
def test_each_kind_has_its_own_switch(kind, switch) -> None:
    on = base(login=True)
    off = replace(on, notifications=replace(on.notifications, **{switch: False}))
    assert routing.switched_off(on, kind) == ""
    assert routing.switched_off(off, kind) == f"notifications.{switch}"
    assert send(on, kind) and not send(off, kind)
    # The other kinds do not care.
    for other in routing.SWITCHES:
        if other != kind:
            assert send(off, other)


@pytest.mark.parametrize("kind", list(routing.SWITCHES))
def test_the_master_switch_wins(kind) -> None:
    s = base(enabled=False, login=True)
    assert routing.switched_off(s, kind) == "notifications.enabled"
    assert send(s, kind) == ()


def test_the_admin_still_gets_the_test_mail_and_alerts_with_the_kinds_off() -> None:
    s = base(system=False, login=False)
    assert routing.admin(s) == ("admin@x.ru",)


def send(s: config.Settings, kind: str, caller: str = "5", called: str = "201",
         missed_by: tuple[str, ...] = ("201",), mailbox: str | None = None) -> tuple[str, ...]:
    if kind == "missed":
        return routing.missed_call(s, called, caller)
    if kind == "voicemail":
        return routing.voicemail(s, missed_by, mailbox)
    return routing.system(s) if kind == "system" else routing.login(s)


# --- the property ---------------------------------------------------------------

# Few distinct addresses, so cards, general and voicemail addresses collide.
local = st.sampled_from(["a", "b", "smith", "A", "Smith", "anna"])
address = st.builds(lambda u, d: f"{u}@{d}", local, st.sampled_from(["x.ru", "X.RU", "y.ru"]))
field = st.one_of(st.just(""), st.just("broken"),
                  st.lists(st.one_of(address, st.just("not one")), max_size=3).map(", ".join))
extension = st.sampled_from(["101", "201", "202", "5001", "74951234567"])
card = st.builds(E, extension=extension, name=st.just("N"), email=field,
                 missed_calls=st.sampled_from(config.MISSED_CALL_RULES), voicemail=st.booleans())
switches = st.fixed_dictionaries({k: st.booleans() for k in
                                  ("enabled", "missed_call", "voicemail", "system", "login")})


@st.composite
def situations(draw):
    s = config.defaults()
    cards = draw(st.lists(card, max_size=5, unique_by=lambda e: e.extension))
    s = replace(
        s, notifications=replace(s.notifications, admin_email=draw(field), **draw(switches)),
        missed_call=replace(s.missed_call, email=draw(field)),
        voicemail=replace(s.voicemail, email=draw(field)), employees=tuple(cards))
    kind = draw(st.sampled_from(list(routing.SWITCHES)))
    caller = draw(st.one_of(extension, st.sampled_from(["+74957654321", "42"])))
    called = draw(extension)
    missed_by = tuple(draw(st.lists(extension, max_size=4)))
    mailbox = draw(st.one_of(st.none(), extension))
    return s, kind, caller, called, missed_by, mailbox


def allowed(s: config.Settings, kind, caller, called, missed_by, mailbox) -> set[str]:
    """What the rules allow, written out independently of routing.py."""
    if not s.notifications.enabled or not getattr(s.notifications, routing.SWITCHES[kind]):
        return set()

    def good(value: str) -> set[str]:
        return {a.strip().lower() for a in value.split(",") if config.is_email(a.strip())}

    cards = {e.extension: e for e in s.employees}
    if kind in ("system", "login"):
        return good(s.notifications.admin_email)
    if kind == "voicemail":
        out = good(s.voicemail.email)
        for ext in (*missed_by, *([mailbox] if mailbox else [])):
            if ext in cards and cards[ext].voicemail:
                out |= good(cards[ext].email)
        return out
    e = cards.get(called)
    if e is None or not good(e.email):
        return good(s.missed_call.email)
    internal = caller in cards or (caller.isdigit() and 2 <= len(caller) <= 5)
    takes = {"all": True, "internal": internal, "external": not internal, "off": False}
    return good(e.email) if takes[e.missed_calls] else set()


@hsettings(max_examples=400, deadline=None)
@given(situations())
def test_nobody_gets_it_twice_and_nothing_switched_off_is_sent(situation) -> None:
    s, kind, *event = situation
    got = send(s, kind, *event)
    lowered = [a.lower() for a in got]
    assert len(lowered) == len(set(lowered))
    assert set(lowered) == allowed(s, kind, *event)
    if routing.switched_off(s, kind):
        assert got == ()


# --- the same, through `mikotui notify` to a real server -------------------------------

VOICEMAIL_EML = (FIXTURES / "asterisk-voicemail-default.eml").read_bytes()  # mailbox 201


@pytest.fixture(scope="module")
def server():
    with Server() as s:
        yield s


@hsettings(max_examples=12, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(situation=situations())
def test_through_notify_nobody_gets_it_twice_and_nothing_switched_off_is_sent(
        server, tmp_path_factory, situation) -> None:
    s, kind, caller, called, missed_by, _ = situation
    tmp = tmp_path_factory.mktemp("route")
    real = settings_for(tmp, server.port)
    s = replace(s, smtp=real.smtp, spool=real.spool)
    conf = write(tmp, s)
    server.handler.received.clear()
    if kind == "missed":
        args, data = ["--caller", caller, "--called", called], None
    elif kind == "voicemail":
        args, data = ["--missed-by", ",".join(missed_by)], VOICEMAIL_EML
    elif kind == "system":
        args, data = ["--subject", "Low disk", "--message", "3% left"], None
    else:
        args, data = ["--user", "admin", "--address", "192.0.2.7"], None
    r = run_cli("--config", conf, "notify", kind, *args, input=data)
    assert r.returncode == 0, r.stderr_text
    want = allowed(s, kind, caller, called, missed_by, "201")
    got = [a.lower() for m in server.received for a in m.rcpt_tos]
    assert len(got) == len(set(got)) and set(got) == want
    assert len(server.received) == (1 if want else 0)
    if not want:
        assert "event=dropped" in r.stderr_text


# --- the switches through the command, one log line each ------------------------------

@pytest.mark.parametrize("kind, switch, args", [
    ("missed", "missed_call", ["--caller", "5", "--called", "201"]),
    ("voicemail", "voicemail", ["--missed-by", "203"]),
    ("system", "system", ["--subject", "x", "--message", "y"]),
])
def test_a_switched_off_kind_is_dropped_with_one_log_line(tmp_path: Path, kind, switch,
                                                         args) -> None:
    with Server() as server:
        s = settings_for(tmp_path, server.port)
        conf = write(tmp_path, replace(s, notifications=replace(s.notifications,
                                                               **{switch: False})))
        r = run_cli("--config", conf, "notify", kind, *args,
                    input=VOICEMAIL_EML if kind == "voicemail" else None)
        assert r.returncode == 0, r.stderr_text
        assert r.stderr_text.count("\n") == 1
        assert "event=dropped" in r.stderr_text
        assert f"reason=\"notifications.{switch} = false\"" in r.stderr_text
        log = (tmp_path / "spool" / "mikotui.log").read_text()
        assert log.count("event=dropped") == 1
        assert server.received == []
        # The other kinds still go.
        r = run_cli("--config", conf, "notify", "missed" if kind != "missed" else "system",
                    *(["--caller", "5", "--called", "201"] if kind != "missed"
                      else ["--subject", "x", "--message", "y"]))
        assert r.returncode == 0 and len(server.received) == 1, r.stderr_text
        # And a test mail asked for by hand still goes.
        off = write(tmp_path, replace(s, notifications=replace(
            s.notifications, missed_call=False, voicemail=False, system=False)))
        r = run_cli("--config", off, "test-email", "--quiet")
        assert r.returncode == 0, r.stdout_text + r.stderr_text
        assert len(server.received) == 2 and server.received[-1].rcpt_tos == (ADMIN,)


def test_a_missed_call_to_an_opted_out_employee_says_why(tmp_path: Path) -> None:
    with Server() as server:
        s = settings_for(tmp_path, server.port)
        s = with_card(s, "201", missed_calls="internal")
        conf = write(tmp_path, s)
        r = run_cli("--config", conf, "notify", "missed", "--caller", "74951234567",
                    "--called", "201")
        assert r.returncode == 0 and server.received == []
        assert "missed_calls = 'internal' and the caller is external" in r.stderr_text
        r = run_cli("--config", conf, "notify", "missed", "--caller", "204", "--called", "201")
        assert r.returncode == 0 and len(server.received) == 1
        assert server.received[0].rcpt_tos == ("smith@pbx.test",)


def test_several_addresses_everywhere_each_mailed_once(tmp_path: Path) -> None:
    with Server() as server:
        s = settings_for(tmp_path, server.port)
        s = replace(s, voicemail=replace(s.voicemail, email=f"{VOICEMAIL}, SMITH@pbx.test"),
                    missed_call=replace(s.missed_call, email=f"{GENERAL_MISSED}, x@pbx.test"))
        s = with_card(s, "203", email="anna@pbx.test, smith@pbx.test")
        conf = write(tmp_path, s)
        r = run_cli("--config", conf, "notify", "voicemail", "--missed-by", "203",
                    input=VOICEMAIL_EML)
        assert r.returncode == 0, r.stderr_text
        assert sorted(a.lower() for a in server.received[0].rcpt_tos) == [
            "anna@pbx.test", "smith@pbx.test", VOICEMAIL]
        r = run_cli("--config", conf, "notify", "missed", "--caller", "5", "--called", "999")
        assert r.returncode == 0 and len(server.received) == 2
        assert server.received[1].rcpt_tos == (GENERAL_MISSED, "x@pbx.test")


# --- the config keys ---------------------------------------------------------------

CARDS_TOML = """
[notifications]
admin_email = ["a@x.ru", " b@x.ru "]
login = true
voicemail = false

[missed_call]
email = "m1@x.ru, m2@x.ru"
internal_pattern = "[0-9]{3}"

[[employees]]
extension = "201"
email = ["smith@x.ru", "smith@home.ru"]
missed_calls = "external"
voicemail = false
"""


def test_address_lists_as_string_or_array_and_the_new_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(CARDS_TOML)
    s = config.load(path)
    assert s.notifications.admin_email == "a@x.ru, b@x.ru"
    assert (s.notifications.login, s.notifications.voicemail) == (True, False)
    assert (s.notifications.missed_call, s.notifications.system) == (True, True)
    assert s.missed_call.internal_pattern == "[0-9]{3}"
    [e] = s.employees
    assert (e.email, e.missed_calls, e.voicemail) == ("smith@x.ru, smith@home.ru", "external",
                                                      False)
    assert routing.login(s) == ("a@x.ru", "b@x.ru")
    assert config.errors(config.validate(s)) == []
    config.save(s, path)
    assert config.load(path) == s


def test_defaults_are_mikopbx_defaults() -> None:
    n = config.defaults().notifications
    assert (n.enabled, n.missed_call, n.voicemail, n.system, n.login) == (
        True, True, True, True, False)
    e = config.Employee("201")
    assert (e.missed_calls, e.voicemail) == ("all", True)
    assert config.defaults().missed_call.internal_pattern == "[0-9]{2,5}"


@pytest.mark.parametrize("toml, key", [
    ('[notifications]\nlogin = "yes"\n', "notifications.login"),
    ('[notifications]\nadmin_email = ["a@x.ru", 5]\n', "notifications.admin_email"),
    ('[[employees]]\nextension = "201"\nvoicemail = 1\n', "employees[0].voicemail"),
])
def test_a_wrong_type_names_its_key(tmp_path: Path, toml: str, key: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(config.ConfigError) as err:
        config.load(path)
    assert err.value.key == key and "\n" not in str(err.value)


def test_config_check_names_each_bad_address_and_rule(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[notifications]\nadmin_email = "a@x.ru, not-one, b@x.ru"\n'
        '[missed_call]\ninternal_pattern = "[0-9"\n'
        '[voicemail]\nemail = ["v@x.ru", "v@"]\n'
        '[[employees]]\nextension = "201"\nemail = "s@x.ru,,bad@"\nmissed_calls = "some"\n')
    r = run_cli("config", "check", "--config", str(path))
    assert r.returncode != 0
    out = r.stdout_text + r.stderr_text
    assert "notifications.admin_email" in out and "'not-one'" in out and "'a@x.ru'" not in out
    assert "voicemail.email" in out and "'v@'" in out
    assert "employees[0].email" in out and "'bad@'" in out
    assert "employees[0].missed_calls" in out and "'some'" in out
    assert "missed_call.internal_pattern" in out and "2 to 5 digits" in out
