"""Run the simulator on loopback: in a background thread (tests, fixtures) or in the foreground.

The socket is bound here, not by uvicorn, so port 0 yields an ephemeral port that is known
before the server starts and cannot be taken by anyone else in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType

import uvicorn

from traces.sim.app import create_app
from traces.sim.config import SimConfig

_STARTUP_TIMEOUT_S = 10.0
_BACKLOG = 2048


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening, non-blocking TCP socket on `host:port` (0: an ephemeral port), with
    TCP_NODELAY for the connections it accepts; for uvicorn's `sockets=`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit TCP_NODELAY on Linux. Without it, Nagle's algorithm holds
    # the response body until the client's delayed ACK (~40 ms), a latency no real
    # inference server has and one that would swamp every measurement made against the sim.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    # Listening right away means clients may connect before the event loop runs: they queue.
    sock.listen(_BACKLOG)
    sock.setblocking(False)
    return sock


class _CutResponses(logging.Filter):
    """Silences uvicorn's complaint about a response left incomplete: the simulator leaves
    one so only on purpose (the `connection_reset` fault), to make uvicorn drop the
    connection mid-body."""

    MESSAGE = "ASGI callable returned without completing response."

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every record but that one."""
        return record.getMessage() != self.MESSAGE


class _GoneClients(logging.Filter):
    """Silences asyncio's warning about writes to a connection the client closed: a client
    stopped by Ctrl-C drops its streams while the simulator is still writing them, and the
    command must end with its one line, not with this one repeated."""

    MESSAGE = "socket.send() raised exception."

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every record but that one."""
        return record.getMessage() != self.MESSAGE


def quiet_cut_responses() -> None:
    """Silence the two log lines a server that cuts or loses connections on purpose writes."""
    for name, kind in (("uvicorn.error", _CutResponses), ("asyncio", _GoneClients)):
        logger = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in logger.filters):
            logger.addFilter(kind())


class PromptServer(uvicorn.Server):
    """uvicorn's server, stopping as soon as `exit_now` asks rather than at its next tick.

    uvicorn looks at `should_exit` every 0.1 s, and on the way out pauses 0.1 s for the
    connections it asked to close even when there are none: about 0.2 s of every stop, spent
    waiting. A server per test, per recorded fault (119 at once for the fault corpus) and
    per `traces record` on the built-in simulator made that minutes of the test suite's wall
    time. A signal handler that sets `should_exit` is still seen at the next tick."""

    _loop: asyncio.AbstractEventLoop | None = None
    _wake: asyncio.Event | None = None

    async def main_loop(self) -> None:
        """uvicorn's loop of ticks, woken early by `exit_now`."""
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.1)

    def exit_now(self) -> None:
        """Ask the server to stop, from any thread, and wake its loop to see it now."""
        self.should_exit = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # its loop already ended
                loop.call_soon_threadsafe(wake.set)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's shutdown; with no connection or request left, without its 0.1 s pause
        for the connections to close (the rest is what it does then: stop listening, wait
        for the listeners to close, end the lifespan)."""
        if self.server_state.connections or self.server_state.tasks:
            await super().shutdown(sockets)
            return
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for server in self.servers:
            await server.wait_closed()
        if not self.force_exit:
            await self.lifespan.shutdown()


def _uvicorn_server(config: SimConfig, sock: socket.socket) -> PromptServer:
    host, port = sock.getsockname()[:2]
    settings = uvicorn.Config(
        create_app(config),
        host=host,
        port=port,
        lifespan="off",
        log_level="warning",
        access_log=False,
        ws="none",
        backlog=_BACKLOG,
        # Longer than httpx's 5 s keep-alive expiry, so the client always drops an idle
        # connection first and never reuses one the server is closing.
        timeout_keep_alive=30,
        timeout_graceful_shutdown=3,
    )
    # After uvicorn.Config, which configures logging, so the filter is not reset by it.
    quiet_cut_responses()
    return PromptServer(settings)


def _base_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/v1"


class SimServer:
    """The simulator served by uvicorn in a background thread with its own event loop.

    Use as a context manager (or `start()` / `stop()`):

        with SimServer(SimConfig(seed=1)) as sim:
            client = openai.OpenAI(base_url=sim.base_url, api_key="sk-test")
    """

    def __init__(self, config: SimConfig | None = None, *, host: str = "127.0.0.1") -> None:
        """Prepare a server for `config` on `host` (loopback by default); nothing runs yet."""
        self.config = config or SimConfig()
        self.host = host
        self._server: PromptServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        """The bound TCP port (known once started)."""
        if self._port is None:
            raise RuntimeError("SimServer is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT/v1`, ready for an OpenAI client's `base_url`."""
        return _base_url(self.host, self.port)

    def start(self) -> SimServer:
        """Bind an ephemeral port, start serving, and return once requests are accepted."""
        if self._thread is not None:
            raise RuntimeError("SimServer is already started")
        sock = bind_listener(self.host, 0)
        self._port = sock.getsockname()[1]
        server = _uvicorn_server(self.config, sock)
        self._server = server

        def run() -> None:
            try:
                server.run(sockets=[sock])
            except BaseException as exc:  # surfaced by start() instead of dying silently
                self._error = exc
            finally:
                sock.close()

        self._thread = threading.Thread(target=run, name=f"sim-server-{self._port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + _STARTUP_TIMEOUT_S
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"simulator failed to start: {self._error!r}")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Ask uvicorn to exit and wait for the thread; idempotent."""
        if self._server is not None:
            self._server.exit_now()
        if self._thread is not None:
            self._thread.join(timeout=_STARTUP_TIMEOUT_S)
        self._server = None
        self._thread = None

    def __enter__(self) -> SimServer:
        """Start the server."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()


def serve_forever(
    config: SimConfig,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve in the foreground until Ctrl-C / SIGTERM (the `traces sim` command).

    `on_ready` receives the base URL once the port is bound (useful with port 0).
    """
    sock = bind_listener(host, port)
    bound = sock.getsockname()[1]
    server = _uvicorn_server(config, sock)
    if on_ready is not None:
        on_ready(_base_url(host, bound))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
