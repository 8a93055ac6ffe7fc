"""Every simulator fault, recorded over real HTTP and analyzed: the expected finding kind
appears on the expected step with the expected layer, and every finding kind has such a fault
(or a stated reason why no fault can produce it). Host faults that break the response are
recorded, never raised, and the transient ones are retried until they pass. And every dialect,
recorded clean, streaming and not, yields no provider-layer finding at all."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
from shared_work import session_shared

from analyzer.checks.catalogue import KINDS
from analyzer.checks.persist import analyze_run, analyze_runs
from analyzer.checks.records import Finding
from traces.client import EndpointConfig
from traces.dialects import DIALECTS
from traces.families import KIMI_ID
from traces.model import Termination
from traces.probes.catalogue import PROBES_BY_NAME
from traces.probes.runner import ProbePlan, ProbeTarget, probe_targets
from traces.replay import ReplayPolicy
from traces.retry import RetryPolicy
from traces.runner import RunSummary
from traces.sim.config import SimConfig
from traces.sim.faults.catalogue import FAULTS
from traces.sim.faults.selection import TRANSIENT
from traces.sim.server import SimServer
from traces.store.database import open_for_reading, open_for_writing
from traces.store.recorder import Recorder

from recording import Recording, record_many, recorded_once

# Slow as a whole, outside the fast path `pytest -m "not slow"`: every fault recorded over HTTP
# against its own simulator.
pytestmark = pytest.mark.slow

FAULT_FINDINGS: dict[str, tuple[str, str, int]] = {
    # The model's own behaviour: a loop is reported on the third identical step.
    "repeated_call": ("repeated_call", "model", 2),
    # The second step repeats the first once; the third moves on.
    "repeated_call_once": ("repeated_call_once", "model", 1),
    # Recorded with tool_choice `required`: the model calls anyway until the answer turn (the
    # sixth step of chain_short), where the ignored choice lets it answer.
    "tool_choice_ignored": ("tool_choice_ignored", "provider", 5),
    # The misnamed argument fails the tool; the retry on the next step succeeds.
    "misnamed_argument": ("tool_error", "model", 0),
    # A made-up id: the tool rightly answers it does not exist; the model's mistake.
    "invented_id": ("tool_error", "model", 0),
    "hallucinated_tool": ("unknown_tool", "model", 0),
    # The host sent no usage at all: reasoning without its token count, from the first step.
    "usage_omitted": ("reasoning_tokens_missing", "provider", 0),
    "leaked_tokens_content": ("leaked_special_tokens", "provider", 0),
    "leaked_tokens_reasoning": ("leaked_special_tokens", "provider", 0),
    # Recorded on a Kimi host: `<tool_call>` is not Kimi's syntax, so the model wrote it.
    "foreign_call_tags": ("leaked_special_tokens", "model", 0),
    "tool_call_as_text": ("tool_call_as_text", "model", 0),
    "dropped_call": ("dropped_call", "provider", 0),
    "invalid_json_arguments": ("invalid_json_arguments", "model", 0),
    "wrong_type_arguments": ("schema_violation", "model", 0),
    "emptied_arguments": ("empty_arguments", "provider", 0),
    # The late faults leave the first turn clean: the finding is on the second step.
    "late_emptied_arguments": ("empty_arguments", "provider", 1),
    "tag_in_name": ("malformed_tool_name", "provider", 0),
    "tag_in_key": ("malformed_argument_key", "provider", 0),
    "object_arguments": ("object_arguments", "provider", 0),
    "rewritten_ids": ("tool_call_id_format", "provider", 0),
    # Recorded on a Kimi host (moonshot): `call_…` ids its parser rejects, from turn 2 on.
    "late_rewritten_ids": ("tool_call_id_format", "provider", 1),
    # chain_short makes one call per step: the second step reuses the first step's id.
    "duplicated_ids": ("duplicate_tool_call_id", "provider", 1),
    "missing_ids": ("tool_call_id_missing", "provider", 0),
    "finish_stop_with_calls": ("finish_stop_with_calls", "provider", 0),
    # Only the answer turn (the sixth step of chain_short) can carry it.
    "finish_tool_calls_without_calls": ("finish_tool_calls_without_calls", "provider", 5),
    "finish_length_with_calls": ("finish_length_with_calls", "provider", 0),
    # Recorded with max_tokens (the check compares completion_tokens with it).
    "finish_length_hidden": ("finish_length_hidden", "provider", 0),
    "stream_fields_repeated": ("stream_tool_call_name_repeated", "provider", 0),
    "stream_id_repeated": ("stream_tool_call_id_repeated", "provider", 0),
    "stream_id_changed": ("stream_tool_call_id_changed", "provider", 0),
    # files: the first step's single call is one chunk; the second step's grep is split.
    "stream_arguments_cumulative": ("stream_tool_call_arguments_cumulative", "provider", 1),
    "stream_arguments_object": ("stream_tool_call_arguments_object_in_stream", "provider", 0),
    "stream_index_split": ("stream_tool_call_index_split", "provider", 0),
    # files: the third step reads every file that matched, in parallel, all under index 0.
    "stream_index_collision": ("arguments_merged", "provider", 2),
    # chain_short never calls two tools at once: the undeclared extra call makes the pair
    # that collides under one index with two different names.
    "hallucinated_tool+stream_index_collision": ("stream_tool_call_name_changed", "provider", 0),
    "stream_index_from_one": ("stream_tool_call_index_not_zero_based", "provider", 0),
    "stream_index_missing": ("stream_tool_call_index_missing", "provider", 0),
    "stream_finish_twice": ("stream_finish_reason_changed", "provider", 0),
    "stream_broken_chunk": ("stream_unparsable_chunk", "provider", 0),
    # HTTP ends the stream cleanly: the stream's fault on every attempt, retried or not, never
    # a lost connection (`http_connection` is `connection_reset`'s).
    "stream_truncated": ("stream_without_done", "provider", 0),
    "stream_usage_every_chunk": ("stream_usage_before_last_chunk", "provider", 0),
    # files: only the answer turn, the fifth step, has both reasoning and content.
    "stream_content_with_reasoning": ("stream_content_and_reasoning_in_one_delta", "provider", 4),
    "stream_split_utf8": ("stream_replacement_char", "provider", 0),
    # chain_short: the second step is the first with 120 characters of reasoning to buffer.
    "stream_single_chunk": ("stream_single_chunk", "provider", 1),
    # The client dropped the reasoning the host requires back: the 400 is on the client.
    "reasoning_required_400": ("http_reasoning_required", "client", 1),
    "rate_limit_429": ("http_rate_limit", "provider", 0),
    "server_error_5xx": ("http_server_error", "provider", 0),
    "timeout": ("http_timeout", "provider", 0),
    "connection_reset": ("http_connection", "provider", 0),
    # The answer never completes: the request deadline ends each attempt.
    "endless_response": ("http_timeout", "provider", 0),
    # Nothing generated (a stream of only [DONE]): a failed call of its own kind, never a
    # call the parser dropped.
    "empty_response": ("empty_response", "provider", 0),
    # A body no strict parser takes is kept raw, and blamed on the host.
    "non_json_numbers": ("http_invalid_response", "provider", 0),
    "deeply_nested_json": ("http_invalid_response", "provider", 0),
    "auth_echoed_in_error": ("http_auth", "client", 0),
    "unauthorized_401": ("http_auth", "client", 0),
    "payment_required_402": ("http_other", "provider", 0),
    "model_not_found_404": ("http_not_found", "client", 0),
    "bad_request_400": ("http_bad_request", "client", 0),
    "template_error_400": ("http_template_error", "provider", 0),
    # The first request with a call in its history is the second.
    "argument_type_error_500": ("http_argument_type_error", "provider", 1),
    # The first request with a tool result in its history is the second.
    "template_error_500": ("http_template_error", "provider", 1),
    # The history does not fit: the client's. A small request overflowing: the host's.
    "context_overflow_400": ("http_context_overflow", "client", 0),
    "host_context_overflow_400": ("http_context_overflow", "provider", 0),
    "invalid_response_200": ("http_invalid_response", "provider", 0),
    "reasoning_swallows_answer": ("reasoning_swallows_answer", "provider", 5),
    "reasoning_in_content": ("reasoning_in_content", "provider", 0),
    "reasoning_close_tag_only": ("reasoning_in_content", "provider", 0),
    "harmony_in_content": ("harmony_unparsed", "provider", 0),
    "harmony_stripped": ("harmony_unparsed", "provider", 0),
    "late_empty_turn": ("empty_turn_after_reasoning", "provider", 1),
    "reasoning_tokens_missing": ("reasoning_tokens_missing", "provider", 0),
    "reasoning_tokens_outside_completion": ("reasoning_tokens_outside_completion", "provider", 0),
    # The second request is the first to carry reasoning back: prompt growth shows the loss.
    "reasoning_dropped_from_history": ("reasoning_dropped_in_chain", "provider", 1),
    # Two turns with reasoning are needed before the older one can be stripped: cached tokens
    # fall (and the prompt grows too little) from the third request on.
    "reasoning_kept_last_only": ("reasoning_dropped_in_chain", "provider", 2),
    # The second request is the first to carry a tool result back.
    "tool_results_dropped": ("tool_results_dropped", "provider", 1),
    # research: its first search result is already longer than the host keeps.
    "tool_results_truncated": ("tool_results_truncated", "provider", 1),
    # files: results of very different lengths and quote counts tell escaping from overhead.
    "history_html_escaped": ("history_rewritten", "provider", 1),
    # The first request is already longer than everything sent by the hidden prompt.
    "system_prompt_injected": ("hidden_system_prompt", "provider", 0),
    # Sampling parameters the host ignores, recorded with the parameter set (see _recording):
    # the budget is run past on the first turn; the stop sequence, the logprobs and the JSON
    # format concern the answer text, which only the last turn of chain_short has.
    "max_tokens_ignored": ("max_tokens_ignored", "provider", 0),
    "stop_ignored": ("stop_ignored", "provider", 5),
    "n_ignored": ("n_ignored", "provider", 0),
    "logprobs_ignored": ("logprobs_ignored", "provider", 5),
    "response_format_ignored": ("response_format_ignored", "provider", 5),
}
"""Simulator fault -> (finding kind, layer, first step it must be reported on). A key joining
faults with `+` records them together, for a kind that only their combination shows."""

NOT_BLAMED: dict[str, frozenset[str]] = {
    # Nothing was generated: no call can have been dropped.
    "empty_response": frozenset({"dropped_call"}),
    # A template that raised inside a 500 is no generic server failure.
    "template_error_500": frozenset({"http_server_error"}),
}
"""Faults -> finding kinds they must not produce: the wrong reading of that fault, once made."""

PROBE_FINDINGS: dict[str, tuple[str, str, str]] = {
    # A recorded run never sends one request twice; the seed probe sends it three times.
    "seed_ignored": ("nondeterministic_output", "provider", "seed"),
}
"""Simulator faults only a probe shows -> (finding kind, layer, the probe that shows it)."""

SAMPLING_SETTINGS: dict[str, dict[str, Any]] = {
    "max_tokens_ignored": {"max_tokens": 8},
    "stop_ignored": {"extra_body": {"stop": ["The treasure is"]}},
    "n_ignored": {"extra_body": {"n": 2}},
    "logprobs_ignored": {"extra_body": {"logprobs": True, "top_logprobs": 1}},
    "response_format_ignored": {"extra_body": {"response_format": {"type": "json_object"}}},
}
"""Harness settings that set the parameter a sampling fault makes the host ignore."""

WITHOUT_FINDING: dict[str, str] = {
    "arguments_reencoded": "the sample tasks' calls carry the same few quotes on every step, so "
    "the tokens a second encoding adds read as template overhead; test_checks_kept finds it "
    "(history_rewritten) where arguments differ in size",
    "auth_echoed": "the key it echoes is redacted before anything is stored, so no check sees "
    "it (test_hostile checks that it is nowhere)",
}
"""Simulator faults no finding reports, each for the reason beside it."""

NOT_FROM_FAULTS = frozenset(
    {
        # Only an anomaly kind newer than these checks becomes `stream_other`; the recorder of
        # this version notes none, whatever the host sends.
        "stream_other",
        # The client's own history mistakes, not the host's: no simulator fault can make the
        # harness pair a result with a wrong id or leave a call unanswered. Recorded over HTTP
        # with a harness that makes them in test_checks_history.
        "tool_result_unmatched_id",
        "tool_call_unanswered",
        # Part of the history lost, the counts unable to say which: a host that drops the
        # results (or the reasoning) makes it only on runs whose results and reasoning add
        # alike on every step, which no scenario's task does (each is decided, above); its
        # ledgers are built in test_checks_kept.
        "history_lost",
    }
)
"""Finding kinds no simulator fault produces, each for the reason beside it."""

_TASKS = {
    "stream_single_chunk": "chain_short",
    "tool_results_truncated": "research",
    "history_html_escaped": "files",
}
"""Faults recorded on another task than their stage's default (`files` for stream faults,
`chain_short` for the others): `files`' texts are all too short to show a buffered stream;
`chain_short`'s results are all short (nothing to cut) and alike (escaping reads as
overhead)."""

_RETRIED = TRANSIENT | {"argument_type_error_500", "template_error_500"}
"""Faults the harness retries (transient ones, and a 500 that fails again): one quick retry."""


def _recording(scenario: str) -> Recording:
    faults = scenario.split("+")
    sim: dict[str, Any] = {"faults": dict.fromkeys(faults, 1.0)}
    settings: dict[str, Any] = {}
    rec: dict[str, Any] = {}
    if any(fault.startswith("stream_") for fault in faults):
        rec["stream"] = True
    if scenario.startswith("stream_"):
        rec["task"] = _TASKS.get(scenario, "files")
    elif scenario in _TASKS:
        rec["task"] = _TASKS[scenario]
    if "reasoning_required_400" in faults:
        settings["replay"] = ReplayPolicy(reasoning="drop")
    if set(faults) & _RETRIED:
        settings["retry"] = RetryPolicy(base_s=0.0, max_retries=1)
    if "timeout" in faults:
        # The simulator holds the answer longer than the client waits.
        sim["timeout_s"] = 2.0
        rec["timeout_s"] = 0.2
    if "endless_response" in faults:
        rec["timeout_s"] = 0.2
    if "connection_reset" in faults:
        rec["stream"] = True  # cut mid-stream: the events before the cut are kept
    if "finish_length_hidden" in faults:
        settings["max_tokens"] = 512
    if "foreign_call_tags" in faults:
        # A family whose calls are not `<tool_call>` blocks (the fault fires on no other).
        sim["dialect"] = rec["dialect"] = "moonshot"
        settings["replay"] = ReplayPolicy.for_dialect(DIALECTS["moonshot"])
    if "late_rewritten_ids" in faults:
        # A Kimi host: the family's own ids are expected, so `call_…` ones are rejected.
        sim["dialect"] = rec["dialect"] = "moonshot"
        settings["replay"] = ReplayPolicy.for_dialect(DIALECTS["moonshot"])
    if "tool_choice_ignored" in faults:
        settings["extra_body"] = {"tool_choice": "required"}
    for fault in faults:
        settings.update(SAMPLING_SETTINGS.get(fault, {}))
    return Recording(sim=SimConfig(**sim), settings=settings, **rec)


def _clean_recordings() -> dict[str, Recording]:
    """Every dialect recorded clean: a short chain streamed and not, and the files task
    streamed, each with its dialect's replay policy and extra body."""
    recordings = {}
    for name, dialect in DIALECTS.items():
        settings = {
            "replay": ReplayPolicy.for_dialect(dialect),
            "extra_body": dict(dialect.extra_body),
        }
        for task, stream in (("chain_short", False), ("chain_short", True), ("files", True)):
            recordings[f"{name}/{task}/{'stream' if stream else 'plain'}"] = Recording(
                sim=SimConfig(dialect=name),
                task=task,
                stream=stream,
                dialect=name,
                settings=settings,
            )
    return recordings


def recorded_corpus(
    tmp_path_factory: pytest.TempPathFactory, name: str
) -> tuple[Path, dict[str, RunSummary]]:
    """A store of its own (`name`: its folder) holding every scenario of FAULT_FINDINGS (keyed
    by scenario) and every dialect recorded clean (`dialect/task/stream|plain`), with the
    runs' summaries. Recorded once per test run: test_analyze_equivalence analyzes the same
    store."""
    db = tmp_path_factory.mktemp(name) / "t.duckdb"
    shared = session_shared(tmp_path_factory)
    return db, recorded_once(shared, CORPUS, corpus_recordings(), db)


CORPUS = "fault-corpus"
"""The corpus's name in the run's shared folder; conftest starts recording it in the
background when a module that analyzes it is collected (`recording_in_background`)."""


def corpus_recordings() -> dict[str, Recording]:
    """What `recorded_corpus` records: every scenario of FAULT_FINDINGS, every dialect clean."""
    return {fault: _recording(fault) for fault in FAULT_FINDINGS} | _clean_recordings()


@pytest.fixture(scope="module")
def fault_findings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Finding]]:
    db, every = recorded_corpus(tmp_path_factory, "faults")
    summaries = {fault: every[fault] for fault in FAULT_FINDINGS}
    conn = open_for_writing(db)
    try:
        # The batch path, as `traces analyze` takes it; the clean runs below go one by one.
        found = analyze_runs(conn, [s.id for s in summaries.values()])
        return {fault: found[s.id] for fault, s in summaries.items()}
    finally:
        conn.close()


def test_every_fault_is_mapped() -> None:
    mapped = {scenario for scenario in FAULT_FINDINGS if "+" not in scenario}
    assert not mapped & set(WITHOUT_FINDING)
    assert not (mapped | set(WITHOUT_FINDING)) & set(PROBE_FINDINGS)
    assert set(FAULTS) == mapped | set(WITHOUT_FINDING) | set(PROBE_FINDINGS)
    assert {fault for scenario in FAULT_FINDINGS for fault in scenario.split("+")} <= set(FAULTS)


def test_every_kind_has_a_fault_or_a_reason() -> None:
    from_faults = {kind for kind, _, _ in (*FAULT_FINDINGS.values(), *PROBE_FINDINGS.values())}
    assert not from_faults & NOT_FROM_FAULTS
    assert set(KINDS) >= NOT_FROM_FAULTS
    assert from_faults | NOT_FROM_FAULTS == set(KINDS), sorted(
        set(KINDS) - from_faults - NOT_FROM_FAULTS
    )


@pytest.mark.parametrize("fault", sorted(FAULT_FINDINGS))
def test_fault_produces_its_finding(fault: str, fault_findings: dict[str, list[Finding]]) -> None:
    kind, layer, step = FAULT_FINDINGS[fault]
    found = [f for f in fault_findings[fault] if f.kind == kind]
    assert found, (fault, sorted({f.kind for f in fault_findings[fault]}))
    assert {f.layer for f in found} == {layer}
    assert min(f.step for f in found if f.step is not None) == step


@pytest.fixture(scope="module")
def probe_findings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Finding]]:
    """Each fault of PROBE_FINDINGS at rate 1, probed with its probe and analyzed."""
    db = tmp_path_factory.mktemp("probed") / "t.duckdb"
    with contextlib.ExitStack() as stack:
        targets = [
            ProbeTarget(
                provider=fault,
                model="sim-reasoner-1",
                endpoint=EndpointConfig(
                    base_url=stack.enter_context(
                        SimServer(SimConfig(faults={fault: 1.0}))
                    ).base_url,
                    api_key_env=None,
                    api_key="test-key",
                ),
            )
            for fault in PROBE_FINDINGS
        ]
        probes = [PROBES_BY_NAME[probe] for _, _, probe in PROBE_FINDINGS.values()]
        recorder = Recorder(db)
        try:
            done = asyncio.run(probe_targets(ProbePlan(targets=targets, probes=probes), recorder))
        finally:
            recorder.close()
    runs = {r.provider: r.run_id for r in done if r.probe == PROBE_FINDINGS[r.provider][2]}
    conn = open_for_writing(db)
    try:
        found = analyze_runs(conn, list(runs.values()))
        return {fault: found[run_id] for fault, run_id in runs.items()}
    finally:
        conn.close()


@pytest.mark.parametrize("fault", sorted(PROBE_FINDINGS))
def test_fault_shows_in_its_probe(fault: str, probe_findings: dict[str, list[Finding]]) -> None:
    kind, layer, _ = PROBE_FINDINGS[fault]
    found = [f for f in probe_findings[fault] if f.kind == kind]
    assert found, (fault, sorted({f.kind for f in probe_findings[fault]}))
    assert {f.layer for f in found} == {layer}


LATE: dict[str, str] = {
    "late_emptied_arguments": "empty_arguments",
    "late_rewritten_ids": "tool_call_id_format",
    "late_empty_turn": "empty_turn_after_reasoning",
}
"""Faults that leave the first turn clean, and the kind that must say where they began."""


@pytest.mark.parametrize("fault", sorted(LATE))
def test_failures_from_the_second_turn_say_where_they_began(
    fault: str, fault_findings: dict[str, list[Finding]]
) -> None:
    first = min(
        (f for f in fault_findings[fault] if f.kind == LATE[fault]), key=lambda f: f.step or 0
    )
    assert (first.evidence["first_step"], first.evidence["clean_steps_before"]) == (1, 1)
    # The first turn, rendered without history, was clean: nothing on the host at step 0.
    assert not [f for f in fault_findings[fault] if f.step == 0 and f.layer == "provider"]


def test_kimi_ids_rejected_by_the_family_are_errors_with_its_pattern(
    fault_findings: dict[str, list[Finding]],
) -> None:
    found = [f for f in fault_findings["late_rewritten_ids"] if f.kind == "tool_call_id_format"]
    assert found and {f.severity for f in found} == {"error"}
    assert {f.evidence["family"] for f in found} == {"kimi"}
    assert {f.evidence["pattern"] for f in found} == {KIMI_ID.pattern}
    assert {f.evidence["format"] for f in found} == {"openai"}


@pytest.mark.parametrize("fault", sorted(NOT_BLAMED))
def test_fault_is_not_misread(fault: str, fault_findings: dict[str, list[Finding]]) -> None:
    misread = [f for f in fault_findings[fault] if f.kind in NOT_BLAMED[fault]]
    assert not misread, misread


def test_inferred_findings_state_their_confidence(
    fault_findings: dict[str, list[Finding]], probe_findings: dict[str, list[Finding]]
) -> None:
    """A kind the catalogue marks inferred carries a confidence in (0, 1]; one observed
    directly carries none, so a reader can tell a guess from a fact."""
    for fault, findings in {**fault_findings, **probe_findings}.items():
        for finding in findings:
            if KINDS[finding.kind].inferred:
                assert finding.confidence is not None, (fault, finding)
                assert 0.0 < finding.confidence <= 1.0, (fault, finding)
            else:
                assert finding.confidence is None, (fault, finding)


BREAKING: dict[str, tuple[str, int]] = {
    "connection_reset": ("connection", 1),
    "empty_response": ("empty_response", 1),
    "invalid_response_200": ("invalid_response", 0),
    "unauthorized_401": ("auth", 0),
    "model_not_found_404": ("not_found", 0),
    "bad_request_400": ("bad_request", 0),
    "context_overflow_400": ("context_overflow", 0),
    "host_context_overflow_400": ("context_overflow", 0),
}
"""Host faults that leave no usable answer -> (error class recorded, retries before giving
up): only the transient ones are retried, the others end the run at once."""


@pytest.fixture(scope="module")
def broken_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, list[Any]]]:
    """Each breaking fault at rate 1, streamed and not; and connections dropped at random,
    which retries get past. Run outcome and (error class, retries) of every step, by key."""
    db = tmp_path_factory.mktemp("broken") / "t.duckdb"
    retry = {"retry": RetryPolicy(base_s=0.0, max_retries=1)}
    recordings = {
        f"{fault}/{stream}": Recording(
            sim=SimConfig(faults={fault: 1.0}), stream=stream, settings=retry
        )
        for fault in BREAKING
        for stream in (False, True)
    }
    for stream in (False, True):
        recordings[f"flaky/{stream}"] = Recording(
            sim=SimConfig(faults={"connection_reset": 0.4}),
            stream=stream,
            settings={"retry": RetryPolicy(base_s=0.0, max_retries=8)},
        )
    summaries = record_many(db, recordings)
    conn = open_for_reading(db)
    try:
        return {
            key: (
                summary.outcome,
                conn.execute(
                    "SELECT error_kind, retries FROM steps WHERE run_id = ? ORDER BY idx",
                    [summary.id],
                ).fetchall(),
            )
            for key, summary in summaries.items()
        }
    finally:
        conn.close()


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("fault", sorted(BREAKING))
def test_breaking_faults_are_recorded_not_raised(
    fault: str, stream: bool, broken_runs: dict[str, tuple[Any, list[Any]]]
) -> None:
    outcome, steps = broken_runs[f"{fault}/{stream}"]
    kind, retries = BREAKING[fault]
    assert steps == [(kind, retries)]  # the first step failed, was kept, and ended the run
    expected = "context_overflow" if kind == "context_overflow" else "provider_error"
    assert outcome.termination == Termination(expected) and outcome.error


@pytest.mark.parametrize("stream", [False, True])
def test_dropped_connections_are_retried_until_they_pass(
    stream: bool, broken_runs: dict[str, tuple[Any, list[Any]]]
) -> None:
    outcome, steps = broken_runs[f"flaky/{stream}"]
    assert outcome.success is True
    assert all(kind is None for kind, _ in steps) and sum(r for _, r in steps) > 0


@pytest.fixture(scope="module")
def clean_findings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Finding]]:
    db, every = recorded_corpus(tmp_path_factory, "clean")
    summaries = {key: every[key] for key in _clean_recordings()}
    assert all(s.outcome.success for s in summaries.values()), summaries
    conn = open_for_writing(db)
    try:
        return {key: analyze_run(conn, s.id) for key, s in summaries.items()}
    finally:
        conn.close()


def test_clean_dialects_have_no_provider_findings(
    clean_findings: dict[str, list[Finding]],
) -> None:
    provider = {k: [f for f in v if f.layer == "provider"] for k, v in clean_findings.items()}
    assert not any(provider.values()), {k: v for k, v in provider.items() if v}
    # Nothing else either: clean runs of a well-behaved model are silent.
    assert not any(clean_findings.values()), {k: v for k, v in clean_findings.items() if v}


@pytest.mark.parametrize(
    "choice", ["required", {"type": "function", "function": {"name": "open_box"}}]
)
def test_an_enforced_tool_choice_is_clean(tmp_path: Any, choice: Any) -> None:
    """A host that honours `tool_choice` on every step (the answer turn gets a guided call,
    so the run ends at max_steps) is never reported for ignoring it, nor blamed at all."""
    db = tmp_path / "t.duckdb"
    recording = Recording(sim=SimConfig(), settings={"extra_body": {"tool_choice": choice}})
    [summary] = record_many(db, {"forced": recording}).values()
    assert summary.outcome.termination == Termination.MAX_STEPS
    conn = open_for_writing(db)
    try:
        found = analyze_run(conn, summary.id)
    finally:
        conn.close()
    assert not [f for f in found if f.layer == "provider"], found


def test_usage_in_every_chunk_is_quiet_when_the_request_asked_for_it(tmp_path: Any) -> None:
    """The same host, usage in every chunk: a fault when unasked, what vLLM's documented
    `continuous_usage_stats` asks for otherwise. The recorder notes it either way (the lines
    are what they are); only the verdict follows the request."""
    asked = {"stream_options": {"include_usage": True, "continuous_usage_stats": True}}
    faulty = SimConfig(faults={"stream_usage_every_chunk": 1.0})
    recordings = {
        "unasked": Recording(sim=faulty, stream=True),
        "asked": Recording(sim=faulty, stream=True, settings={"extra_body": asked}),
    }
    db = tmp_path / "t.duckdb"
    summaries = record_many(db, recordings)
    conn = open_for_writing(db)
    try:
        found = {key: analyze_run(conn, s.id) for key, s in summaries.items()}
        noted = {
            key: conn.execute(
                "SELECT count(*) FILTER (WHERE anomalies::VARCHAR LIKE ?), count(*) FROM steps "
                "WHERE run_id = ?",
                ["%usage_before_last_chunk%", s.id],
            ).fetchone()
            for key, s in summaries.items()
        }
    finally:
        conn.close()
    kind = "stream_usage_before_last_chunk"
    for row in noted.values():
        assert row is not None and row[0] == row[1] > 0  # every step's stream noted it
    steps = noted["unasked"][1] if noted["unasked"] else None
    assert len([f for f in found["unasked"] if f.kind == kind]) == steps
    assert found["asked"] == []
