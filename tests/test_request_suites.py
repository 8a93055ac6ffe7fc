"""Request suites: reading both line forms, refusing lines that are not requests (one line,
exit 2, nothing written), the shipped `schemas` suite (built deterministically from the
reference schemas, every feature present) and the simulator answering it schema-valid."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from traces.errors import TracesError
from traces.model import message_hash, request_hash
from traces.request_suites.reading import read_suite
from traces.request_suites.schema_suite import build, write
from traces.sample_files import resolve_request_suite
from traces.sim.policy import decide

from conftest import EXTERNAL, CliRun, reference_missing

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
# A K2-Vendor-Verifier test-set line (its `_input` role is the system turn), then an OpenAI
# batch-input line with the same request.
K2VV_LINE = {
    "model": "kimi-k2",
    "stream": True,
    "messages": [
        {"role": "_input", "content": "You are a weather bot."},
        {"role": "user", "content": "Weather in Lyon?"},
    ],
    "tools": [WEATHER],
    "tool_choice": "auto",
    "temperature": 0.6,
}
BATCH_LINE = {
    "custom_id": "req-1",
    "method": "POST",
    "url": "/v1/chat/completions",
    "body": {
        "model": "gpt-x",
        "messages": [
            {"role": "system", "content": "You are a weather bot."},
            {"role": "user", "content": "Weather in Lyon?"},
        ],
        "tools": [WEATHER],
        "tool_choice": "auto",
        "temperature": 0.6,
    },
}


def _write(path: Path, *lines: Any) -> Path:
    path.write_text(
        "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines),
        encoding="utf-8",
    )
    return path


def test_both_line_forms_read_as_the_same_request(tmp_path: Path) -> None:
    suite = read_suite(_write(tmp_path / "mine.jsonl", K2VV_LINE, "", BATCH_LINE, BATCH_LINE))
    assert suite.name == "mine"
    first, second, third = suite.requests
    assert (first.line, second.line, third.line) == (1, 3, 4)
    # The replay chooses model and stream; the line's own stream stays its default mode.
    assert "model" not in first.body and "stream" not in first.body
    assert first.stream is True and second.stream is None
    assert first.messages[0]["role"] == "system"
    assert first.body["temperature"] == 0.6
    assert second.custom_id == "req-1" and second.label == "req-1" and first.label == "line 1"
    # The same messages, tools and tool_choice: one request hash, as the store computes it.
    expected = request_hash([message_hash(m) for m in first.messages], first.body)
    assert first.request_hash == second.request_hash == third.request_hash == expected
    assert (first.copy, second.copy, third.copy) == (0, 1, 2)


BAD_LINES = [
    ("{not json", "not JSON"),
    ('["a list"]', "expected a JSON object (a request), got a list"),
    ('{"temperature": 1}', "no `messages`"),
    ('{"messages": []}', "no `messages`"),
    ('{"messages": ["hi"]}', "messages[0] is a string, not a message object"),
    ('{"messages": [{"content": "hi"}]}', "messages[0] has no `role`"),
    ('{"messages": [{"role": "user", "content": "x"}], "tools": {}}', "`tools` must be a list"),
    (
        '{"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}',
        "tools[0] is not a function tool",
    ),
    ('{"messages": [{"role": "user", "content": "x"}], "stream": "yes"}', "`stream` must be"),
    (
        '{"custom_id": "a", "method": "GET", "url": "/v1/chat/completions", "body": {}}',
        "`method` 'GET'",
    ),
    (
        '{"custom_id": "a", "url": "/v1/embeddings", "body": {"input": "x"}}',
        "only /v1/chat/completions requests can be replayed",
    ),
    ('{"custom_id": "a", "body": "text"}', "`body` must be a JSON object"),
]


@pytest.mark.parametrize(("line", "fragment"), BAD_LINES)
def test_a_line_that_is_not_a_request_is_one_line_and_nothing_is_written(
    tmp_path: Path, cli: CliRun, line: str, fragment: str
) -> None:
    suite = _write(tmp_path / "bad.jsonl", K2VV_LINE, line)
    db = tmp_path / "traces.duckdb"
    done = cli("replay", str(suite), "--db", str(db))
    assert done.returncode == 2, (done.stdout, done.stderr)
    err = done.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "bad.jsonl:2: " in err and fragment in err
    assert not db.exists()
    assert done.stdout == ""


def test_suite_option_errors(tmp_path: Path, cli: CliRun) -> None:
    empty = _write(tmp_path / "empty.jsonl", "", "  ")
    cases = [
        (("replay", str(empty)), "no requests"),
        (("replay", "--suite", "nosuch"), "no sample request suite 'nosuch'"),
        (("replay", str(tmp_path / "gone.jsonl")), "cannot read the suite"),
        (("replay",), "give a suite"),
        (("replay", "--suite", "schemas", "--both", "--stream"), "--both"),
    ]
    for args, fragment in cases:
        done = cli(*args, "--db", str(tmp_path / "t.duckdb"))
        assert done.returncode == 2, (args, done.stderr)
        assert fragment in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "t.duckdb").exists()


# -- the shipped `schemas` suite ----------------------------------------------------------


@pytest.fixture(scope="module")
def schemas_suite() -> Any:
    return read_suite(resolve_request_suite("schemas"))


def test_shipped_suite_is_built_from_the_reference_schemas_byte_for_byte(tmp_path: Path) -> None:
    source = EXTERNAL / "schemas" / "validator_cases"
    if not source.is_dir():
        reference_missing(source)
    out = tmp_path / "schemas.jsonl"
    write(build(source), out)
    # The shipped file was written by another process, another day: same input, same bytes.
    assert out.read_bytes() == resolve_request_suite("schemas").read_bytes()


def _keywords(schema: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(schema, dict):
        for key, value in schema.items():
            yield key, value
            if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
                for sub in value.values():
                    yield from _keywords(sub)
            else:
                yield from _keywords(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from _keywords(item)


def test_shipped_suite_exercises_every_schema_feature(schemas_suite: Any) -> None:
    assert 300 <= len(schemas_suite.requests) <= 600
    seen: set[str] = set()
    formats: set[str] = set()
    nested = False
    for request in schemas_suite.requests:
        for tool in request.body["tools"]:
            for key, value in _keywords(tool["function"]["parameters"]):
                seen.add(key)
                if key == "format":
                    formats.add(value)
                if key == "properties" and any(
                    isinstance(v, dict) and "properties" in v for v in value.values()
                ):
                    nested = True
    features = {"enum", "anyOf", "$defs", "$ref", "$id", "required", "additionalProperties"}
    features |= {"minimum", "maximum", "exclusiveMinimum", "multipleOf", "minLength", "pattern"}
    features |= {"items", "minItems", "maxItems", "default"}
    assert features <= seen, features - seen
    assert {"date", "date-time", "email", "uri", "uuid"} <= formats
    assert nested
    choices = {
        json.dumps(r.body["tool_choice"], sort_keys=True)[:20] for r in schemas_suite.requests
    }
    assert len(choices) == 2  # "auto", and a named function


def test_simulator_answers_every_shipped_request_with_a_schema_valid_call(
    schemas_suite: Any,
) -> None:
    for request in schemas_suite.requests:
        body = request.body
        decision = decide(body["messages"], body["tools"], seed=0, tool_choice=body["tool_choice"])
        assert len(decision.tool_calls) == 1, request.label
        call = decision.tool_calls[0]
        choice = body["tool_choice"]
        if isinstance(choice, dict):
            assert call.name == choice["function"]["name"], request.label
        schema = next(
            t["function"]["parameters"] for t in body["tools"] if t["function"]["name"] == call.name
        )
        validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
        errors = [e.message for e in validator.iter_errors(json.loads(call.arguments))]
        assert not errors, (request.label, call.arguments[:200], errors[:1])


def test_a_broken_path_to_a_suite_is_not_taken_for_a_name(tmp_path: Path) -> None:
    with pytest.raises(TracesError, match="no sample request suite"):
        resolve_request_suite("schema")
    assert resolve_request_suite(str(tmp_path / "x.jsonl")) == tmp_path / "x.jsonl"
