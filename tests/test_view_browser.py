"""`traces view` the way a person uses it: Debian's Chromium, through Playwright, on the real
command serving a store recorded over HTTP — filter the runs, open one, walk its steps with
the keyboard, expand one, follow a finding, run a SQL query, watch a recording add runs and
steps — with no console error, no request leaving the machine, and recorded markup shown as
text (no dialog ever opens)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from browser import browser as browser  # the module fixture: pytest finds it by this name

from analyzer.checks.persist import analyze_recorded
from traces.sim.config import SimConfig

from conftest import run_cli
from recording import Recording, record_many
from view_server import EVIL_ANSWER, EVIL_BOX, Viewer, record_markup, viewing

T = TypeVar("T")

# Slow as a whole: a browser, a served store, recordings.
pytestmark = pytest.mark.slow


@dataclass
class Tab:
    """A page of the viewer, with what it logged and asked for."""

    page: Any
    viewer: Viewer
    console: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def go(self, path: str) -> None:
        self.page.goto(self.viewer.url + path.lstrip("/"))
        self.page.wait_for_load_state("load")

    def clean(self) -> None:
        """No console error or uncaught exception, no request off the viewer, no dialog."""
        assert [t for k, t in self.console if k == "error"] + self.errors == []
        assert self.outside == []
        assert self.dialogs == []


@dataclass(frozen=True)
class Store:
    db: Path
    clean: str
    leaky: str
    evil: str
    emptied: str


def _off_the_loop(work: Callable[[], T]) -> T:
    """`work()` in a thread of its own: recording runs an event loop, which cannot start in
    the thread where Playwright's sync API keeps one running."""
    done: list[T] = []
    worker = threading.Thread(target=lambda: done.append(work()))
    worker.start()
    worker.join(300)
    assert done, "recording failed (see the thread's exception above)"
    return done[0]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return _off_the_loop(lambda: _record(tmp_path_factory.mktemp("viewb") / "t.duckdb"))


def _record(db: Path) -> Store:
    runs = record_many(
        db,
        {
            "clean": Recording(sim=SimConfig(seed=0), stream=True),
            "leaky": Recording(
                sim=SimConfig(seed=3, dialect="moonshot", faults={"leaked_tokens_content": 0.5}),
                dialect="moonshot",
                stream=True,
            ),
            # The second turn comes back empty after reasoning, and no reasoning tokens are
            # reported: the client estimates them.
            "emptied": Recording(
                sim=SimConfig(
                    seed=1, faults={"late_empty_turn": 1.0, "reasoning_tokens_missing": 1.0}
                )
            ),
        },
    )
    evil = record_markup(db)
    ids = [runs["clean"].id, runs["leaky"].id, evil, runs["emptied"].id]
    analyze_recorded(db, ids)
    return Store(db, runs["clean"].id, runs["leaky"].id, evil, runs["emptied"].id)


@pytest.fixture(scope="module")
def viewer(store: Store) -> Iterator[Viewer]:
    with viewing(store.db) as served:
        yield served


def _tab(browser: Any, viewer: Viewer) -> Tab:
    context = browser.new_context()
    page = context.new_page()
    tab = Tab(page, viewer)
    page.on("console", lambda m: tab.console.append((m.type, m.text)))
    page.on("pageerror", lambda e: tab.errors.append(str(e)))

    def dialog(d: Any) -> None:
        tab.dialogs.append(f"{d.type}: {d.message}")
        d.dismiss()

    page.on("dialog", dialog)

    def route(r: Any) -> None:
        if r.request.url.startswith(viewer.url):
            r.continue_()
        else:
            tab.outside.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    return tab


@pytest.fixture
def tab(browser: Any, viewer: Viewer) -> Iterator[Tab]:
    opened = _tab(browser, viewer)
    yield opened
    opened.page.context.close()


def test_filter_the_runs_then_open_one(tab: Tab, store: Store) -> None:
    tab.go("/runs")
    rows = tab.page.locator("#runs-rows tr")
    assert rows.count() == 4
    tab.page.select_option("select[name=provider]", "sim-moonshot")
    tab.page.click("#run-filters button[type=submit]")
    tab.page.wait_for_url("**/runs?*provider=sim-moonshot*")
    assert tab.page.locator("#runs-rows tr").count() == 1
    tab.page.click(f"#run-{store.leaky} a.run-link")
    tab.page.wait_for_url(f"**/runs/{store.leaky}")
    assert tab.page.locator("h1").inner_text().startswith("Run ")
    tab.clean()


def test_walk_the_steps_with_the_keyboard_and_expand_one(tab: Tab, store: Store) -> None:
    tab.go(f"/runs/{store.clean}")
    steps = tab.page.locator("details.step")
    assert steps.count() > 2
    tab.page.keyboard.press("j")
    tab.page.keyboard.press("j")
    tab.page.keyboard.press("k")
    tab.page.keyboard.press("j")
    focused = tab.page.evaluate("document.activeElement.closest('details').id")
    assert focused == "step-1"
    assert not tab.page.locator("#step-1").evaluate("d => d.open")
    tab.page.keyboard.press("Enter")
    assert tab.page.locator("#step-1").evaluate("d => d.open")
    body = tab.page.locator("#step-1 .step-body")  # fetched as the step opened
    body.locator("pre.reasoning").wait_for()
    assert "open_box" in body.inner_text()
    # From the expanded step to its exchange.
    body.get_by_role("link", name="The request as sent and the raw response of step 1 →").click()
    tab.page.wait_for_url(f"**/runs/{store.clean}/steps/1")
    assert tab.page.locator("#sse-lines tbody tr").count() > 1
    assert '"messages": [' in tab.page.locator("#request-body").inner_text()
    tab.page.keyboard.press("j")
    tab.page.wait_for_url(f"**/runs/{store.clean}/steps/2")
    # A link to a step opens it, its body fetched.
    tab.go(f"/runs/{store.clean}#step-2")
    tab.page.locator("#step-2 .step-body pre.reasoning").wait_for()
    assert tab.page.locator("details.step[open]").count() == 1
    tab.clean()


def test_n_goes_to_the_next_finding(tab: Tab, store: Store) -> None:
    tab.go(f"/runs/{store.evil}")
    findings = tab.page.locator("li.finding")
    assert findings.count() >= 2
    tab.page.keyboard.press("n")
    first = tab.page.evaluate("document.activeElement.id")
    assert first.startswith("finding-")
    tab.page.keyboard.press("n")
    second = tab.page.evaluate("document.activeElement.id")
    assert second.startswith("finding-") and second != first
    # A finding inside a step is shown: its step opened.
    step_finding = tab.page.locator("details.step li.finding").first
    step_finding.focus()
    tab.page.keyboard.press("n")
    opened = tab.page.evaluate("document.activeElement.closest('details')?.open ?? true")
    assert opened
    tab.clean()


def test_follow_a_finding_from_the_matrix_to_its_step(tab: Tab, store: Store) -> None:
    tab.go("/findings")
    tab.page.locator("a.kind", has_text="tool_error").first.click()
    tab.page.wait_for_url("**/findings/tool_error?*")
    tab.page.locator("a.to-step").first.click()
    tab.page.wait_for_url(f"**/runs/{store.evil}/steps/*")
    assert "tool_error" in tab.page.locator("ul.findings").first.inner_text()
    tab.clean()


def test_recorded_markup_is_shown_as_text(tab: Tab, store: Store) -> None:
    tab.go(f"/runs/{store.evil}")
    for step in tab.page.locator("details.step summary").all():
        step.click()
    # Every body fetched and in place (a selector wait: a function wait evaluates a string
    # in the page, which its CSP, with no unsafe-eval, refuses).
    tab.page.wait_for_selector("details.step .step-lazy", state="detached")
    text = tab.page.locator("main").inner_text()
    assert EVIL_ANSWER in text and EVIL_BOX in text
    assert tab.page.locator("main img, main script, main b.injected").count() == 0
    assert tab.page.evaluate("document.scripts.length") == 1
    tab.go("/runs")
    assert "evil<b>\"&'" in tab.page.locator("#runs-rows").inner_text()
    tab.clean()


def test_a_runs_header_marks_estimates_and_says_who_ended_it(tab: Tab, store: Store) -> None:
    """The second turn came back empty (termination `model_error`, as observed) and the
    checks lay it on the host: the header says the provider ended the run and why, and the
    reasoning total, the client's estimate, reads as one."""
    tab.go(f"/runs/{store.emptied}")
    facts = tab.page.locator("dl.facts").inner_text()
    assert "model_error" in facts
    assert "provider (empty_turn_after_reasoning)" in facts
    assert re.search(r"~[\d,]+ \(estimated\) reasoning", facts), facts
    tab.go(f"/runs/{store.clean}")
    facts = tab.page.locator("dl.facts").inner_text()
    assert "estimated" not in facts and "ended by" not in facts
    tab.go("/runs")
    row = tab.page.locator(f"#run-{store.emptied}").inner_text()
    assert "ended by provider (empty_turn_after_reasoning)" in row
    tab.clean()


def test_run_a_sql_query_and_download_it(tab: Tab) -> None:
    tab.go("/sql")
    tab.page.fill(
        "textarea[name=q]", "SELECT provider, count(*) AS n FROM runs GROUP BY 1 ORDER BY 1"
    )
    tab.page.click("#sql-form button[type=submit]")
    tab.page.wait_for_selector("#sql-result")
    headers = tab.page.locator("#sql-result thead th").all_inner_texts()
    assert headers == ["provider", "n"]
    assert tab.page.locator("#sql-result tbody tr").count() == 3
    with tab.page.expect_download() as download:
        tab.page.click("#csv-link")
    saved = Path(download.value.path()).read_text()
    assert saved.splitlines()[0] == "provider,n"
    tab.page.fill("textarea[name=q]", "DROP TABLE runs")
    tab.page.click("#sql-form button[type=submit]")
    assert "refused" in tab.page.locator("#sql-error").inner_text()
    # A 400 answer is a console error of the browser's own, not of the page.
    tab.console[:] = [(k, t) for k, t in tab.console if "400" not in t]
    tab.clean()


def test_open_pages_follow_a_recording(browser: Any, tmp_path: Path) -> None:
    db = tmp_path / "live.duckdb"
    _off_the_loop(lambda: record_many(db, {"first": Recording(sim=SimConfig(seed=0), max_steps=2)}))
    with viewing(db) as served:
        runs_tab = _tab(browser, served)
        runs_tab.go("/runs")
        assert runs_tab.page.locator("#runs-rows tr").count() == 1
        runs_tab.page.evaluate("window.notReloaded = true")
        # A slow host: each answer takes 400 ms, so the run is watched while it records.
        recorded: dict[str, Any] = {}
        slow = Recording(sim=SimConfig(seed=1, latency_ms=400), max_steps=8)
        worker = threading.Thread(
            target=lambda: recorded.update(record_many(db, {"slow": slow})), daemon=True
        )
        worker.start()
        try:
            # (Waited for by locator: the policy forbids the eval a predicate string needs.)
            runs_tab.page.locator("#runs-rows tr").nth(1).wait_for(timeout=30000)
            assert runs_tab.page.evaluate("window.notReloaded === true")
            running = runs_tab.page.locator("#runs-rows tr.new-row a.run-link").inner_text()
            run_tab = _tab(browser, served)
            run_tab.go(f"/runs/{running}")
            before = run_tab.page.locator("details.step").count()
            assert before < 8
            run_tab.page.locator("details.step summary").first.click()  # stays open
            started = time.monotonic()
            run_tab.page.locator("details.step").nth(before).wait_for(timeout=30000)
            assert time.monotonic() - started < 15
            assert run_tab.page.locator("details.step").first.evaluate("d => d.open")
        finally:
            worker.join(120)
        # The run ended: its row says so, updated in place.
        row = runs_tab.page.locator(f"#run-{running}.status-completed")
        row.wait_for(timeout=30000)
        assert runs_tab.page.evaluate("window.notReloaded === true")
        runs_tab.clean()
        run_tab.clean()
        runs_tab.page.context.close()
        run_tab.page.context.close()


def test_an_open_page_fetches_what_was_committed_before_its_first_poll(
    browser: Any, tmp_path: Path
) -> None:
    """The page starts from the fingerprint read before its data, not from its first poll:
    a run committed after the page was read but before any poll answered still appears
    (with no later commit to announce it). Polls fail until the run is stored."""
    db = tmp_path / "before-poll.duckdb"
    _off_the_loop(lambda: record_many(db, {"first": Recording(sim=SimConfig(seed=0), max_steps=2)}))
    with viewing(db) as served:
        runs_tab = _tab(browser, served)
        runs_tab.page.route("**/api/live*", lambda r: r.abort())
        runs_tab.go("/runs")
        assert runs_tab.page.locator("#runs-rows tr").count() == 1
        _off_the_loop(
            lambda: record_many(db, {"second": Recording(sim=SimConfig(seed=1), max_steps=2)})
        )
        runs_tab.page.unroute("**/api/live*")
        runs_tab.page.locator("#runs-rows tr").nth(1).wait_for(timeout=30000)
        assert runs_tab.page.locator("#runs-rows tr.new-row").count() == 1
        runs_tab.page.context.close()


def test_probe_fingerprints_per_provider(browser: Any, tmp_path: Path) -> None:
    db = tmp_path / "probes.duckdb"
    done = run_cli("probe", "--db", str(db))
    assert done.returncode == 0, done.stderr
    with viewing(db) as served:
        probes = _tab(browser, served)
        probes.go("/probes")
        rows = probes.page.locator("#fingerprints tbody tr")
        assert rows.count() == 1 and "sim" in rows.first.inner_text()
        assert probes.page.locator("#parameters tbody tr").count() > 1
        probes.clean()
        probes.page.context.close()
