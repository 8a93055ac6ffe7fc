"""The checks that read the requests' history: reasoning the host did not keep inside a tool
chain (prompt growth, cached tokens) and tool results paired with the wrong calls.

Hand-built runs pin the arithmetic and every case that must stay silent (the client dropped
the reasoning itself, a new user turn, no usage, tiny reasoning, cache misses); recorded runs
over real HTTP show the request rebuilding, the batch analysis and the client-side id faults.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import duckdb
import pytest

from analyzer.checks.history import (
    chain_transitions,
    reasoning_dropped_in_chain,
    sent_reasoning,
    tool_call_pairing,
)
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

Host = Literal["keep", "drop", "last_only"]

REASONING = [40, 18, 65, 30, 52, 24, 47, 35]
"""Reasoning tokens of each turn: varied, as a real model's are."""


def _words(n: int, word: str = "w") -> str:
    return " ".join(f"{word}{i}" for i in range(n))


def chain_run(
    host: Host = "keep",
    *,
    reasoning: list[int] = REASONING,
    tool_tokens: int | list[int] = 30,
    send_back: bool = True,
    cached: bool = True,
    usage: bool = True,
    user_turns: bool = False,
) -> Run:
    """A tool chain as a client records it against a host that keeps, drops, or keeps only
    the latest turn's reasoning; token counts follow what that host would render.
    `user_turns` adds a user message after every tool result (no longer one chain)."""
    conversation: list[dict[str, Any]] = [
        {"role": "system", "content": "You open boxes."},
        {"role": "user", "content": "Open every box."},
    ]
    tools = tool_tokens if isinstance(tool_tokens, list) else [tool_tokens] * len(reasoning)
    steps: list[Step] = []
    prompts = [200]
    for i, r in enumerate(reasoning):
        if i > 0:
            lost = 0
            if host == "drop" and send_back:
                lost = reasoning[i - 1] + 2  # its text and the think tags around it
            elif host == "last_only" and send_back and i >= 2:
                lost = reasoning[i - 2] + 2  # the turn before the latest loses it now
            completion = reasoning[i - 1] + 10
            prompts.append(prompts[-1] + completion + tools[i - 1] + 5 - lost)
        cache: int | None = None
        if cached and i > 0:
            # A warm cache holds the previous prompt, up to where this one renders it anew
            # (all but the generation prompt's 2 tokens). Keeping only the latest reasoning
            # re-renders the turn before it: the prompts agree up to its reasoning only.
            cache = prompts[i - 1] - 2
            if host == "last_only" and send_back and i >= 2:
                cache = prompts[i - 2] - 2 - (reasoning[i - 3] + 2 if i >= 3 else 0)
        steps.append(
            Step(
                index=i,
                finish_reason="tool_calls",
                reasoning=_words(r, "r"),
                reasoning_source="reasoning_content",
                prompt_tokens=prompts[i] if usage else None,
                completion_tokens=(r + 10) if usage else None,
                reasoning_tokens=r if usage else None,
                reasoning_tokens_source="reported" if usage else "estimated",
                cached_tokens=cache if usage else None,
                request_messages=tuple(conversation),
            )
        )
        turn: dict[str, Any] = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": f"call_{i}",
                    "type": "function",
                    "function": {"name": "open_box", "arguments": "{}"},
                }
            ],
        }
        if send_back:
            turn["reasoning_content"] = _words(r, "r")
        conversation.append(turn)
        conversation.append(
            {"role": "tool", "tool_call_id": f"call_{i}", "content": _words(tools[i], "t")}
        )
        if user_turns:
            conversation.append({"role": "user", "content": f"Go on ({i})."})
    return Run(id="chain", dialect="openai", steps=tuple(steps))


def _dropped(run: Run) -> list[Finding]:
    return list(reasoning_dropped_in_chain(run))


# -- reasoning_dropped_in_chain: positives ------------------------------------------------


def test_a_host_that_keeps_the_reasoning_is_silent() -> None:
    run = chain_run("keep")
    assert len(chain_transitions(run)) == len(REASONING) - 1
    assert _dropped(run) == []


def test_a_host_dropping_every_turns_reasoning_shows_in_prompt_growth() -> None:
    [finding] = _dropped(chain_run("drop"))
    assert (finding.kind, finding.severity, finding.layer, finding.step) == (
        "reasoning_dropped_in_chain",
        "warning",
        "provider",
        1,
    )
    evidence = finding.evidence
    assert evidence["signal"] == "prompt_growth"  # the cache stays warm: same rendering
    assert evidence["steps"] == [1, len(REASONING) - 1]
    assert evidence["affected_steps"] == len(REASONING) - 1
    assert evidence["retained_fraction"] == 0.0
    # What each request lost against the fitted overhead (the think tags land in the latter).
    assert evidence["estimated_dropped_tokens"] == sum(REASONING[:-1])
    growth = evidence["prompt_growth"]
    assert growth["slope"] == -1.0 and growth["overhead_tokens"] == 3.0  # 5 - 2 tags
    assert growth["example"]["growth_residual"] == 35 - 42


def test_a_host_keeping_only_the_latest_reasoning_shows_in_cached_tokens() -> None:
    [finding] = _dropped(chain_run("last_only"))
    assert finding.step == 2  # the third request is the first to lose an older turn
    assert "cached_tokens" in finding.evidence["signal"].split("+")
    cache = finding.evidence["cached_tokens"]
    assert cache["affected_steps"] == cache["evaluated_steps"] == len(REASONING) - 2
    assert cache["example"]["cached_tokens"] < cache["example"]["previous_prompt_tokens"] - 32


def test_cached_tokens_alone_suffice_when_growth_cannot_tell() -> None:
    # Constant reasoning: the slope is undefined, yet the cache still falls every step.
    run = chain_run("last_only", reasoning=[40] * 8)
    [finding] = _dropped(run)
    assert finding.evidence["signal"] == "cached_tokens" and finding.step == 2


def test_tool_results_miscounted_by_a_third_do_not_hide_a_drop() -> None:
    # The host's tokenizer counts tool output 30% below our estimate; the reasoning varies
    # more than the tool results, so the pairs that count still see the slope of -1.
    tools = [30, 34, 28, 31, 36, 29, 33, 30]
    run = chain_run("drop", tool_tokens=tools, cached=False)
    noisy = tuple(_shift_prompt(step, -round(0.3 * sum(tools[: step.index]))) for step in run.steps)
    [finding] = _dropped(Run(id="noisy", steps=noisy))
    assert finding.evidence["retained_fraction"] <= 0.2


def _shift_prompt(step: Step, delta: int) -> Step:
    assert step.prompt_tokens is not None
    return replace(step, prompt_tokens=step.prompt_tokens + delta)


# -- reasoning_dropped_in_chain: what must stay silent ----------------------------------------


def test_client_that_did_not_send_the_reasoning_is_not_the_hosts_fault() -> None:
    # replay policy `drop`: the prompt grows without the reasoning, rightly.
    assert _dropped(chain_run("drop", send_back=False)) == []
    assert _dropped(chain_run("last_only", send_back=False)) == []


def test_a_summary_of_hidden_reasoning_is_not_the_reasoning() -> None:
    # The host counted 4x the reasoning it showed: the client could only send the summary
    # back, so a prompt that grows by the summary alone is no drop.
    run = chain_run("drop")
    summarized = tuple(
        replace(step, reasoning=_words((step.reasoning_tokens or 0) // 4, "s"))
        for step in run.steps
    )
    assert _dropped(Run(id="summary", steps=summarized)) == []


def test_missing_usage_is_silent() -> None:
    assert _dropped(chain_run("drop", usage=False)) == []


def test_small_reasoning_is_within_template_jitter() -> None:
    assert _dropped(chain_run("drop", reasoning=[3, 5, 2, 6, 4, 7, 3, 5])) == []


def test_tool_results_varying_more_than_reasoning_are_not_evidence() -> None:
    # Every pair of transitions differs more in tool output than in reasoning: no pair is
    # informative, so a 30% tokenizer mismatch on big tool results cannot fake a drop.
    tools = [40, 400, 90, 700, 150, 300, 60, 500]
    run = chain_run("keep", tool_tokens=tools, cached=False)
    skewed = tuple(
        _shift_prompt(step, -round(0.3 * sum(tools[: step.index]))) for step in run.steps
    )
    assert _dropped(Run(id="skewed", steps=skewed)) == []


def test_a_new_user_turn_is_not_a_chain_step() -> None:
    # Templates legitimately drop the reasoning before the last user message.
    run = chain_run("drop", user_turns=True)
    assert chain_transitions(run) == []
    assert _dropped(run) == []


def test_cache_misses_are_not_a_fall() -> None:
    # Zeros (eviction, another replica) on most steps of a faithful host: no evidence.
    run = chain_run("keep")
    missed = tuple(replace(s, cached_tokens=0) if s.index % 3 else s for s in run.steps)
    assert _dropped(Run(id="misses", steps=missed)) == []


def test_a_single_cache_fall_is_not_systematic() -> None:
    run = chain_run("keep")
    steps = list(run.steps)
    steps[3] = replace(steps[3], cached_tokens=150)  # one partial hit, far short
    assert _dropped(Run(id="one-fall", steps=tuple(steps))) == []


@pytest.mark.parametrize(
    ("message", "sent"),
    [
        ({"role": "assistant", "reasoning_content": "because"}, True),
        ({"role": "assistant", "reasoning": "because"}, True),
        (
            {"role": "assistant", "reasoning_details": [{"type": "reasoning.text", "text": "b"}]},
            True,
        ),
        ({"role": "assistant", "content": "<think>\nbecause\n</think>\n\nok"}, True),
        ({"role": "assistant", "content": "<|channel|>analysis<|message|>b<|end|>"}, True),
        ({"role": "assistant", "content": "<think>\n\n</think>\n\nok"}, False),
        ({"role": "assistant", "content": "ok", "reasoning_content": ""}, False),
        ({"role": "assistant", "content": None, "reasoning_details": []}, False),
    ],
)
def test_reasoning_sent_back_in_any_form(message: dict[str, Any], sent: bool) -> None:
    assert sent_reasoning(message) is sent


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
