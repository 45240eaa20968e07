"""mikotui oauth2 login [--device | --paste] | status | logout | token --stdin:
sign the mailbox in with OAuth2 from a console, and look after the token
file. No command ever prints a token."""

from __future__ import annotations

import argparse
import os
import sys
import time


def register(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("oauth2", parents=[common], help="sign the mailbox in with OAuth2",
                       description="OAuth2 (XOAUTH2) sign-in for [smtp] auth = \"oauth2\": "
                                   "Microsoft 365, Google, Yandex or a custom provider. "
                                   "Tokens are kept in their own 0600 file, never in the "
                                   "config and never printed.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    login = actions.add_parser("login", parents=[common], help="sign in (device code or paste)",
                               description="Device flow: open the address shown on any "
                                           "computer and enter the code. Paste flow (the "
                                           "default for Google): open the address, sign in, "
                                           "and paste back the address the browser landed "
                                           "on (it need not load). Exit 0 once signed in.")
    how = login.add_mutually_exclusive_group()
    how.add_argument("--device", action="store_const", dest="flow", const="device",
                     help="the device code flow (Microsoft, Yandex)")
    how.add_argument("--paste", action="store_const", dest="flow", const="paste",
                     help="the authorization code flow with PKCE, pasting the address back")
    login.set_defaults(handler=run_login, flow=None)
    st = actions.add_parser("status", parents=[common], help="signed in or not",
                            description="Whether the mailbox is signed in, and until when the "
                                        "access token is good. Exit 0 when usable, 78 when not.")
    st.set_defaults(handler=run_status)
    out = actions.add_parser("logout", parents=[common], help="revoke and forget the tokens",
                             description="Revoke the token at the provider (when it has a "
                                         "revocation endpoint) and delete the token file.")
    out.set_defaults(handler=run_logout)
    tok = actions.add_parser("token", parents=[common], help="store a refresh token from stdin",
                             description="Store a refresh token read from standard input "
                                         "(from a script, or brought from MikoPBX).")
    tok.add_argument("--stdin", action="store_true", required=True,
                     help="read the refresh token from standard input")
    tok.set_defaults(handler=run_token)


def _settings(args: argparse.Namespace):
    from mikotui import config

    settings = config.load(config.resolve_path(args.config))
    if settings.smtp.auth != "oauth2":
        raise config.ConfigError('OAuth2 is not in use: set [smtp] auth = "oauth2"',
                                 key="smtp.auth", path=settings.path)
    problems = [p for p in config.errors(config.validate(settings))
                if p.key.startswith(("smtp.auth", "smtp.oauth2", "smtp.username"))]
    if problems:
        raise config.ConfigError("; ".join(str(p) for p in problems), path=settings.path)
    return settings


def run_login(args: argparse.Namespace) -> int:
    from mikotui import oauth2

    settings = _settings(args)
    flow = args.flow or oauth2.endpoints(settings.smtp.oauth2).default_flow
    try:
        tokens = _device(settings) if flow == "device" else _paste(settings)
    except oauth2.OAuth2Error as exc:
        print(f"mikotui: sign-in failed: {exc.message}", file=sys.stderr)
        return os.EX_CONFIG if exc.kind == "config" else os.EX_NOPERM
    _cleared(settings)
    print(f"Signed in as {tokens.username or settings.smtp.username}; "
          f"the token is kept in {settings.token_path()}")
    return 0


def _device(settings):
    from mikotui import oauth2

    da = oauth2.start_device(settings)
    url = da.verification_uri_complete or da.verification_uri
    print(f"On any computer or phone, open:\n\n  {da.verification_uri}\n\n"
          f"and enter the code:  {da.user_code}\n", flush=True)
    qr = oauth2.qr_lines(url)
    if qr:
        print("(or scan this to open it)\n" + "\n".join(qr) + "\n", flush=True)
    minutes = max(1, round((da.expires_at - time.time()) / 60))
    print(f"Waiting for the sign-in (the code is good for {minutes} min; Ctrl-C stops)...",
          flush=True)
    return oauth2.poll_device(settings, da)


def _paste(settings):
    from mikotui import oauth2

    pa = oauth2.start_paste(settings)
    print("Open this address in a browser on any computer and sign in:\n\n"
          f"  {pa.url}\n\n"
          f"The browser then goes to {pa.redirect_uri}... and shows an error page: that "
          "is expected. Copy the whole address from its address bar and paste it here.\n",
          flush=True)
    qr = oauth2.qr_lines(pa.url)
    if qr:
        print("(or scan this to open it)\n" + "\n".join(qr) + "\n", flush=True)
    print("Address: ", end="", flush=True)
    line = sys.stdin.readline()
    if not line.strip():
        raise oauth2.OAuth2Error("cancelled", "nothing was pasted")
    return oauth2.finish_paste(settings, pa, line)


def run_status(args: argparse.Namespace) -> int:
    from mikotui import oauth2

    settings = _settings(args)
    try:
        tokens = oauth2.status(settings)
    except oauth2.OAuth2Error as exc:
        print(f"not signed in: {exc.message}; {oauth2.LOGIN_HINT}")
        return os.EX_CONFIG
    if tokens is None:
        print(f"not signed in ({settings.token_path()} does not exist); {oauth2.LOGIN_HINT}")
        return os.EX_CONFIG
    who = tokens.username or settings.smtp.username
    if tokens.refused:
        print(f"signed in as {who}, but the provider refused the token: {tokens.refused}; "
              f"{oauth2.LOGIN_HINT}")
        return os.EX_CONFIG
    if tokens.username and tokens.username.lower() != settings.smtp.username.lower():
        print(f"signed in as {tokens.username}, but smtp.username is "
              f"{settings.smtp.username}; {oauth2.LOGIN_HINT}")
        return os.EX_CONFIG
    provider = oauth2.PRESETS.get(settings.smtp.oauth2.provider, oauth2.PRESETS["custom"])
    print(f"signed in as {who} ({provider.title})")
    if tokens.access_token and tokens.expires_at:
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(tokens.expires_at))
        state = "valid" if tokens.usable_for(0) else "expired; renewed on the next send"
        print(f"access token {state} until {at}")
    else:
        print("access token: fetched on the next send")
    print(f"token file: {settings.token_path()}")
    return 0


def run_logout(args: argparse.Namespace) -> int:
    from mikotui import oauth2

    settings = _settings(args)
    try:
        deleted, said = oauth2.logout(settings)
    except oauth2.OAuth2Error as exc:  # a damaged file: remove it all the same
        deleted, said = oauth2.TokenStore(settings.token_path()).delete(), exc.message
    if said:
        print(f"provider: {said}")
    print(f"signed out: {settings.token_path()} deleted" if deleted else "was not signed in")
    return 0


def run_token(args: argparse.Namespace) -> int:
    from mikotui import oauth2

    settings = _settings(args)
    text = sys.stdin.read(16384)
    try:
        oauth2.store_refresh_token(settings, text)
    except oauth2.OAuth2Error as exc:
        print(f"mikotui: {exc.message}", file=sys.stderr)
        return os.EX_DATAERR
    _cleared(settings)
    print(f"refresh token stored in {settings.token_path()}; the access token is fetched "
          "on the next send")
    return 0


def _cleared(settings) -> None:
    """A new sign-in: a later refusal is news for the admin again."""
    from mikotui.notify import TOKEN_REFUSED_MARK

    try:
        (settings.spool_dir() / TOKEN_REFUSED_MARK).unlink(missing_ok=True)
    except OSError:
        pass
