"""The pieces of the HTML report on their own: escaping, SVG charts, table verdicts, step
cells and the atomic write."""

from __future__ import annotations

import os
import stat
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

import pytest

from analyzer.compare.model import Comparison, Difference, Estimate, Group, HistogramBucket, Metric
from analyzer.compare.selection import GroupBy, Selection
from analyzer.report.charts import all_charts
from analyzer.report.markup import Markup, concat, element, escape
from analyzer.report.runs import FindingMark, StepCell, excerpt
from analyzer.report.save import write_atomically
from analyzer.report.svg import Mark, bar_chart, histogram_panels, nice_ceiling
from analyzer.report.table import comparison_table, differences, verdicts
from analyzer.report.timeline import step_cell, step_outcome
from traces.errors import TracesError

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = "<script>alert('x')</script>\"&"


# -- escaping ---------------------------------------------------------------------------------


def test_escape_turns_every_markup_character_into_an_entity() -> None:
    assert escape(HOSTILE) == "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&quot;&amp;"
    assert escape(3) == "3"
    trusted = Markup("<b>ok</b>")
    assert escape(trusted) is trusted


def test_element_escapes_text_children_and_attribute_values() -> None:
    built = element("td", HOSTILE, title='" onmouseover="alert(1)', data_x="<y>")
    assert built == (
        '<td title="&quot; onmouseover=&quot;alert(1)" data-x="&lt;y&gt;">'
        "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&quot;&amp;</td>"
    )
    assert isinstance(built, Markup)


def test_element_nests_markup_flattens_lists_and_skips_none() -> None:
    inner = element("b", "<i>")
    built = element("p", inner, None, ["a", ("<", 2)], False, 1.25, class_="x", hidden=True)
    assert built == '<p class="x" hidden><b>&lt;i&gt;</b>a&lt;21.2</p>'
    assert element("p", class_=None, open=False) == "<p></p>"
    assert concat("<", inner) == "&lt;<b>&lt;i&gt;</b>"


def test_element_refuses_names_that_could_inject() -> None:
    with pytest.raises(ValueError, match="tag name"):
        element("p onclick=x")
    with pytest.raises(ValueError, match="attribute name"):
        element("p", **{'x="1" onclick': "y"})
    with pytest.raises(ValueError, match="cannot have children"):
        element("meta", "text")
    assert element("meta", charset="utf-8") == '<meta charset="utf-8">'


def test_excerpt_cuts_long_text_with_an_ellipsis() -> None:
    assert excerpt("abcdef", 4) == "abc…"
    assert excerpt("abc", 4) == "abc"
    assert excerpt(None) is None


# -- SVG charts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "ceiling"),
    [(0.0, 1.0), (-3.0, 1.0), (0.7, 1.0), (3.0, 5.0), (23.0, 25.0), (100.0, 100.0), (101.0, 200.0)],
)
def test_nice_ceiling_rounds_up_to_a_readable_axis_end(value: float, ceiling: float) -> None:
    assert nice_ceiling(value) == pytest.approx(ceiling)


def _parse(svg: str) -> ET.Element:
    # Charts are XML as well as HTML: parsing them checks every tag is closed and quoted.
    return ET.fromstring(svg)


def test_bar_chart_draws_one_titled_mark_per_value_with_whiskers() -> None:
    marks = [
        Mark("leaks", 0, "sim", 10.0, 5.0, 15.0, "10.0 [5.0, 15.0]"),
        Mark("leaks", 1, HOSTILE, 30.0, 20.0, 40.0, "30.0 [20.0, 40.0]"),
        Mark("loops", 0, "sim", 0.0, None, None, "0.00"),
    ]
    root = _parse(bar_chart("c1", "Title <x>", "desc", marks, axis="per 100 steps"))
    assert root.get("role") == "img" and root.get("aria-labelledby") == "c1-title c1-desc"
    assert root.findtext(f"{SVG}title") == "Title <x>"
    rects = root.findall(f".//{SVG}rect[@class='mark']")
    assert [r.findtext(f"{SVG}title") for r in rects] == [
        "leaks, sim: 10.0 [5.0, 15.0]",
        f"leaks, {HOSTILE}: 30.0 [20.0, 40.0]",
        "loops, sim: 0.00",
    ]
    # The bar of 30 on an axis that ends at 50 spans 60% of the plot (350 px).
    assert float(rects[1].get("width") or 0) == pytest.approx(210.0)
    assert float(rects[2].get("width") or 0) == pytest.approx(1.0)  # zero: a hairline
    assert len(root.findall(f".//{SVG}line[@class='whisker']")) == 2 * 3
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "leaks" in texts and "loops" in texts and HOSTILE in texts and "50" in texts


def test_dot_charts_draw_points() -> None:
    svg = bar_chart(
        "c2", "t", "d", [Mark("", 0, "a", 2.0), Mark("", 1, "b", 3.0)], axis="ms", style="dot"
    )
    root = _parse(svg)
    assert len(root.findall(f".//{SVG}circle[@class='mark']")) == 2
    assert root.findall(f".//{SVG}rect") == []


def test_histogram_panels_share_buckets_and_scale() -> None:
    svg = histogram_panels(
        "h", "Steps", "d", ["1", "2–3", "4"], [("a", [0, 4, 2]), ("b", [1, 0, 0])], axis="steps"
    )
    root = _parse(svg)
    rects = root.findall(f".//{SVG}rect[@class='mark']")
    assert len(rects) == 3 * 2
    heights = [float(r.get("height") or 0) for r in rects]
    assert heights[1] == max(heights) and heights[2] == pytest.approx(heights[1] / 2)
    assert heights[0] == heights[4] == 1.0  # empty buckets are hairlines
    assert rects[1].findtext(f"{SVG}title") == "a: 2–3 steps, 4 runs"
    counts = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "value"]
    assert counts == ["4", "2", "1"]
    with pytest.raises(ValueError, match="2 counts for 3 buckets"):
        histogram_panels("h", "t", "d", ["1", "2", "3"], [("a", [1, 2])], axis="steps")


# -- a comparison built by hand ---------------------------------------------------------------


def _comparison() -> Comparison:
    groups = [
        Group(name=n, runs=5, tasks={"t": 5}, providers=[n], models=["m"], upstreams=[])
        for n in ("a", "b<i>")
    ]

    def metric(key: str, label: str, unit: str, values: dict[str, float]) -> Metric:
        return Metric.model_validate(
            {
                "key": key,
                "label": label,
                "section": "findings" if key.startswith("finding") else "outcome",
                "unit": unit,
                "better": "higher" if key == "success_rate" else "lower",
                "description": f"how {label} is computed",
                "values": {
                    g: Estimate(
                        value=v,
                        lo=v * 0.5,
                        hi=min(v * 1.5, 1.0) if unit == "rate" else v * 1.5,
                        runs=5,
                    )
                    for g, v in values.items()
                },
            }
        )

    return Comparison(
        generated_at=datetime(2025, 11, 24, 9, 30),
        by=GroupBy.provider,
        reference=None,
        selection=Selection(),
        confidence=0.95,
        resamples=100,
        seed=0,
        groups=groups,
        metrics=[
            metric("success_rate", "task success", "rate", {"a": 1.0, "b<i>": 0.2}),
            metric(
                "finding.kind.leak.per_100_steps",
                "leak per 100 steps",
                "per_100_steps",
                {"a": 0.0, "b<i>": 12.0},
            ),
            metric(
                "finding.kind.loop.per_100_steps",
                "loop per 100 steps",
                "per_100_steps",
                {"b<i>": 3.0},
            ),
        ],
        steps_histogram=[
            HistogramBucket(lo=1, hi=2, runs={"a": 0, "b<i>": 3}),
            HistogramBucket(lo=3, hi=3, runs={"a": 5, "b<i>": 2}),
        ],
        comparisons=3,
        significant=[
            Difference(
                metric="success_rate",
                label="task success",
                unit="rate",
                higher="a",
                lower="b<i>",
                higher_value=1.0,
                lower_value=0.2,
                difference=0.8,
                lo=0.5,
                hi=1.0,
                better="a",
                text="task success: a 100.0% vs b<i> 20.0%; a does better.",
            )
        ],
        notes=[],
    )


def test_only_significant_differences_mark_cells_better_or_worse() -> None:
    comparison = _comparison()
    judged = verdicts(comparison)
    assert judged[("success_rate", "a")].style == "better"
    assert judged[("success_rate", "b<i>")].style == "worse"
    assert judged[("success_rate", "b<i>")].sentence() == "significantly worse than a"
    table = comparison_table(comparison)
    assert (
        '<td class="better" title="significantly better than b&lt;i&gt;" data-group="a">' in table
    )
    assert "▼" in table and table.count("▲") == 1
    assert "b&lt;i&gt;" in table and "b<i>" not in table
    # A group without a value shows a dash, not an empty cell.
    assert "no value for this group" in table
    listed = differences(comparison)
    assert "a 100.0% vs b&lt;i&gt; 20.0%" in listed
    # Grouped by metric: a heading with how many, the sentences under it.
    assert "1 difference in 1 metric:" in listed
    assert '<div data-metric="success_rate"><dt>task success (1)</dt>' in listed
    assert "Holm-corrected across 3 tests, family-wise α=0.05" in listed


def test_charts_follow_the_comparison() -> None:
    charts = {c.ident: c for c in all_charts(_comparison())}
    assert set(charts) == {"chart-outcomes", "chart-steps", "chart-findings-kind"}
    kinds = _parse(charts["chart-findings-kind"].svg)
    assert len(kinds.findall(f".//{SVG}rect[@class='mark']")) == 3
    assert [t.text for t in kinds.iter(f"{SVG}text") if t.get("class") == "category"] == [
        "leak",
        "loop",
    ]
    steps = _parse(charts["chart-steps"].svg)
    assert len(steps.findall(f".//{SVG}rect[@class='mark']")) == 2 * 2
    outcome = _parse(charts["chart-outcomes"].svg)
    widths = [float(r.get("width") or 0) for r in outcome.iter(f"{SVG}rect")]
    assert widths == [pytest.approx(350.0), pytest.approx(70.0)]  # rates drawn in percent


# -- timelines --------------------------------------------------------------------------------


def _step(**changes: object) -> StepCell:
    fields: dict[str, object] = {
        "index": 3,
        "finish_reason": "tool_calls",
        "latency_ms": 1234.0,
        "error_kind": None,
        "error_message": None,
        "tools": ("open_box",),
        "content": None,
        "findings": (),
    }
    fields.update(changes)
    return StepCell(**fields)  # type: ignore[arg-type]


def test_a_failed_call_wins_over_its_finish_reason() -> None:
    assert step_outcome(_step()) == "tool_calls"
    assert step_outcome(_step(error_kind="rate_limit", finish_reason="none")) == "error"
    assert step_outcome(_step(finish_reason="weird")) == "other"


def test_a_step_cell_marks_its_findings_and_escapes_its_text() -> None:
    finding = FindingMark(3, "leaked_special_tokens", "error", "provider", '{"excerpt": "<|x|>"}')
    cell = step_cell(_step(content=HOSTILE, findings=(finding,)))
    assert cell.startswith('<li class="st-tool_calls flagged sev-error"')
    assert 'data-step="3"' in cell and 'data-findings="leaked_special_tokens"' in cell
    assert "&lt;script&gt;" in cell and "<script>" not in cell
    assert (
        "leaked_special_tokens (error, provider): {&quot;excerpt&quot;: &quot;&lt;|x|&gt;" in cell
    )
    assert "1,234 ms" in cell and "calls: open_box" in cell
    plain = step_cell(_step(finish_reason="stop", tools=()))
    assert ">A</li>" in plain and "flagged" not in plain and "data-findings" not in plain


# -- writing ----------------------------------------------------------------------------------


def test_write_atomically_replaces_the_file_readable_and_leaves_nothing_behind(
    tmp_path: Path,
) -> None:
    out = tmp_path / "r.html"
    out.write_text("old", encoding="utf-8")
    previous = os.umask(0o022)
    try:
        write_atomically(out, "new ✓")
    finally:
        os.umask(previous)
    assert out.read_text(encoding="utf-8") == "new ✓"
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]
    with pytest.raises(TracesError, match="does not exist"):
        write_atomically(tmp_path / "no" / "r.html", "x")
