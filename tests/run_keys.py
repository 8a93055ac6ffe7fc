"""The run keys of a store (migration 12): which columns hold them, and whether they agree.

A run's `key` numbers it in the store it is in, in the order runs were stored there: two
stores holding the same runs (a merge's union, an import by one process or by two) number
them differently, so comparisons of their rows leave those columns out and check instead
that each store's keys agree with themselves (`disagreements`).
"""

from __future__ import annotations

from typing import Any

import duckdb

from traces.store.tables import RUN_KEY


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
    if table == "runs" and "key" in columns:
        return f"SELECT * EXCLUDE (key) FROM {table}"
    if RUN_KEY in columns:
        return f"SELECT * EXCLUDE ({RUN_KEY}) FROM {table}"
    return f"SELECT * FROM {table}"


def disagreements(conn: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    """What breaks the store's run keys: a run without a key, two runs of one key, a row of a
    per-run table whose `run_key` is not its run's `key`. Empty when they all agree."""
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
    return found
