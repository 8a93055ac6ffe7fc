"""A lake store whose catalog is a real PostgreSQL server: every command on it, four recorders
writing it at once while reads run, its password kept out of everything, its errors in one
line. The server is this session's throwaway cluster (`postgres` in conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from traces.store.database import open_for_reading, resolve_db_path

from conftest import REPO, TASKS, run_cli
from postgres_server import PostgresCluster

# Every command here starts an interpreter that loads DuckLake and talks to PostgreSQL.
pytestmark = pytest.mark.slow

FIXTURES = REPO / "tests" / "fixtures" / "import"


@dataclass
class Lake:
    """A lake on the session's server; `db` carries the password, as a user may write it."""

    postgres: PostgresCluster
    db: str
    data: Path
    said: list[str] = field(default_factory=list)
    """Everything any command printed, to look for the password in."""

    def cli(self, *args: str, env: dict[str, str] | None = None) -> Any:
        done = run_cli(*args, env=env)
        self.said += [done.stdout, done.stderr]
        assert done.returncode == 0, (args, done.stderr)
        return done


def _lake(postgres: PostgresCluster, name: str, data: Path) -> Lake:
    postgres.create_database(name)
    return Lake(postgres, f"ducklake:postgres:{postgres.conninfo(name, password=True)}", data)


@pytest.fixture(scope="module")
def lake(postgres: PostgresCluster, tmp_path_factory: pytest.TempPathFactory) -> Lake:
    """Two runs recorded with `--db`/`--data-path` (the password in the name), one more with
    `$TRACES_DB`/`$TRACES_DATA_PATH` (the password in `$PGPASSWORD`), then analyzed."""
    lake = _lake(postgres, "recorded", tmp_path_factory.mktemp("lake") / "data")
    task = str(TASKS / "chain_short.toml")
    lake.cli("record", "-t", task, "--repeat", "2", "--db", lake.db, "--data-path", str(lake.data))
    env = {
        "TRACES_DB": f"ducklake:postgres:{postgres.conninfo('recorded')}",
        "TRACES_DATA_PATH": str(lake.data),
        "PGPASSWORD": postgres.password,
    }
    lake.cli("record", "-t", task, "--seed", "7", env=env)
    return lake


def _json(done: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(done.stdout)


def test_runs_show_steps_and_failures(lake: Lake) -> None:
    runs = _json(lake.cli("runs", "--db", lake.db, "--format", "json"))
    assert len(runs) == 3
    assert {r["status"] for r in runs} == {"completed"}
    shown = _json(lake.cli("show", runs[0]["id"], "--db", lake.db, "--format", "json"))
    assert len(shown["steps"]) == shown["steps_count"] == runs[0]["steps"] > 0
    ledger = lake.cli("show", "last", "--ledger", "--db", lake.db)
    assert ledger.stdout.strip()
    [steps] = _json(lake.cli("steps", "--db", lake.db, "--format", "json"))
    assert (steps["runs"], steps["succeeded"]) == (3, 3)
    lake.cli("failures", "--db", lake.db)


def test_sql_views_and_macro(lake: Lake) -> None:
    def rows(query: str) -> list[dict[str, Any]]:
        return _json(lake.cli("sql", "--db", lake.db, "--format", "json", query))  # type: ignore[no-any-return]

    [counts] = rows("SELECT runs, succeeded FROM step_counts")
    assert counts == {"runs": 3, "succeeded": 3}
    assert rows("SELECT * FROM failures") == []
    [summary] = rows("SELECT runs, steps FROM provider_summary")
    [total] = rows("SELECT count(*) AS n FROM steps")
    assert summary == {"runs": 3, "steps": total["n"]}
    request = rows(
        "SELECT position, role FROM request_messages((SELECT id FROM runs ORDER BY id LIMIT 1), 1)"
    )
    assert [r["position"] for r in request] == list(range(len(request)))
    assert request[0]["role"] == "system"
    # Still read-only in full: a lake cannot be written through `traces sql` either.
    refused = run_cli("sql", "--db", lake.db, "DELETE FROM runs")
    assert refused.returncode == 2


def test_analyze_report_and_schema(lake: Lake, tmp_path: Path) -> None:
    analyzed = _json(lake.cli("analyze", "--db", lake.db, "--format", "json"))
    assert len(analyzed) == 3
    # In worker processes (as from 50,000 steps on): each attaches the lake read-only.
    workers = _json(
        lake.cli(
            "analyze", "--db", lake.db, "--format", "json", env={"TRACES_ANALYZE_WORKERS": "2"}
        )
    )
    assert workers == analyzed
    html = tmp_path / "report.html"
    lake.cli("report", "--html", str(html), "--db", lake.db)
    page = html.read_text(encoding="utf-8")
    assert "ducklake:postgres:" in page
    assert lake.postgres.password not in page
    schema = lake.cli("schema", "--db", lake.db)
    assert "request_message_count" in schema.stdout
    assert "failures" in schema.stdout


def test_import_into_the_lake(lake: Lake) -> None:
    done = _json(
        lake.cli(
            "import",
            str(FIXTURES / "exchanges.jsonl"),
            "--provider",
            "other",
            "--db",
            lake.db,
            "--format",
            "json",
        )
    )
    assert done[0]["runs"] > 0
    runs = _json(lake.cli("runs", "--db", lake.db, "--format", "json"))
    imported = _json(
        lake.cli(
            "sql",
            "--db",
            lake.db,
            "--format",
            "json",
            "SELECT id FROM runs WHERE origin = 'imported'",
        )
    )
    assert len(imported) == done[0]["runs"]
    assert {r["id"] for r in imported} <= {r["id"] for r in runs}
    again = run_cli("import", str(FIXTURES / "exchanges.jsonl"), "--db", lake.db)
    assert again.returncode == 2 and "already imported" in again.stderr


def test_merge_out_of_the_lake_and_into_another(lake: Lake, tmp_path: Path) -> None:
    copy = tmp_path / "copy.duckdb"
    [out] = _json(lake.cli("merge", lake.db, "--into", str(copy), "--format", "json"))
    runs = _json(lake.cli("runs", "--db", lake.db, "--format", "json"))
    assert out["copied"] == len(runs)
    other = _lake(lake.postgres, "merged", tmp_path / "data")
    [back] = _json(
        lake.cli(
            "merge",
            str(copy),
            "--into",
            other.db,
            "--data-path",
            str(other.data),
            "--format",
            "json",
        )
    )
    assert back["copied"] == len(runs)
    again = _json(lake.cli("runs", "--db", other.db, "--format", "json"))
    assert sorted(r["id"] for r in again) == sorted(r["id"] for r in runs)


def test_compare_records_a_suite_into_a_lake(postgres: PostgresCluster, tmp_path: Path) -> None:
    lake = _lake(postgres, "compared", tmp_path / "data")
    suite = tmp_path / "suite.toml"
    suite.write_text(
        'name = "two"\ndescription = "Two dialects."\n[defaults]\nconcurrency = 2\n'
        f'[[tasks]]\npath = "{TASKS / "chain_short.toml"}"\nrepeats = 2\n',
        encoding="utf-8",
    )
    compared = _json(
        lake.cli(
            "compare",
            "--suite",
            str(suite),
            "--dialect",
            "openai",
            "--dialect",
            "moonshot",
            "--db",
            lake.db,
            "--data-path",
            str(lake.data),
            "--format",
            "json",
        )
    )
    assert len(compared["groups"]) == 2
    stored = _json(lake.cli("compare", "--db", lake.db, "--format", "json"))
    assert len(stored["groups"]) == 2
    _no_password(lake)


def _no_password(lake: Lake) -> None:
    password = lake.postgres.password
    leaked = [text for text in lake.said if password in text]
    assert not leaked, leaked[0][:300]
    databases = lake.cli("sql", "--db", lake.db, "SELECT path FROM duckdb_databases()")
    assert "ducklake:" not in databases.stdout or password not in databases.stdout
    # Nor in any row of any table.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PGPASSWORD", password)
        with open_for_reading(resolve_db_path(lake.db)) as conn:
            tables = [
                name
                for (name,) in conn.execute(
                    "SELECT table_name FROM duckdb_tables() "
                    "WHERE database_name = current_database()"
                ).fetchall()
            ]
            for table in tables:
                found = conn.execute(
                    f"SELECT count(*) FROM {table} t WHERE t::VARCHAR LIKE ?", [f"%{password}%"]
                ).fetchone()
                assert found == (0,), table


def test_the_password_reaches_no_output_report_or_row(lake: Lake) -> None:
    lake.cli("runs", "--db", lake.db)
    _no_password(lake)


def _one_line_error(done: subprocess.CompletedProcess[str], secret: str, *words: str) -> str:
    assert done.returncode == 4, (done.returncode, done.stderr)
    line = done.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line, line
    assert secret not in line
    for word in words:
        assert word in line, line
    return line


def test_catalog_errors_are_one_line_without_the_password(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    secret = postgres.password
    unreachable = f"ducklake:postgres:dbname=x host={tmp_path} port=1 user=u password={secret}"
    _one_line_error(run_cli("runs", "--db", unreachable), secret, "cannot reach the catalog")
    _one_line_error(
        run_cli("record", "-t", "research", "--db", unreachable, "--data-path", str(tmp_path)),
        secret,
        "cannot reach the catalog",
    )
    wrong = f"ducklake:postgres:{postgres.conninfo('postgres')} password=wrong-{secret}"
    _one_line_error(run_cli("runs", "--db", wrong), secret, "password authentication failed")
    postgres.create_database("empty")
    empty = f"ducklake:postgres:{postgres.conninfo('empty', password=True)}"
    _one_line_error(run_cli("runs", "--db", empty), secret, "no trace store here")
    _one_line_error(run_cli("record", "-t", "research", "--db", empty), secret, "--data-path")


def test_four_recorders_write_one_lake_while_reads_run(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    """Four `traces record` processes (each its runs' own sandboxes) create and fill one new
    lake at the same moment while `runs` and `sql` read it: every step of every run is
    stored once, none lost, and every read in between succeeds once the store exists."""
    postgres.create_database("shared")
    env = {
        **os.environ,
        "TRACES_DB": f"ducklake:postgres:{postgres.conninfo('shared')}",
        "TRACES_DATA_PATH": str(tmp_path / "data"),
        "PGPASSWORD": postgres.password,
        "NO_COLOR": "1",
    }
    recorders = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "analyzer",
                "record",
                "-t",
                str(TASKS / "files.toml"),
                "--repeat",
                "3",
                "--concurrency",
                "3",
                "--seed",
                str(100 * i),
                "--format",
                "json",
            ],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    seen: list[int] = []
    while any(r.poll() is None for r in recorders):
        runs = run_cli("runs", "--format", "json", env=env)
        steps = run_cli("sql", "--format", "json", "SELECT count(*) AS n FROM steps", env=env)
        if runs.returncode == 0:
            assert steps.returncode == 0, steps.stderr
            seen.append(_json(steps)[0]["n"])
        else:  # before the first recorder created the store
            assert runs.returncode == 4 and not seen, runs.stderr
            assert "no trace store here" in runs.stderr or "not a trace store" in runs.stderr
        time.sleep(0.2)
    reported = []
    for recorder in recorders:
        out, err = recorder.communicate()
        assert recorder.returncode == 0, err
        reported += json.loads(out)
    assert seen == sorted(seen)  # committed steps only ever appear, never vanish
    assert len({r["id"] for r in reported}) == 12

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PGPASSWORD", postgres.password)
        with open_for_reading(resolve_db_path(env["TRACES_DB"])) as conn:
            stored = {
                run_id: (steps, status)
                for run_id, steps, status in conn.execute(
                    "SELECT id, steps, status FROM runs"
                ).fetchall()
            }
            per_run = dict(
                conn.execute(
                    "SELECT run_id, list(idx ORDER BY idx) FROM steps GROUP BY run_id"
                ).fetchall()
            )
            orphans = conn.execute(
                "SELECT count(*) FROM step_message_keys s ANTI JOIN messages m USING (key)"
            ).fetchone()
            calls, results = conn.execute(
                "SELECT (SELECT count(*) FROM tool_calls), (SELECT count(*) FROM tool_results)"
            ).fetchone() or (None, None)
    assert stored == {r["id"]: (r["steps"], "completed") for r in reported}
    for run in reported:
        assert per_run[run["id"]] == list(range(run["steps"])), run["id"]
    assert orphans == (0,)
    assert calls == results == sum(r["tool_calls"] for r in reported)
