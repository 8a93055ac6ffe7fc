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
from traces.store.run_batch import RunBatch, of_batch

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
        hits = _hits(conn, ids, needle)
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


_SEQ_RANGE_SQL = f"SELECT min(seq), max(seq) FROM step_message_keys WHERE {of_batch()}"
# The base tables, with the part's key range as constants (`RunBatch`): the views `steps` and
# `tool_results` give back a text stored once in the message the run's next request added,
# by a join that a filter made of subqueries does not reach (every run's rows were joined:
# 0.8 s of CPU for a part of 500 runs of a 100,000-step store, measured), so those texts are
# searched in the messages here, found as the views find them (run, next step, position).
_HITS_SQL = f"""
    WITH sent AS (
        SELECT s.run_id, s.step_idx, s.position, m.body
        FROM step_message_keys s JOIN messages m ON m.seq = s.seq AND m.key = s.key
        WHERE {of_batch("s")} AND m.seq BETWEEN $3 AND $4
    )
    SELECT run_id FROM step_rows WHERE {of_batch()}
        AND (contains(lower("content"), $2) OR contains(lower(reasoning), $2))
    UNION SELECT run_id FROM tool_calls WHERE {of_batch()} AND contains(lower(arguments_raw), $2)
    UNION SELECT run_id FROM tool_result_rows WHERE {of_batch()}
        AND (contains(lower(output), $2) OR contains(lower(error), $2))
    UNION SELECT t.run_id FROM step_rows t JOIN sent
        ON sent.run_id = t.run_id AND sent.step_idx = t.idx::BIGINT + 1
        AND sent.position = t.request_message_count
        WHERE {of_batch("t")} AND t.reasoning_replayed
        AND contains(lower(json_extract_string(sent.body, '$.' || t.reasoning_source)), $2)
    UNION SELECT t.run_id FROM tool_result_rows t JOIN sent
        ON sent.run_id = t.run_id AND sent.step_idx = t.step_idx::BIGINT + 1
        AND sent.position = t.output_position
        WHERE {of_batch("t")} AND t.output IS NULL
        AND contains(lower(json_extract_string(sent.body, '$.content')), $2)
"""


def _hits(conn: duckdb.DuckDBPyConnection, ids: list[str], needle: str) -> set[str]:
    """Which of the runs `ids` hold `needle` (lower case) in a step's content or reasoning,
    a call's arguments or a tool's result."""
    if not ids:
        return set()
    batch = RunBatch(conn, ids)
    row = batch.execute(conn, _SEQ_RANGE_SQL).fetchone()
    low, high = row if row is not None else (None, None)
    return {str(r[0]) for r in batch.execute(conn, _HITS_SQL, needle, low, high).fetchall()}
