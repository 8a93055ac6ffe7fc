"""Judging a policy's criteria on a comparison's intervals.

Each criterion is judged on the 95% interval `traces compare` computed, never on the point:
PASS when the whole interval clears the bound, FAIL when the whole interval misses it,
INCONCLUSIVE when it straddles it. An absolute criterion reads the group's own interval
(bootstrap over runs; Wilson's for shares of runs). A relative one reads the interval of
the difference group − reference, put together from the two groups' intervals by MOVER
(Zou & Donner 2008: each side's half-width is the root of the two intervals' half-widths
facing that side; with Wilson's intervals this is Newcombe's interval of a difference), which
holds because compare resamples every group independently. The reference against itself
differs by exactly 0.

What is not like with like is never judged: when the groups ran different task mixes (see
`analyzer.compare.task_mix`), every criterion is INCONCLUSIVE with that reason. A group
without a value (no run contributes, as when the success of every imported run is unknown)
or without an interval (one run) is INCONCLUSIVE too, unless the criterion says
`when_missing = "skip"`.

The runs an inconclusive judgement needs are estimated from the interval's half-width on
the side facing the bound, assuming it narrows as 1/√runs while the estimate stays put:
runs × (half-width / distance from estimate to bound)². It is a rough guide, and none is
given when the estimate sits on the bound (more runs cannot settle that).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

from analyzer.compare.model import Comparison, Estimate, Metric
from analyzer.verify.model import (
    EXIT_FAIL,
    EXIT_INCONCLUSIVE,
    EXIT_PASS,
    Judgement,
    Status,
    Verification,
)
from analyzer.verify.policy import FINGERPRINT, Criterion, Policy, metric_spec

Fingerprints = Mapping[str, str | None]
"""Provider -> template fingerprint of its latest complete probing (None: none usable)."""


def verify(
    policy: Policy,
    comparison: Comparison,
    fingerprints: Fingerprints | None = None,
) -> Verification:
    """Judge every criterion of `policy` on every group of `comparison`."""
    judgements = [
        _judge(criterion, comparison, group.name, group.runs, fingerprints or {})
        for group in comparison.groups
        for criterion in policy.criteria
    ]
    status: Literal["pass", "fail", "inconclusive"]
    if any(j.status == "fail" for j in judgements):
        status, code = "fail", EXIT_FAIL
    elif any(j.status == "inconclusive" for j in judgements):
        status, code = "inconclusive", EXIT_INCONCLUSIVE
    else:
        status, code = "pass", EXIT_PASS
    return Verification(
        policy=policy.name,
        policy_file=policy.source,
        description=policy.description,
        reference=comparison.reference,
        status=status,
        exit_code=code,
        judgements=judgements,
        comparison=comparison,
    )


def _judge(
    criterion: Criterion,
    comparison: Comparison,
    group: str,
    group_runs: int,
    fingerprints: Fingerprints,
) -> Judgement:
    if criterion.metric == FINGERPRINT:
        return _judge_fingerprint(criterion, comparison, group, group_runs, fingerprints)
    spec = metric_spec(criterion.metric)
    assert spec is not None  # the policy was validated against the same definitions
    metric = _metric(comparison, criterion.metric)
    estimate = metric.values.get(group) if metric else None
    relative = criterion.relative_to is not None
    base = Judgement(
        group=group,
        criterion=criterion.title,
        metric=criterion.metric,
        label=spec.label,
        unit=spec.unit,
        rule=criterion.bound_text(),
        judged="difference" if relative else "value",
        bound=_bound(criterion),
        value=estimate.value if estimate else None,
        estimate=None,
        lo=None,
        hi=None,
        runs=estimate.runs if estimate else 0,
        status="inconclusive",
        reason="",
    )
    if not comparison.like_with_like and len(comparison.groups) > 1:
        return _not_judged(
            base,
            "not judged: the groups ran different tasks or task mixes, so they are not like "
            "with like (filter with --task or --provider, or record the same suite)",
        )
    if criterion.metric == "tool_call_f1" and group == comparison.reference:
        return base.model_copy(
            update={
                "status": "skipped",
                "reason": "the reference itself: tool_call_f1 is measured against it",
            }
        )
    if estimate is None or estimate.value is None:
        why = "no value: no run of it contributes to this metric"
        if criterion.metric == "success_rate":
            why = "no value: the success of every run is unknown (nothing judged the answers)"
        return _missing(base, criterion, why)
    if not relative:
        return _decide(
            base.model_copy(update={"estimate": estimate.value}),
            estimate.value,
            estimate.lo,
            estimate.hi,
            estimate.runs,
            criterion,
        )
    reference = comparison.reference
    if reference is None:  # the command refuses relative criteria without a reference
        return _not_judged(base, "not judged: no reference group")
    ref = metric.values.get(reference) if metric else None
    if ref is None or ref.value is None:
        return _not_judged(base, f"not judged: the reference {reference} has no value")
    base = base.model_copy(update={"reference_value": ref.value})
    if group == reference:
        # The reference against itself: the difference is exactly 0, not an estimate.
        judged = base.model_copy(update={"estimate": 0.0, "lo": 0.0, "hi": 0.0})
        return _decide(judged, 0.0, 0.0, 0.0, estimate.runs, criterion, itself=True)
    lo, hi = _mover(estimate, ref)
    return _decide(
        base.model_copy(update={"estimate": estimate.value - ref.value}),
        estimate.value - ref.value,
        lo,
        hi,
        min(estimate.runs, ref.runs),
        criterion,
    )


def _metric(comparison: Comparison, key: str) -> Metric | None:
    try:
        return comparison.metric(key)
    except KeyError:
        return None


def _bound(criterion: Criterion) -> float | None:
    if criterion.relative_to is None:
        return criterion.threshold
    return (
        -criterion.allowed_drop if criterion.comparator in (">=", ">") else criterion.allowed_drop
    )


def _mover(group: Estimate, ref: Estimate) -> tuple[float | None, float | None]:
    """MOVER interval of group − reference from the two groups' own intervals."""
    if None in (group.value, group.lo, group.hi, ref.value, ref.lo, ref.hi):
        return None, None
    g, gl, gh = group.value, group.lo, group.hi
    r, rl, rh = ref.value, ref.lo, ref.hi
    assert g is not None and gl is not None and gh is not None
    assert r is not None and rl is not None and rh is not None
    d = g - r
    return d - math.hypot(g - gl, rh - r), d + math.hypot(gh - g, r - rl)


def _decide(
    base: Judgement,
    point: float,
    lo: float | None,
    hi: float | None,
    runs: int,
    criterion: Criterion,
    *,
    itself: bool = False,
) -> Judgement:
    bound = base.bound
    assert bound is not None
    if lo is None or hi is None:
        return _not_judged(
            base, f"not judged: {runs} run(s) behind it, too few for an interval", runs_needed=2
        )
    status = _status(criterion.comparator, lo, hi, bound)
    what = "the difference" if base.judged == "difference" else "the value"
    shown_bound = (
        f"{criterion.comparator} {_fmt(bound, base.unit, signed=base.judged == 'difference')}"
    )
    needed = None
    if itself:
        reason = "the reference itself: the difference is exactly 0"
    elif status == "pass":
        reason = f"the whole 95% interval of {what} clears {shown_bound}"
    elif status == "fail":
        reason = f"the whole 95% interval of {what} misses {shown_bound}"
    else:
        needed = runs_needed(point, lo, hi, bound, runs)
        reason = f"the 95% interval of {what} straddles {shown_bound}"
        reason += (
            f"; about {needed} runs per group (now {runs}) would settle it, if the estimate "
            "held and the interval narrowed as 1/√runs"
            if needed is not None
            else "; the estimate sits on the bound, so more runs cannot settle it"
        )
    return base.model_copy(
        update={"lo": lo, "hi": hi, "status": status, "runs_needed": needed, "reason": reason}
    )


def _status(comparator: str, lo: float, hi: float, bound: float) -> Status:
    if comparator == ">=":
        return "pass" if lo >= bound else "fail" if hi < bound else "inconclusive"
    if comparator == ">":
        return "pass" if lo > bound else "fail" if hi <= bound else "inconclusive"
    if comparator == "<=":
        return "pass" if hi <= bound else "fail" if lo > bound else "inconclusive"
    return "pass" if hi < bound else "fail" if lo >= bound else "inconclusive"


def runs_needed(point: float, lo: float, hi: float, bound: float, runs: int) -> int | None:
    """About how many runs would move the interval's side facing `bound` clear of it, if the
    estimate stayed at `point` and the half-width shrank as 1/√runs; None when `point` is
    on the bound or the interval has no width on that side."""
    if point > bound:
        half, margin = point - lo, point - bound
    elif point < bound:
        half, margin = hi - point, bound - point
    else:
        return None
    if half <= 0 or runs <= 0:
        return None
    # Rounded off first, so a factor that is 4 in decimals is not 4.0000000001 in binary.
    return max(runs + 1, math.ceil(round(runs * (half / margin) ** 2, 6)))


def _not_judged(base: Judgement, reason: str, runs_needed: int | None = None) -> Judgement:
    return base.model_copy(
        update={"status": "inconclusive", "reason": reason, "runs_needed": runs_needed}
    )


def _missing(base: Judgement, criterion: Criterion, why: str) -> Judgement:
    if criterion.when_missing == "skip":
        return base.model_copy(
            update={"status": "skipped", "reason": f"{why} (the criterion applies where it exists)"}
        )
    return _not_judged(base, why)


def _judge_fingerprint(
    criterion: Criterion,
    comparison: Comparison,
    group: str,
    group_runs: int,
    fingerprints: Fingerprints,
) -> Judgement:
    reference = comparison.reference
    base = Judgement(
        group=group,
        criterion=criterion.title,
        metric=FINGERPRINT,
        label="template fingerprint (traces probe)",
        unit=None,
        rule=criterion.bound_text(),
        judged="fingerprint",
        bound=None,
        value=None,
        estimate=None,
        lo=None,
        hi=None,
        runs=group_runs,
        status="inconclusive",
        reason="",
    )
    if comparison.by.value != "provider":
        return _not_judged(base, "not judged: fingerprints are per provider (use --by provider)")
    if reference is None:
        return _not_judged(base, "not judged: no reference group")
    mine, theirs = fingerprints.get(group), fingerprints.get(reference)
    for name, print_ in ((group, mine), (reference, theirs)):
        if print_ is None:
            return _not_judged(
                base,
                f"not judged: no complete probing of {name} (`traces probe --provider {name}`, "
                "or verify --suite, which probes)",
            )
    assert mine is not None and theirs is not None
    if mine == theirs:
        return base.model_copy(
            update={"status": "pass", "reason": f"fingerprint {mine} equals the reference's"}
        )
    return base.model_copy(
        update={
            "status": "fail",
            "reason": f"fingerprint {mine} differs from the reference's {theirs} "
            "(`traces probe` shows which component)",
        }
    )


def _fmt(value: float, unit: str | None, *, signed: bool = False) -> str:
    if unit == "rate":
        text = f"{abs(value) * 100:.1f}" + (" pts" if signed else "%")
    else:
        text = f"{abs(value):.3g}"
    if value < 0:
        return "−" + text
    return ("+" if signed else "") + text
