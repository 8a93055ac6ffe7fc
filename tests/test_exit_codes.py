"""Exit codes as documented: 3 when no run got a model response, `--fail-on`, key variables.

Every case runs the CLI as a user does, against the embedded simulator or a loopback one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from analyzer.checks.records import Finding
from analyzer.fail_on import FailOn, FindingsFound, check_fail_on
from traces.sim.server import SimServer

from conftest import REPO, TASKS, run_cli

SHORT = str(TASKS / "chain_short.toml")
EXCHANGES = REPO / "tests" / "fixtures" / "import" / "exchanges.jsonl"


def _one_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    """The single stderr line of a command that exited with `code`."""
    assert done.returncode == code, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def _count(db: Path, sql: str) -> int:
    conn = duckdb.connect(str(db), read_only=True)
    try:
        row = conn.execute(sql).fetchone()
        assert row is not None
        return int(row[0])
    finally:
        conn.close()


# -- exit 3: not a single model response -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fault", "termination", "said"),
    [
        ("context_overflow_400", "context_overflow", "HTTP 400"),
        ("unauthorized_401", "provider_error", "HTTP 401"),
        ("invalid_response_200", "provider_error", ""),  # an error object with status 200
    ],
)
def test_every_run_failing_on_its_first_request_exits_3(
    tmp_path: Path, fault: str, termination: str, said: str
) -> None:
    db = tmp_path / "t.duckdb"
    done = run_cli(
        "record", "--task", SHORT, "--fault", f"{fault}=1", "--repeat", "2",
        "--db", str(db), "-f", "json",
    )  # fmt: skip
    line = _one_line(done, 3)
    runs = json.loads(done.stdout)  # the runs are recorded and reported all the same
    stored = f"(stored as failed: 2 runs: {runs[0]['id']} … {runs[1]['id']})"
    assert line.startswith(
        f"error: endpoint failed on the first request of every run {stored}: {said}"
    )
    assert [(r["termination"], r["steps"]) for r in runs] == [(termination, 1)] * 2


@pytest.mark.slow
def test_some_runs_failing_is_success(tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    done = run_cli(
        "record", "--task", SHORT, "--fault", "context_overflow_400=0.3", "--repeat", "4",
        "--db", str(db), "-f", "json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    runs = json.loads(done.stdout)
    failed_first = [r for r in runs if r["termination"] == "context_overflow" and r["steps"] == 1]
    assert failed_first and len(failed_first) < len(runs)  # the seed gives both kinds


@pytest.mark.slow
def test_a_model_that_answers_badly_did_answer(tmp_path: Path) -> None:
    """Runs failing is not an endpoint failure when the model responded at all."""
    db = tmp_path / "t.duckdb"
    done = run_cli(
        "record", "--task", SHORT, "--fault", "reasoning_swallows_answer=1", "--db", str(db),
        "-f", "json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [run] = json.loads(done.stdout)
    assert run["steps"] > 1


# -- --fail-on ---------------------------------------------------------------------------------


def _finding(kind: str, severity: str) -> Finding:
    return Finding(kind=kind, severity=severity, layer="provider", step=0, evidence={})  # type: ignore[arg-type]


def test_fail_on_counts_findings_at_or_above_the_severity() -> None:
    found = {
        "r1": [_finding("dropped_call", "error")] * 3 + [_finding("slow", "info")],
        "r2": [_finding("http_rate_limit", "warning")],
        "r3": [],
    }
    check_fail_on(found, None)
    check_fail_on({"r3": [], "r4": [_finding("slow", "info")]}, FailOn.warning)
    with pytest.raises(FindingsFound) as raised:
        check_fail_on(found, FailOn.error)
    assert str(raised.value) == (
        "--fail-on error: 3 findings (worst: error) in 1 of 3 runs: dropped_call×3"
    )
    assert raised.value.exit_code == 1
    with pytest.raises(FindingsFound) as raised:
        check_fail_on(found, FailOn.warning)
    assert str(raised.value) == (
        "--fail-on warning: 4 findings (worst: error) in 2 of 3 runs: "
        "dropped_call×3, http_rate_limit×1"
    )


@pytest.mark.slow
def test_fail_on_record_and_analyze(tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    clean = run_cli(
        "record", "--task", SHORT, "--db", str(db), "-f", "json", "--fail-on", "warning"
    )
    assert clean.returncode == 0 and clean.stderr == "", clean.stderr
    faulty = run_cli(
        "record", "--task", SHORT, "--fault", "invalid_json_arguments=0.5", "--db", str(db),
        "-f", "json", "--fail-on", "error",
    )  # fmt: skip
    line = _one_line(faulty, 1)
    assert line.startswith("error: --fail-on error: ") and "invalid_json_arguments×" in line
    [run] = json.loads(faulty.stdout)  # the output comes first, as without the option
    assert run["findings"] > 0
    # analyze: the same verdict over every run; only this run has findings of that kind.
    line = _one_line(run_cli("analyze", "--db", str(db), "-f", "json", "--fail-on", "error"), 1)
    assert "in 1 of 2 runs" in line and "invalid_json_arguments×" in line
    done = run_cli(
        "analyze", json.loads(clean.stdout)[0]["id"], "--db", str(db), "--fail-on", "error"
    )
    assert done.returncode == 0, done.stderr
    bad = run_cli("analyze", "--db", str(db), "--fail-on", "fatal")
    assert "--fail-on" in _one_line(bad, 2)


@pytest.mark.slow
def test_fail_on_import(tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    done = run_cli(
        "import", str(EXCHANGES), "--provider", "p", "--db", str(db), "-f", "json",
        "--fail-on", "warning",
    )  # fmt: skip
    line = _one_line(done, 1)
    assert line.startswith("error: --fail-on warning: ")
    # The import and its findings are stored: the option judges them, it does not undo them.
    assert _count(db, "SELECT count(*) FROM imports") == 1
    assert _count(db, "SELECT count(*) FROM findings") > 0
    refused = run_cli(
        "import", str(EXCHANGES), "--again", "--no-analyze", "--fail-on", "error", "--db", str(db)
    )
    assert "--no-analyze" in _one_line(refused, 2)
    assert _count(db, "SELECT count(*) FROM imports") == 1


@pytest.mark.slow
def test_fail_on_compare_suite(tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    suite = tmp_path / "suite.toml"
    suite.write_text(
        f'name = "tiny"\ndescription = "one short task"\n[defaults]\nstream = false\n'
        f'[[tasks]]\npath = "{SHORT}"\nrepeats = 2\n'
    )
    done = run_cli(
        "compare", "--suite", str(suite), "--dialect", "openai:invalid_json_arguments=0.5",
        "--db", str(db), "-f", "json", "--fail-on", "error",
    )  # fmt: skip
    line = _one_line(done, 1)
    assert "invalid_json_arguments×" in line
    assert json.loads(done.stdout)["groups"]  # the comparison is printed first
    without_suite = run_cli("compare", "--db", str(db), "--fail-on", "error")
    assert "--fail-on" in _one_line(without_suite, 2)


# -- key variables -----------------------------------------------------------------------------


def _env_without(*names: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in names}


def _run_without_keys(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**_env_without("OPENAI_API_KEY", "MOONSHOT_API_KEY", "TRACES_DB"), "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "analyzer", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


@pytest.mark.slow
def test_an_unset_key_variable_is_bad_input_naming_it(tmp_path: Path, sim: SimServer) -> None:
    db = tmp_path / "t.duckdb"
    profile = _run_without_keys(
        "record", "--task", SHORT, "--provider", "moonshot", "--db", str(db)
    )
    assert "MOONSHOT_API_KEY" in _one_line(profile, 2)
    named = _run_without_keys(
        "record", "--task", SHORT, "--base-url", sim.base_url, "--model", "sim-reasoner-1",
        "--api-key-env", "MY_SERVER_KEY", "--db", str(db),
    )  # fmt: skip
    assert "MY_SERVER_KEY" in _one_line(named, 2)
    assert not db.exists()  # refused before anything was written


@pytest.mark.slow
def test_a_server_that_needs_no_key_needs_no_variable(tmp_path: Path, sim: SimServer) -> None:
    db = tmp_path / "t.duckdb"
    done = _run_without_keys(
        "record", "--task", SHORT, "--base-url", sim.base_url, "--model", "sim-reasoner-1",
        "--db", str(db), "-f", "json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [run] = json.loads(done.stdout)
    assert run["status"] == "completed"
    conn = duckdb.connect(str(db), read_only=True)
    try:
        row = conn.execute("SELECT settings FROM runs").fetchone()
        stored = conn.execute(
            "SELECT count(*) FROM steps WHERE request_params::VARCHAR LIKE '%no-key-needed%' "
            "OR response_headers::VARCHAR LIKE '%no-key-needed%'"
        ).fetchone()
    finally:
        conn.close()
    assert row is not None and json.loads(row[0])["api_key_env"] is None
    # The placeholder the SDK is given is never stored: not in a column, not in the file.
    assert stored == (0,)
    assert b"no-key-needed" not in db.read_bytes()
