"""What the host kept, read off runs recorded against the simulator over HTTP, where other
faults disturb the counts: a turn that comes back other than the host counted it is reported
by its own finding, never read as the host rewriting the history or losing the reasoning;
a host that does lose or rewrite it is still found beside those faults.

Each run is the `chain` task (cut to 24 steps) or `files`, at a seed where the disturbing
fault fires on some steps and not others: before the ledger read such turns as they came
back, every negative here was reported as `history_rewritten` or
`reasoning_dropped_in_chain`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from analyzer.checks.kept import what_the_host_kept
from analyzer.checks.ledger import measure
from analyzer.checks.ledger_turns import emptied_calls, reasoning_as_content
from analyzer.checks.loader import load_runs
from analyzer.checks.records import Run
from analyzer.ledger_view import ledger_summary, summary_lines
from traces.sim.config import SimConfig
from traces.store.database import open_for_reading

from recording import Recording, record_many

# Slow as a whole, outside the fast path `pytest -m "not slow"`: nine runs over HTTP, as
# test_checks_faults records its faults.
pytestmark = pytest.mark.slow

LEDGER_KINDS = ("history_rewritten", "reasoning_dropped_in_chain")

NEGATIVES: dict[str, dict[str, float]] = {
    # The parser emptied the first call's arguments to `{}`: billed as generated, sent back
    # empty, the step after it grows by less than counted.
    "emptied_arguments": {"emptied_arguments": 0.35},
    # The same from the second turn on, as `""`.
    "late_emptied_arguments": {"late_emptied_arguments": 0.35},
    # The model called an undeclared tool beside its own: a call more on some turns.
    "hallucinated_tool": {"hallucinated_tool": 0.35},
    # No reasoning parser on some turns: the reasoning billed comes back as content.
    "reasoning_in_content": {"reasoning_in_content": 0.2},
}
"""Faults that disturb the counts without the host losing or rewriting any history."""

POSITIVES: dict[str, tuple[dict[str, float], str, str]] = {
    "reasoning dropped, some in content": (
        {"reasoning_dropped_from_history": 1.0, "reasoning_in_content": 0.2},
        "chain",
        "reasoning_dropped_in_chain",
    ),
    "newest turn's reasoning kept, some in content": (
        {"reasoning_kept_last_only": 1.0, "reasoning_in_content": 0.2},
        "chain",
        "reasoning_dropped_in_chain",
    ),
    "reasoning dropped, arguments emptied": (
        {"reasoning_dropped_from_history": 1.0, "emptied_arguments": 0.35},
        "chain",
        "reasoning_dropped_in_chain",
    ),
    "escaped, arguments emptied": (
        {"history_html_escaped": 1.0, "emptied_arguments": 0.35},
        "files",
        "history_rewritten",
    ),
    "escaped, a tool hallucinated": (
        {"history_html_escaped": 1.0, "hallucinated_tool": 0.35},
        "files",
        "history_rewritten",
    ),
}
"""A host that loses or rewrites the history, beside a fault that disturbs the counts:
(faults, task, the finding it must still produce)."""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Every run above, recorded into one database and loaded as the checks read it."""
    recordings: dict[str, Recording] = {
        name: Recording(sim=SimConfig(seed=0, faults=faults), task="chain", max_steps=24)
        for name, faults in NEGATIVES.items()
    }
    for name, (faults, task, _) in POSITIVES.items():
        recordings[name] = Recording(sim=SimConfig(seed=0, faults=faults), task=task, max_steps=24)
    db: Path = tmp_path_factory.mktemp("kept-faults") / "t.duckdb"
    summaries = record_many(db, recordings)
    conn = open_for_reading(db)
    try:
        loaded = {run.id: run for run in load_runs(conn, [s.id for s in summaries.values()])}
    finally:
        conn.close()
    return {name: loaded[summary.id] for name, summary in summaries.items()}


def _kinds(run: Run) -> dict[str, Any]:
    return {f.kind: f for f in what_the_host_kept(run)}


@pytest.mark.parametrize("name", sorted(NEGATIVES))
def test_a_turn_that_came_back_otherwise_is_no_loss_of_history(
    name: str, runs: dict[str, Run]
) -> None:
    run = runs[name]
    ledger = measure(run)
    # The run is long enough to judge: most of its steps are fitted, and the host's
    # reasoning is measured as kept.
    assert ledger.fit is not None and len(ledger.chain) >= 12
    assert ledger.fit.reasoning is not None and ledger.fit.reasoning.best.name == "kept"
    assert not set(_kinds(run)) & set(LEDGER_KINDS), _kinds(run)


def test_steps_after_emptied_arguments_are_left_out(runs: dict[str, Run]) -> None:
    run = runs["emptied_arguments"]
    after = {
        step.index
        for previous, step in zip(run.steps, run.steps[1:], strict=False)
        if emptied_calls(previous)
    }
    assert after, "the fault fired on no step"
    ledger = measure(run)
    assert ledger.miscounted == after
    assert not after & {e.step for e in ledger.chain}
    # `traces show --ledger` says which steps were left out, and why.
    assert ledger_summary(ledger)["miscounted"] == sorted(after)
    [line] = [line for line in summary_lines(ledger) if line.startswith("left out")]
    assert line.endswith(", ".join(map(str, sorted(after))))


def test_reasoning_sent_back_as_content_is_counted_as_the_turn(runs: dict[str, Run]) -> None:
    run = runs["reasoning_in_content"]
    ledger = measure(run)
    entries = {e.step: e for e in ledger.entries}
    checked = 0
    for previous, step in zip(run.steps, run.steps[1:], strict=False):
        billed = reasoning_as_content(previous)
        entry = entries.get(step.index)
        if not billed or entry is None or entry.added is None:
            continue
        # The whole completion came back, as content: the host's count of the turn.
        assert entry.added.output == previous.completion_tokens
        assert entry.added.reasoning == 0
        checked += 1
    assert checked, "the fault fired on no step"


@pytest.mark.parametrize("name", sorted(POSITIVES))
def test_a_host_losing_history_is_found_beside_other_faults(
    name: str, runs: dict[str, Run]
) -> None:
    _, _, kind = POSITIVES[name]
    found = _kinds(runs[name])
    assert kind in found, found
    assert found[kind].layer == "provider" and found[kind].confidence >= 0.9
