"""What `traces verify` decides: one judgement per group and criterion, and the verdict.

This is the document `traces verify --format json` prints (the comparison it judged is
included whole); the JUnit XML and the Markdown summary are written from it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from analyzer.compare.model import Comparison, Unit

Status = Literal["pass", "fail", "inconclusive", "skipped"]
"""`pass`: the whole interval clears the bound; `fail`: the whole interval misses it;
`inconclusive`: the interval straddles it, or the criterion could not be judged (the reason
says which); `skipped`: the group has no value and the criterion says `when_missing = "skip"`."""

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_INCONCLUSIVE = 5
"""No criterion failed, but some are inconclusive (more runs may settle them)."""


class Judgement(BaseModel):
    """One criterion judged on one group."""

    group: str = Field(description="The group (column of the comparison) judged.")
    criterion: str = Field(description="The criterion's name.")
    metric: str = Field(description="The metric key it reads.")
    label: str = Field(description="The metric's label.")
    unit: Unit | None = Field(description="The metric's unit (None: the fingerprint).")
    rule: str = Field(description="The criterion in words: `>= 0.73`, `>= reference − 0.02`.")
    judged: Literal["value", "difference", "fingerprint"] = Field(
        description="What the interval is of: the group's value, or its difference from the "
        "reference's (group − reference)."
    )
    bound: float | None = Field(
        description="The bound the interval is held against: the threshold, or ∓allowed_drop "
        "for a difference."
    )
    value: float | None = Field(description="The group's value of the metric.")
    reference_value: float | None = Field(
        default=None, description="The reference's value (relative criteria)."
    )
    estimate: float | None = Field(description="The judged quantity (value or difference).")
    lo: float | None = Field(description="Lower bound of its 95% interval.")
    hi: float | None = Field(description="Upper bound of its 95% interval.")
    runs: int = Field(description="Runs behind the group's value.")
    status: Status
    runs_needed: int | None = Field(
        default=None,
        description="Inconclusive only: about how many runs (per group) would settle it, if "
        "the estimate stayed where it is and the interval narrowed as 1/√runs.",
    )
    reason: str = Field(description="The judgement in one sentence.")


class Verification(BaseModel):
    """A policy judged on a comparison: every judgement and the overall verdict."""

    policy: str = Field(description="The policy's name.")
    policy_file: str = Field(description="The file it was read from.")
    description: str = Field(description="What passing the policy means.")
    reference: str | None = Field(description="The reference group of relative criteria.")
    status: Literal["pass", "fail", "inconclusive"] = Field(
        description="fail if any judgement fails, else inconclusive if any is, else pass."
    )
    exit_code: int = Field(description="0 pass, 1 fail, 5 inconclusive.")
    judgements: list[Judgement]
    comparison: Comparison = Field(description="The comparison judged (`traces compare`'s JSON).")

    def to_json(self) -> str:
        """The verification as indented JSON text."""
        return self.model_dump_json(indent=2)

    def notes(self) -> list[str]:
        """The comparison's notes that bear on the judgements (the one asking for a reference
        for tool_call_f1 only when a criterion reads it)."""
        reads_f1 = any(j.metric == "tool_call_f1" for j in self.judgements)
        return [
            note
            for note in self.comparison.notes
            if reads_f1 or not note.startswith("tool_call_f1 needs a reference")
        ]

    def counts(self) -> dict[str, int]:
        """Judgements per status."""
        out = dict.fromkeys(("pass", "fail", "inconclusive", "skipped"), 0)
        for judgement in self.judgements:
            out[judgement.status] += 1
        return out

    def summary(self) -> str:
        """The verdict in one line: `verify faithful: FAIL — 2 failed, 7 passed …`."""
        counts = self.counts()
        words = {"pass": "passed", "fail": "failed", "inconclusive": "inconclusive"}
        parts = [f"{n} {words.get(status, status)}" for status, n in counts.items() if n]
        text = f"verify {self.policy}: {self.status.upper()} — " + ", ".join(parts)
        failed = [f"{j.group}: {j.criterion}" for j in self.judgements if j.status == "fail"]
        if failed:
            text += " (failed: " + "; ".join(failed) + ")"
        return text
