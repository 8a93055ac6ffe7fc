"""Every simulator fault a check covers, recorded over real HTTP and analyzed: the expected
finding kind appears on the expected step with the expected layer. And every dialect,
recorded clean, streaming and not, yields no provider-layer finding at all."""

from __future__ import annotations

from typing import Any

import pytest

from analyzer.checks.persist import analyze_run, analyze_runs
from analyzer.checks.records import Finding
from traces.dialects import DIALECTS
from traces.replay import ReplayPolicy
from traces.sim.config import SimConfig
from traces.sim.faults.catalogue import FAULTS
from traces.store.database import open_for_writing

from recording import Recording, record_many

FAULT_FINDINGS: dict[str, tuple[str, str, int]] = {
    "leaked_tokens_content": ("leaked_special_tokens", "provider", 0),
    "leaked_tokens_reasoning": ("leaked_special_tokens", "provider", 0),
    "tool_call_as_text": ("tool_call_as_text", "model", 0),
    "dropped_call": ("dropped_call", "provider", 0),
    "invalid_json_arguments": ("invalid_json_arguments", "model", 0),
    "wrong_type_arguments": ("schema_violation", "model", 0),
    "tag_in_name": ("malformed_tool_name", "provider", 0),
    "tag_in_key": ("malformed_argument_key", "provider", 0),
    "object_arguments": ("object_arguments", "provider", 0),
    "rewritten_ids": ("tool_call_id_format", "provider", 0),
    # chain_short makes one call per step: the second step reuses the first step's id.
    "duplicated_ids": ("duplicate_tool_call_id", "provider", 1),
    "missing_ids": ("tool_call_id_missing", "provider", 0),
    "finish_stop_with_calls": ("finish_stop_with_calls", "provider", 0),
    # Only the answer turn (the sixth step of chain_short) can carry it.
    "finish_tool_calls_without_calls": ("finish_tool_calls_without_calls", "provider", 5),
    "finish_length_with_calls": ("finish_length_with_calls", "provider", 0),
    "stream_fields_repeated": ("stream_tool_call_name_repeated", "provider", 0),
    # files: the first step's single call is one chunk; the second step's grep is split.
    "stream_arguments_cumulative": ("stream_tool_call_arguments_cumulative", "provider", 1),
    "stream_index_split": ("stream_tool_call_index_split", "provider", 0),
    "stream_index_from_one": ("stream_tool_call_index_not_zero_based", "provider", 0),
    "stream_index_missing": ("stream_tool_call_index_missing", "provider", 0),
    # The client dropped the reasoning the host requires back: the 400 is on the client.
    "reasoning_required_400": ("http_reasoning_required", "client", 1),
    "rate_limit_429": ("http_rate_limit", "provider", 0),
    "server_error_5xx": ("http_server_error", "provider", 0),
    "timeout": ("http_timeout", "provider", 0),
    "reasoning_swallows_answer": ("reasoning_swallows_answer", "provider", 5),
    "reasoning_in_content": ("reasoning_in_content", "provider", 0),
    "reasoning_tokens_missing": ("reasoning_tokens_missing", "provider", 0),
    "reasoning_tokens_outside_completion": ("reasoning_tokens_outside_completion", "provider", 0),
    # The second request is the first to carry reasoning back: prompt growth shows the loss.
    "reasoning_dropped_from_history": ("reasoning_dropped_in_chain", "provider", 1),
    # Two turns with reasoning are needed before the older one can be stripped: cached tokens
    # fall (and the prompt grows too little) from the third request on.
    "reasoning_kept_last_only": ("reasoning_dropped_in_chain", "provider", 2),
}
"""Simulator fault -> (finding kind, layer, first step it must be reported on)."""


def _recording(fault: str) -> Recording:
    sim: dict[str, Any] = {"faults": {fault: 1.0}}
    settings: dict[str, Any] = {}
    rec: dict[str, Any] = {}
    if fault.startswith("stream_"):
        rec.update(task="files", stream=True)
    if fault == "reasoning_required_400":
        settings["replay"] = ReplayPolicy(reasoning="drop")
    if fault in ("rate_limit_429", "server_error_5xx", "timeout"):
        settings.update(retry_base_s=0.0, max_retries=1)
    if fault == "timeout":
        # The simulator holds the answer longer than the client waits.
        sim["timeout_s"] = 2.0
        rec["timeout_s"] = 0.2
    return Recording(sim=SimConfig(**sim), settings=settings, **rec)


@pytest.fixture(scope="module")
def fault_findings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Finding]]:
    db = tmp_path_factory.mktemp("faults") / "t.duckdb"
    summaries = record_many(db, {fault: _recording(fault) for fault in FAULT_FINDINGS})
    conn = open_for_writing(db)
    try:
        # The batch path, as `traces analyze` takes it; the clean runs below go one by one.
        found = analyze_runs(conn, [s.id for s in summaries.values()])
        return {fault: found[s.id] for fault, s in summaries.items()}
    finally:
        conn.close()


def test_every_fault_is_mapped() -> None:
    assert set(FAULTS) == set(FAULT_FINDINGS)


@pytest.mark.parametrize("fault", sorted(FAULT_FINDINGS))
def test_fault_produces_its_finding(fault: str, fault_findings: dict[str, list[Finding]]) -> None:
    kind, layer, step = FAULT_FINDINGS[fault]
    found = [f for f in fault_findings[fault] if f.kind == kind]
    assert found, (fault, sorted({f.kind for f in fault_findings[fault]}))
    assert {f.layer for f in found} == {layer}
    assert min(f.step for f in found if f.step is not None) == step


@pytest.fixture(scope="module")
def clean_findings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Finding]]:
    db = tmp_path_factory.mktemp("clean") / "t.duckdb"
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
    summaries = record_many(db, recordings)
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
