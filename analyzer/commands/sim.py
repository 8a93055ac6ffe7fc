"""`traces sim`: serve the simulator on loopback for any OpenAI-compatible client."""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated

import typer

from traces.errors import TracesError
from traces.sim.config import SimConfig
from traces.sim.server import serve_forever


class ReasoningFieldChoice(StrEnum):
    """Where the simulator puts reasoning in its responses."""

    reasoning_content = "reasoning_content"
    reasoning = "reasoning"
    think = "think"


def register(app: typer.Typer) -> None:
    """Add the command to the CLI."""
    app.command("sim")(sim)


def sim(
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: pick a free one).")] = 8765,
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    seed: Annotated[int, typer.Option(help="Default seed when requests carry none.")] = 0,
    reasoning_field: Annotated[
        ReasoningFieldChoice, typer.Option(help="Where reasoning is emitted in responses.")
    ] = ReasoningFieldChoice.reasoning_content,
    latency_ms: Annotated[float, typer.Option(min=0, help="Added delay per response.")] = 0.0,
) -> None:
    """Serve /v1/chat/completions (streaming and not) and /v1/models until Ctrl-C."""
    config = SimConfig(seed=seed, reasoning_field=reasoning_field.value, latency_ms=latency_ms)

    def ready(base_url: str) -> None:
        # The first stdout line is the URL, so scripts can start `traces sim --port 0`.
        sys.stdout.write(f"{base_url}\n")
        sys.stdout.flush()
        sys.stderr.write(f"simulator serving model {config.model} at {base_url}; Ctrl-C stops\n")

    try:
        serve_forever(config, host, port, on_ready=ready)
    except OSError as exc:
        raise TracesError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
