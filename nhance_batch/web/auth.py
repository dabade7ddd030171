"""Token authentication for every route: ``Authorization: Bearer T`` or the session cookie.

Opening ``/?token=T`` (the URL ``serve`` prints) sets the cookie (HttpOnly, SameSite=Strict)
and redirects to ``/`` so the token leaves the address bar. Tokens are compared in constant
time. A request without a valid token gets 401 whatever it asks for, static files and media
included; nothing is looked up before the check.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import parse_qs, urlencode

COOKIE = "nhance_token"


def new_token() -> str:
    return secrets.token_urlsafe(24)


def token_matches(given: str | None, token: str) -> bool:
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))


def _cookies(header: str) -> dict[str, str]:
    out = {}
    for part in header.split(";"):
        name, eq, value = part.strip().partition("=")
        if eq:
            out.setdefault(name, value)
    return out


def request_token(headers: dict[bytes, bytes]) -> tuple[str | None, str | None]:
    """(bearer token, cookie token) of a request's headers."""
    bearer = None
    auth = headers.get(b"authorization", b"").decode("latin-1")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer":
        bearer = value.strip()
    cookie = _cookies(headers.get(b"cookie", b"").decode("latin-1")).get(COOKIE)
    return bearer, cookie


class TokenAuth:
    """ASGI middleware: 401 unless the request carries the token."""

    def __init__(self, app, token: str, *, secure_cookie: bool = False) -> None:
        self.app = app
        self.token = token
        self.secure_cookie = secure_cookie

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        bearer, cookie = request_token(headers)
        if token_matches(bearer, self.token) or token_matches(cookie, self.token):
            return await self.app(scope, receive, send)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        offered = (query.get("token") or [None])[0]
        if scope["type"] == "http" and scope.get("path") == "/" and token_matches(offered,
                                                                                  self.token):
            rest = {k: v for k, v in query.items() if k != "token"}
            location = "/" + (f"?{urlencode(rest, doseq=True)}" if rest else "")
            cookie_value = (f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                            + ("; Secure" if self.secure_cookie else ""))
            await send({"type": "http.response.start", "status": 303,
                        "headers": [(b"location", location.encode("latin-1")),
                                    (b"set-cookie", cookie_value.encode("latin-1")),
                                    (b"cache-control", b"no-store"),
                                    (b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        await _unauthorized(scope, send)


async def _unauthorized(scope, send) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 4401})
        return
    accept = dict(scope.get("headers") or []).get(b"accept", b"").decode("latin-1")
    if "text/html" in accept:
        body = (b"<!doctype html><meta charset=utf-8><title>nhance-batch: sign in</title>"
                b"<body style='font-family:sans-serif;margin:3em'><h1>401: token needed</h1>"
                b"<p>Open the address that <code>nhance-batch serve</code> printed "
                b"(<code>/?token=...</code>).</p></body>")
        kind = b"text/html; charset=utf-8"
    else:
        body = b'{"detail":"missing or wrong token"}'
        kind = b"application/json"
    await send({"type": "http.response.start", "status": 401,
                "headers": [(b"content-type", kind), (b"www-authenticate", b"Bearer"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
