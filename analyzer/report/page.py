"""The report as one self-contained HTML5 document: inline style, inline SVG, no script.

A content security policy forbids scripts and every fetch outright, so even a piece of model
text that escaped escaping could not run or phone home; the page needs nothing but itself.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from analyzer.report.build import Report
from analyzer.report.charts import all_charts
from analyzer.report.markup import Markup, concat, element
from analyzer.report.style import style_sheet
from analyzer.report.svg import group_class
from analyzer.report.table import comparison_table, differences, notes
from analyzer.report.timeline import timelines_section
from analyzer.report.verdict import verdict_section

POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "base-uri 'none'; form-action 'none'"
)
"""No scripts, no requests: styles inline, the only image the empty data: favicon."""


def _version() -> str:
    try:
        return version("agent-traces")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "dev"


def _title(report: Report) -> str:
    names = [g.name for g in report.comparison.groups]
    shown = " vs ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return f"traces report: {shown}"


def _facts(report: Report) -> Markup:
    comparison = report.comparison
    runs = sum(g.runs for g in comparison.groups)
    rows = [
        (
            "compared",
            f"{runs} runs in {len(comparison.groups)} groups, one per {comparison.by.value}",
        ),
        ("selection", comparison.selection.describe()),
        ("suite", comparison.suite or "— (runs already recorded)"),
        ("reference", comparison.reference or "none (tool_call_f1 needs --reference)"),
        (
            "intervals",
            f"{int(comparison.confidence * 100)}% bootstrap over runs, "
            f"{comparison.resamples} resamples, seed {comparison.seed}",
        ),
        ("generated", comparison.generated_at.strftime("%Y-%m-%d %H:%M:%S UTC")),
        ("database", str(report.database)),
    ]
    return element(
        "dl",
        [concat(element("dt", name), element("dd", value)) for name, value in rows],
        class_="facts",
    )


def _group_legend(report: Report) -> Markup:
    return element(
        "div",
        [
            element(
                "span",
                element("span", class_=f"swatch {group_class(i)}", aria_hidden="true"),
                group.name,
            )
            for i, group in enumerate(report.comparison.groups)
        ],
        class_="legend group-legend",
    )


def _section(ident: str, title: str, *body: object) -> Markup:
    return element("section", element("h2", title), *body, id=ident)


def render_page(report: Report) -> str:
    """The whole HTML document."""
    comparison = report.comparison
    title = _title(report)
    charts = all_charts(comparison)
    if report.runs_per_group == 0:
        timelines: Markup = element("p", "Timelines left out (--runs 0).", class_="muted")
    else:
        timelines = timelines_section(report.timelines, [g.name for g in comparison.groups])
    caveats = notes(comparison)
    head = element(
        "head",
        element("meta", charset="utf-8"),
        element("meta", http_equiv="Content-Security-Policy", content=POLICY),
        element("meta", name="viewport", content="width=device-width, initial-scale=1"),
        element("meta", name="generator", content=f"agent-traces {_version()}"),
        element("link", rel="icon", href="data:,"),
        element("title", title),
        element("style", style_sheet()),
    )
    body = element(
        "body",
        element(
            "header",
            element("h1", title),
            _facts(report),
            element(
                "nav",
                [
                    element("a", text, href=f"#{ident}")
                    for ident, text in (
                        *((("verdict", "Verdict"),) if report.verification else ()),
                        ("comparison", "Comparison"),
                        ("differences", "Significant differences"),
                        ("charts", "Charts"),
                        ("timelines", "Run timelines"),
                    )
                ],
                class_="toc",
                aria_label="sections",
            ),
            class_="page",
        ),
        element(
            "main",
            _section("verdict", "Verdict", verdict_section(report.verification))
            if report.verification is not None
            else None,
            _section(
                "comparison",
                "Comparison",
                comparison_table(comparison),
                concat(element("h3", "Notes"), caveats) if caveats else None,
            ),
            _section("differences", "Significant differences", differences(comparison)),
            _section(
                "charts",
                "Charts",
                _group_legend(report),
                [chart.figure() for chart in charts],
            ),
            _section("timelines", "Run timelines", timelines),
        ),
        element(
            "footer",
            f"Made by agent-traces {_version()} (`traces report`). Self-contained: no scripts, "
            "no fonts or files from the network.",
        ),
    )
    return "<!DOCTYPE html>\n" + element("html", head, body, lang="en") + "\n"
