"""`traces sim`: serve the simulator on loopback for any OpenAI-compatible client."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from analyzer.options import FaultOption, finite
from analyzer.output import OutputFormat, emit_rows, to_json
from traces.dialects import DIALECTS, known_dialect
from traces.errors import TracesError
from traces.families import FAMILIES
from traces.sim.config import SimConfig
from traces.sim.faults import FAULTS
from traces.sim.faults.selection import TRANSIENT
from traces.sim.faults.spec import parse_faults
from traces.sim.server import serve_forever


def register(app: typer.Typer) -> None:
    """Add the command to the CLI."""
    app.command("sim")(sim)


def _list_catalogue(fmt: OutputFormat) -> None:
    dialects = [
        {
            "dialect": d.name,
            "family": d.family,
            "reasoning_out": d.reasoning_out,
            "reasoning_in": ", ".join(d.reasoning_in),
            "requires_reasoning_back": d.requires_reasoning_back,
            "description": d.description,
        }
        for d in DIALECTS.values()
    ]
    families = [
        {
            "family": f.name,
            "model_ids": ", ".join(f.model_ids),
            "ids": f.id_style or "host's",
            "description": f.description,
        }
        for f in FAMILIES.values()
    ]
    faults = [
        {
            "fault": f.name,
            "stage": f.stage,
            "blame": f.blame,
            # Transient faults roll again on each attempt, so a client's retry can pass.
            "transient": f.name in TRANSIENT,
            "description": f.description,
        }
        for f in FAULTS.values()
    ]
    if fmt is OutputFormat.json:
        # One document, so the output stays parseable JSON.
        document = {"dialects": dialects, "families": families, "faults": faults}
        sys.stdout.write(to_json(document) + "\n")
        return
    emit_rows(dialects, fmt, title="dialects")
    emit_rows(families, fmt, title="families")
    emit_rows(faults, fmt, title="faults")


def sim(
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: pick a free one).")] = 8765,
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    seed: Annotated[int, typer.Option(help="Default seed when requests carry none.")] = 0,
    dialect: Annotated[
        str,
        typer.Option(
            metavar="|".join(DIALECTS), help="Host to emulate (see --list).", show_default=True
        ),
    ] = "openai",
    fault: FaultOption = None,
    timeout_s: Annotated[
        float,
        typer.Option(min=0, callback=finite, help="How long the timeout fault holds a response."),
    ] = 30.0,
    latency_ms: Annotated[
        float, typer.Option(min=0, callback=finite, help="Added delay per response.")
    ] = 0.0,
    list_: Annotated[
        bool,
        typer.Option("--list", help="Print dialects, families and faults, then exit."),
    ] = False,
    fmt: Annotated[
        OutputFormat,
        typer.Option("--format", "-f", help="Format of --list.", case_sensitive=False),
    ] = OutputFormat.table,
) -> None:
    """Serve /v1/chat/completions (streaming and not) and /v1/models until Ctrl-C."""
    if list_:
        _list_catalogue(fmt)
        return
    try:
        known_dialect(dialect)
    except ValueError as exc:
        raise TracesError(f"--dialect: {exc}") from None
    config = SimConfig(
        seed=seed,
        dialect=dialect,
        faults=parse_faults(fault or []),
        timeout_s=timeout_s,
        latency_ms=latency_ms,
    )

    def ready(base_url: str) -> None:
        # The first stdout line is the URL, so scripts can start `traces sim --port 0`.
        sys.stdout.write(f"{base_url}\n")
        sys.stdout.flush()
        sys.stderr.write(
            f"simulator serving model {config.model} as {config.dialect} at {base_url}; "
            "Ctrl-C stops\n"
        )

    try:
        serve_forever(config, host, port, on_ready=ready)
    except OSError as exc:
        raise TracesError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
