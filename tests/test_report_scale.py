"""The report at scale, in a real Chromium: 300-step runs keep the steps axis legible, and a
table of many groups scrolls sideways under a metric column that stays in view."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from browser import browser as browser  # the session fixture: pytest finds it by this name
from browser import open_file
from test_report_units import _comparison

from analyzer.compare.model import HistogramBucket
from analyzer.report.build import Report
from analyzer.report.page import render_page
from analyzer.report.svg import bucket_ticks, histogram_panels

GROUPS = [f"provider-{i}-with-a-long-name" for i in range(8)]


def _wide_report() -> Report:
    """Eight groups whose completed runs took 30 to 300 steps, in 10 buckets of 28."""
    base = _comparison()
    groups = [base.groups[0].model_copy(update={"name": name}) for name in GROUPS]
    metrics = [
        metric.model_copy(
            update={"values": {name: next(iter(metric.values.values())) for name in GROUPS}}
        )
        for metric in base.metrics
    ]
    buckets = [
        HistogramBucket(
            lo=lo, hi=min(lo + 27, 300), runs={name: (lo + i) % 7 for i, name in enumerate(GROUPS)}
        )
        for lo in range(20, 301, 28)
    ]
    comparison = base.model_copy(
        update={"groups": groups, "metrics": metrics, "steps_histogram": buckets, "significant": []}
    )
    return Report(comparison, [], Path("wide.duckdb"), 0)


def test_wide_bucket_labels_become_edges_that_do_not_overlap() -> None:
    labels = [f"{lo}–{lo + 27}" for lo in range(20, 301, 28)]
    bounds = [(lo, lo + 27) for lo in range(20, 301, 28)]
    ticks = bucket_ticks(labels, bounds)
    texts = [text for _, text in ticks]
    assert texts[0] == "20" and texts[-1] == str(bounds[-1][1])
    assert all("–" not in text for text in texts)
    xs = [x for x, _ in ticks]
    assert xs == sorted(xs) and min(b - a for a, b in itertools.pairwise(xs)) >= 3 * 6.5
    # Short labels that fit stay under their bars.
    assert [t for _, t in bucket_ticks(["1", "2"], [(1, 1), (2, 2)])] == ["1", "2"]
    # A last bucket of one value (`300`) is named once, by its left edge.
    last_alone = [*bounds[:-1], (300, 300)]
    assert [t for _, t in bucket_ticks([*labels[:-1], "300"], last_alone)][-2:] == ["272", "300"]
    svg = histogram_panels(
        "h", "t", "d", labels, [("a", [1] * len(labels))], axis="s", bounds=bounds
    )
    assert "20–47 steps" in svg  # the tooltip keeps the bucket's range


def _boxes(page: Any, selector: str) -> list[dict[str, float]]:
    return page.eval_on_selector_all(
        selector,
        "els => els.map(e => { const r = e.getBoundingClientRect();"
        " return {left: r.left, right: r.right, top: r.top, text: e.textContent}; })",
    )


def test_axis_labels_do_not_overlap_and_the_metric_column_stays(
    tmp_path: Path, browser: Any
) -> None:
    html = tmp_path / "wide.html"
    html.write_text(render_page(_wide_report()), encoding="utf-8")
    loaded = open_file(browser, html)
    page = loaded.page
    page.set_viewport_size({"width": 700, "height": 900})
    assert loaded.console_errors == [] and loaded.requests == []
    ticks = _boxes(page, "#chart-steps text.tick")
    assert len(ticks) >= 4
    for before, after in itertools.pairwise(ticks):
        assert before["right"] <= after["left"], (before, after)
    scroller = page.query_selector("#comparison .scroll")
    assert scroller is not None
    first = _boxes(page, "#comparison-table tbody th[scope=row]")[0]
    width = page.evaluate("() => document.querySelector('#comparison .scroll').scrollWidth")
    client = page.evaluate("() => document.querySelector('#comparison .scroll').clientWidth")
    assert width > client  # eight long group names do not fit: the table scrolls
    page.evaluate("() => { document.querySelector('#comparison .scroll').scrollLeft = 400; }")
    moved = _boxes(page, "#comparison-table tbody th[scope=row]")[0]
    cell = _boxes(page, "#comparison-table tbody td")[0]
    assert moved["left"] == first["left"]  # the metric column stayed
    assert cell["left"] < first["left"] + 400 - 200  # while the values scrolled under it
