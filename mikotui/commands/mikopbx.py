"""mikotui import-mikopbx DB [--dry-run] | export-mikopbx DB"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the real imports wait until a command runs
    from mikotui.mikopbx import Change, MikoPbxError, PbxData

DB_HELP = "the MikoPBX database (on the PBX: /cf/conf/mikopbx.db)"


def register(sub, common: argparse.ArgumentParser) -> None:
    imp = sub.add_parser(
        "import-mikopbx", parents=[common],
        help="take the mail settings and employee cards from a MikoPBX database",
        description=(
            "Read MikoPBX's mail settings (m_PbxSettings), its language and the employee "
            "cards (users with a SIP extension) from its database, opened read-only so "
            "the PBX can keep running, and show what would change in our config, field "
            "by field (the password masked). Without --dry-run the config is then "
            "written (atomically, the old one kept as .bak). A value that cannot be "
            "mapped is reported with its MikoPBX key and its field is left as it was; "
            "the exit status is then 65. The employee list is replaced by the PBX's."),
    )
    imp.add_argument("db", metavar="DB", help=DB_HELP)
    imp.add_argument("--dry-run", action="store_true",
                     help="only show what would change; write nothing")
    imp.set_defaults(handler=run_import)

    exp = sub.add_parser(
        "export-mikopbx", parents=[common],
        help="write our mail settings back into a MikoPBX database",
        description=(
            "Write the mail settings of our config into MikoPBX's m_PbxSettings, in one "
            "transaction, after copying the database to DB.bak-<time>. Only the mail "
            "keys are written (MailSMTP*, MailEnableNotifications, Send*Notifications, "
            "MailTpl*, "
            "SystemNotificationsEmail, SystemEmailForMissed, VoicemailNotificationsEmail); "
            "every other row is left untouched. Employee "
            "cards and the PBX language are NOT written: the PBX owns them (change "
            "them in MikoPBX and import again). A value MikoPBX already stores in an "
            "equivalent form (MailSMTPUseTLS 1 for STARTTLS) is kept as it is. "
            "Refused, with nothing written, when the table is missing (65), the file "
            "is missing (66) or the database is locked (75)."),
    )
    exp.add_argument("db", metavar="DB", help=DB_HELP)
    exp.set_defaults(handler=run_export)


def run_import(args: argparse.Namespace) -> int:
    from dataclasses import replace
    from pathlib import Path

    from mikotui import config, mikopbx

    path = config.resolve_path(args.config)
    try:
        data = mikopbx.read(Path(args.db))
    except mikopbx.MikoPbxError as exc:
        return _refuse(exc)
    if path.exists():
        current = config.load(path)
    else:
        current = replace(config.defaults(_language(data)), path=path)
    result = mikopbx.import_settings(current, data)
    print(f"Importing {args.db} into {path}"
          + ("" if path.exists() else " (a new file; compared with the defaults)"))
    for note in result.notes:
        print(f"  note: {note}")
    for issue in result.issues:
        print(f"mikotui: not imported: {issue}", file=sys.stderr)
    for change in result.changes:
        print(f"  {change}")
    status = os.EX_DATAERR if result.issues else 0
    if result.tokens.get(mikopbx.REFRESH_KEY):
        print(f"  OAuth2 sign-in: the refresh token {'would be' if args.dry_run else 'is'} "
              f"kept in {result.settings.token_path()}")
    if args.dry_run:
        print(f"{_count(result.changes)}; dry run, nothing written")
        return status
    errors = config.errors(config.validate(result.settings))
    if errors:
        for p in errors:
            print(f"mikotui: {p}", file=sys.stderr)
        print(f"mikotui: the result would not pass `config check`; {path} not written",
              file=sys.stderr)
        return os.EX_CONFIG
    _keep_tokens(result)
    if not result.changes and path.exists():
        print("no changes; nothing written")
        return status
    config.save(result.settings, path)
    print(f"{_count(result.changes)}; written to {path}")
    return status


def run_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mikotui import config, mikopbx

    path = config.resolve_path(args.config)
    settings = config.load_valid(path)
    try:
        result = mikopbx.export_settings(settings, Path(args.db), tokens=_tokens(settings))
    except mikopbx.MikoPbxError as exc:
        return _refuse(exc)
    print(f"Exporting {path} into {args.db}")
    if result.backup is None:
        print("MikoPBX already has these settings; nothing written")
        return 0
    for change in result.changes:
        print(f"  {change}")
    print(f"{_count(result.changes)}; backup: {result.backup}")
    print("employee cards and the PBX language are not exported (the PBX owns them)")
    return 0


def _keep_tokens(result) -> None:
    """The PBX's OAuth2 tokens into our token file (never into the config)."""
    from mikotui import mikopbx, oauth2

    found = result.tokens
    if not found.get(mikopbx.REFRESH_KEY):
        return
    s = result.settings
    tokens = oauth2.Tokens(
        refresh_token=found[mikopbx.REFRESH_KEY].strip(),
        access_token=found.get(mikopbx.ACCESS_KEY, "").strip(),
        expires_at=mikopbx.token_expiry(found.get(mikopbx.EXPIRES_KEY, "")),
        username=s.smtp.username, provider=s.smtp.oauth2.provider,
        client_id=s.smtp.oauth2.client_id, signed_in=time.time())
    store = oauth2.TokenStore(s.token_path())
    with store.locked():
        store.save(tokens)


def _tokens(settings) -> dict[str, str]:
    """Our OAuth2 tokens as MikoPBX keeps them, so the PBX stays signed in."""
    from mikotui import mikopbx, oauth2

    if settings.smtp.auth != "oauth2":
        return {}
    try:
        tokens = oauth2.status(settings)
    except oauth2.OAuth2Error:
        return {}
    if tokens is None or tokens.refused:
        return {}
    return {mikopbx.REFRESH_KEY: tokens.refresh_token, mikopbx.ACCESS_KEY: tokens.access_token,
            mikopbx.EXPIRES_KEY: str(int(tokens.expires_at))}


def _refuse(exc: MikoPbxError) -> int:
    print(f"mikotui: {exc}", file=sys.stderr)
    return exc.code


def _language(data: PbxData) -> str:
    from mikotui import mikopbx

    try:
        return mikopbx.pbx_language(data.settings.get(mikopbx.LANGUAGE_KEY, "en"))
    except ValueError:
        return "en"  # reported by the import itself, under PBXLanguage


def _count(changes: list[Change]) -> str:
    return f"{len(changes)} change" + ("" if len(changes) == 1 else "s")
