"""Replay throughput: `traces replay` against K2-Vendor-Verifier's own `tool_calls_eval.py`.

Run by hand (it is not a test and asserts nothing about time):

    .venv/bin/python benchmarks/bench_replay.py --k2vv-script PATH/tool_calls_eval.py
        --k2vv-python PATH/venv/bin/python [--concurrency 5] [--rounds 3] [--stream]
        [--latency-ms 0] [--limit N] [--json PATH]

K2-Vendor-Verifier (MoonshotAI/K2-Vendor-Verifier, no licence) is run, never copied: clone it
and give its script and a Python that has its dependencies (`pip install httpx jsonschema
loguru megfile openai tqdm transformers` in a throwaway venv; they are not ours).

Both arms send the same requests — the shipped `schemas` suite (402 requests), written as
K2-Vendor-Verifier's test sets are (one request body per line, `stream` set as `--stream`
says) — to the same endpoint, the project's simulator served by `traces sim` in a process of
its own, at the same concurrency. Each round runs both arms as fresh processes, interleaved,
in a fresh directory:

- `k2vv`: `tool_calls_eval.py SUITE --base-url URL --model M --concurrency K` (it validates
  every tool call against the request's schema and writes results and a summary as JSON);
- `ours`: `traces replay SUITE --provider bench --base-url URL --model M --concurrency K`
  into a fresh DuckDB file (each answer a run with its step, tool calls checked against the
  request's schemas, then every check of `traces analyze` on every run).

Two figures per arm, as medians over the rounds: requests/s over the whole process (start-up,
imports, writing, our analysis included: what a user waits for), and over the sending phase
alone (K2-Vendor-Verifier's own `eval_duration_ms`; ours from the first run's start to the
last run's end in the store). Ratios are ours / k2vv: above 1, ours is faster. Both arms'
counts (answers, responses that finished with tool_calls, those whose calls are all valid)
are compared, so the two did the same work.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb

from traces.request_suites.reading import read_suite
from traces.sample_files import resolve_request_suite

REPO = Path(__file__).resolve().parents[1]
MODEL = "sim-reasoner-1"


class SimCommand:
    """`traces sim --port 0` in a process of its own (the URL is its first stdout line)."""

    def __init__(self, latency_ms: float) -> None:
        """Start it and wait for its URL."""
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "analyzer",
                "sim",
                "--port",
                "0",
                "--latency-ms",
                str(latency_ms),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=REPO,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("http"):
            self.stop()
            raise SystemExit(f"traces sim failed to start (got {line!r})")
        self.base_url = line.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"

    def stop(self) -> None:
        """SIGTERM, then wait."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def write_k2vv_suite(path: Path, stream: bool, limit: int | None) -> int:
    """The shipped `schemas` suite as K2-Vendor-Verifier's test sets are written; its size."""
    requests = read_suite(resolve_request_suite("schemas")).requests[:limit]
    with path.open("w", encoding="utf-8") as out:
        for request in requests:
            out.write(json.dumps({**request.body, "stream": stream}, ensure_ascii=False) + "\n")
    return len(requests)


def run_k2vv(args: argparse.Namespace, suite: Path, work: Path, base_url: str) -> dict[str, Any]:
    """One K2-Vendor-Verifier run: wall time, its own sending time and its counts."""
    summary = work / "summary.json"
    started = time.perf_counter()
    done = subprocess.run(
        [
            args.k2vv_python,
            args.k2vv_script,
            str(suite),
            "--base-url",
            base_url,
            "--model",
            MODEL,
            "--api-key",
            "sim",
            "--concurrency",
            str(args.concurrency),
            "--output",
            str(work / "results.jsonl"),
            "--summary",
            str(summary),
        ],
        capture_output=True,
        text=True,
        cwd=work,
        env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"},
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"tool_calls_eval.py failed:\n{done.stderr[-2000:]}")
    data = json.loads(summary.read_text())
    return {
        "wall_s": wall,
        "sending_s": data["eval_duration_ms"] / 1000,
        "answers": data["success_count"],
        "tool_calls": data["finish_tool_calls"],
        "valid": data["successful_tool_call_count"],
    }


_COUNTS = """
SELECT count(*) FILTER (WHERE r.status = 'completed'),
       count(*) FILTER (WHERE s.finish_reason = 'tool_calls'),
       count(*) FILTER (WHERE s.finish_reason = 'tool_calls' AND NOT EXISTS (
           SELECT 1 FROM tool_calls c WHERE c.run_id = r.id
           AND (NOT c.json_valid OR c.schema_valid IS FALSE))),
       epoch(max(r.ended_at) - min(r.started_at))
FROM runs r JOIN steps s ON s.run_id = r.id
"""


def run_ours(args: argparse.Namespace, suite: Path, work: Path, base_url: str) -> dict[str, Any]:
    """One `traces replay` run: wall time, its sending time (from the store) and its counts."""
    db = work / "traces.duckdb"
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "analyzer",
            "replay",
            str(suite),
            "--provider",
            "bench",
            "--base-url",
            base_url,
            "--model",
            MODEL,
            "--concurrency",
            str(args.concurrency),
            "--db",
            str(db),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "OPENAI_API_KEY": ""},
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"traces replay failed:\n{done.stderr[-2000:]}")
    with duckdb.connect(str(db), read_only=True) as conn:
        row = conn.execute(_COUNTS).fetchone()
    assert row is not None
    return {
        "wall_s": wall,
        "sending_s": float(row[3]),
        "answers": int(row[0]),
        "tool_calls": int(row[1]),
        "valid": int(row[2]),
    }


def main() -> None:
    """Parse arguments, measure, print (and optionally write) the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k2vv-script", required=True, help="K2VV's tool_calls_eval.py")
    parser.add_argument("--k2vv-python", required=True, help="a Python with K2VV's deps")
    parser.add_argument("--concurrency", type=int, default=5, help="K2VV's default: 5")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stream", action="store_true", help="every request streamed")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="simulator delay")
    parser.add_argument("--limit", type=int, default=None, help="first N requests only")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    sim = SimCommand(args.latency_ms)
    rounds: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
            suite = Path(tmp) / "schemas_k2vv.jsonl"
            size = write_k2vv_suite(suite, args.stream, args.limit)
            for index in range(args.rounds):
                measured: dict[str, Any] = {}
                for arm, run in (("k2vv", run_k2vv), ("ours", run_ours)):
                    work = Path(tmp) / f"{arm}-{index}"
                    work.mkdir()
                    measured[arm] = run(args, suite, work, sim.base_url)
                    print(f"round {index + 1} {arm}: {measured[arm]}", file=sys.stderr)
                rounds.append(measured)
    finally:
        sim.stop()

    def median(arm: str, key: str) -> float:
        return statistics.median(r[arm][key] for r in rounds)

    figures: dict[str, Any] = {}
    for arm in ("k2vv", "ours"):
        figures[arm] = {
            "requests_per_s": size / median(arm, "wall_s"),
            "sending_requests_per_s": size / median(arm, "sending_s"),
            "wall_s": median(arm, "wall_s"),
            "sending_s": median(arm, "sending_s"),
        }
    ratios = {
        "requests_per_s": figures["ours"]["requests_per_s"] / figures["k2vv"]["requests_per_s"],
        "sending_requests_per_s": figures["ours"]["sending_requests_per_s"]
        / figures["k2vv"]["sending_requests_per_s"],
    }
    same = all(
        r["k2vv"][key] == r["ours"][key]
        for r in rounds
        for key in ("answers", "tool_calls", "valid")
    )
    print(
        f"{size} requests, concurrency {args.concurrency}, "
        f"{'streamed' if args.stream else 'not streamed'}, "
        f"simulator latency {args.latency_ms:g} ms, "
        f"{args.rounds} rounds (medians)"
    )
    print(f"{'arm':<6} {'req/s (process)':>16} {'req/s (sending)':>16}")
    for arm in ("k2vv", "ours"):
        f = figures[arm]
        print(f"{arm:<6} {f['requests_per_s']:>16.1f} {f['sending_requests_per_s']:>16.1f}")
    print(
        f"ratio ours/k2vv: {ratios['requests_per_s']:.2f}× (process), "
        f"{ratios['sending_requests_per_s']:.2f}× (sending)"
    )
    print(f"same counts (answers, tool_calls, all calls valid) in every round: {same}")
    if args.json is not None:
        document = {
            "config": {**vars(args), "json": None, "requests": size},
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
            "figures": figures,
            "ratios": ratios,
            "same_counts": same,
            "rounds": rounds,
        }
        args.json.write_text(json.dumps(document, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
