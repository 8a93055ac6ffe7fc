"""Pairing requests across providers by request hash, and tool_call_f1 against a reference."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from analyzer.compare.build import build_comparison
from analyzer.compare.costs import PriceList
from analyzer.compare.model import Comparison
from analyzer.compare.selection import Selection
from traces.client import EndpointConfig
from traces.harness import HarnessSettings
from traces.runner import RunPlan, record_runs
from traces.sim.config import SimConfig
from traces.sim.server import SimServer
from traces.store.database import open_for_reading
from traces.store.recorder import Recorder
from traces.tasks import load_task
from traces.tools.chain import ChainEnvironment

from conftest import TASKS

SEEDS = [0, 1, 2]


def _retooled() -> list[dict[str, Any]]:
    """The chain's tools with one description changed: the same question, other tools."""
    tools = ChainEnvironment(length=5, seed=0).tool_specs()
    tools[0]["function"]["description"] += " (reworded)"
    return tools


def _record(db: Path, batches: list[tuple[str, str, list[int], dict[str, Any]]]) -> None:
    """Record (label, base URL, seeds, extra body) batches one run at a time, in this order."""
    task = load_task(TASKS / "chain_short.toml")

    async def all_runs(recorder: Recorder) -> None:
        for label, base_url, seeds, extra_body in batches:
            for seed in seeds:
                plan = RunPlan(
                    task=task,
                    provider=label,
                    endpoint=EndpointConfig(base_url=base_url, api_key_env=None, api_key="k"),
                    settings=HarnessSettings(
                        model="sim-reasoner-1", max_steps=10, extra_body=extra_body
                    ),
                    seed=seed,
                )
                await record_runs(plan, recorder)

    recorder = Recorder(db)
    try:
        asyncio.run(all_runs(recorder))
    finally:
        recorder.close()


@pytest.fixture(scope="module")
def paired_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reference, the same host recorded in reverse seed order, the same host with other
    tools, and a host that drops half of its calls."""
    db = tmp_path_factory.mktemp("pairing") / "t.duckdb"
    with (
        SimServer(SimConfig(seed=0)) as clean,
        SimServer(SimConfig(seed=0, faults={"dropped_call": 0.5})) as dropper,
    ):
        _record(
            db,
            [
                ("ref", clean.base_url, SEEDS, {}),
                ("shuffled", clean.base_url, SEEDS[::-1], {}),
                ("retooled", clean.base_url, SEEDS, {"tools": _retooled()}),
                ("dropper", dropper.base_url, SEEDS, {}),
            ],
        )
    return db


def _compare(db: Path, reference: str | None = "ref") -> Comparison:
    conn = open_for_reading(db)
    try:
        return build_comparison(
            conn, Selection(), prices=PriceList({}), reference=reference, resamples=200
        )
    finally:
        conn.close()


def test_pairs_by_request_not_by_position(paired_db: Path) -> None:
    comparison = _compare(paired_db)
    groups = {g.name: g for g in comparison.groups}
    conn = open_for_reading(paired_db)
    try:
        [(steps,)] = conn.execute(
            "SELECT count(*) FROM steps s JOIN runs r ON r.id = s.run_id "
            "WHERE r.provider = 'shuffled'"
        ).fetchall()
        # Recorded in reverse order, the first run of `shuffled` is seed 5: its first request
        # is the one ref's last run sent, and is paired with it.
        [(first_hash,)] = conn.execute(
            "SELECT s.request_hash FROM steps s JOIN runs r ON r.id = s.run_id "
            "WHERE r.provider = 'shuffled' AND s.idx = 0 ORDER BY r.started_at LIMIT 1"
        ).fetchall()
        [(ref_seed,)] = conn.execute(
            "SELECT r.seed FROM steps s JOIN runs r ON r.id = s.run_id "
            "WHERE r.provider = 'ref' AND s.request_hash = ?",
            [first_hash],
        ).fetchall()
    finally:
        conn.close()
    assert ref_seed == SEEDS[-1]
    assert groups["shuffled"].paired_steps == steps
    assert groups["ref"].paired_steps is None
    f1 = comparison.metric("tool_call_f1").values
    assert "ref" not in f1 and f1["shuffled"].value == pytest.approx(1.0)


def test_other_tools_are_another_request(paired_db: Path) -> None:
    comparison = _compare(paired_db)
    groups = {g.name: g for g in comparison.groups}
    assert groups["retooled"].paired_steps == 0
    assert "retooled" not in comparison.metric("tool_call_f1").values
    assert any(n.startswith("retooled answered none") for n in comparison.notes)


def test_f1_counts_dropped_calls_as_false_negatives_as_k2vv_does(paired_db: Path) -> None:
    # Recompute K2VV's counts by hand from the stored steps: each shared request weighs one,
    # each side's label the share of its answers that finished with tool_calls.
    conn = open_for_reading(paired_db)
    try:
        rows = conn.execute(
            "SELECT r.provider, s.request_hash, s.finish_reason = 'tool_calls' "
            "FROM steps s JOIN runs r ON r.id = s.run_id "
            "WHERE r.provider IN ('ref', 'dropper') AND s.error_kind IS NULL"
        ).fetchall()
    finally:
        conn.close()
    labels: dict[str, dict[str, list[bool]]] = {"ref": {}, "dropper": {}}
    for provider, digest, tool_calls in rows:
        labels[provider].setdefault(digest, []).append(bool(tool_calls))
    tp = fp = fn = 0.0
    for digest, answers in labels["dropper"].items():
        if digest not in labels["ref"]:
            continue
        g = sum(answers) / len(answers)
        r = sum(labels["ref"][digest]) / len(labels["ref"][digest])
        tp, fp, fn = tp + g * r, fp + g * (1 - r), fn + (1 - g) * r
    assert fn > 0, "the fault should have dropped a call on a shared request"
    expected = 2 * tp / (2 * tp + fp + fn)

    estimate = _compare(paired_db).metric("tool_call_f1").values["dropper"]
    assert estimate.value == pytest.approx(expected)
    assert estimate.value < 1
    assert estimate.lo is not None and estimate.hi is not None
    assert estimate.lo <= estimate.value <= estimate.hi


def test_without_a_reference_there_is_no_f1(paired_db: Path) -> None:
    comparison = _compare(paired_db, reference=None)
    assert comparison.metric("tool_call_f1").values == {}
    assert all(g.paired_steps is None for g in comparison.groups)
    assert any("--reference" in n for n in comparison.notes)
    assert json.loads(comparison.to_json())["reference"] is None
