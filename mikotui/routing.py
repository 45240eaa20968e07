"""Who gets what, from the [[employees]] cards, the addresses in
the settings and the switches. Pure functions: the caller logs an empty
result (`switched_off` and `nobody_because` say why).

The rules, each in one place:
- the master switch (notifications.enabled) and then the kind's own switch
  (notifications.missed_call / voicemail / system / login) must be on;
- a missed call goes to the called employee's card addresses when the card
  has a usable one and its `missed_calls` rule takes this caller ("all",
  "internal", "external", "off"); a card without a usable address, or no
  card, falls back to the general missed-call address;
- a voicemail goes to every employee who missed it (and the mailbox's own)
  whose card says `voicemail = true`, and always to the voicemail address;
- system alerts and sign-in alerts go to the administrator's addresses;
- every address field may hold several addresses; each is used on its own,
  a malformed one is left out (`config check` names it) and no address gets
  a notification twice, whatever its spelling's case.
"""

from __future__ import annotations

from collections.abc import Iterable

from mikotui.config import Employee, Settings, addresses, internal_pattern, is_email

# The notification kind -> its switch under [notifications].
SWITCHES = {"missed": "missed_call", "voicemail": "voicemail", "system": "system",
            "login": "login"}


def switched_off(settings: Settings, kind: str) -> str:
    """The key of the switch that keeps `kind` from being sent, or ""."""
    if not settings.notifications.enabled:
        return "notifications.enabled"
    switch = SWITCHES.get(kind)
    if switch and not getattr(settings.notifications, switch):
        return f"notifications.{switch}"
    return ""


def missed_call(settings: Settings, called: str, caller: str = "") -> tuple[str, ...]:
    """The called employee's card addresses if its rule takes this caller,
    else (no card, or no usable address on it) the general missed-call
    address, else nobody."""
    if switched_off(settings, "missed"):
        return ()
    employee = settings.employee(called.strip())
    mine = card_addresses(employee)
    if mine:
        return mine if takes_missed_call(settings, employee, caller) else ()
    return unique(addresses(settings.missed_call.email))


def takes_missed_call(settings: Settings, employee: Employee | None, caller: str) -> bool:
    rule = employee.missed_calls if employee else "all"
    if rule == "all":
        return True
    if rule == "internal":
        return is_internal(settings, caller)
    if rule == "external":
        return not is_internal(settings, caller)
    return False  # "off", or a value `config check` refuses: never more mail than asked


def is_internal(settings: Settings, caller: str) -> bool:
    """One of ours: an extension with a card, or a number that matches
    [missed_call] internal_pattern (a broken pattern matches nothing)."""
    number = caller.strip()
    if not number:
        return False
    if settings.employee(number) is not None:
        return True
    pattern = internal_pattern(settings.missed_call.internal_pattern)
    return bool(pattern and pattern.fullmatch(number))


def nobody_because(settings: Settings, called: str, caller: str) -> str:
    """Why a missed call has no recipient, for the log line."""
    employee = settings.employee(called.strip())
    if (employee is not None and card_addresses(employee)
            and not takes_missed_call(settings, employee, caller)):
        where = "internal" if is_internal(settings, caller) else "external"
        return (f"employee {employee.extension} has missed_calls = "
                f"{employee.missed_calls!r} and the caller is {where}")
    return "no usable employee email for the called extension, no general missed-call address"


def voicemail(settings: Settings, missed_by: Iterable[str] = (),
              mailbox: str | None = None) -> tuple[str, ...]:
    """Every employee who missed the call (and the mailbox's own) whose card
    takes voicemail, and always the single voicemail address; no duplicates."""
    if switched_off(settings, "voicemail"):
        return ()
    extensions = [e.strip() for e in missed_by if e.strip()]
    if mailbox:
        extensions.append(mailbox.strip())
    found: list[str] = []
    for ext in extensions:
        employee = settings.employee(ext)
        if employee is not None and employee.voicemail:
            found += card_addresses(employee)
    return unique([*found, *addresses(settings.voicemail.email)])


def card_addresses(employee: Employee | None) -> tuple[str, ...]:
    """The card's addresses that can be mailed: a card whose addresses are
    all broken (`config check` names them) counts as one without, so a
    missed call falls back to the general address instead of failing at
    the server."""
    return unique(addresses(employee.email)) if employee else ()


def system(settings: Settings) -> tuple[str, ...]:
    return () if switched_off(settings, "system") else admin(settings)


def login(settings: Settings) -> tuple[str, ...]:
    return () if switched_off(settings, "login") else admin(settings)


def admin(settings: Settings) -> tuple[str, ...]:
    """The administrator's addresses, whatever the kind switches say: for
    the test mail and the alert about a notification given up on."""
    return unique(addresses(settings.notifications.admin_email))


def unique(found: Iterable[str]) -> tuple[str, ...]:
    """Drop empties, malformed addresses (`config check` names them; a server
    would refuse them at RCPT and the log would claim them) and
    case-insensitive repeats, keeping the first spelling."""
    seen: set[str] = set()
    out = []
    for a in found:
        a = a.strip()
        if a and is_email(a) and a.lower() not in seen:
            seen.add(a.lower())
            out.append(a)
    return tuple(out)
