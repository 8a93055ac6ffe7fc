"""Serving the viewer: uvicorn on a socket bound here (as the simulator and the proxy do),
in the foreground until Ctrl-C (uvicorn finishes the requests in flight, then the command
ends as every interrupted command does: exit 130)."""

from __future__ import annotations

from collections.abc import Callable

import uvicorn

from analyzer.verify.policy import Policy
from analyzer.view.app import build_app
from traces.sim.server import bind_listener
from traces.store.database import Store


def page_url(host: str, port: int) -> str:
    """`http://HOST:PORT/`."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def serve_forever(
    store: Store,
    host: str,
    port: int,
    *,
    token: str | None,
    policies: dict[str, Policy] | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the viewer of `store` until Ctrl-C / SIGTERM. `on_ready` receives the address
    once the port is bound (an OSError if it cannot be)."""
    sock = bind_listener(host, port)
    try:
        config = uvicorn.Config(
            build_app(store, token=token, policies=policies),
            host=host,
            port=port,
            lifespan="off",
            log_level="warning",
            access_log=False,
            ws="none",
            timeout_graceful_shutdown=2,
            server_header=False,
        )
        server = uvicorn.Server(config)
        if on_ready is not None:
            on_ready(page_url(host, sock.getsockname()[1]))
        server.run(sockets=[sock])
    finally:
        sock.close()
