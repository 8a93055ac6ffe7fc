"""What a page of `traces view` costs over a large store, against the floor of reading it.

Run by hand (it is not a test and asserts nothing about time):

    .venv/bin/python benchmarks/bench_view.py [--steps 200000] [--store DIR] [--db FILE]
        [--rounds 7] [--json PATH]

The store is `bench_analyze`'s (generated agent logs of five providers, four with faults,
imported and analyzed; `--store DIR` keeps it for the next invocation with the same
`--steps`), or `--db FILE`, an existing store (a copy: an older one is migrated; the million
steps `bench_compare` imports, for the issue's figure). The real `traces view --port 0`
serves it in a process of its own; each page is fetched over HTTP on loopback, as a browser
would, in interleaved rounds with the baselines, and the CPU time the viewer's process spent
answering it is read from /proc (wall times on a machine others share measure them too):

- `plain query`: in this process, open the store read-only, run the query behind a runs
  page (the newest 50 runs) and close it: the floor of any page that reads the store, as
  the viewer opens it for every request.
- `traces runs`: the command listing the newest 50 runs, as a fresh process (wall time).

Ratios are of medians, against `plain query`. The issue's target is every page within
300 ms on a million steps on this 2-core machine.

Pages that read the whole store (the comparison, a policy's verdict, the findings matrix,
the repeated requests) are computed in the background once per store version: before the
rounds, each is fetched until it is current (its `Refresh` header gone), and how long that
took is reported (`first_current_s`); the rounds then time the answers a reader gets.
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


def _fetch(url: str) -> bool:
    """Fetch a page; whether it is current (no `Refresh` header: nothing being updated)."""
    try:
        with urllib.request.urlopen(url, timeout=120) as answer:
            answer.read()
            return answer.headers.get("refresh") is None
    except urllib.error.HTTPError as failed:
        raise SystemExit(f"{url}: HTTP {failed.code}") from None


def _until_current(url: str) -> float:
    """Seconds until the page is current."""
    start = time.perf_counter()
    while not _fetch(url):
        time.sleep(0.5)
    return time.perf_counter() - start


def _cpu_ms(pid: int) -> float:
    """CPU time (user + system, every thread) the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


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
        word = "the"  # in most generated texts: a page of matches among the newest runs
    finally:
        conn.close()
    sql = quote("SELECT provider, count(*) AS runs FROM runs GROUP BY 1")
    return {
        "/runs": "runs",
        "/runs page 20": "runs?page=20",
        "/runs by provider": f"runs?provider={quote(provider)}",
        "/runs by kind": f"runs?kind={quote(kind)}",
        "/runs sorted by steps": "runs?sort=steps",
        "/runs text search, rare": "runs?q=zebra",
        "/runs text search, searched on": "runs?q=zebra&from=20000",
        "/runs text search, common": f"runs?q={word}",
        "/runs/RUN": f"runs/{quote(run)}",
        "/runs/RUN/steps/N/body": f"runs/{quote(run)}/steps/{max(0, steps // 2)}/body",
        "/runs/RUN/steps/N": f"runs/{quote(run)}/steps/{max(0, steps // 2)}",
        "/findings": "findings",
        "/findings/KIND": f"findings/{quote(kind)}",
        "/compare": "compare",
        "/sql": f"sql?q={sql}",
        "/api/live": "api/live",
        "/comparison": "comparison",
        "/verify/faithful": f"verify/faithful?reference={quote(provider)}",
    } | ({"/compare/HASH": f"compare/{quote(digest)}"} if digest else {})


BACKGROUND = ("/comparison", "/verify/faithful", "/findings", "/compare")
"""Pages computed in the background once per store version."""


def _timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    """Build or reuse the store, serve it, time the pages and the baselines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--store", type=Path, default=None)
    parser.add_argument("--db", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        directory = args.store or Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        db = args.db if args.db is not None else build_store(directory, args.steps)
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
            first_current = {
                name: _until_current(url + pages[name]) for name in BACKGROUND if name in pages
            }
            arms: dict[str, Callable[[], object]] = {
                "plain query": lambda: plain_query(db),
                "traces runs": lambda: traces_runs(db),
            }
            for name, path in pages.items():
                arms[name] = lambda path=path: _fetch(url + path)  # type: ignore[misc]
            for work in arms.values():  # warm: caches, bytecode, the OS's page cache
                work()
            times: dict[str, list[float]] = {name: [] for name in arms}
            cpu: dict[str, float] = dict.fromkeys(pages, 0.0)
            for _ in range(args.rounds):
                for name, work in arms.items():
                    before = _cpu_ms(process.pid)
                    times[name].append(_timed(work))
                    if name in cpu:
                        cpu[name] += _cpu_ms(process.pid) - before
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
        "viewer_cpu_ms_mean": {name: total / args.rounds for name, total in cpu.items()},
        "first_current_s": first_current,
        "ratio_to_plain_query": {name: value / floor for name, value in medians.items()},
        "rounds_ms": times,
    }
    print(f"{report['steps']:,} steps; medians of {args.rounds} interleaved rounds")
    print(f"{'arm':<32} {'wall ms':>9} {'ratio':>7} {'viewer CPU ms':>14}")
    for name, value in medians.items():
        used = f"{cpu[name] / args.rounds:>14.1f}" if name in cpu else ""
        print(f"{name:<32} {value:>9.1f} {value / floor:>7.2f} {used}")
    for name, seconds in first_current.items():
        print(f"{name}: current {seconds:.1f} s after it was first asked for (background)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
