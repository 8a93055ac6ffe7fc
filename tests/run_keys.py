"""The run keys and message numbers of a store (migrations 12 and 13): which columns hold
them, and whether they agree.

A run's `key` numbers it in the store it is in, in the order runs were stored there, and a
message's `seq` likewise: two stores holding the same runs (a merge's union, an import by one
process or by two) number them differently, so comparisons of their rows leave those columns
out and check instead that each store's numbers agree with themselves (`disagreements`).
"""

from __future__ import annotations

from typing import Any

import duckdb

from traces.store.tables import MESSAGE_SEQ, RUN_KEY


def without_keys(conn: duckdb.DuckDBPyConnection, table: str) -> str:
    """`SELECT` of every column of `table` but the store's own run numbering."""
    columns = {
        str(name)
        for (name,) in conn.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = ? "
            "AND database_name = current_database()",
            [table],
        ).fetchall()
    }
    numbering = (RUN_KEY, MESSAGE_SEQ) if table != "runs" else ("key",)
    excluded = [c for c in numbering if c in columns]
    if excluded:
        return f"SELECT * EXCLUDE ({', '.join(excluded)}) FROM {table}"
    return f"SELECT * FROM {table}"


def disagreements(conn: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    """What breaks the store's run keys and message numbers: a run without a key, two runs of
    one key, a row of a per-run table whose `run_key` is not its run's `key`, a message
    without a number, a `step_message_keys` row whose number and key name no message.
    Empty when they all agree."""
    found: list[tuple[Any, ...]] = list(
        conn.execute(
            "SELECT 'runs', id, key FROM runs WHERE key IS NULL "
            "UNION ALL SELECT 'runs', string_agg(id, ','), key FROM runs "
            "WHERE key IS NOT NULL GROUP BY key HAVING count(*) > 1"
        ).fetchall()
    )
    tables = [
        str(t)
        for (t,) in conn.execute(
            "SELECT table_name FROM duckdb_columns() WHERE column_name = ? "
            "AND database_name = current_database()",
            [RUN_KEY],
        ).fetchall()
    ]
    for table in tables:
        found += conn.execute(
            f"SELECT '{table}', t.run_id, t.run_key FROM {table} t "
            "LEFT JOIN runs r ON r.id = t.run_id WHERE t.run_key IS DISTINCT FROM r.key"
        ).fetchall()
    found += conn.execute("SELECT 'messages', hash, seq FROM messages WHERE seq IS NULL").fetchall()
    found += conn.execute(
        "SELECT 'step_message_keys', s.run_id, s.seq FROM step_message_keys s "
        "ANTI JOIN messages m ON m.seq = s.seq AND m.key = s.key"
    ).fetchall()
    return found
