"""Every dialect through the harness: reasoning read from the right place, sent back in the
field the host reads, ids and arguments in the family's form, stream quirks assembled.
Verified from the stored request bodies, over real HTTP, with the real openai client."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from traces.dialects import DIALECTS
from traces.families import FAMILIES
from traces.replay import ReplayPolicy
from traces.retry import RetryPolicy
from traces.sim.config import SimConfig
from traces.sim.server import SimServer
from traces.store.database import open_for_reading

from recording import record, request_messages

# Slow as a whole, outside the fast path `pytest -m "not slow"`: full recordings against every
# dialect, streamed and not.
pytestmark = pytest.mark.slow

# Where each response location is read from (OpenRouter sends `reasoning` beside details).
EXPECTED_SOURCE = {
    "reasoning_content": "reasoning_content",
    "reasoning": "reasoning",
    "reasoning_details": "reasoning_details",
    "think_tag": "think_tag",
    "harmony": "harmony",
}


def _source_for(dialect_name: str) -> str:
    dialect = DIALECTS[dialect_name]
    if "reasoning" in dialect.reasoning_copies:
        return "reasoning"
    return EXPECTED_SOURCE[dialect.reasoning_out]


def _replayed_reasoning(turn: dict[str, object], location: str) -> object:
    if location == "think_tag":
        content = turn.get("content")
        assert isinstance(content, str) and content.lstrip().startswith("<think>")
        return content
    return turn.get(location)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_dialect_round_trip(tmp_path: Path, dialect: str, stream: bool) -> None:
    spec = DIALECTS[dialect]
    db = tmp_path / "t.duckdb"
    with SimServer(SimConfig(dialect=dialect)) as server:
        [summary] = record(
            db,
            server.base_url,
            stream=stream,
            replay=ReplayPolicy.for_dialect(spec),
            extra_body=dict(spec.extra_body),
        )
    assert summary.outcome.success is True, summary.outcome
    conn = open_for_reading(db)
    sources = {s for (s,) in conn.execute("SELECT reasoning_source FROM steps").fetchall()}
    assert sources == {_source_for(dialect)}
    reasoning = dict(conn.execute("SELECT idx, reasoning FROM steps").fetchall())
    ids = [i for (i,) in conn.execute("SELECT id FROM tool_calls ORDER BY step_idx").fetchall()]
    if FAMILIES[spec.family].id_style == "kimi":
        assert ids == [f"functions.open_box:{n}" for n in range(5)]
    else:
        assert all(i.startswith("call_") for i in ids)
    # The turn of step 2, as sent back in the request of step 3.
    turn = request_messages(conn, summary.id, 3)[-2]
    location = "reasoning" if spec.reasoning_back == "harmony" else spec.reasoning_back
    sent = _replayed_reasoning(turn, location)
    assert sent, (location, turn)
    if location == "reasoning_details":
        assert isinstance(sent, list) and sent[0]["text"] == reasoning[2]
    elif location != "think_tag":
        assert sent == reasoning[2]
    # Nothing else carries it: a host reads one place, and duplicates cost tokens.
    others = {"reasoning_content", "reasoning", "reasoning_details"} - {location}
    others -= set(spec.reasoning_copies)
    assert not any(turn.get(field) for field in others), turn
    tool_turn = request_messages(conn, summary.id, 3)[-1]
    assert tool_turn["tool_call_id"] == turn["tool_calls"][0]["id"]  # type: ignore[index]
    conn.close()


def _prompt_tokens(db: Path, run_id: str) -> list[int]:
    conn = open_for_reading(db)
    rows = conn.execute(
        "SELECT prompt_tokens FROM steps WHERE run_id = ? ORDER BY idx", [run_id]
    ).fetchall()
    conn.close()
    return [r[0] for r in rows]


def test_reasoning_sent_in_a_field_the_host_ignores_vanishes_from_the_prompt(
    tmp_path: Path,
) -> None:
    db = tmp_path / "t.duckdb"
    with SimServer(SimConfig(dialect="vllm")) as server:
        [right] = record(db, server.base_url, replay=ReplayPolicy(reasoning="reasoning"))
        [wrong] = record(db, server.base_url, replay=ReplayPolicy(reasoning="reasoning_content"))
        [dropped] = record(db, server.base_url, replay=ReplayPolicy(reasoning="drop"))
    kept, ignored, none = (_prompt_tokens(db, r.id) for r in (right, wrong, dropped))
    assert kept[0] == ignored[0] == none[0]  # nothing to replay yet
    assert all(k > i for k, i in zip(kept[1:], ignored[1:], strict=True))
    assert ignored == none  # vLLM never saw the reasoning sent in reasoning_content


def test_deepseek_refuses_history_without_reasoning(tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    with SimServer(SimConfig(dialect="deepseek")) as server:
        [summary] = record(db, server.base_url, replay=ReplayPolicy(reasoning="drop"))
    assert summary.outcome.termination == "provider_error"
    assert summary.outcome.steps == 2
    conn = open_for_reading(db)
    row = conn.execute("SELECT error_kind, error_status, error_body FROM steps WHERE idx = 1")
    kind, status, body = row.fetchone()  # type: ignore[misc]
    assert (kind, status) == ("bad_request", 400) and "reasoning_content" in body
    conn.close()


def test_kimi_ids_and_object_arguments_are_sent_back_as_the_profile_says(tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    policy = ReplayPolicy(reasoning="same", ids="kimi", arguments="object")
    with SimServer(SimConfig(dialect="openai")) as server:
        [summary] = record(db, server.base_url, replay=policy)
    assert summary.outcome.success is True
    conn = open_for_reading(db)
    messages = request_messages(conn, summary.id, 5)
    turns = [m for m in messages if m["role"] == "assistant"]
    results = [m for m in messages if m["role"] == "tool"]
    assert [t["tool_calls"][0]["id"] for t in turns] == [
        f"functions.open_box:{i}" for i in range(5)
    ]
    assert [r["tool_call_id"] for r in results] == [f"functions.open_box:{i}" for i in range(5)]
    assert all(isinstance(t["tool_calls"][0]["function"]["arguments"], dict) for t in turns)
    # What the model sent is still recorded as sent.
    raw = conn.execute("SELECT DISTINCT id_format, arguments_type FROM tool_calls").fetchall()
    assert raw == [("openai", "string")]
    conn.close()


STREAM_QUIRKS = {
    "stream_index_missing": "tool_call_index_missing",
    "stream_fields_repeated": "tool_call_name_repeated",
    "stream_arguments_cumulative": "tool_call_arguments_cumulative",
    "stream_index_from_one": "tool_call_index_not_zero_based",
    "stream_index_split": "tool_call_index_split",
}


@pytest.mark.parametrize("fault", sorted(STREAM_QUIRKS))
def test_stream_quirks_are_assembled_and_flagged(tmp_path: Path, fault: str) -> None:
    db = tmp_path / "t.duckdb"
    with SimServer(SimConfig(faults={fault: 1.0})) as server:
        [summary] = record(db, server.base_url, task="files", stream=True)
    # The intended calls were rebuilt: the task still succeeds, arguments all valid.
    assert summary.outcome.success is True, summary.outcome
    conn = open_for_reading(db)
    assert conn.execute("SELECT bool_and(json_valid) FROM tool_calls").fetchone() == (True,)
    kinds = {
        a["kind"]
        for (raw,) in conn.execute(
            "SELECT anomalies FROM steps WHERE anomalies IS NOT NULL"
        ).fetchall()
        for a in json.loads(raw)
    }
    assert STREAM_QUIRKS[fault] in kinds, kinds
    # Parallel calls keep distinct ids and their order.
    ids = conn.execute(
        "SELECT list(id ORDER BY call_idx) FROM tool_calls GROUP BY step_idx HAVING count(*) > 1"
    ).fetchall()
    assert ids and all(len(set(i)) == len(i) for (i,) in ids)
    conn.close()


def test_clean_streams_have_no_anomalies(sim: SimServer, db_path: Path) -> None:
    record(db_path, sim.base_url, task="files", stream=True)
    conn = open_for_reading(db_path)
    assert conn.execute("SELECT count(*) FROM steps WHERE anomalies IS NOT NULL").fetchone() == (0,)
    conn.close()


def test_transient_faults_are_retried_until_they_pass(tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    faults = {"rate_limit_429": 0.4, "server_error_5xx": 0.3}
    with SimServer(SimConfig(faults=faults)) as server:
        [summary] = record(db, server.base_url, retry=RetryPolicy(base_s=0.0, max_retries=8))
    assert summary.outcome.success is True
    conn = open_for_reading(db)
    retried = conn.execute("SELECT sum(retries) FROM steps").fetchone()
    assert retried is not None and retried[0] > 0
    conn.close()
