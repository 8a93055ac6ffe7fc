"""Text search over a store too large to search whole for one page: the runs the other
filters select are searched a part at a time, in the listing's order (newest first unless
sorted otherwise), until a page of matches is found or the time a page may take is spent.
The page says how far it searched, and links to searching on from there.

Scanning the content, reasoning, tool arguments and results of a million steps takes
seconds; the newest few thousand runs, tens of milliseconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import duckdb

from analyzer.queries import RUN_ORDERS, RunSearch

FIRST_PART = 500
"""Runs searched first; each further part is twice the one before."""
BUDGET_S = 0.12
"""Searching stops after the part that crossed this (the page must answer quickly)."""


@dataclass(frozen=True)
class Searched:
    """What one page's search found, and how far it went."""

    ids: list[str]
    """The matching runs, in the listing's order."""
    start: int
    """Runs skipped (searched by earlier pages), in the listing's order."""
    stop: int
    """Runs searched up to (exclusive): the next page searches on from here."""
    candidates: int
    """Runs the other filters select."""

    @property
    def complete(self) -> bool:
        """Whether every run the filters select was searched, from the first."""
        return self.start == 0 and self.stop >= self.candidates


def search_text(
    conn: duckdb.DuckDBPyConnection,
    text: str,
    *,
    equal: dict[str, str | None],
    status: str | None,
    search: RunSearch,
    order: str,
    descending: bool,
    start: int,
    wanted: int,
    first_part: int = FIRST_PART,
) -> Searched:
    """Up to `wanted` runs whose steps contain `text` (case-insensitive), among the runs
    the other filters select, from the `start`-th in the listing's order on, `first_part`
    runs searched first."""
    where = [f"r.{column} = ?" for column, value in equal.items() if value is not None]
    params: list[Any] = [value for value in equal.values() if value is not None]
    more, more_params = search.conditions()
    where += more
    params += more_params
    if status is not None:
        # Stored `running` rows may read as interrupted (`list_runs` tells which).
        where.append("r.status IN (SELECT unnest(?::VARCHAR[]))")
        params.append(
            ["running", "interrupted"] if status in ("running", "interrupted") else [status]
        )
    clause = " AND ".join(where) or "true"
    direction = "DESC" if descending else "ASC"
    ordering = f"{RUN_ORDERS[order]} {direction} NULLS LAST, r.id {direction}"
    counted = conn.execute(f"SELECT count(*) FROM runs r WHERE {clause}", params).fetchone()
    candidates = int(counted[0]) if counted else 0
    needle = text.lower()
    found: list[str] = []
    position = start
    part = first_part
    began = time.monotonic()
    while position < candidates and len(found) < wanted:
        chunk = f"SELECT r.id FROM runs r WHERE {clause} ORDER BY {ordering} LIMIT ? OFFSET ?"
        ids = [str(r[0]) for r in conn.execute(chunk, [*params, part, position]).fetchall()]
        hits = {
            str(r[0])
            for r in conn.execute(
                f"""
                WITH part AS ({chunk})
                SELECT run_id FROM steps WHERE run_id IN (SELECT id FROM part)
                    AND (contains(lower(content), $t) OR contains(lower(reasoning), $t))
                UNION SELECT run_id FROM tool_calls WHERE run_id IN (SELECT id FROM part)
                    AND contains(lower(arguments_raw), $t)
                UNION SELECT run_id FROM tool_results WHERE run_id IN (SELECT id FROM part)
                    AND (contains(lower(output), $t) OR contains(lower(error), $t))
                """.replace("$t", "?"),
                [*params, part, position, *[needle] * 5],
            ).fetchall()
        }
        for offset, run_id in enumerate(ids):
            if run_id in hits:
                found.append(run_id)
                if len(found) == wanted:
                    # The next page searches on from the run after this one.
                    return Searched(found, start, position + offset + 1, candidates)
        position += len(ids)
        if not ids or time.monotonic() - began >= BUDGET_S:
            break
        part *= 2
    return Searched(found, start, min(position, candidates), candidates)
