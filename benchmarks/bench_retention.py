"""Retention error: what the ledger says a host kept against what the simulator kept.

Run by hand (it is not a test):

    .venv/bin/python benchmarks/bench_retention.py [--seeds 5] [--tasks chain_short,files,...]
        [--hosts keep,newest_only,none,...] [--tokenizers sim,...] [--json PATH]

Each task is recorded against the embedded simulator once per seed for each host behaviour
(`keep`: a clean host; `newest_only`: `reasoning_kept_last_only`; `none`:
`reasoning_dropped_from_history`; `tools_dropped`: `tool_results_dropped`; `tools_truncated`:
`tool_results_truncated`). The truth is read off the simulator's own templates: each chain
request is rendered as that host renders it and as a faithful host would, and the tokens of
reasoning (and of tool results) each keeps are counted.

A real host's tokenizer is not the simulator's, so every recorded run is also read as a host
with another tokenizer would have counted it: each request re-rendered and its parts' token
counts scaled by type (`--tokenizers`: `sim` as recorded; `r+30/t-30`: reasoning counted 30%
higher and tool results 30% lower than the simulator counts them; `r-30/t+30`; `all+30`,
`all-30`; `unreported`: as recorded, but with reasoning tokens not reported, so the ledger
must learn its ratio from completion tokens). Completion and reasoning tokens scale the same
way, as a host's usage would.

For each task × host × tokenizer the table gives the mean retention the ledger measured, the
mean truth, the largest error over the seeds, and the share of runs with the finding that
behaviour should produce (for `keep`: with any ledger finding at all).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from analyzer.checks.kept import what_the_host_kept
from analyzer.checks.ledger import measure
from analyzer.checks.loader import load_runs
from analyzer.checks.records import Run, Step
from traces.client import EndpointConfig
from traces.dialects import DIALECTS
from traces.families import resolve_family
from traces.harness import HarnessSettings
from traces.replay import ReplayPolicy
from traces.runner import RunPlan, RunSummary, record_runs
from traces.sample_files import resolve_task
from traces.sim.config import SimConfig
from traces.sim.faults.base import PromptFault, PromptOptions
from traces.sim.faults.catalogue import FAULTS
from traces.sim.server import SimServer
from traces.sim.templates import template_for
from traces.sim.templates.history import read_reasoning
from traces.sim.tokenizer import count_tokens_cached
from traces.store.database import open_for_reading
from traces.store.recorder import Recorder
from traces.tasks import load_task

MODEL = "sim-reasoner-1"
DIALECT = "openai"

HOSTS: dict[str, tuple[str | None, str]] = {
    "keep": (None, ""),
    "newest_only": ("reasoning_kept_last_only", "reasoning_dropped_in_chain"),
    "none": ("reasoning_dropped_from_history", "reasoning_dropped_in_chain"),
    "tools_dropped": ("tool_results_dropped", "tool_results_dropped"),
    "tools_truncated": ("tool_results_truncated", "tool_results_truncated"),
}
"""Host behaviour -> (simulator fault, the finding it should produce)."""

TOKENIZERS: dict[str, dict[str, float]] = {
    "sim": {},
    "r+30/t-30": {"reasoning": 1.3, "tools": 0.7},
    "r-30/t+30": {"reasoning": 0.7, "tools": 1.3},
    "all+30": {"reasoning": 1.3, "tools": 1.3, "output": 1.3, "prompt": 1.3},
    "all-30": {"reasoning": 0.7, "tools": 0.7, "output": 0.7, "prompt": 0.7},
    "unreported": {},
}
"""A host tokenizer, as the factor by which it counts each part type above the simulator's:
`reasoning`, `tools` (results), `output` (content, calls, template markup of assistant
turns), `prompt` (system, user, tool declarations)."""

LEDGER_KINDS = frozenset(
    {
        "reasoning_dropped_in_chain",
        "tool_results_dropped",
        "tool_results_truncated",
        "history_lost",
        "history_rewritten",
        "hidden_system_prompt",
    }
)


# -- recording -------------------------------------------------------------------------------


def record(db: Path, tasks: Sequence[str], hosts: Sequence[str], seeds: int) -> dict[str, str]:
    """Record every task × host, `seeds` runs each; run id -> "task/host"."""
    plans: list[tuple[str, str, SimConfig]] = []
    for task in tasks:
        for host in hosts:
            fault = HOSTS[host][0]
            plans.append(
                (task, host, SimConfig(dialect=DIALECT, faults={fault: 1.0} if fault else {}))
            )

    async def one(task: str, url: str, recorder: Recorder) -> list[RunSummary]:
        loaded = load_task(resolve_task(task))
        dialect = DIALECTS[DIALECT]
        plan = RunPlan(
            task=loaded,
            provider="sim",
            endpoint=EndpointConfig(base_url=url, api_key_env=None, api_key="sk-bench"),
            settings=HarnessSettings(
                model=MODEL,
                max_steps=loaded.max_steps,
                stream=False,
                replay=ReplayPolicy.for_dialect(dialect),
            ),
            repeat=seeds,
            concurrency=4,
            seed=0,
            dialect=DIALECT,
        )
        return await record_runs(plan, recorder)

    labels: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        urls = [stack.enter_context(SimServer(config)).base_url for _, _, config in plans]
        recorder = Recorder(db)
        try:

            async def every() -> list[list[RunSummary]]:
                return list(
                    await asyncio.gather(
                        *(
                            one(task, url, recorder)
                            for (task, _, _), url in zip(plans, urls, strict=True)
                        )
                    )
                )

            for (task, host, _), summaries in zip(plans, asyncio.run(every()), strict=True):
                for summary in summaries:
                    labels[summary.id] = f"{task}/{host}"
        finally:
            recorder.close()
    return labels


# -- reading a run as another tokenizer counts it --------------------------------------------


@dataclass
class Counted:
    """A request rendered by a host: its tokens by part type."""

    total: float
    reasoning: float
    tools: float


def _options(host: str) -> PromptOptions:
    fault = HOSTS[host][0]
    options = PromptOptions()
    if fault is not None:
        applied = FAULTS[fault]
        assert isinstance(applied, PromptFault)
        options = applied.apply(options)
    return options


def _render(step: Step, options: PromptOptions, factors: Mapping[str, float]) -> Counted:
    """`step`'s request as the simulator renders it under `options`, counted per part and
    scaled by `factors`."""
    dialect = DIALECTS[DIALECT]
    template = template_for(resolve_family(MODEL, dialect.family).name)
    messages = step.request_messages
    tools = step.request_params.get("tools")
    prompt = template.render(
        messages,
        tools,
        dialect.reasoning_in,
        history_reasoning=options.history_reasoning,
        last_reasoning_only=options.last_reasoning_only,
        tool_results=options.tool_results,
        escape_html=options.escape_html,
        hidden_system=options.hidden_system,
        reencode_arguments=options.reencode_arguments,
    )
    start = 1 if messages and messages[0].get("role") in ("system", "developer") else 0
    roles = (
        ["header"]
        + [
            str(m.get("role"))
            for m in messages[start:]
            if not (options.tool_results == "dropped" and m.get("role") in ("tool", "function"))
        ]
        + ["generation"]
    )
    assert len(roles) == len(prompt.segments), (len(roles), len(prompt.segments))
    assistants = iter(m for m in messages[start:] if m.get("role") == "assistant")
    total = reasoning = tools_counted = 0.0
    for role, segment in zip(roles, prompt.segments, strict=True):
        count = float(count_tokens_cached(segment))
        if role == "assistant":
            text, _ = read_reasoning(next(assistants), dialect.reasoning_in)
            kept = float(count_tokens_cached(text)) if text and text in segment else 0.0
            reasoning += kept
            total += factors.get("reasoning", 1.0) * kept + factors.get("output", 1.0) * (
                count - kept
            )
        elif role in ("tool", "function"):
            tools_counted += count
            total += factors.get("tools", 1.0) * count
        elif role == "generation":
            total += factors.get("output", 1.0) * count
        else:
            total += factors.get("prompt", 1.0) * count
    return Counted(total, reasoning, tools_counted)


@dataclass
class Truth:
    """What the simulated host kept, summed over the chain requests of a run."""

    reasoning_kept: float = 0.0
    reasoning_sent: float = 0.0
    tools_kept: float = 0.0
    tools_sent: float = 0.0

    @property
    def reasoning(self) -> float | None:
        return self.reasoning_kept / self.reasoning_sent if self.reasoning_sent else None

    @property
    def tools(self) -> float | None:
        return self.tools_kept / self.tools_sent if self.tools_sent else None


def as_counted_by(run: Run, host: str, tokenizer: str) -> tuple[Run, Truth]:
    """`run` with its usage as a host with `tokenizer` would report it, and the truth."""
    factors = TOKENIZERS[tokenizer]
    options = _options(host)
    chain_steps = {e.step for e in measure(run).entries if e.kind == "chain"}
    truth = Truth()
    steps: list[Step] = []
    previous: Step | None = None
    for step in run.steps:
        if step.prompt_tokens is None:
            steps.append(step)
            continue
        actual = _render(step, options, factors)
        if step.index in chain_steps:
            faithful = _render(step, PromptOptions(), factors)
            truth.reasoning_kept += actual.reasoning
            truth.reasoning_sent += faithful.reasoning
            truth.tools_kept += actual.tools
            truth.tools_sent += faithful.tools
        reasoning = step.reasoning_tokens or 0
        completion = step.completion_tokens or 0
        scaled_reasoning = factors.get("reasoning", 1.0) * reasoning
        changes: dict[str, Any] = {
            "prompt_tokens": round(actual.total),
            # The cache holds the previous prompt as this host counted it, up to where this
            # request renders it anew: the shortfall stays what the simulator saw.
            "cached_tokens": _cached(step, previous, steps[-1] if steps else None),
            "completion_tokens": round(
                scaled_reasoning + factors.get("output", 1.0) * (completion - reasoning)
            ),
            "reasoning_tokens": round(scaled_reasoning),
        }
        if tokenizer == "unreported":
            changes["reasoning_tokens_source"] = "estimated"
        steps.append(replace(step, **changes))
        previous = step
    return replace(run, steps=tuple(steps)), truth


def _cached(step: Step, previous: Step | None, counted: Step | None) -> int | None:
    """`step`'s cached tokens as the host with the other tokenizer reports them."""
    if not step.cached_tokens or previous is None or counted is None:
        return step.cached_tokens
    shortfall = (previous.prompt_tokens or 0) - step.cached_tokens
    return max(0, (counted.prompt_tokens or 0) - shortfall)


# -- the table -------------------------------------------------------------------------------


@dataclass
class Cell:
    """One task × host × tokenizer over its seeds."""

    measured: list[float]
    truth: list[float]
    tool_measured: list[float]
    tool_truth: list[float]
    flagged: int
    runs: int
    undecided: int = 0
    """Runs whose reasoning or tool-result retention was unknown (`ledger.decided`: no
    behaviour at 0.7), left out of the retention columns."""

    def row(self) -> dict[str, Any]:
        errors = [abs(m - t) for m, t in zip(self.measured, self.truth, strict=True)]
        tool_errors = [abs(m - t) for m, t in zip(self.tool_measured, self.tool_truth, strict=True)]
        return {
            "runs": self.runs,
            "undecided": self.undecided,
            "retention": _mean(self.measured),
            "truth": _mean(self.truth),
            "max_error": max(errors) if errors else None,
            "tool_retention": _mean(self.tool_measured),
            "tool_truth": _mean(self.tool_truth),
            "tool_max_error": max(tool_errors) if tool_errors else None,
            "flagged": self.flagged / self.runs if self.runs else None,
        }


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def measure_all(
    db: Path, labels: Mapping[str, str], tokenizers: Sequence[str]
) -> dict[tuple[str, str, str], Cell]:
    """Every run read by every tokenizer: the ledger's retention against the truth."""
    with open_for_reading(db) as conn:
        runs = load_runs(conn, list(labels))
    cells: dict[tuple[str, str, str], Cell] = {}
    for run in runs:
        task, host = labels[run.id].split("/")
        expected = HOSTS[host][1]
        for tokenizer in tokenizers:
            counted, truth = as_counted_by(run, host, tokenizer)
            ledger = measure(counted)
            kinds = {f.kind for f in what_the_host_kept(counted)}
            cell = cells.setdefault((task, host, tokenizer), Cell([], [], [], [], 0, 0))
            cell.runs += 1
            if ledger.reasoning_retention is not None and truth.reasoning is not None:
                cell.measured.append(ledger.reasoning_retention)
                cell.truth.append(truth.reasoning)
            if ledger.tool_result_retention is not None and truth.tools is not None:
                cell.tool_measured.append(ledger.tool_result_retention)
                cell.tool_truth.append(truth.tools)
            fit = ledger.fit
            cell.undecided += fit is not None and (
                (fit.reasoning is not None and ledger.reasoning_retention is None)
                or (fit.tool_results is not None and ledger.tool_result_retention is None)
            )
            hit = bool(kinds & LEDGER_KINDS) if not expected else expected in kinds
            cell.flagged += hit
    return cells


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def print_table(cells: Mapping[tuple[str, str, str], Cell]) -> None:
    """One row per task × host × tokenizer."""
    header = (
        "| task | host | tokenizer | runs | undecided | reasoning retention % | truth % "
        "| max error (points) "
        "| tool-result retention % | truth % | max error | flagged % |"
    )
    print(header)
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for (task, host, tokenizer), cell in cells.items():
        row = cell.row()
        print(
            f"| {task} | {host} | {tokenizer} | {row['runs']} | {row['undecided']} | "
            f"{_pct(row['retention'])} | "
            f"{_pct(row['truth'])} | {_pct(row['max_error'])} | {_pct(row['tool_retention'])} | "
            f"{_pct(row['tool_truth'])} | {_pct(row['tool_max_error'])} | {_pct(row['flagged'])} |"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Record, measure, print the table (and write it as JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--tasks", default="chain_short,files,research,chain")
    parser.add_argument("--hosts", default=",".join(HOSTS))
    parser.add_argument("--tokenizers", default=",".join(TOKENIZERS))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--db", type=Path, default=None, help="keep the recordings in this file")
    args = parser.parse_args(argv)
    tasks = [t for t in args.tasks.split(",") if t]
    hosts = [h for h in args.hosts.split(",") if h]
    tokenizers = [t for t in args.tokenizers.split(",") if t]
    for name, known in (("host", HOSTS), ("tokenizer", TOKENIZERS)):
        chosen = hosts if name == "host" else tokenizers
        unknown = [c for c in chosen if c not in known]
        if unknown:
            parser.error(f"unknown {name}(s): {', '.join(unknown)} (known: {', '.join(known)})")
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or Path(tmp) / "retention.duckdb"
        # The 300-step chain is long: one seed of it says as much as five of the others.
        labels: dict[str, str] = {}
        short = [t for t in tasks if t != "chain"]
        if short:
            labels.update(record(db, short, hosts, args.seeds))
        if "chain" in tasks:
            labels.update(record(db, ["chain"], hosts, max(1, args.seeds // 5)))
        if args.db is not None:
            # Which run is which task and host, for reading the recordings again.
            labels_path = args.db.with_suffix(".labels.json")
            labels_path.write_text(json.dumps(labels, indent=1) + "\n", encoding="utf-8")
        cells = measure_all(db, labels, tokenizers)
    print_table(cells)
    if args.json is not None:
        rows = [
            {"task": task, "host": host, "tokenizer": tokenizer, **cell.row()}
            for (task, host, tokenizer), cell in cells.items()
        ]
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
