"""A running run's findings so far: stored as partial, replaced by the check of its end, and
never the other way round (issue 12 item 1).

Real runs recorded against the simulator into a real file; a run is made `running` again (as
its recorder leaves it until it ends) to be checked as the live checks check it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from shared_work import session_shared
from test_checks_faults import corpus_recordings, recorded_corpus

from analyzer.checks.live import check_interval
from analyzer.checks.persist import analyze_runs
from analyzer.checks.timing import Timings
from traces.store.database import open_file_for_writing

from conftest import CliRun, corpus_in_this_run, query_rows
from recording import recorded_once
from view_server import viewing

_RUNNING = (
    "UPDATE runs SET status = 'running', termination = NULL, ended_at = NULL, "
    "recorder_pid = ?, recorder_host = ? WHERE id = ?"
)


def make_running(conn: duckdb.DuckDBPyConnection, run_id: str) -> None:
    """Make the run `running` again, its recorder this live process: readers show a running
    run whose recorder is gone as interrupted, and the corpus may have been recorded by a
    process that has ended (`recording.recording_in_background`)."""
    conn.execute(_RUNNING, [os.getpid(), socket.gethostname(), run_id])


_ENDED = "UPDATE runs SET status = 'completed', termination = 'completed', ended_at = now()"
_OF_STEPS = {
    "step_rows": "idx",  # the base table of the view `steps`
    "step_message_keys": "step_idx",
    "tool_call_rows": "step_idx",  # the base table of the view `tool_calls`
    "tool_result_rows": "step_idx",  # the base table of the view `tool_results`
}
"""The tables holding a run's steps, and their step column."""


def _hide_steps_after(conn: duckdb.DuckDBPyConnection, run_id: str, last: int) -> None:
    """The run as it was when its step `last` had just been committed: the later steps are
    moved aside (`_restore_steps` puts them back, as the recording commits them)."""
    for table, step in _OF_STEPS.items():
        later = f"FROM {table} WHERE run_id = ? AND {step} > ?"
        conn.execute(f"CREATE TABLE later_{table} AS SELECT * {later}", [run_id, last])
        conn.execute(f"DELETE {later}", [run_id, last])


def _restore_steps(conn: duckdb.DuckDBPyConnection) -> None:
    for table in _OF_STEPS:
        conn.execute(f"INSERT INTO {table} SELECT * FROM later_{table}")


_SCENARIO = "hallucinated_tool"


@pytest.fixture(scope="module")
def _recorded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    """A run whose every step has findings (the model calls a tool the task lacks): the
    fault corpus's when this run records the corpus anyway (recorded once per test run for
    every module that analyzes it); otherwise (the fast path) that scenario alone, recorded
    the same way: 0.6 s of CPU instead of the whole corpus's 119 runs (6 s, and 10 to 30 s of
    this worker's time)."""
    if corpus_in_this_run(request.session):
        db, every = recorded_corpus(tmp_path_factory, "so_far")
    else:
        db = tmp_path_factory.mktemp("so_far") / "t.duckdb"
        alone = {_SCENARIO: corpus_recordings()[_SCENARIO]}
        every = recorded_once(session_shared(tmp_path_factory), "so-far", alone, db)
    return db, every[_SCENARIO].id


@pytest.fixture
def running(_recorded: tuple[Path, str], tmp_path: Path) -> tuple[Path, str]:
    """A copy of the store whose run reads as still being recorded, never analyzed."""
    source, run_id = _recorded
    db = tmp_path / "running.duckdb"
    shutil.copy(source, db)
    with contextlib.closing(open_file_for_writing(db)) as conn:
        make_running(conn, run_id)
    return db, run_id


def _state(db: Path, run_id: str) -> tuple[int, list[dict[str, object]], str | None]:
    """The run's stored findings, its so-far rows, its failure summary."""
    findings = query_rows(db, "SELECT count(*) AS n FROM findings WHERE run_id = ?", [run_id])
    so_far = query_rows(db, "SELECT through_step FROM findings_so_far WHERE run_id = ?", [run_id])
    [summary] = query_rows(db, "SELECT failure_summary FROM runs WHERE id = ?", [run_id])
    return int(str(findings[0]["n"])), so_far, summary["failure_summary"]  # type: ignore[return-value]


def _listed(cli: CliRun, db: Path, run_id: str) -> dict[str, object]:
    """The run's row of `traces runs --json`."""
    listed = json.loads(cli("runs", "--limit", "0", "--db", str(db), "-f", "json").stdout)
    [row] = [r for r in listed if r["id"] == run_id]
    return row  # type: ignore[no-any-return]


def _last_step(db: Path, run_id: str) -> int:
    [row] = query_rows(db, "SELECT max(idx) AS last FROM steps WHERE run_id = ?", [run_id])
    return int(str(row["last"]))


def test_a_running_runs_findings_are_stored_so_far_and_replaced_once_it_ends(
    running: tuple[Path, str], cli: CliRun
) -> None:
    db, run_id = running
    last = _last_step(db, run_id)
    # Its first steps only, as a check during the recording sees them.
    with contextlib.closing(open_file_for_writing(db)) as conn:
        _hide_steps_after(conn, run_id, 2)
        found = analyze_runs(conn, [run_id], only_running=True)
    partial, so_far, summary = _state(db, run_id)
    assert partial == len(found[run_id]) > 0
    assert so_far == [{"through_step": 2}]
    assert summary and "unknown_tool×3" in summary

    # Every reading command says how far they go.
    row = _listed(cli, db, run_id)
    assert (row["findings_so_far"], row["findings_through_step"]) == (True, 2)
    assert row["findings"] == partial
    table = cli("runs", "--limit", "0", "--db", str(db)).stdout
    assert "so far, up to step 2: error: " in table
    assert "failures so far, up to step 2: error: " in cli("show", run_id, "--db", str(db)).stdout
    listed = json.loads(cli("failures", "--run", run_id, "--db", str(db), "-f", "json").stdout)
    assert {f["so_far"] for f in listed} == {"up to step 2"}
    with viewing(db) as viewer:  # and the viewer's runs and run pages
        for path in ("runs?status=running", f"runs/{run_id}"):
            with urllib.request.urlopen(viewer.url + path, timeout=30) as page:
                assert "so far, up to step 2:" in page.read().decode(), path

    # The run records its other steps and ends: its check replaces them, and the label goes.
    with contextlib.closing(open_file_for_writing(db)) as conn:
        _restore_steps(conn)
        conn.execute(_ENDED + " WHERE id = ?", [run_id])
        final = analyze_runs(conn, [run_id])
    whole, so_far, summary = _state(db, run_id)
    assert whole == len(final[run_id]) > partial
    assert so_far == []
    assert last > 2
    row = _listed(cli, db, run_id)
    assert (row["findings_so_far"], row["findings_through_step"]) == (False, None)
    assert "so far" not in cli("runs", "--limit", "0", "--db", str(db)).stdout


class _EndsMeanwhile(Timings):
    """An analysis's timings that, the first time it stores, first has another connection
    end the run and store its final findings: the check read the running run, and writes
    after the run's end was checked whole."""

    def __init__(self, other: duckdb.DuckDBPyConnection, run_id: str) -> None:
        super().__init__()
        self.other = other
        self.run_id = run_id
        self.final: int | None = None

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[None]:
        if name == "store" and self.final is None:
            self.other.execute(_ENDED + " WHERE id = ?", [self.run_id])
            self.final = len(analyze_runs(self.other, [self.run_id])[self.run_id])
        with super().part(name):
            yield


@pytest.mark.parametrize("only_running", [True, False], ids=["live check", "analyze"])
def test_a_check_of_the_running_run_never_replaces_the_findings_of_its_end(
    running: tuple[Path, str], only_running: bool
) -> None:
    db, run_id = running
    with contextlib.closing(open_file_for_writing(db)) as conn:
        # Another connection: a transaction of its own, as the recorder's and a checker's.
        raced = _EndsMeanwhile(conn.cursor(), run_id)
        found = analyze_runs(conn, [run_id], only_running=only_running, timings=raced)
    stored, so_far, _ = _state(db, run_id)
    # The check that read the run running lost: what the end's check stored stays, final.
    assert raced.final is not None and stored == raced.final
    assert so_far == []
    if only_running:
        assert found == {}  # it ended: not the live check's to store
    else:
        assert len(found[run_id]) == raced.final  # done again on the ended run


def test_an_interrupted_run_keeps_its_findings_so_far_until_analyzed(
    running: tuple[Path, str], cli: CliRun
) -> None:
    db, run_id = running
    with contextlib.closing(open_file_for_writing(db)) as conn:
        analyze_runs(conn, [run_id], only_running=True)
        conn.execute(
            "UPDATE runs SET status = 'interrupted', termination = 'interrupted' WHERE id = ?",
            [run_id],
        )
    last = _last_step(db, run_id)
    row = _listed(cli, db, run_id)
    assert row["status"] == "interrupted"
    assert (row["findings_so_far"], row["findings_through_step"]) == (True, last)
    done = cli("analyze", run_id, "--db", str(db))
    assert done.returncode == 0, done.stderr
    assert _state(db, run_id)[1] == []


def test_compare_and_report_leave_an_interrupted_runs_outcome_out_and_count_the_steps_checked(
    running: tuple[Path, str], cli: CliRun, tmp_path: Path
) -> None:
    """An interrupted run was stopped by its recorder, not by the host: "final answer given"
    must not count it as a run without one. Its findings so far cover the steps checked, not
    the steps recorded after them."""
    db, run_id = running
    with contextlib.closing(open_file_for_writing(db)) as conn:
        _hide_steps_after(conn, run_id, 2)
        partial = len(analyze_runs(conn, [run_id], only_running=True)[run_id])
        _restore_steps(conn)
        conn.execute(
            "UPDATE runs SET status = 'interrupted', termination = 'interrupted' WHERE id = ?",
            [run_id],
        )
    assert _last_step(db, run_id) > 2
    compared = cli("compare", "--run", run_id, "--db", str(db), "-f", "json")
    assert compared.returncode == 0, compared.stderr
    report = json.loads(compared.stdout)
    metrics = {m["key"]: m["values"] for m in report["metrics"]}
    assert metrics["completion_rate"] == {} and metrics["provider_error_rate"] == {}
    [per_100] = metrics["findings_per_100_steps"].values()
    assert per_100["value"] == pytest.approx(partial * 100 / 3)  # steps 0-2 were checked
    notes = " ".join(report["notes"])
    assert "1 of 1 runs were interrupted" in notes
    assert "the findings of 1 of 1 runs are so far" in notes
    assert "success of" not in notes  # not an endpoint failure nothing judged
    html = tmp_path / "report.html"
    made = cli("report", "--run", run_id, "--db", str(db), "--html", str(html))
    assert made.returncode == 0, made.stderr
    assert f"{partial} findings so far, up to step 2" in html.read_text()


def test_the_live_check_interval_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for text, every in [("0.5", 0.5), ("0", 0.0), ("off", 0.0), ("nan", 0.0), ("-1", 0.0)]:
        monkeypatch.setenv("TRACES_LIVE_CHECK_S", text)
        assert check_interval() == every
    monkeypatch.delenv("TRACES_LIVE_CHECK_S")
    assert check_interval() == 5.0
