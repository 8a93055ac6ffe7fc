"""The whole comparison as one document: what `traces compare --format json` prints and what
reports read. Field descriptions are its documentation; `schema_version` changes when a field
changes meaning or disappears (adding fields does not change it).

Shape: `groups` are the columns (one per provider, upstream host or model); `metrics` are the
rows, each with one `Estimate` per group name (absent when the group has no value); rates are
fractions in [0, 1]; `significant` lists the differences that stay significant after Holm's
correction across every test of the comparison (`significance` says how many), each with a
sentence saying it in words; `paired_tests` names those made on shared requests.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from analyzer.compare.selection import GroupBy, Selection

Section = Literal["outcome", "tool_calls", "reasoning", "latency", "tokens", "findings"]
"""Where a metric is listed, in this order."""

Unit = Literal["rate", "steps", "ms", "tokens_per_s", "tokens", "usd", "per_100_steps", "runs"]
"""How a metric's numbers read: `rate` is a fraction in [0, 1]."""


class Estimate(BaseModel):
    """One group's value of one metric, with its bootstrap interval."""

    value: float | None = Field(description="The metric over all of the group's runs.")
    lo: float | None = Field(
        default=None, description="Lower bound of the 95% interval (None: too few runs)."
    )
    hi: float | None = Field(default=None, description="Upper bound of the 95% interval.")
    runs: int = Field(description="Runs that contribute to the metric (its denominator > 0).")


class Metric(BaseModel):
    """One row of the comparison."""

    key: str = Field(
        description="Stable identifier: `success_rate`, `schema_accuracy`, "
        "`finding.kind.<kind>.per_100_steps`, `finding.layer.<layer>.runs_share`…"
    )
    label: str = Field(description="Short human name.")
    section: Section
    unit: Unit
    better: Literal["higher", "lower"] | None = Field(
        description="Which direction is better, when one is (None: neither)."
    )
    description: str = Field(description="Exactly how the number is computed.")
    values: dict[str, Estimate] = Field(description="Group name -> estimate.")


class HistogramBucket(BaseModel):
    """Runs whose steps-to-finish fall in [lo, hi], per group."""

    lo: int = Field(description="Fewest steps in the bucket.")
    hi: int = Field(description="Most steps in the bucket.")
    runs: dict[str, int] = Field(description="Group name -> completed runs in the bucket.")


class Group(BaseModel):
    """One column: what its runs have in common."""

    name: str
    runs: int = Field(description="Finished runs in the group.")
    tasks: dict[str, int] = Field(description="Runs per task.")
    providers: list[str] = Field(description="Provider labels of its runs.")
    models: list[str] = Field(description="Model ids of its runs.")
    upstreams: list[str] = Field(description="Upstream hosts its steps named (routers only).")
    paired_steps: int | None = Field(
        default=None,
        description="Steps paired with the reference's by request hash (None without a "
        "reference, or for the reference itself).",
    )


class Difference(BaseModel):
    """A difference between two groups whose 95% interval excludes zero."""

    metric: str = Field(description="Metric key.")
    label: str = Field(description="Metric label.")
    unit: Unit
    higher: str = Field(description="The group with the higher value.")
    lower: str = Field(description="The group with the lower value.")
    higher_value: float
    lower_value: float
    difference: float = Field(description="higher_value − lower_value (> 0).")
    lo: float = Field(description="Lower bound of the 95% interval of the difference.")
    hi: float = Field(description="Upper bound of the 95% interval of the difference.")
    better: str | None = Field(description="The group that does better (None: no direction).")
    text: str = Field(description="The difference in one sentence.")
    p_value: float | None = Field(
        default=None,
        description="Two-sided bootstrap p-value of no difference, before correction.",
    )
    p_adjusted: float | None = Field(
        default=None,
        description="Holm-adjusted p-value across every test of the comparison (significant "
        "when at most `family_alpha`).",
    )
    paired: bool = Field(
        default=False,
        description="Whether the groups were compared on the requests both answered, "
        "resampling those requests (paired by request hash) instead of runs.",
    )
    requests: int | None = Field(
        default=None, description="Shared requests resampled (paired comparisons only)."
    )
    resamples: int | None = Field(
        default=None, description="Bootstrap replicates behind the p-value and interval."
    )
    p_method: Literal["percentile", "normal"] = Field(
        default="percentile",
        description="`percentile`: the share of replicates beyond 0; `normal`: the normal "
        "approximation with the bootstrap's standard error (groups too large to resample "
        "enough times to resolve the corrected threshold).",
    )


class PairedTest(BaseModel):
    """A metric compared between two groups on the requests both answered."""

    metric: str = Field(description="Metric key.")
    a: str = Field(description="One group.")
    b: str = Field(description="The other group.")
    requests: int = Field(description="Requests both answered that define the metric.")


class TaskSuccess(BaseModel):
    """One task's success share per group (Wilson 95% intervals)."""

    task: str
    samples: int = Field(
        default=0, description="Distinct dataset samples its runs answered (0: no dataset)."
    )
    values: dict[str, Estimate] = Field(
        default_factory=dict,
        description="Group name -> passed / judged runs of the task (absent: none judged).",
    )
    unjudged: dict[str, int] = Field(
        default_factory=dict,
        description="Group name -> runs of the task nothing judged (left out of the share).",
    )


class Comparison(BaseModel):
    """Groups of runs set side by side, metric by metric, with what differs significantly."""

    schema_version: Literal[1] = 1
    generated_at: datetime = Field(description="When the comparison was computed (UTC).")
    by: GroupBy = Field(description="What a group stands for.")
    reference: str | None = Field(description="Group tool_call_f1 is measured against.")
    selection: Selection = Field(description="Which runs were compared.")
    suite: str | None = Field(default=None, description="Suite recorded for the comparison.")
    confidence: float = Field(description="Level of every interval (0.95).")
    resamples: int = Field(description="Bootstrap resamples per group (runs are the unit).")
    seed: int = Field(description="Seed of the resampling: the same data gives the same output.")
    groups: list[Group]
    metrics: list[Metric]
    steps_histogram: list[HistogramBucket] = Field(
        description="Distribution of steps to finish (completed runs), buckets shared by groups."
    )
    comparisons: int = Field(description="Group-pair × metric differences that were tested.")
    significant: list[Difference] = Field(
        description="Those Holm's procedure rejects at `family_alpha` whose 95% interval "
        "excludes zero."
    )
    notes: list[str] = Field(description="Caveats worth reading before the numbers.")
    shared_tasks: list[str] = Field(
        default_factory=list,
        description="Tasks every group ran: the runs compared (empty: none is shared, so "
        "every run is shown and no difference is judged).",
    )
    family_alpha: float = Field(
        default=0.05, description="Family-wise error rate of the significance tests."
    )
    correction: Literal["holm"] = Field(
        default="holm", description="Multiple-comparison correction across all tests."
    )
    significance: str = Field(
        default="",
        description="How significance was judged, in words (e.g. `Holm-corrected across 40 "
        "tests, family-wise α=0.05`).",
    )
    paired_tests: list[PairedTest] = Field(
        default_factory=list,
        description="The tests made on requests both groups answered (paired by request "
        "hash) rather than on independently resampled runs.",
    )
    left_out: dict[str, dict[str, list[str]]] = Field(
        default_factory=dict,
        description="Group -> task -> ids of runs left out because not every group ran their task.",
    )
    like_with_like: bool = Field(
        default=True,
        description="Whether the groups ran the shared tasks in the same proportions, so that "
        "differences between them may be judged (false: numbers shown, nothing judged).",
    )
    task_success: list[TaskSuccess] = Field(
        default_factory=list, description="Task success per compared task and group."
    )

    def to_json(self) -> str:
        """The comparison as indented JSON text."""
        return self.model_dump_json(indent=2)

    def metric(self, key: str) -> Metric:
        """The metric with this key (KeyError if there is none)."""
        for metric in self.metrics:
            if metric.key == key:
                return metric
        raise KeyError(key)
