"""`traces view` over HTTP: the real command serving a store recorded over HTTP (the
simulator, a leaking Moonshot-style host, a scripted endpoint answering with markup), its
pages fetched as a browser would, its guards and its bad-input exits."""

from __future__ import annotations

import csv
import io
import re
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from analyzer.checks.persist import analyze_recorded
from traces.sim.config import SimConfig
from traces.store.database import open_for_writing

from conftest import CliRun, run_cli
from recording import Recording, record_many
from view_server import EVIL_ANSWER, EVIL_BOX, EVIL_PROVIDER, Viewer, record_markup, viewing


@dataclass(frozen=True)
class Served:
    db: Path
    viewer: Viewer
    clean: str
    leaky: str
    evil: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Served:
    db = tmp_path_factory.mktemp("view") / "t.duckdb"
    runs = record_many(
        db,
        {
            "clean": Recording(sim=SimConfig(seed=0), stream=True),
            "leaky": Recording(
                sim=SimConfig(seed=3, dialect="moonshot", faults={"leaked_tokens_content": 1.0}),
                dialect="moonshot",
                stream=True,
            ),
        },
    )
    evil = record_markup(db)
    analyze_recorded(db, [runs["clean"].id, runs["leaky"].id, evil])
    with viewing(db) as viewer:
        yield Served(db, viewer, runs["clean"].id, runs["leaky"].id, evil)


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, dict(answer.headers), answer.read().decode()
    except urllib.error.HTTPError as failed:
        return failed.code, dict(failed.headers), failed.read().decode()


def _page(served: Served, path: str) -> str:
    status, _, body = _settled(served.viewer.url + path.lstrip("/"))
    assert status == 200, body
    return body


def _settled(url: str) -> tuple[int, dict[str, str], str]:
    """A page once what it shows is current: pages whose counts or comparison are computed
    in the background reload themselves (a `Refresh` header) until then."""
    for _ in range(600):
        status, headers, page = _get(url)
        if status != 200 or "refresh" not in {h.lower() for h in headers}:
            return status, headers, page
        assert 'id="comparison-status"' in page or 'id="kept-state"' in page
        time.sleep(0.1)
    raise AssertionError(f"{url}: never current")


def _one(db: Path, sql: str) -> object:
    conn = duckdb.connect(str(db), read_only=True)
    try:
        row = conn.execute(sql).fetchone()
        assert row is not None
        return row[0]
    finally:
        conn.close()


def test_every_page_carries_a_strict_policy_and_no_inline_script(served: Served) -> None:
    for path in (
        "runs",
        f"runs/{served.clean}",
        f"runs/{served.clean}/steps/1",
        "findings",
        "compare",
        "sql?q=select+1",
    ):
        status, headers, body = _get(served.viewer.url + path)
        assert status == 200, (path, body)
        policy = headers["content-security-policy"]
        assert "script-src 'self'" in policy and "default-src 'none'" in policy
        assert "unsafe-inline" not in policy
        assert headers["x-frame-options"] == "DENY"
        # The one script is the package's file; every URL in the page is local.
        assert body.count("<script") == 1 and '<script src="/static/view.js" defer>' in body
        assert re.search(r"""(src|href|action)=["']?(https?:)?//""", body) is None
    status, headers, script = _get(served.viewer.url + "static/view.js")
    assert status == 200 and "javascript" in headers["content-type"]
    # Markup is never built from strings: no HTML assigned, written or evaluated.
    assert (
        re.search(r"(inner|outer)HTML\s*=[^=]|insertAdjacentHTML|document\.write", script) is None
    )
    assert "eval(" not in script and "new Function" not in script


def _bodies(served: Served, run: str) -> str:
    """A run's page with every step's body, as opening each step fetches it."""
    page = _page(served, f"runs/{run}")
    slots = re.findall(r'data-body="(/runs/[^"]+/body)"', page)
    return page + "".join(_page(served, slot) for slot in slots)


def test_recorded_markup_is_text_everywhere(served: Served) -> None:
    run_page = _bodies(served, served.evil)
    for page in (run_page, _page(served, "runs"), _page(served, f"runs/{served.evil}/steps/0")):
        for markup in (EVIL_ANSWER, EVIL_BOX, EVIL_PROVIDER, "evil<b>", "<img"):
            assert markup not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &lt;img src=x onerror=alert(2)&gt;" in run_page
    assert "evil&lt;b&gt;&#34;&amp;&#39;" in run_page
    # Inside the tool-call arguments (raw and parsed) and the tool's answer.
    assert run_page.count("&lt;script&gt;alert(3)&lt;/script&gt;") >= 2


def test_the_runs_list_filters_searches_sorts_and_pages_in_the_query(served: Served) -> None:
    everything = _page(served, "runs")
    assert all(f'id="run-{r}"' in everything for r in (served.clean, served.leaky, served.evil))
    assert "3 runs" in everything
    only = _page(served, "runs?provider=sim-moonshot")
    assert f'id="run-{served.leaky}"' in only and f'id="run-{served.clean}"' not in only
    assert "1 run," in only
    kind = _page(served, "runs?kind=leaked_special_tokens")
    assert f'id="run-{served.leaky}"' in kind and f'id="run-{served.clean}"' not in kind
    # Text search reaches the tool-call arguments, case-insensitively.
    found = _page(served, "runs?q=ALERT(3)")
    assert f'id="run-{served.evil}"' in found and "1 run," in found
    assert "0 runs" in _page(served, "runs?q=no+such+text+anywhere")
    assert "0 runs" in _page(served, "runs?since=2999-01-01T00:00")
    ordered = _page(served, "runs?sort=steps&dir=asc")
    shown = [r for r in (served.clean, served.leaky, served.evil) if f'id="run-{r}"' in ordered]
    positions = sorted(shown, key=lambda r: ordered.index(f'id="run-{r}"'))
    steps = {r: _one(served.db, f"select steps from runs where id = '{r}'") for r in positions}
    assert [steps[r] for r in positions] == sorted(steps.values())
    assert "No run matches." in _page(served, "runs?page=2")


def test_text_search_goes_a_part_of_the_store_at_a_time(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    from analyzer.queries import RunSearch
    from analyzer.view.search import search_text

    # Parts of one run, then two: a loaded machine took longer than the page's time budget
    # over the first part and stopped there (2026-12-06, a load of 25), which this test is
    # not about; the budget is the viewer's, not the parts'.
    monkeypatch.setattr("analyzer.view.search.BUDGET_S", 3600.0)
    conn = duckdb.connect(str(served.db), read_only=True)
    try:

        def search(text: str, start: int, wanted: int) -> tuple[list[str], int, int, bool]:
            found = search_text(
                conn, text, equal={}, status=None, search=RunSearch(), order="started_at",
                descending=True, start=start, wanted=wanted, first_part=1,
            )  # fmt: skip
            return found.ids, found.start, found.stop, found.complete

        order = "SELECT id FROM runs ORDER BY started_at DESC, id DESC"
        newest = [str(r[0]) for r in conn.execute(order).fetchall()]
        # Every run has steps with content: the first match ends the page, the next page
        # searches on from the run after it.
        assert search("", 0, 1) == (newest[:1], 0, 1, False)
        assert search("", 1, 5) == (newest[1:], 1, 3, False)
        assert search("alert(3)", 0, 50) == ([served.evil], 0, 3, True)
    finally:
        conn.close()
    page = _page(served, "runs?q=alert(3)&from=1")
    assert "match among runs 2–3 of the 3" in page and "← from the first run" in page


def test_text_search_finds_the_texts_stored_once_in_the_messages(tmp_path: Path) -> None:
    """An imported store keeps a replayed reasoning and a tool's output once, in the message
    the next request added (store migrations 16 and 17): the search, which reads the base
    tables (through the views its filter did not prune), finds every such text exactly as
    a search of the views would, and nothing else."""
    from analyzer.view.search import _hits
    from traces.importing import ImportOptions, import_files

    db = tmp_path / "imported.duckdb"
    fixture = Path(__file__).parent / "fixtures" / "import" / "exchanges.jsonl"
    import_files(db, [fixture], ImportOptions(provider="fixture"))
    conn = duckdb.connect(str(db), read_only=True)
    try:
        ids = [str(r[0]) for r in conn.execute("SELECT id FROM runs").fetchall()]
        reasonings = conn.execute(
            """SELECT v.reasoning FROM step_rows t JOIN steps v USING (run_id, idx)
            WHERE t.reasoning_replayed"""
        ).fetchall()
        outputs = conn.execute(
            """SELECT v.output FROM tool_result_rows t
            JOIN tool_results v USING (run_id, step_idx, call_idx) WHERE t.output IS NULL"""
        ).fetchall()
        assert reasonings and outputs
        once = reasonings + outputs
        by_views = """
            SELECT run_id FROM steps
                WHERE contains(lower(content), $1) OR contains(lower(reasoning), $1)
            UNION SELECT run_id FROM tool_calls WHERE contains(lower(arguments_raw), $1)
            UNION SELECT run_id FROM tool_results
                WHERE contains(lower(output), $1) OR contains(lower(error), $1)"""
        needles = [str(text).lower()[-24:] for (text,) in once] + ["no such text anywhere"]
        for needle in needles:
            expected = {str(r[0]) for r in conn.execute(by_views, [needle]).fetchall()}
            assert _hits(conn, ids, needle) == expected, needle
            assert expected or needle == "no such text anywhere"
    finally:
        conn.close()


def test_a_run_shows_one_expandable_row_per_step(served: Served) -> None:
    page = _page(served, f"runs/{served.leaky}")
    steps = _one(served.db, f"select count(*) from steps where run_id = '{served.leaky}'")
    assert page.count('<details class="step') == steps
    # Each step's findings are on the page; its body is fetched when it is opened.
    assert "leaked_special_tokens" in page and "from reasoning_content" not in page
    assert page.count('<div class="step-lazy" data-body="') == steps
    assert "from reasoning_content" in _bodies(served, served.leaky)
    status, _, part = _get(served.viewer.url + f"runs/{served.leaky}/steps/0/body")
    assert status == 200 and part.lstrip().startswith('<div class="step-body">')
    assert _get(served.viewer.url + f"runs/{served.leaky}/steps/999/body")[0] == 404
    # A prefix of the id is enough, as on the command line.
    assert f'Run <span class="mono">{served.leaky}' in _page(served, f"runs/{served.leaky[:-3]}")


def test_a_step_shows_the_request_as_sent_and_the_raw_stream(served: Served) -> None:
    page = _page(served, f"runs/{served.clean}/steps/1")
    assert 'id="request-body"' in page and "&#34;messages&#34;: [" in page
    lines = _one(
        served.db,
        f"select json_array_length(stream_events) from steps "
        f"where run_id = '{served.clean}' and idx = 1",
    )
    assert page.count('<tr><td class="n">') == lines
    assert '<link rel="prev" href="' in page and '<link rel="next" href="' in page
    plain = _page(served, f"runs/{served.evil}/steps/0")
    assert 'id="response-body"' in plain


def test_findings_drill_down_to_steps(served: Served) -> None:
    matrix = _page(served, "findings")
    assert 'href="/findings/leaked_special_tokens?provider=sim-moonshot' in matrix
    listing = _page(served, "findings/leaked_special_tokens?provider=sim-moonshot")
    assert f'href="/runs/{served.leaky}/steps/' in listing


def test_the_same_request_side_by_side(served: Served) -> None:
    listing = _page(served, "compare")
    digest = _one(
        served.db,
        "select request_hash from steps group by 1 having count(*) > 1 order by 1 limit 1",
    )
    assert f'href="/compare/{digest}"' in listing
    columns = _page(served, f"compare/{digest}")
    assert "answers</h1>" in columns


def test_sql_is_read_only_with_a_table_and_csv(served: Served) -> None:
    page = _page(served, "sql?q=select+id,+provider+from+runs+order+by+id&limit=2")
    assert 'id="sql-result"' in page and "the first 2" in page
    status, _, refused = _get(served.viewer.url + "sql?q=delete+from+runs")
    assert status == 400 and "DELETE statements are refused" in refused
    status, _, refused = _get(served.viewer.url + "sql?q=select+*+from+read_csv('/etc/passwd')")
    assert status == 400 and "SQL error" in refused
    status, headers, text = _get(
        served.viewer.url + "sql.csv?q=select+id,+provider+from+runs+order+by+id"
    )
    assert status == 200 and "attachment" in headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["id", "provider"] and len(rows) == 4
    assert EVIL_PROVIDER in [r[1] for r in rows]
    assert _one(served.db, "select count(*) from runs") == 3


def test_bad_links_answer_one_line(served: Served) -> None:
    for path, status, line in (
        ("runs/nosuchrun", 404, "no run with id"),
        (f"runs/{served.clean}/steps/999", 404, "has no step 999"),
        ("runs?page=x", 400, "not a whole number"),
        ("runs?since=yesterday", 400, "not a date or time"),
        ("runs?sort=evil", 400, "sort="),
        ("compare/nosuchhash", 404, "no step sent the request"),
    ):
        got, _, body = _get(served.viewer.url + path)
        assert got == status and line in body, (path, got)


def test_only_loopback_hosts_are_answered(served: Served) -> None:
    status, _, body = _get(served.viewer.url + "runs", {"Host": "attacker.example:80"})
    assert status == 403 and "loopback" in body
    status, _, _ = _get(served.viewer.url + "runs", {"Host": "localhost"})
    assert status == 200


@pytest.mark.slow
def test_the_live_fingerprint_moves_when_a_run_is_recorded(tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    record_many(db, {"one": Recording(sim=SimConfig(seed=0), max_steps=2)})
    with viewing(db) as viewer:
        before = _get(viewer.url + "api/live")[2]
        record_many(db, {"two": Recording(sim=SimConfig(seed=1), max_steps=2)})
        after = _get(viewer.url + "api/live")[2]
        assert before != after
        assert "2 runs" in _get(viewer.url + "runs")[2]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def test_off_loopback_the_printed_token_is_required(served: Served) -> None:
    with viewing(served.db, "--host", "0.0.0.0") as viewer:
        url, _, token = viewer.url.partition("?token=")
        assert token
        local = url.replace("0.0.0.0", "127.0.0.1")
        assert _get(local + "runs")[0] == 401
        assert _get(local + "runs?token=wrong")[0] == 401
        # The redirect that drops the token stays on the viewer, whatever the path.
        request = urllib.request.Request(local + f"/evil.example/x?token={token}")
        no_redirects = urllib.request.build_opener(_NoRedirect())
        with pytest.raises(urllib.error.HTTPError) as redirected:
            no_redirects.open(request, timeout=30)
        assert redirected.value.code == 303
        assert redirected.value.headers["location"] == "/evil.example/x"
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        with opener.open(f"{local}runs?token={token}", timeout=30) as answer:
            # Redirected to the same page without the token, which a cookie now carries.
            assert answer.status == 200 and "token" not in answer.url
            assert "3 runs" in answer.read().decode()


def test_a_missing_store_is_one_line_and_exit_4(cli: CliRun, tmp_path: Path) -> None:
    done = cli("view", "--db", str(tmp_path / "none.duckdb"), "--port", "0")
    assert done.returncode == 4
    assert done.stderr.strip().count("\n") == 0 and "no trace database here" in done.stderr


def test_a_port_in_use_is_one_line_and_exit_2(served: Served, cli: CliRun) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        port = taken.getsockname()[1]
        done = cli("view", "--db", str(served.db), "--port", str(port))
    finally:
        taken.close()
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"error: cannot serve on 127.0.0.1:{port}: Address already in use"


def test_the_comparison_is_the_report_without_script(served: Served) -> None:
    status, headers, page = _settled(served.viewer.url + "comparison")
    assert status == 200, page
    assert headers["content-security-policy"].startswith("default-src 'none'; style-src")
    assert "script-src" not in headers["content-security-policy"]
    assert "<script" not in page and "<h2>Comparison</h2>" in page
    assert "from the store as it is now" in page
    assert "evil&lt;b&gt;" in page and EVIL_PROVIDER not in page
    status, _, page = _get(served.viewer.url + "comparison?by=nothing")
    assert status == 400 and "by=" in page
    # Computed once per store version: asked again, it is there at once.
    status, headers, _ = _get(served.viewer.url + "comparison")
    assert status == 200 and "refresh" not in {h.lower() for h in headers}


def test_the_comparison_after_a_query_and_while_a_writer_has_the_store(served: Served) -> None:
    # The SQL console locks the configuration of the database every page shares (the file
    # held between requests); the comparison, which lowers DuckDB's memory limit for a
    # moment, once answered 500 right after it. Also while a writer has the store (the
    # session on its server, whose configuration is locked too).
    url = served.viewer.url
    assert _get(url + "sql?q=select+1")[0] == 200
    status, _, page = _settled(url + "comparison?by=model")
    assert status == 200, page
    writer = open_for_writing(served.db)
    try:
        status, _, page = _settled(url + "comparison?by=day")
        assert status == 200 and "<h2>Comparison</h2>" in page, page
    finally:
        writer.close()


def test_a_policy_verdict_on_the_comparison(served: Served, tmp_path: Path) -> None:
    index = _page(served, "verify")
    assert 'href="/verify/faithful"' in index and 'href="/verify/k2vv"' in index
    # A policy without a reference offers each provider as one (a markup label as text).
    assert 'href="/verify/faithful?reference=sim"' in index
    assert EVIL_PROVIDER not in index and "evil&lt;b&gt;" in index
    status, _, page = _settled(served.viewer.url + "verify/faithful?reference=sim")
    assert status == 200 and "<h2>Verdict</h2>" in page, page
    status, _, page = _get(served.viewer.url + "verify/faithful")
    assert status == 400 and "judged against a reference group" in page
    assert "providers here: " in page and "sim" in page
    status, _, page = _get(served.viewer.url + "verify/nosuch")
    assert status == 404 and "no policy &#39;nosuch&#39;" in page


def test_a_bad_policy_is_one_line_and_exit_2(cli: CliRun, served: Served) -> None:
    done = cli("view", "--db", str(served.db), "--port", "0", "--policy", "nosuch")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "nosuch" in done.stderr


def test_probe_fingerprints_say_when_nothing_was_probed(served: Served) -> None:
    page = _page(served, "probes")
    assert "Probe fingerprints (probe set v" in page
    assert "No probe runs of this probe set" in page


def test_two_queries_at_once_share_one_locked_database(served: Served) -> None:
    # DuckDB shares one database among a process's connections to a file, settings and
    # configuration lock included: the viewer's second concurrent query finds it locked.
    from analyzer.readonly_sql import read_only_query

    first = duckdb.connect(str(served.db), read_only=True)
    second = duckdb.connect(str(served.db), read_only=True)
    try:
        assert read_only_query(first, served.db, "SELECT count(*) FROM runs", 10)[1] == [(3,)]
        assert read_only_query(second, served.db, "SELECT count(*) FROM runs", 10)[1] == [(3,)]
        refused = duckdb.PermissionException
        with pytest.raises(refused):
            second.execute("SELECT * FROM read_csv('/etc/hostname')").fetchall()
    finally:
        first.close()
        second.close()


def test_the_held_file_is_let_go_when_a_writer_comes(tmp_path: Path) -> None:
    from analyzer.view.reading import StoreReader
    from traces.store.database import is_served, open_for_writing

    db = tmp_path / "t.duckdb"
    open_for_writing(db).close()  # a new store, migrated by its server, which then exits
    reader = StoreReader(db)
    try:
        with reader.connection() as conn:
            assert conn.execute("SELECT count(*) FROM runs").fetchone() == (0,)
            assert not is_served(conn)
        # Held now (no request for less than HOLD_S): a writer starting the store's server
        # gets the file all the same, within the 3 s it waits for it.
        writer = open_for_writing(db)
        try:
            with reader.connection() as conn:
                assert is_served(conn)
                assert conn.execute("SELECT count(*) FROM runs").fetchone() == (0,)
        finally:
            writer.close()
    finally:
        reader.close()


@pytest.mark.slow
def test_a_lake_store_is_attached_once_and_shows_every_new_run(tmp_path: Path) -> None:
    """Attaching a lake costs far more than a page, so the viewer holds it; each page still
    reads the newest snapshot, with runs another process committed meanwhile."""
    from analyzer.view.reading import StoreReader
    from traces.store.lake import parse

    lake = f"ducklake:sqlite:{tmp_path / 'c.sqlite'}"
    demo = run_cli("demo", "--db", lake, "--data-path", str(tmp_path / "data"))
    assert demo.returncode == 0, demo.stderr
    reader = StoreReader(parse(lake))
    try:
        with reader.connection() as conn:
            assert conn.execute("SELECT count(*) FROM runs").fetchone() == (1,)
        held = reader._held
        with viewing(lake) as viewer:
            assert "1 run, showing 1–1" in _get(viewer.url + "runs")[2]
            assert run_cli("demo", "--db", lake).returncode == 0
            assert "2 runs" in _get(viewer.url + "runs")[2]
        with reader.connection() as conn:
            assert conn.execute("SELECT count(*) FROM runs").fetchone() == (2,)
        assert reader._held is held  # the same attachment, not a new one per request
    finally:
        reader.close()


def test_a_writer_wanting_the_store_is_seen_without_blocking(tmp_path: Path) -> None:
    import fcntl
    import os

    from traces.store import rendezvous

    db = tmp_path / "t.duckdb"
    where = rendezvous.address(db)
    rendezvous.prepare(where)
    assert not rendezvous.wanted(db)  # no lock file was ever made: nobody wants it
    for lock in (where.spawn_lock, where.life_lock):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # as a client starting a server, or a server
            assert rendezvous.wanted(db)
        finally:
            os.close(fd)
        assert not rendezvous.wanted(db)
