"""The comparison's charts: outcomes, steps to finish, finding rates by kind and by layer,
latency. Every number comes from the `Comparison`; nothing is recomputed here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from analyzer.compare.formatting import format_estimate
from analyzer.compare.model import Comparison, Metric
from analyzer.report.markup import Markup, element
from analyzer.report.svg import Mark, bar_chart, histogram_panels

OUTCOME_METRICS = ("success_rate", "completion_rate", "provider_error_rate")
LATENCY_METRICS = ("ttft_ms", "step_latency_ms", "output_tokens_per_s")
_AXES = {
    "ms": "milliseconds",
    "tokens_per_s": "output tokens per second",
}


@dataclass(frozen=True)
class Chart:
    """One figure of the report."""

    ident: str
    """Element id of the chart's SVG (unique in the page)."""
    title: str
    caption: str
    svg: Markup

    def figure(self) -> Markup:
        """The chart with its caption as a `<figure>`."""
        return element(
            "figure",
            element("figcaption", self.title),
            element("p", self.caption),
            self.svg,
            class_="chart-figure",
            data_chart=self.ident,
        )


def _scaled(metric: Metric) -> float:
    # Rates read better as percentages on an axis.
    return 100.0 if metric.unit == "rate" else 1.0


def _marks(comparison: Comparison, metric: Metric, category: str) -> list[Mark]:
    scale = _scaled(metric)
    marks = []
    for index, group in enumerate(comparison.groups):
        estimate = metric.values.get(group.name)
        if estimate is None or estimate.value is None:
            continue
        marks.append(
            Mark(
                category=category,
                series=index,
                label=group.name,
                value=estimate.value * scale,
                lo=None if estimate.lo is None else estimate.lo * scale,
                hi=None if estimate.hi is None else estimate.hi * scale,
                text=format_estimate(estimate, metric.unit),
            )
        )
    return marks


def _metrics(comparison: Comparison, keys: Sequence[str]) -> list[Metric]:
    return [m for m in comparison.metrics if m.key in keys and m.values]


def outcome_chart(comparison: Comparison) -> Chart | None:
    """Task success, final answers and provider errors per group, as bars."""
    metrics = _metrics(comparison, OUTCOME_METRICS)
    marks = [mark for m in metrics for mark in _marks(comparison, m, m.label)]
    if not marks:
        return None
    title = "Outcomes per group"
    return Chart(
        "chart-outcomes",
        title,
        "Share of runs; whiskers are 95% intervals over runs.",
        bar_chart("chart-outcomes", title, _describe(marks), marks, axis="% of runs"),
    )


def steps_chart(comparison: Comparison) -> Chart | None:
    """How many steps completed runs took, one histogram per group."""
    buckets = comparison.steps_histogram
    if not buckets:
        return None
    labels = [str(b.lo) if b.lo == b.hi else f"{b.lo}–{b.hi}" for b in buckets]
    series = [(g.name, [b.runs.get(g.name, 0) for b in buckets]) for g in comparison.groups]
    title = "Steps to finish"
    description = "; ".join(
        f"{name}: "
        + ", ".join(f"{n} runs at {label}" for label, n in zip(labels, counts, strict=True) if n)
        for name, counts in series
    )
    return Chart(
        "chart-steps",
        title,
        "Completed runs per number of steps (one panel per group, same scales).",
        histogram_panels(
            "chart-steps",
            title,
            description or "No completed runs.",
            labels,
            series,
            axis="steps to finish",
            bounds=[(b.lo, b.hi) for b in buckets],
        ),
    )


def findings_chart(comparison: Comparison, dimension: Literal["kind", "layer"]) -> Chart | None:
    """Findings per 100 steps for every finding kind (or layer) the runs had, per group."""
    prefix, suffix = f"finding.{dimension}.", ".per_100_steps"
    metrics = [m for m in comparison.metrics if m.key.startswith(prefix) and m.key.endswith(suffix)]
    marks = [
        mark for m in metrics for mark in _marks(comparison, m, m.key[len(prefix) : -len(suffix)])
    ]
    if not marks:
        return None
    ident = f"chart-findings-{dimension}"
    title = f"Findings per 100 steps, by {dimension}"
    return Chart(
        ident,
        title,
        "Findings × 100 / recorded steps; whiskers are 95% intervals over runs.",
        bar_chart(ident, title, _describe(marks), marks, axis="findings per 100 steps"),
    )


def latency_charts(comparison: Comparison) -> list[Chart]:
    """Time to first token, step latency and output speed per group, as points with
    whiskers (one chart each: their units differ)."""
    charts = []
    for metric in _metrics(comparison, LATENCY_METRICS):
        marks = _marks(comparison, metric, "")
        ident = f"chart-{metric.key.replace('_', '-')}"
        title = metric.label[:1].upper() + metric.label[1:]
        charts.append(
            Chart(
                ident,
                title,
                metric.description,
                bar_chart(
                    ident,
                    title,
                    _describe(marks),
                    marks,
                    axis=_AXES.get(metric.unit, metric.unit),
                    style="dot",
                ),
            )
        )
    return charts


def all_charts(comparison: Comparison) -> list[Chart]:
    """Every chart the comparison has data for, in reading order."""
    charts = [
        outcome_chart(comparison),
        steps_chart(comparison),
        findings_chart(comparison, "kind"),
        findings_chart(comparison, "layer"),
    ]
    return [c for c in charts if c is not None] + latency_charts(comparison)


def _describe(marks: Sequence[Mark]) -> str:
    """The chart's numbers as text, for readers that cannot see it."""
    return "; ".join(f"{m.category + ', ' if m.category else ''}{m.label}: {m.text}" for m in marks)
