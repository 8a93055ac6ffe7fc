"""The one way rows reach the database, for the recorder's writer process and for imports.

A batch of rows of a table is inserted with one statement, `INSERT INTO t (…) SELECT
unnest($1), unnest($2), …`, each parameter a whole column as a list. DuckDB's executemany
runs a statement once per row (0.4-1 ms each); one statement over a batch of dozens of rows
costs about what two or three single rows did, and one over thousands a handful of
milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import duckdb

from traces.store.tables import COLUMNS, DEDUPLICATED, DERIVED, RunUpdate, stored_columns

_INSERTS: dict[tuple[str, tuple[bool, ...], str], str] = {}
"""Statement text by target table, mask of constant columns (a recorder's batch of one step has
every column but the first constant; an import's batch, a few) and way of deduplicating."""

*_ENDING, _KEY = RunUpdate._fields
UPDATE_RUN = f"UPDATE runs SET {', '.join(f'{c} = ?' for c in _ENDING)} WHERE {_KEY} = ?"
"""Ends a recorded run: the parameters are a `RunUpdate`, the run's id last."""


Dedup = Literal["key", "anti-join", "none"]
"""How rows of a deduplicated table that are stored already are skipped: by the table's key
(`ON CONFLICT DO NOTHING`, a file), by an anti-join on the key column (a lake, which has no
keys: see `traces.store.lake_schema`), or not at all (a lake's writer that skipped what it
stored itself, accepting what another writer stored: a scan of the key column per commit
would cost more than the commit, and grow with the store)."""


def insert_sql(
    table: str, constant: tuple[bool, ...], into: str | None = None, *, dedup: Dedup = "key"
) -> str:
    """The batch insert of `table` (a key of `tables.ROW_TYPES`), all its columns, into the
    base table that stores its rows (`tables.stored_columns`); a column marked constant is
    passed as one value, the others as lists unnested into rows. `into`
    names another table of the same columns to insert into (e.g. in an attached database).
    `dedup` applies to the tables of `tables.DEDUPLICATED` (see `Dedup`)."""
    fields = COLUMNS[table]
    values = ", ".join(
        f"${i}" if same else f"unnest(${i})" for i, same in enumerate(constant, start=1)
    )
    base, names = stored_columns(table)
    target = into or base
    if names != fields:
        # The row's fields under their names, then the stored columns computed from them.
        named = ", ".join(
            f"{value} AS {name}" for value, name in zip(values.split(", "), fields, strict=True)
        )
        derived = DERIVED.get(table, {})
        values = f"{', '.join(derived.get(c, c) for c in names)} FROM (SELECT {named})"
    if table not in DEDUPLICATED or dedup == "none":
        return f"INSERT INTO {target} ({', '.join(names)}) SELECT {values}"
    if dedup == "key":
        return f"INSERT INTO {target} ({', '.join(names)}) SELECT {values} ON CONFLICT DO NOTHING"
    key = DEDUPLICATED[table]
    return (
        f"INSERT INTO {target} ({', '.join(names)}) "
        f"SELECT DISTINCT ON ({key}) * FROM (SELECT {values}) AS new ({', '.join(names)}) "
        f"WHERE {key} NOT IN (SELECT {key} FROM {target})"
    )


def insert_rows(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    rows: Sequence[tuple[Any, ...]],
    into: str | None = None,
    *,
    check_stored: bool = True,
) -> None:
    """Insert rows of `table` (its row type's tuples) with one statement (into the table
    `into` of the same columns, when given). Without `check_stored`, a lake stores rows of a
    deduplicated table without looking for them first (see `Dedup`)."""
    if rows:
        columns = [list(column) for column in zip(*rows, strict=True)]
        insert_columns(conn, table, columns, into, check_stored=check_stored)


def insert_columns(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    columns: list[list[Any]],
    into: str | None = None,
    *,
    check_stored: bool = True,
) -> None:
    """Insert rows of `table` given as one list per column, in its columns' order, with one
    statement (into the table `into` of the same columns, when given; `check_stored` as
    for `insert_rows`).

    Converting Python values for DuckDB is most of an insert's cost, and in a batch many
    columns hold one value throughout (no error, no time to first token, one import id):
    such a column goes as that value, once. The first column stays a list: it carries the
    number of rows.
    """
    if len(columns) != len(COLUMNS[table]):
        raise ValueError(
            f"{table}: {len(columns)} columns given, the table has {len(COLUMNS[table])}"
        )
    constant = (False, *map(_constant, columns[1:]))
    dedup: Dedup = "key"
    # Imported here: the lake module imports DuckDB, which import workers start without.
    from traces.store.lake import is_lake

    if table in DEDUPLICATED and is_lake(conn):
        dedup = "anti-join" if check_stored else "none"
    sql = _INSERTS.get((into or table, constant, dedup))
    if sql is None:
        sql = _INSERTS[into or table, constant, dedup] = insert_sql(
            table, constant, into, dedup=dedup
        )
    conn.execute(
        sql, [column[0] if same else column for column, same in zip(columns, constant, strict=True)]
    )


def update_runs(conn: duckdb.DuckDBPyConnection, updates: Sequence[tuple[Any, ...]]) -> None:
    """Write the endings of recorded runs (`RunUpdate`s)."""
    if updates:
        conn.executemany(UPDATE_RUN, list(updates))


def _constant(column: list[Any]) -> bool:
    """Whether every value of `column` is stored as the first one is. Python's `==` says
    1 == 1.0 == True and 0.0 == -0.0: numbers must be of the same type, and not floats."""
    first = column[0]
    if column.count(first) != len(column):
        return False
    kind = type(first)
    if first is None or kind is str:
        return True
    return kind is not float and all(type(v) is kind for v in column)
