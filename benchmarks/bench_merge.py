"""Merge throughput: steps/s of `traces merge` against copying the same rows plainly.

Run by hand (it is not a test and asserts nothing about time):

    .venv/bin/python benchmarks/bench_merge.py [--exchanges 200000] [--steps 20]
        [--rounds 3] [--analyze] [--json PATH] [--source STORE | --save STORE]

It builds a source store by importing a file of `bench_import.py`'s agent logs (conversations
of `--steps` exchanges with growing histories, 64 interleaved, 1 in 10 streamed; `--analyze`
also runs the checks, so findings and ledgers are copied too), then times, in interleaved
rounds, each arm into a fresh copy of an empty migrated store:

- `ours`: `traces.store.merge.merge_stores`, as `traces merge SRC --into DST` runs it: attach
  the source read-only, check its schema, plan which runs and imports to copy (matching ids
  and start columns against the destination), then one `INSERT … SELECT` per table joined
  with that plan, one commit.
- `ours, again`: the same merge into the store the first one filled: every run is present,
  nothing is copied (what a nightly re-merge of an unchanged laptop costs).
- `steps table`: `INSERT INTO dst.steps SELECT * FROM src.steps`, one commit: the least any
  copy of the steps can cost in DuckDB (the baseline of the ratio).
- `every table`: the same plain `INSERT … SELECT *` for every table a merge copies: what the
  planning and the joins add on top is `ours` minus this.

Ratios are taken between medians.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
from bench_import import write_conversations

from traces.importing import ImportOptions, import_files
from traces.store.database import open_for_writing
from traces.store.merge import merge_stores
from traces.store.run_tables import OWN, store_tables

Arm = Callable[[Path, Path], int]
"""(source, destination) -> steps the destination holds afterwards."""


def arm_ours(source: Path, into: Path) -> int:
    [report] = merge_stores([source], into)
    return report.rows["steps"]


def _plain(source: Path, into: Path, tables: list[str] | None) -> int:
    conn = duckdb.connect(str(into))
    try:
        conn.execute(f"ATTACH '{source}' AS src (READ_ONLY)")
        names = tables or [t for t in store_tables(conn, "src") if t not in OWN]
        conn.execute("BEGIN TRANSACTION")
        for table in names:
            conn.execute(f"INSERT INTO {table} SELECT * FROM src.{table}")
        conn.execute("COMMIT")
        row = conn.execute("SELECT count(*) FROM steps").fetchone()
        return int(row[0]) if row else 0
    finally:
        conn.close()


def arm_steps_table(source: Path, into: Path) -> int:
    return _plain(source, into, ["steps"])


def arm_every_table(source: Path, into: Path) -> int:
    return _plain(source, into, None)


def _build_source(directory: Path, exchanges: int, steps: int, analyze: bool) -> Path:
    log = directory / "conversations.jsonl"
    write_conversations(log, exchanges, steps)
    source = directory / "source.duckdb"
    [report] = import_files(source, [log], ImportOptions(provider="bench"))
    log.unlink()
    if analyze:
        from analyzer.checks.persist import analyze_runs

        conn = open_for_writing(source)
        try:
            analyze_runs(conn, report.runs)
        finally:
            conn.close()
    return source


def _counts(store: Path) -> dict[str, int]:
    with duckdb.connect(str(store), read_only=True) as conn:
        counts = {}
        for table in store_tables(conn, store.stem):
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            counts[table] = int(row[0]) if row else 0
        return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exchanges", type=int, default=200_000, help="steps in the source")
    parser.add_argument("--steps", type=int, default=20, help="steps per conversation")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--analyze", action="store_true", help="fill findings and ledgers too")
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    parser.add_argument(
        "--source", type=Path, help="merge this store instead of building one (it is only read)"
    )
    parser.add_argument("--save", type=Path, help="keep the store built as the source here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-merge-") as tmp:
        directory = Path(tmp)
        t0 = time.perf_counter()
        if args.source is not None:
            source = args.source
        else:
            source = _build_source(directory, args.exchanges, args.steps, args.analyze)
            if args.save is not None:
                shutil.copyfile(source, args.save)
        counts = _counts(source)
        print(
            f"source: {counts['steps']} steps, {counts['runs']} runs, "
            f"{source.stat().st_size / 1e6:.0f} MB (built in {time.perf_counter() - t0:.0f} s)",
            file=sys.stderr,
        )
        empty = directory / "empty.duckdb"
        open_for_writing(empty).close()

        arms: dict[str, Arm] = {
            "ours": arm_ours,
            "ours, again": arm_ours,
            "steps table": arm_steps_table,
            "every table": arm_every_table,
        }
        times: dict[str, list[float]] = {name: [] for name in arms}
        for round_no in range(args.rounds):
            merged = directory / "merged.duckdb"
            for name, arm in arms.items():
                into = directory / "into.duckdb"
                if name == "ours, again":
                    into = merged  # what the first merge of this round filled
                else:
                    for leftover in (into, into.with_name(into.name + ".wal")):
                        leftover.unlink(missing_ok=True)
                    shutil.copyfile(empty, into)
                start = time.perf_counter()
                copied = arm(source, into)
                elapsed = time.perf_counter() - start
                expected = 0 if name == "ours, again" else counts["steps"]
                if copied != expected:
                    sys.exit(f"{name} copied {copied} steps, expected {expected}")
                if name == "ours":
                    for path in (into, into.with_name(into.name + ".wal")):
                        if path.exists():
                            shutil.move(path, merged.with_name(path.name.replace("into", "merged")))
                times[name].append(elapsed)
                print(f"round {round_no + 1} {name}: {elapsed:.2f} s", file=sys.stderr)

    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians["steps table"]
    print(f"\n| arm | seconds (median of {args.rounds}) | steps/s | / steps table |")
    print("| --- | ---: | ---: | ---: |")
    for name, seconds in medians.items():
        rate = counts["steps"] / seconds
        print(f"| {name} | {seconds:.2f} | {rate:,.0f} | {seconds / base:.2f} |")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "config": vars(args) | {"json": str(args.json)},
                    "machine": {"platform": platform.platform(), "python": sys.version},
                    "counts": counts,
                    "medians_s": medians,
                    "rounds_s": times,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
