"""Numbers of a comparison as people read them: rates in percent, latencies in ms, dollars."""

from __future__ import annotations

from analyzer.compare.model import Comparison, Estimate, Unit


def format_value(value: float | None, unit: Unit) -> str:
    """One value in its unit (`—` when there is none)."""
    if value is None:
        return "—"
    if unit == "rate":
        return f"{value * 100:.1f}%"
    if unit == "usd":
        return f"${value:.4f}"
    if unit in ("ms", "tokens", "runs"):
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def _bound(value: float, unit: Unit) -> str:
    if unit == "rate":
        return f"{value * 100:.1f}"
    return format_value(value, unit)


def format_estimate(estimate: Estimate | None, unit: Unit) -> str:
    """`value [lo, hi]`, or just the value when there is no interval."""
    if estimate is None or estimate.value is None:
        return "—"
    text = format_value(estimate.value, unit)
    if estimate.lo is not None and estimate.hi is not None:
        text += f" [{_bound(estimate.lo, unit)}, {_bound(estimate.hi, unit)}]"
    return text


_SUFFIX = {"rate": " pts", "ms": " ms", "per_100_steps": " per 100 steps", "steps": " steps"}


def format_difference(value: float, unit: Unit, *, suffix: bool = True) -> str:
    """A signed difference: percentage points for rates, the unit otherwise."""
    sign = "+" if value >= 0 else "−"
    size = abs(value)
    number = f"{size * 100:.1f}" if unit == "rate" else format_value(size, unit)
    return f"{sign}{number}{_SUFFIX.get(unit, '') if suffix else ''}"


def significance_note(comparison: Comparison) -> str:
    """How the differences were judged, in one line: the correction and the level."""
    text = comparison.significance or (
        f"Holm-corrected across {comparison.comparisons} tests, "
        f"family-wise α={comparison.family_alpha:g}"
    )
    return (
        f"{text}; each difference's 95% bootstrap interval excludes 0 and its p-value passes "
        "Holm's step-down threshold"
    )


def paired_lines(comparison: Comparison) -> list[str]:
    """The paired comparisons, one line per metric: which pairs, on how many requests."""
    by_metric: dict[str, list[str]] = {}
    for test in comparison.paired_tests:
        by_metric.setdefault(test.metric, []).append(
            f"{test.a} vs {test.b} ({test.requests} requests)"
        )
    labels = {m.key: m.label for m in comparison.metrics}
    return [f"{labels.get(k, k)}: {', '.join(pairs)}" for k, pairs in by_metric.items()]
