"""A run's token totals as the steps reported them, unknown (NULL) where they did not.

`runs.prompt_tokens` and its siblings are kept as sums with 0 for a step without usage, so a
run whose host sent no usage at all reads as a run that used no tokens. The read side sums
the steps itself: a total is known when every answered step (no error: a failed call has no
usage to report) reported that count, and NULL otherwise, never a partial sum or a 0.
"""

from __future__ import annotations

TOKEN_COLUMNS = ("prompt_tokens", "completion_tokens", "reasoning_tokens")
"""The per-step counts a run totals."""

_ANSWERED = "error_kind IS NULL"


def known_sum(column: str, answered: str = _ANSWERED) -> str:
    """SQL aggregate over a run's steps: the sum of `column` over the answered steps (those
    matching `answered`), NULL unless there is one and every one reported it."""
    return (
        f"CASE WHEN count(*) FILTER (WHERE {answered}) > 0 "
        f"AND count({column}) FILTER (WHERE {answered}) = count(*) FILTER (WHERE {answered}) "
        f"THEN sum({column}) FILTER (WHERE {answered}) END"
    )


def totals_by_run(where: str = "TRUE") -> str:
    """SQL query of one row per run with steps matching `where`: `run_id` and each of
    `TOKEN_COLUMNS`, NULL where unknown."""
    totals = ", ".join(f"{known_sum(c)} AS {c}" for c in TOKEN_COLUMNS)
    return f"SELECT run_id, {totals} FROM steps WHERE {where} GROUP BY run_id"
