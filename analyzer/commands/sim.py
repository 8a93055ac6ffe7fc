"""`traces sim`: serve the simulator on loopback for any OpenAI-compatible client."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from traces.sim.config import SimConfig
from traces.sim.server import serve_forever


def register(app: typer.Typer) -> None:
    """Add the command to the CLI."""
    app.command("sim")(sim)


def sim(
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: pick a free one).")] = 8765,
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    seed: Annotated[int, typer.Option(help="Default seed when requests carry none.")] = 0,
    reasoning_field: Annotated[
        str, typer.Option(help="Where reasoning is emitted: reasoning_content, reasoning, think.")
    ] = "reasoning_content",
    latency_ms: Annotated[float, typer.Option(min=0, help="Added delay per response.")] = 0.0,
) -> None:
    """Serve /v1/chat/completions (streaming and not) and /v1/models until Ctrl-C."""
    config = SimConfig.model_validate(
        {"seed": seed, "reasoning_field": reasoning_field, "latency_ms": latency_ms}
    )
    sys.stderr.write(f"simulator on http://{host}:{port}/v1 (model {config.model}); Ctrl-C stops\n")
    serve_forever(config, host, port)
