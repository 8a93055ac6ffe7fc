"""Which runs a comparison takes: probe runs only when asked, named runs whatever their origin."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer.compare.group_by import GroupBy
from analyzer.compare.selection import SELECTED, Selection, parse_moment, select_runs
from traces.errors import TracesError
from traces.store.database import open_for_writing


def _db(path: Path) -> None:
    conn = open_for_writing(path)
    for run_id, origin in [("rec", "recorded"), ("imp", "imported"), ("prb", "probe")]:
        conn.execute(
            "INSERT INTO runs (id, task, task_path, task_sha256, provider, model, base_url,"
            " settings, seed, status, termination, started_at, recorder_pid, recorder_host,"
            " origin) VALUES (?, 't', 'p', 'h', 'sim', 'm', 'u', '{}', 1, 'completed',"
            " 'completed', now(), 1, 'h', ?)",
            [run_id, origin],
        )
    conn.close()


def _selected(path: Path, selection: Selection) -> set[str]:
    conn = open_for_writing(path)
    try:
        select_runs(conn, selection)
        return {r[0] for r in conn.execute(f"SELECT run_id FROM {SELECTED}").fetchall()}
    finally:
        conn.close()


def test_probe_runs_are_left_out_unless_asked_for(tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    _db(db)
    assert _selected(db, Selection()) == {"rec", "imp"}
    assert _selected(db, Selection(origins=["probe"])) == {"prb"}
    # Runs named one by one are taken whatever their origin.
    assert _selected(db, Selection(run_ids=["prb", "rec"])) == {"prb", "rec"}


def test_moments_are_read_as_utc_and_bad_ones_name_the_option() -> None:
    moment = parse_moment("--since", "2025-11-24T10:00+02:00")
    assert moment is not None and moment.isoformat() == "2025-11-24T08:00:00"
    with pytest.raises(TracesError, match="--until 'yesterday'"):
        parse_moment("--until", "yesterday")


@pytest.mark.parametrize(
    ("by", "groups"),
    [
        (GroupBy.day, ["sim 2026-11-29", "sim 2026-11-30", "sim 2026-12-01"]),
        # 2026-11-29 is a Sunday, the last day of ISO week 48; the 30th begins week 49.
        (GroupBy.week, ["sim 2026-W48", "sim 2026-W49", "sim 2026-W49"]),
    ],
)
def test_drift_groups_one_provider_by_the_day_or_week_its_runs_started(
    tmp_path: Path, by: GroupBy, groups: list[str]
) -> None:
    db = tmp_path / "t.duckdb"
    _db(db)
    conn = open_for_writing(db)
    for run_id, day in [("rec", "2026-11-29"), ("imp", "2026-11-30"), ("prb", "2026-12-01")]:
        conn.execute(
            "UPDATE runs SET started_at = ?::TIMESTAMP + INTERVAL 23 HOUR WHERE id = ?",
            [day, run_id],
        )
    try:
        select_runs(conn, Selection(by=by, origins=["recorded", "imported", "probe"]))
        got = conn.execute(f"SELECT grp FROM {SELECTED} ORDER BY run_id").fetchall()
    finally:
        conn.close()
    # ordered by run id: imp, prb, rec
    assert [g for (g,) in got] == [groups[1], groups[2], groups[0]]
