"""Do two versions of the code store the same verdicts? `traces analyze` run by each on copies
of the same stores, the three tables it writes compared row for row.

Run by hand (it is not a test):

    .venv/bin/python benchmarks/compare_analyze.py --before DIR [--after DIR]
        [--workers N] [--rtol 1e-9] STORE [STORE ...]

`--before` and `--after` are source trees (a `git worktree` or `git archive` of a commit; the
after tree defaults to this checkout): each analysis runs as `python -m analyzer analyze`
with that tree first on `PYTHONPATH`, on its own copy of each store (the stores themselves are
never written; opening a copy with newer code may migrate it, the same for both). With
`--workers N` the analysis runs with `TRACES_ANALYZE_WORKERS=N` (1: one process).

What must match, the verdicts users read:

- `findings`: run, step, kind, severity, layer and the evidence as stored (its JSON text)
  equal; the confidence equal to within `--rtol` (relative);
- `ledgers`: every column but `created_at`, text and integers equal, floating-point columns
  (retention tokens, posteriors, noise scale, ratios) within `--rtol`;
- the run summaries (`runs.failure_summary`, `runs.findings_by_kind`) equal.

Prints one line per store and table with the rows compared and the differences (the first
few listed), and exits 1 when any table differs.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

HERE = Path(__file__).resolve().parent.parent

TABLES: dict[str, str] = {
    "findings": """
        SELECT run_id, step_idx, kind, severity, layer, evidence::VARCHAR AS evidence, confidence
        FROM findings
        ORDER BY run_id, step_idx NULLS FIRST, kind, severity, layer, evidence::VARCHAR
    """,
    "ledgers": "SELECT * EXCLUDE (created_at) FROM ledgers ORDER BY run_id",
    "run summaries": "SELECT id, failure_summary, findings_by_kind FROM runs ORDER BY id",
}
SHOWN = 5
"""Differences listed per table (all are counted)."""


def analyze(tree: Path, store: Path, workers: int | None) -> None:
    """`traces analyze` over every run of `store`, as the code in `tree` runs it."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    if workers is not None:
        env["TRACES_ANALYZE_WORKERS"] = str(workers)
    command = [sys.executable, "-m", "analyzer", "analyze", "--db", str(store), "-f", "json"]
    done = subprocess.run(command, env=env, cwd=tree, stdout=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: traces analyze exited {done.returncode} on {store}")


def rows(store: Path, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The column names and rows of `sql` over `store`."""
    conn = duckdb.connect(str(store), read_only=True)
    try:
        cursor = conn.execute(sql)
        names = [column[0] for column in cursor.description or ()]
        return names, cursor.fetchall()
    finally:
        conn.close()


def same_value(a: Any, b: Any, rtol: float) -> bool:
    """Equal, floats to within `rtol` of the larger magnitude."""
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b or abs(a - b) <= rtol * max(abs(a), abs(b))
    return bool(a == b)


def relative(a: Any, b: Any) -> float:
    """The relative difference of two floats (0 for anything else, or equal values)."""
    if not (isinstance(a, float) and isinstance(b, float)) or a == b:
        return 0.0
    if math.isnan(a) or math.isnan(b):
        return math.inf
    return abs(a - b) / max(abs(a), abs(b))


def differences(
    before: Sequence[tuple[Any, ...]],
    after: Sequence[tuple[Any, ...]],
    names: Sequence[str],
    rtol: float,
) -> tuple[list[str], dict[str, float]]:
    """Each row that differs between the two tables (or the difference in their lengths),
    and the largest relative difference of each floating-point column that has any."""
    found = []
    largest: dict[str, float] = {}
    if len(before) != len(after):
        found.append(f"{len(before)} rows before, {len(after)} after")
    for index, (old, new) in enumerate(zip(before, after, strict=False)):
        if len(old) != len(new) or not all(
            same_value(a, b, rtol) for a, b in zip(old, new, strict=True)
        ):
            found.append(f"row {index}: {old!r} != {new!r}")
        for name, a, b in zip(names, old, new, strict=False):
            if (gap := relative(a, b)) > largest.get(name, 0.0):
                largest[name] = gap
    return found, largest


def compare(before: Path, after: Path, store: Path, workers: int | None, rtol: float) -> bool:
    """Analyze copies of `store` with both trees; print and return whether all tables match."""
    ok = True
    with tempfile.TemporaryDirectory(prefix="compare-analyze-") as directory:
        copies = {}
        for name, tree in (("before", before), ("after", after)):
            copy = Path(directory) / f"{name}.duckdb"
            shutil.copyfile(store, copy)
            analyze(tree, copy, workers)
            copies[name] = copy
        for table, sql in TABLES.items():
            names, old = rows(copies["before"], sql)
            new = rows(copies["after"], sql)[1]
            found, largest = differences(old, new, names, rtol)
            ok = ok and not found
            status = "same" if not found else f"{len(found)} differences"
            gaps = ", ".join(f"{name} {gap:.1e}" for name, gap in sorted(largest.items()))
            print(
                f"{store.name}: {table}: {len(old)} rows before, {len(new)} after: {status}"
                f" (largest relative differences: {gaps or 'none'})"
            )
            for line in found[:SHOWN]:
                print(f"  {line}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stores", nargs="+", type=Path, help="stores to analyze (copied)")
    parser.add_argument("--before", type=Path, required=True, help="source tree before")
    parser.add_argument("--after", type=Path, default=HERE, help="source tree after [this one]")
    parser.add_argument("--workers", type=int, help="TRACES_ANALYZE_WORKERS for both")
    parser.add_argument("--rtol", type=float, default=1e-9, help="relative tolerance of floats")
    args = parser.parse_args()
    for path in (args.before, args.after, *args.stores):
        if not path.exists():
            raise SystemExit(f"{path}: no such file or directory")
    ok = True
    for store in args.stores:
        same = compare(args.before.resolve(), args.after.resolve(), store, args.workers, args.rtol)
        ok = ok and same
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
