"""`traces sql` is read-only in full: no write, export, attach, install or load, no other file
read without `--allow-files`, and every refusal is one line with exit code 2 that leaves the
database and the file system as they were."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from conftest import REPO, run_cli, run_cli_in_process, table_counts

FIXTURES = REPO / "tests" / "fixtures" / "import"


@pytest.fixture(scope="module")
def traces_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both import fixtures imported and checked: every table has rows."""
    db = tmp_path_factory.mktemp("sql") / "t.duckdb"
    done = run_cli(
        "import",
        str(FIXTURES / "exchanges.jsonl"),
        str(FIXTURES / "k2vv_results.jsonl"),
        "--provider",
        "other",
        "--db",
        str(db),
    )
    assert done.returncode == 0, done.stderr
    return db


@pytest.fixture(scope="module")
def pristine(traces_db: Path) -> tuple[dict[str, str], dict[str, int]]:
    """The database's folder (every file's digest) and row counts as the import left them:
    what every refused query must leave, one after the other."""
    return _tree(traces_db.parent), table_counts(traces_db)


def _tree(root: Path) -> dict[str, str]:
    """Every file under `root` with the sha256 of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


ATTACKS = [
    ("copy (select 1) to 'x.csv'", "COPY statements are refused"),
    ("copy (select * from runs) to 'other.duckdb'", "COPY statements are refused"),
    ("copy runs to 'runs.parquet' (format parquet)", "COPY statements are refused"),
    ("copy runs from 'data.csv'", "COPY statements are refused"),
    ("export database 'dump'", "EXPORT statements are refused"),
    ("attach 'other.duckdb' as o", "ATTACH statements are refused"),
    ("attach ':memory:' as m", "ATTACH statements are refused"),
    ("detach t", "DETACH statements are refused"),
    ("install httpfs", "INSTALL/LOAD statements are refused"),
    ("load httpfs", "INSTALL/LOAD statements are refused"),
    ("set enable_external_access = true", "SET statements are refused"),
    ("set lock_configuration = false", "SET statements are refused"),
    ("reset allowed_directories", "SET statements are refused"),
    ("use memory", "SET statements are refused"),
    ("pragma enable_profiling", "PRAGMA statements are refused"),
    ("pragma enable_checkpoint_on_shutdown", "PRAGMA statements are refused"),
    ("create table t (a int)", "CREATE statements are refused"),
    ("create temp table t as select 1", "CREATE statements are refused"),
    ("create or replace macro request_messages(a, b) as 1", "CREATE statements are refused"),
    ("insert into runs (id) values ('x')", "INSERT statements are refused"),
    ("update runs set provider = 'x'", "UPDATE statements are refused"),
    ("delete from findings", "DELETE statements are refused"),
    ("drop view step_counts", "DROP statements are refused"),
    ("alter table runs add column x int", "ALTER statements are refused"),
    ("call pragma_version()", "CALL statements are refused"),
    ("checkpoint", "CALL statements are refused"),
    ("vacuum", "VACUUM statements are refused"),
    ("begin transaction", "TRANSACTION statements are refused"),
    ("explain analyze copy (select 1) to 'x.csv'", "EXPLAIN statements are refused"),
    ("select 1; drop table runs", "2 statements"),
    ("select 1; select 2", "2 statements"),
    ("", "empty query"),
    ("   \n\t ", "empty query"),
    (";", "empty query"),
    ("-- only a comment", "empty query"),
    ("selec 1", "syntax error"),
    ("select * from read_csv('/etc/passwd')", "only with --allow-files"),
    ("select * from read_csv('data.csv')", "only with --allow-files"),
    ("select * from 'data.csv'", "only with --allow-files"),
    ("select * from read_json('data.json')", "only with --allow-files"),
    ("select * from read_parquet('data.parquet')", "only with --allow-files"),
    ("select * from read_text('data.csv')", "only with --allow-files"),
    ("select * from glob('*')", "only with --allow-files"),
    ("select * from read_csv('http://127.0.0.1:9/x.csv')", "only with --allow-files"),
    ("select * from duckdb_secrets()", "only with --allow-files"),
    # DuckDB 2 parses it as a SELECT, which the read-only database refuses to run; DuckDB 1.5
    # (the lake extra's) refuses the data-modifying CTE when parsing it.
    ("with d as (delete from runs returning *) select * from d", "read-only|A CTE needs a SELECT"),
]


@pytest.mark.parametrize(("query", "fragment"), ATTACKS, ids=[a[0] or "empty" for a in ATTACKS])
def test_every_way_out_is_one_line_and_changes_nothing(
    traces_db: Path,
    pristine: tuple[dict[str, str], dict[str, int]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    query: str,
    fragment: str,
) -> None:
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    (tmp_path / "data.json").write_text('{"a": 1}\n')
    (tmp_path / "other.duckdb").write_bytes(b"not a database, and it must stay so")
    monkeypatch.chdir(tmp_path)
    files, (beside, counts) = _tree(tmp_path), pristine
    done = run_cli_in_process(capsys, monkeypatch, "sql", "--db", str(traces_db), "--", query)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("error: SQL error: ")
    assert any(alternative in done.stderr for alternative in fragment.split("|"))
    assert _tree(tmp_path) == files
    assert table_counts(traces_db) == counts
    assert _tree(traces_db.parent) == beside


def test_allow_files_reads_local_files_and_still_writes_nothing(
    traces_db: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    monkeypatch.chdir(tmp_path)

    def sql(query: str, *extra: str) -> tuple[int, str, str]:
        done = run_cli_in_process(
            capsys, monkeypatch, "sql", query, "--allow-files", "--db", str(traces_db), *extra
        )
        return done.returncode, done.stdout, done.stderr

    code, out, _ = sql("select a + b as s from read_csv('data.csv')", "-f", "json")
    assert code == 0 and json.loads(out) == [{"s": 3}]
    code, out, _ = sql("select * from 'data.csv' join runs on true limit 1", "-f", "json")
    assert code == 0 and json.loads(out)[0]["a"] == 1
    code, out, _ = sql("select count(*) as n from read_csv('/etc/passwd')", "-f", "json")
    assert code == 0 and json.loads(out)[0]["n"] > 0
    code, out, _ = sql("select file from glob('*.csv')", "-f", "csv")
    # DuckDB 1.5 names it `./data.csv`, 2 `data.csv`.
    assert code == 0 and [Path(line).name for line in out.splitlines()] == ["file", "data.csv"]
    files = _tree(tmp_path)
    for query, fragment in [
        ("copy (select 1) to 'x.csv'", "COPY statements are refused"),
        ("export database 'dump'", "EXPORT statements are refused"),
        ("attach 'data.csv' as d", "ATTACH statements are refused"),
        ("install httpfs", "INSTALL/LOAD"),
        ("select * from read_csv('http://127.0.0.1:9/x.csv')", "never the network"),
    ]:
        code, out, err = sql(query)
        assert (code, out) == (2, ""), err
        assert len(err.splitlines()) == 1 and fragment in err, err
    assert _tree(tmp_path) == files


def test_views_and_the_request_macro_work_locked_down(
    traces_db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def rows(query: str) -> list[dict[str, object]]:
        done = run_cli_in_process(
            capsys, monkeypatch, "sql", query, "--db", str(traces_db), "-f", "json"
        )
        assert done.returncode == 0, done.stderr
        result: list[dict[str, object]] = json.loads(done.stdout)
        return result

    [first] = rows("select run_id, idx from steps where idx = 1 order by run_id limit 1")
    messages = rows(
        f"select position, role from request_messages('{first['run_id']}', {first['idx']})"
    )
    assert messages and [m["position"] for m in messages] == list(range(len(messages)))
    for view in ("step_counts", "failures", "provider_summary"):
        assert isinstance(rows(f"select * from {view}"), list)
    assert rows("describe runs") and rows("show tables") and rows("summarize steps")
    assert rows("with r as (select id from runs) from r limit 1")
    assert rows("select current_setting('enable_external_access') as on") == [{"on": False}]
    # Repeated names (a self-join's two ids) keep every value, named as DuckDB names them.
    assert rows("select 1 a, 2 a, 3 a_1, 4 b") == [{"a": 1, "a_2": 2, "a_1": 3, "b": 4}]


def test_an_empty_query_from_the_shell_is_one_line(traces_db: Path) -> None:
    done = run_cli("sql", "", "--db", str(traces_db))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "error: SQL error: empty query (give one SELECT statement)\n"
