"""What a recorder's commit costs as the store's `messages` grow, with the writer's message
numbers (`traces.store.numbers`, store migration 14) and without them.

Run by hand (it is not a test and asserts nothing about time):

    .venv/bin/python benchmarks/bench_message_growth.py [--sizes 200000,2000000]
        [--commits 50] [--dir DIR] [--json PATH]

For each size N a file of the current schema is built in `--dir` (reused by the next
invocation) holding N synthetic messages (small bodies, random hashes, numbered 1..N: what a
scan of the key or number column costs depends on their number, not their text). Then, in
interleaved rounds, the CPU time (the process's, DuckDB's threads included) of what the
recorders' writer commits for one step: two new messages and the step's two
`step_message_keys` rows, in one transaction, undone after each sample (every sample sees
the same store):

- `numbers`: as the writer does since migration 14: the messages' numbers drawn from its
  counter and the step's rows named by the numbers it knows (`MessageNumbers.plan`, the
  counter read once before the rounds);
- `derived`: the same rows with the numbers drawn and looked up in SQL
  (`tables.NEXT_MESSAGE_SEQ`, `tables.MESSAGE_SEQ_OF_HASH`), as an import's insert does: a
  scan of the number column for the greatest, and of the key column for each message's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import duckdb

from traces.store.database import STORAGE_VERSION
from traces.store.inserts import insert_rows
from traces.store.migrations import migrate
from traces.store.numbers import MessageNumbers
from traces.store.tables import MessageRow, StepMessageRow

_BUILD = """
INSERT INTO messages (hash, role, body, key, seq)
    SELECT h, 'tool', '{"role": "tool", "content": "' || md5(i::VARCHAR) || '"}',
           md5_number_lower(h), i + 1
    FROM (SELECT i, sha256(i::VARCHAR) AS h FROM range($n) t(i)) ORDER BY i
"""


def build(directory: Path, size: int) -> Path:
    """The file of `size` synthetic messages, built unless already there."""
    db = directory / f"messages-{size}.duckdb"
    done = db.with_suffix(".built")
    if db.exists() and done.exists():
        return db
    db.unlink(missing_ok=True)
    conn = duckdb.connect(str(db), config={"storage_compatibility_version": STORAGE_VERSION})
    try:
        migrate(conn)
        conn.execute(_BUILD.replace("$n", str(size)))
        conn.execute("CHECKPOINT")
    finally:
        conn.close()
    done.write_text("")
    return db


def one_step(
    conn: duckdb.DuckDBPyConnection, arm: str, sample: int, numbers: MessageNumbers
) -> float:
    """CPU seconds of one step's commit by `arm`, rolled back."""
    messages = [
        MessageRow(f"new-{sample}-{i}", "tool", f'{{"content": "{sample}-{i}"}}') for i in range(2)
    ]
    rows = [StepMessageRow("run-x", sample, i, m.hash) for i, m in enumerate(messages)]
    start = time.process_time()
    conn.execute("BEGIN TRANSACTION")
    if arm == "numbers":
        plan = numbers.plan(conn, messages, [r.hash for r in rows])
        insert_rows(conn, "messages", plan.messages, check_stored=False, numbers=list(plan.drawn))
        insert_rows(conn, "step_messages", rows, check_stored=False, numbers=plan.step_numbers)
    else:
        insert_rows(conn, "messages", messages, check_stored=False)
        insert_rows(conn, "step_messages", rows, check_stored=False)
    elapsed = time.process_time() - start
    conn.execute("ROLLBACK")
    return elapsed


def measure(db: Path, commits: int) -> dict[str, float]:
    """Median CPU milliseconds of a step's commit by each arm."""
    conn = duckdb.connect(str(db))
    samples: dict[str, list[float]] = {"numbers": [], "derived": []}
    numbers = MessageNumbers()
    try:
        conn.execute("BEGIN TRANSACTION")
        numbers.plan(conn, [], [])  # the counter, read once as a writer does when it starts
        conn.execute("ROLLBACK")
        for sample in range(commits):
            for arm, taken in samples.items():
                taken.append(one_step(conn, arm, sample, numbers))
    finally:
        conn.close()
    return {arm: statistics.median(taken) * 1000 for arm, taken in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="200000,2000000")
    parser.add_argument("--commits", type=int, default=50)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/bench-message-growth"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    print("messages    numbers ms  derived ms  (CPU a step's commit, median)")
    for size in (int(s) for s in args.sizes.split(",")):
        figures = measure(build(args.dir, size), args.commits)
        results[str(size)] = figures
        print(f"{size:>10,}  {figures['numbers']:>10.2f}  {figures['derived']:>10.2f}")
        sys.stdout.flush()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
