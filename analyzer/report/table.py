"""The comparison as an HTML table (groups as columns, metrics as rows by section), the
significant differences in words, and the notes.

A cell is highlighted only where a significant difference says so: a green cell with ▲ did
significantly better than another group on that metric, a red one with ▼ worse; the
triangles and a screen-reader sentence carry the same verdict without colour.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from analyzer.compare.formatting import (
    format_estimate,
    format_value,
    paired_lines,
    significance_note,
)
from analyzer.compare.model import Comparison, Difference, Estimate, Metric
from analyzer.report.markup import Markup, concat, element
from analyzer.report.svg import group_class

SECTION_TITLES = {
    "outcome": "outcome",
    "tool_calls": "tool calls",
    "reasoning": "reasoning",
    "latency": "latency",
    "tokens": "tokens and cost",
    "findings": "findings",
}


@dataclass
class Verdict:
    """How one group fared on one metric in the significant differences."""

    beats: list[str] = field(default_factory=list)
    loses_to: list[str] = field(default_factory=list)

    @property
    def style(self) -> str | None:
        """`better`, `worse`, or None when it has no verdict or a mixed one."""
        if self.beats and not self.loses_to:
            return "better"
        if self.loses_to and not self.beats:
            return "worse"
        return None

    def sentence(self) -> str:
        """The verdict in words."""
        parts = []
        if self.beats:
            parts.append(f"significantly better than {', '.join(self.beats)}")
        if self.loses_to:
            parts.append(f"significantly worse than {', '.join(self.loses_to)}")
        return "; ".join(parts)


def verdicts(comparison: Comparison) -> dict[tuple[str, str], Verdict]:
    """(metric key, group) -> the groups it did significantly better or worse than."""
    out: dict[tuple[str, str], Verdict] = defaultdict(Verdict)
    for difference in comparison.significant:
        if difference.better is None:
            continue
        worse = difference.lower if difference.better == difference.higher else difference.higher
        out[(difference.metric, difference.better)].beats.append(worse)
        out[(difference.metric, worse)].loses_to.append(difference.better)
    return dict(out)


def group_header(name: str, index: int, *, reference: bool) -> Markup:
    """A group's name with its colour swatch (and `(reference)` when it is the reference)."""
    return concat(
        element("span", class_=f"swatch {group_class(index)}", aria_hidden="true"),
        name,
        element("span", " (reference)", class_="muted") if reference else None,
    )


def comparison_table(comparison: Comparison) -> Markup:
    """Every metric of the comparison, one column per group, with its 95% interval."""
    names = [g.name for g in comparison.groups]
    judged = verdicts(comparison)
    head = element(
        "thead",
        element(
            "tr",
            element("th", "metric", scope="col"),
            [
                element(
                    "th",
                    group_header(name, i, reference=name == comparison.reference),
                    scope="col",
                    data_group=name,
                )
                for i, name in enumerate(names)
            ],
        ),
    )
    about = [
        _plain_row("runs", [str(g.runs) for g in comparison.groups], "runs"),
        _plain_row("models", [", ".join(g.models) for g in comparison.groups], "models"),
        _plain_row(
            "tasks",
            [", ".join(f"{t} ×{n}" for t, n in g.tasks.items()) for g in comparison.groups],
            "tasks",
        ),
    ]
    if any(g.upstreams for g in comparison.groups):
        about.append(
            _plain_row(
                "upstream hosts", [", ".join(g.upstreams) for g in comparison.groups], "upstreams"
            )
        )
    bodies = [element("tbody", about)]
    sections: dict[str, list[Metric]] = {}
    for metric in comparison.metrics:
        sections.setdefault(metric.section, []).append(metric)
    for section, metrics in sections.items():
        title = element(
            "tr",
            element(
                "th",
                element("span", SECTION_TITLES.get(section, section)),
                colspan=len(names) + 1,
                scope="colgroup",
                class_="section",
            ),
        )
        rows = [_metric_row(metric, names, judged) for metric in metrics]
        bodies.append(element("tbody", title, rows, data_section=section))
    caption = element(
        "caption",
        f"{int(comparison.confidence * 100)}% bootstrap intervals over runs in brackets; "
        "hover a metric for its definition.",
        class_="muted",
    )
    return element(
        "div",
        element("table", caption, head, bodies, class_="comparison", id="comparison-table"),
        class_="scroll",
    )


def _plain_row(label: str, cells: list[str], key: str) -> Markup:
    return element(
        "tr",
        element("th", label, scope="row"),
        [element("td", cell) for cell in cells],
        data_metric=key,
    )


def _metric_row(metric: Metric, names: list[str], judged: dict[tuple[str, str], Verdict]) -> Markup:
    cells = []
    for name in names:
        estimate = metric.values.get(name)
        verdict = judged.get((metric.key, name))
        style = verdict.style if verdict else None
        cells.append(
            element(
                "td",
                _glyph(style),
                _estimate(estimate, metric),
                element("span", f" ({verdict.sentence()})", class_="sr-only") if verdict else None,
                class_=style,
                title=verdict.sentence() if verdict else None,
                data_group=name,
            )
        )
    return element(
        "tr",
        element("th", metric.label, scope="row", title=metric.description),
        cells,
        data_metric=metric.key,
    )


def _glyph(style: str | None) -> Markup | None:
    if style is None:
        return None
    return element("span", "▲" if style == "better" else "▼", class_="verdict", aria_hidden="true")


def _estimate(estimate: Estimate | None, metric: Metric) -> Markup:
    if estimate is None or estimate.value is None:
        return element("span", "—", class_="muted", title="no value for this group")
    value = format_value(estimate.value, metric.unit)
    # format_estimate writes "value [lo, hi]": the interval is what follows the value.
    interval = format_estimate(estimate, metric.unit)[len(value) :].strip()
    return concat(
        element("span", value, class_="value", title=f"over {estimate.runs} runs"),
        element("span", interval, class_="ci") if interval else None,
    )


def differences(comparison: Comparison) -> Markup:
    """The significant differences grouped by metric (a heading each, with how many), one
    sentence per pair of groups, after how many were tested and how."""
    intro = element("p", significance_note(comparison) + ".", class_="muted")
    paired = paired_lines(comparison)
    if paired:
        intro = concat(
            intro,
            element(
                "p",
                "Paired by request hash (the requests both groups answered were resampled, "
                "not the runs): " + "; ".join(paired) + ".",
                class_="muted",
                id="paired",
            ),
        )
    if not comparison.significant:
        return concat(intro, element("p", "None.", id="no-differences"))
    by_metric: dict[str, list[Difference]] = {}
    for difference in comparison.significant:
        by_metric.setdefault(difference.metric, []).append(difference)
    count = len(comparison.significant)
    summary = element(
        "p",
        f"{count} difference{'s' if count != 1 else ''} in {len(by_metric)} "
        f"metric{'s' if len(by_metric) != 1 else ''}:",
    )
    groups = [
        element(
            "div",
            element("dt", f"{found[0].label} ({len(found)})"),
            element(
                "dd",
                element(
                    "ul",
                    [
                        element("li", d.text, data_metric=d.metric, data_better=d.better)
                        for d in found
                    ],
                    class_="differences",
                ),
            ),
            data_metric=metric,
        )
        for metric, found in by_metric.items()
    ]
    return concat(intro, summary, element("dl", groups, class_="differences-by-metric"))


def notes(comparison: Comparison) -> Markup | None:
    """The comparison's caveats as a list (None when there are none)."""
    if not comparison.notes:
        return None
    return element("ul", [element("li", note) for note in comparison.notes], class_="notes")
