"""Times are kept to the microsecond: a stream's arrival times, latencies, time to first token
and tool durations, as recorded against the simulator over HTTP and as stored."""

from __future__ import annotations

import json
import time
from pathlib import Path

import duckdb

from tests.recording import record
from traces.elapsed import elapsed_ms
from traces.sim.server import SimServer


def _to_the_microsecond(value: float | None) -> bool:
    return value is None or round(value, 3) == value


def test_elapsed_ms_is_rounded_to_the_microsecond() -> None:
    start = time.perf_counter() - 0.0123456789
    value = elapsed_ms(start)
    assert 12.3 < value < 1000
    assert round(value, 3) == value


def test_a_recorded_stream_keeps_its_times_to_the_microsecond(
    tmp_path: Path, sim: SimServer
) -> None:
    db = tmp_path / "t.duckdb"
    record(db, sim.base_url, "chain_short", stream=True)
    conn = duckdb.connect(str(db), read_only=True)
    try:
        steps = conn.execute(
            "SELECT stream_events, latency_ms, ttft_reasoning_ms, ttft_content_ms, "
            "ttft_tool_call_ms FROM steps"
        ).fetchall()
        durations = [r[0] for r in conn.execute("SELECT duration_ms FROM tool_results").fetchall()]
    finally:
        conn.close()
    assert steps and durations
    times = [t for events, *_ in steps for t, _ in json.loads(events)]
    assert times and all(_to_the_microsecond(t) for t in times)
    assert all(_to_the_microsecond(v) for _, *rest in steps for v in rest)
    assert all(_to_the_microsecond(d) for d in durations)
    # Not every time a whole millisecond: the microseconds are kept.
    assert any(t != round(t) for t in times)
