"""Disk use: bytes per step of a store against the same exchanges as zstd-compressed JSONL.

Run by hand (it is not a test and asserts nothing about time or size):

    .venv/bin/python benchmarks/bench_storage.py [--recorded-steps 100000]
        [--imported-steps 100000] [--recorded-db DB] [--imported-db DB] [--dir DIR]
        [--rounds 3] [--json PATH]

Two stores, each built once into `--dir` (reused by the next invocation with the same sizes):

- `recorded`: `traces record --task chain` (300-step runs) against the embedded simulator, as a
  user runs it, in four equal parts: openai streamed, openai not streamed, moonshot streamed,
  minimax not streamed (64 runs at once), then `traces analyze` as `record` leaves it.
- `imported`: `bench_analyze`'s agent logs (conversations of 20 steps, five providers with
  their faults, 1 in 10 streamed) through `traces import`, then `traces analyze`.

`--recorded-db` / `--imported-db` measure a copy of an existing store instead (brought to the
latest schema first, its migration timed), e.g. the bootstrap's 100,000 imported steps.

For each store:

- `file`: the file as the writers left it, after a CHECKPOINT (what `ls` shows), and how
  much of it DuckDB counts free (blocks a later write reuses; DuckDB never shrinks a file).
  A store's server rewrites a file it leaves mostly free (`traces.store.compaction`); what
  that rewrite costs is timed on a copy of the file (wall and CPU seconds).
- `compact, schema 19` and `compact, now`: every row copied in its order into a fresh file of
  the layout migration 19 left (before migration 20: 128-bit message keys, each message's
  `md5_number` of its hash) and of the current one, in the stores'
  file format (`STORAGE_VERSION`): the bytes the data needs in each layout, without free
  blocks.
- The baseline: the same exchanges as JSONL, one line per step with the request in full
  (params and every message, rebuilt from the store), the raw response body or every SSE
  line with its arrival time, status, kept headers, start time and latency; lines in run
  order (each request follows the previous one of its run, the best case for zstd's window),
  piped through the `zstd` command at its default level (3), or the `zstandard` package when
  the command is missing. For the imported store, also the imported file itself.
- Where the bytes go in the current layout: each table's columns (from `pragma_storage_info`:
  a segment counts up to the next segment of its block, the last one to the block's end, plus
  its overflow blocks) and the rest of the used blocks (indexes, metadata).

Then, on the imported store's two compact copies, in interleaved rounds (medians): the reads
the analysis depends on (`bench_analyze.read_rows`: every row and column the checks read)
and the analyzer's own loader over every run (`analyzer.checks.loader.load_runs`, batches of
2,000 runs), and `request_messages` for every step of 200 runs; CPU seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_analyze import _run_analyze, _traces_command, _write_file, read_rows

from analyzer.checks import loader as loader_sql
from traces.importing import ImportOptions, import_files
from traces.store.compaction import compact_in_place
from traces.store.database import STORAGE_VERSION, open_for_writing
from traces.store.migrations import MIGRATIONS
from traces.store.run_batch import of_batch
from traces.store.tables import DERIVED, STORED, stored_request_id, stored_usage

KEYS_NARROWED = next(n for n, name, _ in MIGRATIONS if name.endswith("64-bit message keys"))
"""The migration that made message keys 64-bit (20): a layout before it holds each message's
128-bit key, `md5_number(hash)` (of the message a `step_message_keys` row names)."""
BEFORE = KEYS_NARROWED - 1
"""The schema version whose layout the latest storage work (migrations 20 and 21) started
from."""
_WIDE_KEYS = {
    "messages": "md5_number(t.hash)",
    "step_message_keys": "(SELECT md5_number(any_value(m.hash)) FROM src.messages m "
    "WHERE m.seq = t.seq AND m.key = t.key)",
}
PROJECTED = frozenset({"tool_calls"})
"""Tables that became views of one base table each, a projection of it (migration 21): read
without ORDER BY, they give its rows in its order (DuckDB keeps insertion order)."""
GIVEN_BACK = {"usage_raw": stored_usage("t"), "request_id": stored_request_id("t")}
"""The columns of `step_rows` that migration 21 stores once, as the view `steps` gives them
back: a layout before it holds them in full."""
INDEX_DROPPED = 14
"""The migration that dropped the index on `messages.key`."""
CHAIN_STEPS = 301
"""Model calls of one run of the `chain` sample task."""
ARMS = (("openai", True), ("openai", False), ("moonshot", True), ("minimax", False))
"""(dialect, streamed) of each part of the recorded store."""
BLOCK = 262_144


# -- building the stores ---------------------------------------------------------------------------


def build_recorded(directory: Path, steps: int) -> Path:
    """The recorded store of about `steps` steps, recorded unless already there."""
    db = directory / f"recorded-{steps}.duckdb"
    done = db.with_suffix(".built")
    if db.exists() and done.exists():
        return db
    for leftover in (db, db.with_name(db.name + ".wal")):
        leftover.unlink(missing_ok=True)
    runs = -(-steps // (len(ARMS) * CHAIN_STEPS))
    for index, (dialect, stream) in enumerate(ARMS):
        start = time.perf_counter()
        command = [
            *_traces_command(),
            "record",
            "--task",
            "chain",
            "--repeat",
            str(runs),
            "--concurrency",
            "64",
            "--dialect",
            dialect,
            "--stream" if stream else "--no-stream",
            "--seed",
            str(index * 1000),
            "--db",
            str(db),
            "--format",
            "json",
        ]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        print(f"recorded {dialect} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    done.write_text("")
    return db


def build_imported(directory: Path, steps: int) -> tuple[Path, Path]:
    """The imported store of `steps` exchanges and the file it was imported from."""
    db = directory / f"imported-{steps}.duckdb"
    source = directory / f"imported-{steps}.jsonl"
    done = db.with_suffix(".built")
    if db.exists() and done.exists() and source.exists():
        return db, source
    for leftover in (db, db.with_name(db.name + ".wal")):
        leftover.unlink(missing_ok=True)
    _write_file(source, steps, seed=0)
    import_files(db, [source], ImportOptions())
    _run_analyze(db)
    done.write_text("")
    return db, source


# -- measuring ------------------------------------------------------------------------------------


def _steps(conn: duckdb.DuckDBPyConnection) -> int:
    row = conn.execute("SELECT count(*) FROM steps").fetchone()
    return int(row[0]) if row else 0


def file_use(db: Path) -> dict[str, float]:
    """The file after a CHECKPOINT: bytes, and the blocks DuckDB counts used and free."""
    conn = duckdb.connect(str(db))
    try:
        conn.execute("CHECKPOINT")
        steps = _steps(conn)
        row = conn.execute(
            "SELECT total_blocks, used_blocks, free_blocks FROM pragma_database_size() "
            "WHERE database_name = current_database()"
        ).fetchone()
        assert row is not None
    finally:
        conn.close()
    return {
        "steps": steps,
        "bytes": db.stat().st_size,
        "bytes_per_step": db.stat().st_size / steps,
        "free_share": row[2] / row[0] if row[0] else 0.0,
    }


def rewrite_cost(db: Path, directory: Path) -> dict[str, float]:
    """Wall and CPU seconds of rewriting a copy of the file without free blocks, as a store's
    server does on leaving a file mostly free."""
    copy = directory / f"{db.stem}-rewrite.duckdb"
    shutil.copyfile(db, copy)
    conn = duckdb.connect(str(copy), config={"storage_compatibility_version": STORAGE_VERSION})
    wall, cpu = time.perf_counter(), time.process_time()
    done = compact_in_place(conn, copy)
    out = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}
    if not done:
        conn.close()
    copy.unlink()
    return out


def _tables(conn: duckdb.DuckDBPyConnection, database: str) -> list[str]:
    rows = conn.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = ? ORDER BY 1", [database]
    ).fetchall()
    return [r[0] for r in rows]


def _columns(conn: duckdb.DuckDBPyConnection, database: str, table: str) -> list[str]:
    rows = conn.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = ? AND table_name = ? "
        "ORDER BY column_index",
        [database, table],
    ).fetchall()
    return [r[0] for r in rows]


def compact_copy(source: Path, target: Path, version: int | None) -> Path:
    """Every row of `source`, in its order, in a fresh file at schema `version` (the latest
    when None): the layout's bytes without free blocks."""
    for leftover in (target, target.with_name(target.name + ".wal")):
        leftover.unlink(missing_ok=True)
    migrations = MIGRATIONS if version is None else MIGRATIONS[:version]
    # In the stores' own file format: DuckDB 1.5's default one has no zstd for strings and
    # would keep those columns uncompressed.
    conn = duckdb.connect(str(target), config={"storage_compatibility_version": STORAGE_VERSION})
    try:
        conn.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,"
            " applied_at TIMESTAMP NOT NULL)"
        )
        for number, name, sql in migrations:
            conn.execute(sql)
            conn.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [number, name])
        conn.execute(f"ATTACH '{source}' AS src (READ_ONLY)")
        database = target.stem
        stored_as = {stored.table: row_table for row_table, stored in STORED.items()}
        source_tables = set(_tables(conn, "src"))
        for table in _tables(conn, database):
            if table == "schema_migrations":
                continue
            # A base table the source does not have yet holds the rows of the table it
            # replaced (`tables.STORED`), its new columns computed from them.
            row_table = stored_as.get(table, table) if table not in source_tables else table
            have = set(_columns(conn, "src", row_table))
            names = [c for c in _columns(conn, database, table) if c in have]
            derived = {
                column: sql
                for column, sql in (DERIVED.get(row_table, {}) if version is None else {}).items()
                if column not in have
            }
            values = [f"t.{c}" for c in names] + list(derived.values())
            if version is not None and version < KEYS_NARROWED and table in _WIDE_KEYS:
                values[names.index("key")] = _WIDE_KEYS[table]
            if table == "step_rows" and "usage_from" in have and "usage_from" not in names:
                values[: len(names)] = [GIVEN_BACK.get(c, f"t.{c}") for c in names]
            # A view of the source (`step_messages` since migration 10) has no row order of
            # its own: its rows go in key order. A message a source holds twice (a lake's, or
            # since migration 14 a file's) goes once into a layout that keeps messages unique
            # by their key's index (before 14), as it is into the current one.
            order = "ORDER BY rowid" if row_table in source_tables else "ORDER BY ALL"
            if row_table not in source_tables and row_table in PROJECTED:
                order = ""
            indexed = version is not None and version < INDEX_DROPPED
            verb = "INSERT OR IGNORE" if table == "messages" and indexed else "INSERT"
            conn.execute(
                f"{verb} INTO {table} ({', '.join([*names, *derived])}) "
                f"SELECT {', '.join(values)} FROM src.{row_table} t {order}"
            )
        conn.execute("DETACH src")
        conn.execute("CHECKPOINT")
    finally:
        conn.close()
    return target


def breakdown(db: Path) -> dict[str, float]:
    """Bytes per step of each column (`table.column`) and of the rest of the used blocks."""
    conn = duckdb.connect(str(db), read_only=True)
    try:
        steps = _steps(conn)
        database = conn.execute("SELECT current_database()").fetchone()
        assert database is not None
        by_block: defaultdict[int, list[tuple[int, str, int]]] = defaultdict(list)
        for table in _tables(conn, database[0]):
            for column, block, offset, extra in conn.execute(
                "SELECT column_name, block_id, block_offset, additional_block_ids "
                "FROM pragma_storage_info(?) WHERE block_id >= 0",
                [table],
            ).fetchall():
                by_block[block].append((offset, f"{table}.{column}", len(extra or [])))
        used = conn.execute(
            "SELECT used_blocks FROM pragma_database_size() WHERE database_name = ?",
            [database[0]],
        ).fetchone()
        assert used is not None
    finally:
        conn.close()
    sizes: defaultdict[str, int] = defaultdict(int)
    for segments in by_block.values():
        segments.sort()
        for i, (offset, name, extra) in enumerate(segments):
            end = segments[i + 1][0] if i + 1 < len(segments) else BLOCK
            sizes[name] += end - offset + BLOCK * extra
    out = {name: size / steps for name, size in sorted(sizes.items(), key=lambda kv: -kv[1])}
    out["(indexes, metadata)"] = max(0.0, used[0] * BLOCK - sum(sizes.values())) / steps
    return out


def exchanges(db: Path) -> Iterator[bytes]:
    """The store's exchanges as JSONL lines (see the module docstring), in run order."""
    conn = duckdb.connect(str(db), read_only=True)
    try:
        bodies = dict(conn.execute("SELECT hash, body FROM messages").fetchall())
        added: defaultdict[tuple[str, int], list[str]] = defaultdict(list)
        for run_id, idx, hash_ in conn.execute(
            "SELECT run_id, step_idx, hash FROM step_messages ORDER BY run_id, step_idx, position"
        ).fetchall():
            added[run_id, idx].append(hash_)
        cursor = conn.execute(
            "SELECT run_id, idx, started_at, latency_ms, http_status, response_headers, "
            "request_params, request_message_count, request_prefix, response_body, "
            "stream_events FROM steps ORDER BY run_id, idx"
        )
        run = None
        hashes: list[str] = []
        while batch := cursor.fetchmany(2000):
            for (run_id, idx, started, latency, status, headers, params, count, prefix,
                 body, events) in batch:  # fmt: skip
                if run_id != run:
                    run, hashes = run_id, []
                hashes = [*hashes[:prefix], *added.get((run_id, idx), ())][:count]
                request = json.loads(params)
                request["messages"] = [json.loads(bodies[h]) for h in hashes]
                line = {
                    "run": run_id,
                    "step": idx,
                    "started_at": started.isoformat(),
                    "latency_ms": latency,
                    "status": status,
                    "headers": json.loads(headers) if headers else None,
                    "request": request,
                    "response": body,
                    "stream": json.loads(events) if events else None,
                }
                yield (json.dumps(line, ensure_ascii=False) + "\n").encode()
    finally:
        conn.close()


def zstd_size(lines: Iterator[bytes]) -> tuple[int, int, str]:
    """(raw bytes, compressed bytes, compressor) of the lines through zstd at level 3."""
    raw = 0
    command = shutil.which("zstd")
    if command is None:
        try:
            import zstandard  # type: ignore[import-not-found]
        except ImportError:
            raise SystemExit(
                "neither the zstd command (Debian: apt-get install zstd) nor the zstandard "
                "package is installed"
            ) from None
        writer = zstandard.ZstdCompressor(level=3).chunker(chunk_size=1 << 20)
        compressed = 0
        for line in lines:
            raw += len(line)
            compressed += sum(len(chunk) for chunk in writer.compress(line))
        compressed += sum(len(chunk) for chunk in writer.finish())
        return raw, compressed, f"zstandard {zstandard.__version__} -3"
    process = subprocess.Popen(
        [command, "-3", "-q", "-c", "-T1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert process.stdin is not None and process.stdout is not None
    counted = [0]

    def count(stream: BinaryIO) -> None:
        while chunk := stream.read(1 << 20):
            counted[0] += len(chunk)

    reader = threading.Thread(target=count, args=(process.stdout,))
    reader.start()
    for line in lines:
        raw += len(line)
        process.stdin.write(line)
    process.stdin.close()
    reader.join()
    process.wait()
    version = subprocess.run([command, "-V"], capture_output=True, text=True).stdout.strip()
    return raw, counted[0], f"{version.split(',')[0]} -3"


def _file_lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        yield from handle


# -- reads ----------------------------------------------------------------------------------------


_BEFORE_SQL = {
    "_POSITION_SQL": f"""
    SELECT run_id, step_idx, position, hash, rowid
    FROM step_messages WHERE {of_batch("run_id")} AND $2 <= $3
    ORDER BY run_id, step_idx, position
""",
    # Message numbers (migration 13) are not in that layout either: any range will do.
    "_RANGE_SQL": "SELECT 0, 0 WHERE $1 IS NOT NULL",
    # No message numbers (migration 13) in that layout: an empty window, every body by key.
    "_WINDOW_SQL": "SELECT hash, body FROM messages WHERE $1 IS NULL AND $2 < $3",
}
"""The loader's queries before migration 10 (the positions read from the table `step_messages`),
for the copy in that layout, which has no `step_message_keys`."""


def load_all(db: Path) -> int:
    """Every run through the analyzer's loader, in batches as the analysis reads them (on a
    store without `step_message_keys`, reading `step_messages` as the loader did then)."""
    from analyzer.checks.loader import load_runs

    conn = duckdb.connect(str(db), read_only=True)
    saved = {
        name: getattr(loader_sql, name) for name in (*_BEFORE_SQL, "_STEP_SQL", "_MESSAGE_SQL")
    }
    tables = _tables(conn, db.stem)
    kind = conn.execute(
        "SELECT data_type FROM duckdb_columns() WHERE table_name = 'messages' "
        "AND column_name = 'key' AND database_name = current_database()"
    ).fetchone()
    if kind == ("UHUGEINT",):  # before migration 20: the 128-bit key
        loader_sql._MESSAGE_SQL = loader_sql._MESSAGE_SQL.replace("md5_number_lower", "md5_number")
    if "step_message_keys" not in tables:
        for name, sql in _BEFORE_SQL.items():
            setattr(loader_sql, name, sql)
    if "step_rows" not in tables:  # before migration 17: every reasoning in `steps`
        loader_sql._STEP_SQL = loader_sql._STEP_SQL.replace("FROM step_rows", "FROM steps").replace(
            "reasoning_replayed", "false AS reasoning_replayed"
        )
    try:
        ids = [r[0] for r in conn.execute("SELECT id FROM runs ORDER BY id").fetchall()]
        steps = 0
        for first in range(0, len(ids), 2000):
            for run in load_runs(conn, ids[first : first + 2000]):
                steps += len(run.steps)
    finally:
        for name, sql in saved.items():
            setattr(loader_sql, name, sql)
        conn.close()
    return steps


def rebuild_requests(db: Path) -> int:
    """`request_messages` for every step of 200 runs, as `traces show` and SQL users call it."""
    conn = duckdb.connect(str(db), read_only=True)
    try:
        keys = conn.execute(
            "SELECT run_id, idx FROM steps WHERE run_id IN "
            "(SELECT id FROM runs ORDER BY id LIMIT 200) ORDER BY run_id, idx"
        ).fetchall()
        for run_id, idx in keys:
            conn.execute("SELECT * FROM request_messages(?, ?)", [run_id, idx]).fetchall()
    finally:
        conn.close()
    return len(keys)


READS: dict[str, Callable[[Path], int]] = {
    "read rows": read_rows,
    "loader": load_all,
    "request_messages": rebuild_requests,
}


def time_reads(layouts: dict[str, Path], rounds: int) -> dict[str, dict[str, float]]:
    """CPU seconds of each read on each layout: medians of interleaved rounds."""
    samples: defaultdict[tuple[str, str], list[float]] = defaultdict(list)
    for _ in range(rounds):
        for read, work in READS.items():
            for layout, db in layouts.items():
                start = time.process_time()
                work(db)
                samples[read, layout].append(time.process_time() - start)
    return {
        read: {layout: statistics.median(samples[read, layout]) for layout in layouts}
        for read in READS
    }


# -- report ---------------------------------------------------------------------------------------


def measure(name: str, db: Path, directory: Path, source: Path | None) -> dict[str, Any]:
    print(f"measuring {name}", file=sys.stderr)
    live = file_use(db)
    live.update(rewrite_cost(db, directory))
    before = compact_copy(db, directory / f"{db.stem}-schema{BEFORE}.duckdb", BEFORE)
    now = compact_copy(db, directory / f"{db.stem}-now.duckdb", None)
    steps = live["steps"]
    raw, packed, compressor = zstd_size(exchanges(db))
    out: dict[str, Any] = {
        "steps": steps,
        "file": live,
        "compact_before": before.stat().st_size / steps,
        "compact_now": now.stat().st_size / steps,
        "jsonl_bytes_per_step": raw / steps,
        "jsonl_zstd_bytes_per_step": packed / steps,
        "compressor": compressor,
        "breakdown_now": breakdown(now),
        "copies": {"before": str(before), "now": str(now)},
    }
    if source is not None:
        raw, packed, _ = zstd_size(_file_lines(source))
        out["source_bytes_per_step"] = raw / steps
        out["source_zstd_bytes_per_step"] = packed / steps
    return out


def _existing(store: Path | None, directory: Path, kind: str) -> Path | None:
    """A copy of `store` in `directory`, brought to the latest schema (as any `traces`
    command that writes would), or None without one."""
    if store is None:
        return None
    copy = directory / f"{kind}-given.duckdb"
    shutil.copyfile(store, copy)
    start = time.perf_counter()
    cpu = time.process_time()
    open_for_writing(copy).close()
    print(
        f"{kind}: migrated in {time.perf_counter() - start:.1f} s "
        f"(CPU {time.process_time() - cpu:.1f} s)",
        file=sys.stderr,
    )
    return copy


def print_report(report: dict[str, Any]) -> None:
    print(f"\nmachine: {report['machine']}, duckdb {report['duckdb']}")
    for name, store in report["stores"].items():
        base = store["jsonl_zstd_bytes_per_step"]
        print(f"\n{name}: {store['steps']:,} steps ({store['compressor']})")
        print(f"  JSONL, requests in full      {store['jsonl_bytes_per_step']:10,.0f} B/step")
        print(f"  JSONL, zstd                  {base:10,.0f} B/step   1.00")
        if "source_zstd_bytes_per_step" in store:
            src = store["source_zstd_bytes_per_step"]
            print(f"  imported file, zstd          {src:10,.0f} B/step   {src / base:.2f}")
        file = store["file"]
        print(
            f"  file as written (checkpointed){file['bytes_per_step']:9,.0f} B/step   "
            f"{file['bytes_per_step'] / base:.2f}  ({file['free_share']:.0%} free blocks)"
        )
        print(
            f"  rewriting it without free blocks: {file['wall_s']:.1f} s "
            f"(CPU {file['cpu_s']:.1f} s)"
        )
        layouts = ((f"compact, schema {BEFORE}", "compact_before"), ("compact, now", "compact_now"))
        for label, key in layouts:
            print(f"  {label:29s}{store[key]:10,.0f} B/step   {store[key] / base:.2f}")
        print("  where the bytes go now (B/step):")
        for column, size in list(store["breakdown_now"].items())[:16]:
            print(f"    {column:40s}{size:8.1f}")
    if "reads" in report:
        print("\nreads on the imported store, CPU s (median):")
        for read, by_layout in report["reads"].items():
            cells = "  ".join(f"{layout} {s:6.2f}" for layout, s in by_layout.items())
            print(f"  {read:18s} {cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recorded-steps", type=int, default=100_000)
    parser.add_argument("--imported-steps", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, default=None, help="keep and reuse the stores here")
    for kind in ("recorded", "imported"):
        parser.add_argument(
            f"--{kind}-db",
            type=Path,
            default=None,
            help=f"measure a copy of this store as the {kind} one instead of building it",
        )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the read timings")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    directory = args.dir or Path(os.environ.get("TMPDIR", "/tmp")) / "bench-storage"
    directory.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "machine": (
            f"{os.cpu_count()} CPUs, {platform.system()}, Python {platform.python_version()}"
        ),
        "duckdb": duckdb.__version__,
        "stores": {},
    }
    if args.recorded_db or args.recorded_steps:
        db = _existing(args.recorded_db, directory, "recorded")
        db = db or build_recorded(directory, args.recorded_steps)
        report["stores"]["recorded"] = measure("recorded", db, directory, None)
    if args.imported_db or args.imported_steps:
        db = _existing(args.imported_db, directory, "imported")
        source = None
        if db is None:
            db, source = build_imported(directory, args.imported_steps)
        store = report["stores"]["imported"] = measure("imported", db, directory, source)
        if args.rounds:
            copies = {k: Path(v) for k, v in store["copies"].items()}
            report["reads"] = time_reads(copies, args.rounds)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
