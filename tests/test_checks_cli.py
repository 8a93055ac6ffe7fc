"""`traces record` runs the checks, `traces analyze` re-runs them idempotently, `traces
failures` counts and drills down, `traces runs` and `traces show` carry the findings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analyzer.checks.catalogue import KINDS, describe

from conftest import TASKS, CliRun, run_cli


@pytest.fixture(scope="module")
def faulty_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One streamed run of `files` with a stream quirk and a leak in every reasoning."""
    db = tmp_path_factory.mktemp("checks-cli") / "t.duckdb"
    done = run_cli(
        "record",
        "--task",
        str(TASKS / "files.toml"),
        "--db",
        str(db),
        "--fault",
        "stream_index_missing=1.0",
        "--fault",
        "leaked_tokens_reasoning=1.0",
        "--format",
        "json",
    )
    assert done.returncode == 0, done.stderr
    [row] = json.loads(done.stdout)
    assert row["findings"] > 0  # checked at record time
    return db, row["id"]


def _json(cli: CliRun, *args: str) -> object:
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_analyze_is_idempotent(faulty_db: tuple[Path, str], cli: CliRun) -> None:
    db, run_id = faulty_db
    sql = (
        "sql",
        "select kind, step_idx, evidence from findings order by all",
        "--db",
        str(db),
        "-f",
        "json",
    )
    before = _json(cli, *sql)
    first = _json(cli, "analyze", "--db", str(db), "-f", "json")
    second = _json(cli, "analyze", run_id[:12], "--db", str(db), "-f", "json")
    assert isinstance(first, list) and isinstance(second, list)
    assert [r["findings"] for r in first] == [r["findings"] for r in second]
    assert set(first[0]) >= {"run", "provider", "model", "findings", "errors", "warnings", "kinds"}
    assert first[0]["kinds"]["stream_tool_call_index_missing"] >= 1
    assert _json(cli, *sql) == before


def test_failures_counts_and_drill_down(faulty_db: tuple[Path, str], cli: CliRun) -> None:
    db, run_id = faulty_db
    counts = _json(cli, "failures", "--db", str(db), "-f", "json")
    assert isinstance(counts, list)
    by_kind = {r["kind"]: r for r in counts}
    leak = by_kind["leaked_special_tokens"]
    assert (leak["layer"], leak["provider"], leak["runs"]) == ("provider", "sim", 1)
    steps = _json(cli, "failures", "--kind", "leaked_special_tokens", "--db", str(db), "-f", "json")
    assert isinstance(steps, list) and steps
    assert steps[0]["step"] == 0 and steps[0]["evidence"]["field"] == "reasoning"
    of_run = _json(cli, "failures", "--run", "last", "--db", str(db), "-f", "json")
    assert isinstance(of_run, list) and {r["run"] for r in of_run} == {run_id}


def test_runs_and_show_carry_findings(faulty_db: tuple[Path, str], cli: CliRun) -> None:
    db, run_id = faulty_db
    runs = _json(cli, "runs", "--db", str(db), "-f", "json")
    assert isinstance(runs, list)
    [run] = runs
    assert run["findings"] > 0 and run["termination"] == "completed"
    # The failure summary names kinds by severity, and agrees with the per-kind counts.
    assert "leaked_special_tokens×" in run["failures"]
    by_kind = run["findings_by_kind"]
    assert sum(by_kind.values()) == run["findings"]
    assert by_kind["stream_tool_call_index_missing"] >= 1
    listing = cli("runs", "--db", str(db))
    assert "leaked_special_tokens" in listing.stdout and "completed" in listing.stdout
    detail = _json(cli, "show", run_id, "--db", str(db), "-f", "json")
    assert isinstance(detail, dict)
    assert any(f["kind"] == "leaked_special_tokens" for f in detail["steps"][0]["findings"])
    table = cli("show", run_id, "--db", str(db))
    assert "⚑ stream_tool_call_index_missing (provider)" in table.stdout


@pytest.mark.parametrize("command", ["analyze", "failures"])
def test_unknown_run_is_a_one_line_error(
    faulty_db: tuple[Path, str], command: str, cli: CliRun
) -> None:
    db, _ = faulty_db
    args = ["nope"] if command == "analyze" else ["--run", "nope"]
    done = cli(command, *args, "--db", str(db))
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "no run with id 'nope'" in done.stderr


def test_analyze_without_database(tmp_path: Path, cli: CliRun) -> None:
    done = cli("analyze", "--db", str(tmp_path / "none.duckdb"))
    assert done.returncode == 4 and done.stderr.startswith("error:")
    assert not (tmp_path / "none.duckdb").exists()


def test_failures_kinds_lists_the_catalogue_without_a_database(tmp_path: Path, cli: CliRun) -> None:
    missing = tmp_path / "none.duckdb"
    rows = _json(cli, "failures", "--kinds", "--db", str(missing), "-f", "json")
    assert isinstance(rows, list) and [r["kind"] for r in rows] == list(KINDS)
    leak = rows[0]
    assert leak["kind"] == "leaked_special_tokens" and leak["layer"] == "provider"
    assert leak["check"] == "leaks" and "special_tokens_in_reasoning" in leak["covers"]
    assert "parser" in leak["description"] and not missing.exists()
    client = _json(cli, "failures", "--kinds", "--layer", "client", "-f", "json")
    assert isinstance(client, list) and client and {r["layer"] for r in client} == {"client"}
    csv = cli("failures", "--kinds", "-f", "csv")
    assert csv.stdout.splitlines()[0] == "kind,layer,severity,description,inferred,check,covers"
    table = cli("failures", "--kinds")
    assert table.returncode == 0 and "stream_tool_call_index_missing" in table.stdout
    assert "check" not in table.stdout.splitlines()[1]  # the table keeps to four columns


def test_failures_counts_and_drill_down_carry_descriptions(
    faulty_db: tuple[Path, str], cli: CliRun
) -> None:
    db, _ = faulty_db
    counts = _json(cli, "failures", "--db", str(db), "-f", "json")
    assert isinstance(counts, list)
    assert all(r["description"] == describe(r["kind"]) for r in counts)
    steps = _json(cli, "failures", "--kind", "leaked_special_tokens", "--db", str(db), "-f", "json")
    assert isinstance(steps, list) and steps[0]["description"] == describe("leaked_special_tokens")
    table = cli("failures", "--kind", "leaked_special_tokens", "--db", str(db))
    assert table.returncode == 0
    assert "leaked_special_tokens: Raw call or chat-template tokens" in " ".join(
        table.stdout.split()
    )
