"""Import throughput: exchanges/s of `traces import` against reading the same file raw.

Run by hand (it is not a test and asserts nothing about time):

    .venv/bin/python benchmarks/bench_import.py [--shape conversations|k2vv]
        [--exchanges 100000] [--steps 20] [--rounds 3] [--workers N] [--serial]
        [--analyze] [--profile] [--json PATH]

It writes a realistic file into a temporary directory, then times, in interleaved rounds:

- `json.loads`: reading the file and parsing every line with `json.loads`, nothing else.
  Any importer written in Python pays at least this.
- `duckdb raw`: DuckDB storing every line as a JSON value in a table
  (`CREATE TABLE raw AS SELECT json FROM read_ndjson_objects(…)`): C++ parsing and one
  insert, with none of the reading, hashing and normalization an import does.
- `ours`: `traces.importing.import_files` into a fresh database: validation, stream and
  message reading, schema checks against each request's tools, message hashing and
  deduplication, request suffixes, tool results, bulk inserts, one commit. As `traces
  import` runs it: a file this large is read by one worker process per core, split by
  conversation, while the importing process inserts (`--workers N` sets their number;
  1 reads in the importing process).
- `ours, 1 process` (with `--serial`): the same import with `workers=1`, in the same rounds,
  to show what the workers add.

Shapes:

- `conversations`: agent logs, conversations of `--steps` exchanges whose requests grow by
  an assistant turn (reasoning, one tool call) and a tool result each step; 64 of them
  interleaved, as concurrent agents write them; every 10th exchange streamed (chunks).
- `k2vv`: K2-Vendor-Verifier result lines: one request each (system prompt, a short history,
  a user turn, 2-8 tools drawn from a pool), the `model_dump()`ed completion and verdicts.

Ratios are taken between medians. `--analyze` also times the checks over the imported runs
(`analyzer.checks.persist.analyze_runs`), reported apart: `traces import` runs them after
committing. `--profile` prints the top of a cProfile of one import (of the importing process
only: profile with `--workers 1` to see the reading).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from traces.importing import ImportOptions, import_files

_WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "they",
    "you",
    "were",
    "her",
    "she",
    "there",
    "been",
    "one",
    "all",
    "we",
    "their",
    "has",
    "would",
    "when",
    "if",
    "so",
    "no",
    "will",
    "more",
    "can",
    "out",
    "who",
    "up",
    "what",
    "about",
    "into",
    "than",
    "them",
    "only",
    "other",
    "some",
    "time",
    "could",
]


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def _tool(index: int) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": f"tool_{index}",
            "description": f"Tool number {index}: does one thing well.",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "What to look for."},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 50},
                    "mode": {"type": "string", "enum": ["fast", "exact"]},
                },
                "required": ["query"],
                "additionalProperties": False,
            },
        },
    }


def _completion(message: dict[str, Any], finish: str, prompt: int) -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1735689600,
        "model": "bench-model",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": 60, "total_tokens": prompt + 60},
    }


def _chunks(message: dict[str, Any], finish: str) -> list[dict[str, Any]]:
    def chunk(delta: dict[str, Any], done: str | None = None) -> dict[str, Any]:
        return {
            "id": "chunk-bench",
            "object": "chat.completion.chunk",
            "model": "bench-model",
            "choices": [{"index": 0, "delta": delta, "finish_reason": done}],
        }

    out = [chunk({"role": "assistant", "content": ""})]
    words = str(message.get("reasoning_content") or "").split(" ")
    out += [
        chunk({"reasoning_content": " ".join(words[i : i + 4]) + " "})
        for i in range(0, len(words), 4)
    ]
    for index, call in enumerate(message.get("tool_calls") or []):
        args = call["function"]["arguments"]
        out.append(
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": call["function"]["name"], "arguments": ""},
                        }
                    ]
                }
            )
        )
        out += [
            chunk({"tool_calls": [{"index": index, "function": {"arguments": args[i : i + 12]}}]})
            for i in range(0, len(args), 12)
        ]
    if message.get("content"):
        out.append(chunk({"content": message["content"]}))
    out.append(chunk({}, finish))
    out.append(
        {
            "id": "chunk-bench",
            "object": "chat.completion.chunk",
            "choices": [],
            "usage": {"prompt_tokens": 100, "completion_tokens": 60, "total_tokens": 160},
        }
    )
    return out


def write_conversations(
    path: Path, exchanges: int, steps: int, seed: int = 0, concurrent: int = 64
) -> None:
    """Interleaved agent conversations with growing histories, `concurrent` of them at once
    (1: one conversation after the other)."""
    rng = random.Random(seed)
    tools = [_tool(i) for i in range(4)]
    live: dict[int, list[dict[str, Any]]] = {}
    next_id = 0
    written = 0
    with path.open("w") as out:
        while written < exchanges:
            while len(live) < concurrent:
                live[next_id] = [
                    {"role": "system", "content": "You are a research agent. " + _text(rng, 120)},
                    {"role": "user", "content": _text(rng, 40)},
                ]
                next_id += 1
            conv = rng.choice(list(live))
            messages = live[conv]
            step = (len(messages) - 2) // 2
            final = step + 1 >= steps
            if final:
                message: dict[str, Any] = {
                    "role": "assistant",
                    "content": _text(rng, 60),
                    "reasoning_content": _text(rng, 50),
                }
            else:
                name = f"tool_{rng.randrange(4)}"
                args = json.dumps({"query": _text(rng, 5), "limit": rng.randrange(1, 20)})
                message = {
                    "role": "assistant",
                    "content": None,
                    "reasoning_content": _text(rng, 50),
                    "tool_calls": [
                        {
                            "id": f"call_{conv}_{step}",
                            "type": "function",
                            "function": {"name": name, "arguments": args},
                        }
                    ],
                }
            line: dict[str, Any] = {
                "conversation": f"conv-{conv}",
                "provider": "bench",
                "started_at": 1735689600 + written,
                "latency_ms": 800 + rng.random() * 400,
                "request": {"model": "bench-model", "messages": list(messages), "tools": tools},
            }
            finish = "stop" if final else "tool_calls"
            if written % 10 == 9:
                line["request"]["stream"] = True
                line["chunks"] = _chunks(message, finish)
            else:
                line["response"] = _completion(message, finish, 100 + 80 * step)
            out.write(json.dumps(line) + "\n")
            written += 1
            if final:
                del live[conv]
            else:
                messages.append(message)
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": f"call_{conv}_{step}",
                        "content": _text(rng, 70),
                    }
                )


def write_k2vv(path: Path, exchanges: int, seed: int = 0) -> None:
    """K2-Vendor-Verifier result lines (the `ValidationResult` fields)."""
    rng = random.Random(seed)
    pool = [_tool(i) for i in range(40)]
    tool_sets = [rng.sample(pool, rng.randrange(2, 9)) for _ in range(200)]
    system = {"role": "system", "content": "You are Kimi. " + _text(rng, 150)}
    with path.open("w") as out:
        for index in range(1, exchanges + 1):
            tools = rng.choice(tool_sets)
            history = []
            for turn in range(rng.randrange(0, 3)):
                call_id = f"functions.{tools[0]['function']['name']}:{turn}"
                history += [
                    {"role": "user", "content": _text(rng, 25)},
                    {
                        "role": "assistant",
                        "content": "",
                        "tool_calls": [
                            {
                                "id": call_id,
                                "type": "function",
                                "function": {
                                    "name": tools[0]["function"]["name"],
                                    "arguments": json.dumps({"query": _text(rng, 4)}),
                                },
                            }
                        ],
                    },
                    {"role": "tool", "tool_call_id": call_id, "content": _text(rng, 60)},
                ]
            request = {
                "messages": [system, *history, {"role": "user", "content": _text(rng, 30)}],
                "tools": tools,
                "temperature": 1.0,
                "max_tokens": 64000,
                "model": "kimi-k2-thinking",
            }
            calls = rng.random() < 0.6
            message: dict[str, Any] = {
                "content": "" if calls else _text(rng, 50),
                "refusal": None,
                "role": "assistant",
                "annotations": None,
                "audio": None,
                "function_call": None,
                "tool_calls": None,
                "reasoning_content": _text(rng, 60),
            }
            if calls:
                args = {"query": _text(rng, 5)} if rng.random() < 0.9 else {"q": 1}
                message["tool_calls"] = [
                    {
                        "id": f"functions.{tools[0]['function']['name']}:0",
                        "type": "function",
                        "function": {
                            "name": tools[0]["function"]["name"],
                            "arguments": json.dumps(args),
                        },
                    }
                ]
            finish = "tool_calls" if calls else "stop"
            line = {
                "data_index": index,
                "request": request,
                "response": _completion(message, finish, 900),
                "status": "success",
                "finish_reason": finish,
                "tool_calls_valid": ("query" in args) if calls else None,
                "last_run_at": "2025-11-15T10:20:31.512345",
                "duration_ms": rng.randrange(500, 5000),
                "hash": f"{index:032x}",
            }
            out.write(json.dumps(line) + "\n")


# -- arms ---------------------------------------------------------------------------------------


def arm_json_loads(path: Path, _: Path) -> int:
    count = 0
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                json.loads(line)
                count += 1
    return count


def arm_duckdb_raw(path: Path, db: Path) -> int:
    conn = duckdb.connect(str(db))
    try:
        conn.execute("CREATE TABLE raw AS SELECT json FROM read_ndjson_objects(?)", [str(path)])
        row = conn.execute("SELECT count(*) FROM raw").fetchone()
        return int(row[0]) if row else 0
    finally:
        conn.close()


def arm_ours(path: Path, db: Path, workers: int | None = None) -> int:
    [report] = import_files(db, [path], ImportOptions(provider="bench", workers=workers))
    return report.exchanges


def arm_ours_serial(path: Path, db: Path) -> int:
    return arm_ours(path, db, workers=1)


ARMS: dict[str, Callable[[Path, Path], int]] = {
    "json.loads": arm_json_loads,
    "duckdb raw": arm_duckdb_raw,
    "ours": arm_ours,
}
SERIAL_ARM = "ours, 1 process"


def _fresh_db(directory: Path, name: str) -> Path:
    db = directory / f"{name}.duckdb"
    for leftover in (db, db.with_name(db.name + ".wal")):
        leftover.unlink(missing_ok=True)
    return db


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=("conversations", "k2vv"), default="conversations")
    parser.add_argument("--exchanges", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=20, help="steps per conversation")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--analyze", action="store_true", help="also time the checks")
    parser.add_argument("--profile", action="store_true", help="cProfile one import")
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    parser.add_argument(
        "--workers",
        type=int,
        help="processes reading the file in the `ours` arm [default: chosen by size]",
    )
    parser.add_argument(
        "--serial",
        action="store_true",
        help=f"add an arm `{SERIAL_ARM}`: the import with --workers 1, in the same rounds",
    )
    args = parser.parse_args()
    arms = dict(ARMS)
    if args.workers is not None:
        workers = args.workers
        arms["ours"] = lambda path, db: arm_ours(path, db, workers)
    if args.serial:
        arms[SERIAL_ARM] = arm_ours_serial

    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        directory = Path(tmp)
        source = directory / f"{args.shape}.jsonl"
        t0 = time.perf_counter()
        if args.shape == "conversations":
            write_conversations(source, args.exchanges, args.steps)
        else:
            write_k2vv(source, args.exchanges)
        size = source.stat().st_size
        print(
            f"{args.shape}: {args.exchanges} exchanges, {size / 1e6:.0f} MB "
            f"(written in {time.perf_counter() - t0:.1f} s)",
            file=sys.stderr,
        )
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            arm_ours(source, _fresh_db(directory, "profile"), args.workers)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
            return

        times: dict[str, list[float]] = {name: [] for name in arms}
        for round_no in range(args.rounds):
            for name, arm in arms.items():
                db = _fresh_db(directory, "arm")
                start = time.perf_counter()
                count = arm(source, db)
                elapsed = time.perf_counter() - start
                if count != args.exchanges:
                    sys.exit(f"{name} read {count} exchanges, expected {args.exchanges}")
                times[name].append(elapsed)
                print(f"round {round_no + 1} {name}: {elapsed:.2f} s", file=sys.stderr)

        analysis_s: float | None = None
        if args.analyze:
            from analyzer.checks.persist import analyze_runs

            db = _fresh_db(directory, "analyze")
            [report] = import_files(db, [source], ImportOptions(provider="bench"))
            conn = duckdb.connect(str(db))
            try:
                start = time.perf_counter()
                analyze_runs(conn, report.runs)
                analysis_s = time.perf_counter() - start
            finally:
                conn.close()

    medians = {name: statistics.median(values) for name, values in times.items()}
    rows = [
        (name, medians[name], args.exchanges / medians[name], size / 1e6 / medians[name])
        for name in arms
    ]
    print(f"\n| arm | seconds (median of {args.rounds}) | exchanges/s | MB/s |")
    print("| --- | ---: | ---: | ---: |")
    for name, seconds, rate, mbps in rows:
        print(f"| {name} | {seconds:.2f} | {rate:,.0f} | {mbps:.0f} |")
    ratios = {
        "ours / json.loads (time)": medians["ours"] / medians["json.loads"],
        "ours / duckdb raw (time)": medians["ours"] / medians["duckdb raw"],
    }
    if SERIAL_ARM in medians:
        ratios[f"{SERIAL_ARM} / json.loads (time)"] = medians[SERIAL_ARM] / medians["json.loads"]
        ratios[f"{SERIAL_ARM} / duckdb raw (time)"] = medians[SERIAL_ARM] / medians["duckdb raw"]
        ratios[f"speed-up of ours over {SERIAL_ARM}"] = medians[SERIAL_ARM] / medians["ours"]
    print()
    for label, value in ratios.items():
        print(f"{label}: {value:.2f}")
    if analysis_s is not None:
        print(
            f"checks over the imported runs: {analysis_s:.2f} s "
            f"({args.exchanges / analysis_s:,.0f} exchanges/s)"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "shape": args.shape,
                    "workers": args.workers,
                    "exchanges": args.exchanges,
                    "steps": args.steps,
                    "bytes": size,
                    "machine": {
                        "cpus": os.cpu_count(),
                        "python": platform.python_version(),
                        "duckdb": duckdb.__version__,
                    },
                    "rounds": times,
                    "medians_s": medians,
                    "ratios": ratios,
                    "analysis_s": analysis_s,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
