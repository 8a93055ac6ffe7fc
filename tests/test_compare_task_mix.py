"""Like with like: groups compared on the tasks they all ran, in the same proportions."""

from __future__ import annotations

import duckdb
import pytest

from analyzer.compare.selection import SELECTED
from analyzer.compare.task_mix import keep_shared_tasks, notes


def _selection(runs: dict[str, list[str]]) -> duckdb.DuckDBPyConnection:
    """A selection table of runs: group -> the task of each of its runs."""
    conn = duckdb.connect()
    conn.execute(f"CREATE TEMP TABLE {SELECTED} (run_id VARCHAR, grp VARCHAR, task VARCHAR)")
    rows = [(f"{g}-{i}", g, task) for g, tasks in runs.items() for i, task in enumerate(tasks)]
    conn.executemany(f"INSERT INTO {SELECTED} VALUES (?, ?, ?)", rows)
    return conn


def _kept(conn: duckdb.DuckDBPyConnection) -> list[tuple[str, ...]]:
    return conn.execute(
        f"SELECT grp, task, count(*) FROM {SELECTED} GROUP BY ALL ORDER BY ALL"
    ).fetchall()


def test_tasks_not_run_by_every_group_are_left_out_and_listed() -> None:
    conn = _selection({"a": ["x", "x", "y"], "b": ["x", "x"], "c": ["x", "x", "z"]})
    mix = keep_shared_tasks(conn)
    assert mix.shared == ["x"] and mix.comparable
    assert mix.left_out == {"a": {"y": ["a-2"]}, "c": {"z": ["c-2"]}}
    assert _kept(conn) == [("a", "x", 2), ("b", "x", 2), ("c", "x", 2)]
    [note] = notes(mix, 3)
    assert "Compared on the tasks every group ran (x)" in note
    assert "a: 1 run(s) of y; c: 1 run(s) of z" in note


def test_no_shared_task_keeps_everything_and_judges_nothing() -> None:
    conn = _selection({"a": ["x"], "b": ["y"]})
    mix = keep_shared_tasks(conn)
    assert mix.shared == [] and not mix.comparable and mix.left_out == {}
    assert len(_kept(conn)) == 2
    assert "No task was run by every group" in notes(mix, 2)[0]


@pytest.mark.parametrize(
    ("runs", "same"),
    [
        ({"a": ["x", "y"], "b": ["x", "x", "y", "y"]}, True),  # 1:1 and 2:2
        ({"a": ["x", "y"], "b": ["x", "x", "x", "y"]}, False),  # 1:1 and 3:1
    ],
)
def test_different_proportions_of_the_shared_tasks_are_not_judged(
    runs: dict[str, list[str]], same: bool
) -> None:
    mix = keep_shared_tasks(_selection(runs))
    assert mix.shared == ["x", "y"] and mix.same_proportions is same and mix.comparable is same
    assert any("different proportions" in n for n in notes(mix, 2)) is not same


def test_one_group_is_kept_whole() -> None:
    conn = _selection({"a": ["x", "y", "y"]})
    mix = keep_shared_tasks(conn)
    assert mix.shared == ["x", "y"] and mix.comparable and notes(mix, 1) == []
