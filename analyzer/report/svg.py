"""Inline SVG charts drawn in Python: horizontal bars or dots with interval whiskers, and
histograms as small multiples.

They take plain numbers and labels (not a comparison), so they can be tested on their own.
Each chart is an `<svg role="img">` with a `<title>` and `<desc>`; every bar or point has
class `mark` and a `<title>` stating its label and value, and its value is also written
beside it, so nothing is told by colour alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from analyzer.report.markup import Markup, element

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#8C6D1F", "#555555")
"""Okabe–Ito colours (distinguishable with the common colour-vision deficiencies), then grey."""

WIDTH = 760
_LABELS = 230
"""Right edge of the label column."""
_PLOT = (_LABELS + 10, 590)
"""Left and right edge of the plotting area."""
_VALUES = 600
"""Left edge of the column holding each mark's value as text."""
_ROW = 18
_HEADER = 20
_AXIS = 34


def group_color(index: int) -> str:
    """The colour of the group in position `index` (the same in every chart and table)."""
    return PALETTE[index % len(PALETTE)]


def group_class(index: int) -> str:
    """The style class carrying the same colour for HTML (`--c` in the style sheet)."""
    return f"g{index % len(PALETTE)}"


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 × 10^k at or above `value` (1 for nothing positive)."""
    if not math.isfinite(value) or value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if value <= step * power * (1 + 1e-9):
            return step * power
    return 10.0 * power


def _tick_text(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e5 else f"{value:.0e}"


@dataclass(frozen=True)
class Mark:
    """One bar or point: a group's value of one category, with its interval."""

    category: str
    """Rows are grouped under their category ("" for a chart of one category)."""
    series: int
    """Position of the group: picks its colour."""
    label: str
    """The group's name, written beside the mark."""
    value: float
    lo: float | None = None
    hi: float | None = None
    text: str = ""
    """The value as people read it (with its interval), written beside the mark."""


def _scale(maximum: float) -> tuple[float, float]:
    """(top of the axis, pixels per unit)."""
    top = nice_ceiling(maximum)
    return top, (_PLOT[1] - _PLOT[0]) / top


def _axis(y: float, top: float, per: float, caption: str) -> list[Markup]:
    parts = [
        element("line", x1=float(_PLOT[0]), x2=float(_PLOT[1]), y1=y, y2=y, class_="axis-line")
    ]
    for i in range(5):
        value = top * i / 4
        x = _PLOT[0] + value * per
        parts.append(element("line", x1=x, x2=x, y1=y, y2=y + 4.0, class_="axis-line"))
        parts.append(
            element("text", _tick_text(value), x=x, y=y + 15.0, text_anchor="middle", class_="tick")
        )
    parts.append(
        element(
            "text",
            caption,
            x=float((_PLOT[0] + _PLOT[1]) / 2),
            y=y + 29.0,
            text_anchor="middle",
            class_="axis-caption",
        )
    )
    return parts


def _svg(ident: str, title: str, description: str, height: float, body: list[Markup]) -> Markup:
    return element(
        "svg",
        element("title", title, id=f"{ident}-title"),
        element("desc", description, id=f"{ident}-desc"),
        body,
        xmlns="http://www.w3.org/2000/svg",
        viewBox=f"0 0 {WIDTH} {math.ceil(height)}",
        width=WIDTH,
        height=math.ceil(height),
        role="img",
        aria_labelledby=f"{ident}-title {ident}-desc",
        class_="chart",
        id=ident,
    )


def bar_chart(
    ident: str,
    title: str,
    description: str,
    marks: Sequence[Mark],
    *,
    axis: str,
    style: Literal["bar", "dot"] = "bar",
) -> Markup:
    """Horizontal bars (or dots) with interval whiskers, one row per mark, rows grouped by
    category in the order categories first appear. `ident` must be unique in the page."""
    top, per = _scale(max((max(m.value, m.hi or 0.0) for m in marks), default=0.0))
    categories = list(dict.fromkeys(m.category for m in marks))
    body: list[Markup] = []
    y = 6.0
    for category in categories:
        if category:
            body.append(element("text", category, x=4.0, y=y + 13.0, class_="category"))
            y += _HEADER
        for mark in (m for m in marks if m.category == category):
            body.append(_row(mark, y, per, style))
            y += _ROW
    body.extend(_axis(y + 4.0, top, per, axis))
    return _svg(ident, title, description, y + 4.0 + _AXIS, body)


def _row(mark: Mark, y: float, per: float, style: Literal["bar", "dot"]) -> Markup:
    middle = y + _ROW / 2
    x0 = float(_PLOT[0])
    value = max(mark.value, 0.0)
    color = group_color(mark.series)
    what = f"{mark.category}, {mark.label}" if mark.category else mark.label
    tip = element("title", f"{what}: {mark.text or _tick_text(mark.value)}")
    if style == "bar":
        shape = element(
            "rect",
            tip,
            x=x0,
            y=y + 3.0,
            width=max(value * per, 1.0),
            height=float(_ROW - 6),
            fill=color,
            class_="mark",
        )
    else:
        shape = element(
            "circle", tip, cx=x0 + value * per, cy=middle, r=4.5, fill=color, class_="mark"
        )
    parts = [
        element(
            "text", mark.label, x=float(_LABELS), y=middle + 4.0, text_anchor="end", class_="label"
        ),
        shape,
    ]
    if mark.lo is not None and mark.hi is not None:
        lo, hi = x0 + max(mark.lo, 0.0) * per, x0 + max(mark.hi, 0.0) * per
        parts += [
            element("line", x1=lo, x2=hi, y1=middle, y2=middle, class_="whisker"),
            element("line", x1=lo, x2=lo, y1=middle - 4, y2=middle + 4, class_="whisker"),
            element("line", x1=hi, x2=hi, y1=middle - 4, y2=middle + 4, class_="whisker"),
        ]
    parts.append(
        element(
            "text",
            mark.text or _tick_text(mark.value),
            x=float(_VALUES),
            y=middle + 4.0,
            class_="value",
        )
    )
    return element("g", parts)


_PANEL = 64
_BAR_SPACE = 44


_CHAR = 6.5
"""Width of one tick character at the charts' 11 px font, a little generous (digits and the
en dash of a system sans-serif are about 6 px)."""


def bucket_ticks(
    buckets: Sequence[str], bounds: Sequence[tuple[int, int]] | None
) -> list[tuple[float, str]]:
    """Where each axis label of a histogram goes: under each bar when every label fits its
    bar; else, given the buckets' bounds, the bars' left edges (the first value) and the last
    bar's right edge (the last value), every k-th so that none overlaps, the last always."""
    width = (_PLOT[1] - _PLOT[0]) / max(len(buckets), 1)
    widest = max((len(label) for label in buckets), default=0) * _CHAR
    if bounds is None or widest <= width - 4:
        return [(_PLOT[0] + (i + 0.5) * width, label) for i, label in enumerate(buckets)]
    edges = [(_PLOT[0] + i * width, str(lo)) for i, (lo, _) in enumerate(bounds)]
    if bounds[-1][1] != bounds[-1][0]:  # a last bar of one value is named by its left edge
        edges.append((float(_PLOT[1]), str(bounds[-1][1])))
    needed = max(len(label) for _, label in edges) * _CHAR + 6
    every = max(1, math.ceil(needed / width))
    shown = edges[::every]
    if shown[-1] != edges[-1]:
        # The last edge is the range's end: keep it, dropping a neighbour it would touch.
        if edges[-1][0] - shown[-1][0] < needed:
            shown.pop()
        shown.append(edges[-1])
    return shown


def histogram_panels(
    ident: str,
    title: str,
    description: str,
    buckets: Sequence[str],
    series: Sequence[tuple[str, Sequence[int]]],
    *,
    axis: str,
    bucket_unit: str = "steps",
    unit: str = "runs",
    bounds: Sequence[tuple[int, int]] | None = None,
) -> Markup:
    """One histogram per series, stacked, sharing the buckets (x) and the count scale (y).

    `buckets` are the labels under the bars; each series is (name, one count per bucket).
    Every bucket of every series gets a bar (an empty one a hairline), with its count
    written above it when not zero. With `bounds` (each bucket's first and last value) and
    labels too wide for their bars (`271–300` under 10 bars), the axis names the buckets'
    edges instead, as many as fit without overlapping; each bar's tooltip keeps its range.
    """
    for name, counts in series:
        if len(counts) != len(buckets):
            raise ValueError(f"{name}: {len(counts)} counts for {len(buckets)} buckets")
    highest = max((c for _, counts in series for c in counts), default=0)
    width = (_PLOT[1] - _PLOT[0]) / max(len(buckets), 1)
    body: list[Markup] = []
    y = 6.0
    for index, (name, counts) in enumerate(series):
        baseline = y + _PANEL - 8
        body.append(
            element(
                "text",
                name,
                x=float(_LABELS),
                y=baseline - _BAR_SPACE / 2 + 4,
                text_anchor="end",
                class_="label",
            )
        )
        body.append(
            element(
                "line",
                x1=float(_PLOT[0]),
                x2=float(_PLOT[1]),
                y1=baseline,
                y2=baseline,
                class_="axis-line",
            )
        )
        for position, (bucket, count) in enumerate(zip(buckets, counts, strict=True)):
            height = max(_BAR_SPACE * count / highest if highest else 0.0, 1.0)
            x = _PLOT[0] + position * width + 2
            tip = element("title", f"{name}: {bucket} {bucket_unit}, {count} {unit}")
            body.append(
                element(
                    "rect",
                    tip,
                    x=x,
                    y=baseline - height,
                    width=max(width - 4, 1.0),
                    height=height,
                    fill=group_color(index),
                    class_="mark",
                )
            )
            if count:
                body.append(
                    element(
                        "text",
                        count,
                        x=x + (width - 4) / 2,
                        y=baseline - height - 3,
                        text_anchor="middle",
                        class_="value",
                    )
                )
        y += _PANEL
    for x, label in bucket_ticks(buckets, bounds):
        body.append(element("text", label, x=x, y=y + 8.0, text_anchor="middle", class_="tick"))
    body.append(
        element(
            "text",
            axis,
            x=float((_PLOT[0] + _PLOT[1]) / 2),
            y=y + 24.0,
            text_anchor="middle",
            class_="axis-caption",
        )
    )
    return _svg(ident, title, description, y + _AXIS, body)
