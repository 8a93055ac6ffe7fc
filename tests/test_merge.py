"""`traces merge SRC… --into DST`: runs moved between real stores, made by recording against
the simulator over HTTP, importing the exchange fixtures (tests/fixtures/import/) and
running the checks, as two laptops would have them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from analyzer.checks.persist import analyze_runs
from traces.errors import DatabaseError
from traces.importing import ImportOptions, import_files
from traces.sim.server import SimServer
from traces.store.database import open_file_for_writing, open_for_writing
from traces.store.merge import attach_file, copy_source, merge_stores
from traces.store.migrations import latest_version
from traces.store.run_tables import (
    KEYED,
    OWN,
    REFERENCES,
    RUN_COLUMN,
    Role,
    classify,
    store_tables,
)

from conftest import REPO, migrate_to, run_cli, run_cli_in_process, table_counts
from recording import record
from run_keys import disagreements, without_keys

IMPORTS = REPO / "tests" / "fixtures" / "import"


def _store(path: Path, sim: SimServer, *, stream: bool, log: str) -> Path:
    """A laptop's store: two recorded runs, one imported file, every run checked; one
    recorded run was interrupted, its findings those of a check while it ran."""
    [partial, _] = record(
        path, sim.base_url, "chain_short", stream=stream, repeat=2, seed=3 if stream else 0
    )
    import_files(path, [IMPORTS / log], ImportOptions(provider="acme"))
    conn = open_for_writing(path)
    try:
        ids = [r for (r,) in conn.execute("SELECT id FROM runs").fetchall()]
        ended = "UPDATE runs SET status = ?, termination = ? WHERE id = ?"
        conn.execute(ended, ["running", None, partial.id])
        analyze_runs(conn, ids)
        conn.execute(ended, ["interrupted", "interrupted", partial.id])
    finally:
        conn.close()
    return path


@pytest.fixture(scope="module")
def laptops(tmp_path_factory: pytest.TempPathFactory, sim: SimServer) -> tuple[Path, Path]:
    """Two stores made apart: recorded (plain, streamed), imported (exchange log, K2VV)."""
    base = tmp_path_factory.mktemp("laptops")
    a = _store(base / "a.duckdb", sim, stream=False, log="exchanges.jsonl")
    b = _store(base / "b.duckdb", sim, stream=True, log="k2vv_results.jsonl")
    return a, b


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated store without runs (creating one costs more than copying it)."""
    path = tmp_path_factory.mktemp("empty") / "empty.duckdb"
    open_for_writing(path).close()
    return path


@pytest.fixture
def into(empty_store: Path, tmp_path: Path) -> Path:
    """An existing, empty destination store."""
    path = tmp_path / "merged.duckdb"
    shutil.copyfile(empty_store, path)
    return path


@pytest.fixture
def stores(laptops: tuple[Path, Path], tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """Fresh copies of the two laptops' stores, for a test to change."""
    copies = []
    for source in laptops:
        copies.append(tmp_path / source.name)
        shutil.copyfile(source, copies[-1])
    yield copies[0], copies[1]


_VIEWED = {
    "tool_result_rows": "tool_results",
    "step_rows": "steps",
    "tool_call_rows": "tool_calls",
}
"""Base tables dumped as their view gives them: a tool's output stored once (by an import,
or migration 16 on an older source) or in full (by a recorder) is the same value, and so is a
step's reasoning (migration 17), usage and request id, and a call's raw arguments (21)."""


def _dump(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table but the store's own bookkeeping, in a stable order."""
    with duckdb.connect(str(db), read_only=True) as conn:
        return {
            table: sorted(
                conn.execute(without_keys(conn, _VIEWED.get(table, table))).fetchall(), key=repr
            )
            for table in store_tables(conn, _catalog(conn))
            if table not in OWN
        }


def _catalog(conn: duckdb.DuckDBPyConnection) -> str:
    row = conn.execute("SELECT current_database()").fetchone()
    assert row is not None
    return str(row[0])


def _union(*dumps: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    """The rows of several stores as one store holds them (a message once, by its hash)."""
    tables: dict[str, list[tuple[Any, ...]]] = {}
    for dump in dumps:
        for table, rows in dump.items():
            tables.setdefault(table, []).extend(rows)
    for table, rows in tables.items():
        if table == "messages":
            rows = list({row[0]: row for row in rows}.values())
        tables[table] = sorted(rows, key=repr)
    return tables


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _runs(db: Path) -> dict[str, dict[str, Any]]:
    with duckdb.connect(str(db), read_only=True) as conn:
        cursor = conn.execute("SELECT * FROM runs")
        names = [d[0] for d in cursor.description or []]
        return {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}


# -- which tables move -------------------------------------------------------------------------


def test_every_table_of_a_store_has_a_place_in_a_merge(empty_store: Path) -> None:
    """A table added by a later migration is copied with its runs if it has a run_id column,
    and otherwise refuses merges until `run_tables` says how to move it: never left out."""
    with duckdb.connect(str(empty_store), read_only=True) as conn:
        tables = store_tables(conn, _catalog(conn))
    roles = classify(tables)
    assert set(roles) == set(tables)
    assert {t for t, role in roles.items() if role is Role.own} == set(OWN)
    for table, role in roles.items():
        if role is Role.per_run:
            assert RUN_COLUMN in tables[table]
        if role in (Role.runs, Role.shared):
            keyed = KEYED[table]
            assert {keyed.key, *keyed.identity} <= set(tables[table]), table
    # Today's run-scoped tables are all among them.
    assert {t for t, r in roles.items() if r is Role.per_run} >= {
        "step_rows",
        "step_message_keys",
        "tool_call_rows",
        "tool_result_rows",
        "findings",
        "ledgers",
    }


def test_a_table_merge_cannot_place_is_refused() -> None:
    assert classify({"verdicts": ("run_id", "verdict")}) == {"verdicts": Role.per_run}
    with pytest.raises(DatabaseError, match="table annotations has no run_id column"):
        classify({"runs": ("id",), "annotations": ("note",)})


def test_every_copied_table_gets_rows_from_the_fixture_stores(
    laptops: tuple[Path, Path],
) -> None:
    """The fixtures exercise every table a merge copies (else a test below proves nothing
    about one of them)."""
    for store in laptops:
        empty = [t for t, n in table_counts(store).items() if n == 0 and t not in OWN]
        assert empty == [], store


# -- copying ----------------------------------------------------------------------------------


def test_a_new_store_gets_every_row_of_its_source(
    stores: tuple[Path, Path], tmp_path: Path
) -> None:
    a, _ = stores
    into = tmp_path / "merged.duckdb"
    [report] = merge_stores([a], into)
    assert _dump(into) == _dump(a)
    runs = len(_runs(a))
    assert (report.runs, report.copied, report.skipped, report.renamed) == (runs, runs, 0, [])
    assert report.rows["step_rows"] == table_counts(a)["step_rows"] > 0


def test_merging_twice_changes_nothing(
    into: Path, stores: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = stores
    merge_stores([a, b], into)
    once = _dump(into)
    again = merge_stores([a, b], into)
    assert _dump(into) == once
    for report, source in zip(again, (a, b), strict=True):
        assert report.copied == 0 and report.present == report.runs == len(_runs(source))
        assert set(report.rows.values()) == {0}


def test_merging_two_stores_gives_their_union(
    into: Path, stores: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = stores
    merge_stores([a], into)
    merge_stores([b], into)  # into an existing store, as a later evening's merge
    assert _dump(into) == _union(_dump(a), _dump(b))
    # Keys are numbered in the destination (`_dump` leaves them out): b's after a's.
    with duckdb.connect(str(into), read_only=True) as conn:
        assert disagreements(conn) == []
        keys = dict(conn.execute("SELECT id, key FROM runs").fetchall())
    assert max(keys[run] for run in _runs(a)) < min(keys[run] for run in _runs(b))
    # Shared messages (the same task's system and user turns) are stored once.
    counts = table_counts(into)
    assert counts["messages"] < table_counts(a)["messages"] + table_counts(b)["messages"]


def test_the_sources_are_left_as_they_were(stores: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = stores
    before = _sha(a), _sha(b)
    merge_stores([a, b], tmp_path / "merged.duckdb")
    assert (_sha(a), _sha(b)) == before


# -- runs that collide, repeat or are unfinished -------------------------------------------------


def test_a_run_id_two_stores_gave_to_different_runs_is_renamed_and_found_again(
    into: Path, stores: tuple[Path, Path], tmp_path: Path
) -> None:
    """Run ids are the start second and 32 random bits: two laptops can draw the same. The
    other run is copied under a new id, with all its rows; merging again finds it there."""
    a, _ = stores
    other = tmp_path / "other.duckdb"
    shutil.copyfile(a, other)
    with duckdb.connect(str(other)) as conn:
        [(run_id,)] = conn.execute(
            "SELECT id FROM runs WHERE origin = 'recorded' ORDER BY id LIMIT 1"
        ).fetchall()
        conn.execute(  # another laptop's run, started the same second
            "UPDATE runs SET recorder_host = 'laptop-b', recorder_pid = 4242 WHERE id = ?",
            [run_id],
        )
        steps = conn.execute("SELECT count(*) FROM steps WHERE run_id = ?", [run_id]).fetchone()
    merge_stores([a], into)
    [report] = merge_stores([other], into)
    [(old, new)] = report.renamed
    assert old == run_id and new.startswith(run_id + "-") and len(new) == len(run_id) + 9
    assert report.copied == 1 and report.present == report.runs - 1
    merged = _runs(into)
    assert merged[run_id]["recorder_host"] != "laptop-b"
    assert merged[new]["recorder_host"] == "laptop-b"
    with duckdb.connect(str(into), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM steps WHERE run_id = ?", [new]).fetchone() == (
            steps
        )
        for table, (n,) in (
            (t, conn.execute(f"SELECT count(*) FROM {t} WHERE run_id = ?", [new]).fetchone())
            for t in ("step_messages", "tool_calls", "tool_results", "findings", "ledgers")
        ):
            assert n > 0 or table == "findings", table
    before = _dump(into)
    [again] = merge_stores([other], into)
    assert again.copied == 0 and again.present == again.runs and _dump(into) == before


def test_a_retry_keeps_pointing_at_its_run_when_both_are_renamed(
    into: Path, stores: tuple[Path, Path], tmp_path: Path
) -> None:
    a, _ = stores
    other = tmp_path / "other.duckdb"
    shutil.copyfile(a, other)
    with duckdb.connect(str(other)) as conn:
        failed, retry = (
            r
            for (r,) in conn.execute(
                "SELECT id FROM runs WHERE origin = 'recorded' ORDER BY id"
            ).fetchall()
        )
        conn.execute("UPDATE runs SET recorder_host = 'laptop-b' WHERE origin = 'recorded'")
        conn.execute("UPDATE runs SET retry_of = ? WHERE id = ?", [failed, retry])
    _references_are_declared(other)
    merge_stores([a, other], into)
    copies = {r["retry_of"]: i for i, r in _runs(into).items() if r["recorder_host"] == "laptop-b"}
    [(retried, copy)] = [(k, v) for k, v in copies.items() if k is not None]
    assert retried.startswith(failed + "-") and copy.startswith(retry + "-")
    assert _runs(into)[retried]["recorder_host"] == "laptop-b"


def _references_are_declared(store: Path) -> None:
    """Every column that holds a run's id in `store` is its run's (`run_id`, `runs.id`) or
    declared in `run_tables.REFERENCES`, which a merge renames along with the run."""
    with duckdb.connect(str(store), read_only=True) as conn:
        ids = {r for (r,) in conn.execute("SELECT id FROM runs").fetchall()}
        for table, columns in store_tables(conn, _catalog(conn)).items():
            for column in columns:
                if (table, column) in (("runs", "id"),) or column == RUN_COLUMN:
                    continue
                kind = conn.execute(
                    "SELECT data_type FROM duckdb_columns() WHERE table_name = ? "
                    "AND column_name = ?",
                    [table, column],
                ).fetchone()
                if kind is None or kind[0] != "VARCHAR":
                    continue
                found = conn.execute(f"SELECT DISTINCT {column} FROM {table}").fetchall()
                values = {v for (v,) in found}
                if values & ids:
                    assert REFERENCES.get((table, column)) == "runs", (table, column)


def test_no_column_holds_run_ids_undeclared(laptops: tuple[Path, Path]) -> None:
    for store in laptops:
        _references_are_declared(store)


def test_an_import_id_two_stores_gave_to_different_files_is_renamed_with_its_runs(
    into: Path, stores: tuple[Path, Path], tmp_path: Path
) -> None:
    a, _ = stores
    other = tmp_path / "other.duckdb"
    shutil.copyfile(a, other)
    with duckdb.connect(str(other)) as conn:
        [(import_id,)] = conn.execute("SELECT id FROM imports").fetchall()
        # Another file, imported the same second on another laptop, its runs other runs.
        conn.execute("UPDATE imports SET sha256 = 'f' || sha256[2:], path = 'elsewhere.jsonl'")
        conn.execute("UPDATE runs SET recorder_host = 'laptop-b' WHERE import_id = ?", [import_id])
        imported = conn.execute(
            "SELECT count(*) FROM runs WHERE import_id = ?", [import_id]
        ).fetchone()
    merge_stores([a, other], into)
    with duckdb.connect(str(into), read_only=True) as conn:
        renamed = conn.execute("SELECT id FROM imports WHERE path = 'elsewhere.jsonl'").fetchone()
        assert renamed is not None and renamed[0].startswith(import_id + "-")
        assert (
            conn.execute(
                "SELECT count(*) FROM runs WHERE import_id = ? AND recorder_host = 'laptop-b'",
                [renamed[0]],
            ).fetchone()
            == imported
        )


def test_the_same_file_imported_on_two_laptops_is_copied_once(
    into: Path, empty_store: Path, stores: tuple[Path, Path], tmp_path: Path
) -> None:
    a, _ = stores
    other = tmp_path / "other.duckdb"
    shutil.copyfile(empty_store, other)
    import_files(other, [IMPORTS / "exchanges.jsonl"], ImportOptions(provider="acme"))
    merge_stores([a], into)
    before = _dump(into)
    [report] = merge_stores([other], into)
    assert report.duplicates == report.runs > 0 and report.copied == 0
    assert _dump(into) == before
    [report] = merge_stores([other], into, again=True)
    assert report.copied == report.runs and len(_runs(into)) == len(_runs(a)) + report.runs


def test_a_run_its_recorder_left_running_is_copied_as_interrupted(
    into: Path, stores: tuple[Path, Path], tmp_path: Path
) -> None:
    """A store file the merge can lock has no writer: a run still `running` there lost its
    recorder (on this host or another), and is ended as the next recorder would end it."""
    a, _ = stores
    with duckdb.connect(str(a)) as conn:
        [(run_id, steps)] = conn.execute(
            "SELECT id, steps FROM runs WHERE origin = 'recorded' ORDER BY id LIMIT 1"
        ).fetchall()
        conn.execute(
            "UPDATE runs SET status = 'running', termination = NULL, ended_at = NULL, "
            "steps = 0, prompt_tokens = NULL, recorder_host = 'laptop-b' WHERE id = ?",
            [run_id],
        )
    [report] = merge_stores([a], into)
    assert report.interrupted == 1 and report.copied == report.runs
    run = _runs(into)[run_id]
    assert (run["status"], run["termination"], run["steps"]) == (
        "interrupted",
        "interrupted",
        steps,
    )
    assert run["prompt_tokens"] is not None  # summed again from its steps


def test_a_live_source_keeps_its_running_runs_for_a_later_merge(
    into: Path, stores: tuple[Path, Path], tmp_path: Path
) -> None:
    """In a store with writers at work (a shared lake), `running` is the truth: such runs
    wait for the next merge."""
    a, _ = stores
    with duckdb.connect(str(a)) as conn:
        conn.execute("UPDATE runs SET status = 'running' WHERE id = (SELECT min(id) FROM runs)")
    conn = open_file_for_writing(into)  # as `merge_stores` opens a file: itself, to attach
    try:
        catalog = _catalog(conn)
        tables = store_tables(conn, catalog)
        source = attach_file(conn, a, "lake", tmp_path, tables)
        source.live = True
        conn.execute("BEGIN TRANSACTION")
        report = copy_source(conn, source, catalog, classify(tables), tables)
        conn.execute("COMMIT")
    finally:
        conn.close()
    assert report.running == 1 and report.copied == report.runs - 1
    assert report.interrupted == 0 and "running" not in {r["status"] for r in _runs(into).values()}


def test_a_run_that_moved_on_since_it_was_merged_is_reported(
    into: Path, stores: tuple[Path, Path], tmp_path: Path
) -> None:
    a, _ = stores
    merge_stores([a], into)
    with duckdb.connect(str(a)) as conn:  # resumed, or ended, after the merge
        conn.execute("UPDATE runs SET steps = steps + 1 WHERE id = (SELECT min(id) FROM runs)")
    before = _dump(into)
    [report] = merge_stores([a], into)
    assert report.outdated == 1 and report.copied == 0 and _dump(into) == before


# -- sources of another schema version ----------------------------------------------------------


def _downgraded(store: Path, path: Path, version: int) -> Path:
    """`store`'s rows in a store a release at schema `version` wrote: its tables and columns
    (migrations 1..version), a column that was NOT NULL then given as 0 when now unknown."""
    old = duckdb.connect(str(path))
    migrate_to(old, version)
    old.execute(f"ATTACH '{store}' AS new (READ_ONLY)")
    for table, columns in store_tables(old, _catalog(old)).items():
        if table in OWN:
            continue
        # NOT NULL then, nullable now (token totals): an old writer stored 0.
        zeroed = {
            c
            for (c, now) in old.execute(
                "SELECT o.column_name, n.is_nullable FROM duckdb_columns() o "
                "JOIN duckdb_columns() n ON n.table_name = o.table_name "
                "AND n.column_name = o.column_name AND n.database_name = 'new' "
                # A table now a view (step_messages): its columns read as nullable.
                "AND n.table_name IN (SELECT table_name FROM duckdb_tables() "
                "WHERE database_name = 'new') "
                "WHERE o.table_name = ? AND o.database_name = current_database() "
                "AND NOT o.is_nullable",
                [table],
            ).fetchall()
            if now
        }
        values = ", ".join(f"coalesce({c}, 0)" if c in zeroed else c for c in columns)
        old.execute(f"INSERT INTO {table} ({', '.join(columns)}) SELECT {values} FROM new.{table}")
    old.close()
    return path


@pytest.mark.parametrize("version", [5, 6])
def test_a_source_of_an_older_schema_merges_as_if_upgraded(
    into: Path,
    stores: tuple[Path, Path],
    tmp_path: Path,
    version: int,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Read from an upgraded copy: migration 6 rewrote token totals (unknown, not 0) and
    migration 7 added the ledgers, so the runs arrive as a store of today holds them,
    and the source file stays as it was."""
    _, b = stores  # its K2VV runs that failed have unknown token totals
    old = _downgraded(b, tmp_path / "old.duckdb", version)
    if version < 6:  # the rewrite matters: that release stored 0 for unknown totals
        unknown = {r for r, run in _runs(b).items() if run["prompt_tokens"] is None}
        assert unknown and {_runs(old)[r]["prompt_tokens"] for r in unknown} == {0}
    before = _sha(old)
    done = run_cli_in_process(capsys, monkeypatch, "merge", str(old), "--into", str(into))
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[0] == (
        f"note: {old} has schema version {version}: read from an upgraded temporary copy "
        "(the file is unchanged)"
    )
    assert f"merged {len(_runs(b))} runs" in done.stderr
    expected = _dump(b)
    expected["ledgers"] = []  # checks of that release kept none: `traces analyze` adds them
    expected["findings_so_far"] = []  # nor said which findings were a running run's so far
    assert _dump(into) == expected
    assert _sha(old) == before


def test_a_source_newer_than_this_code_is_refused(
    into: Path, stores: tuple[Path, Path], tmp_path: Path
) -> None:
    a, _ = stores
    with duckdb.connect(str(a)) as conn:
        conn.execute(
            "INSERT INTO schema_migrations VALUES (?, 'from the future', now())",
            [latest_version() + 1],
        )
    before = _dump(into)
    with pytest.raises(DatabaseError, match=f"schema version {latest_version() + 1} is newer"):
        merge_stores([a], into)
    assert _dump(into) == before


# -- bad input, interruptions ------------------------------------------------------------------


def _one_line(done: Any, code: int, *fragments: str) -> None:
    assert done.returncode == code, (done.stdout, done.stderr)
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and "Traceback" not in done.stderr
    for fragment in fragments:
        assert fragment in line, line


def test_bad_sources_are_one_line_and_leave_the_destination_alone(
    into: Path,
    stores: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = stores
    merge_stores([b], into)
    before = _dump(into)
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n")
    link = tmp_path / "link.duckdb"
    link.symlink_to(into)
    diverged = tmp_path / "diverged.duckdb"  # same version, another branch's schema
    shutil.copyfile(a, diverged)
    with duckdb.connect(str(diverged)) as conn:
        conn.execute("ALTER TABLE step_rows ADD COLUMN extra VARCHAR")
    foreign = tmp_path / "foreign.duckdb"
    with duckdb.connect(str(foreign)) as conn:
        conn.execute("CREATE TABLE t (x INTEGER)")
    cases = [
        ([str(tmp_path / "missing.duckdb")], 4, "missing.duckdb: no trace database here"),
        ([str(text)], 4, "notes.txt: cannot open database"),
        ([str(a), str(foreign)], 4, "foreign.duckdb: not a trace database"),
        (
            [str(diverged)],
            4,
            "diverged.duckdb: its tables differ from the destination's at the same schema "
            "version (step_rows)",
        ),
        ([str(into)], 2, "is the destination"),
        ([str(link)], 2, "link.duckdb: is the destination"),
        ([str(a), str(tmp_path / "." / a.name)], 2, "given twice"),
    ]
    for sources, code, fragment in cases:
        done = run_cli_in_process(capsys, monkeypatch, "merge", *sources, "--into", str(into))
        _one_line(done, code, fragment)
        assert _dump(into) == before
    new = tmp_path / "new.duckdb"
    _one_line(run_cli_in_process(capsys, monkeypatch, "merge", str(text), "--into", str(new)), 4)
    assert not new.exists() and not new.with_name(new.name + ".wal").exists()


@pytest.mark.parametrize("existed", [True, False], ids=["existing", "new"])
def test_ctrl_c_in_the_middle_leaves_the_destination_as_it_was(
    stores: tuple[Path, Path], tmp_path: Path, existed: bool
) -> None:
    a, b = stores
    into = tmp_path / "merged.duckdb"
    if existed:
        merge_stores([b], into)
    before = _dump(into) if existed else None

    def interrupt(done: int, total: int) -> None:
        if done == total // 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        merge_stores([a, b], into, on_step=interrupt)
    if existed:
        assert _dump(into) == before
    else:
        assert sorted(tmp_path.glob(into.name + "*")) == []


@pytest.mark.slow  # waits out the lock
def test_a_locked_destination_is_one_line_and_left_alone(
    into: Path, stores: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = stores
    merge_stores([b], into)
    before = _sha(into)
    holder = duckdb.connect(str(into))
    try:
        _one_line(run_cli("merge", str(a), "--into", str(into)), 4, "merged.duckdb", "locked")
    finally:
        holder.close()
    assert _sha(into) == before


def test_the_summary_in_every_format(
    into: Path,
    stores: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = stores
    args = ["merge", str(a), str(b), "--into", str(into)]
    done = run_cli_in_process(capsys, monkeypatch, *args, "--format", "json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [r["source"] for r in rows] == [str(a), str(b)]
    for row, source in zip(rows, (a, b), strict=True):
        assert row["runs"] == row["copied"] == len(_runs(source)) and row["skipped"] == 0
        assert row["steps"] == table_counts(source)["step_rows"] and row["seconds"] >= 0
    assert done.stderr.startswith("merged ")
    done = run_cli_in_process(capsys, monkeypatch, *args, "--format", "csv")
    assert done.stdout.splitlines()[0] == "source,runs,copied,skipped,renamed,steps,seconds"
    assert [line.split(",")[3] for line in done.stdout.splitlines()[1:]] == [
        str(len(_runs(a))),
        str(len(_runs(b))),
    ]
    done = run_cli_in_process(capsys, monkeypatch, *args)
    assert done.returncode == 0 and a.name in done.stdout and "skipped" in done.stdout


def test_notes_say_why_runs_were_skipped_renamed_or_ended(
    into: Path,
    empty_store: Path,
    stores: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, _ = stores
    merge_stores([a], into)
    again = tmp_path / "again.duckdb"  # the same file imported on another laptop
    shutil.copyfile(empty_store, again)
    import_files(again, [IMPORTS / "exchanges.jsonl"], ImportOptions(provider="acme"))
    later = tmp_path / "later.duckdb"  # the first laptop's store, a day later
    shutil.copyfile(a, later)
    with duckdb.connect(str(later)) as conn:
        first, second = (
            r
            for (r,) in conn.execute(
                "SELECT id FROM runs WHERE origin = 'recorded' ORDER BY id"
            ).fetchall()
        )
        conn.execute(  # another laptop's run under the same id, its recorder killed
            "UPDATE runs SET recorder_host = 'laptop-b', status = 'running' WHERE id = ?",
            [first],
        )
        conn.execute("UPDATE runs SET steps = steps + 1 WHERE id = ?", [second])  # resumed
    done = run_cli_in_process(
        capsys, monkeypatch, "merge", str(again), str(later), "--into", str(into)
    )
    assert done.returncode == 0, done.stderr
    [renamed] = _runs(into).keys() - _runs(a).keys()
    notes = done.stderr.splitlines()
    assert notes[:-1] == [
        f"note: {again}: 2 runs not copied: {into} imported the same files under other "
        "imports (--again copies them too)",
        f"note: {later}: run {first} is another run's id in {into}: copied as {renamed}",
        f"note: {later}: 1 run left running by a recorder that stopped: copied as interrupted",
        f"note: {later}: 1 run changed since {into}'s copy was merged (ended or resumed); "
        f"{into} keeps its copy",
    ]
    assert notes[-1].startswith("merged 1 run (") and str(into) in notes[-1]


# -- end to end: a store split in two and merged back answers as it did ---------------------------


def _split(full: Path, into: Path, keep: set[str]) -> Path:
    """A copy of `full` holding only the runs `keep` (every table that belongs to a run
    emptied of the others): one laptop's share of what was recorded."""
    shutil.copyfile(full, into)
    with duckdb.connect(str(into)) as conn:
        tables = store_tables(conn, _catalog(conn))
        for table, role in classify(tables).items():
            column = {Role.runs: "id", Role.per_run: RUN_COLUMN}.get(role)
            if column is not None:
                conn.execute(
                    f"DELETE FROM {table} WHERE NOT list_contains(?, {column})", [sorted(keep)]
                )
    return into


def _json_of(*args: str) -> Any:
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    return _to_12_digits(json.loads(done.stdout))


def _to_12_digits(value: Any) -> Any:
    """`value` with every float to 12 significant digits: DuckDB sums floats in parallel, in
    an order of its own, so the same rows stored otherwise can differ in the last digits."""
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, dict):
        return {k: _to_12_digits(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_12_digits(v) for v in value]
    return value


@pytest.mark.slow  # records a suite against two simulators through the CLI
def test_a_store_split_in_two_and_merged_answers_as_the_whole(tmp_path: Path) -> None:
    full = tmp_path / "full.duckdb"
    suite = tmp_path / "suite.toml"
    suite.write_text(
        'name = "merge"\ndescription = "Two laptops\' share."\n'
        "[defaults]\nstream = true\nconcurrency = 4\n"
        f'[[tasks]]\npath = "{REPO / "samples" / "tasks" / "chain_short.toml"}"\nrepeats = 4\n',
        encoding="utf-8",
    )
    recorded = run_cli(
        "compare", "--suite", str(suite), "--dialect", "openai",
        "--dialect", "openai:invalid_json_arguments=0.3", "--db", str(full),
    )  # fmt: skip
    assert recorded.returncode == 0, recorded.stderr
    imported = run_cli("import", str(IMPORTS / "exchanges.jsonl"), "--db", str(full))
    assert imported.returncode == 0, imported.stderr
    ids = sorted(_runs(full))
    a = _split(full, tmp_path / "a.duckdb", set(ids[::2]))
    b = _split(full, tmp_path / "b.duckdb", set(ids[1::2]))
    merged = tmp_path / "merged.duckdb"
    done = run_cli("merge", str(a), str(b), "--into", str(merged), "--format", "json")
    assert done.returncode == 0, done.stderr
    assert [row["copied"] for row in json.loads(done.stdout)] == [len(ids[::2]), len(ids[1::2])]
    assert _dump(merged) == _dump(full)
    for command in (
        ["runs", "--limit", "0"],
        ["failures"],
        ["steps"],
        ["compare", "--reference", "sim"],
    ):
        whole = _json_of(*command, "--db", str(full), "--format", "json")
        answer = _json_of(*command, "--db", str(merged), "--format", "json")
        if command[0] == "compare":  # when it was asked
            assert whole.pop("generated_at") and answer.pop("generated_at")
        assert whole and answer == whole, command


@pytest.mark.slow  # imports a few thousand exchanges first
def test_ctrl_c_stops_a_merge_and_leaves_the_destination_as_it_was(
    into: Path, stores: tuple[Path, Path], tmp_path: Path
) -> None:
    """A real SIGINT to the command's process group, while DuckDB copies: one line, 130,
    and the destination as it was (or, had the merge already committed, exit 0)."""
    _, b = stores
    lines = (IMPORTS / "exchanges.jsonl").read_text().splitlines()
    log = tmp_path / "many.jsonl"
    with log.open("w") as out:  # the fixture's conversations, 3000 times over
        for n in range(3000):
            for line in lines:
                exchange = json.loads(line)
                exchange["conversation"] = f"{exchange['conversation']}-{n}"
                out.write(json.dumps(exchange) + "\n")
    big = tmp_path / "big.duckdb"
    shutil.copyfile(into, big)
    import_files(big, [log], ImportOptions(provider="acme", workers=1))
    merge_stores([b], into)
    before = _dump(into)
    cli = subprocess.Popen(
        [sys.executable, "-m", "analyzer", "merge", str(big), "--into", str(into)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell gives a command
    )
    try:
        _wait_until_open(cli.pid, big)  # past start-up: the source is attached
        time.sleep(0.2)  # into the copy
        os.killpg(cli.pid, signal.SIGINT)
        out, err = cli.communicate(timeout=60)
    finally:
        if cli.poll() is None:
            os.killpg(cli.pid, signal.SIGKILL)
            cli.wait()
    after = _dump(into)
    # The union is built only when the destination changed: dumping and sorting the big
    # source's thousands of exchanges costs seconds, and an interrupted merge leaves none.
    if cli.returncode == 0:  # the machine was fast: the merge was done before the signal
        assert after == _union(before, _dump(big))
        return
    assert cli.returncode == 130, (out, err)
    assert err.splitlines() == ["error: interrupted"], err
    # As it was; or, for a signal in the moment between the commit and the exit, merged
    # whole: never a part.
    assert after == before or after == _union(before, _dump(big))


def _wait_until_open(pid: int, path: Path) -> None:
    """Wait until process `pid` has `path` open."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) == str(path) for fd in Path(f"/proc/{pid}/fd").iterdir()):
                return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} never opened {path}")
