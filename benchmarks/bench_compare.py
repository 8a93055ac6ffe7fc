"""`traces compare` and `traces report` over a large store, and the bootstrap behind them
against the pure-Python one it replaced.

Run by hand (it is not a test and asserts nothing about time):

    .venv/bin/python benchmarks/bench_compare.py [--steps 1000000] [--store DIR]
        [--rounds 1] [--arms LIST] [--json PATH]

The store: `bench_analyze.build_store` imports 100,000 generated multi-provider exchanges
(conversations of 20 steps, five providers with their faults) and analyses them once; that
store is then scaled to `--steps` by copying every run's rows (runs, steps, tool calls, tool
results, findings, ledgers, message lists) under new run ids, so a million steps are about
53,000 runs with the findings and fault rates of the base. With `--store DIR` both stores are
kept there and reused.

Arms, each run in its own fresh process where it is a command:

- `compare`: `traces compare --reference alpha --format json` (every group, every metric,
  Holm-corrected tests): wall time, CPU (its worker's included), the peak RSS of its main
  process and the peak of the sum over it and its worker (sampled every 10 ms).
- `report`: `traces report --reference alpha --html FILE`: the same figures.
- `bootstrap numpy`: in this process, the vectorised bootstrap of every group and metric of
  that comparison (`analyzer.compare.stats`), after the run table is loaded (untimed).
- `bootstrap processes`: the same groups split between this process and worker processes
  as `traces compare` splits them (`analyzer.compare.resampling`, one process per core);
  it must give the values and intervals of `bootstrap numpy`, which this arm checks.
- `bootstrap python`: the same with the pure-Python bootstrap it replaced
  (tests/bootstrap_reference.py, main before the change), on the same table: the baseline.
  The two must give the same values and intervals, which this arm checks.
- `bootstrap duckdb`: the other way considered: draws made and summed in DuckDB SQL (a table
  of resample × run picks joined to the per-run columns, `sum` per resample), for the ratio
  and mean metrics only (no quantiles), so a lower bound of that approach's cost. DuckDB's
  random() cannot reproduce Python's draws, so it could not keep today's numbers either.

The ratios printed are python / numpy and one process / processes on the bootstrap (same
run, same table).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))

import bench_analyze  # noqa: E402
import bootstrap_reference  # noqa: E402

from analyzer.compare.build import _derived_columns, _group_job, _sample  # noqa: E402
from analyzer.compare.costs import PriceList  # noqa: E402
from analyzer.compare.definitions import METRICS, MetricSpec, finding_metrics  # noqa: E402
from analyzer.compare.metrics import RunTable, load_run_table  # noqa: E402
from analyzer.compare.pairing import pair_counts  # noqa: E402
from analyzer.compare.resampling import bootstrap_groups  # noqa: E402
from analyzer.compare.selection import Selection, select_runs  # noqa: E402
from analyzer.compare.stats import DEFAULT_RESAMPLES, Quantile, bootstrap  # noqa: E402
from analyzer.compare.task_mix import keep_shared_tasks  # noqa: E402
from traces.processes import cores  # noqa: E402
from traces.store.database import open_file_for_writing  # noqa: E402

BASE_STEPS = 100_000
REFERENCE = "alpha"
ARMS = (
    "compare",
    "report",
    "bootstrap numpy",
    "bootstrap processes",
    "bootstrap python",
    "bootstrap duckdb",
)


def scaled_store(directory: Path, steps: int) -> Path:
    """The base store copied `steps // BASE_STEPS` times under new run ids."""
    base = bench_analyze.build_store(directory, BASE_STEPS)
    copies = max(1, steps // BASE_STEPS)
    if copies == 1:
        return base
    db = directory / f"compare-{steps}.duckdb"
    done = db.with_suffix(".built")
    if db.exists() and done.exists():
        print(f"reusing {db}", file=sys.stderr)
        return db
    db.unlink(missing_ok=True)
    started = time.perf_counter()
    shutil.copyfile(base, db)
    conn = open_file_for_writing(db)  # at the latest schema: the run keys to shift
    try:
        keyed = dict(
            conn.execute(
                "SELECT c.table_name, bool_or(c.column_name = 'run_key') "
                "FROM duckdb_columns() c JOIN duckdb_tables() t "
                "ON t.database_name = c.database_name AND t.schema_name = c.schema_name "
                "AND t.table_name = c.table_name "
                "WHERE c.database_name = current_database() "
                "GROUP BY c.table_name HAVING bool_or(c.column_name = 'run_id')"
            ).fetchall()
        )
        tables = list(keyed)
        # Copy after copy, each in the base's row order, as writers store runs (one after
        # another): a run's rows stay together and its run key (migration 12) is the base
        # run's shifted by whole copies. (A single cross join with `range` stored the copies
        # interleaved, a layout no writer makes, where no row group held few runs.)
        count = "SELECT count(*) FROM {}"
        rows = {t: (conn.execute(count.format(t)).fetchone() or (0,))[0] for t in tables}
        rows["runs"], shift = conn.execute(
            "SELECT count(*), coalesce(max(key), 0) FROM runs"
        ).fetchone() or (0, 0)
        for copy in range(1, copies):
            for table in ["runs", *tables]:
                key, number = ("id", "key") if table == "runs" else ("run_id", "run_key")
                # A table without run keys (`findings_so_far`) has only its ids renamed.
                shifted = f", {number} + {copy * shift} AS {number}"
                conn.execute(
                    f"INSERT INTO {table} SELECT * REPLACE ({key} || '~{copy}' AS {key}"
                    f"{shifted if table == 'runs' or keyed[table] else ''}) FROM {table} "
                    f"WHERE rowid < {rows[table]} ORDER BY rowid"
                )
        conn.execute("CHECKPOINT")
    finally:
        conn.close()
    done.write_text(json.dumps({"steps": steps, "copies": copies}))
    print(f"scaled to {copies}× in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return db


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _command_line(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as f:
                found += [int(child) for child in f.read().split()]
    except OSError:
        pass
    return found


def _tree_peak(pid: int, done: threading.Event, peak: list[int]) -> None:
    """Sample the RSS summed over `pid` and its descendants until `done` (Linux /proc)."""
    own = _command_line(pid)
    while not done.wait(0.01):
        tree = [pid]
        for member in tree:
            tree += _children(member)
        # A child between fork and exec still reports its parent's pages as its own.
        total = _rss_kb(pid) + sum(_rss_kb(p) for p in tree[1:] if _command_line(p) != own)
        peak[0] = max(peak[0], total)


def _command(args: list[str]) -> dict[str, float]:
    """A `traces` command in a fresh process: wall s, CPU s (its children's included; on a
    shared machine it moves less than wall time), the peak RSS of the command's process and
    the peak of the sum over it and its worker processes, MiB."""
    started = time.perf_counter()
    with open(os.devnull, "wb") as sink:
        process = subprocess.Popen(
            [*bench_analyze._traces_command(), *args], stdout=sink, stderr=subprocess.PIPE
        )
        done, peak = threading.Event(), [0]
        sampler = threading.Thread(target=_tree_peak, args=(process.pid, done, peak))
        sampler.start()
        assert process.stderr is not None
        errors = process.stderr.read()
        done.set()
        sampler.join()
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"traces {args[0]} failed: {errors.decode()}")
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "peak_tree_mb": peak[0] / 1024,
    }


class Table:
    """The run table of the whole store and the metric specs of its comparison."""

    def __init__(self, db: Path) -> None:
        conn = duckdb.connect(str(db), read_only=True)
        try:
            select_runs(conn, Selection())
            keep_shared_tasks(conn)
            self.table: RunTable = load_run_table(conn)
            self.columns = _derived_columns(self.table, PriceList({}))
            pairs = pair_counts(conn, REFERENCE)
        finally:
            conn.close()
        for which, name in enumerate(("tp", "fp", "fn", "paired_steps")):
            self.columns[name] = list(pairs.column(self.table.run_ids, which))
        self.specs: list[MetricSpec] = list(METRICS)
        for name in self.table.findings["kind"]:
            self.specs += finding_metrics("kind", name)
        for name in self.table.findings["layer"]:
            self.specs += finding_metrics("layer", name)
        self.groups = sorted(set(self.table.groups))

    def wanted(self, group: str) -> list[MetricSpec]:
        return [s for s in self.specs if not (s.key == "tool_call_f1" and group == REFERENCE)]


def bootstrap_numpy(data: Table) -> dict[str, Any]:
    out = {}
    for group in data.groups:
        sample = _sample(data.table, data.columns, group, DEFAULT_RESAMPLES, 0)
        wanted = data.wanted(group)
        sample.prepare([s.statistic for s in wanted])
        for spec in wanted:
            result = bootstrap(spec.statistic, sample)
            out[(group, spec.key)] = (result.value, result.lo, result.hi)
    return out


def bootstrap_processes(data: Table) -> dict[str, Any]:
    jobs = [
        _group_job(data.table, data.columns, g, data.specs, REFERENCE, DEFAULT_RESAMPLES, 0)
        for g in data.groups
    ]
    results = bootstrap_groups(jobs, processes=cores())
    return {
        (group, key): (result.value, result.lo, result.hi)
        for group, by_key in results.items()
        for key, result in by_key.items()
    }


def bootstrap_python(data: Table) -> dict[str, Any]:
    out = {}
    for group in data.groups:
        rows = data.table.rows_of(group)
        sample = bootstrap_reference.Sample(
            {name: [values[i] for i in rows] for name, values in data.columns.items()},
            [data.table.tasks[i] for i in rows],
            DEFAULT_RESAMPLES,
            f"0:{group}",
        )
        for spec in data.wanted(group):
            stat = getattr(bootstrap_reference, type(spec.statistic).__name__)(
                **asdict(spec.statistic)  # type: ignore[call-overload]
            )
            result = bootstrap_reference.bootstrap(stat, sample)
            out[(group, spec.key)] = (result.value, result.lo, result.hi)
    return out


def bootstrap_duckdb(data: Table) -> int:
    """Resampled sums of every ratio and mean column, drawn and summed in DuckDB."""
    names = sorted(
        {
            name
            for spec in data.specs
            if not isinstance(spec.statistic, Quantile)
            for name in vars(spec.statistic).values()
            if isinstance(name, str)
        }
    )
    conn = duckdb.connect()
    try:
        conn.execute("SELECT setseed(0.5)")
        total = 0
        for group in data.groups:
            rows = data.table.rows_of(group)
            columns = {
                f"c{j}": [data.columns[n][i] or 0.0 for i in rows] for j, n in enumerate(names)
            }
            conn.execute("DROP TABLE IF EXISTS g")
            conn.execute(
                "CREATE TABLE g AS SELECT unnest(range(?)) AS i, "
                + ", ".join(f"unnest(?::DOUBLE[]) AS {c}" for c in columns),
                [len(rows), *columns.values()],
            )
            sums = ", ".join(f"sum({c})" for c in columns)
            result = conn.execute(
                f"SELECT r, {sums} FROM (SELECT r, floor(random() * {len(rows)})::BIGINT AS i "
                f"FROM range({DEFAULT_RESAMPLES}) a(r), range({len(rows)}) b(k)) d "
                "JOIN g USING (i) GROUP BY r"
            ).fetchall()
            total += len(result)
        return total
    finally:
        conn.close()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--store", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--json", type=Path, default=None)
    options = parser.parse_args()
    arms = [a.strip() for a in options.arms.split(",") if a.strip()]
    directory = options.store or Path(tempfile.mkdtemp(prefix="bench-compare-"))
    directory.mkdir(parents=True, exist_ok=True)
    db = scaled_store(directory, options.steps)
    conn = duckdb.connect(str(db), read_only=True)
    steps, runs = conn.execute(
        "SELECT (SELECT count(*) FROM steps), count(*) FROM runs"
    ).fetchone() or (0, 0)
    conn.close()
    print(f"store: {steps:,} steps, {runs:,} runs ({db})")
    timings: dict[str, list[dict[str, float]]] = {arm: [] for arm in arms}
    data = Table(db) if any(a.startswith("bootstrap") for a in arms) else None
    results: dict[str, Any] = {}
    html = directory / "report.html"
    for _ in range(options.rounds):
        for arm in arms:
            if arm == "compare":
                args = ["compare", "--db", str(db), "--reference", REFERENCE, "--format", "json"]
                timings[arm].append(_command(args))
            elif arm == "report":
                args = ["report", "--db", str(db), "--reference", REFERENCE, "--html", str(html)]
                timings[arm].append(_command(args))
            else:
                assert data is not None
                started = time.perf_counter()
                cpu = time.process_time() + _children_cpu()
                if arm == "bootstrap numpy":
                    results[arm] = bootstrap_numpy(data)
                elif arm == "bootstrap processes":
                    results[arm] = bootstrap_processes(data)
                elif arm == "bootstrap python":
                    results[arm] = bootstrap_python(data)
                else:
                    bootstrap_duckdb(data)
                timings[arm].append(
                    {
                        "wall_s": time.perf_counter() - started,
                        "cpu_s": time.process_time() + _children_cpu() - cpu,
                    }
                )
    if "bootstrap numpy" in results and "bootstrap python" in results:
        same = results["bootstrap numpy"] == results["bootstrap python"]
        print(f"numpy and python bootstraps give the same values and intervals: {same}")
    if "bootstrap numpy" in results and "bootstrap processes" in results:
        # `compare` leaves out the cost of a group some of whose runs have no price (here
        # all: no providers file), which the one-process arm computes anyway.
        one, split = results["bootstrap numpy"], results["bootstrap processes"]
        same = all(one[key] == value for key, value in split.items()) and len(split) > 0
        print(f"one process and {cores()} give the same values and intervals: {same}")
    report: dict[str, Any] = {
        "steps": steps,
        "runs": runs,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "medians": {},
    }
    for arm, rounds in timings.items():
        medians = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
        report["medians"][arm] = medians
        rss = (
            f", CPU {medians['cpu_s']:.2f} s, peak RSS {medians['peak_rss_mb']:.0f} MiB"
            f" (with workers {medians['peak_tree_mb']:.0f} MiB)"
            if "peak_rss_mb" in medians
            else ""
        )
        if not rss:
            rss = f", CPU {medians['cpu_s']:.2f} s"
        print(f"{arm:18} {medians['wall_s']:8.2f} s{rss}")
    medians = report["medians"]
    if "bootstrap numpy" in medians and "bootstrap python" in medians:
        ratio = medians["bootstrap python"]["wall_s"] / medians["bootstrap numpy"]["wall_s"]
        report["ratio_python_over_numpy"] = ratio
        print(f"bootstrap: pure Python / numpy = {ratio:.1f}×")
    if "bootstrap numpy" in medians and "bootstrap processes" in medians:
        ratio = medians["bootstrap numpy"]["wall_s"] / medians["bootstrap processes"]["wall_s"]
        report["ratio_one_over_processes"] = ratio
        print(f"bootstrap: one process / {cores()} processes (wall) = {ratio:.2f}×")
    if "bootstrap numpy" in medians and "bootstrap duckdb" in medians:
        ratio = medians["bootstrap duckdb"]["wall_s"] / medians["bootstrap numpy"]["wall_s"]
        report["ratio_duckdb_over_numpy"] = ratio
        print(f"bootstrap: DuckDB SQL (sums only) / numpy = {ratio:.1f}×")
    if options.json:
        options.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
