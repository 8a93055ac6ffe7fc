"""`traces import`: exchange logs and K2-Vendor-Verifier results become runs the checks read.

Fixtures (tests/fixtures/import/):

- `exchanges.jsonl`: two interleaved conversations. `c1` (provider `acme`): a tool call, a
  streamed step (reasoning and a tool call split over chunks, usage in the last chunk), a
  429 and its retry, a final answer. `c2` (no provider): a schema-invalid call, then HTTP 500.
- `k2vv_results.jsonl`: seven K2-Vendor-Verifier result lines written from the format of
  MoonshotAI/K2-Vendor-Verifier (`tool_calls_eval.py`, `ValidationResult`: `response` is the
  openai SDK's `ChatCompletion.model_dump()`, or `{"error": str(exception)}` when the call
  failed): valid and invalid tool calls, an answer, a leaked tool-call section, a streamed
  request, a 429 and a timeout.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
from jsonschema import Draft202012Validator

from traces.importing import (
    FileReport,
    ImportOptions,
    SkippedLine,
    files,
    import_files,
    importer,
    ownership,
    reading,
)
from traces.importing import writer as import_writer
from traces.importing.lines import ImportFileError
from traces.importing.toolsets import fast_accept
from traces.model import message_hash, request_hash

from conftest import (
    REPO,
    CliRun,
    cpu_seconds,
    group_processes,
    query_rows,
    run_cli,
    table_counts,
)
from run_keys import disagreements, without_keys

FIXTURES = REPO / "tests" / "fixtures" / "import"
EXCHANGES = FIXTURES / "exchanges.jsonl"
K2VV = FIXTURES / "k2vv_results.jsonl"


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_line_error(done: subprocess.CompletedProcess[str], code: int, *fragments: str) -> str:
    assert done.returncode == code, (done.stdout, done.stderr)
    err = done.stderr.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ")
    for fragment in fragments:
        assert fragment in err, err
    return err


def _write(path: Path, lines: list[Any]) -> Path:
    path.write_text(
        "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    )
    return path


def _exchange(
    conversation: str | None = None, content: str = "done", **extra: Any
) -> dict[str, Any]:
    line: dict[str, Any] = {
        "request": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        "response": {
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ]
        },
        **extra,
    }
    if conversation is not None:
        line["conversation"] = conversation
    return line


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """Both fixtures imported in one command, with the checks run; (db, per-file report)."""
    db = tmp_path_factory.mktemp("import") / "t.duckdb"
    done = run_cli(
        "import", str(EXCHANGES), str(K2VV), "--provider", "other", "--db", str(db), "-f", "json"
    )
    assert done.returncode == 0, done.stderr
    return db, json.loads(done.stdout)


def _run_of(db: Path, file: Path, conversation: str) -> str:
    [row] = query_rows(
        db,
        "SELECT r.id FROM runs r JOIN imports i ON r.import_id = i.id "
        "WHERE i.path = ? AND r.conversation = ?",
        [str(file), conversation],
    )
    return str(row["id"])


# -- exchange logs ------------------------------------------------------------------------------


def test_report_counts_each_file(imported: tuple[Path, list[dict[str, Any]]]) -> None:
    db, report = imported
    by_format = {r["format"]: r for r in report}
    assert by_format["exchanges"]["lines"] == 6 and by_format["exchanges"]["exchanges"] == 6
    assert by_format["exchanges"]["runs"] == 2 and by_format["exchanges"]["skipped"] == 0
    assert by_format["k2vv"]["lines"] == 7 and by_format["k2vv"]["runs"] == 7
    stored = query_rows(db, "SELECT format, lines, exchanges, runs, skipped, sha256 FROM imports")
    assert {(r["format"], r["lines"], r["exchanges"], r["runs"]) for r in stored} == {
        ("exchanges", 6, 6, 2),
        ("k2vv", 7, 7, 7),
    }
    assert {r["sha256"] for r in stored} == {_sha(EXCHANGES), _sha(K2VV)}
    findings = query_rows(db, "SELECT count(*) AS n FROM findings")[0]["n"]
    assert sum(r["findings"] for r in report) == findings > 0


def test_requests_rebuild_exactly_from_stored_suffixes(
    imported: tuple[Path, list[dict[str, Any]]],
) -> None:
    db, _ = imported
    lines = _lines(EXCHANGES)
    c1, c2 = _run_of(db, EXCHANGES, "c1"), _run_of(db, EXCHANGES, "c2")
    # The 429 and its retry send the same request: one step, index 2.
    expected = [(c1, 0), (c2, 0), (c1, 1), (c2, 1), (c1, 2), (c1, 2)]
    for line, (run, idx) in zip(lines, expected, strict=True):
        rebuilt = query_rows(db, "SELECT role, body FROM request_messages(?, ?)", [run, idx])
        assert [json.loads(r["body"]) for r in rebuilt] == line["request"]["messages"]
        [step] = query_rows(
            db,
            "SELECT request_params, request_hash FROM steps WHERE run_id = ? AND idx = ?",
            [run, idx],
        )
        params = json.loads(step["request_params"])
        assert params == {k: v for k, v in line["request"].items() if k != "messages"}
        hashes = [message_hash(m) for m in line["request"]["messages"]]
        assert step["request_hash"] == request_hash(hashes, params)
    # Each request stored only what it added: 2 + 2 + 2 messages for c1, not 2 + 4 + 6.
    stored = query_rows(db, "SELECT count(*) AS n FROM step_messages WHERE run_id = ?", [c1])
    assert stored[0]["n"] == 6


def test_conversation_steps_in_order_with_totals(
    imported: tuple[Path, list[dict[str, Any]]],
) -> None:
    db, _ = imported
    c1 = _run_of(db, EXCHANGES, "c1")
    [run] = query_rows(db, "SELECT * FROM runs WHERE id = ?", [c1])
    assert run["origin"] == "imported" and run["task"] == "import"
    assert run["task_path"] == str(EXCHANGES) and run["task_sha256"] == _sha(EXCHANGES)
    assert run["provider"] == "acme" and run["model"] == "kimi-k2-thinking"
    assert run["status"] == "completed" and run["termination"] == "completed"
    assert run["final_answer"] == "notes.txt says alpha beta; todo.txt says gamma delta."
    assert (run["steps"], run["tool_calls"], run["prompt_tokens"]) == (3, 2, 40 + 70 + 110)
    assert str(run["started_at"]) == "2025-01-01 10:00:00"
    steps = query_rows(
        db, "SELECT idx, finish_reason, started_at FROM steps WHERE run_id = ? ORDER BY idx", [c1]
    )
    assert [s["finish_reason"] for s in steps] == ["tool_calls", "tool_calls", "stop"]
    assert [s["started_at"] for s in steps] == sorted(s["started_at"] for s in steps)


def test_stream_chunks_are_reassembled(imported: tuple[Path, list[dict[str, Any]]]) -> None:
    db, _ = imported
    c1 = _run_of(db, EXCHANGES, "c1")
    [step] = query_rows(db, "SELECT * FROM steps WHERE run_id = ? AND idx = 1", [c1])
    assert step["streamed"] is True
    assert step["reasoning"] == "The file says alpha beta. Now todo.txt."
    assert step["reasoning_source"] == "reasoning_content"
    assert (step["prompt_tokens"], step["completion_tokens"]) == (70, 20)
    assert (step["reasoning_tokens"], step["reasoning_tokens_source"]) == (11, "reported")
    assert step["finish_reason_raw"] == "tool_calls"
    events = json.loads(step["stream_events"])
    chunks = _lines(EXCHANGES)[2]["chunks"]
    assert [json.loads(line[len("data: ") :]) for _, line in events] == chunks
    assert all(t is None for t, _ in events)  # the log has no arrival times
    assert step["ttft_reasoning_ms"] is None and step["ttft_tool_call_ms"] is None
    [call] = query_rows(db, "SELECT * FROM tool_calls WHERE run_id = ? AND step_idx = 1", [c1])
    assert call["id"] == "functions.read_file:1" and call["id_format"] == "kimi"
    assert call["arguments_raw"] == '{"path": "todo.txt"}' and call["schema_valid"] is True


def test_tool_messages_become_results_of_the_previous_step(
    imported: tuple[Path, list[dict[str, Any]]],
) -> None:
    db, _ = imported
    c1 = _run_of(db, EXCHANGES, "c1")
    results = query_rows(db, "SELECT * FROM tool_results WHERE run_id = ? ORDER BY step_idx", [c1])
    assert [
        (r["step_idx"], r["call_idx"], r["tool_call_id"], r["name"], r["output"]) for r in results
    ] == [
        (0, 0, "functions.read_file:0", "read_file", "alpha beta"),
        (1, 0, "functions.read_file:1", "read_file", "gamma delta"),
    ]
    # Step 0 ended at 10:00:01.5 and the next request left at 10:00:02.
    assert results[0]["duration_ms"] == pytest.approx(500)
    lines = _lines(EXCHANGES)
    replays = query_rows(
        db, "SELECT idx, replay_message_hash FROM steps WHERE run_id = ? ORDER BY idx", [c1]
    )
    assert replays[0]["replay_message_hash"] == message_hash(lines[2]["request"]["messages"][2])
    assert replays[1]["replay_message_hash"] == message_hash(lines[5]["request"]["messages"][4])
    assert replays[2]["replay_message_hash"] is None  # the final answer was never sent back


def test_errors_are_classified_and_retries_folded(
    imported: tuple[Path, list[dict[str, Any]]],
) -> None:
    db, _ = imported
    c1, c2 = _run_of(db, EXCHANGES, "c1"), _run_of(db, EXCHANGES, "c2")
    [retried] = query_rows(db, "SELECT * FROM steps WHERE run_id = ? AND idx = 2", [c1])
    assert retried["retries"] == 1 and retried["error_kind"] is None
    [first_try] = json.loads(retried["retry_errors"])
    assert first_try["kind"] == "rate_limit" and first_try["status"] == 429
    assert "Rate limit reached" in first_try["message"]
    [failed] = query_rows(db, "SELECT * FROM steps WHERE run_id = ? AND idx = 1", [c2])
    assert (failed["error_kind"], failed["http_status"]) == ("server_error", 500)
    assert failed["error_message"] == "HTTP 500: upstream exploded"
    [run] = query_rows(db, "SELECT * FROM runs WHERE id = ?", [c2])
    assert (run["status"], run["termination"]) == ("failed", "provider_error")
    assert run["error"] == "HTTP 500: upstream exploded"
    [call] = query_rows(db, "SELECT * FROM tool_calls WHERE run_id = ?", [c2])
    assert (
        call["schema_valid"] is False
        and call["schema_error"] == "path: required property is missing"
    )
    kinds = {r["kind"] for r in query_rows(db, "SELECT kind FROM findings WHERE run_id = ?", [c2])}
    assert {"http_server_error", "schema_violation"} <= kinds


def test_provider_label_only_where_the_file_names_none(
    imported: tuple[Path, list[dict[str, Any]]],
) -> None:
    db, _ = imported
    c1, c2 = _run_of(db, EXCHANGES, "c1"), _run_of(db, EXCHANGES, "c2")
    providers = {r["id"]: r["provider"] for r in query_rows(db, "SELECT id, provider FROM runs")}
    assert providers[c1] == "acme" and providers[c2] == "other"
    [step] = query_rows(
        db, "SELECT upstream_provider FROM steps WHERE run_id = ? AND idx = 0", [c2]
    )
    assert step["upstream_provider"] == "Z.AI"
    stored = {
        r["format"]: r["provider"] for r in query_rows(db, "SELECT format, provider FROM imports")
    }
    assert stored == {"exchanges": "other", "k2vv": "other"}


def test_without_provider_runs_are_unknown_and_a_note_says_so(
    db_path: Path, tmp_path: Path, cli: CliRun
) -> None:
    log = _write(tmp_path / "plain.jsonl", [_exchange(), _exchange(content="again")])
    done = cli("import", str(log), "--db", str(db_path), "--no-analyze")
    assert done.returncode == 0, done.stderr
    assert "names no provider for 2 runs" in done.stderr and "--provider" in done.stderr
    runs = query_rows(db_path, "SELECT provider, conversation, steps FROM runs")
    assert [(r["provider"], r["conversation"], r["steps"]) for r in runs] == [
        ("unknown", None, 1)
    ] * 2
    assert query_rows(db_path, "SELECT count(*) AS n FROM findings")[0]["n"] == 0  # --no-analyze


# -- K2-Vendor-Verifier ---------------------------------------------------------------------------


def test_k2vv_lines_are_one_step_runs_keeping_their_verdicts(
    imported: tuple[Path, list[dict[str, Any]]],
) -> None:
    db, _ = imported
    runs = query_rows(
        db,
        "SELECT r.* FROM runs r JOIN imports i ON r.import_id = i.id WHERE i.format = 'k2vv' "
        "ORDER BY r.id",
    )
    assert [r["conversation"] for r in runs] == [str(i) for i in range(1, 8)]
    assert all(r["steps"] == 1 and r["provider"] == "other" for r in runs)
    by_index = {int(r["conversation"]): r for r in runs}
    for line in _lines(K2VV):
        verdict = json.loads(by_index[line["data_index"]]["settings"])["k2vv"]
        for key in ("status", "finish_reason", "tool_calls_valid", "hash", "last_run_at"):
            assert verdict[key] == line[key]
    # Our schema verdicts agree with the verifier's on the lines that finished with calls.
    for index, theirs in ((1, True), (2, False), (5, True)):
        [call] = query_rows(
            db, "SELECT schema_valid FROM tool_calls WHERE run_id = ?", [by_index[index]["id"]]
        )
        assert call["schema_valid"] is theirs
    assert (by_index[1]["status"], by_index[1]["termination"]) == ("completed", "max_steps")
    assert (by_index[3]["termination"], by_index[3]["final_answer"]) == ("completed", "Hello!")
    # History in the request (a previous call, its result, an answer) is kept and rebuilt.
    rebuilt = query_rows(db, "SELECT body FROM request_messages(?, 0)", [by_index[2]["id"]])
    assert [json.loads(r["body"]) for r in rebuilt] == _lines(K2VV)[1]["request"]["messages"]
    steps = {
        int(r["conversation"]): r
        for r in query_rows(
            db,
            "SELECT r.conversation, s.* FROM steps s JOIN runs r ON r.id = s.run_id "
            "WHERE r.settings->>'$.import.format' = 'k2vv'",
        )
    }
    assert steps[1]["reasoning"] == "User wants Paris weather; call the tool."
    assert steps[1]["latency_ms"] == 2315
    assert str(steps[1]["started_at"]) == "2025-11-15 10:20:29.197345"  # last_run_at - duration
    assert steps[5]["streamed"] is True and steps[5]["finish_reason"] == "tool_calls"
    assert (steps[6]["error_kind"], steps[6]["http_status"]) == ("rate_limit", 429)
    assert steps[7]["error_kind"] == "timeout"
    assert (by_index[6]["status"], by_index[6]["termination"]) == ("failed", "provider_error")


def test_checks_find_a_leak_in_an_imported_response(
    imported: tuple[Path, list[dict[str, Any]]],
) -> None:
    db, _ = imported
    [leak] = query_rows(
        db,
        "SELECT f.* FROM findings f JOIN runs r ON r.id = f.run_id "
        "WHERE r.conversation = '4' AND f.kind = 'leaked_special_tokens'",
    )
    evidence = json.loads(leak["evidence"])
    assert leak["step_idx"] == 0 and "<|tool_calls_section_begin|>" in evidence["tokens"]


def test_imported_runs_show_in_runs_and_show(
    imported: tuple[Path, list[dict[str, Any]]], cli: CliRun
) -> None:
    db, _ = imported
    done = cli("runs", "--db", str(db), "--provider", "acme", "-f", "json")
    assert done.returncode == 0, done.stderr
    [run] = json.loads(done.stdout)
    assert run["task"] == "import" and run["steps"] == 3
    shown = cli("show", run["id"], "--db", str(db), "-f", "json")
    assert shown.returncode == 0, shown.stderr
    detail = json.loads(shown.stdout)
    assert [s["index"] for s in detail["steps"]] == [0, 1, 2]
    assert detail["steps"][0]["tool_results"][0]["output"] == "alpha beta"
    # The logged stream's distribution, measured from its lines; when each came is unknown.
    assert detail["steps"][0]["stream"] is None  # not streamed
    shape = detail["steps"][1]["stream"]
    assert shape["chunks"] == len(_lines(EXCHANGES)[2]["chunks"]) and shape["reasoning"]
    assert (shape["timed"], shape["gap_ms"], shape["first_text_ms"]) == (False, None, None)
    table = cli("show", run["id"], "--db", str(db))
    assert table.returncode == 0 and "gamma delta" in table.stdout
    assert "arrival times unknown" in table.stdout


# -- bad input ------------------------------------------------------------------------------------


def test_skip_mode_reports_line_numbers_and_imports_the_rest(
    db_path: Path, tmp_path: Path, cli: CliRun
) -> None:
    log = _write(
        tmp_path / "mixed.jsonl",
        [
            _exchange("a"),
            '{"request": {"messages": [}',
            "",
            {"request": {"model": "m"}, "response": {}},
            _exchange("b", latency_ms="slow"),
            "[1, 2]",
            _exchange("c"),
        ],
    )
    done = cli(
        "import",
        str(log),
        "--on-error",
        "skip",
        "--provider",
        "p",
        "--db",
        str(db_path),
        "-f",
        "json",
    )
    assert done.returncode == 0, done.stderr
    [report] = json.loads(done.stdout)
    assert (report["lines"], report["exchanges"], report["runs"], report["skipped"]) == (6, 2, 2, 4)
    skipped = [line for line in done.stderr.splitlines() if line.startswith("skipped ")]
    assert skipped == [
        f"skipped {log}:2: not JSON: Expecting value (column 27)",
        f"skipped {log}:4: request.messages: missing",
        f"skipped {log}:5: latency_ms: must be a non-negative number of milliseconds",
        f"skipped {log}:6: a JSON array, not an object",
    ]
    [row] = query_rows(db_path, "SELECT skipped, skipped_lines FROM imports")
    assert row["skipped"] == 4
    assert [s["line"] for s in json.loads(row["skipped_lines"])] == [2, 4, 5, 6]
    assert {r["conversation"] for r in query_rows(db_path, "SELECT conversation FROM runs")} == {
        "a",
        "c",
    }


def test_refuse_mode_names_file_line_and_field_and_changes_nothing(
    db_path: Path, tmp_path: Path, cli: CliRun
) -> None:
    first = cli("import", str(K2VV), "--db", str(db_path), "--provider", "p")
    assert first.returncode == 0, first.stderr
    before, digest = table_counts(db_path), _sha(db_path)
    log = _write(
        tmp_path / "bad.jsonl",
        [
            _exchange("a"),
            _exchange("a", content="more"),
            {**_exchange("b"), "started_at": "yesterday"},
        ],
    )
    done = cli("import", str(EXCHANGES), str(log), "--db", str(db_path))
    _one_line_error(done, 2, f"{log}:3:", "started_at", "not an ISO 8601 time", "--on-error skip")
    assert table_counts(db_path) == before and _sha(db_path) == digest


def test_a_bad_line_after_rows_were_written_rolls_everything_back(
    db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import_files(db_path, [K2VV], ImportOptions(provider="p"))
    before = table_counts(db_path)
    monkeypatch.setattr(import_writer, "FLUSH_ROWS", 1)  # every row goes to DuckDB at once
    log = _write(tmp_path / "late.jsonl", [_exchange(str(i)) for i in range(30)] + ["{oops"])
    with pytest.raises(Exception, match=r"late\.jsonl:31: not JSON"):
        import_files(db_path, [EXCHANGES, log], ImportOptions(provider="p"))
    assert table_counts(db_path) == before


def test_runs_written_after_their_steps_give_them_their_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An imported run's row is written when its log ends, after batches that held its
    steps: every row still gets its run's key, and each tool output its tool message holds
    is stored once (migration 16), with the values an import in one batch stores."""
    whole, batched = tmp_path / "whole.duckdb", tmp_path / "batched.duckdb"
    import_files(whole, [EXCHANGES], ImportOptions(provider="p"))
    monkeypatch.setattr(import_writer, "FLUSH_ROWS", 1)  # every row goes to DuckDB at once
    import_files(batched, [EXCHANGES], ImportOptions(provider="p"))
    results = "SELECT * EXCLUDE (run_id, run_key) FROM tool_results ORDER BY ALL"
    with duckdb.connect(str(batched), read_only=True) as conn:
        assert disagreements(conn) == []
        stored = conn.execute(
            "SELECT count(*), count(output_position) FROM tool_result_rows"
        ).fetchone()
        assert stored is not None and stored[0] == stored[1] > 0
        rows = conn.execute(results).fetchall()
    with duckdb.connect(str(whole), read_only=True) as conn:
        assert conn.execute(results).fetchall() == rows


def test_ctrl_c_in_the_middle_leaves_nothing(
    db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import_files(db_path, [EXCHANGES], ImportOptions())
    before = table_counts(db_path)
    monkeypatch.setattr(import_writer, "FLUSH_ROWS", 1)
    read = 0

    def interrupt(n: int) -> None:
        nonlocal read
        read += n
        if read > K2VV.stat().st_size // 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_files(db_path, [K2VV], ImportOptions(), on_progress=interrupt)
    assert table_counts(db_path) == before


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "empty file"),
        (b"\n\n  \n", "empty file"),
        (b'[\n  {"request": {}}\n]\n', "not JSON Lines"),
        (b"id,request\n1,hello\n", ":1: not JSON"),
        (b'{"prompt": "hi", "completion": "there"}\n', ":1: neither an exchange"),
        (
            b'{"request": {"messages": []}, "response": {}, "error": {"status": 500}}\n',
            "exactly one",
        ),
        (b'\xff\xfe{"request": 1}\n', ":1: not UTF-8 text"),
    ],
)
def test_files_that_are_not_exchange_logs_are_refused(
    db_path: Path, tmp_path: Path, content: bytes, fragment: str, cli: CliRun
) -> None:
    log = tmp_path / "input.jsonl"
    log.write_bytes(content)
    done = cli("import", str(log), "--db", str(db_path))
    _one_line_error(done, 2, str(log), fragment)
    assert not db_path.exists()  # a database created for the import is removed again


def test_unreadable_files_are_refused_before_the_database_is_touched(
    db_path: Path, tmp_path: Path, cli: CliRun
) -> None:
    missing = tmp_path / "nope.jsonl"
    _one_line_error(
        cli("import", str(missing), "--db", str(db_path)), 2, str(missing), "cannot read"
    )
    _one_line_error(cli("import", str(tmp_path), "--db", str(db_path)), 2, "is a directory")
    assert not db_path.exists()


def test_all_lines_skipped_is_still_an_error(db_path: Path, tmp_path: Path, cli: CliRun) -> None:
    log = _write(tmp_path / "junk.jsonl", ["nope", '{"request": 3}'])
    done = cli("import", str(log), "--on-error", "skip", "--db", str(db_path))
    err = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2 and err.startswith("error: ") and "all 2 lines are malformed" in err


@pytest.mark.slow
def test_locked_database_is_reported_and_left_alone(db_path: Path) -> None:
    import_files(db_path, [K2VV], ImportOptions())
    before = _sha(db_path)
    holder = duckdb.connect(str(db_path))
    try:
        _one_line_error(run_cli("import", str(EXCHANGES), "--db", str(db_path)), 4, "locked")
    finally:
        holder.close()
    assert _sha(db_path) == before


# -- secrets and re-imports ----------------------------------------------------------------------


def test_secrets_in_a_log_never_reach_the_database(
    db_path: Path, tmp_path: Path, cli: CliRun
) -> None:
    secret = "sk-live-0123456789abcdefghijklmnop"
    line = _exchange(
        "s",
        headers={"Authorization": f"Bearer {secret}", "x-request-id": "r-1", "Cookie": "sid=9"},
    )
    line["request"].update(
        api_key=secret,
        extra_headers={"Authorization": f"Bearer {secret}", "X-Title": "demo"},
        metadata={"user": "u1", "note": secret, "access_token": "tok-123456789"},
    )
    log = _write(tmp_path / "secret.jsonl", [line])
    done = cli("import", str(log), "--db", str(db_path))
    assert done.returncode == 0, done.stderr
    conn = duckdb.connect(str(db_path), read_only=True)
    try:
        for table in table_counts(db_path):
            text = json.dumps(conn.execute(f"SELECT * FROM {table}").fetchall(), default=str)
            for leaked in (secret, "tok-123456789", "sid=9"):
                assert leaked not in text, table
    finally:
        conn.close()
    [step] = query_rows(db_path, "SELECT request_params, response_headers, request_id FROM steps")
    params = json.loads(step["request_params"])
    assert "api_key" not in params and params["extra_headers"] == {"X-Title": "demo"}
    assert params["metadata"] == {"user": "u1", "note": "[redacted]"}
    assert json.loads(step["response_headers"]) == {"x-request-id": "r-1"}
    assert step["request_id"] == "r-1"


def test_reimporting_the_same_bytes_is_refused_unless_again(db_path: Path, cli: CliRun) -> None:
    assert cli("import", str(K2VV), "--db", str(db_path), "--no-analyze").returncode == 0
    before = table_counts(db_path)
    again = cli("import", str(K2VV), "--db", str(db_path))
    _one_line_error(again, 2, str(K2VV), "already imported", "--again")
    assert table_counts(db_path) == before
    forced = cli("import", str(K2VV), "--again", "--db", str(db_path), "--no-analyze")
    assert forced.returncode == 0, forced.stderr
    after = table_counts(db_path)
    assert after["runs"] == 2 * before["runs"] and after["imports"] == 2
    # Messages are content-addressed: the second import stored none anew.
    assert after["messages"] == before["messages"]


def test_format_can_be_forced(db_path: Path, cli: CliRun) -> None:
    done = cli("import", str(K2VV), "--format-in", "k2vv", "--db", str(db_path), "-f", "json")
    assert done.returncode == 0, done.stderr
    [report] = json.loads(done.stdout)
    assert report["format"] == "k2vv" and report["runs"] == 7
    wrong = cli("import", str(EXCHANGES), "--format-in", "k2vv", "--db", str(db_path))
    _one_line_error(wrong, 2, f"{EXCHANGES}:1:", "data_index: must be an integer")
    other = cli("import", str(K2VV), "--format-in", "exchanges", "--again", "--db", str(db_path))
    _one_line_error(other, 2, f"{K2VV}:1:", "status: must be an integer HTTP status")


def test_request_hash_pairs_requests_like_the_recorder(
    db_path: Path, tmp_path: Path, cli: CliRun
) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "pick",
                "description": "Choisir un café ✓",
                "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}},
            },
        }
    ]
    choice = {"type": "function", "function": {"name": "pick"}}
    lines = [
        _exchange(str(i), request={**_exchange()["request"], "tools": tools, "tool_choice": choice})
        for i in range(2)
    ]
    lines[1]["request"]["model"] = "another-model"  # same request to another host
    log = _write(tmp_path / "pairs.jsonl", lines)
    assert cli("import", str(log), "--db", str(db_path), "--no-analyze").returncode == 0
    hashes = [message_hash(m) for m in lines[0]["request"]["messages"]]
    expected = request_hash(hashes, {"tools": tools, "tool_choice": choice})
    stored = {r["request_hash"] for r in query_rows(db_path, "SELECT request_hash FROM steps")}
    assert stored == {expected}


# -- reading in worker processes -------------------------------------------------------------------
#
# `workers=2` splits every file by conversation over two worker processes while this one inserts;
# the database must come out exactly as one process writes it, ids included.


def _label_of_worker(worker: int, start: str) -> str:
    """A conversation label that `ownership.owner` gives to `worker` (of two)."""
    label = start
    while ownership.owner(label, 0, 2) != worker:
        label += "x"
    return label


def _completion(message: dict[str, Any]) -> dict[str, Any]:
    finish = "tool_calls" if message.get("tool_calls") else "stop"
    return {
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "look",
            "parameters": {
                "type": "object",
                "properties": {"q": {"type": "string"}, "n": {"type": "integer", "minimum": 1}},
                "required": ["q"],
                "additionalProperties": False,
            },
        },
    }
]


def _conversation(label: str | int, steps: int, first_user: dict[str, Any]) -> list[dict[str, Any]]:
    """Lines of one agent conversation: a tool call per step, then an answer."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": f"sys {label}"}, first_user]
    lines = []
    for step in range(steps):
        last = step == steps - 1
        args = {"q": f"{label}-{step}"} if step != 1 else {"q": 3, "extra": True}  # bad call
        call = {
            "id": f"call_{label}_{step}",
            "type": "function",
            "function": {"name": "look", "arguments": json.dumps(args)},
        }
        message: dict[str, Any] = (
            {"role": "assistant", "content": f"answer {label}"}
            if last
            else {"role": "assistant", "content": None, "tool_calls": [call]}
        )
        line: dict[str, Any] = {
            "conversation": label,
            "latency_ms": 250,
            "request": {"model": "m", "messages": list(messages), "tools": _TOOLS},
            "response": _completion(message),
        }
        if step % 2 == 0:  # the others are untimed: stored at the import's time
            line["started_at"] = 1735689600 + 10 * step
        lines.append(line)
        if not last:
            messages += [message, {"role": "tool", "tool_call_id": call["id"], "content": "ok"}]
    return lines


def _mixed_log(path: Path) -> tuple[Path, str, str]:
    """A log that exercises what splitting by conversation could get wrong; returns it and
    a label each worker owns."""
    first, second = _label_of_worker(0, "a"), _label_of_worker(1, "b")
    # The same message, keys in another order: one hash, and the first line's text is kept.
    shared = {"role": "user", "content": "the same question"}
    reordered = {"content": "the same question", "role": "user"}
    convs = [
        _conversation(first, 6, reordered),
        _conversation(second, 5, shared),
        _conversation(7, 4, {"role": "user", "content": "seven"}),
    ]
    convs[2][2]["conversation"] = "7"  # the integer 7 and the string "7" are one run
    retry = _conversation(second + "r", 2, {"role": "user", "content": "retry me"})
    failed = {**retry[0], "error": {"status": 503, "body": "busy"}}
    del failed["response"]
    stream = _exchange(second + "s", stream=True)
    del stream["response"]
    stream["chunks"] = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "stre"}}]},
        {"choices": [{"index": 0, "delta": {"content": "amed"}, "finish_reason": "stop"}]},
    ]
    nested = _exchange()  # no label of its own, but a nested key of that name
    nested["request"]["metadata"] = {"conversation": first}
    lines: list[Any] = []
    extras = [failed, *retry, stream, nested, _exchange(content="lone"), ""]
    while any(convs):
        for conv in convs:
            if conv:
                lines.append(conv.pop(0))
        lines += extras
        extras = []
    # Spelled with an escape, the key is still `conversation`: parsed, not read off the bytes.
    escaped = json.dumps(_exchange(first, content="escaped")).replace(
        '"conversation"', '"conv\\u0065rsation"'
    )
    lines.insert(9, escaped)
    lines.insert(12, _exchange(second, content="two keys", metadata={"conversation": first}))
    return _write(path, lines), first, second


def _children() -> set[int]:
    """Live child processes of this one (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def _dump(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = duckdb.connect(str(db), read_only=True)
    try:
        return {
            table: sorted(conn.execute(without_keys(conn, table)).fetchall(), key=repr)
            for table in table_counts(db)
            if table != "schema_migrations"  # when each file was created, not what it holds
        }
    finally:
        conn.close()


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Import times and import ids that repeat: call the returned function before each import."""
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    class Clock(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:
            return now.astimezone(tz)

    monkeypatch.setattr(importer, "datetime", Clock)
    counter = iter(())

    def token(_: int) -> str:
        return f"{next(counter):08x}"

    monkeypatch.setattr(files.secrets, "token_hex", token)

    def reset() -> None:
        nonlocal counter
        counter = iter(range(100))

    return reset


def _import_both_ways(
    tmp_path: Path, files: list[Path], reset: Callable[[], None], **options: Any
) -> list[tuple[list[FileReport], list[tuple[str, SkippedLine]], dict[str, Any]]]:
    results = []
    for workers in (1, 2):
        reset()
        db = tmp_path / f"workers-{workers}.duckdb"
        skipped: list[tuple[str, SkippedLine]] = []
        reports = import_files(
            db,
            files,
            ImportOptions(provider="p", workers=workers, **options),
            on_skip=lambda path, line, into=skipped: into.append((path, line)),
        )
        results.append((reports, skipped, _dump(db)))
    return results


def test_two_workers_store_exactly_what_one_process_stores(
    tmp_path: Path, fixed_clock: Callable[[], None]
) -> None:
    log, first, second = _mixed_log(tmp_path / "mixed.jsonl")
    lines = log.read_text().splitlines()
    lines.insert(3, "{not json")
    lines.insert(8, json.dumps({**_exchange(first), "latency_ms": -1}))
    lines.insert(15, json.dumps({"conversation": second, "request": {"model": "m"}}))
    log.write_text("\n".join(lines) + "\n")
    before = _children()
    (one, one_skipped, one_rows), (two, two_skipped, two_rows) = _import_both_ways(
        tmp_path, [EXCHANGES, log, K2VV], fixed_clock, on_error="skip"
    )
    assert two_rows == one_rows
    assert two == one
    assert two_skipped == one_skipped
    # Each numbered its runs for itself (`without_keys`): consistently.
    for workers in (1, 2):
        with duckdb.connect(str(tmp_path / f"workers-{workers}.duckdb"), read_only=True) as conn:
            assert disagreements(conn) == []
    assert [line.line for _, line in one_skipped] == [4, 9, 16]
    assert _children() == before  # the workers are gone
    # What the file exercises did happen.
    db = tmp_path / "workers-1.duckdb"
    report = one[1]
    runs = {
        r["conversation"]: r
        for r in query_rows(db, "SELECT * FROM runs WHERE import_id = ?", [report.import_id])
    }
    assert {first, second, "7", second + "r", second + "s", None} <= set(runs)
    assert runs["7"]["steps"] == 4  # the integer 7 and the string "7" are one run
    assert runs[first]["steps"] == 7  # with the line that spells the key with an escape
    assert runs[second + "r"]["steps"] == 2  # the failed call was retried
    # A run is named after its first line, and the report lists them in file order.
    starts = [int(run_id.removeprefix(f"{report.import_id}-")) for run_id in report.runs]
    assert starts == sorted(starts) and starts[0] == 1
    [body] = query_rows(
        db,
        "SELECT body FROM messages WHERE hash = ?",
        [message_hash({"role": "user", "content": "the same question"})],
    )
    assert list(json.loads(body["body"])) == ["content", "role"]  # the first line's text


def test_two_workers_number_every_message_whenever_the_insert_flushes(
    tmp_path: Path, fixed_clock: Callable[[], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step's message list names each message by the number its stored row drew: a batch
    inserted before the messages its lines sent (held back for file order) named none, and
    the views lost those messages. Inserts of a few rows flush between every batch."""
    monkeypatch.setattr(import_writer, "FLUSH_ROWS", 16)
    labels = [_label_of_worker(i % 2, f"c{i}") for i in range(12)]
    convs = [_conversation(x, 5, {"role": "user", "content": f"go {x}"}) for x in labels]
    lines = [conv[step] for step in range(5) for conv in convs]  # conversations interleaved
    log = _write(tmp_path / "interleaved.jsonl", lines)
    (one, _, one_rows), (two, _, two_rows) = _import_both_ways(tmp_path, [log], fixed_clock)
    assert two_rows == one_rows and two == one
    views = {}
    for workers in (1, 2):
        with duckdb.connect(str(tmp_path / f"workers-{workers}.duckdb"), read_only=True) as conn:
            assert disagreements(conn) == []
            views[workers] = {
                view: sorted(conn.execute(without_keys(conn, view)).fetchall(), key=repr)
                for view in ("steps", "step_messages", "tool_results")
            }
    assert views[2] == views[1]
    # Each request comes back whole: what a reader of the store gets.
    with duckdb.connect(str(tmp_path / "workers-2.duckdb"), read_only=True) as conn:
        steps = conn.execute("SELECT run_id, idx, request_message_count FROM steps").fetchall()
        assert len(steps) == 60
        for run_id, idx, count in steps:
            sent = conn.execute("SELECT count(*) FROM request_messages(?, ?)", [run_id, idx])
            assert sent.fetchone() == (count,)


def test_two_workers_refuse_the_first_malformed_line(tmp_path: Path, db_path: Path) -> None:
    import_files(db_path, [K2VV], ImportOptions())
    before_rows, before_children = table_counts(db_path), _children()
    log, first, second = _mixed_log(tmp_path / "mixed.jsonl")
    lines = log.read_text().splitlines()
    # The later bad line is the other worker's, and it may well be found first.
    lines[20] = json.dumps({**_exchange(first), "latency_ms": "slow"})
    lines[16] = json.dumps({**_exchange(second), "started_at": "noon"})
    log.write_text("\n".join(lines) + "\n")
    errors = []
    for workers in (1, 2):
        with pytest.raises(ImportFileError) as refused:
            import_files(db_path, [EXCHANGES, log], ImportOptions(workers=workers))
        errors.append(str(refused.value))
        assert table_counts(db_path) == before_rows
        assert _children() == before_children
    assert errors[0] == errors[1]
    assert f"{log}:17: started_at: not an ISO 8601 time" in errors[0]


@pytest.mark.slow  # several seconds: worker processes / a served simulator
def test_two_workers_leave_nothing_behind_when_interrupted(tmp_path: Path, db_path: Path) -> None:
    import_files(db_path, [K2VV], ImportOptions())
    before_rows, before_children = table_counts(db_path), _children()
    log, _, _ = _mixed_log(tmp_path / "mixed.jsonl")
    log.write_text(log.read_text() * 400)  # every line again: conversations grow, no matter
    read = 0

    def interrupt(n: int) -> None:
        nonlocal read
        read += n
        if read > log.stat().st_size // 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_files(db_path, [log], ImportOptions(workers=2), on_progress=interrupt)
    assert table_counts(db_path) == before_rows
    assert _children() == before_children


@pytest.mark.slow  # several seconds: worker processes / a served simulator
def test_a_worker_that_dies_fails_the_import_cleanly(tmp_path: Path, db_path: Path) -> None:
    import_files(db_path, [K2VV], ImportOptions())
    before_rows, before_children = table_counts(db_path), _children()
    log, _, _ = _mixed_log(tmp_path / "mixed.jsonl")
    log.write_text(log.read_text() * 400)
    killed: list[int] = []

    def kill_one(_: int) -> None:
        if not killed:
            killed.append(min(_children() - before_children))
            os.kill(killed[0], signal.SIGKILL)

    with pytest.raises(ImportFileError, match=r"an import worker stopped \(exit code -9\)"):
        import_files(db_path, [log], ImportOptions(workers=2), on_progress=kill_one)
    assert table_counts(db_path) == before_rows
    assert _children() == before_children


READING_CPU_S = 0.8
"""CPU seconds an import worker has used once it is well into reading (starting takes 0.4)."""


@pytest.mark.slow
@pytest.mark.parametrize("existed", [True, False], ids=["existing-db", "new-db"])
def test_ctrl_c_stops_a_parallel_import_and_its_workers(
    db_path: Path, tmp_path: Path, existed: bool
) -> None:
    if existed:
        import_files(db_path, [K2VV], ImportOptions())
    before = table_counts(db_path) if existed else None
    log, _, _ = _mixed_log(tmp_path / "mixed.jsonl")
    log.write_text(log.read_text() * 1000)
    env = {**os.environ, "TRACES_IMPORT_WORKERS": "2", "NO_COLOR": "1"}
    cli = subprocess.Popen(
        [sys.executable, "-m", "analyzer", "import", str(log), "--db", str(db_path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell gives a command
    )
    try:
        deadline = time.monotonic() + 120
        while len(workers := group_processes(cli.pid) - {cli.pid}) < 2 and cli.poll() is None:
            assert time.monotonic() < deadline, "no workers started"
            time.sleep(0.05)
        # Into the reading: each worker has used more CPU than starting costs it (0.4 s; a
        # worker reads this file in about 1.6 s), however long a loaded machine makes it wait.
        while not all(cpu_seconds(pid) > READING_CPU_S for pid in workers) and cli.poll() is None:
            assert time.monotonic() < deadline, "the workers never got to reading"
            time.sleep(0.05)
        os.killpg(cli.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole group
        out, err = cli.communicate(timeout=60)
    finally:
        if cli.poll() is None:
            os.killpg(cli.pid, signal.SIGKILL)
            cli.wait()
    assert cli.returncode == 130, (out, err)  # as the CLI ends on Ctrl-C
    assert err.splitlines() == ["error: interrupted"], err  # no traceback, from any process
    assert group_processes(cli.pid) == set()  # the workers were stopped, not left behind
    if existed:
        assert table_counts(db_path) == before
    else:  # the file the import created is gone, and so is its write-ahead log
        assert sorted(p.name for p in db_path.parent.glob(db_path.name + "*")) == []


@pytest.mark.parametrize(
    ("raw", "label"),
    [
        (b'{"conversation": "a", "request": {}}', "a"),
        (b'{"request": {}, "conversation" :  12 }', "12"),
        (b'{"conversation": -0}', "0"),
        (b'{"conversation": "caf\\u00e9 \\"q\\""}', 'café "q"'),
        # Reading gives no label (no top-level key): a run of its own, which any worker may
        # build; the label read off the bytes only picks which one.
        (b'{"request": {"conversation": "nested"}}', "nested"),
        (b'{"request": {"conversation": "x"}, "conversation": "top"}', "top"),  # two: parsed
        (b'{"conv\\u0065rsation": "escaped"}', "escaped"),  # another spelling: parsed
        (b'{"note": "\\"conversation\\": 1", "conversation": "real"}', "real"),
        (b'{"role": "conversation", "request": {}}', None),
        (b'{"conversation": null}', None),
        (b'{"conversation": 1.5}', None),
        (b'{"conversation": true}', None),
        (b'{"request": {}}', None),
        ('{"conversation": "utf16"}'.encode("utf-16"), "utf16"),
        (b'\xef\xbb\xbf{"conversation": "bom"}', "bom"),
        (b'{"conversation": "unterminated', None),
        # As reading gives them: a token replaced, a surrogate in UTF-8 decoded.
        (b'{"conversation": "sk-aaaaaaaaaaaaaaaaaaaa"}', "[redacted]"),
        (b'{"conversation": "\xed\xa0\x80"}', "\ud800"),
    ],
)
def test_conversation_labels_are_read_as_parsing_reads_them(raw: bytes, label: str | None) -> None:
    assert ownership.conversation_label(raw) == label


def test_workers_are_used_for_large_files_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(reading.WORKERS_ENV, raising=False)
    monkeypatch.setattr(reading, "cores", lambda: 2)
    options = ImportOptions()
    assert options.workers_for(reading.PARALLEL_BYTES - 1) == 1
    assert options.workers_for(reading.PARALLEL_BYTES) == 2
    assert ImportOptions(workers=1).workers_for(10**12) == 1
    assert ImportOptions(workers=3).workers_for(10) == 3
    monkeypatch.setenv(reading.WORKERS_ENV, "2")
    assert options.workers_for(10) == 2
    monkeypatch.setenv(reading.WORKERS_ENV, "many")
    with pytest.raises(ImportFileError, match="TRACES_IMPORT_WORKERS"):
        options.workers_for(10)


def test_the_fast_schema_check_accepts_only_what_jsonschema_accepts() -> None:
    rng = random.Random(7)
    scalars = [None, True, False, 0, 1, -1, 1.0, 2.5, float("inf"), "", "a", "fast", 10**20]

    def value(depth: int = 0) -> Any:
        roll = rng.random()
        if depth < 2 and roll < 0.2:
            return [value(depth + 1) for _ in range(rng.randrange(4))]
        if depth < 2 and roll < 0.45:
            return {rng.choice("abq"): value(depth + 1) for _ in range(rng.randrange(4))}
        return rng.choice(scalars)

    def schema(depth: int = 0) -> Any:
        if rng.random() < 0.05:
            return rng.choice([True, False])
        out: dict[str, Any] = {}
        kinds = ["object", "array", "string", "integer", "number", "boolean", "null"]
        if rng.random() < 0.7:
            out["type"] = rng.choice(kinds) if rng.random() < 0.8 else rng.sample(kinds, 2)
        if depth < 2 and rng.random() < 0.5:
            out["properties"] = {k: schema(depth + 1) for k in rng.sample("abq", rng.randrange(3))}
        if rng.random() < 0.3:
            out["required"] = rng.sample("abq", rng.randrange(3))
        if rng.random() < 0.3:
            out["additionalProperties"] = rng.choice([False, True, {"type": "string"}])
        if depth < 2 and rng.random() < 0.2:
            out["items"] = schema(depth + 1)
        if rng.random() < 0.15:
            out["enum"] = rng.sample(scalars, 3)
        if rng.random() < 0.1:
            out["const"] = rng.choice(scalars)
        for bound in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if rng.random() < 0.1:
                out[bound] = rng.choice([0, 1, 2.5, -1])
        for length in ("minLength", "maxLength", "minItems", "maxItems"):
            if rng.random() < 0.1:
                out[length] = rng.randrange(3)
        if rng.random() < 0.05:
            out["pattern"] = "^a"  # not known to the fast check: jsonschema judges
        if rng.random() < 0.1:
            out["description"] = "ignored"
        return out

    judged = 0
    for _ in range(1500):
        tried = schema()
        accepts = fast_accept(tried)
        if accepts is None:
            continue
        validator = Draft202012Validator(tried)
        for _ in range(10):
            instance = value()
            assert accepts(instance) == validator.is_valid(instance), (tried, instance)
            judged += 1
    assert judged > 5000


@pytest.mark.slow  # several seconds: worker processes / a served simulator
def test_cli_workers_option_gives_the_same_runs(tmp_path: Path) -> None:
    """`--workers 2` reads the files in two processes; the stored runs are the same."""
    stored = []
    for workers in ("1", "2"):
        db = tmp_path / f"w{workers}.duckdb"
        done = run_cli(
            "import", str(EXCHANGES), str(K2VV), "--workers", workers, "--db", str(db), "-f", "json"
        )
        assert done.returncode == 0, done.stderr
        conn = duckdb.connect(str(db), read_only=True)
        try:
            stored.append(
                conn.execute(
                    "SELECT provider, model, conversation, steps, tool_calls, failure_summary "
                    "FROM runs ORDER BY conversation, steps"
                ).fetchall()
            )
        finally:
            conn.close()
    assert stored[0] == stored[1] and len(stored[0]) > 2
