"""`traces report --html` end to end: runs recorded over HTTP (a clean simulator, one leaking
Kimi tool-call tokens into content, and a scripted endpoint answering with HTML), the report
written by the real CLI, then opened offline in headless Chromium and read as a person would.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
from browser import LoadedPage, open_file
from browser import browser as browser  # the session fixture: pytest finds it by this name

from analyzer.compare.formatting import format_value

from conftest import TASKS, run_cli
from scripted_endpoint import ScriptedEndpoint, answer, tool_turn

# Slow as a whole, outside the fast path `pytest -m "not slow"`: reports built from recorded
# comparisons, read in a real Chromium.
pytestmark = pytest.mark.slow

CLEAN = "sim"
LEAKY = "sim-moonshot"
EVIL = "evil<b>\"&'"
"""A provider label that is markup: group names reach headers, SVG titles and attributes."""
ANSWER = "<script>alert(1)</script> <img src=x onerror=alert(2)>"
BOX = "<script>alert(3)</script>"
RUNS = 5
SHOWN = 4
"""Timelines per group (`--runs`): fewer than the clean group's runs, so one is omitted."""


@dataclass(frozen=True)
class Recorded:
    db: Path
    html: Path
    comparison: dict[str, Any]
    run: subprocess.CompletedProcess[str]


def _ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    base = tmp_path_factory.mktemp("report")
    db = base / "t.duckdb"
    task = str(TASKS / "chain_short.toml")
    _ok(run_cli("record", "--task", task, "--repeat", str(RUNS), "--db", str(db)))
    _ok(
        run_cli(
            "record",
            "--task",
            task,
            "--dialect",
            "moonshot",
            "--fault",
            "leaked_tokens_content=0.3",
            "--repeat",
            str(RUNS),
            "--seed",
            "3",
            "--db",
            str(db),
        )
    )
    script = ScriptedEndpoint(
        [tool_turn(("open_box", json.dumps({"box_id": BOX}))), answer(ANSWER)]
    )
    with script.serving():
        _ok(
            run_cli(
                "record",
                "--task",
                task,
                "--provider",
                EVIL,
                "--base-url",
                script.base_url,
                "--model",
                "scripted",
                "--no-stream",
                "--db",
                str(db),
                env={"OPENAI_API_KEY": "test-key"},
            )
        )
    html = base / "report.html"
    done = _ok(run_cli("report", "--html", str(html), "--runs", str(SHOWN), "--db", str(db)))
    comparison = json.loads(_ok(run_cli("compare", "--db", str(db), "--format", "json")).stdout)
    return Recorded(db, html, comparison, done)


@pytest.fixture(scope="module")
def page(recorded: Recorded, browser: Any) -> LoadedPage:
    return open_file(browser, recorded.html)


def _is(name: str, value: str) -> str:
    """A CSS selector of `data-NAME` equal to `value`, quoted even when it holds quotes."""
    return f"[data-{name}={json.dumps(value, ensure_ascii=False)}]"


def _query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = duckdb.connect(str(db), read_only=True)
    try:
        return conn.execute(sql, list(params)).fetchall()
    finally:
        conn.close()


def test_the_cli_prints_the_path_and_a_summary(recorded: Recorded) -> None:
    assert recorded.run.stdout.strip() == str(recorded.html)
    [summary] = recorded.run.stderr.strip().splitlines()
    assert summary.startswith(f"report: {2 * RUNS + 1} runs in 3 groups")
    assert f"{2 * SHOWN + 1} run timelines ({2 * (RUNS - SHOWN)} omitted)" in summary
    # Written by rename: no temporary file is left beside it.
    assert [p.name for p in recorded.html.parent.glob(".report.html.*")] == []


def test_the_page_loads_offline_without_errors_requests_or_dialogs(page: LoadedPage) -> None:
    assert page.console_errors == []
    assert page.requests == []
    assert page.dialogs == []
    assert page.page.title().startswith("traces report: ")


def test_the_table_has_a_column_per_group_and_a_row_per_metric(
    recorded: Recorded, page: LoadedPage
) -> None:
    table = page.page.locator("#comparison-table")
    groups = [g["name"] for g in recorded.comparison["groups"]]
    headers = table.locator("thead th[data-group]")
    assert headers.evaluate_all("els => els.map(e => e.dataset.group)") == groups
    # The hostile label is text in its header, not a <b> element.
    assert EVIL in headers.all_inner_texts()[groups.index(EVIL)]
    assert table.locator("thead b").count() == 0

    rows = table.locator("tbody tr[data-metric]")
    keys = rows.evaluate_all("els => els.map(e => e.dataset.metric)")
    assert keys == ["runs", "models", "tasks"] + [m["key"] for m in recorded.comparison["metrics"]]
    for label in ("task success", "schema_accuracy (K2VV)", "step latency, ms"):
        assert table.get_by_role("rowheader", name=label, exact=True).count() == 1

    [success] = [m for m in recorded.comparison["metrics"] if m["key"] == "success_rate"]
    for group in groups:
        cell = table.locator(f'tr[data-metric="success_rate"] td{_is("group", group)}')
        estimate = success["values"][group]
        assert cell.locator(".value").inner_text() == format_value(estimate["value"], "rate")
        if estimate["lo"] is not None:
            assert cell.locator(".ci").inner_text().startswith("[")
    runs = table.locator('tr[data-metric="runs"] td')
    assert runs.all_inner_texts() == [str(g["runs"]) for g in recorded.comparison["groups"]]


def test_significant_differences_are_listed_and_marked_in_the_table(
    recorded: Recorded, page: LoadedPage
) -> None:
    section = page.page.locator("#differences")
    assert section.locator("h2").inner_text() == "Significant differences"
    significant = recorded.comparison["significant"]
    assert significant, "the leaky provider should differ significantly from the clean one"
    assert section.locator("li").all_inner_texts() == [d["text"] for d in significant]
    # The group that does better gets ▲ in that metric's row, the other ▼.
    first = next(d for d in significant if d["better"] is not None)
    worse = first["lower"] if first["better"] == first["higher"] else first["higher"]
    row = page.page.locator(f'#comparison-table tr[data-metric="{first["metric"]}"]')
    assert row.locator(f"td{_is('group', first['better'])} .verdict").inner_text() == "▲"
    assert row.locator(f"td{_is('group', worse)} .verdict").inner_text() == "▼"


def _marks(page: LoadedPage, chart: str) -> int:
    svg = page.page.locator(f"svg#{chart}")
    assert svg.locator("title").first.text_content()
    assert svg.get_attribute("role") == "img"
    return svg.locator(".mark").count()


def test_charts_have_titles_and_one_mark_per_value(recorded: Recorded, page: LoadedPage) -> None:
    comparison = recorded.comparison
    metrics = {m["key"]: m for m in comparison["metrics"]}
    groups = comparison["groups"]
    assert _marks(page, "chart-steps") == len(comparison["steps_histogram"]) * len(groups)
    for dimension in ("kind", "layer"):
        expected = sum(
            len(m["values"])
            for key, m in metrics.items()
            if key.startswith(f"finding.{dimension}.") and key.endswith(".per_100_steps")
        )
        assert expected > 0
        assert _marks(page, f"chart-findings-{dimension}") == expected
    for key in ("ttft_ms", "step_latency_ms", "output_tokens_per_s"):
        chart = "chart-" + key.replace("_", "-")
        assert _marks(page, chart) == len(metrics[key]["values"])
    outcomes = sum(
        len(metrics[k]["values"])
        for k in ("success_rate", "completion_rate", "provider_error_rate")
    )
    assert _marks(page, "chart-outcomes") == outcomes
    # Each bar of the histogram states its group, bucket and count.
    tips = page.page.locator("svg#chart-steps .mark title").all_text_contents()
    clean_total = sum(b["runs"][CLEAN] for b in comparison["steps_histogram"])
    assert sum(
        int(re.findall(r"(\d+) runs$", t)[0]) for t in tips if t.startswith(f"{CLEAN}:")
    ) == (clean_total)


def test_each_shown_run_has_a_timeline_with_its_findings_on_the_right_steps(
    recorded: Recorded, page: LoadedPage
) -> None:
    sections = page.page.locator("section.group-timelines")
    names = sections.evaluate_all("els => els.map(e => e.dataset.group)")
    assert names == [g["name"] for g in recorded.comparison["groups"]]
    clean = page.page.locator(f"section.group-timelines{_is('group', CLEAN)}")
    assert clean.locator("article.run").count() == SHOWN
    assert f"{RUNS - SHOWN} omitted" in clean.locator(".run-count").inner_text()

    shown = page.page.locator("article.run").evaluate_all("els => els.map(e => e.dataset.run)")
    newest = {
        r[0]
        for r in _query(
            recorded.db,
            "SELECT id FROM runs QUALIFY row_number() OVER "
            "(PARTITION BY provider ORDER BY started_at DESC, id DESC) <= ?",
            SHOWN,
        )
    }
    assert set(shown) == newest
    flagged_somewhere = False
    for run_id in shown:
        [(steps,)] = _query(recorded.db, "SELECT steps FROM runs WHERE id = ?", run_id)
        cells = page.page.locator(f'article[data-run="{run_id}"] ol.steps li')
        assert cells.count() == steps
        expected = {
            int(step): set(kinds.split(","))
            for step, kinds in _query(
                recorded.db,
                "SELECT step_idx, string_agg(DISTINCT kind, ',') FROM findings "
                "WHERE run_id = ? AND step_idx IS NOT NULL GROUP BY step_idx",
                run_id,
            )
        }
        flagged = page.page.locator(f'article[data-run="{run_id}"] ol.steps li.flagged')
        found = {
            int(step): set(kinds.split())
            for step, kinds in flagged.evaluate_all(
                "els => els.map(e => [e.dataset.step, e.dataset.findings])"
            )
        }
        assert found == expected, run_id
        flagged_somewhere |= bool(found)
    assert flagged_somewhere
    # A flagged cell names its findings and their evidence in its tooltip.
    leak = page.page.locator('li[data-findings~="leaked_special_tokens"]').first
    title = leak.get_attribute("title") or ""
    assert "leaked_special_tokens (error, provider)" in title and "<|tool_call_begin|>" in title


def test_model_text_and_labels_are_shown_as_text_never_as_markup(
    recorded: Recorded, page: LoadedPage
) -> None:
    raw = recorded.html.read_text(encoding="utf-8")
    for hostile in (ANSWER, BOX, "<img src=x", "<script>alert", EVIL):
        assert hostile not in raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &lt;img src=x onerror=alert(2)&gt;" in raw
    assert raw.count("<script") == 0

    [(run_id,)] = _query(recorded.db, "SELECT id FROM runs WHERE provider = ?", EVIL)
    run = page.page.locator(f'article[data-run="{run_id}"]')
    run.locator("summary").click()
    assert run.locator("blockquote.answer").inner_text() == ANSWER
    # The tool's complaint about the box id carries it into a finding's evidence, as text.
    evidence = run.locator("code.evidence").all_inner_texts()
    assert any(BOX in text for text in evidence), evidence
    assert page.page.locator("img").count() == 0
    assert page.page.locator("body script").count() == 0
    assert page.dialogs == []
    # In SVG too: the label is the text of chart titles, not an element.
    tips = page.page.locator("svg .mark title").all_text_contents()
    assert any(t.startswith(EVIL + ":") for t in tips)


def _one_line_error(done: subprocess.CompletedProcess[str], code: int, *fragments: str) -> None:
    assert done.returncode == code, (done.stdout, done.stderr)
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and "Traceback" not in line
    for fragment in fragments:
        assert fragment in line, line


def test_filters_select_the_runs_and_groups_of_the_report(
    recorded: Recorded, tmp_path: Path, browser: Any
) -> None:
    out = tmp_path / "leaky.html"
    done = run_cli(
        "report",
        "--html",
        str(out),
        "--db",
        str(recorded.db),
        "--provider",
        LEAKY,
        "--by",
        "model",
        "--runs",
        "0",
    )
    assert done.returncode == 0, done.stderr
    loaded = open_file(browser, out)
    assert loaded.console_errors == []
    headers = loaded.page.locator("#comparison-table thead th[data-group]")
    assert headers.evaluate_all("els => els.map(e => e.dataset.group)") == ["sim-reasoner-1"]
    assert loaded.page.locator('tr[data-metric="runs"] td').inner_text() == str(RUNS)
    assert loaded.page.locator("article.run").count() == 0
    assert "provider=sim-moonshot" in loaded.page.locator("dl.facts").inner_text()


def test_errors_are_one_line_and_leave_no_file(recorded: Recorded, tmp_path: Path) -> None:
    db = str(recorded.db)
    out = tmp_path / "r.html"
    _one_line_error(
        run_cli("report", "--html", str(out), "--db", db, "--provider", "together"),
        2,
        "no runs of provider 'together'",
    )
    _one_line_error(
        run_cli("report", "--html", str(out), "--db", db, "--since", "2999-01-01"),
        2,
        "no finished runs match",
    )
    _one_line_error(
        run_cli("report", "--html", str(out), "--db", db, "--since", "monday"), 2, "--since"
    )
    _one_line_error(
        run_cli("report", "--html", str(tmp_path / "missing" / "r.html"), "--db", db),
        2,
        "does not exist",
    )
    _one_line_error(run_cli("report", "--html", str(tmp_path), "--db", db), 2, "is a directory")
    _one_line_error(
        run_cli("report", "--html", str(out), "--db", str(tmp_path / "none.duckdb")),
        4,
        "no trace database",
    )
    assert list(tmp_path.iterdir()) == []


def test_an_existing_report_is_replaced_whole(recorded: Recorded, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    out.write_text("old", encoding="utf-8")
    done = run_cli("report", "--html", str(out), "--db", str(recorded.db), "--task", "chain_short")
    assert done.returncode == 0, done.stderr
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_a_policys_verdict_comes_first_with_every_judgement(
    recorded: Recorded, browser: Any, tmp_path: Path
) -> None:
    """`--policy` shows `traces verify`'s verdict on the page's comparison, criterion by
    criterion for every group, with the same statuses `verify --format json` gives."""
    html = tmp_path / "verdict.html"
    args = ("--policy", "faithful", "--reference", CLEAN, "--db", str(recorded.db))
    done = _ok(run_cli("report", "--html", str(html), "--runs", "0", *args))
    verified = run_cli("verify", *args, "--format", "json")
    expected = json.loads(verified.stdout)
    assert f"verdict {expected['status']};" in done.stderr
    loaded = open_file(browser, html)
    assert loaded.console_errors == [] and loaded.requests == []
    section = loaded.page.locator("#verdict")
    assert section.locator("h2").inner_text() == "Verdict"
    assert section.locator("#verdict-status strong").inner_text() == expected["status"].upper()
    rows = section.locator("tbody tr")
    assert rows.count() == len(expected["judgements"])
    for index, judgement in enumerate(expected["judgements"]):
        row = rows.nth(index)
        assert row.get_attribute("data-status") == judgement["status"]
        assert row.get_attribute("data-group") == judgement["group"]  # markup kept as text
    # The verdict is listed first among the sections.
    assert loaded.page.locator("nav.toc a").first.inner_text() == "Verdict"
    missing = tmp_path / "x.html"
    bad = run_cli("report", "--html", str(missing), "--policy", "nope", "--db", str(recorded.db))
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert not missing.exists()
