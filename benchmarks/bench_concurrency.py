"""A shared store: commit latency, several recorders at once, reads during a recording, disk.

Run by hand (it is not a test and asserts nothing about time):

    .venv/bin/python benchmarks/bench_concurrency.py [--boxes 30] [--rounds 3]
        [--latency-ms 0] [--json PATH]

Every figure is a ratio against a baseline measured in the same run, arms interleaved round
by round and medians reported, because a small shared machine is noisy:

1. per-step commit latency: one run recording steps one at a time, each awaited, through
   the store's server (`Recorder`, as `traces record` does), against the floor: the same
   rows inserted and committed by a DuckDB connection in this process;
2. total steps/s with 1, 2 and 4 recorder processes writing one store at once, against the
   simulator (each records the same runs), against 1 recorder;
3. steps/s at 64 concurrent runs: one recorder running 64, against four recorders running
   16 each into the same store;
4. latency of `traces runs` and `traces failures` (the command as a user runs it, start-up
   included) while a recorder runs 64 runs, against the same commands on the same store at
   rest (opened directly, no server), and served by a server that is idle (what the socket
   costs, apart from sharing the CPU with the recording);
5. disk: bytes per step of the store those recordings left.

The simulator runs in a process of its own (`bench_recording.SimProcess`). A recorder is a
process started with `python -c` that connects (starting the store's server, or joining
it), says it is ready, waits for the signal to go, then records its runs with
`traces.runner.record_runs` and reports when it started and ended; steps/s is every
recorder's steps over the time from the first start to the last end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
from bench_recording import SimProcess

from traces.model import RunRecord, StepRecord
from traces.store.database import open_file_for_writing
from traces.store.inserts import insert_rows
from traces.store.recorder import Recorder
from traces.store.rows import run_row, step_message_rows, step_row, tool_call_rows

REPO = Path(__file__).resolve().parents[1]

_RECORDER = """
import asyncio, json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from bench_recording import chain_task
from traces.client import EndpointConfig
from traces.harness import HarnessSettings
from traces.runner import RunPlan, record_runs
from traces.store.recorder import Recorder

db, url, runs, concurrency, boxes, seed = sys.argv[2], sys.argv[3], *map(int, sys.argv[4:8])
task = chain_task(boxes)
plan = RunPlan(
    task=task, provider="sim",
    endpoint=EndpointConfig(base_url=url, api_key_env=None, api_key="sk-bench"),
    settings=HarnessSettings(model="sim-reasoner-1", max_steps=task.max_steps, stream=False),
    repeat=runs, concurrency=concurrency, seed=seed,
)
recorder = Recorder(Path(db))
print("ready", flush=True)
sys.stdin.readline()
start = time.time()
summaries = asyncio.run(record_runs(plan, recorder))
end = time.time()
recorder.close()
print(json.dumps({"start": start, "end": end, "steps": sum(s.outcome.steps for s in summaries)}))
"""


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# -- 1. per-step commit latency -------------------------------------------------------------------


def _run_record(now: datetime) -> RunRecord:
    return RunRecord(
        id="r",
        task="t",
        task_path="t.toml",
        task_sha256="0" * 64,
        provider="p",
        model="m",
        base_url="http://127.0.0.1:1/v1",
        settings={},
        seed=0,
        started_at=now,
        recorder_pid=os.getpid(),
        recorder_host=socket.gethostname(),
    )


def _step(now: datetime, index: int) -> StepRecord:
    return StepRecord(
        run_id="r",
        index=index,
        started_at=now,
        latency_ms=1.0,
        streamed=False,
        request_params={"model": "m"},
        request_message_count=0,
        request_prefix=0,
        request_new_hashes=[],
        response_body="x" * 2000,
    )


def commit_direct(db: Path, steps: int) -> float:
    """Seconds per step: each step's rows inserted and committed by a local connection."""
    now = datetime.now()
    conn = open_file_for_writing(db)
    conn.execute("SET threads = 1")
    insert_rows(conn, "runs", [run_row(_run_record(now))])
    start = time.perf_counter()
    for index in range(steps):
        step = _step(now, index)
        conn.execute("BEGIN TRANSACTION")
        insert_rows(conn, "steps", [step_row(step)])
        insert_rows(conn, "step_messages", step_message_rows(step))
        insert_rows(conn, "tool_calls", tool_call_rows(step))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed / steps


def commit_served(db: Path, steps: int) -> float:
    """Seconds per step: each step recorded through the store's server, awaited."""
    now = datetime.now()

    async def record(recorder: Recorder) -> float:
        await recorder.begin_run(_run_record(now))
        start = time.perf_counter()
        for index in range(steps):
            await recorder.record_step(_step(now, index), {})
        return (time.perf_counter() - start) / steps

    recorder = Recorder(db)
    try:
        return asyncio.run(record(recorder))
    finally:
        recorder.close()


# -- 2, 3. recorders at once -------------------------------------------------------------------


def record_at_once(
    db: Path, url: str, recorders: int, runs: int, concurrency: int, boxes: int
) -> dict[str, float]:
    """`recorders` processes recording `runs` runs each into `db` at once."""
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _RECORDER,
                str(Path(__file__).parent),
                str(db),
                url,
                str(runs),
                str(concurrency),
                str(boxes),
                str(1000 * i),
            ],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(recorders)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    for proc in procs:  # all connected: go
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    reports = []
    for proc in procs:
        out, _ = proc.communicate(timeout=3600)
        assert proc.returncode == 0, out
        reports.append(json.loads(out.strip().splitlines()[-1]))
    wall = max(r["end"] for r in reports) - min(r["start"] for r in reports)
    steps = sum(r["steps"] for r in reports)
    return {"steps": steps, "wall_s": wall, "steps_per_s": steps / wall}


# -- 4. reads during a recording -----------------------------------------------------------------


def _cli_ms(db: Path, *args: str) -> float:
    env = {**os.environ, "NO_COLOR": "1"}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "analyzer", *args, "--db", str(db)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    elapsed = 1000 * (time.perf_counter() - start)
    assert done.returncode == 0, done.stderr
    return elapsed


def reads_during(db: Path, url: str, boxes: int) -> dict[str, list[float]]:
    """Milliseconds of `traces runs` and `traces failures`, alternately, for as long as one
    recorder records 64 runs at once into `db`."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _RECORDER,
            str(Path(__file__).parent),
            str(db),
            url,
            "64",
            "64",
            str(boxes),
            "5000",
        ],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.stdin.write("go\n")
    proc.stdin.flush()
    times: dict[str, list[float]] = {"runs": [], "failures": []}
    while proc.poll() is None:
        for command in times:
            if proc.poll() is None:
                times[command].append(_cli_ms(db, command))
    proc.communicate(timeout=600)
    return times


def reads_at_rest(db: Path, rounds: int, *, served: bool) -> dict[str, list[float]]:
    """The same commands on the store nobody writes: opened directly, or (`served`) through
    the server a recorder that records nothing keeps open."""
    recorder = Recorder(db) if served else None
    try:
        commands = ("runs", "failures")
        return {command: [_cli_ms(db, command) for _ in range(rounds)] for command in commands}
    finally:
        if recorder is not None:
            recorder.close()


# -- the whole run ---------------------------------------------------------------------------


def main() -> None:
    """Measure, print a summary and optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--boxes", type=int, default=30, help="boxes in the chain task per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--commit-steps", type=int, default=300)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    sim = SimProcess(args.latency_ms)
    results: dict[str, Any] = {
        "config": vars(args) | {"json": str(args.json) if args.json else None},
        "machine": {"cores": os.cpu_count(), "platform": platform.platform()},
    }
    try:
        with tempfile.TemporaryDirectory(prefix="bench-concurrency-") as tmp:
            work = Path(tmp)

            def fresh(name: str) -> Path:
                path = work / f"{name}-{time.monotonic_ns()}.duckdb"
                return path

            # 1. commit latency
            direct, served = [], []
            for _ in range(args.rounds):
                direct.append(commit_direct(fresh("direct"), args.commit_steps))
                served.append(commit_served(fresh("served"), args.commit_steps))
            latency = {
                "direct_ms": 1000 * _median(direct),
                "served_ms": 1000 * _median(served),
            }
            latency["ratio"] = latency["served_ms"] / latency["direct_ms"]
            results["commit_latency"] = latency
            print(
                f"per-step commit: direct {latency['direct_ms']:.2f} ms, through the server "
                f"{latency['served_ms']:.2f} ms ({latency['ratio']:.2f}x)",
                flush=True,
            )

            # 2. 1, 2, 4 recorders, each 8 runs, 4 at a time
            by_count: dict[int, list[float]] = {1: [], 2: [], 4: []}
            for _ in range(args.rounds):
                for count in by_count:
                    got = record_at_once(
                        fresh(f"rec{count}"), sim.base_url, count, 8, 4, args.boxes
                    )
                    by_count[count].append(got["steps_per_s"])
            recorders = {str(n): _median(v) for n, v in by_count.items()}
            results["recorders_steps_per_s"] = recorders
            base = recorders["1"]
            print(
                "recorders at once: "
                + ", ".join(
                    f"{n}: {v:.0f} steps/s ({v / base:.2f}x)" for n, v in recorders.items()
                ),
                flush=True,
            )

            # 3. 64 runs at once: one recorder, or four of 16
            one, four = [], []
            stores: list[Path] = []
            for _ in range(args.rounds):
                store = fresh("one64")
                one.append(
                    record_at_once(store, sim.base_url, 1, 64, 64, args.boxes)["steps_per_s"]
                )
                stores.append(store)
                four.append(
                    record_at_once(fresh("four16"), sim.base_url, 4, 16, 16, args.boxes)[
                        "steps_per_s"
                    ]
                )
            at64 = {"one_recorder": _median(one), "four_recorders": _median(four)}
            at64["ratio"] = at64["four_recorders"] / at64["one_recorder"]
            results["concurrent_64"] = at64
            print(
                f"64 runs at once: one recorder {at64['one_recorder']:.0f} steps/s, four of 16 "
                f"{at64['four_recorders']:.0f} steps/s ({at64['ratio']:.2f}x)",
                flush=True,
            )

            # 4. reads during a 64-run recording, and at rest on the store it left
            during: dict[str, list[float]] = {"runs": [], "failures": []}
            store = fresh("reads")
            for _ in range(args.rounds):
                for command, times in reads_during(store, sim.base_url, args.boxes).items():
                    during[command].extend(times)
            rest = reads_at_rest(store, max(5, args.rounds * 3), served=False)
            idle = reads_at_rest(store, max(5, args.rounds * 3), served=True)
            reads = {
                command: {
                    "during_ms": _median(during[command]),
                    "served_idle_ms": _median(idle[command]),
                    "at_rest_ms": _median(rest[command]),
                    "samples_during": len(during[command]),
                }
                for command in during
            }
            for figures in reads.values():
                figures["ratio"] = figures["during_ms"] / figures["at_rest_ms"]
                figures["served_ratio"] = figures["served_idle_ms"] / figures["at_rest_ms"]
            results["reads"] = reads
            for command, figures in reads.items():
                print(
                    f"traces {command}: {figures['during_ms']:.0f} ms during a 64-run recording "
                    f"({figures['samples_during']} reads, {figures['ratio']:.2f}x), "
                    f"{figures['served_idle_ms']:.0f} ms served but idle "
                    f"({figures['served_ratio']:.2f}x), {figures['at_rest_ms']:.0f} ms at rest",
                    flush=True,
                )

            # 5. disk
            with duckdb.connect(str(stores[-1]), read_only=True) as conn:
                row = conn.execute("SELECT count(*) FROM steps").fetchone()
            steps = int(row[0]) if row else 0
            size = stores[-1].stat().st_size
            results["disk"] = {"bytes": size, "steps": steps, "bytes_per_step": size / steps}
            print(f"disk: {size / steps:.0f} bytes per step ({steps} steps)", flush=True)
    finally:
        sim.stop()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
