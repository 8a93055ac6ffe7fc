"""The recording proxy in front of a simulator whose every answer is tapped, for the tests.

The tap sits inside the simulator's server, around its ASGI application: it keeps the bytes
the simulator sent for each request (and notes a client that hung up on it), so a test can
compare what the client received through the proxy with what the upstream really sent.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from traces.proxy.routing import Routes
from traces.proxy.server import ProxyServer, ProxySettings
from traces.proxy.upstream import Upstream, resolve_upstream
from traces.sim import server as sim_server
from traces.sim.config import SimConfig
from traces.sim.server import SimServer
from traces.store.database import resolve_db_path

from conftest import REPO


@dataclass
class Sent:
    """One answer the simulator sent."""

    path: str
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    hung_up: bool = False
    """The client (the proxy) disconnected before the answer ended."""
    request: bytes = b""
    """The request body it answered."""


class Tap:
    """Wraps the simulator's ASGI app and keeps what it sends, in request order."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.sent: list[Sent] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record = Sent(path=scope["path"])
        self.sent.append(record)
        chunks: list[bytes] = []

        async def tapped_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                record.headers = {k.decode(): v.decode() for k, v in message["headers"]}
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                record.body = b"".join(chunks)
            await send(message)

        async def tapped_receive() -> Any:
            message = await receive()
            if message["type"] == "http.disconnect":
                record.hung_up = True
            elif message["type"] == "http.request":
                record.request += message.get("body", b"")
            return message

        await self.app(scope, tapped_receive, tapped_send)


@contextlib.contextmanager
def tapped_sim(
    monkeypatch: pytest.MonkeyPatch,
    config: SimConfig,
    in_front: Callable[[Any], Any] | None = None,
) -> Iterator[tuple[SimServer, Tap]]:
    """A simulator of its own, its answers tapped (with `in_front`, an ASGI app wrapping
    the simulator's, between it and the tap)."""
    taps: list[Tap] = []
    real = sim_server.create_app

    def create(cfg: SimConfig) -> Any:
        app = real(cfg)
        taps.append(Tap(in_front(app) if in_front is not None else app))
        return taps[-1]

    with monkeypatch.context() as patch:
        patch.setattr(sim_server, "create_app", create)
        server = SimServer(config).start()
    try:
        yield server, taps[0]
    finally:
        server.stop()


@contextlib.contextmanager
def proxy_to(
    upstream: Upstream | str | Routes,
    db: Path,
    *,
    idle_s: float = 300.0,
    token: str | None = None,
    ended: list[str] | None = None,
    logged: list[str] | None = None,
) -> Iterator[ProxyServer]:
    """The proxy in a thread, forwarding to `upstream` (a URL, a resolved one, or routes
    among several)."""
    routes = upstream if isinstance(upstream, Routes) else None
    if isinstance(upstream, Routes):
        target = upstream.default
    elif isinstance(upstream, str):
        target = resolve_upstream(upstream, None, 30.0)
    else:
        target = upstream
    settings = ProxySettings(
        upstream=target,
        db_path=resolve_db_path(str(db), None),
        idle_s=idle_s,
        token=token,
        routes=routes,
    )
    proxy = ProxyServer(
        settings,
        on_end=None if ended is None else ended.append,
        log=None if logged is None else logged.append,
    )
    with proxy:
        yield proxy


def start_proxy_command(
    *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str, list[str]]:
    """`traces proxy ARGS` started as a user starts it: the process, the URL it prints on
    its first line, and its stderr lines as they come (a thread collects them)."""
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    full_env.pop("TRACES_DB", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "analyzer", "proxy", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
        cwd=REPO,
    )
    assert process.stdout is not None and process.stderr is not None
    url = process.stdout.readline().strip()
    lines: list[str] = []
    errors = process.stderr

    def read() -> None:
        for line in errors:
            lines.append(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    return process, url, lines
