"""How each table of a store belongs to runs: what moving runs between stores copies.

Read off the schema itself (the tables and columns a migrated store has), not from a list
kept by hand, so a table added by a later migration is never silently left behind:

- `runs`: the runs themselves, keyed by `id`;
- every table with a `run_id` column belongs to its run and moves with it (steps, messages
  a request added, tool calls and results, findings, ledgers, and whatever comes next);
- the shared tables, named below with their key: rows that runs refer to (`messages`,
  content-addressed; `imports`, the files imported runs came from);
- the store's own bookkeeping (`schema_migrations`), which each store keeps for itself.

Any other table has no known place: `classify` refuses it, and a merge with it.
`tests/test_merge.py` checks that every table of a freshly migrated store has one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import duckdb

from traces.errors import DatabaseError

RUNS = "runs"
RUN_COLUMN = "run_id"
"""The column that makes a table belong to a run."""


@dataclass(frozen=True)
class Keyed:
    """A table whose rows are one each per key (`runs` by id; a shared table)."""

    key: str
    identity: tuple[str, ...]
    """Columns that tell one row from another with the same key, set once when the row is
    written: two stores that give one key to different rows (two runs started in the same
    second, whose random id parts matched) are told apart by them. Empty when the key is
    itself the content (a hash)."""


KEYED: dict[str, Keyed] = {
    RUNS: Keyed(
        "id", ("started_at", "task_sha256", "seed", "recorder_host", "recorder_pid", "origin")
    ),
    "imports": Keyed("id", ("sha256", "path", "imported_at")),
    "messages": Keyed("hash", ()),
}
"""The tables without a `run_id` column that a merge copies, with their keys."""

REFERENCES: dict[tuple[str, str], str] = {
    (RUNS, "import_id"): "imports",
    (RUNS, "retry_of"): RUNS,
}
"""(table, column) holding the key of a row of another keyed table: a merge that copies that
row under a new key (a collision) writes the new key here too. A test fails when a column
holds run ids without being declared here."""

OWN = frozenset({"schema_migrations"})
"""Tables each store keeps for itself, never copied."""


class Role(StrEnum):
    """What a table holds, as far as moving runs is concerned."""

    runs = "runs"
    per_run = "per_run"
    """Rows of one run each (a `run_id` column): copied with their run."""
    shared = "shared"
    """Rows runs refer to, one per key: copied when the destination lacks the key."""
    own = "own"
    """The store's bookkeeping: not copied."""


def classify(tables: Mapping[str, Sequence[str]]) -> dict[str, Role]:
    """Each table's role, given each table's columns; raises DatabaseError naming a table
    that has none (a table this code does not know how to move)."""
    roles = {}
    for table, columns in tables.items():
        if table == RUNS:
            roles[table] = Role.runs
        elif table in OWN:
            roles[table] = Role.own
        elif RUN_COLUMN in columns:
            roles[table] = Role.per_run
        elif table in KEYED:
            roles[table] = Role.shared
        else:
            raise DatabaseError(
                f"table {table} has no run_id column and no key known to merge: "
                "this version cannot copy it"
            )
    return roles


def store_tables(conn: duckdb.DuckDBPyConnection, catalog: str) -> dict[str, tuple[str, ...]]:
    """The base tables of the store attached as `catalog` (schema `main`), each with its
    columns in order. Views and macros are not data: every store has them by migration."""
    rows = conn.execute(
        "SELECT c.table_name, c.column_name FROM duckdb_columns() c "
        "JOIN duckdb_tables() t ON t.database_name = c.database_name "
        "AND t.schema_name = c.schema_name AND t.table_name = c.table_name "
        "WHERE c.database_name = ? AND c.schema_name = 'main' "
        "ORDER BY c.table_name, c.column_index",
        [catalog],
    ).fetchall()
    tables: dict[str, list[str]] = {}
    for table, column in rows:
        tables.setdefault(table, []).append(column)
    return {table: tuple(columns) for table, columns in tables.items()}


def of_run(run_id: str = "?", table: str = "") -> str:
    """SQL that holds for the rows of one run of a per-run table (`table`: its alias, if
    any), the run's id given by `run_id` (a parameter, `?` by default: then bound twice).

    A filter on `run_id` alone reads the whole column (DuckDB's zone maps keep 8 bytes of a
    string, and every run id starts with its date); the run's integer key (migration 12),
    looked up once in `runs`, lets the scan skip every row group that holds none of the
    run's rows. The id is compared as well: two writers of one lake may have given two runs
    the same key."""
    prefix = f"{table}." if table else ""
    return (
        f"{prefix}run_key = (SELECT key FROM runs WHERE id = {run_id}) "
        f"AND {prefix}{RUN_COLUMN} = {run_id}"
    )


def of_run_by_key(table: str = "") -> str:
    """As `of_run`, with the run's key bound as a value (`?`, then its id `?`: the
    parameters `run_key_and_id` gives). Through a view whose join the filter must pass
    (`steps`, store migration 17), a key looked up by a subquery does not reach the base
    table's scan, which then reads every run's rows; a value does."""
    prefix = f"{table}." if table else ""
    return f"{prefix}run_key = ? AND {prefix}{RUN_COLUMN} = ?"


def run_key_and_id(conn: duckdb.DuckDBPyConnection, run_id: str) -> list[Any]:
    """The parameters of `of_run_by_key` for the run `run_id` (its key NULL, matching
    nothing, when no such run is stored)."""
    found = conn.execute("SELECT key FROM runs WHERE id = ?", [run_id]).fetchone()
    return [found[0] if found else None, run_id]


def of_runs(run_ids: str, table: str = "") -> str:
    """SQL that holds for the rows of a batch of runs (`run_ids`: SQL of a one-column query
    of their ids, e.g. `SELECT unnest(?)`): the range of their keys lets the scan skip the
    row groups outside it (runs stored together have neighbouring keys), then their ids."""
    prefix = f"{table}." if table else ""
    keys = f"FROM runs WHERE id IN ({run_ids})"
    return (
        f"{prefix}run_key BETWEEN (SELECT min(key) {keys}) AND (SELECT max(key) {keys}) "
        f"AND {prefix}{RUN_COLUMN} IN ({run_ids})"
    )
