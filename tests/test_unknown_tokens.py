"""Unknown stays unknown: a run whose host reported no usage has no token totals (null in JSON,
empty in CSV, `—` in tables), not 0: in the store itself (`runs` columns, `provider_summary`),
whoever wrote the run (record, import, probe, compare --suite, a dead recorder's run closed by
the next writer, a store migrated from an older version), and in `runs`, `show`, `compare` and
the HTML report; means and costs over runs leave such runs out and say how many."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from analyzer.output import NULL_CELL
from analyzer.queries import list_runs, run_detail
from traces.model import ExchangeError, RunRecord, StepRecord, Usage
from traces.sample_files import tasks_dir
from traces.store.database import open_for_reading, open_for_writing
from traces.store.migrations import MIGRATIONS
from traces.store.recorder import Recorder
from traces.token_totals import TokenTotals, known_sum

from conftest import query_rows, run_cli, run_cli_in_process

TASKS = tasks_dir()

_REQUEST = {"model": "m", "messages": [{"role": "user", "content": "Go."}]}


def _answer(text: str, usage: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
    }
    if usage is not None:
        body["usage"] = usage
    return body


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total": prompt + completion}


@pytest.fixture
def store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Host `counted` reports usage on each of its runs; host `silent` on none of them; host
    `partly` on one step of a two-step run only."""
    lines = []
    for n in range(5):
        for provider, usage in (("counted", _usage(100 + n, 10)), ("silent", None)):
            lines.append(
                {
                    "provider": provider,
                    "conversation": f"{provider}-{n}",
                    "request": _REQUEST,
                    "response": _answer("Done.", usage),
                }
            )
    turn = {"role": "assistant", "content": "Thinking."}
    lines.append(
        {
            "provider": "partly",
            "conversation": "partly",
            "request": _REQUEST,
            "response": _answer("Thinking.", _usage(50, 5)),
        }
    )
    lines.append(
        {
            "provider": "partly",
            "conversation": "partly",
            "request": {**_REQUEST, "messages": [*_REQUEST["messages"], turn]},
            "response": _answer("Done.", None),
        }
    )
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    db = tmp_path / "t.duckdb"
    done = run_cli_in_process(capsys, monkeypatch, "import", str(log), "--db", str(db))
    assert done.returncode == 0, done.stderr
    return db


def _cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    done = run_cli_in_process(capsys, monkeypatch, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_runs_and_show_say_unknown_not_zero(
    store: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = json.loads(_cli(capsys, monkeypatch, "runs", "-f", "json", "--db", str(store)))
    by_provider: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_provider.setdefault(run["provider"], []).append(run)
    assert sorted(r["prompt_tokens"] for r in by_provider["counted"]) == [100, 101, 102, 103, 104]
    assert {r["completion_tokens"] for r in by_provider["counted"]} == {10}
    for run in by_provider["silent"] + by_provider["partly"]:
        assert run["prompt_tokens"] is None and run["completion_tokens"] is None, run
    # The store itself says unknown: the columns any SQL client reads, and the view.
    with open_for_reading(store) as conn:
        stored = conn.execute(
            "SELECT DISTINCT prompt_tokens, completion_tokens FROM runs WHERE provider <> 'counted'"
        ).fetchall()
    assert stored == [(None, None)]
    summary = {
        row["provider"]: row
        for row in json.loads(
            _cli(
                capsys,
                monkeypatch,
                "sql",
                "select * from provider_summary",
                "-f",
                "json",
                "--db",
                str(store),
            )
        )
    }
    assert (summary["counted"]["prompt_tokens"], summary["counted"]["runs_without_usage"]) == (
        510,
        0,
    )
    for provider, runs in (("silent", 5), ("partly", 1)):
        row = summary[provider]
        assert (row["prompt_tokens"], row["completion_tokens"]) == (None, None), row
        assert row["runs_without_usage"] == runs == row["runs"], row
    csv = _cli(capsys, monkeypatch, "runs", "-f", "csv", "--provider", "silent", "--db", str(store))
    header, first = csv.splitlines()[:2]
    row = dict(zip(header.split(","), first.split(","), strict=False))
    assert row["prompt_tokens"] == "" and row["completion_tokens"] == ""
    silent = by_provider["silent"][0]["id"]
    shown = json.loads(_cli(capsys, monkeypatch, "show", silent, "-f", "json", "--db", str(store)))
    assert shown["prompt_tokens"] is None
    table = _cli(capsys, monkeypatch, "show", silent, "--db", str(store))
    assert f"tokens {NULL_CELL} prompt / {NULL_CELL} completion" in table, table


def test_compare_and_the_report_leave_unknown_runs_out_and_say_so(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    compared = json.loads(_cli(capsys, monkeypatch, "compare", "-f", "json", "--db", str(store)))
    metric = next(m for m in compared["metrics"] if m["key"] == "prompt_tokens_per_run")
    counted = metric["values"]["counted"]
    assert counted["value"] == pytest.approx(102.0) and counted["runs"] == 5
    # No known value: no mean at all (never a mean of zeros).
    assert "silent" not in metric["values"] and "partly" not in metric["values"]
    notes = " ".join(compared["notes"])
    assert "silent: 5 of 5 runs reported no token usage" in notes
    assert "partly: 1 of 1 runs reported no token usage" in notes
    assert not re.search(r"counted: \d+ of \d+ runs reported no token usage", notes)
    html = tmp_path / "report.html"
    _cli(capsys, monkeypatch, "report", "--html", str(html), "--db", str(store))
    page = html.read_text(encoding="utf-8")
    assert "silent: 5 of 5 runs reported no token usage" in page


def test_the_recorder_totals_follow_the_same_rule_as_the_sql() -> None:
    """`TokenTotals` (what `record`, `import` and `probe` write) and `known_sum` (what a
    reader or the writer closing a dead recorder's run computes) agree on every case."""
    cases: dict[str, list[tuple[str | None, int | None]]] = {
        "all": [(None, 3), (None, 4), ("timeout", None)],
        "some": [(None, 3), (None, None)],
        "none": [(None, None)],
        "failed": [("auth", None)],
        "zero": [(None, 0)],
        "empty": [],
    }
    conn = duckdb.connect()
    conn.execute("CREATE TABLE steps (run_id VARCHAR, error_kind VARCHAR, prompt_tokens INT)")
    for run_id, steps in cases.items():
        for error_kind, prompt in steps:
            conn.execute("INSERT INTO steps VALUES (?, ?, ?)", [run_id, error_kind, prompt])
    in_sql = dict(
        conn.execute(
            f"SELECT run_id, {known_sum('prompt_tokens')} FROM steps GROUP BY run_id"
        ).fetchall()
    )
    for run_id, steps in cases.items():
        totals = TokenTotals()
        for index, (error_kind, prompt) in enumerate(steps):
            error = None if error_kind is None else ExchangeError(kind=error_kind, message="x")
            totals.add(_step(index, Usage(prompt_tokens=prompt), error))
        assert totals.total("prompt_tokens") == in_sql.get(run_id), run_id
    assert in_sql == {"all": 7, "some": None, "none": None, "failed": None, "zero": 0}


def _step(index: int, usage: Usage, error: ExchangeError | None = None) -> StepRecord:
    return StepRecord(
        run_id="r",
        index=index,
        started_at=datetime(2026, 1, 1),
        latency_ms=1.0,
        streamed=False,
        request_params={},
        request_message_count=1,
        request_prefix=0,
        request_new_hashes=[],
        usage=usage,
        error=error,
    )


def _suite(directory: Path) -> Path:
    suite = directory / "one.toml"
    suite.write_text(
        f'name = "one"\ndescription = "One short chain."\n[[tasks]]\n'
        f'path = "{TASKS / "chain_short.toml"}"\nrepeats = 1\n',
        encoding="utf-8",
    )
    return suite


def _ok(*args: str) -> str:
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Against the simulator omitting usage: a run recorded with every response without it
    (streamed), one with some (not streamed), one clean; probes; and `compare --suite` with a
    dialect whose host omits it. Returns the store and the run ids by what they are."""
    directory = tmp_path_factory.mktemp("recorded")
    db = str(directory / "t.duckdb")
    ids = {}
    for name, args in (
        ("silent", ["--fault", "usage_omitted", "--stream"]),
        ("partly", ["--fault", "usage_omitted=0.5", "--no-stream"]),
        ("counted", ["--stream"]),
    ):
        [run] = json.loads(_ok("record", "-t", "chain_short", *args, "--db", db, "-f", "json"))
        ids[name] = run["id"]
    _ok("probe", "--fault", "usage_omitted", "--db", db, "-f", "json")
    suite = _suite(directory)
    _ok("compare", "--suite", str(suite), "--dialect", "openai:usage_omitted=1", "--db", db)
    return Path(db), ids


@pytest.mark.slow
def test_runs_recorded_against_a_host_without_usage_are_unknown_everywhere(
    recorded: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    db, ids = recorded
    steps = query_rows(
        db,
        "SELECT run_id, count(*) FILTER (WHERE prompt_tokens IS NULL) AS without, "
        "count(prompt_tokens) AS with FROM steps WHERE error_kind IS NULL GROUP BY run_id",
    )
    by_run = {row["run_id"]: row for row in steps}
    # What each run is: no step with usage, some of each, every step with it.
    assert by_run[ids["silent"]]["with"] == 0 and by_run[ids["silent"]]["without"] > 0
    assert by_run[ids["partly"]]["with"] > 0 and by_run[ids["partly"]]["without"] > 0
    assert by_run[ids["counted"]]["without"] == 0

    stored = {
        row["id"]: row
        for row in query_rows(
            db, "SELECT id, origin, provider, prompt_tokens, completion_tokens FROM runs"
        )
    }
    unknown = [r for r in stored.values() if r["id"] != ids["counted"]]
    assert {r["origin"] for r in unknown} == {"recorded", "probe"}
    assert {r["provider"] for r in unknown} == {"sim", "sim+usage_omitted=1"}
    for row in unknown:
        assert (row["prompt_tokens"], row["completion_tokens"]) == (None, None), row
    counted = stored[ids["counted"]]
    assert counted["prompt_tokens"] > 0 and counted["completion_tokens"] > 0

    listed = {r["id"]: r for r in json.loads(_ok("runs", "--db", str(db), "-f", "json"))}
    for run_id, row in stored.items():
        assert listed[run_id]["prompt_tokens"] == row["prompt_tokens"], run_id
        assert listed[run_id]["completion_tokens"] == row["completion_tokens"], run_id
    for name in ("silent", "partly"):
        shown = json.loads(_ok("show", ids[name], "--db", str(db), "-f", "json"))
        assert (shown["prompt_tokens"], shown["completion_tokens"]) == (None, None), name

    compared = json.loads(_ok("compare", "--db", str(db), "-f", "json"))
    metric = next(m for m in compared["metrics"] if m["key"] == "prompt_tokens_per_run")
    # The sim group's mean is the clean run's alone; the host without usage has none.
    assert metric["values"]["sim"]["runs"] == 1
    assert metric["values"]["sim"]["value"] == counted["prompt_tokens"]
    assert "sim+usage_omitted=1" not in metric["values"]
    notes = " ".join(compared["notes"])
    assert "sim: 2 of 3 runs reported no token usage" in notes, notes
    assert "sim+usage_omitted=1: 1 of 1 runs reported no token usage" in notes, notes
    html = tmp_path / "report.html"
    _ok("report", "--html", str(html), "--db", str(db))
    assert "sim: 2 of 3 runs reported no token usage" in html.read_text(encoding="utf-8")

    summary = {
        r["provider"]: r
        for r in json.loads(
            _ok("sql", "select * from provider_summary", "--db", str(db), "-f", "json")
        )
    }
    sim, omitted = summary["sim"], summary["sim+usage_omitted=1"]
    assert (sim["runs"], sim["runs_without_usage"]) == (3, 2)
    assert sim["prompt_tokens"] == counted["prompt_tokens"]
    assert sim["completion_tokens"] == counted["completion_tokens"]
    assert omitted["runs_without_usage"] == omitted["runs"] > 1  # the suite's run and probes
    assert (omitted["prompt_tokens"], omitted["completion_tokens"]) == (None, None)


def _run_record(run_id: str, pid: int) -> RunRecord:
    return RunRecord(
        id=run_id,
        task="t",
        task_path="t.toml",
        task_sha256="0" * 64,
        provider="sim",
        model="m",
        base_url="http://127.0.0.1:1/v1",
        settings={},
        seed=0,
        started_at=datetime(2026, 1, 1),
        recorder_pid=pid,
        recorder_host=socket.gethostname(),
    )


def test_a_dead_recorders_run_is_closed_with_unknown_totals(db_path: Path) -> None:
    """The next writer closes a run whose recorder died, summing its steps by the same rule."""
    dead_pid = 2**22 + 12345  # above the default pid_max: no such process
    usages = {
        "dead-silent": [Usage(), Usage()],
        "dead-partly": [Usage(prompt_tokens=10, completion_tokens=2), Usage()],
        "dead-counted": [Usage(prompt_tokens=10, completion_tokens=2, reasoning_tokens=1)] * 2,
    }

    async def scenario() -> None:
        recorder = Recorder(db_path)
        try:
            for run_id, steps in usages.items():
                await recorder.begin_run(_run_record(run_id, dead_pid))
                for index, usage in enumerate(steps):
                    await recorder.record_step(
                        _step(index, usage).model_copy(update={"run_id": run_id}), {}
                    )
        finally:
            recorder.close()

    asyncio.run(scenario())
    before = query_rows(db_path, "SELECT DISTINCT status, prompt_tokens FROM runs")
    assert before == [{"status": "running", "prompt_tokens": None}]  # nothing ended yet
    # Readers sum a run still marked running from its steps so far, by the same rule.
    with open_for_reading(db_path) as conn:
        live = {r["id"]: r["prompt_tokens"] for r in list_runs(conn)}
        shown = run_detail(conn, "dead-counted")
    assert live == {"dead-silent": None, "dead-partly": None, "dead-counted": 20}
    assert (shown["status"], shown["prompt_tokens"]) == ("interrupted", 20)
    Recorder(db_path).close()  # the next writer notices the dead recorder
    rows = query_rows(
        db_path,
        "SELECT id, status, prompt_tokens, completion_tokens, reasoning_tokens FROM runs",
    )
    closed = {r.pop("id"): r for r in rows}
    unknown = {"prompt_tokens": None, "completion_tokens": None, "reasoning_tokens": None}
    assert closed == {
        "dead-silent": {"status": "interrupted", **unknown},
        "dead-partly": {"status": "interrupted", **unknown},
        "dead-counted": {
            "status": "interrupted",
            "prompt_tokens": 20,
            "completion_tokens": 4,
            "reasoning_tokens": 2,
        },
    }


_OLD_STEP = (
    "INSERT INTO steps (run_id, idx, started_at, latency_ms, streamed, request_params, "
    "request_message_count, request_prefix, finish_reason, reasoning_source, "
    "reasoning_tokens_source, error_kind, prompt_tokens, completion_tokens, reasoning_tokens) "
    "VALUES (?, ?, now(), 1, false, '{}', 1, 0, 'stop', 'none', 'missing', ?, ?, ?, ?)"
)


def test_a_store_of_the_previous_schema_gets_its_zeros_made_unknown(db_path: Path) -> None:
    """A store written before token totals could be unknown (a step without usage added 0)
    is migrated: each run's totals summed again from its steps, the view recreated."""
    old = duckdb.connect(str(db_path))
    old.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, "
        "applied_at TIMESTAMP NOT NULL)"
    )
    for number, name, sql in MIGRATIONS:
        if number <= 5:  # the schema before this change
            old.execute(sql)
            old.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [number, name])
    # run -> its steps as (error_kind, prompt, completion, reasoning), and the totals an old
    # writer stored for it: the sum with 0 for a missing count.
    runs: dict[str, list[tuple[str | None, int | None, int | None, int | None]]] = {
        "counted": [(None, 10, 2, None), (None, 20, 3, None), ("timeout", None, None, None)],
        "silent": [(None, None, None, None), (None, None, None, None)],
        "partly": [(None, 10, 2, 1), (None, None, None, 5)],
        "failed": [("auth", None, None, None)],
        "stepless": [],
    }
    for run_id, steps in runs.items():
        old.execute(
            "INSERT INTO runs (id, task, task_path, task_sha256, provider, model, base_url, "
            "settings, seed, status, started_at, recorder_pid, recorder_host, steps, "
            "prompt_tokens, completion_tokens, reasoning_tokens) VALUES (?, 't', 'p', 'h', "
            "'sim', 'm', 'u', '{}', 0, 'completed', now(), 1, 'h', ?, ?, ?, ?)",
            [
                run_id,
                len(steps),
                *(sum(step[i] or 0 for step in steps) for i in (1, 2, 3)),
            ],
        )
        for index, (error_kind, *counts) in enumerate(steps):
            old.execute(_OLD_STEP, [run_id, index, error_kind, *counts])
    assert old.execute("SELECT count(*) FROM runs WHERE prompt_tokens = 0").fetchone() == (3,)
    old.close()

    open_for_writing(db_path).close()
    migrated = {
        r.pop("id"): r
        for r in query_rows(
            db_path, "SELECT id, prompt_tokens, completion_tokens, reasoning_tokens FROM runs"
        )
    }
    unknown = {"prompt_tokens": None, "completion_tokens": None, "reasoning_tokens": None}
    assert migrated == {
        # A reported 0 would stay 0; a failed step counts for nothing.
        "counted": {"prompt_tokens": 30, "completion_tokens": 5, "reasoning_tokens": None},
        "silent": unknown,
        "partly": {"prompt_tokens": None, "completion_tokens": None, "reasoning_tokens": 6},
        "failed": unknown,
        "stepless": unknown,
    }
    [summary] = query_rows(db_path, "SELECT * FROM provider_summary")
    assert summary["runs"] == 5
    assert (summary["prompt_tokens"], summary["completion_tokens"]) == (30, 5)
    assert (summary["runs_without_usage"], summary["reasoning_tokens"]) == (4, 6)
    assert summary["runs_without_reasoning_tokens"] == 4
    # The view and the columns are documented again after being recreated.
    comments = query_rows(
        db_path,
        "SELECT column_name, comment FROM duckdb_columns() WHERE table_name = 'provider_summary'"
        " AND column_name = 'runs_without_usage'",
    )
    assert comments and "unknown" in comments[0]["comment"]


def test_show_marks_reasoning_tokens_the_host_did_not_report_as_estimated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host that reports usage without `reasoning_tokens` (or no usage at all): the step's
    reasoning count is the client's estimate from the text, and `show` says so; a reported
    count stays a bare number."""
    reasoning = "I should look at the file before I answer the question."
    lines = []
    for conversation, usage in (
        ("estimated", _usage(40, 20)),
        ("reported", {**_usage(40, 20), "completion_tokens_details": {"reasoning_tokens": 13}}),
    ):
        body = _answer("Done.", usage)
        body["choices"][0]["message"]["reasoning_content"] = reasoning
        lines.append({"conversation": conversation, "request": _REQUEST, "response": body})
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    db = str(tmp_path / "t.duckdb")
    assert run_cli_in_process(capsys, monkeypatch, "import", str(log), "--db", db).returncode == 0
    shown, listed = {}, {}
    for run in json.loads(_cli(capsys, monkeypatch, "runs", "-f", "json", "--db", db)):
        listed[run["conversation"]] = run
        shown[run["conversation"]] = _cli(capsys, monkeypatch, "show", run["id"], "--db", db)
    assert re.search(r"reasoning ~\d+ \(estimated\)", shown["estimated"]), shown["estimated"]
    assert "reasoning 13  finish" in shown["reported"], shown["reported"]
    assert "estimated" not in shown["reported"]
    # The run's total adds the estimate: `runs` and the run's detail (the viewer's header)
    # mark it, and leave a reported total unmarked.
    assert listed["estimated"]["reasoning_tokens"] > 0
    assert listed["estimated"]["reasoning_tokens_estimated"] is True
    assert (
        listed["reported"]["reasoning_tokens"],
        listed["reported"]["reasoning_tokens_estimated"],
    ) == (13, False)
    with open_for_reading(Path(db)) as conn:
        for conversation, run in listed.items():
            detail = run_detail(conn, run["id"])
            assert detail["reasoning_tokens_estimated"] is (conversation == "estimated")
