"""The proxy's plain-HTTP upstream client (`traces.proxy.plain_http`) against a real socket
server over loopback that answers with bytes written here: framings (chunked split anywhere,
trailers, Content-Length, the connection's end), interim answers, kept-alive connections and
their reuse, a server that closes an idle one, breaks, timeouts, and a caller that leaves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress

import pytest

from traces.proxy.plain_http import (
    PlainAnswer,
    PlainPool,
    UpstreamError,
    UpstreamTimeout,
    plain_target,
)


class _Server:
    """Counts connections and requests; each request is answered by `answer(number)`, a list
    of byte pieces written with a flush (and a short pause) between them (`<close>` closes
    the connection, `<hold>` sends nothing more; None: closed without an answer)."""

    def __init__(self, answer: Callable[[int], list[bytes] | None]) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.answers_sent = 0
        """Answers written whole (every piece drained)."""
        self.closed_by_client = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                pieces = self.answer(len(self.requests))
                if pieces is None:  # close without answering
                    break
                for piece in pieces:
                    if piece == b"<close>":
                        writer.close()
                        return
                    if piece == b"<hold>":
                        await asyncio.sleep(30)
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0.005)
                self.answers_sent += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed_by_client.set()
        writer.close()


@asynccontextmanager
async def _serving(
    answer: Callable[[int], list[bytes] | None],
) -> AsyncIterator[tuple[_Server, str]]:
    server = _Server(answer)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield server, f"http://127.0.0.1:{port}/v1/chat/completions"
    finally:
        listener.close()


async def _until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait (on the loop the test server shares) until `condition` holds."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.005)


async def _read(answer: PlainAnswer) -> bytes:
    try:
        return b"".join([piece async for piece in answer.pieces()])
    finally:
        await answer.aclose()


def _send(pool: PlainPool, url: str, body: bytes = b"{}") -> asyncio.Future[PlainAnswer]:
    target = plain_target(url)
    assert target is not None
    return asyncio.ensure_future(
        pool.send("POST", target, [(b"content-type", b"application/json")], body)
    )


CHUNKED_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
)


def test_chunked_split_anywhere_with_trailers_and_kept_alive() -> None:
    """Chunk sizes, data and CRLFs split across reads (and an extension, and trailers): the
    body is the chunks' data; the next request reuses the connection."""
    events = [b'data: {"a":1}\n\n', b'data: {"b":2}\n\n', b"data: [DONE]\n\n"]
    framed = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(e), e) for e in events)
    wire = CHUNKED_HEAD + framed + b"0\r\nX-Trailer: yes\r\n\r\n"

    async def main() -> None:
        # A different split for each request: every 7 bytes, then the whole at once.
        splits = {1: [wire[i : i + 7] for i in range(0, len(wire), 7)], 2: [wire]}
        async with _serving(lambda n: splits[n]) as (server, url):
            pool = PlainPool(5, 5)
            first = await _send(pool, url)
            assert first.status_code == 200
            assert (b"content-type", b"text/event-stream") in first.headers
            assert await _read(first) == b"".join(events)
            second = await _send(pool, url)
            assert await _read(second) == b"".join(events)
            assert server.connections == 1
            assert server.requests[0].startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
            assert b"\r\nhost: 127.0.0.1:" in server.requests[0]
            assert server.requests[0].endswith(b"content-length: 2\r\n\r\n{}")
            await pool.aclose()

    asyncio.run(main())


def test_interim_answer_content_length_and_connection_end() -> None:
    """A 100 Continue before the answer is skipped; a Content-Length body is read to its
    length; a body without framing ends with the connection (which is not reused)."""
    answers = {
        1: [
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nhel",
            b"lo",
        ],
        2: [b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil ", b"the end", b"<close>"],
        3: [b"HTTP/1.1 204 No Content\r\n\r\n"],
    }

    async def main() -> None:
        async with _serving(lambda n: answers[n if n < 3 else 3]) as (server, url):
            pool = PlainPool(5, 5)
            first = await _send(pool, url)
            assert first.status_code == 201 and await _read(first) == b"hello"
            second = await _send(pool, url)
            assert second.status_code == 200 and await _read(second) == b"until the end"
            third = await _send(pool, url)
            assert third.status_code == 204 and await _read(third) == b""
            assert server.connections == 2  # the one the server closed was not reused
            await pool.aclose()

    asyncio.run(main())


def test_an_answer_left_unread_does_not_leak_into_the_next() -> None:
    """A caller that stops reading an answer the upstream has sent whole gives back a
    connection that is reused: the next answer on it is its own bytes only."""
    answers = {
        1: [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nfirst", b"-rest"],
        2: [b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond"],
    }

    async def main() -> None:
        async with _serving(lambda n: answers[n]) as (server, url):
            pool = PlainPool(5, 5)
            first = await _send(pool, url)
            assert await anext(first.pieces()) == b"first"
            # The rest arrives, unread: sent whole (on a loaded machine the server's pauses
            # between pieces can outlast any fixed wait), then given time to reach the client.
            await _until(lambda: server.answers_sent == 1)
            await asyncio.sleep(0.05)
            await first.aclose()
            assert await _read(await _send(pool, url)) == b"second"
            assert server.connections == 1
            await pool.aclose()

    asyncio.run(main())


def test_idle_connection_closed_by_the_server_is_replaced() -> None:
    """The server answers, then closes the kept-alive connection (its keep-alive timeout):
    the next request goes on a new connection and succeeds."""
    answer = [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]

    async def main() -> None:
        async with _serving(lambda n: [*answer, b"<close>"]) as (server, url):
            pool = PlainPool(5, 5)
            assert await _read(await _send(pool, url)) == b"ok"
            await asyncio.sleep(0.05)  # the close reaches the idle connection
            assert await _read(await _send(pool, url)) == b"ok"
            assert server.connections == 2
            await pool.aclose()

    asyncio.run(main())


def test_breaks_and_timeouts_raise() -> None:
    """Nothing listening, a connection closed before the head or mid-body, a head that is not
    HTTP, an upstream that goes quiet: each raises UpstreamError (a timeout UpstreamTimeout)."""
    answers: dict[int, list[bytes] | None] = {
        1: None,
        2: [CHUNKED_HEAD + b"5\r\nhel", b"<close>"],
        3: [b"SSH-2.0-OpenSSH\r\n\r\n"],
        4: [CHUNKED_HEAD + b"2\r\nhi\r\n", b"<hold>"],
    }

    async def main() -> None:
        pool = PlainPool(0.3, 1)
        with pytest.raises(UpstreamError, match="cannot connect"):
            await _send(pool, "http://127.0.0.1:9/v1/x")
        async with _serving(lambda n: answers[n]) as (_, url):
            with pytest.raises(UpstreamError, match="during the answer's head"):
                await _send(pool, url)
            cut = await _send(pool, url)
            with pytest.raises(UpstreamError, match="during the answer's body"):
                await _read(cut)
            with pytest.raises(UpstreamError, match="not HTTP"):
                await _send(pool, url)
            quiet = await _send(pool, url)
            with pytest.raises(UpstreamTimeout):
                await _read(quiet)
        await pool.aclose()

    asyncio.run(main())


def test_a_caller_that_leaves_closes_the_connection() -> None:
    """Cancelled mid-body (the proxy's client hung up): the connection is closed, so the
    upstream sees the hang-up, and it is not reused."""

    async def main() -> None:
        endless = [CHUNKED_HEAD] + [b"6\r\nevent\n\r\n"] * 400
        async with _serving(lambda n: endless) as (server, url):
            pool = PlainPool(5, 5)
            answer = await _send(pool, url)
            reading = asyncio.ensure_future(_read(answer))
            await asyncio.sleep(0.05)
            reading.cancel()
            with suppress(asyncio.CancelledError):
                await reading
            assert reading.cancelled()
            await asyncio.wait_for(server.closed_by_client.wait(), 5)
            assert answer.connection.closed
            await pool.aclose()

    asyncio.run(main())


def test_only_plain_http_without_a_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """`https://` and URLs an environment proxy applies to are left to httpx2; the request
    target keeps the path (quoted) and the query."""
    assert plain_target("https://api.example.com/v1/chat/completions") is None
    target = plain_target("http://[::1]:8000/v1/a b?x=1")
    assert target is not None
    assert (target.host, target.port, target.host_header) == ("::1", 8000, b"[::1]:8000")
    assert target.path == "/v1/a%20b?x=1"
    plain_target.cache_clear()
    monkeypatch.setenv("http_proxy", "http://proxy.invalid:3128")
    monkeypatch.setenv("no_proxy", "localhost")
    try:
        assert plain_target("http://models.internal/v1/models") is None
        assert plain_target("http://localhost:8000/v1/models") is not None
    finally:
        plain_target.cache_clear()
