"""Rows bound as one JSON text per column (`traces.store.inserts`) are stored exactly as the
old insert stored them, every column bound as a list of Python values: every table of the
write side in a migrated database, every type a row holds, None, text JSON must escape,
floats to the last bit (-0.0, the smallest subnormal), values JSON does not carry (an
infinite float, timestamps), a column holding one value throughout."""

from __future__ import annotations

import math
import struct
from datetime import datetime, timedelta
from typing import Any

import duckdb
import pytest

from traces.store.inserts import (
    CONSTANT,
    LIST,
    insert_columns,
    insert_sql,
    json_list,
    json_type,
    run_keys,
    shape_of,
)
from traces.store.migrations import migrate
from traces.store.tables import COLUMNS, PER_RUN, ROW_TYPES, stored_columns

NOW = datetime(2026, 12, 5, 10, 0, 0, 123456)
TEXTS = ['{"a": "<>&\\"\'"}', '{"é": "\u2028 中 \\u0000"}', '"x"', "[1, 2]", "{}"]
"""Texts that are also JSON, for the tables' JSON columns."""
FLOATS = [0.1 + 0.2, -0.0, 5e-324, 1 / 3, 1e300]
INTS = [0, -3, 2**31 - 1, 7, 1]


def _value(annotation: str, i: int, pattern: str, *, nullable: bool) -> Any:
    """Row `i`'s value of a field of this annotation: `varied` rows differ in every column,
    `constant` rows in their first only (keys stay distinct through that column), and
    `infinite` rows put an infinite float in each float column."""
    if pattern == "constant":
        i = 0
    if nullable and i % 4 == 3:
        return None
    if annotation.startswith("str"):
        return TEXTS[i % len(TEXTS)]
    if annotation.startswith("bool"):
        return i % 2 == 0
    if annotation.startswith("int"):
        return INTS[i % len(INTS)]
    if annotation.startswith("float"):
        return math.inf if pattern == "infinite" and i == 1 else FLOATS[i % len(FLOATS)]
    if annotation.startswith("datetime"):
        return NOW + timedelta(microseconds=i)
    raise AssertionError(annotation)


def _columns(
    table: str, rows: int, pattern: str, not_null: frozenset[str] = frozenset()
) -> list[list[Any]]:
    annotations = {f: str(getattr(a, "__forward_arg__", a)) for f, a in
                   ROW_TYPES[table].__annotations__.items()}  # fmt: skip
    columns = [
        [
            _value(
                annotations[f], i, pattern, nullable="None" in annotations[f] and f not in not_null
            )
            for i in range(rows)
        ]
        for f in COLUMNS[table]
    ]
    # The first column tells the rows apart (it is every table's key or part of it).
    columns[0] = [f"{TEXTS[i % len(TEXTS)][:-1]} {i}" for i in range(rows)]
    if table == "steps":
        columns[1] = list(range(rows))  # (run_id, idx) is the key
    return columns


def _old_insert(conn: duckdb.DuckDBPyConnection, table: str, columns: list[list[Any]]) -> None:
    """The insert as it was: constant columns as one value, the others as lists (and a
    per-run table's run keys, looked up as the insert looks them up)."""
    if table in PER_RUN:
        columns = [*columns, run_keys(conn, columns[COLUMNS[table].index("run_id")])]
    shapes = tuple(
        CONSTANT if i and shape_of(c).startswith(CONSTANT) else LIST for i, c in enumerate(columns)
    )
    values = [c[0] if s == CONSTANT else c for c, s in zip(columns, shapes, strict=True)]
    conn.execute(insert_sql(table, shapes), values)


def _stored(conn: duckdb.DuckDBPyConnection, table: str) -> list[tuple[Any, ...]]:
    """The rows as stored, floats as their bits."""
    base, names = stored_columns(table)
    rows = conn.execute(f"SELECT {', '.join(names)} FROM {base} ORDER BY ALL").fetchall()
    return [tuple(struct.pack("<d", v) if isinstance(v, float) else v for v in row) for row in rows]


@pytest.mark.parametrize("pattern", ["varied", "constant", "infinite"])
@pytest.mark.parametrize("rows", [1, 2, 9])
def test_every_table_stored_as_the_old_insert_stored_it(rows: int, pattern: str) -> None:
    old, new = duckdb.connect(), duckdb.connect()
    migrate(old)
    migrate(new)
    not_null = old.execute(
        "SELECT table_name, list(column_name) FROM duckdb_columns() WHERE NOT is_nullable "
        "GROUP BY ALL"
    ).fetchall()
    required = {t: frozenset(names) for t, names in not_null}
    for table in ROW_TYPES:
        base = stored_columns(table)[0]
        columns = _columns(
            table, rows, pattern, required.get(table, frozenset()) | required.get(base, frozenset())
        )
        _old_insert(old, table, columns)
        insert_columns(new, table, columns)
        stored = _stored(new, table)
        assert len(stored) == rows, table
        assert stored == _stored(old, table), table


def test_a_column_json_carries_goes_as_json_and_the_others_as_lists() -> None:
    def shapes(pattern: str) -> dict[str, str]:
        columns = _columns("steps", 9, pattern)
        return {name: shape_of(c) for name, c in zip(COLUMNS["steps"], columns, strict=True)}

    varied = shapes("varied")
    assert varied["run_id"] == "VARCHAR" and varied["idx"] == "BIGINT"
    assert varied["streamed"] == "BOOLEAN" and varied["latency_ms"] == "DOUBLE"
    assert varied["started_at"] == LIST  # timestamps
    assert shapes("infinite")["latency_ms"] == LIST
    # One value throughout: a field of the batch's one JSON object, or alone when JSON does
    # not carry it.
    assert shape_of(["a"] * 3) == "=VARCHAR" and shape_of(["a"] * 3, first=True) == "VARCHAR"
    assert shape_of([None] * 2) == "=VARCHAR" and shape_of([NOW] * 2) == CONSTANT
    assert shape_of([2**64] * 2) == CONSTANT


def test_what_json_cannot_carry() -> None:
    assert json_type(["a", None]) == "VARCHAR" and json_type([None]) == "VARCHAR"
    assert json_type([1, None, 2]) == "BIGINT" and json_type([True, False]) == "BOOLEAN"
    assert json_type([1, 0.5]) == "DOUBLE"
    assert json_type([math.inf]) is None and json_type([math.nan, 1.0]) is None
    assert json_type([NOW]) is None and json_type([True, 1]) is None
    assert json_type([2**63 - 1, -(2**63)]) == "BIGINT" and json_type([2**63]) is None
    assert json_type([2**53 + 1, 0.5]) is None  # a float would round it
    texts = ["\x00", "\\", "a\nb", "é"]
    conn = duckdb.connect()
    assert conn.execute(
        "SELECT unnest(from_json($1, '[\"VARCHAR\"]'))", [json_list(texts)]
    ).fetchall() == [(t,) for t in texts]


def test_the_packed_object_is_decoded_once_whatever_its_fields() -> None:
    """A one-row batch packs nearly every column into one JSON object: the statement
    decodes it once. (Decoded in each field's expression, DuckDB parsed its whole type
    once per field: most of a recorder's commit.)"""
    columns = [*_columns("steps", 1, "constant"), [1]]  # and the run's key
    shapes = tuple(shape_of(c, first=not i) for i, c in enumerate(columns))
    packed = [s for s in shapes if s.startswith(CONSTANT) and s != CONSTANT]
    as_json = [s for s in shapes if s not in (LIST, CONSTANT) and not s.startswith(CONSTANT)]
    assert len(packed) > 20
    assert insert_sql("steps", shapes).count("from_json(") == 1 + len(as_json)
