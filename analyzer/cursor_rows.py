"""Query results as rows keyed by column name: every reader turns a cursor into rows here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb


def column_names(cursor: duckdb.DuckDBPyConnection) -> list[str]:
    """The result's column names, in order (none for a statement without a result)."""
    return [d[0] for d in cursor.description or []]


def unique_names(names: Sequence[str]) -> list[str]:
    """`names` with each repeated one suffixed `_1`, `_2`, … (as DuckDB names a subquery's
    repeated columns), skipping names already taken: rows keyed by name would otherwise keep
    one of the values and drop the others (`select a.id, b.id …`)."""
    taken = set(names)
    seen: set[str] = set()
    out: list[str] = []
    for name in names:
        unique, suffix = name, 0
        while unique in seen or (suffix and unique in taken):
            suffix += 1
            unique = f"{name}_{suffix}"
        seen.add(unique)
        out.append(unique)
    return out


def dict_rows(
    cursor: duckdb.DuckDBPyConnection, rows: Sequence[tuple[Any, ...]] | None = None
) -> list[dict[str, Any]]:
    """`rows` (default: every row the cursor has left) as dicts keyed by column name."""
    names = column_names(cursor)
    fetched = cursor.fetchall() if rows is None else rows
    return [dict(zip(names, row, strict=True)) for row in fetched]
