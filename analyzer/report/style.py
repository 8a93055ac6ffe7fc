"""The report's style sheet, inlined into the page (no fonts or files from anywhere else)."""

from __future__ import annotations

from analyzer.report.markup import Markup
from analyzer.report.svg import PALETTE

_BASE = """
:root { color-scheme: light; --fg: #1b1f24; --muted: #5c6670; --line: #d6dbe0;
  --bg-soft: #f4f6f8; --better: #e3f4e8; --worse: #fbe5e1; --flag: #c0262d; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: #fff; }
header.page, main, footer { max-width: 1200px; margin: 0 auto; padding: 0 20px; }
header.page { padding-top: 20px; }
h1 { font-size: 1.6em; margin: 0 0 6px; }
h2 { font-size: 1.25em; margin: 32px 0 10px; border-bottom: 1px solid var(--line);
  padding-bottom: 4px; }
h3 { font-size: 1.05em; margin: 20px 0 8px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 10px 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
nav.toc a { margin-right: 14px; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: 0.92em; }
.muted { color: var(--muted); }
.swatch { display: inline-block; width: 0.8em; height: 0.8em; border-radius: 2px;
  margin-right: 5px; vertical-align: -1px; background: var(--c); }
.sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden;
  clip: rect(0 0 0 0); white-space: nowrap; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; }
table.comparison { min-width: 60%; }
table.comparison th, table.comparison td { padding: 3px 10px; border-bottom: 1px solid var(--line);
  text-align: left; vertical-align: top; }
table.comparison thead th { position: sticky; top: 0; background: #fff;
  border-bottom: 2px solid var(--fg); }
table.comparison th.section { background: var(--bg-soft); font-size: 0.95em;
  text-transform: uppercase; letter-spacing: 0.04em; }
table.comparison th[scope=row] { font-weight: normal; }
/* A wide table (many groups) scrolls sideways under its metric column, which stays. */
table.comparison th[scope=row], table.comparison thead th:first-child
  { position: sticky; left: 0; background: #fff; z-index: 1; }
table.comparison thead th:first-child { z-index: 2; }
table.comparison th.section > span { position: sticky; left: 10px; }
table.comparison td .ci { color: var(--muted); font-size: 0.9em; margin-left: 4px; }
table.comparison td.better { background: var(--better); }
table.comparison td.worse { background: var(--worse); }
.verdict { font-weight: bold; margin-right: 3px; }
.status.pass { color: #1a7f37; } .status.fail { color: #c0392b; }
.status.inconclusive, .status.skipped { color: #8a6d00; }
table.verdict-table th, table.verdict-table td { padding: 3px 10px; text-align: left;
  vertical-align: top; border-bottom: 1px solid var(--line); }
ul.differences li, ul.notes li { margin: 3px 0; }
dl.differences-by-metric dt { font-weight: 600; margin-top: 8px; }
dl.differences-by-metric dd { margin: 0 0 0 4px; }
dl.differences-by-metric ul { margin: 2px 0; padding-left: 20px; }
figure.chart-figure { margin: 18px 0; }
figure.chart-figure figcaption { font-weight: 600; margin-bottom: 4px; }
figure.chart-figure p { margin: 0 0 6px; color: var(--muted); font-size: 0.92em; }
svg.chart { max-width: 100%; height: auto; display: block; }
svg.chart text { font: 11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  fill: var(--fg); }
svg.chart text.category { font-weight: 600; }
svg.chart text.tick, svg.chart text.axis-caption { fill: var(--muted); }
svg.chart .axis-line { stroke: #9aa4ad; stroke-width: 1; }
svg.chart .whisker { stroke: var(--fg); stroke-width: 1.2; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 16px; margin: 6px 0 12px;
  font-size: 0.92em; }
.legend span { white-space: nowrap; }
article.run { border-top: 1px solid var(--line); padding: 6px 0; }
.run-head { display: flex; flex-wrap: wrap; gap: 4px 12px; align-items: baseline; }
.badge { border-radius: 3px; padding: 0 5px; background: var(--bg-soft);
  border: 1px solid var(--line); font-size: 0.9em; }
.badge.ok { background: var(--better); }
.badge.failed { background: var(--worse); }
ol.steps { list-style: none; display: flex; flex-wrap: wrap; gap: 2px; padding: 0;
  margin: 5px 0; }
ol.steps li { position: relative; width: 1.55em; height: 1.55em; line-height: 1.55em;
  text-align: center; font: 600 11px ui-monospace, Menlo, Consolas, monospace;
  border-radius: 2px; color: #fff; cursor: default; }
ol.steps.dense li { width: 12px; height: 15px; line-height: 15px; font-size: 8px; }
ol.steps li.flagged { outline: 2px solid var(--flag); outline-offset: 1px; }
ol.steps li.flagged::after { content: ""; position: absolute; top: -4px; right: -4px;
  width: 7px; height: 7px; border-radius: 50%; background: var(--flag);
  border: 1px solid #fff; }
.st-tool_calls { background: #4a78a8; }
.st-stop { background: #2e8b57; }
.st-length { background: #b8860b; }
.st-content_filter { background: #8e44ad; }
.st-error { background: #c0392b; }
.st-other, .st-none { background: #7f8c8d; }
.legend .key { display: inline-block; width: 1.45em; text-align: center; color: #fff;
  border-radius: 2px; font: 600 11px ui-monospace, Menlo, Consolas, monospace; }
.flag-key { display: inline-block; width: 1em; height: 1em; outline: 2px solid var(--flag);
  outline-offset: 1px; vertical-align: -2px; margin: 0 4px; }
details.run-detail h4 { font-size: 0.95em; margin: 8px 0 2px; }
details.run-detail summary { cursor: pointer; color: var(--muted); }
details.run-detail table { margin: 6px 0; font-size: 0.92em; }
details.run-detail th, details.run-detail td { padding: 2px 8px; text-align: left;
  vertical-align: top; border-bottom: 1px solid var(--line); }
.evidence { white-space: pre-wrap; word-break: break-word; max-width: 60em; }
blockquote.answer { margin: 6px 0; padding: 4px 10px; border-left: 3px solid var(--line);
  white-space: pre-wrap; word-break: break-word; }
footer { margin-top: 40px; padding-bottom: 30px; color: var(--muted); font-size: 0.9em; }
"""


def style_sheet() -> Markup:
    """The whole style sheet, with one colour class per group position (`.g0`, `.g1`…)."""
    groups = "".join(f".g{i} {{ --c: {color}; }}\n" for i, color in enumerate(PALETTE))
    # Trusted constant text: escaping it would break `>` selectors inside <style>.
    return Markup(_BASE + groups)
