"""How a relayed request reaches its upstream: `plain_http` for a plain-`http://` upstream no
environment proxy applies to (a local server, the simulator), httpx2 for the others (TLS,
proxies). Either way the relay gets an `Answer`: status, headers (names in lower case, as
received), and the body's bytes as they arrive, unchanged but for the framing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Protocol

import httpx2

from traces.proxy.plain_http import PlainPool, UpstreamError, plain_target

TRANSPORT_ERRORS: tuple[type[Exception], ...] = (httpx2.TransportError, UpstreamError)
"""What an upstream that cannot be reached or breaks off raises, through either client (a
timeout's class name says `Timeout`: `Capture.lost` reads it so)."""


class Answer(Protocol):
    """An upstream's answer as the relay reads it."""

    status_code: int
    headers: list[tuple[bytes, bytes]]

    def pieces(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive (framing removed)."""
        ...

    async def aclose(self) -> None:
        """Release the connection (closed unless the body was read to its end)."""
        ...


class _HttpxAnswer:
    def __init__(self, response: httpx2.Response) -> None:
        self.response = response
        self.status_code = response.status_code
        self.headers = response.headers.raw

    def pieces(self) -> AsyncIterator[bytes]:
        return self.response.aiter_raw()

    async def aclose(self) -> None:
        await self.response.aclose()


class Sender:
    """The proxy's connections to its upstreams, kept alive across requests."""

    def __init__(self, timeout_s: float) -> None:
        """Time out a wait for the upstream after `timeout_s` (a connection attempt after
        at most 30 s)."""
        connect_s = min(timeout_s, 30.0)
        self.client = httpx2.AsyncClient(
            timeout=httpx2.Timeout(timeout_s, connect=connect_s),
            # As many connections as clients hold streams: a limit would queue a stream behind
            # another and add its whole length to the waiting one's time to first byte.
            limits=httpx2.Limits(max_connections=None, max_keepalive_connections=512),
            follow_redirects=False,
        )
        self.plain = PlainPool(timeout_s, connect_s)

    async def send(
        self,
        method: str,
        url: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        *,
        sent: Callable[[], object] | None = None,
    ) -> Answer:
        """Send one request; its answer once the head came. `sent` is called once the
        request is on its way (with httpx2: just before), to work while the upstream does.
        Raises one of `TRANSPORT_ERRORS` when the upstream cannot be reached."""
        target = plain_target(url)
        if target is not None:
            return await self.plain.send(method, target, headers, body, sent=sent)
        request = self.client.build_request(method, url, headers=headers, content=body)
        if sent is not None:
            sent()
        return _HttpxAnswer(await self.client.send(request, stream=True))

    async def aclose(self) -> None:
        """Close every connection."""
        await self.plain.aclose()
        await self.client.aclose()
