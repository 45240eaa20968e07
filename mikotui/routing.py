"""Who gets what, from the [[employees]] cards and the addresses
in the settings. Pure functions: the caller logs an empty result."""

from __future__ import annotations

from collections.abc import Iterable

from mikotui.config import Employee, Settings, is_email


def missed_call(settings: Settings, called: str) -> tuple[str, ...]:
    """The called employee's card email, else the general missed-call
    address, else nobody."""
    employee = settings.employee(called.strip())
    if card_email(employee):
        return (employee.email,)
    return unique([settings.missed_call.email])


def voicemail(settings: Settings, missed_by: Iterable[str] = (),
              mailbox: str | None = None) -> tuple[str, ...]:
    """Every employee who missed the call (with an email), the mailbox's own
    employee, and always the single voicemail address; no duplicates."""
    extensions = [e.strip() for e in missed_by if e.strip()]
    if mailbox:
        extensions.append(mailbox.strip())
    addresses = []
    for ext in extensions:
        employee = settings.employee(ext)
        if card_email(employee):
            addresses.append(employee.email)
    if settings.voicemail.email:
        addresses.append(settings.voicemail.email)
    return unique(addresses)


def card_email(employee: Employee | None) -> str:
    """The card's email when it can be mailed: a card with a broken address
    (`config check` names it) counts as one without, so a missed call falls
    back to the general address instead of failing at the server."""
    if employee and employee.email and is_email(employee.email.strip()):
        return employee.email
    return ""


def system(settings: Settings) -> tuple[str, ...]:
    return unique([settings.notifications.admin_email])


def unique(addresses: Iterable[str]) -> tuple[str, ...]:
    """Drop empties, malformed addresses (`config check` names them; a server
    would take a part of "a@x, b@y" and the log would claim both) and
    case-insensitive repeats, keeping the first spelling."""
    seen: set[str] = set()
    out = []
    for a in addresses:
        a = a.strip()
        if a and is_email(a) and a.lower() not in seen:
            seen.add(a.lower())
            out.append(a)
    return tuple(out)
