"""A run's token totals as its steps reported them: unknown (None, NULL) where they did not.

A host that sends no usage has not said it used no tokens, so a run's total of a count is
known only when every answered step (no error: a failed call has no usage to report)
reported that count, and unknown otherwise: never a partial sum, never a 0. A run with no
answered step has no known total either. One rule for every writer of `runs` (the live
recorder, the importer, the probes, the writer closing runs of dead recorders) and every
reader that sums steps itself (a run still being recorded): `TokenTotals` in Python,
`known_sum` in SQL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Only a type here: `traces runs` reads `known_sum` and must not pay for building the
    # pydantic models (some 30 ms of its start-up).
    from traces.model import StepRecord

TOKEN_COLUMNS = ("prompt_tokens", "completion_tokens", "reasoning_tokens")
"""The per-step counts a run totals (`steps` and `runs` columns of these names)."""

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
    return f"SELECT run_id, {totals} FROM step_rows WHERE {where} GROUP BY run_id"


@dataclass
class TokenTotals:
    """A run's totals, counted step by step as it is recorded or imported."""

    answered: int = 0
    """Steps that got a response (no error)."""
    sums: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOKEN_COLUMNS, 0))
    reported: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOKEN_COLUMNS, 0))
    """Answered steps that reported each count."""

    def add(self, step: StepRecord) -> None:
        """Count one step (a failed one counts for nothing: it had no usage to report)."""
        usage = step.usage
        self.add_counts(
            answered=step.error is None,
            counts={
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "reasoning_tokens": usage.reasoning_tokens,
            },
        )

    def add_counts(self, *, answered: bool, counts: Mapping[str, int | None]) -> None:
        """Count one step given by its counts (each of `TOKEN_COLUMNS`, None where it
        reported none), as a stored step is read back."""
        if not answered:
            return
        self.answered += 1
        for column in TOKEN_COLUMNS:
            value = counts.get(column)
            if value is not None:
                self.sums[column] += value
                self.reported[column] += 1

    def total(self, column: str) -> int | None:
        """The run's total of `column`, None unless every answered step reported it."""
        if self.answered == 0 or self.reported[column] != self.answered:
            return None
        return self.sums[column]

    def as_fields(self) -> dict[str, int | None]:
        """Each of `TOKEN_COLUMNS` -> its total, for `RunOutcome(**…)`."""
        return {column: self.total(column) for column in TOKEN_COLUMNS}
