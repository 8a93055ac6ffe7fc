"""A lean HTTP/1.1 client for plain-`http://` upstreams (a local inference server, the
simulator): the relay's hot path without httpx2's layers.

Profiled under the benchmark, httpx2 and httpcore2 took about 40% of the proxy's CPU (request
and header models, anyio's cancel scopes and checkpoints, h11's state machine, one read and
one relayed write per SSE event). Here a connection is an `asyncio.Protocol`: the answer's
head is parsed once, the body's chunked framing undone in place, and whatever arrived in one
read is handed over as one piece, so SSE events that came together are relayed with one
write. The body bytes are the upstream's, unchanged (only the framing is removed, as httpx2's
`aiter_raw` does).

Connections are kept alive per host and reused; one found closed by the server while it sat
idle is replaced, and a request whose reused connection closes before any byte of an answer
is sent once more on a new one (the server's keep-alive timeout racing the request). A client
that goes away closes the connection (the upstream sees the hang-up). `https://` upstreams and
upstreams an environment proxy applies to stay with httpx2 (`ProxyApp` chooses): TLS and
proxies are its job.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import cast
from urllib.parse import quote, urlsplit

_MAX_HEAD = 64 * 1024
"""A response head larger than this is refused (as h11 does)."""
_HIGH_WATER = 512 * 1024
"""Body bytes held for a slow client before reading from the upstream pauses."""
_IDLE_PER_HOST = 512
"""Idle connections kept per upstream host (as many as clients hold streams)."""
_SAFE_PATH = "/!$&'()*+,;=:@-._~"
"""Characters left as they are in a request path (the client's path arrives decoded)."""


class UpstreamError(Exception):
    """The upstream could not be reached, or broke off (or broke HTTP) before the answer
    ended."""


class UpstreamTimeout(UpstreamError):
    """The upstream did not connect, or did not send, within the timeout."""


class _Stale(UpstreamError):
    """A reused connection closed before any byte of the answer: the request may be sent
    again."""


@dataclass(frozen=True)
class _Target:
    host: str
    port: int
    host_header: bytes
    path: str


@functools.lru_cache(maxsize=256)
def plain_target(url: str) -> _Target | None:
    """Where an `http://` URL that no environment proxy applies to goes; None for any other
    URL (httpx2 takes it). Cached: the proxy's requests go to a few URLs, and the proxy
    variables are read when it starts, as httpx2 reads them when its client is made."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return None
    host = parts.hostname
    proxies = urllib.request.getproxies()
    if ("http" in proxies or "all" in proxies) and not urllib.request.proxy_bypass(host):
        return None
    port = parts.port or 80
    shown = f"[{host}]" if ":" in host else host
    host_header = (shown if port == 80 else f"{shown}:{port}").encode("ascii")
    path = quote(parts.path or "/", safe=_SAFE_PATH)
    if parts.query:
        path = f"{path}?{parts.query}"
    return _Target(host, port, host_header, path)


class _Connection(asyncio.Protocol):
    """One kept-alive connection: writes a request, parses the answer as it arrives."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self._buffer = bytearray()
        self._head: asyncio.Future[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._pieces: collections.deque[bytes] = collections.deque()
        self._held = 0
        self._paused = False
        self._error: UpstreamError | None = None
        self._no_body = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.done = False
        self.keep_alive = False
        self._remaining: int | None = None
        """Body bytes still due: of a Content-Length body, or of the current chunk."""
        self._chunked = False
        self._in_head = True
        self._chunk_state = 0  # 0: a size line is due, 1: chunk data, 2: its CRLF, 3: trailers
        self._received = False

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio's, but have the same methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._received = True
        if self.done or self._head is None:
            # Bytes after a complete answer, or on an idle connection (a server's 408 before
            # it closes one): not an answer to anything; the connection is not reused.
            self.keep_alive = False
            if self._head is None:
                self.close()
            return
        try:
            if self._in_head:
                self._buffer += data
                if not self._parse_head():
                    return
                data = bytes(self._buffer)
                self._buffer.clear()
            self._body(data)
        except UpstreamError as exc:
            self._fail(exc)
            self.close()
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.done:
            if not self._in_head and self._remaining is None and not self._chunked:
                self._finish()  # a body framed by the connection's end: complete
            elif not self._received and self.reused:
                self._fail(_Stale("the kept-alive connection was closed"))
            else:
                why = f": {exc}" if exc else ""
                where = "the answer's head" if self._in_head else "the answer's body"
                self._fail(UpstreamError(f"the upstream closed the connection during {where}{why}"))
        self._wake()

    def pause_writing(self) -> None:  # a request body larger than the socket's buffer
        pass

    def resume_writing(self) -> None:
        pass

    # -- the request ----------------------------------------------------------------------------

    def send(
        self, method: str, target: _Target, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        """Write the request (the answer's head is awaited with `head`)."""
        assert self.transport is not None
        self._head = self.loop.create_future()
        self._no_body = method == "HEAD"
        lines = [
            f"{method} {target.path} HTTP/1.1\r\n".encode("latin-1"),
            b"host: ",
            target.host_header,
            b"\r\n",
        ]
        for name, value in headers:
            lines += (name, b": ", value, b"\r\n")
        if body or method in ("POST", "PUT", "PATCH"):
            lines += (b"content-length: ", str(len(body)).encode("ascii"), b"\r\n")
        lines.append(b"\r\n")
        lines.append(body)
        self.transport.write(b"".join(lines))

    async def head(self, timeout_s: float) -> None:
        """Wait for the status line and headers."""
        assert self._head is not None
        if not self._in_head or self._error is not None:
            self._raise_if_failed()
            return
        timer = self.loop.call_later(timeout_s, self._time_out, "waiting for the answer")
        try:
            await self._head
        finally:
            timer.cancel()
        self._raise_if_failed()

    async def pieces(self, timeout_s: float) -> AsyncIterator[bytes]:
        """The body, a piece per read from the socket (its framing removed)."""
        while True:
            while self._pieces:
                piece = self._pieces.popleft()
                self._held -= len(piece)
                if self._paused and self._held < _HIGH_WATER // 2 and self.transport is not None:
                    self._paused = False
                    self.transport.resume_reading()
                yield piece
            self._raise_if_failed()
            if self.done:
                return
            self._waiter = self.loop.create_future()
            timer = self.loop.call_later(timeout_s, self._time_out, "mid-body")
            try:
                await self._waiter
            finally:
                timer.cancel()
                self._waiter = None

    def close(self) -> None:
        """Close the connection (an answer not read to its end cannot be reused)."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def reset(self) -> None:
        """Ready for the next request on this connection."""
        self.reused = True
        self._received = False
        self._head = None
        self._pieces.clear()  # what a caller that left early did not read
        self._held = 0
        self._buffer.clear()
        self.done = False
        self._in_head = True
        self._chunked = False
        self._chunk_state = 0
        self._remaining = None
        self.headers = []
        self.status = 0

    # -- parsing ----------------------------------------------------------------------------------

    def _parse_head(self) -> bool:
        """Parse a complete head from the buffer (skipping 1xx answers); False if incomplete."""
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > _MAX_HEAD:
                    raise UpstreamError("the upstream's answer head is too large")
                return False
            lines = bytes(self._buffer[:end]).split(b"\r\n")
            del self._buffer[: end + 4]
            version, _, rest = lines[0].partition(b" ")
            code = rest[:3]
            if not version.startswith(b"HTTP/1.") or not code.isdigit():
                raise UpstreamError(f"the upstream's answer is not HTTP/1.x: {lines[0][:80]!r}")
            status = int(code)
            if 100 <= status < 200 and status != 101:
                continue  # an interim answer (100 Continue): the real one follows
            headers: list[tuple[bytes, bytes]] = []
            for line in lines[1:]:
                name, colon, value = line.partition(b":")
                if not colon or not name or name != name.strip():
                    raise UpstreamError(
                        f"malformed header line in the upstream's answer: {line[:80]!r}"
                    )
                headers.append((name.lower(), value.strip()))
            self._framing(version, status, headers)
            return True

    def _framing(self, version: bytes, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        self.headers = headers
        self._in_head = False
        connection = b",".join(v for k, v in headers if k == b"connection").lower()
        self.keep_alive = b"close" not in connection and (
            version == b"HTTP/1.1" or b"keep-alive" in connection
        )
        encodings = b",".join(v for k, v in headers if k == b"transfer-encoding").lower()
        lengths = {v for k, v in headers if k == b"content-length"}
        if self._no_body or status in (204, 304):
            self._remaining = 0
        elif encodings:
            if encodings.replace(b" ", b"").split(b",")[-1] != b"chunked":
                self.keep_alive = False  # framed by the connection's end
            else:
                self._chunked = True
        elif lengths:
            if len(lengths) > 1 or not next(iter(lengths)).isdigit():
                raise UpstreamError("the upstream's answer has an invalid Content-Length")
            self._remaining = int(next(iter(lengths)))
        else:
            self.keep_alive = False
        if self._head is not None and not self._head.done():
            self._head.set_result(None)
        if self._remaining == 0 and not self._chunked:
            self._finish()

    def _body(self, data: bytes) -> None:
        if self._chunked:
            self._chunks(data)
        elif self._remaining is None:
            self._give(data)
        elif data:
            taken = data[: self._remaining]
            self._remaining -= len(taken)
            self._give(taken)
            if len(data) > len(taken):
                self.keep_alive = False  # more than the answer: the server is confused
            if self._remaining == 0:
                self._finish()

    def _chunks(self, data: bytes) -> None:
        """Undo the chunked framing of what arrived; the data of all the chunks in it is
        handed over as one piece."""
        buffer = self._buffer
        buffer += data
        out: list[bytes] = []
        at = 0
        size = len(buffer)
        while at < size and not self.done:
            state = self._chunk_state
            if state == 1:
                assert self._remaining is not None
                taken = bytes(buffer[at : at + self._remaining])
                out.append(taken)
                at += len(taken)
                self._remaining -= len(taken)
                if self._remaining == 0:
                    self._chunk_state = 2
                continue
            end = buffer.find(b"\r\n", at)
            if end < 0:
                if size - at > _MAX_HEAD:
                    raise UpstreamError("a chunk line of the upstream's answer is too long")
                break
            line = bytes(buffer[at:end])
            at = end + 2
            if state == 2:
                if line:
                    raise UpstreamError("a chunk of the upstream's answer does not end with CRLF")
                self._chunk_state = 0
            elif state == 0:
                try:
                    length = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise UpstreamError(
                        f"bad chunk size in the upstream's answer: {line[:40]!r}"
                    ) from None
                if length < 0:
                    raise UpstreamError("bad chunk size in the upstream's answer")
                self._remaining = length
                self._chunk_state = 1 if length else 3
            elif not line:  # state 3: the trailers end with a blank line
                self._finish()
        del buffer[:at]
        if self.done and buffer:
            self.keep_alive = False
            buffer.clear()
        if out:
            self._give(b"".join(out))

    def _give(self, piece: bytes) -> None:
        if not piece:
            return
        self._pieces.append(piece)
        self._held += len(piece)
        if self._held > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def _finish(self) -> None:
        self.done = True
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def _fail(self, error: UpstreamError) -> None:
        if self._error is None:
            self._error = error
        if self._head is not None and not self._head.done():
            self._head.set_result(None)

    def _time_out(self, where: str) -> None:
        self._fail(UpstreamTimeout(f"the upstream timed out {where}"))
        self.close()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error


class PlainAnswer:
    """An answer's head, and its body to read once (`pieces`); `aclose` after."""

    def __init__(self, pool: PlainPool, key: tuple[str, int], connection: _Connection) -> None:
        self.pool = pool
        self.key = key
        self.connection = connection
        self.status_code = connection.status
        self.headers = connection.headers

    def pieces(self) -> AsyncIterator[bytes]:
        """The body bytes, a piece per read (raises `UpstreamError` if it breaks off)."""
        return self.connection.pieces(self.pool.timeout_s)

    async def aclose(self) -> None:
        """Give the connection back (its answer was read to the end), else close it."""
        self.pool.release(self.key, self.connection)


class PlainPool:
    """Kept-alive connections to plain-HTTP upstreams, by host and port."""

    def __init__(self, timeout_s: float, connect_timeout_s: float) -> None:
        """Time out a connection attempt after `connect_timeout_s`, a wait for bytes of the
        answer after `timeout_s`."""
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._idle: dict[tuple[str, int], list[_Connection]] = {}

    async def send(
        self,
        method: str,
        target: _Target,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        *,
        sent: Callable[[], object] | None = None,
    ) -> PlainAnswer:
        """Send the request; the answer once its head came. `sent` is called once, when the
        request has first been written (the caller's work done while the upstream works)."""
        key = (target.host, target.port)
        for _attempt in range(2):
            connection = self._idle_connection(key) or await self._connect(target)
            try:
                connection.send(method, target, headers, body)
                if sent is not None:
                    sent()
                    sent = None
                await connection.head(self.timeout_s)
            except _Stale:
                connection.close()
                continue
            except BaseException:
                connection.close()  # cancelled (the client left), or failed: nothing to reuse
                raise
            return PlainAnswer(self, key, connection)
        raise UpstreamError("the upstream closed two kept-alive connections before answering")

    def release(self, key: tuple[str, int], connection: _Connection) -> None:
        """Keep a connection whose answer was read to the end; close any other."""
        idle = self._idle.setdefault(key, [])
        if (
            connection.done
            and connection.keep_alive
            and not connection.closed
            and len(idle) < _IDLE_PER_HOST
        ):
            connection.reset()
            idle.append(connection)
        else:
            connection.close()

    async def aclose(self) -> None:
        """Close every idle connection."""
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()

    def _idle_connection(self, key: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            if not connection.closed:
                return connection
        return None

    async def _connect(self, target: _Target) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, protocol = await loop.create_connection(
                    lambda: _Connection(loop), target.host, target.port
                )
        except TimeoutError:
            raise UpstreamTimeout(
                f"the upstream timed out connecting to {target.host}:{target.port}"
            ) from None
        except OSError as exc:
            raise UpstreamError(
                f"cannot connect to {target.host}:{target.port}: {exc.strerror or exc}"
            ) from None
        return protocol
