"""The analysis' rows into a database with each column bound as one JSON text.

DuckDB 1.5 looks for pandas each time it converts a Python value bound to a statement.
`traces.store` marks pandas absent, so that each look fails at once, but each still raises
and formats an ImportError, two per value: storing the findings, ledgers and summaries of an
analysis (about fifteen values a step) cost 72 µs of CPU a step, about as much as the ledger.
A column bound as one JSON text is one value, decoded by DuckDB (`from_json`) in C++; a
column of values JSON does not carry exactly (a timestamp, a float that is not finite)
goes as a list, as `traces.store.inserts` binds it, and one holding a single value
throughout goes as that value, once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import duckdb

from traces.store.tables import COLUMNS

_ENCODE = json.JSONEncoder(allow_nan=False).encode
"""JSON of a column: ASCII, so that any text (lone surrogates included) goes as it would."""

_STATEMENTS: dict[tuple[str, str, tuple[str, ...]], str] = {}


def json_type(column: Sequence[Any]) -> str | None:
    """The `from_json` type whose list JSON `column` decodes to exactly its values, or None
    when JSON does not carry them (anything but text, integers, finite floats, booleans)."""
    kinds = {type(value) for value in column if value is not None}
    if kinds <= {str}:
        return "VARCHAR"
    if kinds == {bool}:
        return "BOOLEAN"
    if kinds == {int}:
        return "BIGINT"
    if kinds <= {int, float} and all(v is None or math.isfinite(v) for v in column):
        return "DOUBLE"
    return None


def _constant(column: Sequence[Any]) -> bool:
    """Whether every value of `column` is the first one, of the same type (1 == 1.0 == True
    for Python's `==`; floats never count: 0.0 == -0.0)."""
    first = column[0]
    kind = type(first)
    if kind is float or not all(type(v) is kind for v in column):
        return False
    return column.count(first) == len(column)


def insert_json_columns(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    columns: Sequence[Sequence[Any]],
    into: str | None = None,
) -> None:
    """Insert rows of `table` (a table of `traces.store.tables.COLUMNS`, with no columns
    derived or deduplicated) given as one list per column in its columns' order, into
    `into` when given (a table of the same columns). The first column carries the number of
    rows and always goes as a list."""
    names = COLUMNS[table]
    if len(columns) != len(names):
        raise ValueError(f"{table}: {len(columns)} columns given, the table has {len(names)}")
    if not columns[0]:
        return
    shapes: list[str] = []
    values: list[Any] = []
    for position, column in enumerate(columns):
        if position and _constant(column):
            shapes.append("=")
            values.append(column[0])
            continue
        kind = json_type(column)
        if kind is None:
            shapes.append("list")
            values.append(list(column))
        else:
            shapes.append(kind)
            values.append(_ENCODE(list(column)))
    key = (into or table, table, tuple(shapes))
    sql = _STATEMENTS.get(key)
    if sql is None:
        parts = []
        for number, shape in enumerate(shapes, start=1):
            if shape == "=":
                parts.append(f"${number}")
            elif shape == "list":
                parts.append(f"unnest(${number})")
            else:
                parts.append(f"unnest(from_json(${number}, '[\"{shape}\"]'))")
        sql = _STATEMENTS[key] = (
            f"INSERT INTO {into or table} ({', '.join(names)}) SELECT {', '.join(parts)}"
        )
    conn.execute(sql, values)


def insert_json_rows(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    rows: Sequence[tuple[Any, ...]],
    into: str | None = None,
) -> None:
    """`insert_json_columns` of rows (the table's row type's tuples)."""
    if rows:
        insert_json_columns(conn, table, [list(c) for c in zip(*rows, strict=True)], into)


def json_list(values: Sequence[str]) -> str:
    """A list of texts as one JSON value, for `from_json(…, '["VARCHAR"]')` in a statement."""
    return _ENCODE(list(values))
