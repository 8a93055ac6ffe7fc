"""`traces view`: browse the store in a web browser, read-only, on loopback."""

from __future__ import annotations

import secrets
import sys
import webbrowser
from typing import Annotated

import typer

from analyzer.options import DataPathOption, DbOption
from traces.errors import TracesError
from traces.store.database import open_for_reading, resolve_db_path

DEFAULT_PORT = 8767


def register(app: typer.Typer) -> None:
    """Add the command to the CLI."""
    app.command("view")(view)


def view(
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port (0: pick a free one).")
    ] = DEFAULT_PORT,
    host: Annotated[
        str,
        typer.Option(
            help="Address to bind (loopback by default; any other requires the token "
            "printed at start, in the address given)."
        ),
    ] = "127.0.0.1",
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the viewer in the default web browser.")
    ] = False,
    policy: Annotated[
        list[str] | None,
        typer.Option(
            help="A policy whose verdict /verify/NAME shows (`traces verify`'s: a file, or "
            "faithful, k2vv; repeatable). The shipped ones are always there.",
        ),
    ] = None,
    db: DbOption = None,
    data_path: DataPathOption = None,
) -> None:
    """Serve a read-only web viewer of the store until Ctrl-C: runs, steps, findings, side
    by side, SQL.

    Runs with filters, text search, ordering and pages; a run's timeline, each step
    expandable to its reasoning, content, tool calls, results and findings; each step's
    request as sent beside its raw response or SSE lines; findings by kind, provider and
    model; the same request answered by several providers side by side; the comparison of
    `traces compare` and a policy's verdict on it; the probe fingerprints; read-only SQL
    with CSV download. Pages follow a recording in progress. The first stdout line is the
    address.
    """
    from analyzer.view.comparison import load_policies
    from analyzer.view.security import is_loopback
    from analyzer.view.server import serve_forever

    policies = load_policies(policy or [])  # a bad one: its one line, before anything
    store = resolve_db_path(db, data_path)
    open_for_reading(store).close()  # a missing or foreign file: its one line, exit 4
    token = None if is_loopback(host) else secrets.token_urlsafe(24)

    def ready(url: str) -> None:
        address = url if token is None else f"{url}?token={token}"
        sys.stdout.write(f"{address}\n")
        sys.stdout.flush()
        guard = "" if token is None else "; the token in the address is required"
        sys.stderr.write(f"viewing {store} at {url} (read-only{guard}); Ctrl-C stops\n")
        sys.stderr.flush()
        if open_browser:
            webbrowser.open(address)

    try:
        serve_forever(store, host, port, token=token, policies=policies, on_ready=ready)
    except OSError as exc:
        raise TracesError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
