"""`traces proxy` under load: 200 concurrent streams, every one relayed byte for byte and
recorded as a step; and a SIGTERM while streams are in flight loses none of them."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import httpx2
import pytest
from proxy_setup import proxy_to, start_proxy_command, tapped_sim

from traces.sim.config import SimConfig

from conftest import query_rows

STREAMS = 200


async def _streams(
    base_url: str, count: int, started: asyncio.Event | None = None
) -> list[tuple[str, bytes]]:
    """`count` concurrent streamed requests, each its own conversation: (request id, bytes
    received) per request. `started` is set once every stream has received its first piece
    (not the first stream only: under load the last requests may not be sent yet, and a proxy
    told to stop refuses new connections, as it should)."""
    begun: set[int] = set()
    limits = httpx2.Limits(max_connections=None, max_keepalive_connections=None)
    timeout = httpx2.Timeout(120.0)
    async with httpx2.AsyncClient(limits=limits, timeout=timeout) as client:

        async def one(number: int) -> tuple[str, bytes]:
            body = {
                "model": "sim-model",
                "stream": True,
                "messages": [{"role": "user", "content": f"Conversation {number}: say hi."}],
            }
            async with client.stream("POST", f"{base_url}/chat/completions", json=body) as got:
                pieces = []
                async for piece in got.aiter_raw():
                    pieces.append(piece)
                    begun.add(number)
                    if started is not None and len(begun) == count:
                        started.set()
                return got.headers["x-request-id"], b"".join(pieces)

        return await asyncio.gather(*(one(n) for n in range(count)))


@pytest.mark.slow
def test_200_concurrent_streams(monkeypatch: pytest.MonkeyPatch, db_path: Path) -> None:
    """200 streams at once through the proxy: each client receives exactly the bytes the
    simulator sent for its request, and each is one step whose SSE lines are those bytes."""
    with (
        tapped_sim(monkeypatch, SimConfig(seed=0)) as (sim, tap),
        proxy_to(sim.base_url, db_path) as proxy,
    ):
        received = asyncio.run(_streams(proxy.base_url, STREAMS))
    sent = {s.headers["x-request-id"]: s.body for s in tap.sent}
    assert len(sent) == STREAMS
    assert {rid: body for rid, body in received} == sent
    steps = query_rows(db_path, "SELECT request_id, stream_events, error_kind FROM steps")
    assert len(steps) == STREAMS
    for step in steps:
        lines = [line for _, line in json.loads(step["stream_events"])]
        assert lines == [line for line in sent[step["request_id"]].decode().split("\n") if line]
        assert step["error_kind"] is None
    runs = query_rows(db_path, "SELECT status, steps FROM runs")
    assert len(runs) == STREAMS and {(r["status"], r["steps"]) for r in runs} == {("completed", 1)}


@pytest.mark.slow
def test_sigterm_with_streams_in_flight(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """SIGTERM while 40 streams are in flight: the proxy lets them finish, records every one,
    ends every run and exits 130; every request the upstream answered is a step."""
    db = tmp_path / "proxy.duckdb"
    with tapped_sim(monkeypatch, SimConfig(seed=0, latency_ms=300, chunk_chars=4)) as (sim, tap):
        process, url, lines = start_proxy_command(
            "--upstream", sim.base_url, "--port", "0", "--db", str(db)
        )

        async def drive() -> list[tuple[str, bytes]]:
            started = asyncio.Event()
            streams = asyncio.ensure_future(_streams(url, 40, started))
            await started.wait()
            process.send_signal(signal.SIGTERM)
            return await streams

        try:
            received = asyncio.run(drive())
        finally:
            code = process.wait(60)
    assert code == 130, lines
    assert len(received) == 40 and all(body for _, body in received)
    steps = query_rows(db, "SELECT request_id, error_kind FROM steps")
    assert len(steps) == len(tap.sent) == 40
    assert {s["request_id"] for s in steps} == {rid for rid, _ in received}
    runs = query_rows(db, "SELECT status FROM runs")
    assert len(runs) == 40 and {r["status"] for r in runs} == {"completed"}
