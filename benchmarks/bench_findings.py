"""Precision and recall of every finding kind, on a labelled corpus.

Run by hand (it is not a test and asserts nothing):

    .venv/bin/python benchmarks/bench_findings.py [--seeds 6] [--rates 0.1,0.2,0.35]
        [--faults-per-run 3] [--faults all] [--clean-share 0.15] [--dialects all] [--tasks all]
        [--max-steps 24] [--concurrency 16] [--examples 3] [--no-sim] [--no-real] [--no-lost]
        [--json PATH] [--db PATH] [--rescore PATH]

Two corpora, scored apart:

- The simulator (`findings_sim`): every dialect x sample task x streamed or not x seed, each
  run recorded against the embedded simulator with a few faults at mixed seeded rates. The
  simulator names the faults it injected into every response; what each fault must produce
  comes from tests/test_checks_faults.py. Scored on (run, step, kind) by `findings_score`.
- Real excerpts (`findings_real`): failures quoted from real hosts, scored through the
  catalogue's `covers` and the labelled fixture cases; negatives are clean parses and
  repaired twins.
- Constructed chains (`findings_lost`): `history_lost`, which no fault produces, on tool
  chains built the way its definition says, with negatives.

Targets (issue 11): precision >= 0.95 and recall >= 0.90 for each kind. See
benchmarks/README.md for the scoring rules and the figures.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from findings_lost import LostScores, score_lost
from findings_real import RealScores, score_real
from findings_score import Example, KindScore, Scores, score_corpus
from findings_sim import build_corpus, labels_path, plan_corpus, rescore_corpus

from analyzer.checks.catalogue import KINDS
from analyzer.checks.registry import run_checks
from traces.dialects import DIALECTS
from traces.sample_files import sample_tasks
from traces.sim.faults import FAULTS

PRECISION_TARGET = 0.95
RECALL_TARGET = 0.90
FEW = 10
"""Below this many single-fault cases a kind's figures are shown but not judged (`?`)."""


def _names(text: str, known: Sequence[str], what: str) -> list[str]:
    if text == "all":
        return list(known)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"--{what}: unknown {', '.join(unknown)} (known: {', '.join(known)})")
    return names


def _rates(text: str) -> list[float]:
    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        rates = []
    if not rates or not all(0.0 < r <= 1.0 for r in rates):
        raise SystemExit("--rates: expected a comma-separated list of rates within (0, 1]")
    return rates


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _below(precision: float | None, recall: float | None) -> bool:
    return (precision is not None and precision < PRECISION_TARGET) or (
        recall is not None and recall < RECALL_TARGET
    )


# -- the simulator corpus ------------------------------------------------------------------


def _sim_rows(scores: Scores) -> list[dict[str, Any]]:
    rows = []
    for kind in sorted(scores.kinds):
        tally = scores.kinds[kind]
        info = KINDS.get(kind)
        rows.append(
            {
                "kind": kind,
                "layer": info.layer if info else "?",
                "support": tally.support,
                "hits": tally.hits,
                "recall": tally.recall,
                "mixed_support": tally.mixed_support,
                "mixed_hits": tally.mixed_hits,
                "fired": tally.true_positives + tally.false_positives,
                "true_positives": tally.true_positives,
                "false_clean": tally.false_clean,
                "false_other": tally.false_other,
                "mixed_fired": tally.mixed_fired,
                "mixed_false": tally.mixed_false,
                "unexplained": tally.unexplained,
                "precision": tally.precision,
                "layer_agreement": tally.layer_agreement,
                "below_target": _below(tally.precision, tally.recall),
                "recall_by_rate": {
                    f"{rate:g}": {"support": n, "hits": h}
                    for rate, (n, h) in sorted(tally.by_rate.items())
                },
            }
        )
    return rows


def _overall(kinds: dict[str, KindScore]) -> dict[str, Any]:
    support = sum(t.support for t in kinds.values())
    hits = sum(t.hits for t in kinds.values())
    tp = sum(t.true_positives for t in kinds.values())
    fp = sum(t.false_positives for t in kinds.values())
    checked = sum(t.layer_checked for t in kinds.values())
    agreed = sum(t.layer_agreed for t in kinds.values())
    return {
        "support": support,
        "recall": hits / support if support else None,
        "fired": tp + fp,
        "precision": tp / (tp + fp) if tp + fp else None,
        "layer_agreement": agreed / checked if checked else None,
    }


def _print_sim(scores: Scores, rows: list[dict[str, Any]], overall: dict[str, Any]) -> None:
    print(
        f"\nSimulator corpus: {scores.runs} runs, {scores.steps} steps, "
        f"{scores.faulted_steps} with a fault ({scores.multi_fault_steps} with several)"
    )
    header = (
        f"{'kind':<44} {'layer':<8} {'support':>7} {'recall':>6} {'fired':>6} "
        f"{'FP clean/other':>14} {'prec':>5} {'layer':>5} {'mixed hit':>9} {'mixed FP':>8}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        if not (row["support"] or row["mixed_support"] or row["fired"] or row["mixed_fired"]):
            continue
        mark = (" ?" if row["support"] < FEW else " <") if row["below_target"] else ""
        mixed = f"{row['mixed_hits']}/{row['mixed_support']}" if row["mixed_support"] else "-"
        mixed_fp = f"{row['mixed_false']}/{row['mixed_fired']}" if row["mixed_fired"] else "-"
        fps = f"{row['false_clean']}/{row['false_other']}"
        print(
            f"{row['kind']:<44} {row['layer']:<8} {row['support']:>7} {_fmt(row['recall']):>6} "
            f"{row['fired']:>6} {fps:>14} {_fmt(row['precision']):>5} "
            f"{_fmt(row['layer_agreement']):>5} {mixed:>9} {mixed_fp:>8}{mark}"
        )
    print("-" * len(header))
    print(
        f"{'overall (micro)':<53} {overall['support']:>7} {_fmt(overall['recall']):>6} "
        f"{overall['fired']:>6} {'':>14} {_fmt(overall['precision']):>5} "
        f"{_fmt(overall['layer_agreement']):>5}"
    )
    print(
        f"< below target (precision {PRECISION_TARGET}, recall {RECALL_TARGET}); ? below "
        f"target on fewer than {FEW} single-fault cases (more --seeds to judge)"
    )
    for row in rows:
        if row["recall"] is not None and row["recall"] < RECALL_TARGET:
            rates = ", ".join(
                f"{rate} {d['hits']}/{d['support']}" for rate, d in row["recall_by_rate"].items()
            )
            print(f"recall of {row['kind']} by fault rate: {rates}")
    silent = [
        r["kind"]
        for r in rows
        if not (r["support"] or r["mixed_support"] or r["fired"] or r["mixed_fired"])
    ]
    if silent:
        print(f"no fault expects and nothing fired: {', '.join(silent)}")


def _by_kind(examples: list[Example], limit: int) -> dict[str, list[Example]]:
    grouped: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        if len(grouped[example.kind]) < limit:
            grouped[example.kind].append(example)
    return dict(sorted(grouped.items()))


def _print_examples(title: str, examples: list[Example], limit: int) -> None:
    if not examples:
        return
    counts: dict[str, int] = defaultdict(int)
    for example in examples:
        counts[example.kind] += 1
    print(f"\n{title} (first {limit} per kind):")
    for kind, items in _by_kind(examples, limit).items():
        print(f"  {kind} ({counts[kind]}):")
        for ex in items:
            print(f"    {ex.run} step {ex.step} [{', '.join(ex.faults) or '-'}] {ex.note}")


def _print_diagnostics(scores: Scores) -> None:
    if scores.confusion:
        print("\nWrong kinds beside a single fault (fault -> kind: count):")
        for (fault, kind), n in scores.confusion.most_common(15):
            print(f"  {fault} -> {kind}: {n}")
    print(
        "\nFaults injected (steps): "
        + ", ".join(f"{n}={c}" for n, c in sorted(scores.fired.items()))
    )
    if scores.never_injected:
        listed = ", ".join(f"{n} ({c} runs)" for n, c in scores.never_injected.items())
        print(f"Faults dealt but never injected (nothing to score): {listed}")
    if scores.unmapped:
        listed = ", ".join(f"{n} ({c} steps)" for n, c in scores.unmapped.items())
        print(f"Unmapped faults (no entry in tests/test_checks_faults.py, not scored): {listed}")
    if scores.unaligned:
        print(f"Runs left out, requests not lined up with steps: {', '.join(scores.unaligned)}")
    if scores.crashed:
        print(f"Runs left out, the simulator failed with a 500: {', '.join(scores.crashed)}")


# -- the real excerpts ---------------------------------------------------------------------


def _real_rows(scores: RealScores) -> list[dict[str, Any]]:
    return [
        {
            "kind": kind,
            "support": t.support,
            "hits": t.hits,
            "recall": t.recall,
            "negatives": t.negatives,
            "false_positives": t.false_positives,
            "precision": t.precision,
            "layer_agreement": t.layer_agreement,
            "below_target": _below(t.precision, t.recall),
        }
        for kind, t in sorted(scores.kinds.items())
    ]


def _print_real(scores: RealScores, rows: list[dict[str, Any]], limit: int) -> None:
    where = "shared observed failures, parser fixtures and " if scores.shared_present else ""
    print(f"\nReal excerpts ({where}tests/fixtures/real_excerpts.json):")
    if not scores.shared_present:
        print("  ../shared/external/dialects not present: its rows are skipped")
    header = (
        f"{'kind':<44} {'support':>7} {'recall':>6} {'neg':>5} {'FP':>4} {'prec':>5} {'layer':>5}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        mark = " <" if row["below_target"] else ""
        print(
            f"{row['kind']:<44} {row['support']:>7} {_fmt(row['recall']):>6} "
            f"{row['negatives']:>5} {row['false_positives']:>4} {_fmt(row['precision']):>5} "
            f"{_fmt(row['layer_agreement']):>5}{mark}"
        )
    negatives = ", ".join(f"{n} {origin}" for origin, n in sorted(scores.negatives.items()))
    print(f"negatives checked: {negatives}; false positives on them: {len(scores.false_positives)}")
    if scores.also:
        print(f"positives where other kinds fired too (not scored): {len(scores.also)}")
    if scores.classes:
        detected = sum(d for _, d in scores.classes.values())
        total = sum(n for n, _ in scores.classes.values())
        print(f"observed failure classes: {detected}/{total} rows detected")
        for failure, (n, d) in sorted(scores.classes.items()):
            if d < n:
                print(f"  {failure}: {d}/{n}")
    if scores.uncovered:
        listed = ", ".join(f"{c} ({n})" for c, n in sorted(scores.uncovered.items()))
        print(f"failure classes no catalogue kind covers: {listed}")
    for line in scores.unbuildable:
        print(f"not built: {line}")
    for title, items in (("misses", scores.misses), ("false positives", scores.false_positives)):
        if items:
            print(f"{title} ({len(items)}):")
            for item in items[: limit * 4]:
                print(f"  {json.dumps(item, ensure_ascii=False)}")


# -- the constructed history_lost chains ---------------------------------------------------


def _print_lost(scores: LostScores) -> None:
    print(f"\nConstructed chains (findings_lost: history_lost's cases), {scores.cases} runs:")
    header = f"{'kind':<44} {'support':>7} {'recall':>6} {'fired':>6} {'prec':>5}"
    print(header)
    print("-" * len(header))
    for kind, t in scores.kinds.items():
        mark = " <" if _below(t.precision, t.recall) else ""
        print(
            f"{kind:<44} {t.support:>7} {_fmt(t.recall):>6} {t.fired:>6} "
            f"{_fmt(t.precision):>5}{mark}"
        )
    for line in scores.wrong:
        print(f"  misread: {line}")


# -- main ----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Build the corpora, score them, print the tables (and write JSON when asked)."""
    tasks = sorted(sample_tasks())
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=6, help="seeds per dialect x task x mode")
    parser.add_argument("--base-seed", type=int, default=0, help="first seed; also deals faults")
    parser.add_argument("--rates", default="0.1,0.2,0.35", help="fault rates to draw from")
    parser.add_argument("--faults-per-run", type=int, default=3)
    parser.add_argument(
        "--faults", default="all", help="all, or the only faults dealt (a rare fault, often)"
    )
    parser.add_argument("--clean-share", type=float, default=0.15, help="share of clean runs")
    parser.add_argument("--dialects", default="all", help=f"all or some of {','.join(DIALECTS)}")
    parser.add_argument("--tasks", default="all", help=f"all or some of {','.join(tasks)}")
    parser.add_argument("--max-steps", type=int, default=24, help="cap per run (chain has 320)")
    parser.add_argument("--concurrency", type=int, default=16, help="runs recorded at once")
    parser.add_argument("--examples", type=int, default=3, help="misses/FPs listed per kind")
    parser.add_argument("--no-sim", action="store_true", help="skip the simulator corpus")
    parser.add_argument("--no-real", action="store_true", help="skip the real excerpts")
    parser.add_argument(
        "--no-lost", action="store_true", help="skip the constructed history_lost chains"
    )
    parser.add_argument("--json", type=Path, help="also write every figure as JSON")
    parser.add_argument(
        "--db", type=Path, help="record the corpus into this new file and keep it (to inspect)"
    )
    parser.add_argument(
        "--rescore",
        type=Path,
        help="score a corpus an earlier --db recorded (its labels beside it) with these checks",
    )
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.faults_per_run < 0 or args.max_steps < 1 or args.concurrency < 1:
        raise SystemExit("--seeds, --max-steps, --concurrency must be >= 1, --faults-per-run >= 0")
    if not 0.0 <= args.clean_share <= 1.0:
        raise SystemExit("--clean-share must be within [0, 1]")
    if args.rescore is not None and not labels_path(args.rescore).is_file():
        raise SystemExit(f"--rescore {args.rescore}: no corpus recorded with --db there")
    if args.db is not None and args.db.exists():
        raise SystemExit(f"--db {args.db}: already exists (the corpus goes into a new file)")
    config = {
        "seeds": args.seeds,
        "base_seed": args.base_seed,
        "rates": _rates(args.rates),
        "faults_per_run": args.faults_per_run,
        "faults": _names(args.faults, sorted(FAULTS), "faults"),
        "clean_share": args.clean_share,
        "dialects": _names(args.dialects, list(DIALECTS), "dialects"),
        "tasks": _names(args.tasks, tasks, "tasks"),
        "max_steps": args.max_steps,
        "concurrency": args.concurrency,
    }
    result: dict[str, Any] = {
        "config": config,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "targets": {"precision": PRECISION_TARGET, "recall": RECALL_TARGET},
    }
    if not args.no_sim:
        specs = plan_corpus(
            dialects=config["dialects"],
            tasks=config["tasks"],
            seeds=args.seeds,
            rates=config["rates"],
            faults_per_run=args.faults_per_run,
            clean_share=args.clean_share,
            base_seed=args.base_seed,
            faults=None if args.faults == "all" else config["faults"],
        )
        started = time.monotonic()
        if args.rescore is not None:
            # The runs and their labels as recorded; only the checks are this checkout's.
            corpus = rescore_corpus(args.rescore)
        else:
            print(f"recording {len(specs)} runs against the simulator ...", file=sys.stderr)
            with tempfile.TemporaryDirectory(prefix="bench-findings-") as tmp:
                corpus = build_corpus(
                    specs,
                    args.db or Path(tmp) / "corpus.duckdb",
                    max_steps=args.max_steps,
                    concurrency=args.concurrency,
                )
        recorded_s = time.monotonic() - started
        found = {run.run.id: run_checks(run.run) for run in corpus.runs}
        scores = score_corpus(corpus, found)
        rows = _sim_rows(scores)
        overall = _overall(scores.kinds)
        _print_sim(scores, rows, overall)
        _print_examples("Misses", scores.misses, args.examples)
        _print_examples("False positives", scores.false_positives, args.examples)
        _print_examples("Layer mismatches", scores.layer_mismatches, args.examples)
        _print_examples("Not measurable, left out of recall", scores.unmeasurable, args.examples)
        _print_diagnostics(scores)
        print(f"(recorded in {recorded_s:.0f} s)", file=sys.stderr)
        result["sim"] = {
            "runs": scores.runs,
            "steps": scores.steps,
            "faulted_steps": scores.faulted_steps,
            "multi_fault_steps": scores.multi_fault_steps,
            "recorded_s": round(recorded_s, 1),
            "kinds": rows,
            "overall": overall,
            "misses": [e.as_dict() for e in scores.misses],
            "false_positives": [e.as_dict() for e in scores.false_positives],
            "layer_mismatches": [e.as_dict() for e in scores.layer_mismatches],
            "unmeasurable": [e.as_dict() for e in scores.unmeasurable],
            "confusion": [
                {"fault": f, "kind": k, "count": n} for (f, k), n in scores.confusion.most_common()
            ],
            "faults_fired": dict(sorted(scores.fired.items())),
            "unmapped_faults": scores.unmapped,
            "unaligned_runs": scores.unaligned,
            "simulator_errors": scores.crashed,
            "never_injected": scores.never_injected,
        }
    if not args.no_real:
        real = score_real()
        real_rows = _real_rows(real)
        _print_real(real, real_rows, args.examples)
        result["real"] = {
            "shared_present": real.shared_present,
            "kinds": real_rows,
            "classes": {c: {"rows": n, "detected": d} for c, (n, d) in real.classes.items()},
            "uncovered_classes": real.uncovered,
            "unbuildable": real.unbuildable,
            "misses": real.misses,
            "false_positives": real.false_positives,
            "also": real.also,
            "negatives": real.negatives,
        }
    if not args.no_lost:
        lost = score_lost(args.base_seed)
        _print_lost(lost)
        result["lost"] = {
            "cases": lost.cases,
            "kinds": {
                kind: {
                    "support": t.support,
                    "hits": t.hits,
                    "recall": t.recall,
                    "fired": t.fired,
                    "precision": t.precision,
                }
                for kind, t in lost.kinds.items()
            },
            "wrong": lost.wrong,
        }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
