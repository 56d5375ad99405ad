"""The web server's guards, as plain ASGI middleware around the app (no framework needed here).

From the outside in:
- `SecurityHeaders`: every response, errors included, carries `SECURITY_HEADERS`
  (a Content-Security-Policy with `frame-ancestors 'none'`, `nosniff`, no referrer);
- `HostAllowList`: requests whose `Host` header names another host get a 400, so a web page
  that rebinds its own DNS name to 127.0.0.1 cannot read the server;
- `AccessToken`: with a token set, every request needs it (an `Authorization: Bearer` header,
  or the cookie that opening `/?token=...` once sets); it is compared in constant time and never
  echoed or logged;
- `BodyLimit`: a request body larger than the cap gets a 413 as soon as the cap is passed,
  whether `Content-Length` announced it or it came chunked; nothing beyond the cap is read.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' blob: data:; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-resource-policy": "same-origin",
}
"""Headers set on every response."""

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
"""Host names always allowed: this machine's."""

TOKEN_ENV = "UTILITIES_WEB_TOKEN"
"""Environment variable holding the access token of the page and the API (none: no token needed)."""

TOKEN_CHARACTERS = re.compile(r"[A-Za-z0-9._~-]+")
"""What an access token may hold: characters that need no escaping in a URL or a cookie."""

TOKEN_COOKIE = "image_search_token"
"""The cookie that carries the token for the page, once `/?token=...` has been opened."""


def is_loopback(host: str) -> bool:
    """Whether binding to `host` keeps the server on this machine.

    Example:
        >>> [is_loopback(h) for h in ("127.0.0.1", "localhost", "0.0.0.0", "192.168.1.5")]
        [True, True, False, False]
    """
    if host.strip("[]") in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(bind_host: str, extra: Iterable[str] = ()) -> list[str]:
    """The `Host` names to accept: the loopback names, the bound address (unless a wildcard), and `extra`.

    Example:
        >>> allowed_hosts("0.0.0.0", ["photos.example.org"])
        ['localhost', '127.0.0.1', '::1', 'photos.example.org']
    """
    hosts = list(LOOPBACK_HOSTS)
    for host in [bind_host, *extra]:
        name = host.strip().strip("[]").lower()
        if name and name not in ("0.0.0.0", "::") and name not in hosts:
            hosts.append(name)
    return hosts


def read_token(token_file: str | os.PathLike | None = None) -> str | None:
    """The access token: the first line of `token_file` if given, else `$UTILITIES_WEB_TOKEN`, else None.

    Raises:
        ValueError: The file is missing or empty, or the token is shorter than 16 characters.
    """
    token = None
    if token_file:
        path = Path(token_file)
        if not path.is_file():
            raise ValueError(f"token file {path} does not exist: write a token of 16+ characters into it")
        lines = path.read_text(encoding="utf-8").strip().splitlines()
        token = lines[0].strip() if lines else ""
        if not token:
            raise ValueError(f"token file {path} is empty: write a token of 16+ characters into it")
    else:
        token = os.environ.get(TOKEN_ENV, "").strip() or None
    if token is not None and len(token) < 16:
        raise ValueError("the access token is shorter than 16 characters: use a longer, random one")
    if token is not None and not TOKEN_CHARACTERS.fullmatch(token):
        raise ValueError(
            "the access token may hold only letters, digits and - . _ ~ (it travels in a URL and a cookie): "
            "for example the output of `openssl rand -hex 16`"
        )
    return token


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


async def _answer(send: Send, status: int, detail: str, extra: Iterable[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class SecurityHeaders:
    """Adds `SECURITY_HEADERS` to every HTTP response (replacing any the app set)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.decode().lower() not in SECURITY_HEADERS]
                message["headers"] = kept + [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
            await send(message)

        await self.app(scope, receive, with_headers)


class HostAllowList:
    """Answers 400 to requests whose `Host` header (its port left out) is not one of `hosts`."""

    def __init__(self, app: ASGIApp, hosts: Iterable[str]) -> None:
        self.app = app
        self.hosts = {host.lower() for host in hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = _header(scope, b"host").lower()
            name = host[1 : host.index("]")] if host.startswith("[") and "]" in host else host.rsplit(":", 1)[0]
            if name not in self.hosts:
                await _answer(
                    send, 400, "this server answers only to its own host names (serve --allowed-hosts adds one)"
                )
                return
        await self.app(scope, receive, send)


class AccessToken:
    """With a token, answers 401 to requests without it; `/?token=TOKEN` sets the page's cookie."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    def _given(self, scope: Scope) -> str:
        bearer = _header(scope, b"authorization")
        if bearer.lower().startswith("bearer "):
            return bearer[7:].strip()
        cookies = SimpleCookie()
        try:
            cookies.load(_header(scope, b"cookie"))
        except Exception:  # noqa: BLE001 - a malformed cookie header is just no token
            return ""
        morsel = cookies.get(TOKEN_COOKIE)
        return morsel.value if morsel else ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.token is None:
            await self.app(scope, receive, send)
            return
        expected = self.token.encode()
        if scope["path"] == "/" and scope.get("query_string"):
            offered = parse_qs(scope["query_string"].decode("latin-1")).get("token", [""])[0]
            if hmac.compare_digest(offered.encode(), expected):
                cookie = f"{TOKEN_COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict".encode()
                headers = [(b"location", b"/"), (b"set-cookie", cookie), (b"content-length", b"0")]
                await send({"type": "http.response.start", "status": 303, "headers": headers})
                await send({"type": "http.response.body", "body": b""})
                return
        if not hmac.compare_digest(self._given(scope).encode(), expected):
            await _answer(send, 401, "an access token is needed: open the address with ?token=... once")
            return
        await self.app(scope, receive, send)


class RequestTooLarge(Exception):
    """A request body passed the cap."""


class BodyLimit:
    """Answers 413 to a request whose body is, or becomes while read, larger than `max_bytes`."""

    def __init__(self, app: ASGIApp, max_bytes: int, detail: str) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.detail = detail

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _answer(send, 413, self.detail)
            return
        seen = 0
        exceeded = answered = False

        async def counted() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    exceeded = True
                    raise RequestTooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal answered
            if exceeded:  # the app answered the error it made of RequestTooLarge: answer 413 instead
                if not answered:
                    answered = True
                    await _answer(send, 413, self.detail)
                return
            answered = answered or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except RequestTooLarge:
            if not answered:
                await _answer(send, 413, self.detail)
