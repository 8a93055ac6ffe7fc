"""The checks that read the requests' history: tool results paired with the wrong calls, and
the store's side of reading history (requests rebuilt, batch analysis, summaries).

Hand-built requests pin the id pairing; recorded runs over real HTTP show the request
rebuilding, the batch analysis (with the ledger's findings on hosts that drop reasoning, see
test_checks_kept for the ledger itself) and the client-side id faults.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from analyzer.checks.history import tool_call_pairing
from analyzer.checks.loader import load_run, load_runs
from analyzer.checks.persist import analyze_run, analyze_runs, failure_summary
from analyzer.checks.records import Finding, Run, Step
from traces.harness import Agent
from traces.model import ToolCallRecord, ToolResultRecord
from traces.replay import ReplayPolicy
from traces.sim.config import SimConfig
from traces.sim.server import SimServer
from traces.store.database import open_for_writing

from recording import Recording, record, record_many, request_messages

# -- tool_result_unmatched_id and tool_call_unanswered --------------------------------------


def _assistant(*ids: str | None) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": i, "type": "function", "function": {"name": "f", "arguments": "{}"}} for i in ids
        ],
    }


def _tool(call_id: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": "ok"}


def _requests(*requests: list[dict[str, Any]]) -> Run:
    steps = [
        Step(index=i, finish_reason="tool_calls", request_messages=tuple(messages))
        for i, messages in enumerate(requests)
    ]
    return Run(id="ids", steps=tuple(steps))


START = [{"role": "user", "content": "go"}]


def test_a_result_answering_an_unknown_id_is_the_clients_error() -> None:
    first = [*START, _assistant("call_a", "call_b"), _tool("call_a"), _tool("call_x")]
    second = [*first, _assistant("call_c"), _tool("call_c")]
    findings = list(tool_call_pairing(_requests(START, first, second)))
    unmatched = [f for f in findings if f.kind == "tool_result_unmatched_id"]
    unanswered = [f for f in findings if f.kind == "tool_call_unanswered"]
    # Reported once, on the first request carrying it, though every later one repeats it.
    assert [(f.step, f.severity, f.layer) for f in unmatched] == [(1, "error", "client")]
    assert unmatched[0].evidence == {
        "tool_call_id": "call_x",
        "position": 3,
        "available_ids": ["call_a", "call_b"],
    }
    assert [(f.step, f.severity, f.layer) for f in unanswered] == [(1, "warning", "client")]
    assert unanswered[0].evidence == {"tool_call_id": "call_b", "call": 1, "position": 1}


def test_a_call_left_unanswered_before_the_next_turn() -> None:
    messages = [
        *START,
        _assistant("call_a", "call_b"),
        _tool("call_b"),
        {"role": "user", "content": "?"},
    ]
    [finding] = tool_call_pairing(_requests(messages))
    assert finding.kind == "tool_call_unanswered"
    assert finding.evidence["tool_call_id"] == "call_a"


@pytest.mark.parametrize(
    "messages",
    [
        # Every call answered, results in any order.
        [*START, _assistant("call_a", "call_b"), _tool("call_b"), _tool("call_a")],
        # A host that sent no id: the call goes back without one, the result answers "".
        [*START, _assistant(None), _tool("")],
        # A host that reused an id within a turn: two results answer it.
        [*START, _assistant("call_a", "call_a"), _tool("call_a"), _tool("call_a")],
        # Kimi-style ids the client rewrote consistently on both sides.
        [*START, _assistant("functions.f:0"), _tool("functions.f:0")],
        # A result may answer a call of an earlier turn (late result), not an error.
        [
            *START,
            _assistant("call_a"),
            _tool("call_a"),
            _assistant("call_b"),
            _tool("call_b"),
            _tool("call_a"),
        ],
    ],
)
def test_consistent_pairings_are_silent(messages: list[dict[str, Any]]) -> None:
    assert list(tool_call_pairing(_requests(messages))) == []


# -- the store: requests rebuilt, batch analysis, summaries ---------------------------------


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Clean and faulty runs recorded over HTTP; the buggy clients run the real harness with
    one deliberate mistake each."""
    db = tmp_path_factory.mktemp("history") / "t.duckdb"
    summaries = record_many(
        db,
        {
            "clean": Recording(sim=SimConfig()),
            "clean_stream": Recording(sim=SimConfig(), task="files", stream=True),
            "dropped": Recording(sim=SimConfig(faults={"reasoning_dropped_from_history": 1.0})),
            "dropped_stream": Recording(
                sim=SimConfig(faults={"reasoning_dropped_from_history": 1.0}), stream=True
            ),
            "last_only_stream": Recording(
                sim=SimConfig(dialect="vllm", faults={"reasoning_kept_last_only": 1.0}),
                dialect="vllm",
                stream=True,
                settings={"replay": ReplayPolicy(reasoning="reasoning")},
            ),
            "client_drop": Recording(
                sim=SimConfig(faults={"reasoning_dropped_from_history": 1.0}),
                settings={"replay": ReplayPolicy(reasoning="drop")},
            ),
        },
    )
    return db, {name: s.id for name, s in summaries.items()}


def test_request_messages_match_the_sql_macro(recorded: tuple[Path, dict[str, str]]) -> None:
    db, ids = recorded
    conn = duckdb.connect(str(db), read_only=True)
    try:
        for run_id in (ids["clean"], ids["clean_stream"]):
            run = load_run(conn, run_id)
            for step in run.steps:
                assert list(step.request_messages) == request_messages(conn, run_id, step.index)
            # Consecutive requests share the messages they have in common (no copies).
            first, second = run.steps[0], run.steps[1]
            assert all(
                a is b
                for a, b in zip(first.request_messages, second.request_messages, strict=False)
            )
    finally:
        conn.close()


def test_recorded_faults_and_their_negatives(recorded: tuple[Path, dict[str, str]]) -> None:
    db, ids = recorded
    conn = open_for_writing(db)
    try:
        found = analyze_runs(conn, list(ids.values()))
    finally:
        conn.close()
    kinds = {name: sorted({f.kind for f in found[run_id]}) for name, run_id in ids.items()}
    for name in ("clean", "clean_stream", "client_drop"):
        assert kinds[name] == [], (name, kinds[name])
    for name, step in (("dropped", 1), ("dropped_stream", 1), ("last_only_stream", 2)):
        [finding] = found[ids[name]]
        assert (finding.kind, finding.step) == ("reasoning_dropped_in_chain", step), name
    assert "cached_tokens" in found[ids["last_only_stream"]][0].evidence["signal"]


def test_batch_analysis_stores_findings_and_summaries(
    recorded: tuple[Path, dict[str, str]],
) -> None:
    db, ids = recorded
    conn = open_for_writing(db)
    try:
        everything = list(ids.values())
        batch = analyze_runs(conn, everything, chunk=2)  # three chunks, one transaction
        single = {run_id: analyze_run(conn, run_id) for run_id in everything}
        assert batch == single
        again = analyze_runs(conn, [*everything, "no-such-run"])
        assert again == batch and "no-such-run" not in again
        rows = conn.execute(
            "SELECT id, failure_summary, findings_by_kind FROM runs WHERE id IN "
            "(SELECT unnest(?::VARCHAR[]))",
            [everything],
        ).fetchall()
        stored = conn.execute("SELECT run_id, count(*) FROM findings GROUP BY run_id").fetchall()
    finally:
        conn.close()
    assert dict(stored) == {run_id: len(f) for run_id, f in batch.items() if f}
    summaries = {run_id: (summary, json.loads(by_kind)) for run_id, summary, by_kind in rows}
    assert summaries[ids["clean"]] == ("", {})
    assert summaries[ids["dropped"]] == (
        "warning: reasoning_dropped_in_chain×1",
        {"reasoning_dropped_in_chain": 1},
    )


def test_failure_summary_orders_by_severity_then_count() -> None:
    findings = [
        Finding("http_rate_limit", "warning", "provider", 0, {}),
        Finding("dropped_call", "error", "provider", 1, {}),
        Finding("reasoning_tokens_missing", "info", "provider", 1, {}),
        Finding("dropped_call", "error", "provider", 2, {}),
        Finding("tool_error", "warning", "tool", 2, {}),
        Finding("tool_error", "warning", "tool", 3, {}),
    ]
    assert failure_summary(findings) == (
        "error: dropped_call×2; warning: tool_error×2, http_rate_limit×1; "
        "info: reasoning_tokens_missing×1"
    )
    assert failure_summary([]) == ""


def test_load_runs_keeps_the_order_asked_for(recorded: tuple[Path, dict[str, str]]) -> None:
    db, ids = recorded
    conn = duckdb.connect(str(db), read_only=True)
    try:
        order = [ids["dropped"], "missing", ids["clean"]]
        assert [run.id for run in load_runs(conn, order)] == [ids["dropped"], ids["clean"]]
        with pytest.raises(KeyError):
            load_run(conn, "missing")
    finally:
        conn.close()


# -- client id mistakes over HTTP -------------------------------------------------------------


class WrongIdAgent(Agent):
    """A client that answers every tool call with a mangled id."""

    async def _run_tool(self, call: ToolCallRecord, reply_id: str | None) -> ToolResultRecord:
        result = await super()._run_tool(call, reply_id)
        return result.model_copy(update={"tool_call_id": f"{reply_id}_x"})


class ForgetfulAgent(Agent):
    """A client that sends back only the first result of a turn with parallel calls."""

    async def _run_tools(
        self, index: int, calls: list[ToolCallRecord], reply_ids: list[str | None]
    ) -> None:
        await super()._run_tools(index, calls[:1], reply_ids[:1])


@pytest.mark.parametrize(
    ("agent", "task", "kind", "step"),
    [
        (WrongIdAgent, "chain_short", "tool_result_unmatched_id", 1),
        # files: the third request follows the first turn with parallel reads.
        (ForgetfulAgent, "files", "tool_call_unanswered", 3),
    ],
)
def test_client_id_mistakes_over_http(
    agent: type[Agent],
    task: str,
    kind: str,
    step: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("traces.runner.Agent", agent)
    db = tmp_path / "t.duckdb"
    with SimServer(SimConfig()) as sim:
        [summary] = record(db, sim.base_url, task)
    conn = open_for_writing(db)
    try:
        findings = analyze_run(conn, summary.id)
    finally:
        conn.close()
    found = [f for f in findings if f.kind == kind]
    assert found and {f.layer for f in found} == {"client"}
    assert min(f.step for f in found if f.step is not None) == step
    # Nothing is blamed on the host for what the client built.
    assert not [f for f in findings if f.layer == "provider"]
