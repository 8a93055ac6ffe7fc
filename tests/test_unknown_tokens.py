"""Unknown stays unknown: a run whose host reported no usage has no token totals (null in JSON,
empty in CSV, `—` in tables), not 0, in `runs`, `show`, `compare` and the HTML report; means
and costs over runs leave such runs out and say how many. Imported logs, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from analyzer.output import NULL_CELL
from analyzer.token_totals import known_sum
from traces.store.database import open_for_reading

from conftest import run_cli_in_process

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
    # The stored totals still read 0: only the read side knows they are unknown.
    with open_for_reading(store) as conn:
        stored = conn.execute(
            "SELECT prompt_tokens FROM runs WHERE provider = 'silent' LIMIT 1"
        ).fetchone()
    assert stored == (0,)
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
    assert "counted:" not in notes
    html = tmp_path / "report.html"
    _cli(capsys, monkeypatch, "report", "--html", str(html), "--db", str(store))
    page = html.read_text(encoding="utf-8")
    assert "silent: 5 of 5 runs reported no token usage" in page


def test_a_sum_is_known_only_when_every_answered_step_reported() -> None:
    conn = duckdb.connect()
    conn.execute("CREATE TABLE steps (run_id VARCHAR, error_kind VARCHAR, prompt_tokens INT)")
    conn.execute(
        "INSERT INTO steps VALUES ('all', NULL, 3), ('all', NULL, 4), ('all', 'timeout', NULL),"
        "('some', NULL, 3), ('some', NULL, NULL), ('none', NULL, NULL), ('failed', 'auth', NULL),"
        "('zero', NULL, 0)"
    )
    rows = conn.execute(
        f"SELECT run_id, {known_sum('prompt_tokens')} FROM steps GROUP BY run_id ORDER BY 1"
    ).fetchall()
    # A failed call has no usage to report; a reported 0 is a known 0.
    assert dict(rows) == {"all": 7, "failed": None, "none": None, "some": None, "zero": 0}
