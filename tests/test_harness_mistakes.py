"""How the harness handles model mistakes and endpoint failures: recorded, never fatal."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from traces.client import EndpointClient, EndpointConfig
from traces.harness import Agent, HarnessSettings
from traces.model import RunOutcome, RunRecord, ToolErrorKind
from traces.retry import RetryPolicy
from traces.runner import RunPlan, record_runs
from traces.sample_files import resolve_task
from traces.store.database import open_for_reading
from traces.store.recorder import Recorder
from traces.tasks import load_task
from traces.tools.base import SuccessResult, ToolOutcome

from conftest import run_cli_in_process
from recording import record, request_messages
from scripted_endpoint import ScriptedEndpoint, answer, error, tool_turn


def test_sandbox_traversal_is_refused_and_recorded_as_tool_error(db_path: Path) -> None:
    script = ScriptedEndpoint(
        [
            tool_turn(
                ("read_file", json.dumps({"path": "../../../../etc/passwd"})),
                ("read_file", json.dumps({"path": "/etc/hostname"})),
                ("list_files", json.dumps({"path": "."})),
            ),
            answer("I could not read outside the project."),
        ]
    )
    with script.serving():
        [summary] = record(db_path, script.base_url, task="files")
    assert summary.outcome.termination == "completed"
    assert summary.outcome.tool_errors == 2
    conn = open_for_reading(db_path)
    rows = conn.execute(
        "SELECT call_idx, error, output FROM tool_results ORDER BY call_idx"
    ).fetchall()
    assert "outside the sandbox" in rows[0][1] and "outside the sandbox" in rows[1][1]
    assert "root:" not in rows[0][2]
    assert (rows[2][1] is None and "src/" in rows[2][2]) or rows[2][1] is None
    kinds = conn.execute("SELECT error_kind FROM tool_results ORDER BY call_idx").fetchall()
    assert kinds == [("sandbox",), ("sandbox",), (None,)]
    # The model was told: the error went back as the tool message.
    sent = script.requests[1]["messages"]
    assert "outside the sandbox" in sent[-3]["content"]
    conn.close()


def test_invalid_json_unknown_tool_and_schema_errors_go_back_to_the_model(db_path: Path) -> None:
    script = ScriptedEndpoint(
        [
            tool_turn(
                ("open_box", '{"box_id": "box-'),  # truncated JSON
                ("open_chest", '{"box_id": "box-000000"}'),  # no such tool
                ("open_box", '{"box_id": 7}'),  # wrong type
            ),
            answer("giving up"),
        ]
    )
    with script.serving():
        [summary] = record(db_path, script.base_url, task="chain_short")
    assert summary.outcome.termination == "completed" and summary.outcome.success is False
    conn = open_for_reading(db_path)
    calls = conn.execute(
        "SELECT name, json_valid, schema_valid, schema_error FROM tool_calls ORDER BY call_idx"
    ).fetchall()
    assert calls[0][:3] == ("open_box", False, None)
    assert calls[1][:3] == ("open_chest", True, None)
    assert calls[2][:3] == ("open_box", True, False) and "box_id" in calls[2][3]
    errors = [
        r[0] for r in conn.execute("SELECT error FROM tool_results ORDER BY call_idx").fetchall()
    ]
    assert "not a JSON object" in errors[0]
    assert "unknown tool 'open_chest'" in errors[1]
    assert "box_id" in errors[2]
    kinds = [
        r[0]
        for r in conn.execute("SELECT error_kind FROM tool_results ORDER BY call_idx").fetchall()
    ]
    assert kinds == ["invalid_arguments", "not_found", "invalid_arguments"]
    sent = script.requests[1]["messages"]
    assert [m["role"] for m in sent[-3:]] == ["tool"] * 3
    assert [m["tool_call_id"] for m in sent[-3:]] == ["call_0", "call_1", "call_2"]
    conn.close()


def test_rate_limits_and_server_errors_are_retried_and_recorded(db_path: Path) -> None:
    script = ScriptedEndpoint(
        [error(429, "slow down"), error(503, "overloaded"), answer("The treasure is nothing.")]
    )
    with script.serving():
        [summary] = record(
            db_path, script.base_url, task="chain_short", retry=RetryPolicy(base_s=0.01)
        )
    assert summary.outcome.termination == "completed"
    conn = open_for_reading(db_path)
    row = conn.execute("SELECT retries, retry_errors, http_status FROM steps").fetchone()
    assert row is not None and row[0] == 2 and row[2] == 200
    kinds = [e["kind"] for e in json.loads(row[1])]
    assert kinds == ["rate_limit", "server_error"]
    conn.close()


def test_persistent_errors_end_the_run_with_a_classified_termination(db_path: Path) -> None:
    script = ScriptedEndpoint([error(400, "This model's maximum context length is 8192 tokens")])
    with script.serving():
        [summary] = record(db_path, script.base_url, task="chain_short")
    assert summary.outcome.termination == "context_overflow"
    script = ScriptedEndpoint([error(500, "boom")])
    with script.serving():
        [summary] = record(
            db_path, script.base_url, task="chain_short", retry=RetryPolicy(base_s=0.0)
        )
    assert summary.outcome.termination == "provider_error"
    # The endpoint ended the run: nothing of the model's was judged, so success is unknown.
    assert summary.outcome.success is None
    assert len(script.requests) == 4  # the first try and three retries
    conn = open_for_reading(db_path)
    kinds = conn.execute(
        "SELECT error_kind, error_status FROM steps ORDER BY started_at"
    ).fetchall()
    assert kinds == [("context_overflow", 400), ("server_error", 500)]
    conn.close()


def test_empty_turn_and_step_limit_are_model_failures(db_path: Path) -> None:
    script = ScriptedEndpoint([answer("", finish_reason="length")])
    with script.serving():
        [summary] = record(db_path, script.base_url, task="chain_short")
    assert summary.outcome.termination == "model_error"
    assert "finish_reason=length" in (summary.outcome.error or "")
    # The model ended the run without an answer: its task failed (not unknown, which would
    # leave it out of task success and flatter a model that never finishes).
    assert summary.outcome.success is False
    assert summary.outcome.success_detail == summary.outcome.error
    script = ScriptedEndpoint([tool_turn(("open_box", '{"box_id": "box-000000"}'))])
    with script.serving():
        [summary] = record(db_path, script.base_url, task="chain_short", max_steps=3)
    assert summary.outcome.termination == "max_steps" and summary.outcome.steps == 3
    assert summary.outcome.success is False
    assert summary.outcome.success_detail == "no final answer within 3 steps"


def test_recorded_request_is_exactly_what_reached_the_wire(db_path: Path) -> None:
    script = ScriptedEndpoint(
        [tool_turn(("open_box", '{"box_id": "box-000000"}'), reasoning="r0"), answer("x")]
    )
    with script.serving():
        [summary] = record(db_path, script.base_url, task="chain_short")
    conn = open_for_reading(db_path)
    for idx, received in enumerate(script.requests):
        params = json.loads(
            conn.execute("SELECT request_params FROM steps WHERE idx = ?", [idx]).fetchone()[0]  # type: ignore[index]
        )
        rebuilt = {**params, "messages": request_messages(conn, summary.id, idx)}
        assert rebuilt == received
    # Interleaved thinking: the second request carries the first turn's reasoning.
    assert script.requests[1]["messages"][2]["reasoning_content"] == "r0"
    conn.close()


def test_api_key_never_reaches_the_database(db_path: Path, tmp_path: Path) -> None:
    secret = "sk-live-SECRET-0123456789abcdef"
    script = ScriptedEndpoint([tool_turn(("open_box", '{"box_id": "box-000000"}')), answer("x")])
    with script.serving():
        os.environ["AGENT_TRACES_TEST_KEY"] = secret
        try:
            plan = RunPlan(
                task=load_task(resolve_task("chain_short")),
                provider="custom",
                endpoint=EndpointConfig(
                    base_url=script.base_url, api_key_env="AGENT_TRACES_TEST_KEY"
                ),
                settings=HarnessSettings(model="m", max_steps=5),
            )
            recorder = Recorder(db_path)
            try:
                asyncio.run(record_runs(plan, recorder))
            finally:
                recorder.close()
        finally:
            del os.environ["AGENT_TRACES_TEST_KEY"]
    sent_auth = {k.lower(): v for k, v in script.headers[0].items()}["authorization"]
    assert sent_auth == f"Bearer {secret}"
    export = tmp_path / "export"
    conn = open_for_reading(db_path)
    conn.execute(f"EXPORT DATABASE '{export}' (FORMAT csv)")
    conn.close()
    dumped = "".join(p.read_text() for p in export.iterdir())
    assert "AGENT_TRACES_TEST_KEY" in dumped  # the variable's name is recorded...
    assert secret not in dumped  # ...its value never is
    assert secret.encode() not in db_path.read_bytes()


def _tool(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}


class _Misbehaving:
    """A tool set whose `explode` raises, whose `stall` never returns and whose `echo` works."""

    replayable = False  # a crash and a stall are not results a replay could reproduce

    def tool_specs(self) -> list[dict[str, Any]]:
        return [_tool("explode"), _tool("stall"), _tool("echo")]

    def prompt_variables(self) -> dict[str, str]:
        return {}

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        if name == "explode":
            raise RuntimeError("disk on fire")
        if name == "stall":
            await asyncio.sleep(3600)
        return ToolOutcome(output=json.dumps(arguments))

    def check_success(self, final_answer: str) -> SuccessResult:
        return SuccessResult(passed=True, detail="no goal")


def _run_misbehaving(db_path: Path, base_url: str, tool_timeout_s: float) -> RunOutcome:
    async def scenario() -> RunOutcome:
        recorder = Recorder(db_path)
        client = EndpointClient(EndpointConfig(base_url=base_url, api_key_env=None))
        try:
            await recorder.begin_run(
                RunRecord(
                    id="r1",
                    task="misbehaving",
                    task_path="-",
                    task_sha256="0" * 64,
                    provider="scripted",
                    model="m",
                    base_url=base_url,
                    settings={},
                    seed=0,
                    started_at=datetime.now(UTC).replace(tzinfo=None),
                    recorder_pid=os.getpid(),
                    recorder_host=socket.gethostname(),
                )
            )
            agent = Agent(
                run_id="r1",
                client=client,
                recorder=recorder,
                environment=_Misbehaving(),
                system_prompt="s",
                user_prompt="u",
                settings=HarnessSettings(model="m", max_steps=3),
                tool_timeout_s=tool_timeout_s,
            )
            outcome = await agent.run()
            await recorder.end_run("r1", outcome)
            return outcome
        finally:
            await client.close()
            recorder.close()

    return asyncio.run(scenario())


def test_a_crashing_and_a_stalled_tool_fail_by_kind_and_the_run_goes_on(
    db_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    script = ScriptedEndpoint(
        [
            tool_turn(("explode", "{}"), ("stall", "{}"), ("echo", '{"a": 1}')),
            answer("done"),
        ]
    )
    with script.serving():
        outcome = _run_misbehaving(db_path, script.base_url, tool_timeout_s=0.05)
    assert outcome.termination == "completed" and outcome.tool_errors == 2
    conn = open_for_reading(db_path)
    rows = conn.execute(
        "SELECT name, error_kind, error FROM tool_results ORDER BY call_idx"
    ).fetchall()
    conn.close()
    assert [(name, kind) for name, kind, _ in rows] == [
        ("explode", "crashed"),
        ("stall", "timeout"),
        ("echo", None),
    ]
    assert "RuntimeError: disk on fire" in rows[0][2]
    assert "did not finish within 0.05 s" in rows[1][2]
    # The model was told about both, in the order of its calls.
    sent = script.requests[1]["messages"]
    assert [json.loads(m["content"]).get("error", "ok")[:10] for m in sent[-3:]] == [
        "tool explo",
        "tool stall",
        "ok",
    ]
    # Users see the kinds: counted and marked by `show`, in the evidence of `failures`.
    shown = run_cli_in_process(capsys, monkeypatch, "show", "r1", "--db", str(db_path)).stdout
    assert "tool errors: crashed×1, timeout×1" in shown
    assert "✗ crashed" in shown and "✗ timeout" in shown
    assert run_cli_in_process(capsys, monkeypatch, "analyze", "--db", str(db_path)).returncode == 0
    found = run_cli_in_process(
        capsys, monkeypatch, "failures", "--kind", "tool_error", "--db", str(db_path), "-f", "json"
    )
    evidence = sorted(row["evidence"]["error_kind"] for row in json.loads(found.stdout))
    assert evidence == ["crashed", "timeout"]


def test_a_failure_always_carries_its_kind() -> None:
    with pytest.raises(ValueError, match="together"):
        ToolOutcome(output="Error: x", error="x")
    with pytest.raises(ValueError, match="together"):
        ToolOutcome(output="fine", error_kind=ToolErrorKind.CRASHED)
    failed = ToolOutcome.failure(ToolErrorKind.SANDBOX, "../x: path is outside the sandbox")
    assert failed.output == "Error: ../x: path is outside the sandbox"
