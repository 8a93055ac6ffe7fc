"""The reads of one run, in process, on the 100,000-step store and the million-step one: what
each costs and how many rows it reads, with the growth from one store to the other.

Run by hand (it is not a test and asserts nothing about time):

    .venv/bin/python benchmarks/bench_run_reads.py --small PATH --large PATH [--rounds 5]
        [--json PATH]

The focused part of `bench_scale.py` for issue 17 item 2 ("one run costs one run"): each
store is copied into a scratch directory, one generated 300-step run is imported into the
copy (`bench_scale.add_long_run`: the run read, as the issue's target names it), and in one
process, the copy opened read-only:

- `show`: `run_detail`, the run with its steps, calls, results and findings;
- `step page`: what the viewer's page of its middle step reads (`run_detail` of that step,
  `step_exchange`, `neighbour_steps`);
- `checks`: `load_run`, what `analyze RUN` and the checks at record time load;
- `request_messages`: the macro, for the run's last step (all 300 steps' messages).

Each read runs once under `EXPLAIN ANALYZE` (every statement it sends: the rows its table
scans read, summed), then once cold for its extra memory (peak RSS over the RSS before, the
peak reset through /proc/self/clear_refs), then `--rounds` times for CPU and wall time
(medians; on a shared machine read the CPU, which moves less). The import into each copy also
times the migration of a store written by an older version (the copy is opened for writing).
It imports the `traces` and `analyzer` on `sys.path`: with PYTHONPATH pointing at another
checkout, it measures that checkout's reads (the README's before/after).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_scale

from analyzer.checks.loader import load_run
from analyzer.queries import neighbour_steps, run_detail, step_exchange


class Counting:
    """A connection that runs each statement under `EXPLAIN ANALYZE` first, adding up the
    rows its table scans read, then runs it as asked."""

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self.conn = conn
        self.rows = 0

    def execute(self, sql: str, params: Any = None) -> duckdb.DuckDBPyConnection:
        text = self.conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params).fetchall()
        nodes = [json.loads(text[0][1])]
        while nodes:
            node = nodes.pop()
            if node.get("operator_type") == "TABLE_SCAN":
                self.rows += int(node.get("operator_rows_scanned", 0))
            nodes.extend(node.get("children", []))
        return self.conn.execute(sql, params)


def _status(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def _arms(run: str, steps: int) -> dict[str, Callable[[Any], object]]:
    middle = steps // 2

    def step_page(conn: Any) -> object:
        return (
            run_detail(conn, run, only_step=middle),
            step_exchange(conn, run, middle),
            neighbour_steps(conn, run, middle),
        )

    def messages(conn: Any) -> object:
        return conn.execute("SELECT * FROM request_messages(?, ?)", [run, steps - 1]).fetchall()

    return {
        "show": lambda conn: run_detail(conn, run),
        "step page": step_page,
        "checks": lambda conn: load_run(conn, run),
        "request_messages": messages,
    }


def _connect_when_free(db: Path) -> duckdb.DuckDBPyConnection:
    """`db` opened read-only once the store's server has let go of it: a server that leaves a
    file mostly free (the migration of an older store) rewrites it first, after the import
    has returned (`traces.store.compaction`)."""
    deadline = time.monotonic() + 300
    while True:
        try:
            return duckdb.connect(str(db), read_only=True)
        except duckdb.IOException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def measure(label: str, source: Path, scratch: Path, rounds: int) -> dict[str, Any]:
    """The copy of `source` with the long run, and each arm's figures."""
    db = scratch / f"{label}.duckdb"
    shutil.copyfile(source, db)
    started = time.perf_counter()
    bench_scale.add_long_run(db, scratch)
    imported = time.perf_counter() - started
    conn = _connect_when_free(db)
    steps_total = (conn.execute("SELECT count(*) FROM steps").fetchone() or (0,))[0]
    run, steps = conn.execute(
        "SELECT id, steps FROM runs ORDER BY steps DESC, id LIMIT 1"
    ).fetchone() or ("", 0)
    out: dict[str, Any] = {
        "steps": steps_total,
        "run": run,
        "run_steps": steps,
        "import_with_migration_s": imported,
    }
    for arm, read in _arms(run, steps).items():
        counting = Counting(conn)
        read(counting)
        Path("/proc/self/clear_refs").write_text("5")  # the peak RSS starts again here
        before = _status("VmRSS")
        read(conn)
        extra = _status("VmHWM") - before
        cpu, wall = [], []
        for _ in range(rounds):
            started_cpu, started = time.process_time(), time.perf_counter()
            read(conn)
            cpu.append(time.process_time() - started_cpu)
            wall.append(time.perf_counter() - started)
        out[arm] = {
            "rows_scanned": counting.rows,
            "cpu_ms": statistics.median(cpu) * 1000,
            "wall_ms": statistics.median(wall) * 1000,
            "extra_mb": extra,
        }
    conn.close()
    db.unlink()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=Path, required=True, help="the 100k-step store")
    parser.add_argument("--large", type=Path, required=True, help="the 1M-step store")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-run-reads-") as name:
        scratch = Path(name)
        results = {
            label: measure(label, source, scratch, options.rounds)
            for label, source in (("small", options.small), ("large", options.large))
        }
    small, large = results["small"], results["large"]
    print(
        f"stores: {small['steps']:,} and {large['steps']:,} steps; the run read: "
        f"{large['run_steps']} steps; "
        f"import of it (with any migration): {small['import_with_migration_s']:.1f} s, "
        f"{large['import_with_migration_s']:.1f} s"
    )
    print(
        f"{'read':<18} {'rows read':>21} {'CPU ms':>15} {'wall ms':>15} {'extra MiB':>15}"
        "  growth (CPU)"
    )
    for arm in _arms("", 0):
        a, b = small[arm], large[arm]
        growth = b["cpu_ms"] / a["cpu_ms"] if a["cpu_ms"] else float("nan")
        print(
            f"{arm:<18} {a['rows_scanned']:>10,} {b['rows_scanned']:>10,} "
            f"{a['cpu_ms']:>7.1f} {b['cpu_ms']:>7.1f} {a['wall_ms']:>7.1f} {b['wall_ms']:>7.1f} "
            f"{a['extra_mb']:>7.1f} {b['extra_mb']:>7.1f}  {growth:.1f}×"
        )
    if options.json:
        options.json.write_text(json.dumps({"duckdb": duckdb.__version__, **results}, indent=2))


if __name__ == "__main__":
    main()
