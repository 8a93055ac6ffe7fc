"""Serving the proxy: uvicorn on a socket bound here (as the simulator's), the recorder around it.

In the foreground (`traces proxy`), Ctrl-C or SIGTERM asks uvicorn to stop taking requests and
finish the ones in flight; then every open run is ended and everything queued is committed
before the process exits. A second signal stops at once (what was committed stays). In a
background thread (`ProxyServer`: tests, benchmarks), `stop()` does the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType, TracebackType

import uvicorn

from traces.proxy.recording import ProxyRecorder
from traces.proxy.relay import ProxyApp
from traces.proxy.routing import Routes
from traces.proxy.speedups import http_parser, loop_factory
from traces.proxy.upstream import Upstream
from traces.sim.server import bind_listener, quiet_cut_responses
from traces.store.database import Store
from traces.store.recorder import Recorder

_STARTUP_TIMEOUT_S = 10.0
_BACKLOG = 2048
_SEND_DELAY_S = 0.02
"""How long what the proxy records waits to be sent to the store's server, with whatever
else is recorded meanwhile (`Recorder`'s `send_delay_s`): nobody waits for those commits, and
one send per request took the GIL from the relay at each request."""


@dataclass
class ProxySettings:
    """What one proxy serves, and where it records."""

    upstream: Upstream
    """The default upstream (the first `--upstream`)."""
    db_path: Store
    host: str = "127.0.0.1"
    port: int = 0
    idle_s: float = 300.0
    token: str | None = field(default=None, repr=False)
    routes: Routes | None = None
    """Several upstreams and how requests choose (None: everything to `upstream`)."""

    def routing(self) -> Routes:
        """The routes requests follow."""
        return self.routes if self.routes is not None else Routes([self.upstream])


@dataclass
class ProxyReport:
    """What a proxy recorded before it stopped."""

    runs: list[str]
    steps: int
    signal: int | None = None
    """The signal that stopped it (None: stopped by `ProxyServer.stop`)."""


class _Server(uvicorn.Server):
    """uvicorn's server, but a signal only asks it to stop: it is not raised again once it
    has (uvicorn re-raises it), because the proxy still has runs to end and commit."""

    stopped_by: int | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Take SIGINT and SIGTERM while serving (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def stop(signum: int, frame: FrameType | None) -> None:
            if self.should_exit:
                self.force_exit = True  # a second signal: stop waiting for open requests
            self.should_exit = True
            self.stopped_by = signum

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _server(app: ProxyApp, settings: ProxySettings) -> _Server:
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        lifespan="off",
        log_level="warning",
        access_log=False,
        ws="none",
        http=http_parser(),
        # The proxy reads no client address: uvicorn's X-Forwarded-For middleware is one more
        # layer each request goes through for nothing.
        proxy_headers=False,
        backlog=_BACKLOG,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=5,
        # The upstream's own `server` and `date` headers are relayed; none of ours are added.
        server_header=False,
        date_header=False,
    )
    quiet_cut_responses()
    return _Server(config)


def base_url(host: str, port: int) -> str:
    """The base URL clients are given: `http://HOST:PORT/v1`."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/v1"


async def _serve(
    settings: ProxySettings,
    recorder: Recorder,
    sock: socket.socket,
    server_box: list[_Server],
    on_end: Callable[[str], None] | None,
    log: Callable[[str], None] | None,
) -> ProxyReport:
    host, port = sock.getsockname()[:2]
    recording = ProxyRecorder(
        recorder,
        settings.upstream,
        idle_s=settings.idle_s,
        on_end=on_end,
        listen=base_url(host, port),
    )
    app = ProxyApp(settings.routing(), recording, token=settings.token, log=log)
    server = _server(app, settings)
    server_box.append(server)
    sweeper = asyncio.ensure_future(recording.sweep())
    try:
        await server.serve(sockets=[sock])
    finally:
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
        await app.aclose()
        await recording.close()
    return ProxyReport(runs=recording.ended, steps=recording.steps, signal=server.stopped_by)


def serve_forever(
    settings: ProxySettings,
    *,
    on_ready: Callable[[str], None] | None = None,
    on_end: Callable[[str], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> ProxyReport:
    """Serve in the foreground until Ctrl-C / SIGTERM; every run ended and committed on return.

    `on_ready` receives the base URL once the port is bound; `on_end` each run id as its run
    ends (on the event loop); `log` one line per request relayed but not recorded.
    """
    sock = bind_listener(settings.host, settings.port)
    try:
        recorder = Recorder(settings.db_path, send_delay_s=_SEND_DELAY_S)
        try:
            if on_ready is not None:
                on_ready(base_url(settings.host, sock.getsockname()[1]))
            with asyncio.Runner(loop_factory=loop_factory()) as runner:
                return runner.run(_serve(settings, recorder, sock, [], on_end, log))
        finally:
            recorder.close()
    finally:
        sock.close()


class ProxyServer:
    """The proxy in a background thread with its own event loop (tests, benchmarks)."""

    def __init__(
        self,
        settings: ProxySettings,
        *,
        on_end: Callable[[str], None] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        """Prepare; nothing runs until `start`."""
        self.settings = settings
        self.on_end = on_end
        self.log = log
        self.report: ProxyReport | None = None
        self._servers: list[_Server] = []
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._error: BaseException | None = None

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT/v1`."""
        if self._port is None:
            raise RuntimeError("ProxyServer is not started")
        return base_url(self.settings.host, self._port)

    def start(self) -> ProxyServer:
        """Bind, start serving, and return once requests are accepted."""
        sock = bind_listener(self.settings.host, self.settings.port)
        self._port = sock.getsockname()[1]
        recorder = Recorder(self.settings.db_path, send_delay_s=_SEND_DELAY_S)

        def run() -> None:
            try:
                with asyncio.Runner(loop_factory=loop_factory()) as runner:
                    self.report = runner.run(
                        _serve(self.settings, recorder, sock, self._servers, self.on_end, self.log)
                    )
            except BaseException as exc:  # surfaced by start() / stop()
                self._error = exc
            finally:
                recorder.close()
                sock.close()

        self._thread = threading.Thread(target=run, name="traces-proxy", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + _STARTUP_TIMEOUT_S
        while not (self._servers and self._servers[0].started):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"proxy failed to start: {self._error!r}")
            time.sleep(0.005)
        return self

    def stop(self) -> ProxyReport | None:
        """Stop serving, end every run, commit; the report (None if it never ran)."""
        if self._servers:
            self._servers[0].should_exit = True
        if self._thread is not None:
            self._thread.join(60)
            self._thread = None
        if self._error is not None:
            raise RuntimeError(f"proxy failed: {self._error!r}") from self._error
        return self.report

    def __enter__(self) -> ProxyServer:
        """Start the proxy."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the proxy."""
        self.stop()
