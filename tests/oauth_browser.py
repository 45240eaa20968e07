"""A person at a browser, for the tests: opens a page of the authorization
server, fills in its forms (a login name where one is asked) and submits
them, following redirects with cookies kept, the way a browser without
JavaScript would. Only ever talks to 127.0.0.1."""

from __future__ import annotations

import http.cookiejar
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)  # names a person types into
    buttons: list[tuple[str, str]] = field(default_factory=list)  # submit (name, value)


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(a.get("action", ""), a.get("method", "get").lower()))
        elif tag == "input" and self.forms:
            form = self.forms[-1]
            kind = a.get("type", "text").lower()
            name = a.get("name", "")
            if kind == "submit":
                form.buttons.append((name, a.get("value", "")))
            elif name:
                form.fields[name] = a.get("value", "")
                if kind != "hidden":
                    form.inputs.append(name)
        elif tag == "button" and self.forms and a.get("type", "submit") == "submit":
            self.forms[-1].buttons.append((a.get("name", ""), a.get("value", "")))

    def handle_data(self, data: str) -> None:
        if data.strip() and self.lasttag not in ("style", "script"):
            self.text.append(data.strip())


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are followed by hand, so a loopback redirect_uri that
    nothing listens on is seen (and kept) instead of fetched."""

    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


class Browser:
    def __init__(self, login: str, user_code: str = "", *, decline: bool = False) -> None:
        self.login = login
        self.user_code = user_code  # typed where the device flow asks for it
        self.decline = decline  # press the page's "abort" button where it has one
        self.declined = False
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect(),
            urllib.request.ProxyHandler({}))
        self.landed = ""  # the redirect out of the server (e.g. to the loopback address)
        self.pages: list[str] = []  # each page's visible text

    def open(self, url: str, data: dict[str, str] | None = None, *,
             stop_at: str = "", steps: int = 20) -> str:
        """Fetch `url` and keep submitting the page's form until a page has
        none, or a redirect goes to `stop_at` (returned, not fetched)."""
        method_data = urllib.parse.urlencode(data).encode() if data is not None else None
        for _ in range(steps):
            req = urllib.request.Request(url, data=method_data)
            try:
                resp = self.opener.open(req, timeout=10)
                status, body, location = resp.status, resp.read(), ""
            except urllib.error.HTTPError as exc:
                status, body = exc.code, exc.read()
                location = exc.headers.get("Location", "")
            if status in (301, 302, 303, 307, 308) and location:
                target = urllib.parse.urljoin(url, location)
                if stop_at and target.startswith(stop_at):
                    self.landed = target
                    return target
                url, method_data = target, None
                continue
            parser = _Forms()
            parser.feed(body.decode("utf-8", "replace"))
            self.pages.append(" ".join(parser.text))
            if status >= 400 or not parser.forms:
                return self.pages[-1]
            form = parser.forms[0]
            values = dict(form.fields)
            for name in form.inputs:
                if name in ("login", "username", "email"):
                    values[name] = self.login
                elif name == "password":
                    values[name] = "any"
                elif name == "user_code":
                    values[name] = self.user_code
            aborts = [b for b in form.buttons if b[0] == "abort"]
            if self.declined:  # the page after "abort": the answer, not a new start
                return self.pages[-1]
            if self.decline and aborts:
                values["abort"] = aborts[0][1]
                self.declined = True
            elif form.buttons:  # the first button is the one that goes on (not "abort")
                name, value = form.buttons[0]
                if name:
                    values[name] = value
            action = urllib.parse.urljoin(url, form.action or url)
            encoded = urllib.parse.urlencode(values)
            if form.method == "post":
                url, method_data = action, encoded.encode()
            else:
                url, method_data = f"{action}?{encoded}", None
        raise RuntimeError(f"the pages did not end after {steps} steps: {self.pages[-3:]}")
