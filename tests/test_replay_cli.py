"""`traces replay` as a user runs it: a small suite (K2-Vendor-Verifier lines and OpenAI
batch-input lines) sent to a host over HTTP and to a faulty embedded simulator, repeated and in
both stream modes; the answers paired by request hash; schema_accuracy and tool_call_f1 in
`compare`; answers already stored skipped; the shipped `schemas` suite offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from traces.request_suites.reading import read_suite
from traces.sim.server import SimServer

from conftest import CliRun, query_rows, run_cli

FAULTY = "openai:dropped_call=0.5,invalid_json_arguments=0.5"
FAULTY_LABEL = "sim+dropped_call=0.5,invalid_json_arguments=0.5"


def _tool(name: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": parameters}}


WEATHER = _tool(
    "get_weather",
    {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
)
LOOKUP = _tool(
    "lookup_user",
    {
        "$defs": {"Id": {"type": "integer", "minimum": 1}},
        "type": "object",
        "properties": {"user": {"type": "object", "properties": {"id": {"$ref": "#/$defs/Id"}}}},
        "required": ["user"],
    },
)
NOTE = _tool(
    "save_note",
    {
        "type": "object",
        "properties": {"text": {"anyOf": [{"type": "string", "minLength": 3}, {"type": "null"}]}},
        "required": ["text"],
    },
)


def _ask(text: str) -> list[dict[str, Any]]:
    return [
        {"role": "_input", "content": "You are a helpful agent."},
        {"role": "user", "content": text},
    ]


def _batch(custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


SMALL = [
    {"messages": _ask("Weather in Lyon?"), "tools": [WEATHER], "tool_choice": "auto"},
    _batch("chat-1", {"model": "any", "messages": _ask("Say hello."), "max_tokens": 64}),
    _batch("ref-1", {"messages": _ask("Look up user 7."), "tools": [LOOKUP]}),
    {"messages": _ask("Note this."), "tools": [NOTE], "tool_choice": "required", "stream": True},
    {"messages": _ask("Both, please."), "tools": [LOOKUP, WEATHER], "temperature": 0.6},
]


def _suite(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def _metric(comparison: dict[str, Any], key: str) -> dict[str, Any]:
    found: dict[str, Any] = next(m for m in comparison["metrics"] if m["key"] == key)["values"]
    return found


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory, sim: SimServer) -> dict[str, Any]:
    """The small suite replayed twice over, both ways, to `host` (a simulator reached by URL,
    as any host is) and to a faulty embedded simulator."""
    root = tmp_path_factory.mktemp("replay")
    suite = _suite(root / "small.jsonl", SMALL)
    db = root / "traces.duckdb"
    done = run_cli(
        "replay", str(suite), "--db", str(db), "--provider", "host", "--base-url", sim.base_url,
        "--model", "sim-reasoner-1", "--dialect", FAULTY, "--repeat", "2", "--both",
        "--concurrency", "4", "--format", "json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    compared = run_cli(
        "compare", "--db", str(db), "--task", "small", "--reference", "host", "--format", "json"
    )
    assert compared.returncode == 0, compared.stderr
    return {
        "db": db,
        "suite": suite,
        "summary": json.loads(done.stdout),
        "comparison": json.loads(compared.stdout),
    }


@pytest.mark.slow
def test_every_request_is_asked_of_each_provider_repeated_both_ways(
    replayed: dict[str, Any],
) -> None:
    summary = replayed["summary"]
    assert summary["suite"] == "small" and summary["requests"] == 5
    by_provider = {p["provider"]: p for p in summary["providers"]}
    assert set(by_provider) == {"host", FAULTY_LABEL}
    for row in by_provider.values():
        assert (row["asked"], row["skipped"], row["sent"], row["failed"]) == (20, 0, 20, 0)
        assert len(row["run_ids"]) == 20
    runs = query_rows(
        replayed["db"],
        "SELECT r.provider, r.origin, r.task, r.status, r.steps, s.streamed, s.request_hash, "
        "r.settings->>'$.replay.custom_id' AS custom_id, "
        "CAST(r.settings->>'$.replay.repeat_index' AS INTEGER) AS repeat_index "
        "FROM runs r JOIN steps s ON s.run_id = r.id",
    )
    assert len(runs) == 40
    assert {(r["origin"], r["task"], r["status"], r["steps"]) for r in runs} == {
        ("replay", "small", "completed", 1)
    }
    # Each request: one hash whoever answered, 2 repeats × 2 modes per provider.
    expected = {req.request_hash: req.custom_id for req in read_suite(replayed["suite"]).requests}
    for provider in ("host", FAULTY_LABEL):
        mine = [r for r in runs if r["provider"] == provider]
        assert {r["request_hash"] for r in mine} == set(expected)
        for digest, custom_id in expected.items():
            answers = {
                (r["repeat_index"], r["streamed"]) for r in mine if r["request_hash"] == digest
            }
            assert answers == {(0, False), (0, True), (1, False), (1, True)}
            assert {r["custom_id"] for r in mine if r["request_hash"] == digest} == {custom_id}


@pytest.mark.slow
def test_calls_are_checked_against_the_request_schemas_and_findings_stored(
    replayed: dict[str, Any],
) -> None:
    calls = query_rows(
        replayed["db"],
        "SELECT r.provider, c.name, c.json_valid, c.schema_valid FROM tool_calls c "
        "JOIN runs r ON r.id = c.run_id",
    )
    host = [c for c in calls if c["provider"] == "host"]
    assert host and all(c["json_valid"] and c["schema_valid"] for c in host)
    assert any(not c["json_valid"] for c in calls if c["provider"] == FAULTY_LABEL)
    findings = query_rows(
        replayed["db"],
        "SELECT r.provider, f.kind FROM findings f JOIN runs r ON r.id = f.run_id",
    )
    kinds = {f["kind"] for f in findings if f["provider"] == FAULTY_LABEL}
    assert "invalid_json_arguments" in kinds
    assert not [f for f in findings if f["provider"] == "host"]


@pytest.mark.slow
def test_compare_gives_schema_accuracy_and_tool_call_f1_with_intervals(
    replayed: dict[str, Any],
) -> None:
    comparison = replayed["comparison"]
    assert comparison["reference"] == "host"
    accuracy = _metric(comparison, "schema_accuracy")
    assert accuracy["host"]["value"] == 1.0
    faulty = accuracy[FAULTY_LABEL]
    assert faulty["value"] < 1.0 and faulty["lo"] <= faulty["value"] <= faulty["hi"]
    f1 = _metric(comparison, "tool_call_f1")
    assert "host" not in f1  # the reference is what the others are measured against
    assert f1[FAULTY_LABEL]["value"] < 1.0
    assert f1[FAULTY_LABEL]["lo"] <= f1[FAULTY_LABEL]["value"] <= f1[FAULTY_LABEL]["hi"]
    groups = {g["name"]: g for g in comparison["groups"]}
    assert groups[FAULTY_LABEL]["paired_steps"] == 20


@pytest.mark.slow
def test_answers_already_stored_are_skipped(tmp_path: Path, cli: CliRun) -> None:
    suite = _suite(tmp_path / "two.jsonl", SMALL[:2])
    db = str(tmp_path / "traces.duckdb")

    def replay(*extra: str) -> dict[str, Any]:
        done = cli("replay", suite.as_posix(), "--db", db, "--format", "json", *extra)
        assert done.returncode == 0, done.stderr
        row: dict[str, Any] = json.loads(done.stdout)["providers"][0]
        return row

    first = replay("--no-stream")
    assert (first["asked"], first["skipped"], first["sent"]) == (2, 0, 2)
    again = replay("--no-stream")
    assert (again["asked"], again["skipped"], again["sent"]) == (2, 2, 0)
    more = replay("--both", "--repeat", "2")
    assert (more["asked"], more["skipped"], more["sent"]) == (8, 2, 6)
    done = cli("replay", suite.as_posix(), "--db", db, "--both", "--repeat", "2")
    assert "sim: 8 of 8 already answered, skipped" in done.stderr
    assert query_rows(Path(db), "SELECT count(*) AS n FROM runs")[0]["n"] == 8
    # A request that got no answer is not answered: the next replay sends it again.
    for _ in range(2):
        failing = cli(
            "replay", suite.as_posix(), "--db", db, "--dialect", "openai:server_error_5xx=1",
            "--no-stream", "--format", "json",
        )  # fmt: skip
        assert failing.returncode == 3, failing.stderr
        assert "no request got an answer" in failing.stderr
    failed = query_rows(Path(db), "SELECT count(*) AS n FROM runs WHERE status = 'failed'")
    assert failed[0]["n"] == 4


@pytest.mark.slow
def test_the_shipped_schemas_suite_offline(tmp_path: Path) -> None:
    db = tmp_path / "traces.duckdb"
    done = run_cli(
        "replay", "--suite", "schemas", "--db", str(db), "--dialect", "openai",
        "--dialect", "openai:wrong_type_arguments=0.3", "--concurrency", "16", "--format", "json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)["providers"]
    assert {r["sent"] for r in rows} == {402} and {r["failed"] for r in rows} == {0}
    # Clean, the simulator's calls fit every schema, and no check finds fault with them.
    assert next(r for r in rows if r["provider"] == "sim")["findings"] == 0
    compared = run_cli(
        "compare", "--db", str(db), "--task", "schemas", "--reference", "sim", "--format", "json"
    )
    assert compared.returncode == 0, compared.stderr
    accuracy = _metric(json.loads(compared.stdout), "schema_accuracy")
    assert accuracy["sim"]["value"] == 1.0
    assert accuracy["sim+wrong_type_arguments=0.3"]["value"] < 0.9
