"""The command line as a user runs it: contracts of every command, formats, errors.

Recording with the embedded simulator and against a served one runs `traces` in a subprocess,
as a user starts it; the other commands run through the same entry point in this process
(`cli`), where starting an interpreter would only add to the cost."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from pathlib import Path

import pytest

from traces.sim.server import SimServer

from conftest import TASKS, CliRun, run_cli

RUN_KEYS = {
    "id",
    "task",
    "provider",
    "model",
    "status",
    "termination",
    "steps",
    "tool_calls",
    "started_at",
    "duration_s",
}


@pytest.fixture(scope="module")
def recorded_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with two recorded runs of the short chain (embedded simulator)."""
    db = tmp_path_factory.mktemp("cli") / "t.duckdb"
    done = run_cli(
        "record", "--task", str(TASKS / "chain_short.toml"), "--repeat", "2", "--db", str(db)
    )
    assert done.returncode == 0, done.stderr
    ids = done.stdout.split()
    assert len(ids) == 2
    return db


def _one_line_error(done: subprocess.CompletedProcess[str], code: int, *fragments: str) -> None:
    assert done.returncode == code, (done.stdout, done.stderr)
    err = done.stderr.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ")
    for fragment in fragments:
        assert fragment in err


def test_record_with_no_endpoint_uses_embedded_simulator(recorded_db: Path, cli: CliRun) -> None:
    done = cli("runs", "--db", str(recorded_db), "--format", "json")
    assert done.returncode == 0, done.stderr
    runs = json.loads(done.stdout)
    assert len(runs) == 2
    for run in runs:
        assert set(run) >= RUN_KEYS
        assert run["provider"] == "sim" and run["status"] == "completed"
        assert run["termination"] == "completed" and run["steps"] == 6 and run["tool_calls"] == 5


def test_record_json_format_and_env_db(tmp_path: Path, cli: CliRun) -> None:
    db = tmp_path / "env.duckdb"
    done = cli(
        "record",
        "--task",
        str(TASKS / "chain_short.toml"),
        "--no-stream",
        "--seed",
        "5",
        "--format",
        "json",
        env={"TRACES_DB": str(db)},
    )
    assert done.returncode == 0, done.stderr
    [run] = json.loads(done.stdout)
    assert run["seed"] == 5 and run["success"] is True and run["termination"] == "completed"
    assert db.exists()


def test_show_json_contract(recorded_db: Path, cli: CliRun) -> None:
    done = cli("show", "last", "--db", str(recorded_db), "--format", "json")
    assert done.returncode == 0, done.stderr
    detail = json.loads(done.stdout)
    assert detail["status"] == "completed"
    steps = detail["steps"]
    assert [s["index"] for s in steps] == list(range(6))
    for step in steps:
        assert {"reasoning", "reasoning_source", "content", "tool_calls", "tool_results"} <= set(
            step
        )
        assert step["latency_ms"] > 0 and step["usage"]["prompt_tokens"] > 0
        assert step["reasoning_source"] == "reasoning_content" and step["reasoning"]
        # Streamed by default: the chunk-size distribution, the simulator's 24-character pieces.
        shape = step["stream"]
        assert shape["timed"] is True and shape["chunks"] > 2
        assert shape["reasoning"]["max"] <= 24 and shape["gap_ms"]["max"] >= 0
    first_call = steps[0]["tool_calls"][0]
    assert {"id", "name", "arguments"} <= set(first_call)
    assert first_call["name"] == "open_box" and "box_id" in first_call["arguments"]
    assert steps[0]["tool_results"][0]["tool_call_id"] == first_call["id"]
    assert steps[-1]["content"] and not steps[-1]["tool_calls"]


def test_show_timeline_truncates_unless_full(recorded_db: Path, cli: CliRun) -> None:
    short = cli("show", "last", "--db", str(recorded_db))
    full = cli("show", "last", "--db", str(recorded_db), "--full")
    assert short.returncode == 0 and full.returncode == 0
    assert "step 0" in short.stdout and "open_box" in short.stdout and "thinking" in short.stdout
    assert "stream: " in short.stdout and " chunks · reasoning " in short.stdout
    assert "final answer" in short.stdout
    assert len(full.stdout) >= len(short.stdout)


def test_show_by_prefix_and_unknown_run(recorded_db: Path, cli: CliRun) -> None:
    runs = json.loads(cli("runs", "--db", str(recorded_db), "-f", "json").stdout)
    run_id = runs[0]["id"]
    done = cli("show", run_id[:-3], "--db", str(recorded_db), "-f", "json")
    if done.returncode == 0:  # unique prefix
        assert json.loads(done.stdout)["id"] == run_id
    _one_line_error(cli("show", "nope", "--db", str(recorded_db)), 2, "nope")


def test_sql_formats_limit_and_errors(recorded_db: Path, cli: CliRun) -> None:
    done = cli(
        "sql",
        "select task, count(*) as n from runs group by 1",
        "--db",
        str(recorded_db),
        "-f",
        "json",
    )
    assert done.returncode == 0 and json.loads(done.stdout) == [{"task": "chain_short", "n": 2}]
    done = cli(
        "sql",
        "select idx from steps order by idx",
        "--db",
        str(recorded_db),
        "-f",
        "csv",
        "--limit",
        "3",
    )
    rows = list(csv.reader(io.StringIO(done.stdout)))
    assert rows == [["idx"], ["0"], ["0"], ["1"]]
    assert "first 3 rows" in done.stderr
    _one_line_error(
        cli("sql", "select * from nowhere", "--db", str(recorded_db)), 2, "SQL error", "nowhere"
    )
    _one_line_error(cli("sql", "delete from runs", "--db", str(recorded_db)), 2, "SQL error")
    still = cli("sql", "select count(*) as n from runs", "--db", str(recorded_db), "-f", "json")
    assert json.loads(still.stdout) == [{"n": 2}]


def test_runs_csv_and_table(recorded_db: Path, cli: CliRun) -> None:
    done = cli("runs", "--db", str(recorded_db), "-f", "csv")
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert len(rows) == 2 and rows[0]["status"] == "completed"
    table = cli("runs", "--db", str(recorded_db))
    assert table.returncode == 0 and "chain_short" in table.stdout


def test_steps_distribution(recorded_db: Path, cli: CliRun) -> None:
    done = cli("steps", "--db", str(recorded_db), "-f", "json")
    [row] = json.loads(done.stdout)
    assert row["task"] == "chain_short" and row["runs"] == 2
    assert row["min_steps"] == row["max_steps"] == 6 and row["median_steps"] == 6
    hist = cli("steps", "--histogram", "--db", str(recorded_db), "-f", "json")
    assert json.loads(hist.stdout)[0]["runs"] == 2


def test_schema_documents_every_table(tmp_path: Path, cli: CliRun) -> None:
    done = cli("schema", "--db", str(tmp_path / "none.duckdb"), "-f", "json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    tables = {r["table"] for r in rows}
    assert {"runs", "steps", "messages", "tool_calls", "tool_results", "findings"} <= tables
    assert all(r["description"] for r in rows)
    assert not (tmp_path / "none.duckdb").exists()  # describing does not create a file
    text = cli("schema", "steps", "--db", str(tmp_path / "none.duckdb"))
    assert "reasoning_source" in text.stdout


def test_missing_database_is_one_line_error(tmp_path: Path, cli: CliRun) -> None:
    for command in (["runs"], ["show", "last"], ["steps"], ["sql", "select 1"]):
        _one_line_error(cli(*command, "--db", str(tmp_path / "absent.duckdb")), 4, "absent.duckdb")


@pytest.mark.slow
def test_bad_task_files_name_the_file_and_field(tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    broken = tmp_path / "broken.toml"
    broken.write_text('name = "x"\ndescription = "d"\nmax_steps = "many"\n')
    _one_line_error(
        run_cli("record", "--task", str(broken), "--db", str(db)), 2, "broken.toml", "max_steps"
    )
    syntax = tmp_path / "syntax.toml"
    syntax.write_text('name = "x"\nthis is not toml\n')
    _one_line_error(
        run_cli("record", "--task", str(syntax), "--db", str(db)), 2, "syntax.toml", "line 2"
    )
    _one_line_error(
        run_cli("record", "--task", str(tmp_path / "missing.toml"), "--db", str(db)),
        2,
        "missing.toml",
    )
    assert not db.exists()  # nothing was written for bad input


def test_unreachable_endpoint_is_one_line_error(tmp_path: Path, cli: CliRun) -> None:
    db = tmp_path / "t.duckdb"
    done = cli(
        "record",
        "--task",
        str(TASKS / "chain_short.toml"),
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--model",
        "m",
        "--api-key-env",
        "HOME",
        "--db",
        str(db),
    )
    _one_line_error(done, 3, "cannot connect", "127.0.0.1:9")
    assert not db.exists()  # bad input leaves the database as it was


def test_missing_key_variable_and_model(tmp_path: Path, cli: CliRun) -> None:
    db = tmp_path / "t.duckdb"
    task = str(TASKS / "chain_short.toml")
    _one_line_error(
        cli(
            "record",
            "--task",
            task,
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--model",
            "m",
            "--api-key-env",
            "AGENT_TRACES_UNSET_VARIABLE",
            "--db",
            str(db),
        ),
        2,  # bad input, named: checked before the endpoint is tried
        "AGENT_TRACES_UNSET_VARIABLE",
    )
    _one_line_error(
        cli("record", "--task", task, "--base-url", "http://127.0.0.1:9/v1", "--db", str(db)),
        2,
        "--model",
    )


def test_record_against_a_served_simulator(sim: SimServer, tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    done = run_cli(
        "record",
        "--task",
        str(TASKS / "research.toml"),
        "--base-url",
        sim.base_url,
        "--model",
        "sim-reasoner-1",
        "--api-key-env",
        "HOME",
        "--provider",
        "local-sim",
        "--db",
        str(db),
        "-f",
        "json",
    )
    assert done.returncode == 0, done.stderr
    [run] = json.loads(done.stdout)
    assert run["success"] is True
    runs = json.loads(run_cli("runs", "--db", str(db), "-f", "json").stdout)
    assert runs[0]["provider"] == "local-sim"


def test_demo_runs_offline(tmp_path: Path, cli: CliRun) -> None:
    done = cli("demo", "--db", str(tmp_path / "demo.duckdb"))
    assert done.returncode == 0, done.stderr
    assert "step 0" in done.stdout and "Marisol Vell" in done.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["record"], "--task"),
        (["show"], "run"),
        (["bogus"], "bogus"),
        (["runs", "--limit", "-1"], "--limit"),
        (["runs", "--format", "xml"], "--format"),
    ],
)
def test_usage_errors_are_one_line(args: list[str], fragment: str, cli: CliRun) -> None:
    _one_line_error(cli(*args), 2, fragment)


@pytest.mark.parametrize("command", ["record", "compare", "report"])
def test_help_shows_the_defaults_written_in_it(command: str, cli: CliRun) -> None:
    """Option help is plain text: bracketed defaults print instead of vanishing as markup."""
    done = cli(command, "--help")
    assert done.returncode == 0, done.stderr
    assert "[default: $TRACES_DB" in " ".join(done.stdout.split())


def test_the_recording_bars_count_steps_as_well_as_runs() -> None:
    from analyzer.progress import run_bars

    with run_bars() as bars:
        bars.started("sim", 2)
        for _ in range(5):
            bars.stepped("sim")
        [task] = bars._progress.tasks
        assert task.fields["steps"] == 5 and task.completed == 0
