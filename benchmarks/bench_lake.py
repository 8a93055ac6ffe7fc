"""Lake stores against a local file: commit latency, recording rate, reads during a recording,
disk use — every figure also as a ratio to the local file measured in the same run.

Run by hand (it is not a test and asserts nothing about time):

    .venv/bin/python benchmarks/bench_lake.py [--runs 8] [--steps 20] [--concurrency 8]
        [--commits 200] [--stores file,sqlite,postgres] [--recorders 1,2,4] [--json PATH]

Needs the `lake` extra and Debian's PostgreSQL binaries: a throwaway cluster is started in a
temporary directory (as an unprivileged user when run as root), as the tests do.

Stores: `file` (a DuckDB file, the baseline), `sqlite` (`ducklake:sqlite:PATH`), `postgres`
(`ducklake:postgres:…`), and with `--stores`, `duckdb` (`ducklake:PATH`). Each measurement
uses a new store. What is measured:

1. **Commit latency**: one `Recorder` (its writer process) commits `--commits` steps one after
   another, each awaited durable before the next is queued (a step with two new messages and
   a tool call, the rows one agent step writes): median and p90 per step.
2. **Recording rate**: `traces record` of `--runs` runs of the chain task (`--steps` boxes,
   so steps + 1 model calls a run), `--concurrency` at a time, against one simulator process
   (no artificial latency): steps per second from the first run's start to the last run's end
   as stored. Then 1, 2, 4 (`--recorders`) such `traces record` processes at once on each
   lake (a local file takes one writer: the others exit 4, counted).
3. **Reads during a recording**: while one `traces record` (four times the runs) writes the
   store, `traces runs` is run again and again: its latency (the whole command, as a user
   waits for it), and how many were refused; the baseline is `traces runs` on the same store
   after the recording.
4. **Disk**: bytes per stored step, data path + catalog, as recorded (DuckLake keeps small
   inserts in the catalog) and after `ducklake_flush_inlined_data` moved them to Parquet
   (zstd); a file's after `CHECKPOINT`. PostgreSQL's catalog is counted as its database's
   growth over an empty database's (`pg_database_size`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bench_recording import SimProcess

from traces.model import (
    RunOutcome,
    RunRecord,
    RunStatus,
    StepRecord,
    Termination,
    ToolCallRecord,
    message_hash,
)
from traces.processes import child_env
from traces.sample_files import resolve_task
from traces.store.database import Store, open_for_writing, resolve_db_path
from traces.store.recorder import Recorder

from postgres_server import PostgresCluster, find_bindir

REPO = Path(__file__).resolve().parents[1]
MODEL = "sim-reasoner-1"
KINDS = ("file", "sqlite", "postgres", "duckdb")


class Stores:
    """New stores of each kind, in a work folder and on one PostgreSQL cluster."""

    def __init__(self, work: Path, cluster: PostgresCluster | None) -> None:
        """Stores go under `work`; PostgreSQL databases on `cluster`."""
        self.work = work
        self.cluster = cluster
        self.count = 0
        self.empty: dict[str, int] = {}

    def new(self, kind: str) -> tuple[str, Path]:
        """A name for a new store of `kind` (for --db) and its data path."""
        self.count += 1
        folder = self.work / f"{kind}-{self.count}"
        folder.mkdir()
        data = folder / "data"
        if kind == "file":
            return str(folder / "traces.duckdb"), data
        if kind == "sqlite":
            return f"ducklake:sqlite:{folder / 'catalog.sqlite'}", data
        if kind == "duckdb":
            return f"ducklake:{folder / 'catalog.ducklake'}", data
        assert self.cluster is not None
        name = f"bench{self.count}"
        self.cluster.create_database(name)
        return f"ducklake:postgres:{self.cluster.conninfo(name)}", data

    def env(self) -> dict[str, str]:
        """The environment the commands run in (the cluster's password as PGPASSWORD)."""
        env = {**child_env(), "NO_COLOR": "1"}
        if self.cluster is not None:
            env["PGPASSWORD"] = self.cluster.password
        return env

    def disk(self, db: str, data: Path) -> int:
        """Bytes the store takes over an empty store of its kind: its files (or its
        PostgreSQL database), and its data path."""
        kind = _kind(db)
        if kind not in self.empty:
            empty, empty_data = self.new(kind)
            open_for_writing(resolve_db_path(empty, empty_data)).close()
            self.empty[kind] = self._size(empty, empty_data)
        return self._size(db, data) - self.empty[kind]

    def _size(self, db: str, data: Path) -> int:
        files = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
        if db.startswith("ducklake:postgres:"):
            return files + self._pg_size(db)
        folder = (Path(db.split(":")[-1]) if db.startswith("ducklake:") else Path(db)).parent
        return files + sum(p.stat().st_size for p in folder.iterdir() if p.is_file())

    def _pg_size(self, db: str) -> int:
        assert self.cluster is not None
        name = db.split("dbname=", 1)[1].split()[0]
        out = self.cluster._run(
            "psql",
            "-h",
            str(self.cluster.root),
            "-p",
            "5432",
            "-U",
            "traces",
            "-d",
            name,
            "-Atc",
            "SELECT pg_database_size(current_database())",
        )
        return int(out.stdout.strip())


def _kind(db: str) -> str:
    if not db.startswith("ducklake:"):
        return "file"
    head = db.split(":")[1]
    return head if head in ("postgres", "sqlite") else "duckdb"


def _with_password(stores: Stores) -> None:
    if stores.cluster is not None:
        os.environ["PGPASSWORD"] = stores.cluster.password


# -- 1. commit latency -------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _step(run_id: str, index: int) -> tuple[StepRecord, dict[str, dict[str, Any]]]:
    """A step as an agent step writes it: two new messages, one tool call."""
    new = [
        {"role": "assistant", "content": f"step {index} of {run_id}: " + "x" * 200},
        {"role": "tool", "tool_call_id": f"call_{index}", "content": "y" * 400},
    ]
    hashes = [message_hash(m) for m in new]
    step = StepRecord(
        run_id=run_id,
        index=index,
        started_at=_now(),
        latency_ms=1.0,
        streamed=False,
        request_params={"model": MODEL},
        request_message_count=2 * index + 2,
        request_prefix=2 * index,
        request_new_hashes=hashes,
        response_body='{"choices": []}',
        finish_reason_raw="tool_calls",
        finish_reason="tool_calls",
        reasoning_source="none",
        tool_calls=[
            ToolCallRecord(
                index=0,
                id=f"call_{index}",
                id_format="openai",
                name="open_box",
                arguments_raw='{"box": 1}',
                arguments_type="string",
                arguments={"box": 1},
                json_valid=True,
                schema_valid=True,
            )
        ],
    )
    return step, dict(zip(hashes, new, strict=True))


def commit_latency(store: Store, commits: int) -> list[float]:
    """Seconds each of `commits` steps took to be committed, one after another."""
    import socket

    latencies: list[float] = []

    async def scenario(recorder: Recorder) -> None:
        run_id = f"bench-{time.time_ns()}"
        await recorder.begin_run(
            RunRecord(
                id=run_id,
                task="bench",
                task_path="bench.toml",
                task_sha256="0" * 64,
                provider="bench",
                model=MODEL,
                base_url="http://127.0.0.1:1/v1",
                settings={},
                seed=0,
                started_at=_now(),
                recorder_pid=os.getpid(),
                recorder_host=socket.gethostname(),
            )
        )
        for index in range(commits):
            step, messages = _step(run_id, index)
            started = time.perf_counter()
            await recorder.record_step(step, messages)
            latencies.append(time.perf_counter() - started)
        await recorder.end_run(
            run_id,
            RunOutcome(
                status=RunStatus.COMPLETED,
                termination=Termination.COMPLETED,
                ended_at=_now(),
                success=True,
                steps=commits,
                tool_calls=commits,
            ),
        )

    recorder = Recorder(store)  # opening (creating) the store is setup, not timed
    try:
        asyncio.run(scenario(recorder))
    finally:
        recorder.close()
    return latencies


# -- 2. recording rate -------------------------------------------------------------------------


def chain_task(work: Path, boxes: int) -> Path:
    """samples/tasks/chain.toml with `boxes` boxes, as a task file."""
    text = resolve_task("chain").read_text(encoding="utf-8")
    lines = [
        f"length = {boxes}" if line.startswith("length =") else line for line in text.splitlines()
    ]
    lines = [
        f"max_steps = {boxes + 20}" if line.startswith("max_steps =") else line for line in lines
    ]
    path = work / f"chain_{boxes}.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def record_command(
    args: argparse.Namespace, task: Path, sim: SimProcess, db: str, data: Path, runs: int, seed: int
) -> list[str]:
    """`traces record` of `runs` runs into `db` against the simulator."""
    return [
        sys.executable,
        "-m",
        "analyzer",
        "record",
        "--task",
        str(task),
        "--base-url",
        sim.base_url,
        "--model",
        MODEL,
        "--provider",
        "sim",
        "--repeat",
        str(runs),
        "--concurrency",
        str(args.concurrency),
        "--seed",
        str(seed),
        "--db",
        db,
        "--data-path",
        str(data),
        "--format",
        "json",
    ]


def stored_rate(db: str, data: Path) -> tuple[int, float]:
    """(steps, steps per second) of everything stored: first start to last end."""
    with open_for_writing(resolve_db_path(db, data)) as conn:
        row = conn.execute(
            "SELECT sum(steps), epoch(max(ended_at) - min(started_at)) FROM runs"
        ).fetchone()
    assert row is not None and row[0]
    return int(row[0]), int(row[0]) / float(row[1])


def recorders_at_once(
    args: argparse.Namespace, stores: Stores, task: Path, sim: SimProcess, kind: str, count: int
) -> dict[str, Any]:
    """`count` `traces record` processes on one new store at the same moment."""
    db, data = stores.new(kind)
    open_for_writing(resolve_db_path(db, data)).close()  # created before: not timed
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            record_command(args, task, sim, db, data, args.runs, 1000 * i),
            env=stores.env(),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(count)
    ]
    refused = 0
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            refused += 1
            last = err.strip().splitlines()[-1:] or [""]
            print(f"  {kind} x{count}: a recorder exited {proc.returncode}: {last[0]}", flush=True)
    wall = time.perf_counter() - started
    steps, rate = stored_rate(db, data)
    return {
        "store": kind,
        "recorders": count,
        "refused": refused,
        "steps": steps,
        "steps_per_s": rate,
        "wall_s": wall,
        "disk": stores.disk(db, data),
    }


# -- 3. reads during a recording ---------------------------------------------------------------


def timed_runs(db: str, env: dict[str, str]) -> tuple[float, int | None]:
    """Seconds one `traces runs` took, and the runs it listed (None: it was refused)."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "analyzer", "runs", "--db", db, "--format", "json"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    return seconds, len(json.loads(done.stdout)) if done.returncode == 0 else None


def reads_during(
    args: argparse.Namespace, stores: Stores, task: Path, sim: SimProcess, kind: str
) -> dict[str, Any]:
    """`traces runs` while a recording writes the store, then once it is done."""
    db, data = stores.new(kind)
    open_for_writing(resolve_db_path(db, data)).close()
    env = stores.env()
    recording = subprocess.Popen(
        record_command(args, task, sim, db, data, 4 * args.runs, 0),
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    during: list[float] = []
    refused = 0
    while recording.poll() is None:
        seconds, listed = timed_runs(db, env)
        if recording.poll() is not None:
            break  # it finished meanwhile: not a read during the recording
        if listed is None:  # a file held by the recording's writer
            refused += 1
        elif listed or refused:  # not while the command was still starting
            during.append(seconds)
    recording.communicate()
    after = [timed_runs(db, env)[0] for _ in range(5)]
    return {
        "store": kind,
        "reads": len(during),
        "refused": refused,
        "median_s": _median(during),
        "p90_s": _p90(during),
        "idle_median_s": statistics.median(after),
    }


# -- 4. disk -----------------------------------------------------------------------------------


def disk_use(stores: Stores, db: str, data: Path) -> dict[str, Any]:
    """Bytes per step as recorded, then with the data moved to Parquet (or checkpointed)."""
    with open_for_writing(resolve_db_path(db, data)) as conn:
        row = conn.execute("SELECT count(*) FROM steps").fetchone()
    steps = int(row[0]) if row else 0
    recorded = stores.disk(db, data)
    with open_for_writing(resolve_db_path(db, data)) as conn:
        if db.startswith("ducklake:"):
            conn.execute("CALL ducklake_flush_inlined_data('store')")
        else:
            conn.execute("CHECKPOINT")
    compact = stores.disk(db, data)
    return {
        "steps": steps,
        "bytes_per_step": recorded / steps,
        "bytes_per_step_compacted": compact / steps,
    }


# -- the run -----------------------------------------------------------------------------------


def _title(text: str) -> None:
    print(f"== {text}", flush=True)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _p90(values: list[float]) -> float | None:
    return statistics.quantiles(values, n=10)[-1] if len(values) >= 2 else _median(values)


def _ratio(value: float | None, base: float | None) -> float | None:
    return None if value is None or not base else value / base


def _fmt(value: float | None, unit: str = "", scale: float = 1.0) -> str:
    return "–" if value is None else f"{value * scale:,.1f}{unit}"


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement; the results as one JSON-able dict (also printed as tables)."""
    kinds = [k.strip() for k in args.stores.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or kinds[0] != "file":
        raise SystemExit(f"--stores: the first must be file (the baseline), then of {KINDS}")
    counts = [int(n) for n in args.recorders.split(",")]
    cluster = None
    if "postgres" in kinds:
        bindir = find_bindir()
        if bindir is None:
            raise SystemExit("PostgreSQL's initdb/pg_ctl not found (apt-get install postgresql)")
        cluster = PostgresCluster(bindir)
        cluster.start()
    work = Path(tempfile.mkdtemp(prefix="bench-lake-"))
    stores = Stores(work, cluster)
    _with_password(stores)
    sim = SimProcess(0.0)
    results: dict[str, Any] = {
        "config": vars(args),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "duckdb": duckdb.__version__,
        },
    }
    try:
        task = chain_task(work, args.steps)
        timed = _title

        timed("commit latency")
        latency: dict[str, Any] = {}
        for kind in kinds:
            db, data = stores.new(kind)
            values = [1000 * v for v in commit_latency(resolve_db_path(db, data), args.commits)]
            latency[kind] = {"median_ms": _median(values), "p90_ms": _p90(values)}
            print(f"  {kind}: {latency[kind]['median_ms']:.2f} ms", flush=True)
        results["commit_latency"] = latency

        timed("recording: one recorder, then several at once on each lake")
        recording: list[dict[str, Any]] = []
        for kind in kinds:
            for count in counts if kind != "file" else [1, *[c for c in counts if c > 1][:1]]:
                row = recorders_at_once(args, stores, task, sim, kind, count)
                recording.append(row)
                print(f"  {kind} x{count}: {row['steps_per_s']:.1f} steps/s", flush=True)
        results["recording"] = recording

        timed("reads during a recording")
        results["reads"] = [reads_during(args, stores, task, sim, kind) for kind in kinds]

        timed("disk")
        disk: dict[str, Any] = {}
        for kind in kinds:
            db, data = stores.new(kind)
            done = subprocess.run(
                record_command(args, task, sim, db, data, args.runs, 0),
                env=stores.env(),
                cwd=REPO,
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise SystemExit(f"{kind}: recording failed: {done.stderr.strip()[-300:]}")
            disk[kind] = disk_use(stores, db, data)
        results["disk"] = disk
    finally:
        sim.stop()
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    report(results, kinds)
    return results


def report(results: dict[str, Any], kinds: list[str]) -> None:
    """The results as tables, each figure with its ratio to the local file's."""
    base = results["commit_latency"]["file"]
    print("\ncommit latency per step (ms), one writer, each step awaited")
    print(f"{'store':<10} {'median':>8} {'p90':>8} {'x file':>8}")
    for kind in kinds:
        row = results["commit_latency"][kind]
        ratio = _ratio(row["median_ms"], base["median_ms"])
        print(f"{kind:<10} {row['median_ms']:>8.2f} {row['p90_ms']:>8.2f} {_fmt(ratio, 'x'):>8}")
    file_rate = next(r["steps_per_s"] for r in results["recording"] if r["store"] == "file")
    print("\nrecording rate (steps/s), recorders at once (each: its own runs)")
    print(f"{'store':<10} {'recorders':>9} {'refused':>8} {'steps/s':>9} {'x file(1)':>10}")
    for row in results["recording"]:
        ratio = _ratio(row["steps_per_s"], file_rate)
        print(
            f"{row['store']:<10} {row['recorders']:>9} {row['refused']:>8} "
            f"{row['steps_per_s']:>9.1f} {_fmt(ratio, 'x'):>10}"
        )
    idle = next(r["idle_median_s"] for r in results["reads"] if r["store"] == "file")
    print("\n`traces runs` during a recording (s, the whole command)")
    print(
        f"{'store':<10} {'reads':>6} {'refused':>8} {'median':>8} {'p90':>8} {'idle':>8} "
        f"{'x file idle':>12}"
    )
    for row in results["reads"]:
        print(
            f"{row['store']:<10} {row['reads']:>6} {row['refused']:>8} "
            f"{_fmt(row['median_s'], '', 1):>8} {_fmt(row['p90_s']):>8} "
            f"{row['idle_median_s']:>8.2f} {_fmt(_ratio(row['median_s'], idle), 'x'):>12}"
        )
    file_disk = results["disk"]["file"]["bytes_per_step_compacted"]
    print("\ndisk (bytes per step: data path + catalog)")
    print(f"{'store':<10} {'steps':>6} {'recorded':>9} {'compacted':>10} {'x file':>8}")
    for kind in kinds:
        row = results["disk"][kind]
        ratio = _ratio(row["bytes_per_step_compacted"], file_disk)
        print(
            f"{kind:<10} {row['steps']:>6} {row['bytes_per_step']:>9,.0f} "
            f"{row['bytes_per_step_compacted']:>10,.0f} {_fmt(ratio, 'x'):>8}"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--runs", type=int, default=8, help="runs per recorder (default 8)")
    p.add_argument("--steps", type=int, default=20, help="boxes per chain (default 20)")
    p.add_argument("--concurrency", type=int, default=8, help="runs in flight (default 8)")
    p.add_argument("--commits", type=int, default=200, help="commits timed (default 200)")
    p.add_argument("--stores", default="file,sqlite,postgres", help=f"of {', '.join(KINDS)}")
    p.add_argument("--recorders", default="1,2,4", help="recorders at once (default 1,2,4)")
    p.add_argument("--json", type=Path, help="also write the results as JSON to this path")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print (and optionally save) the results."""
    args = parse_args(argv)
    results = run(args)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
