"""Analysis throughput: steps/s of `traces analyze` over a large store, against reading its rows.

Run by hand (it is not a test and asserts nothing about time):

    .venv/bin/python benchmarks/bench_analyze.py [--steps 200000] [--store DIR] [--rounds 3]
        [--arms LIST] [--no-breakdown] [--profile | --parts] [--db FILE] [--runs N] [--json PATH]

The store: agent logs from `bench_import.write_conversations` (conversations of 20 steps with
growing histories, 64 interleaved, 1 in 10 streamed), written 100,000 exchanges per file, with
each conversation given one of five providers and that provider's faults (`PROVIDERS`): leaked
call markup, broken or unknown calls, calls lost by the parser, rate limits retried, and a host
that leaves the reasoning sent back out of its prompt. Usage is rewritten as a host counts it
(about 4 bytes a token of what it kept): `bench_import`'s own is a formula of the step, which
the history checks read as a host dropping things. Each file
is imported with `traces.importing.import_files` (no analysis), then the checks run once
untimed, so every timed analysis replaces findings as a re-analysis does. With `--store DIR`
the store is kept there and reused by the next invocation with the same `--steps`.

Timed, in interleaved rounds:

- `read rows`: the baseline. Every row and column the checks read (`steps`, `tool_calls`,
  `tool_results`, `step_messages`, distinct `messages`) fetched into Python tuples, nothing
  else. Any analysis in Python pays at least this.
- `traces analyze`: the console script over every run, as a fresh process (`--format json`
  to /dev/null), as a user runs it: from 50,000 steps on it checks in one worker process per
  core. Wall time, CPU time of the process and its workers, peak RSS of the largest.
- `traces analyze (1 process)`: the same with `TRACES_ANALYZE_WORKERS=1`.

Ratios are taken between medians, against `read rows`: by wall time, and by CPU time (on a
machine shared with other jobs, CPU time moves less).

Then, once (`--no-breakdown` skips it), where the CPU time of one analysis goes, measured in
this process with the code one process runs (`analyzer.checks.persist.analyze_runs` with its
timing hook, which adds about a microsecond per check call): loading the runs, each check by
name, storing the findings, and `other` (dispatching the checks, sorting their findings).

`--parts` times each part alone instead (`parts`), `--profile` runs cProfile; both take
`--db FILE`, another store (a copy: newer code may migrate it, and the timed store is rolled
back), and `--runs N`, only its first N runs by id: a slice of the million-step store, loaded
in the chunks a worker loads, costs a minute where the whole takes ten.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_import import write_conversations

from traces.importing import ImportOptions, import_files

STORE_VERSION = 2
"""Bumped when the generated store changes, so a cached store of another shape is rebuilt."""
PER_FILE = 100_000
"""Exchanges per generated file: each is ~1.1 GB of JSON Lines, deleted once imported."""
CONVERSATION_STEPS = 20

PROVIDERS: dict[str, dict[str, float]] = {
    "alpha": {},
    "beta": {"leak": 0.08},
    "gamma": {"invalid_arguments": 0.02, "unknown_tool": 0.01},
    "delta": {"dropped_call": 0.02, "drops_reasoning": 1.0},
    "epsilon": {"rate_limit": 0.02, "leak": 0.01},
}
"""Each conversation's provider (by its label) and the share of its exchanges given each
fault: the checks then have findings to store, as they do on real traces. `drops_reasoning`:
the host leaves the reasoning sent back out of what it counts (and so of the prompt)."""


def _provider(label: str) -> str:
    names = list(PROVIDERS)
    return names[sum(label.encode()) % len(names)]


def _faulted(
    line: dict[str, Any], faults: dict[str, float], rng: random.Random
) -> list[dict[str, Any]]:
    """The line (and any failed attempt before it) with the provider's faults applied."""
    out: list[dict[str, Any]] = []
    response = line.get("response")
    message = response["choices"][0]["message"] if response else None
    if message is not None:
        calls = message.get("tool_calls") or []
        if calls and rng.random() < faults.get("invalid_arguments", 0):
            calls[0]["function"]["arguments"] = calls[0]["function"]["arguments"][:-3]
        elif calls and rng.random() < faults.get("unknown_tool", 0):
            calls[0]["function"]["name"] = "tool_9"
        elif calls and rng.random() < faults.get("dropped_call", 0):
            message["tool_calls"] = None
            message["content"] = ""
            response["choices"][0]["finish_reason"] = "stop"
        elif not calls and rng.random() < faults.get("leak", 0):
            message["content"] = "<tool_call>" + str(message.get("content")) + "</tool_call>"
    if rng.random() < faults.get("rate_limit", 0):
        failed = {k: v for k, v in line.items() if k not in ("response", "chunks")}
        failed["error"] = {"status": 429, "body": {"error": {"message": "Rate limit reached"}}}
        out.append(failed)
    out.append(line)
    return out


def _tokens(text: Any) -> int:
    """A host's token count of `text`: about 4 bytes a token, as BPE vocabularies give."""
    return len(text.encode()) // 4 + 1 if isinstance(text, str) and text else 0


def _message_tokens(message: dict[str, Any], reasoning: bool) -> int:
    count = 4 + _tokens(message.get("content"))  # role and delimiters: a few tokens
    if reasoning:
        count += _tokens(message.get("reasoning_content"))
    for call in message.get("tool_calls") or []:
        count += 3 + _tokens(call["function"]["name"]) + _tokens(call["function"]["arguments"])
    return count


def _with_usage(line: dict[str, Any], drops_reasoning: bool) -> None:
    """Usage as a host would count it: the request's messages and tools, what it generated.
    (bench_import's own usage is a formula of the step, which no host's counts follow.)"""
    request = line["request"]
    prompt = 20 + _tokens(json.dumps(request.get("tools") or []))
    prompt += sum(_message_tokens(m, not drops_reasoning) for m in request["messages"])
    if "response" in line:
        message = line["response"]["choices"][0]["message"]
        completion = _message_tokens(message, True) - 4
        usage = line["response"]["usage"] = {}
    elif "chunks" in line:
        texts = []
        for chunk in line["chunks"]:
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                texts += [delta.get("content"), delta.get("reasoning_content")]
                for call in delta.get("tool_calls") or []:
                    function = call.get("function") or {}
                    texts += [function.get("name"), function.get("arguments")]
        completion = _tokens("".join(t for t in texts if isinstance(t, str)))
        usage = line["chunks"][-1]["usage"] = {}
    else:
        return
    usage.update(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


def _write_file(path: Path, exchanges: int, seed: int) -> None:
    """`exchanges` generated exchanges, each conversation given its provider, that provider's
    faults and usage as a host counts it."""
    raw = path.with_suffix(".raw.jsonl")
    write_conversations(raw, exchanges, CONVERSATION_STEPS, seed=seed)
    rng = random.Random(seed)
    with raw.open("rb") as source, path.open("w") as out:
        for text in source:
            line = json.loads(text)
            provider = line["provider"] = _provider(line["conversation"])
            faults = PROVIDERS[provider]
            for item in _faulted(line, faults, rng) if faults else [line]:
                _with_usage(item, bool(faults.get("drops_reasoning")))
                out.write(json.dumps(item) + "\n")
    raw.unlink()


def build_store(directory: Path, steps: int) -> Path:
    """The store of `steps` generated exchanges in `directory`, built unless already there."""
    db = directory / f"analyze-{steps}-v{STORE_VERSION}.duckdb"
    done = db.with_suffix(".built")
    if db.exists() and done.exists():
        print(f"reusing {db}", file=sys.stderr)
        return db
    for leftover in (db, db.with_name(db.name + ".wal"), done):
        leftover.unlink(missing_ok=True)
    start = time.perf_counter()
    for index, first in enumerate(range(0, steps, PER_FILE)):
        source = directory / f"part-{index}.jsonl"
        _write_file(source, min(PER_FILE, steps - first), seed=index)
        try:
            import_files(db, [source], ImportOptions())
        finally:
            source.unlink()
        print(
            f"imported {min(first + PER_FILE, steps)} exchanges "
            f"({time.perf_counter() - start:.0f} s)",
            file=sys.stderr,
        )
    _run_analyze(db)  # findings in place: every timed round replaces them
    done.write_text(json.dumps({"steps": steps, "version": STORE_VERSION}))
    return db


# -- arms -----------------------------------------------------------------------------------------

_READS = (
    """SELECT run_id, idx, finish_reason, finish_reason_raw, content, reasoning, reasoning_source,
              prompt_tokens, completion_tokens, reasoning_tokens, reasoning_tokens_source,
              cached_tokens, total_tokens, streamed, http_status, error_kind, error_status,
              error_message, error_body, retry_errors, anomalies, request_params,
              request_message_count
       FROM steps""",
    """SELECT run_id, step_idx, call_idx, id, id_format, name, arguments_raw, arguments_type,
              arguments, json_valid, schema_valid, schema_error
       FROM tool_calls""",
    """SELECT run_id, step_idx, call_idx, tool_call_id, name, output, error, error_kind
       FROM tool_results""",
    # The base table of the view `step_messages` (migration 10), as the loader reads it.
    "SELECT run_id, step_idx, position, key FROM step_message_keys",
    "SELECT key, body FROM messages",
    "SELECT id, provider, model, settings, termination FROM runs",
)

_BEFORE_10 = {
    "SELECT run_id, step_idx, position, key FROM step_message_keys": (
        "SELECT run_id, step_idx, position, hash FROM step_messages"
    ),
    "SELECT key, body FROM messages": "SELECT hash, body FROM messages",
}


def _fetch(cursor: duckdb.DuckDBPyConnection) -> Iterator[tuple[Any, ...]]:
    while batch := cursor.fetchmany(50_000):
        yield from batch


def read_rows(db: Path) -> int:
    """Every row the checks read, fetched into Python and dropped: the floor of any analysis
    written in Python. Returns the number of steps."""
    conn = duckdb.connect(str(db), read_only=True)
    try:
        reads = _READS
        if not conn.execute(
            "SELECT 1 FROM duckdb_tables() WHERE table_name = 'step_message_keys'"
        ).fetchone():  # a store (or a copy) in the layout before migration 10
            reads = tuple(_BEFORE_10.get(sql, sql) for sql in _READS)
        counts = [sum(1 for _ in _fetch(conn.execute(sql))) for sql in reads]
    finally:
        conn.close()
    return counts[0]


def _traces_command() -> list[str]:
    script = Path(sys.executable).with_name("traces")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "analyzer.cli"]


_PR_SET_CHILD_SUBREAPER = 36


def adopt_orphans() -> bool:
    """Make this process adopt its descendants' orphans (Linux's child subreaper), so that a
    store's server a command starts (a process of its own session, nobody's child: see
    `traces.store.rendezvous`) becomes this process's child when its starter exits, and its
    CPU time can be read when it is reaped. False where that is not possible."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


_ADOPTING = False
"""Whether `adopt_orphans` succeeded (set by `main`)."""
ORPHAN_WAIT_S = 30.0
"""How long a round waits for the store's server to exit once the command did."""


def _reap_orphans() -> float:
    """CPU seconds of the adopted processes (a store's server) as they exit: those that the
    command left running end once their last client left, within `ORPHAN_WAIT_S`."""
    seconds = 0.0
    deadline = time.monotonic() + ORPHAN_WAIT_S
    while time.monotonic() < deadline:
        try:
            pid, _, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            break  # no child left
        if pid == 0:
            time.sleep(0.01)
            continue
        seconds += usage.ru_utime + usage.ru_stime
    return seconds


def _run_analyze(db: Path, workers: str | None = None) -> dict[str, float]:
    """`traces analyze` over every run as a fresh process (`workers`: its
    TRACES_ANALYZE_WORKERS): wall s, CPU s of it, its workers and the store's server it
    started (`server_cpu_s`, counted in `cpu_s`; 0 unless this process adopts orphans), peak
    RSS MB of the largest of them."""
    env = dict(os.environ)
    env.pop("TRACES_ANALYZE_WORKERS", None)
    if workers is not None:
        env["TRACES_ANALYZE_WORKERS"] = workers
    start = time.perf_counter()
    with open(os.devnull, "wb") as sink:
        process = subprocess.Popen(
            [*_traces_command(), "analyze", "--db", str(db), "--format", "json"],
            stdout=sink,
            stderr=subprocess.PIPE,
            env=env,
        )
        assert process.stderr is not None
        errors = process.stderr.read()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    server = _reap_orphans() if _ADOPTING else 0.0
    if process.returncode != 0:
        raise SystemExit(f"traces analyze failed ({process.returncode}): {errors.decode()}")
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime + server,
        "server_cpu_s": server,
        "peak_rss_mb": usage.ru_maxrss / 1024,
    }


def _first_runs(conn: duckdb.DuckDBPyConnection, runs: int | None) -> list[str]:
    """The store's run ids in id order (the order `traces analyze` checks them), the first
    `runs` of them when given."""
    ids = [r[0] for r in conn.execute("SELECT id FROM runs ORDER BY id").fetchall()]
    return ids if runs is None else ids[:runs]


def _count(db: Path, sql: str) -> int:
    conn = duckdb.connect(str(db), read_only=True)
    try:
        row = conn.execute(sql).fetchone()
        return int(row[0]) if row else 0
    finally:
        conn.close()


def breakdown(db: Path) -> dict[str, float]:
    """CPU seconds per part of one analysis, in this process: load, each check, store,
    commit, and `other` (what falls between: sorting findings, the checks' dispatch)."""
    from analyzer.checks.persist import analyze_runs
    from analyzer.checks.timing import Timings

    conn = duckdb.connect(str(db))
    try:
        ids = [r[0] for r in conn.execute("SELECT id FROM runs ORDER BY id").fetchall()]
        timings = Timings()
        start = time.process_time()
        analyze_runs(conn, ids, timings=timings)
        total = time.process_time() - start
    finally:
        conn.close()
    parts = dict(timings.seconds)
    return {"total": total, **parts, "other": total - sum(parts.values())}


def _timed(seconds: dict[str, float], name: str, work: Callable[[], Any]) -> Any:
    start = time.process_time()
    result = work()
    seconds[name] = seconds.get(name, 0.0) + time.process_time() - start
    return result


KEPT = "what_the_host_kept"


def _fits(runs: list[Any], built: list[Any]) -> None:
    """The ledger's fit of each run from its entries, as `ledger.measure` does it."""
    from analyzer.checks.ledger_fit import fit_chain
    from analyzer.checks.ledger_turns import put_right

    for run, (entries, _) in zip(runs, built, strict=True):
        entries, left = put_right(run, entries)
        chain = [
            e for e in entries if e.kind == "chain" and e.added is not None and e.step not in left
        ]
        fit_chain(chain, [(e.reasoning_newest, e.reasoning_older) for e in chain])


def _step_check(check: Callable[..., Any], runs: list[Any]) -> None:
    for run in runs:
        for step in run.steps:
            list(check(step, run))


def _run_check(check: Callable[..., Any], runs: list[Any]) -> None:
    for run in runs:
        list(check(run))


def _time_chunk(
    conn: duckdb.DuckDBPyConnection, runs: list[Any], seconds: dict[str, float]
) -> None:
    """Each part over one loaded chunk of runs, timed alone into `seconds`."""
    from analyzer.checks import ledger, registry
    from analyzer.checks.ledger_entries import build_entries
    from analyzer.checks.persist import _store, check_runs

    checked = [run for run in runs if not run.raw_text]
    for run in checked:
        _ = run.request_starts  # a cached property every check that follows the history reads
    built = _timed(seconds, "ledger: entries", partial(list, map(build_entries, checked)))
    _timed(seconds, "ledger: fit", partial(_fits, checked, built))
    for run in checked:
        ledger.measure(run)  # the check's ledger, as the check finds it
        _timed(
            seconds,
            f"{KEPT} beyond its ledger",
            partial(_run_check, registry.RUN_CHECKS[KEPT], [run]),
        )
    for name, check in registry.STEP_CHECKS.items():
        _timed(seconds, name, partial(_step_check, check, checked))
    for name, check in registry.RUN_CHECKS.items():
        if name != KEPT:
            _timed(seconds, name, partial(_run_check, check, checked))
    now = datetime.now(UTC).replace(tzinfo=None)
    found, ledgers = _timed(seconds, "checks as run", partial(check_runs, runs, now))
    conn.execute("BEGIN TRANSACTION")
    try:
        _timed(seconds, "store", partial(_store, conn, found, now, ledgers))
    finally:
        conn.execute("ROLLBACK")


def parts(db: Path, runs: int | None = None) -> dict[str, float]:
    """CPU seconds of each part of one analysis, each timed alone over the store's runs in
    this process as a worker runs them (DuckDB on one thread, the collector off, chunks of
    `CHUNK_RUNS`), without the breakdown's timer around every check call: loading, the
    ledger's entries, its fit (with `put_right`), the rest of `what_the_host_kept` (its
    fits with a step left out), each other check, what `check_runs` adds to them (dispatch,
    sorting, ledger rows, and running the checks interleaved rather than each alone), and
    storing (in a transaction rolled back: the store is left as it was). `runs`: only the
    first that many runs (by id)."""
    from analyzer.checks.loader import Messages, load_runs
    from analyzer.checks.persist import CHUNK_RUNS, without_collector

    seconds: dict[str, float] = {}
    conn = duckdb.connect(str(db))
    try:
        conn.execute("SET threads = 1")
        ids = _first_runs(conn, runs)
        with without_collector():
            messages = Messages()
            for start in range(0, len(ids), CHUNK_RUNS):
                batch = ids[start : start + CHUNK_RUNS]
                runs = _timed(seconds, "load", partial(load_runs, conn, batch, messages))
                _time_chunk(conn, runs, seconds)
    finally:
        conn.close()
    alone = sum(v for k, v in seconds.items() if k not in ("load", "store", "checks as run"))
    seconds["checks as run, beyond each alone"] = seconds.pop("checks as run") - alone
    return seconds


def profile(db: Path, runs: int | None = None) -> None:
    """A cProfile of one analysis in this process (top by cumulative and own time), of the
    first `runs` runs when given."""
    from analyzer.checks.persist import analyze_runs

    conn = duckdb.connect(str(db))
    try:
        ids = _first_runs(conn, runs)
        profiler = cProfile.Profile()
        profiler.enable()
        analyze_runs(conn, ids)
        profiler.disable()
    finally:
        conn.close()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
    pstats.Stats(profiler).sort_stats("tottime").print_stats(40)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200_000, help="exchanges in the store")
    parser.add_argument("--store", type=Path, help="directory keeping the store between runs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--arms", default=",".join(ARMS), help=f"arms in round order [{','.join(ARMS)}]"
    )
    parser.add_argument("--no-breakdown", action="store_true", help="skip the breakdown")
    parser.add_argument("--profile", action="store_true", help="only cProfile one analysis")
    parser.add_argument(
        "--parts", action="store_true", help="only time each part of an analysis alone"
    )
    parser.add_argument(
        "--db", type=Path, help="--parts/--profile over this store file (a copy) instead"
    )
    parser.add_argument("--runs", type=int, help="--parts/--profile over the first N runs")
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    args = parser.parse_args()
    if args.db is not None or args.runs is not None:
        if not (args.parts or args.profile):
            parser.error("--db and --runs go with --parts or --profile")
        if args.db is not None and not args.db.is_file():
            parser.error(f"--db {args.db}: no such store file")
        if args.runs is not None and args.runs < 1:
            parser.error("--runs: at least 1")
    global _ADOPTING
    _ADOPTING = adopt_orphans()
    if not _ADOPTING:
        print("cannot adopt orphans: the store's server's CPU is left out", file=sys.stderr)
    arms = [arm.strip() for arm in args.arms.split(",")]
    if unknown := [arm for arm in arms if arm not in ARMS]:
        parser.error(f"unknown arm {unknown[0]!r}: choose among {', '.join(ARMS)}")

    temporary = None
    if args.store is None:
        temporary = tempfile.mkdtemp(prefix="bench-analyze-")
        directory = Path(temporary)
    else:
        directory = args.store
        directory.mkdir(parents=True, exist_ok=True)
    try:
        db = build_store(directory, args.steps) if args.db is None else args.db
        if args.parts or args.profile:
            _parts_or_profile(db, args.runs, args.parts)
            return
        steps = _count(db, "SELECT count(*) FROM steps")
        runs = _count(db, "SELECT count(*) FROM runs")
        findings = _count(db, "SELECT count(*) FROM findings")
        print(f"store: {steps:,} steps, {runs:,} runs, {findings:,} findings", file=sys.stderr)
        report = measure(db, steps, args.rounds, arms, not args.no_breakdown)
        report.update(
            steps=steps,
            runs=runs,
            findings=findings,
            machine={
                "cpus": os.cpu_count(),
                "load_average": os.getloadavg(),
                "python": platform.python_version(),
                "duckdb": duckdb.__version__,
            },
        )
        print_report(report)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)


ARMS = ("read rows", "traces analyze", "traces analyze (1 process)")


def _parts_or_profile(db: Path, runs: int | None, by_part: bool) -> None:
    """`--parts` (or `--profile`) over the store's runs, or the first `runs` of them: on a
    copy of a large store (the million-step one), a slice of it as workers load it."""
    conn = duckdb.connect(str(db), read_only=True)
    try:
        ids = _first_runs(conn, runs)
        steps = conn.execute(
            "SELECT count(*) FROM step_rows "
            "WHERE run_id IN (SELECT unnest(from_json(?, '[\"VARCHAR\"]')))",
            [json.dumps(ids)],
        ).fetchone()
    finally:
        conn.close()
    count = steps[0] if steps is not None else 0
    print(f"store: {count:,} steps in {len(ids):,} runs", file=sys.stderr)
    if by_part:
        print_parts(parts(db, runs), count)
    else:
        profile(db, runs)


def _run_arm(name: str, db: Path) -> dict[str, float]:
    if name == "read rows":
        wall, cpu = time.perf_counter(), time.process_time()
        read_rows(db)
        return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}
    workers = {"traces analyze": None, "traces analyze (1 process)": "1"}[name]
    return _run_analyze(db, workers)


def measure(
    db: Path, steps: int, rounds: int, arms: list[str], with_breakdown: bool
) -> dict[str, Any]:
    """Interleaved rounds of the arms, each arm's medians, then the breakdown."""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in arms}
    for round_no in range(rounds):
        for name in arms:
            figures = _run_arm(name, db)
            runs[name].append(figures)
            rss = f", {figures['peak_rss_mb']:.0f} MB" if "peak_rss_mb" in figures else ""
            if "server_cpu_s" in figures:
                rss = f", of it server {figures['server_cpu_s']:.1f} s{rss}"
            print(
                f"round {round_no + 1} {name}: {figures['wall_s']:.1f} s "
                f"(CPU {figures['cpu_s']:.1f} s{rss})",
                file=sys.stderr,
            )
    medians = {
        name: {
            "wall_s": statistics.median(f["wall_s"] for f in figures),
            "cpu_s": statistics.median(f["cpu_s"] for f in figures),
            "steps_per_s": steps / statistics.median(f["wall_s"] for f in figures),
            **(
                {
                    "peak_rss_mb": max(f["peak_rss_mb"] for f in figures),
                    "server_cpu_s": statistics.median(f["server_cpu_s"] for f in figures),
                }
                if "peak_rss_mb" in figures[0]
                else {}
            ),
        }
        for name, figures in runs.items()
    }
    report: dict[str, Any] = {"rounds": runs, "medians": medians}
    report["self_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if "read rows" in medians:
        base = medians["read rows"]
        report["ratios"] = {
            name: {
                "wall": m["wall_s"] / base["wall_s"],
                "cpu": m["cpu_s"] / base["cpu_s"],
            }
            for name, m in medians.items()
            if name != "read rows"
        }
    if with_breakdown:
        report["breakdown_s"] = breakdown(db)
    return report


def print_report(report: dict[str, Any]) -> None:
    """The figures as Markdown, ready for the README."""
    steps = report["steps"]
    rounds = len(next(iter(report["rounds"].values())))
    print(f"\n{steps:,} steps, {report['runs']:,} runs; medians of {rounds} rounds")
    print(
        "\n| arm | wall s | steps/s | CPU s | of it server | CPU µs/step | peak RSS MB "
        "| wall / read rows | CPU / read rows |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    ratios = report.get("ratios", {})
    for name, m in report["medians"].items():
        rss = f"{m['peak_rss_mb']:.0f}" if "peak_rss_mb" in m else ""
        server = f"{m['server_cpu_s']:.1f}" if "server_cpu_s" in m else ""
        ratio = ratios.get(name)
        wall_ratio = f"{ratio['wall']:.2f}" if ratio else "1.00" if name == "read rows" else ""
        cpu_ratio = f"{ratio['cpu']:.2f}" if ratio else "1.00" if name == "read rows" else ""
        print(
            f"| {name} | {m['wall_s']:.1f} | {m['steps_per_s']:,.0f} | {m['cpu_s']:.1f} "
            f"| {server} | {m['cpu_s'] / steps * 1e6:.0f} | {rss} "
            f"| {wall_ratio} | {cpu_ratio} |"
        )
    parts = report.get("breakdown_s")
    if parts:
        total = parts["total"]
        print("\n| part (one process, in this one) | CPU s | share | µs/step |")
        print("| --- | ---: | ---: | ---: |")
        for name, seconds in sorted(parts.items(), key=lambda item: -item[1]):
            if name == "total":
                continue
            print(
                f"| {name} | {seconds:.2f} | {seconds / total:.0%} | {seconds / steps * 1e6:.1f} |"
            )
        print(f"| total | {total:.2f} | 100% | {total / steps * 1e6:.1f} |")


def print_parts(seconds: dict[str, float], steps: int) -> None:
    """Each part's CPU µs a step (`parts`), largest first, as Markdown."""
    total = sum(seconds.values())
    print("\n| part (alone, one process) | CPU s | µs/step |")
    print("| --- | ---: | ---: |")
    for name, value in sorted(seconds.items(), key=lambda item: -item[1]):
        print(f"| {name} | {value:.2f} | {value / steps * 1e6:.1f} |")
    print(f"| total | {total:.2f} | {total / steps * 1e6:.1f} |")


if __name__ == "__main__":
    main()
