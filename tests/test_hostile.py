"""Hostile endpoints and logs: a stream that never ends, JSON no strict parser takes, a stream
cut short, and a host or a log that hands the API key back. Each is served over real HTTP
(the simulator's faults) to the real `openai` client, through `traces record` where the exit
code matters; the stored rows, findings, termination and output are checked, and a secret's
bytes are looked for in the database file itself."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pytest

from analyzer.checks.persist import analyze_recorded
from traces.importing import ImportOptions, import_files
from traces.importing.lines import ImportFileError
from traces.retry import RetryPolicy
from traces.sim.config import SimConfig
from traces.sim.faults.transport import NESTING
from traces.sim.server import SimServer
from traces.sse import STREAM_CUT

from conftest import TASKS, CliRun, query_rows, run_cli, table_counts
from recording import Recording, record_many

CHAIN_SHORT = str(TASKS / "chain_short.toml")


def _error_line(stderr: str) -> str:
    """The one line of a failed command, without the ids of the runs it names."""
    assert "Traceback" not in stderr
    [line] = stderr.splitlines()
    assert line.startswith("error:"), stderr
    return re.sub(r" \(stored as failed: [^)]*\)", "", line)


# -- a response that never ends ---------------------------------------------------------------


@pytest.mark.slow
def test_a_stream_that_never_ends_times_out_at_the_deadline_every_attempt(db_path: Path) -> None:
    done = run_cli(
        # 0.5 s: the reply and several of its repeats (every 0.05 s) arrive within it even on
        # a loaded machine (at 0.2 s a load of 19 let only the reply's first pieces through).
        "record", "--task", CHAIN_SHORT, "--fault", "endless_response=1", "--timeout", "0.5",
        "--max-steps", "1", "--db", str(db_path),
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert _error_line(done.stderr) == (
        "error: endpoint failed on the first request of every run: "
        "no complete response within the 0.5 s deadline"
    )
    [step] = query_rows(db_path, "SELECT * FROM steps")
    assert step["error_kind"] == "timeout" and step["retries"] == 3
    assert [e["kind"] for e in json.loads(step["retry_errors"])] == ["timeout"] * 3
    # What trickled in before the deadline is kept: the same piece, again and again.
    lines = [line for _, line in json.loads(step["stream_events"])]
    assert len(lines) > 3 and "data: [DONE]" not in lines and lines[-1] == lines[-2]
    assert step["content"] is None and step["latency_ms"] < 1500
    [run] = query_rows(db_path, "SELECT status, termination FROM runs")
    assert run == {"status": "failed", "termination": "provider_error"}
    findings = query_rows(db_path, "SELECT kind, severity, layer, step_idx FROM findings")
    assert {"kind": "http_timeout", "severity": "error", "layer": "provider", "step_idx": 0} in (
        findings
    )


@pytest.mark.slow
def test_a_response_that_never_ends_is_retried_until_one_ends(db_path: Path) -> None:
    retry = {"retry": RetryPolicy(base_s=0.0, max_retries=10)}
    summaries = record_many(
        db_path,
        {
            f"{stream}": Recording(
                sim=SimConfig(faults={"endless_response": 0.4}),
                stream=stream,
                timeout_s=0.15,
                settings=retry,
            )
            for stream in (True, False)
        },
    )
    for summary in summaries.values():
        assert summary.outcome.success is True
        steps = query_rows(db_path, "SELECT * FROM steps WHERE run_id = ?", [summary.id])
        assert all(s["error_kind"] is None for s in steps)
        failed = [e for s in steps for e in json.loads(s["retry_errors"] or "[]")]
        assert failed and {e["kind"] for e in failed} == {"timeout"}
        assert {e["message"] for e in failed} == {"no complete response within the 0.15 s deadline"}


# -- JSON no strict parser takes ---------------------------------------------------------------

_SPOILED = {
    "non_json_numbers": (
        '"usage":{"prompt_tokens":NaN,"completion_tokens":1e999,"total_tokens":-Infinity}',
        "NaN is not a JSON number",
    ),
    "deeply_nested_json": ('"usage":' + "[" * NESTING, "nested too deep to parse"),
}


@pytest.mark.slow
@pytest.mark.parametrize("fault", sorted(_SPOILED))
def test_a_body_no_strict_parser_takes_is_stored_raw_and_blamed_on_the_host(
    fault: str, db_path: Path
) -> None:
    marker, reason = _SPOILED[fault]
    done = run_cli(
        "record", "--task", CHAIN_SHORT, "--fault", f"{fault}=1", "--no-stream",
        "--db", str(db_path),
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert _error_line(done.stderr) == (
        f"error: endpoint failed on the first request of every run: response is not JSON: {reason}"
    )
    [step] = query_rows(db_path, "SELECT * FROM steps")
    assert marker in step["response_body"]  # the body exactly as it came
    assert step["error_kind"] == "invalid_response" and step["usage_raw"] is None
    [run] = query_rows(db_path, "SELECT status, termination FROM runs")
    assert run == {"status": "failed", "termination": "provider_error"}
    [finding] = query_rows(db_path, "SELECT kind, severity, layer, step_idx FROM findings")
    assert finding == {
        "kind": "http_invalid_response",
        "severity": "error",
        "layer": "provider",
        "step_idx": 0,
    }


@pytest.mark.slow
@pytest.mark.parametrize("fault", sorted(_SPOILED))
def test_a_chunk_no_strict_parser_takes_is_kept_and_the_rest_of_the_stream_read(
    fault: str, db_path: Path
) -> None:
    marker, reason = _SPOILED[fault]
    done = run_cli(
        "record", "--task", CHAIN_SHORT, "--fault", f"{fault}=1", "--max-steps", "2",
        "--db", str(db_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    steps = query_rows(db_path, "SELECT * FROM steps ORDER BY idx")
    assert len(steps) == 2
    for step in steps:
        # The usage chunk is lost, the answer is not: its calls were read and executed.
        assert step["error_kind"] is None and step["usage_raw"] is None
        lines = [line for _, line in json.loads(step["stream_events"])]
        assert sum(marker in line for line in lines) == 1 and lines[-1] == "data: [DONE]"
        [anomaly] = json.loads(step["anomalies"])
        assert anomaly["kind"] == "unparsable_chunk" and anomaly["reason"].startswith(reason)
    assert query_rows(db_path, "SELECT count(*) AS n FROM tool_results") == [{"n": 2}]
    [run] = query_rows(db_path, "SELECT termination FROM runs")
    assert run == {"termination": "max_steps"}
    found = query_rows(
        db_path, "SELECT DISTINCT kind, layer FROM findings WHERE layer = 'provider'"
    )
    assert {"kind": "stream_unparsable_chunk", "layer": "provider"} in found


# -- a stream cut short ------------------------------------------------------------------------


def test_a_cut_stream_is_a_failed_attempt_never_an_answer(db_path: Path) -> None:
    summaries = record_many(
        db_path,
        {
            "always": Recording(
                sim=SimConfig(faults={"stream_truncated": 1.0}),
                stream=True,
                settings={"retry": RetryPolicy(base_s=0.0, max_retries=1)},
            ),
            "sometimes": Recording(
                sim=SimConfig(faults={"stream_truncated": 0.5}),
                stream=True,
                settings={"retry": RetryPolicy(base_s=0.0, max_retries=10)},
            ),
        },
    )
    always = summaries["always"]
    [step] = query_rows(db_path, "SELECT * FROM steps WHERE run_id = ?", [always.id])
    assert (step["error_kind"], step["error_message"], step["retries"]) == (
        "connection",
        STREAM_CUT,
        1,
    )
    # The fragment is kept as lines, never read as the model's turn.
    assert step["content"] is None and step["reasoning"] is None
    assert query_rows(db_path, "SELECT * FROM tool_calls WHERE run_id = ?", [always.id]) == []
    assert always.outcome.termination.value == "provider_error"

    sometimes = summaries["sometimes"]
    assert sometimes.outcome.success is True
    steps = query_rows(db_path, "SELECT * FROM steps WHERE run_id = ?", [sometimes.id])
    assert all(s["error_kind"] is None for s in steps)
    failed = [e for s in steps for e in json.loads(s["retry_errors"] or "[]")]
    assert failed and all((e["kind"], e["message"]) == ("connection", STREAM_CUT) for e in failed)
    # Each stored step is the attempt that finished: its stream has a finish and [DONE].
    for step in steps:
        lines = [line for _, line in json.loads(step["stream_events"])]
        assert lines[-1] == "data: [DONE]" and step["finish_reason"] in ("tool_calls", "stop")
    # Read by what happened: the host ended each stream early, the connection was fine.
    findings = analyze_recorded(db_path, [always.id, sometimes.id])
    assert {(f.kind, f.severity) for f in findings[always.id]} == {("stream_without_done", "error")}
    retried = {s["idx"] for s in steps if s["retries"]}
    cut = [f for f in findings[sometimes.id] if f.kind == "stream_without_done"]
    assert {f.step for f in cut} == retried and {f.severity for f in cut} == {"warning"}
    assert "http_connection" not in {f.kind for f in findings[sometimes.id]}


# -- secrets a host or a log hands back --------------------------------------------------------

KEY = "sk-proj-Zq7RtY3uI9oP1aS5dF8gH2jK4lX6cV0bN"


def _secret_forms(secret: str) -> list[bytes]:
    return [secret.encode(), json.dumps(secret)[1:-1].encode()]


def _assert_nowhere(secret: str, *texts: str | bytes) -> None:
    for text in texts:
        data = text.encode() if isinstance(text, str) else text
        for form in _secret_forms(secret):
            assert form not in data


def _database_bytes(db: Path) -> bytes:
    """The database file and any write-ahead log beside it, as bytes on disk."""
    found = db.read_bytes()
    wal = db.with_name(db.name + ".wal")
    return found + (wal.read_bytes() if wal.exists() else b"")


def _everything_printed(cli: CliRun, db: Path, tmp_path: Path) -> list[str]:
    """What the read commands print about every run, and the HTML report (run in this
    process, their output read at the file descriptors: what they print is what is checked,
    not how an interpreter starts, which the recordings before them check)."""
    outputs = []
    for args in (
        ["runs", "-f", "json"],
        ["failures", "-f", "json"],
        ["failures", "--kind", "http_auth", "-f", "json"],
        ["show", "last", "-f", "json"],
        ["show", "last", "--full"],
    ):
        done = cli(*args, "--db", str(db))
        assert done.returncode == 0, done.stderr
        outputs += [done.stdout, done.stderr]
    page = tmp_path / "report.html"
    done = cli("report", "--html", str(page), "--db", str(db))
    assert done.returncode == 0, done.stderr
    return [*outputs, done.stdout, done.stderr, page.read_text(encoding="utf-8")]


@pytest.mark.slow
def test_a_key_the_host_echoes_is_stored_and_printed_nowhere(
    db_path: Path, tmp_path: Path, cli_fd: CliRun
) -> None:
    env = {"HOSTILE_KEY": KEY}
    base = ["--task", CHAIN_SHORT, "--api-key-env", "HOSTILE_KEY", "--model", "sim-reasoner-1"]
    printed = []
    with SimServer(SimConfig(faults={"auth_echoed": 1.0})) as echo:
        url = ["--base-url", echo.base_url, "--provider", "echo"]
        for stream in ("--stream", "--no-stream"):
            done = run_cli("record", *base, *url, stream, "--db", str(db_path), env=env)
            assert done.returncode == 0, done.stderr
            printed += [done.stdout, done.stderr]
    with SimServer(SimConfig(faults={"auth_echoed_in_error": 1.0})) as refusing:
        url = ["--base-url", refusing.base_url, "--provider", "refusing"]
        done = run_cli("record", *base, *url, "--db", str(db_path), env=env)
        assert done.returncode == 3
        assert _error_line(done.stderr) == (
            "error: endpoint failed on the first request of every run: "
            "HTTP 401: Incorrect API key provided: Bearer [redacted]"
        )
        printed += [done.stdout, done.stderr]
    # The echoes were recorded, redacted: in headers, bodies, SSE lines, answers, errors.
    rows = query_rows(
        db_path,
        "SELECT s.streamed, s.response_headers, s.response_body, s.stream_events, s.content, "
        "s.reasoning, s.error_body, r.error FROM steps s JOIN runs r ON r.id = s.run_id",
    )
    redacted = "Bearer [redacted]"
    assert all(redacted in json.loads(r["response_headers"])["x-request-id"] for r in rows)
    assert any(r["streamed"] and redacted in (r["content"] or "") for r in rows)
    assert any(not r["streamed"] and redacted in (r["response_body"] or "") for r in rows)
    assert any(r["error_body"] and redacted in r["error_body"] for r in rows)
    assert any(r["error"] and redacted in r["error"] for r in rows)
    for row in rows:  # a body that was JSON is still JSON
        if row["response_body"] is not None:
            json.loads(row["response_body"])
    _assert_nowhere(
        KEY, _database_bytes(db_path), *printed, *_everything_printed(cli_fd, db_path, tmp_path)
    )


_LOGGED_SECRET = "sk-ant-api03-Vb8Nm2Qw4Er6Ty8Ui0Op2As4Df6Gh8Jk"
_LOGGED_BEARER = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl"


def _leaky_log(path: Path) -> Path:
    """Exchange lines that quote credentials in a response, a stream, headers and an error."""
    request = {"model": "m", "messages": [{"role": "user", "content": "Which key do I use?"}]}
    answer = {
        "id": "c",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {
                    "role": "assistant",
                    "content": f"Use {_LOGGED_SECRET} with Authorization: Bearer {_LOGGED_BEARER}",
                },
            }
        ],
    }
    chunk = {"choices": [{"index": 0, "delta": {"content": f"key={_LOGGED_SECRET}"}}]}
    done = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    lines = [
        {"request": request, "response": answer, "headers": {"x-request-id": _LOGGED_SECRET}},
        {"request": request, "response": json.dumps(answer)},
        {
            "request": {**request, "stream": True},
            "chunks": ["data: " + json.dumps(chunk), done, "data: [DONE]"],
        },
        {
            "request": request,
            "error": {
                "status": 401,
                "body": {"error": {"message": f"Incorrect API key provided: {_LOGGED_SECRET}"}},
            },
        },
        {
            "request": request,
            "error": {
                "status": 500,
                "body": f"upstream said: Authorization: Bearer {_LOGGED_BEARER}",
            },
        },
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.mark.slow
def test_credentials_in_an_imported_log_are_stored_and_printed_nowhere(
    db_path: Path, tmp_path: Path, cli_fd: CliRun
) -> None:
    log = _leaky_log(tmp_path / "leaky.jsonl")
    done = run_cli("import", str(log), "--provider", "p", "--db", str(db_path))
    assert done.returncode == 0, done.stderr
    contents = [
        r["content"] for r in query_rows(db_path, "SELECT content FROM steps") if r["content"]
    ]
    assert "Use [redacted] with Authorization: Bearer [redacted]" in contents
    assert "key=[redacted]" in contents
    bodies = [r["error_body"] for r in query_rows(db_path, "SELECT error_body FROM steps")]
    assert any(b and "Incorrect API key provided: [redacted]" in b for b in bodies)
    printed = [done.stdout, done.stderr, *_everything_printed(cli_fd, db_path, tmp_path)]
    for secret in (_LOGGED_SECRET, _LOGGED_BEARER):
        _assert_nowhere(secret, _database_bytes(db_path), *printed)


# -- import lines no strict parser takes -------------------------------------------------------

_ANSWER = {
    "id": "c",
    "object": "chat.completion",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant"}}],
}


def _line(conversation: int, usage: str = '{"prompt_tokens": 1}') -> str:
    request = {"model": "m", "messages": [{"role": "user", "content": f"question {conversation}"}]}
    line = json.dumps({"conversation": f"c{conversation}", "request": request, "response": _ANSWER})
    return line[:-2] + f', "usage": {usage}}}}}'


@pytest.mark.parametrize(
    ("usage", "reason"),
    [
        ("NaN", "NaN is not a JSON number"),
        # The fast path keeps NaN: each case starts a pool of import workers (5 to 8 s at a
        # load of 8), and the other refusals are the same path with another reason.
        pytest.param("Infinity", "Infinity is not a JSON number", marks=pytest.mark.slow),
        pytest.param("-Infinity", "-Infinity is not a JSON number", marks=pytest.mark.slow),
        pytest.param(
            "1e999", "number 1e999 is beyond the range of a double", marks=pytest.mark.slow
        ),
        pytest.param(
            "[" * NESTING + "]" * NESTING, "nested too deep to parse", marks=pytest.mark.slow
        ),
    ],
)
def test_an_import_line_no_strict_parser_takes_is_refused_the_same_in_both_readers(
    usage: str, reason: str, tmp_path: Path, db_path: Path
) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text(_line(0) + "\n", encoding="utf-8")
    import_files(db_path, [good], ImportOptions(provider="p"))
    before = table_counts(db_path)
    log = tmp_path / "bad.jsonl"
    lines = [_line(n) for n in range(1, 40)]
    lines[30] = _line(31, usage)
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    errors = []
    for workers in (1, 2):
        with pytest.raises(ImportFileError) as refused:
            import_files(db_path, [log], ImportOptions(provider="p", workers=workers))
        errors.append(str(refused.value))
        assert table_counts(db_path) == before
    assert (
        errors[0]
        == errors[1]
        == (f"{log}:31: not JSON: {reason} (--on-error skip imports the other lines)")
    )


@pytest.mark.slow
def test_an_import_line_with_nan_is_one_error_line_and_exit_2(tmp_path: Path) -> None:
    log = tmp_path / "bad.jsonl"
    log.write_text(_line(1) + "\n" + _line(2, "NaN") + "\n", encoding="utf-8")
    db = tmp_path / "t.duckdb"
    done = run_cli("import", str(log), "--db", str(db))
    assert done.returncode == 2
    assert done.stderr == (
        f"error: {log}:2: not JSON: NaN is not a JSON number "
        "(--on-error skip imports the other lines)\n"
    )
    assert not db.exists()


# -- the redactor itself -----------------------------------------------------------------------


def test_the_redactor_keeps_json_valid_and_finds_every_form_of_the_key() -> None:
    from traces.redaction import Redactor, redact_tokens

    key = "k3y/with+odd=chars&more"
    redactor = Redactor([key, "short"])
    assert redactor.forms and all("short" not in form for form in redactor.forms)  # < 8 chars
    for form in (key, json.dumps(key)[1:-1].replace("/", "\\/"), "k3y%2Fwith%2Bodd%3Dchars%26more"):
        assert redactor.text(f"x {form} y") == "x [redacted] y"
    body = json.dumps({"echo": f"Bearer {key}", key: 1})
    assert json.loads(redactor.json_text(body)) == {"echo": "Bearer [redacted]", "[redacted]": 1}
    # A key made of digits can sit outside any string: the body is re-serialised instead.
    digits = Redactor(["1234567890"])
    cleaned = digits.json_text('{"n": 1234567890, "s": "id 1234567890"}')
    assert json.loads(cleaned) == {"n": 1234567890, "s": "id [redacted]"}
    untouched = '{"a": "nothing secret"}'
    assert redactor.json_text(untouched) is untouched
    # Credential-shaped tokens, not prose that merely looks like the words around one.
    assert redact_tokens("key sk-proj-abcdefghij0123456789 and Bearer ey12345678.abc") == (
        "key [redacted] and Bearer [redacted]"
    )
    prose = "Bearer authentication is basic; a task-oriented-approach-here-and-there."
    assert redact_tokens(prose) is prose


def test_a_key_streamed_in_pieces_is_taken_out_of_every_piece() -> None:
    from traces.model import StreamEvent
    from traces.redaction import Redactor
    from traces.sse import StreamReader

    key = "sk-split-0123456789abcdef"
    pieces = ["before sk-spl", "it-0123456789a", "bcdef after"]
    reader = StreamReader()
    for n, piece in enumerate(pieces):
        chunk = {"choices": [{"index": 0, "delta": {"content": piece}}]}
        reader.line("data: " + json.dumps(chunk), float(n))
    reader.line("data: [DONE]", 3.0)
    exchange = reader.exchange(
        request_body={}, started_at=datetime(2025, 1, 1), latency_ms=3.0, http_status=200,
        headers={},
    )  # fmt: skip
    Redactor([key]).exchange(exchange)
    assert exchange.message is not None
    assert exchange.message["content"] == "before [redacted] after"
    events: list[StreamEvent] = exchange.stream_events or []
    assert all(key[:6] not in e.line and key[-6:] not in e.line for e in events)
    contents = [json.loads(e.line[6:])["choices"][0]["delta"]["content"] for e in events[:3]]
    assert "".join(contents) == "before [redacted] after"
    assert events[3].line == "data: [DONE]"
