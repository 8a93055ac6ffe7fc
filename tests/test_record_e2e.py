"""End to end: harness → real openai client → simulator over HTTP → recorder → DuckDB."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from traces.model import message_hash
from traces.sim.config import SimConfig
from traces.sim.server import SimServer
from traces.store.database import open_for_reading

from recording import record, request_messages

# Slow as a whole, outside the fast path `pytest -m "not slow"`: long recordings (the 300-step
# chain).
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_chain_short_completes_and_is_recorded(sim: SimServer, db_path: Path, stream: bool) -> None:
    [summary] = record(db_path, sim.base_url, stream=stream)
    assert summary.outcome.termination == "completed"
    assert summary.outcome.success is True
    assert summary.outcome.steps == 6 and summary.outcome.tool_calls == 5

    conn = open_for_reading(db_path)
    run = conn.execute(
        "SELECT status, termination, success, steps, tool_calls, prompt_tokens FROM runs"
    ).fetchone()
    assert run is not None and run[:5] == ("completed", "completed", True, 6, 5) and run[5] > 0
    steps = conn.execute(
        "SELECT idx, streamed, response_body IS NOT NULL, stream_events IS NOT NULL, "
        "reasoning_source, ttft_reasoning_ms, prompt_tokens, reasoning_tokens, "
        "reasoning_tokens_source, finish_reason, request_id FROM steps ORDER BY idx"
    ).fetchall()
    assert [s[0] for s in steps] == list(range(6))
    for step in steps:
        assert step[1] is stream
        assert step[2] is (not stream) and step[3] is stream
        assert step[4] == "reasoning_content"
        assert (step[5] is not None) is stream
        assert step[6] > 0 and step[7] > 0 and step[8] == "reported"
        assert step[10] and step[10].startswith("req_")
    assert [s[9] for s in steps] == ["tool_calls"] * 5 + ["stop"]
    if stream:
        events = json.loads(
            conn.execute("SELECT stream_events FROM steps WHERE idx = 0").fetchone()[0]  # type: ignore[index]
        )
        assert events[-1][1] == "data: [DONE]"
        assert all(isinstance(t, float) for t, _ in events)
        assert [t for t, _ in events] == sorted(t for t, _ in events)
    calls = conn.execute(
        "SELECT id_format, arguments_type, json_valid, schema_valid FROM tool_calls"
    ).fetchall()
    assert calls == [("openai", "string", True, True)] * 5
    results = conn.execute("SELECT count(*) FROM tool_results WHERE error IS NULL").fetchone()
    assert results == (5,)
    conn.close()


def test_300_step_chain_sends_every_turns_reasoning_back(sim: SimServer, db_path: Path) -> None:
    [summary] = record(db_path, sim.base_url, task="chain", seed=7)
    assert summary.outcome.success is True
    assert summary.outcome.steps == 301 and summary.outcome.tool_calls == 300

    conn = open_for_reading(db_path)
    run_id = summary.id
    reasoning = dict(conn.execute("SELECT idx, reasoning FROM steps").fetchall())
    replayed = dict(conn.execute("SELECT idx, replay_message_hash FROM steps").fetchall())
    layout = {
        idx: (count, prefix)
        for idx, count, prefix in conn.execute(
            "SELECT idx, request_message_count, request_prefix FROM steps"
        ).fetchall()
    }
    added = {}
    for idx, position, digest in conn.execute(
        "SELECT step_idx, position, hash FROM step_messages WHERE run_id = ?", [run_id]
    ).fetchall():
        added.setdefault(idx, {})[position] = digest
    assert len(reasoning) == 301 and all(reasoning.values())
    assert layout[0] == (2, 0)
    for idx in range(1, 301):
        # Each request repeats the previous one and adds two messages: the assistant turn of
        # idx-1 (with its reasoning), then its tool result. Only those two are stored.
        assert layout[idx] == (2 + 2 * idx, 2 * idx)
        assert sorted(added[idx]) == [2 * idx, 2 * idx + 1]
        assert added[idx][2 * idx] == replayed[idx - 1]
    assert conn.execute("SELECT count(*) FROM step_messages").fetchone() == (2 + 2 * 300,)
    # Spot-check full bodies (rebuilding all 301 requests is O(n^2) rows, on purpose not done).
    for idx in (1, 150, 300):
        messages = request_messages(conn, run_id, idx)
        previous_turn = messages[-2]
        assert previous_turn["role"] == "assistant"
        assert previous_turn["reasoning_content"] == reasoning[idx - 1]
        assert messages[-1]["role"] == "tool"
        assert messages[-1]["tool_call_id"] == previous_turn["tool_calls"][0]["id"]
        # Every earlier assistant turn of the chain carries its reasoning too.
        assistant_turns = [m for m in messages if m["role"] == "assistant"]
        assert len(assistant_turns) == idx
        assert [m["reasoning_content"] for m in assistant_turns] == [
            reasoning[i] for i in range(idx)
        ]
    # Messages are stored once: system + user + 300 assistant turns + 300 results + answer.
    assert conn.execute("SELECT count(*) FROM messages").fetchone() == (2 + 300 + 300 + 1,)
    conn.close()


def test_parallel_tool_calls_are_all_executed_and_answered(sim: SimServer, db_path: Path) -> None:
    [summary] = record(db_path, sim.base_url, task="files", stream=True)
    assert summary.outcome.success is True, summary.outcome
    conn = open_for_reading(db_path)
    step_idx, calls = conn.execute(
        "SELECT step_idx, count(*) FROM tool_calls GROUP BY step_idx ORDER BY 2 DESC LIMIT 1"
    ).fetchone()  # type: ignore[misc]
    assert calls >= 2
    ids = conn.execute(
        "SELECT c.id, r.tool_call_id, r.name, r.error FROM tool_calls c "
        "JOIN tool_results r USING (run_id, step_idx, call_idx) WHERE c.step_idx = ?",
        [step_idx],
    ).fetchall()
    assert len(ids) == calls and all(c == r for c, r, _, _ in ids)
    assert {name for _, _, name, _ in ids} == {"read_file"} and all(e is None for *_, e in ids)
    # The next request answers every call, in order, right after the assistant turn.
    messages = request_messages(conn, summary.id, step_idx + 1)
    tool_messages = messages[-calls:]
    assert [m["tool_call_id"] for m in tool_messages] == [c for c, *_ in ids]
    conn.close()


def test_research_multi_hop(sim: SimServer, db_path: Path) -> None:
    [summary] = record(db_path, sim.base_url, task="research")
    assert summary.outcome.success is True
    assert "Marisol Vell" in (summary.outcome.final_answer or "")
    assert summary.outcome.steps >= 5


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("field", ["reasoning", "think"])
def test_reasoning_goes_back_in_the_field_it_came_from(
    db_path: Path, field: str, stream: bool
) -> None:
    # `reasoning-field` answers in `reasoning`; MiniMax puts a <think> block in content.
    dialect = {"reasoning": "reasoning-field", "think": "minimax"}[field]
    with SimServer(SimConfig(dialect=dialect)) as server:
        [summary] = record(db_path, server.base_url, stream=stream)
    assert summary.outcome.success is True
    conn = open_for_reading(db_path)
    source = {"reasoning": "reasoning", "think": "think_tag"}[field]
    rows = conn.execute("SELECT DISTINCT reasoning_source FROM steps").fetchall()
    assert rows == [(source,)]
    messages = request_messages(conn, summary.id, 3)
    turn = messages[-2]
    if field == "reasoning":
        assert turn["reasoning"] and "reasoning_content" not in turn
    else:
        assert turn["content"].startswith("<think>") and "</think>" in turn["content"]
        stored = conn.execute("SELECT content FROM steps WHERE idx = 2").fetchone()
        assert stored == (turn["content"].split("</think>", 1)[1].strip() or None,) or stored
    conn.close()


def test_repeat_with_concurrency_records_distinct_worlds(sim: SimServer, db_path: Path) -> None:
    summaries = record(db_path, sim.base_url, repeat=4, concurrency=2, seed=10)
    assert [s.seed for s in summaries] == [10, 11, 12, 13]
    assert all(s.outcome.success for s in summaries)
    conn = open_for_reading(db_path)
    first_calls = conn.execute(
        "SELECT DISTINCT arguments_raw FROM tool_calls WHERE step_idx = 0"
    ).fetchall()
    assert len(first_calls) == 4  # each seed starts at a different box
    assert conn.execute("SELECT count(DISTINCT id) FROM runs").fetchone() == (4,)
    conn.close()


def test_message_hash_is_canonical() -> None:
    assert message_hash({"a": 1, "b": 2}) == message_hash({"b": 2, "a": 1})
    assert message_hash({"a": 1}) != message_hash({"a": 2})
