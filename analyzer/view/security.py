"""What every answer of the viewer carries, and who may ask.

- Headers: a content security policy allowing only the viewer's own static script, style
  and JSON (no inline script, nothing from another origin), no framing, no referrer, no
  content sniffing, no caching of pages (they change while a store is recorded).
- Host: on loopback, only requests naming a loopback host are answered, so a web page the
  user visits cannot reach the viewer by DNS rebinding.
- Token: off loopback (`--host`), every request must carry the token printed at start, as
  `?token=` (the viewer then keeps it in a cookie for the session) or that cookie, compared
  in constant time.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
COOKIE = "traces_view_token"
TOKEN_PARAM = "token"

_POLICY_HEADER = b"content-security-policy"
_HEADERS = [
    (_POLICY_HEADER, CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or `localhost`) names this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    """The host of a Host header, without its port (`[::1]:8767` -> `::1`)."""
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Guard:
    """ASGI middleware: the headers above on every answer, the host and token checks on
    every request."""

    def __init__(self, app: ASGIApp, *, token: str | None) -> None:
        """Guard `app`; `token` None means served on loopback (hosts are checked instead)."""
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse or pass the request on, adding the headers to whatever answers it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                # A page with a policy of its own (the report's: no script at all, inline
                # styles) keeps it; two policies would both apply.
                own = any(name.lower() == _POLICY_HEADER for name, _ in headers)
                message["headers"] = headers + [
                    h for h in _HEADERS if not (own and h[0] == _POLICY_HEADER)
                ]
            await send(message)

        if self.token is None:
            if not is_loopback(_host_name(headers.get("host", ""))):
                await _refuse(with_headers, 403, "traces view answers loopback hosts only")
                return
            await self.app(scope, receive, with_headers)
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        given = query.get(TOKEN_PARAM)
        if given is not None and self._matches(given):
            # Once in the cookie, the token leaves the address bar (and the history).
            rest = urlencode([(k, v) for k, v in query.items() if k != TOKEN_PARAM])
            # One leading slash: `//host/…` would send the browser to another site.
            where = "/" + scope["path"].lstrip("/") + (f"?{rest}" if rest else "")
            cookie = f"{COOKIE}={given}; Path=/; HttpOnly; SameSite=Strict"
            await with_headers(
                {
                    "type": "http.response.start",
                    "status": 303,
                    "headers": [
                        (b"location", where.encode("latin-1")),
                        (b"set-cookie", cookie.encode("latin-1")),
                        (b"content-length", b"0"),
                    ],
                }
            )
            await with_headers({"type": "http.response.body", "body": b""})
            return
        jar: SimpleCookie = SimpleCookie()
        jar.load(headers.get("cookie", ""))
        held = jar.get(COOKIE)
        if held is None or not self._matches(held.value):
            await _refuse(
                with_headers, 401, "traces view needs the token printed at start (?token=…)"
            )
            return
        await self.app(scope, receive, with_headers)

    def _matches(self, given: str) -> bool:
        assert self.token is not None
        return hmac.compare_digest(given.encode(), self.token.encode())


async def _refuse(send: Send, status: int, line: str) -> None:
    body = (line + "\n").encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
