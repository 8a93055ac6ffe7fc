"""Policy files: the criteria `traces verify` judges a comparison by.

A policy is user input like a suite file, so every problem is one `PolicyFileError` line of
the form `{path}: {field}: {problem}` (exit 2), raised before anything is recorded or read.
Each criterion names a metric of `traces compare` (its `key`), a comparator and a bound:
an absolute `threshold` in the metric's unit (rates are fractions: 0.73 for 73%), or
`relative_to = "reference"` with an `allowed_drop` (how much worse than the reference group
the value may be, in the metric's unit). `template_fingerprint` is the one metric that is
not a number: `==` the reference's fingerprint from `traces probe`.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from analyzer.checks.catalogue import KINDS
from analyzer.checks.records import Layer
from analyzer.compare.definitions import METRICS, MetricSpec, finding_metrics
from traces.errors import TracesError
from traces.sample_files import resolve_policy
from traces.tasks import _field_name, _problem, _toml_error

Comparator = Literal[">=", ">", "<=", "<", "=="]
"""How the metric must stand against the bound."""

FINGERPRINT = "template_fingerprint"
"""The criterion on the probes' template fingerprint (not a comparison metric)."""

_FINDING_KEY = re.compile(r"^finding\.(kind|layer)\.(.+)\.(per_100_steps|runs_share)$")
_LAYERS: tuple[Layer, ...] = ("model", "tool", "provider", "client")


class PolicyFileError(TracesError):
    """A policy file that cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    # TOML values are typed already; a misspelt key must be an error, not a silent default.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Criterion(_Strict):
    """One `[[criteria]]` entry: a metric that must stand against a bound."""

    metric: str = Field(
        min_length=1,
        description="A `traces compare` metric key (`schema_accuracy`, "
        "`finding.layer.provider.per_100_steps`…) or `template_fingerprint`.",
    )
    comparator: Comparator = Field(description="`>=`, `>`, `<=`, `<` (`==`: fingerprint only).")
    threshold: float | None = Field(
        default=None, description="Absolute bound in the metric's unit (rates: fractions)."
    )
    relative_to: Literal["reference"] | None = Field(
        default=None, description="Judge against the reference group instead of a threshold."
    )
    allowed_drop: float = Field(
        default=0.0,
        ge=0.0,
        description="With relative_to: how much worse than the reference the value may be, "
        "in the metric's unit (a rate's 0.02 is two points).",
    )
    name: str | None = Field(default=None, description="Short name [default: the metric key].")
    when_missing: Literal["inconclusive", "skip"] = Field(
        default="inconclusive",
        description="A group without a value of the metric (no tool calls, say): "
        "inconclusive, or skipped (the criterion applies only where the metric exists).",
    )
    why: str | None = Field(default=None, description="Where the mark comes from.")

    @property
    def title(self) -> str:
        """The criterion's name as outputs show it."""
        return self.name or self.metric

    def bound_text(self) -> str:
        """The criterion in words: `>= 0.73`, `>= reference − 0.02`."""
        if self.relative_to is None:
            return f"{self.comparator} {self.threshold:g}"
        if self.metric == FINGERPRINT:
            return "== reference"
        worse = "−" if self.comparator in (">=", ">") else "+"
        drop = f" {worse} {self.allowed_drop:g}" if self.allowed_drop else ""
        return f"{self.comparator} reference{drop}"


class Policy(_Strict):
    """A policy file: criteria every group of the comparison must meet."""

    name: str = Field(min_length=1, description="The policy's name, shown in every output.")
    description: str = Field(default="", description="What passing the policy means.")
    reference: str | None = Field(
        default=None, description="Reference group [default: --reference]; --reference wins."
    )
    criteria: list[Criterion] = Field(min_length=1, description="What is judged.")
    source: str = Field(default="", description="The file it was read from (set on load).")

    @property
    def needs_reference(self) -> bool:
        """Whether a criterion is judged against a reference group."""
        return any(c.relative_to is not None or c.metric == "tool_call_f1" for c in self.criteria)

    @property
    def needs_fingerprints(self) -> bool:
        """Whether a criterion reads the probes' template fingerprints."""
        return any(c.metric == FINGERPRINT for c in self.criteria)


def load_policy(value: str) -> Policy:
    """The policy a path or a shipped policy's name (`faithful`, `k2vv`) names, validated;
    one-line PolicyFileError naming the file and the field."""
    try:
        path = resolve_policy(value)
    except TracesError as exc:  # an unknown sample name: still a bad policy
        raise PolicyFileError(str(exc)) from None
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise PolicyFileError(f"{path}: cannot read policy file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise PolicyFileError(f"{path}: invalid TOML (not UTF-8)") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyFileError(_toml_error(path, text, exc)) from None
    policy = _validate(path, raw)
    for i, criterion in enumerate(policy.criteria):
        problem = _criterion_problem(criterion)
        if problem is not None:
            field, message = problem
            raise PolicyFileError(f"{path}: criteria[{i}].{field}: {message}")
    return policy.model_copy(update={"source": str(path)})


def _validate(path: Path, raw: dict[str, Any]) -> Policy:
    try:
        return Policy.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = first["loc"]
        owner: type[BaseModel] = Criterion if len(loc) >= 2 and loc[0] == "criteria" else Policy
        problem = _problem(first, owner)
        message = f"{path}: {_field_name('', loc)}: {problem}".replace("\n", " ")
        raise PolicyFileError(message) from None


def metric_spec(key: str) -> MetricSpec | None:
    """The comparison metric `key` names (finding metrics by any known kind or layer)."""
    for spec in METRICS:
        if spec.key == key:
            return spec
    match = _FINDING_KEY.match(key)
    if match is None:
        return None
    dimension, name, _ = match.groups()
    if dimension == "kind" and name in KINDS:
        return next(s for s in finding_metrics("kind", name) if s.key == key)
    if dimension == "layer" and name in _LAYERS:
        return next(s for s in finding_metrics("layer", name) if s.key == key)
    return None


def _criterion_problem(criterion: Criterion) -> tuple[str, str] | None:
    """(field, problem) of a criterion that cannot be judged as written, else None."""
    if criterion.metric == FINGERPRINT:
        if criterion.comparator != "==":
            return "comparator", "template_fingerprint is compared with == only"
        if criterion.relative_to is None or criterion.threshold is not None:
            return "relative_to", 'template_fingerprint needs relative_to = "reference"'
        return None
    spec = metric_spec(criterion.metric)
    if spec is None:
        known = ", ".join(s.key for s in METRICS)
        return "metric", (
            f"unknown metric {criterion.metric!r} (metrics: {known}, "
            "finding.kind.KIND.per_100_steps|runs_share, finding.layer.LAYER.…, "
            f"{FINGERPRINT})"
        )
    if criterion.comparator == "==":
        return (
            "comparator",
            "== is for template_fingerprint only (an interval never equals a point)",
        )
    if (criterion.threshold is None) == (criterion.relative_to is None):
        return "threshold", 'give either threshold or relative_to = "reference", not both'
    if criterion.relative_to is None and criterion.allowed_drop:
        return "allowed_drop", 'only with relative_to = "reference"'
    if criterion.relative_to is not None and criterion.metric == "tool_call_f1":
        return (
            "relative_to",
            "tool_call_f1 is measured against the reference already: give a threshold",
        )
    if spec.unit == "rate":
        for field, value in (
            ("threshold", criterion.threshold),
            ("allowed_drop", criterion.allowed_drop),
        ):
            if value is not None and not 0.0 <= value <= 1.0:
                return field, f"{spec.key} is a rate: a fraction in [0, 1] (0.73 for 73%)"
    return None
