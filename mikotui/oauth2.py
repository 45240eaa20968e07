"""OAuth2 sign-in for SMTP (XOAUTH2 / OAUTHBEARER): the provider presets, the
token file, refreshing, and the two sign-in flows that work from an SSH
console — the device flow (RFC 8628: a code to type on any computer) and the
authorization code with PKCE (RFC 7636) whose loopback redirect the admin
pastes back.

The tokens never live in the TOML: they are in a 0600 JSON file of their own
(`Settings.token_path()`), replaced atomically, and every read-refresh-write
happens under an exclusive lock on a sibling `.lock` file, so two deliverers
refreshing at once never keep the older of two rotated refresh tokens.

HTTP is the standard library's urllib, imported only when a request is made:
the enqueue path never loads this module at all.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from mikotui import config, durable

HTTP_TIMEOUT = 20.0  # seconds for one request to the provider
EARLY = 120.0  # refresh this long before the access token expires
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
LOGIN_HINT = "authorize again: mikotui oauth2 login"


@dataclass(frozen=True)
class Preset:
    """What a provider's docs say (README "OAuth2" lists the sources)."""

    title: str
    authorization_url: str
    token_url: str
    device_authorization_url: str  # "" when the provider's device flow can't send mail
    revocation_url: str
    scope: str
    smtp: tuple[str, int, str]  # host, port, encryption
    extra_authorize: tuple[tuple[str, str], ...] = ()  # what gets a refresh token


_MS = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0"
PRESETS: dict[str, Preset] = {
    "microsoft": Preset(
        "Microsoft 365", f"{_MS}/authorize", f"{_MS}/token", f"{_MS}/devicecode", "",
        "https://outlook.office.com/SMTP.Send offline_access",
        ("smtp.office365.com", 587, "starttls")),
    "google": Preset(
        "Google", "https://accounts.google.com/o/oauth2/v2/auth",
        "https://oauth2.googleapis.com/token", "",  # its device flow excludes mail scopes
        "https://oauth2.googleapis.com/revoke", "https://mail.google.com/",
        ("smtp.gmail.com", 587, "starttls"),
        (("access_type", "offline"), ("prompt", "consent"))),
    "yandex": Preset(
        "Yandex", "https://oauth.yandex.ru/authorize", "https://oauth.yandex.ru/token",
        "https://oauth.yandex.ru/device/code", "https://oauth.yandex.ru/revoke_token",
        "mail:smtp", ("smtp.yandex.ru", 465, "ssl"), (("force_confirm", "yes"),)),
    "custom": Preset("Custom", "", "", "", "", "", ("", 587, "starttls")),
}


@dataclass(frozen=True)
class Endpoints:
    authorization_url: str
    token_url: str
    device_authorization_url: str
    revocation_url: str
    scope: str
    client_id: str
    client_secret: str
    extra_authorize: tuple[tuple[str, str], ...]

    @property
    def default_flow(self) -> str:
        return "device" if self.device_authorization_url else "paste"


def endpoints(o: config.OAuth2) -> Endpoints:
    """The preset's URLs and scope, each overridden by a non-empty key."""
    preset = PRESETS.get(o.provider, PRESETS["custom"])
    tenant = o.tenant.strip() or "common"

    def pick(name: str) -> str:
        return (getattr(o, name).strip() or getattr(preset, name)).replace("{tenant}", tenant)

    return Endpoints(pick("authorization_url"), pick("token_url"),
                     pick("device_authorization_url"), pick("revocation_url"), pick("scope"),
                     o.client_id.strip(), o.client_secret, preset.extra_authorize)


# --- failures -----------------------------------------------------------------

class OAuth2Error(Exception):
    """`kind` is "token_refused" (sign in again), "token_unavailable" (the
    provider could not be asked: try later), or "config"."""

    exit_code = os.EX_NOPERM

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        self.message = message
        super().__init__(message)


def _refused(what: str, reply: dict[str, Any]) -> OAuth2Error:
    code = str(reply.get("error") or "refused")
    text = str(reply.get("error_description") or "").split("\n")[0][:200]
    return OAuth2Error("token_refused", f"{what}: {code}" + (f" ({text})" if text else ""))


# --- the token file -------------------------------------------------------------

@dataclass(frozen=True)
class Tokens:
    refresh_token: str
    access_token: str = ""
    expires_at: float = 0.0  # epoch seconds; 0 = unknown
    username: str = ""  # the mailbox it was issued for
    provider: str = ""
    client_id: str = ""
    signed_in: float = 0.0
    refused: str = ""  # why the provider last refused it ("" = not refused)

    def usable_for(self, seconds: float) -> bool:
        return bool(self.access_token) and self.expires_at - time.time() > seconds

    def public(self) -> dict[str, Any]:
        """What may be shown: everything but the tokens."""
        return {k: v for k, v in asdict(self).items() if not k.endswith("_token")}


class TokenStore:
    """One token file. `locked()` holds the lock across a read-refresh-write."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    @contextmanager
    def locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the lock

    def load(self) -> Tokens | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise OAuth2Error("config", f"cannot read {self.path}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as f:
            raw = f.read(1 << 20)
        try:
            data = json.loads(raw)
            known = {f.name for f in fields(Tokens)}
            tokens = Tokens(**{k: v for k, v in data.items() if k in known})
            if not isinstance(tokens.refresh_token, str) or not tokens.refresh_token:
                raise ValueError("no refresh token")
            float(tokens.expires_at)
        except (ValueError, TypeError, AttributeError):
            raise OAuth2Error("token_refused", f"{self.path} is damaged") from None
        return tokens

    def save(self, tokens: Tokens) -> None:
        """Atomic: a 0600 temp file beside it, fsync, rename, fsync the folder."""
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = folder / f".{self.path.name}.{os.getpid()}.tmp"
        data = json.dumps(asdict(tokens), indent=1).encode()
        try:
            tmp.unlink(missing_ok=True)
            durable.write_file(tmp, data, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        durable.fsync_dir(folder)

    def delete(self) -> bool:
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        durable.fsync_dir(self.path.parent)
        return True


# --- HTTP ------------------------------------------------------------------------

def post_form(url: str, form: dict[str, str], *, basic: tuple[str, str] | None = None
              ) -> tuple[int, dict[str, Any]]:
    """POST a form; (status, JSON reply). Network trouble -> token_unavailable."""
    import urllib.error
    import urllib.parse
    import urllib.request

    if not config._safe_url(url):
        raise OAuth2Error("config", f"refusing to send tokens to {url!r}: not https://")
    body = urllib.parse.urlencode(form).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded",
               "Accept": "application/json", "User-Agent": "mikotui"}
    if basic:
        pair = f"{urllib.parse.quote(basic[0])}:{urllib.parse.quote(basic[1])}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    # No proxies from the environment: a token goes straight to its server.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=HTTP_TIMEOUT) as resp:
            status, raw = resp.status, resp.read(1 << 20)
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read(1 << 20)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise OAuth2Error("token_unavailable", f"{_host(url)}: {reason}") from None
    if not raw.strip():
        return status, {}
    try:
        reply = json.loads(raw)
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        if status >= 500 or status < 400:
            raise OAuth2Error("token_unavailable", f"{_host(url)}: HTTP {status}, not JSON")
        return status, {"error": f"http_{status}"}
    return status, reply


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).hostname or url


def _client_form(ep: Endpoints) -> dict[str, str]:
    form = {"client_id": ep.client_id}
    if ep.client_secret:
        form["client_secret"] = ep.client_secret
    return form


def _tokens_from(reply: dict[str, Any], o: config.OAuth2, username: str,
                 old: Tokens | None = None) -> Tokens:
    access = reply.get("access_token")
    if not isinstance(access, str) or not access:
        raise OAuth2Error("token_unavailable", "the provider's reply has no access token")
    refresh = reply.get("refresh_token")
    if not isinstance(refresh, str) or not refresh:
        if old is None:
            raise OAuth2Error("token_refused", "the provider gave no refresh token "
                              "(is offline access allowed for this app?)")
        refresh = old.refresh_token  # not rotated: keep the one we have
    try:
        lifetime = float(reply.get("expires_in") or 3600)
    except (TypeError, ValueError):
        lifetime = 3600.0
    return Tokens(refresh_token=refresh, access_token=access,
                  expires_at=time.time() + lifetime, username=username,
                  provider=o.provider, client_id=o.client_id,
                  signed_in=old.signed_in if old else time.time())


# --- using the token --------------------------------------------------------------

def access_token(smtp: config.Smtp, path: os.PathLike[str], *, refused: str = "") -> str:
    """A valid access token for `smtp.username`, refreshed (and the rotated
    refresh token saved) when it is about to expire, or when it is `refused`
    (the server just said no to it). Blocking: call it from a thread in async
    code."""
    store = TokenStore(path)
    with store.locked():
        tokens = store.load()  # read under the lock: another process may just have refreshed
        if tokens is None:
            raise OAuth2Error("token_refused", f"not signed in (no {path.name})")
        if tokens.refused:
            raise OAuth2Error("token_refused", tokens.refused)
        if tokens.usable_for(EARLY) and tokens.access_token != refused:
            return tokens.access_token
        fresh = _refresh(smtp, store, tokens)
        return fresh.access_token


def _refresh(smtp: config.Smtp, store: TokenStore, tokens: Tokens) -> Tokens:
    ep = endpoints(smtp.oauth2)
    if not ep.token_url:
        raise OAuth2Error("config", "no token URL for this provider")
    form = {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token,
            **_client_form(ep)}
    if smtp.oauth2.provider == "microsoft":
        # Microsoft's v2.0 endpoint asks for the scope again on refresh; RFC 6749
        # 6 makes it optional (the original grant), and others refuse a wider one.
        form["scope"] = ep.scope
    status, reply = post_form(ep.token_url, form)
    if status >= 500 or reply.get("error") in ("temporarily_unavailable", "server_error"):
        raise OAuth2Error("token_unavailable", f"{_host(ep.token_url)}: HTTP {status}")
    if status != 200 or "error" in reply:
        failure = _refused("the refresh token was refused", reply)
        # Remembered, so each deliverer does not ask again with a dead token.
        store.save(Tokens(**{**asdict(tokens), "access_token": "", "refused": failure.message}))
        raise failure
    fresh = _tokens_from(reply, smtp.oauth2, tokens.username or smtp.username, tokens)
    store.save(fresh)
    return fresh


def store_refresh_token(settings: config.Settings, refresh_token: str) -> Tokens:
    """Keep a refresh token brought from elsewhere (stdin, MikoPBX); the
    access token is fetched on first use."""
    token = refresh_token.strip()
    if not token or any(c.isspace() or ord(c) < 32 for c in token) or len(token) > 8192:
        raise OAuth2Error("config", "not a refresh token (one line, no spaces)")
    tokens = Tokens(refresh_token=token, username=settings.smtp.username,
                    provider=settings.smtp.oauth2.provider,
                    client_id=settings.smtp.oauth2.client_id, signed_in=time.time())
    store = TokenStore(settings.token_path())
    with store.locked():
        store.save(tokens)
    return tokens


def signed_in(settings: config.Settings, reply: dict[str, Any]) -> Tokens:
    """Save what a finished sign-in returned."""
    tokens = _tokens_from(reply, settings.smtp.oauth2, settings.smtp.username)
    store = TokenStore(settings.token_path())
    with store.locked():
        store.save(tokens)
    return tokens


def status(settings: config.Settings) -> Tokens | None:
    return TokenStore(settings.token_path()).load()


def logout(settings: config.Settings) -> tuple[bool, str]:
    """Revoke at the provider when it has an endpoint, then delete the file.
    Returns (file deleted, what the provider said or "")."""
    store = TokenStore(settings.token_path())
    with store.locked():
        tokens = store.load() if store.path.exists() else None
        said = ""
        ep = endpoints(settings.smtp.oauth2)
        if tokens is not None and ep.revocation_url:
            try:
                # Yandex revokes by its access token (RFC 7009 elsewhere: the refresh token).
                form = ({"access_token": tokens.access_token}
                        if settings.smtp.oauth2.provider == "yandex" else
                        {"token": tokens.refresh_token, "token_type_hint": "refresh_token"})
                st, reply = post_form(ep.revocation_url, {**form, **_client_form(ep)})
                said = "revoked" if st == 200 else f"revocation refused: HTTP {st} " \
                    f"{reply.get('error', '')}".strip()
            except OAuth2Error as exc:
                said = f"revocation not done: {exc.message}"
        elif tokens is not None:
            said = "this provider has no revocation endpoint"
        return store.delete(), said


# --- device flow (RFC 8628) --------------------------------------------------------

@dataclass(frozen=True)
class DeviceAuthorization:
    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str
    expires_at: float
    interval: float


def start_device(settings: config.Settings) -> DeviceAuthorization:
    ep = _login_endpoints(settings)
    if not ep.device_authorization_url:
        raise OAuth2Error("config", "this provider has no device flow here; use --paste")
    form = {**_client_form(ep), "scope": ep.scope}
    status, reply = post_form(ep.device_authorization_url, form)
    if status != 200 or "error" in reply:
        raise _refused("the device sign-in was refused", reply)
    try:
        code, user = str(reply["device_code"]), str(reply["user_code"])
        uri = str(reply.get("verification_uri") or reply["verification_url"])
    except KeyError as exc:
        raise OAuth2Error("token_unavailable", f"the provider's reply has no {exc}") from None
    return DeviceAuthorization(
        code, user, uri, str(reply.get("verification_uri_complete") or ""),
        time.time() + float(reply.get("expires_in") or 600),
        max(1.0, float(reply.get("interval") or 5)))


def poll_device(settings: config.Settings, da: DeviceAuthorization, *,
                sleep: Callable[[float], bool] = lambda s: (time.sleep(s), True)[1]) -> Tokens:
    """Ask at the provider's interval until the admin approves, refuses or the
    code expires. `sleep(seconds)` returns False to cancel."""
    ep = _login_endpoints(settings)
    interval = da.interval
    # Yandex names the device code "code"; RFC 8628 says "device_code".
    form = {"grant_type": DEVICE_GRANT, "device_code": da.device_code, "code": da.device_code,
            **_client_form(ep)}
    while True:
        if time.time() >= da.expires_at:
            raise OAuth2Error("token_refused", "the code expired before it was entered")
        if not sleep(interval):
            raise OAuth2Error("cancelled", "sign-in cancelled")
        try:
            status, reply = post_form(ep.token_url, form)
        except OAuth2Error as exc:
            if exc.kind == "token_unavailable":
                continue  # a blip while the admin types: keep waiting
            raise
        error = reply.get("error")
        if status == 200 and not error:
            return signed_in(settings, reply)
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval += 5  # RFC 8628 3.5
            continue
        if error == "expired_token":
            raise OAuth2Error("token_refused", "the code expired before it was entered")
        if error == "access_denied":
            raise OAuth2Error("token_refused", "the sign-in was declined")
        raise _refused("the sign-in was refused", reply)


# --- authorization code + PKCE, pasted back ------------------------------------------

@dataclass(frozen=True)
class PasteAuthorization:
    url: str
    state: str
    verifier: str
    redirect_uri: str


def start_paste(settings: config.Settings, port: int | None = None) -> PasteAuthorization:
    import urllib.parse

    ep = _login_endpoints(settings)
    if not ep.authorization_url:
        raise OAuth2Error("config", "no authorization URL for this provider")
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(
        hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    state = secrets.token_urlsafe(24)
    # Nothing needs to listen there: the admin copies the address it lands on.
    redirect = f"http://127.0.0.1:{port or 8400 + secrets.randbelow(1000)}/"
    query = {"response_type": "code", "client_id": ep.client_id, "redirect_uri": redirect,
             "scope": ep.scope, "state": state, "code_challenge": challenge,
             "code_challenge_method": "S256", **dict(ep.extra_authorize)}
    if settings.smtp.username:
        query["login_hint"] = settings.smtp.username
    sep = "&" if "?" in ep.authorization_url else "?"
    url = ep.authorization_url + sep + urllib.parse.urlencode(query)
    return PasteAuthorization(url, state, verifier, redirect)


def finish_paste(settings: config.Settings, pa: PasteAuthorization, pasted: str) -> Tokens:
    """Check the pasted address against our state, then trade its code (with
    the PKCE verifier) for tokens."""
    import urllib.parse

    text = pasted.strip()
    query = urllib.parse.urlsplit(text).query if "://" in text else text.lstrip("?")
    params = dict(urllib.parse.parse_qsl(query))
    if "error" in params:
        raise _refused("the sign-in was refused", params)
    if params.get("state") != pa.state:
        raise OAuth2Error("token_refused", "the pasted address is not from this sign-in "
                          "(its state does not match); start again")
    code = params.get("code", "")
    if not code:
        raise OAuth2Error("token_refused", "the pasted address has no code")
    ep = _login_endpoints(settings)
    status, reply = post_form(ep.token_url, {
        "grant_type": "authorization_code", "code": code, "redirect_uri": pa.redirect_uri,
        "code_verifier": pa.verifier, **_client_form(ep)})
    if status != 200 or "error" in reply:
        raise _refused("the code was refused", reply)
    return signed_in(settings, reply)


def qr_lines(text: str, columns: int | None = None, rows: int | None = None) -> list[str]:
    """`text` as a QR code in half-block characters (two modules a line), or
    [] when it does not fit the terminal (`columns` x `rows`)."""
    import shutil

    try:
        import segno
    except ImportError:
        return []
    size = shutil.get_terminal_size((80, 24))
    columns, rows = columns or size.columns, rows or size.lines
    qr = segno.make(text, error="l", micro=False)
    border = 2
    matrix = [[0] * (len(qr.matrix[0]) + 2 * border) for _ in range(border)]
    matrix += [[0] * border + [int(bool(v)) for v in row] + [0] * border for row in qr.matrix]
    matrix += [[0] * len(matrix[0]) for _ in range(border + 1)]
    if len(matrix[0]) > columns or len(matrix) // 2 + 6 > rows:
        return []
    # Dark modules as the terminal's background, light as a full block: reads
    # on a dark terminal, which an SSH console nearly always is.
    chars = {(0, 0): "█", (0, 1): "▀", (1, 0): "▄", (1, 1): " "}
    return ["".join(chars[(top, bottom)] for top, bottom in zip(matrix[y], matrix[y + 1]))
            for y in range(0, len(matrix) - 1, 2)]


def _login_endpoints(settings: config.Settings) -> Endpoints:
    ep = endpoints(settings.smtp.oauth2)
    if not ep.client_id:
        raise OAuth2Error("config", "smtp.oauth2.client_id is empty: register the app "
                          "with the provider first (see README, OAuth2)")
    if not ep.token_url:
        raise OAuth2Error("config", "smtp.oauth2.token_url is empty")
    return ep
