"""`traces proxy`: record the agent a user already runs by changing its base URL."""

from __future__ import annotations

import ipaddress
import os
import sys
from typing import Annotated

import typer

from analyzer.checks.live import LiveChecks
from analyzer.checks.persist import analyze_recorded
from analyzer.options import (
    DataPathOption,
    DbOption,
    ProvidersFileOption,
    TimeoutOption,
    finite,
)
from traces.errors import Interrupted, TracesError
from traces.store.database import resolve_db_path

TOKEN_ENV = "TRACES_PROXY_TOKEN"
"""The variable holding the token clients must send (required off loopback)."""


def register(app: typer.Typer) -> None:
    """Add the command to the CLI."""
    app.command("proxy")(proxy)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def proxy(
    upstream: Annotated[
        list[str],
        typer.Option(
            help="Where requests go: a provider profile (`traces providers`), a base URL such "
            "as http://127.0.0.1:8765/v1, or NAME=URL. Repeat it to front several hosts: a "
            "request goes to the one its path prefix /p/NAME/v1 names, else to the one whose "
            "profile lists its model, else to the first.",
            metavar="PROFILE|URL|NAME=URL",
            show_default=False,
        ),
    ],
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: pick a free one).")] = 8766,
    host: Annotated[
        str,
        typer.Option(
            help=f"Address to bind (loopback by default; any other needs ${TOKEN_ENV}, the "
            "token clients must send)."
        ),
    ] = "127.0.0.1",
    idle: Annotated[
        float,
        typer.Option(
            min=0.1,
            callback=finite,
            help="Seconds without a request after which a conversation's run ends and is checked.",
        ),
    ] = 300.0,
    timeout: TimeoutOption = 600.0,
    providers: ProvidersFileOption = None,
    db: DbOption = None,
    data_path: DataPathOption = None,
) -> None:
    """Serve an OpenAI-compatible endpoint that forwards to each --upstream and records
    every chat-completions, completions and Responses API exchange as runs, until Ctrl-C.

    Each answer is relayed unchanged (streams event by event). Chat completions, text
    completions and Responses API exchanges are recorded; conversations become runs
    (`traces runs --origin proxy`), checked when they end: after --idle quiet seconds, or
    when the proxy stops.
    """
    from traces.proxy import speedups
    from traces.proxy.routing import PREFIX, Routes
    from traces.proxy.server import ProxySettings, serve_forever

    token = os.environ.get(TOKEN_ENV) or None
    if not _loopback(host) and token is None:
        raise TracesError(
            f"--host {host}: serving beyond loopback needs a token clients must send; set "
            f"${TOKEN_ENV}"
        )
    routes = Routes.from_specs(upstream, providers, timeout)
    target = routes.default
    db_path = resolve_db_path(db, data_path)
    settings = ProxySettings(
        upstream=target,
        db_path=db_path,
        host=host,
        port=port,
        idle_s=idle,
        token=token,
        routes=routes,
    )

    def ready(base_url: str) -> None:
        # The first stdout line is the URL, so scripts can start `traces proxy --port 0`.
        sys.stdout.write(f"{base_url}\n")
        sys.stdout.flush()
        guard = f"; clients must send ${TOKEN_ENV}" if token else ""
        log(
            f"proxy serving {base_url} -> {target.shown_url} (key: {target.key_source}{guard}); "
            f"recording into {db_path}; on {speedups.described()}; Ctrl-C stops"
        )
        root = base_url.removesuffix("/v1")
        for other in routes.upstreams[1:]:
            models = f", models {', '.join(other.models)}" if other.models else ""
            log(
                f"  and {root}{PREFIX}{other.label}/v1 -> {other.shown_url} "
                f"(key: {other.key_source}{models})"
            )
        for model, names in routes.ambiguous().items():
            log(f"  model {model!r} is served by {', '.join(names)}: requests for it need a prefix")

    def log(line: str) -> None:
        sys.stderr.write(f"{line}\n")
        sys.stderr.flush()

    with LiveChecks(db_path) as live:
        live.watch(now=True)  # a server: its conversations' findings so far, from the start
        handed: set[str] = set()

        def ended(run_id: str) -> None:
            handed.add(run_id)
            log(f"run {run_id} ended; checking it")
            live.check(run_id)

        try:
            report = serve_forever(settings, on_ready=ready, on_end=ended, log=log)
        except OSError as exc:
            raise TracesError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
        analyze_recorded(db_path, [r for r in report.runs if r not in handed] + live.finish())
    summary = f"{len(report.runs)} runs, {report.steps} steps recorded and checked"
    if report.signal is not None:
        raise Interrupted(f"interrupted: proxy stopped; {summary}")
    log(f"proxy stopped; {summary}")
