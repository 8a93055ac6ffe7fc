"""What a page of `traces view` costs over a large store, against the floor of reading it.

Run by hand (it is not a test and asserts nothing about time):

    .venv/bin/python benchmarks/bench_view.py [--steps 200000] [--store DIR] [--rounds 7]
        [--json PATH]

The store is `bench_analyze`'s (generated agent logs of five providers, four with faults,
imported and analyzed; `--store DIR` keeps it for the next invocation with the same
`--steps`). The real `traces view --port 0` serves it in a process of its own; each page is
fetched over HTTP on loopback, as a browser would, in interleaved rounds with the baselines:

- `plain query`: in this process, open the store read-only, run the query behind a runs
  page (the newest 50 runs) and close it: the floor of any page that reads the store, as
  the viewer opens it for every request.
- `traces runs`: the command listing the newest 50 runs, as a fresh process (wall time).

Ratios are of medians, against `plain query`. The issue's target is every page within
300 ms on a million steps on this 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import duckdb
from bench_analyze import build_store

RUNS_SQL = "SELECT * FROM runs ORDER BY started_at DESC, id DESC LIMIT 50"


def _traces() -> list[str]:
    script = Path(sys.executable).with_name("traces")
    return [str(script)] if script.exists() else [sys.executable, "-m", "analyzer.cli"]


def plain_query(db: Path) -> None:
    """Open, the newest 50 runs, close."""
    conn = duckdb.connect(str(db), read_only=True)
    try:
        conn.execute(RUNS_SQL).fetchall()
    finally:
        conn.close()


def traces_runs(db: Path) -> None:
    """`traces runs` as a user runs it."""
    subprocess.run(
        [*_traces(), "runs", "--db", str(db), "--format", "json"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,  # its "showing 50 of N runs" note
    )


def _fetch(url: str) -> None:
    try:
        with urllib.request.urlopen(url, timeout=120) as answer:
            answer.read()
    except urllib.error.HTTPError as failed:
        raise SystemExit(f"{url}: HTTP {failed.code}") from None


def _pages(db: Path) -> dict[str, str]:
    """Path of each page measured, from what the store holds: its longest run, a middle
    step of it, its most frequent finding kind, a repeated request."""
    conn = duckdb.connect(str(db), read_only=True)
    try:
        run, steps, provider = conn.execute(
            "SELECT id, steps, provider FROM runs ORDER BY steps DESC, id LIMIT 1"
        ).fetchone() or ("", 0, "")
        kind = (
            conn.execute(
                "SELECT kind FROM findings GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
            ).fetchone()
            or ("none",)
        )[0]
        digest = (
            conn.execute(
                "SELECT request_hash FROM steps WHERE request_hash IS NOT NULL "
                "GROUP BY 1 HAVING count(*) > 1 LIMIT 1"
            ).fetchone()
            or (None,)
        )[0]
        word = "box"
    finally:
        conn.close()
    sql = quote("SELECT provider, count(*) AS runs FROM runs GROUP BY 1")
    return {
        "/runs": "runs",
        "/runs page 20": "runs?page=20",
        "/runs by provider": f"runs?provider={quote(provider)}",
        "/runs by kind": f"runs?kind={quote(kind)}",
        "/runs sorted by steps": "runs?sort=steps",
        "/runs text search": f"runs?q={word}",
        "/runs/RUN": f"runs/{quote(run)}",
        "/runs/RUN/steps/N": f"runs/{quote(run)}/steps/{max(0, steps // 2)}",
        "/findings": "findings",
        "/findings/KIND": f"findings/{quote(kind)}",
        "/compare": "compare",
        "/sql": f"sql?q={sql}",
        "/api/live": "api/live",
    } | ({"/compare/HASH": f"compare/{quote(digest)}"} if digest else {})


def _timed(work: Callable[[], None]) -> float:
    start = time.perf_counter()
    work()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    """Build or reuse the store, serve it, time the pages and the baselines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--store", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        directory = args.store or Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        db = build_store(directory, args.steps)
        process = subprocess.Popen(
            [*_traces(), "view", "--db", str(db), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip()
            pages = _pages(db)
            arms: dict[str, Callable[[], None]] = {
                "plain query": lambda: plain_query(db),
                "traces runs": lambda: traces_runs(db),
            }
            for name, path in pages.items():
                arms[name] = lambda path=path: _fetch(url + path)  # type: ignore[misc]
            for work in arms.values():  # warm: caches, bytecode, the OS's page cache
                work()
            times: dict[str, list[float]] = {name: [] for name in arms}
            for _ in range(args.rounds):
                for name, work in arms.items():
                    times[name].append(_timed(work))
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(30)
        steps = (
            duckdb.connect(str(db), read_only=True).execute("SELECT count(*) FROM steps").fetchone()
        )
    medians = {name: statistics.median(values) for name, values in times.items()}
    floor = medians["plain query"]
    report: dict[str, Any] = {
        "steps": steps[0] if steps else None,
        "rounds": args.rounds,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "duckdb": duckdb.__version__,
        },
        "pages": pages,
        "median_ms": medians,
        "ratio_to_plain_query": {name: value / floor for name, value in medians.items()},
        "rounds_ms": times,
    }
    print(f"{report['steps']:,} steps; medians of {args.rounds} interleaved rounds")
    print(f"{'arm':<24} {'ms':>9} {'ratio':>7}")
    for name, value in medians.items():
        print(f"{name:<24} {value:>9.1f} {value / floor:>7.2f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
