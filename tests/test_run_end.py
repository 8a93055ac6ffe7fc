"""Whose fault a failed run's end was, read the same way by every reader: a run whose second
turn came back empty after reasoning ends `model_error` (what the recorder saw), and the
checks lay the empty turn on the host (`empty_turn_after_reasoning`, provider); `runs`,
`show`, `compare` ("ended by provider error") and the HTML report then say the provider
ended it, with the finding that says so, and keep the termination as observed. Where no
finding explains the end, the termination's own layer stands."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import pytest

from analyzer.checks.persist import analyze_recorded
from analyzer.queries import list_runs, run_detail
from traces.replay import ReplayPolicy
from traces.sim.config import SimConfig
from traces.store.database import open_file_for_writing, open_for_reading

from conftest import run_cli_in_process
from recording import Recording, record_many


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Host `sim-deepseek` cuts the second turn after its reasoning; host `sim` is clean."""
    db = tmp_path_factory.mktemp("run_end") / "t.duckdb"
    runs = record_many(
        db,
        {
            "emptied": Recording(
                sim=SimConfig(seed=0, dialect="deepseek", faults={"late_empty_turn": 1.0}),
                dialect="deepseek",
            ),
            "clean": Recording(sim=SimConfig(seed=0)),
            # The client drops the reasoning the host requires back: the host's 400 ends the
            # run `provider_error`, and the fault is the client's.
            "refused": Recording(
                sim=SimConfig(seed=0, dialect="sglang", faults={"reasoning_required_400": 1.0}),
                dialect="sglang",
                settings={"replay": ReplayPolicy(reasoning="drop")},
            ),
        },
    )
    ids = {name: summary.id for name, summary in runs.items()}
    analyze_recorded(db, list(ids.values()))
    return db, ids


def _cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    done = run_cli_in_process(capsys, monkeypatch, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_runs_and_show_lay_an_empty_second_turn_on_the_host(
    store: tuple[Path, dict[str, str]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db, ids = store
    listed = {
        run["id"]: run
        for run in json.loads(_cli(capsys, monkeypatch, "runs", "-f", "json", "--db", str(db)))
    }
    emptied, clean = listed[ids["emptied"]], listed[ids["clean"]]
    assert emptied["termination"] == "model_error"  # as the recorder saw it
    assert (emptied["ended_by"], emptied["ended_by_kind"]) == (
        "provider",
        "empty_turn_after_reasoning",
    )
    assert clean["termination"] == "completed"
    assert (clean["ended_by"], clean["ended_by_kind"]) == (None, None)
    refused = listed[ids["refused"]]
    assert refused["termination"] == "provider_error"
    assert (refused["ended_by"], refused["ended_by_kind"]) == ("client", "http_reasoning_required")
    table = _cli(capsys, monkeypatch, "runs", "--wide", "--db", str(db))
    assert "ended_by" in table and "provider" in table
    shown = _cli(capsys, monkeypatch, "show", ids["emptied"], "--db", str(db))
    assert "termination model_error" in shown
    assert "ended by provider (empty_turn_after_reasoning)" in shown
    assert "ended by" not in _cli(capsys, monkeypatch, "show", ids["clean"], "--db", str(db))


def test_compare_and_the_report_count_it_as_ended_by_the_provider(
    store: tuple[Path, dict[str, str]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    db, _ids = store
    compared = json.loads(_cli(capsys, monkeypatch, "compare", "--db", str(db), "-f", "json"))
    rates = {m["key"]: m["values"] for m in compared["metrics"]}["provider_error_rate"]
    assert rates["sim-deepseek"]["value"] == 1.0
    assert rates["sim"]["value"] == 0.0
    assert rates["sim-sglang"]["value"] == 0.0  # ended by the client's mistake
    html = tmp_path / "report.html"
    _cli(capsys, monkeypatch, "report", "--db", str(db), "--html", str(html))
    page = html.read_text(encoding="utf-8")
    assert "model_error" in page
    assert "ended by provider (empty_turn_after_reasoning)" in page


def test_without_a_finding_on_the_last_step_the_termination_names_the_layer(
    store: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    db, ids = store
    copy = tmp_path / "t.duckdb"
    shutil.copyfile(db, copy)
    with contextlib.closing(open_file_for_writing(copy)) as conn:
        conn.execute(
            "DELETE FROM findings WHERE run_id = ? AND kind = 'empty_turn_after_reasoning'",
            [ids["emptied"]],
        )
    with open_for_reading(copy) as conn:
        [row] = [r for r in list_runs(conn) if r["id"] == ids["emptied"]]
        detail = run_detail(conn, ids["emptied"])
    assert (row["ended_by"], row["ended_by_kind"]) == ("model", None)
    assert (detail["ended_by"], detail["ended_by_kind"]) == ("model", None)


def test_compare_says_how_many_runs_retention_was_undecided(
    store: tuple[Path, dict[str, str]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A ledger whose behaviours left the reasoning's retention undecided (fitted, no share
    holding 0.7: sent and kept stored null) is left out of the ratio, and a note counts it."""
    db, ids = store
    copy = tmp_path / "t.duckdb"
    shutil.copyfile(db, copy)
    compared = json.loads(_cli(capsys, monkeypatch, "compare", "--db", str(copy), "-f", "json"))
    assert not [n for n in compared["notes"] if "undecided" in n]
    with contextlib.closing(open_file_for_writing(copy)) as conn:
        [(behaviour,)] = conn.execute(
            "SELECT reasoning_behaviour FROM ledgers WHERE run_id = ?", [ids["clean"]]
        ).fetchall()
        assert behaviour is not None  # fitted: a behaviour was the most probable
        conn.execute(
            "UPDATE ledgers SET reasoning_sent_tokens = NULL, reasoning_kept_tokens = NULL "
            "WHERE run_id = ?",
            [ids["clean"]],
        )
    compared = json.loads(_cli(capsys, monkeypatch, "compare", "--db", str(copy), "-f", "json"))
    [note] = [n for n in compared["notes"] if "undecided" in n]
    assert note.startswith("sim: what the host kept is undecided for the reasoning of 1 of 1")
