"""`traces proxy` on the paths beyond chat completions: text completions (whole and streamed)
recorded in full as steps, the Responses API recorded as raw exchanges with its text and
usage, upstream errors relayed unchanged and recorded. The real `openai` client through the
proxy to the simulator (with `proxy_wire`'s extras in front of it), every answer tapped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from proxy_setup import proxy_to
from proxy_wire import wire_sim

from traces.sim.config import SimConfig

from conftest import query_rows, run_cli

KEY = "sk-proxypaths-0123456789abcdef"


def _client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0)


def _steps(db: Path) -> list[dict[str, Any]]:
    return query_rows(db, "SELECT * FROM steps ORDER BY started_at")


def _runs(db: Path) -> list[dict[str, Any]]:
    return query_rows(db, "SELECT * FROM runs ORDER BY started_at")


def _lines(body: bytes) -> list[str]:
    return [line for line in body.decode().split("\n") if line]


def test_completions_recorded_in_full(monkeypatch: pytest.MonkeyPatch, db_path: Path) -> None:
    """A text completion, whole and streamed, is relayed byte for byte and recorded as a step:
    its prompt in the request, the upstream's raw body or SSE lines, its text as the content,
    finish reason and usage. A prompt that extends the previous prompt and its text
    continues that run; another prompt starts its own."""
    with (
        wire_sim(monkeypatch, SimConfig(seed=0)) as (sim, tap),
        proxy_to(sim.base_url, db_path) as proxy,
    ):
        client = _client(proxy.base_url)
        first = client.completions.create(model="sim-model", prompt="The cat sat")
        text = first.choices[0].text
        follow = client.completions.create(model="sim-model", prompt=f"The cat sat{text}\nThen")
        with httpx2.stream(
            "POST",
            f"{proxy.base_url}/completions",
            json={"model": "sim-model", "prompt": "Tell a story", "stream": True},
        ) as streamed:
            received = b"".join(streamed.iter_raw())
    assert follow.choices[0].text
    assert [s.path for s in tap.sent] == ["/v1/completions"] * 3
    assert received == tap.sent[2].body
    steps = _steps(db_path)
    assert len(steps) == 3
    whole, again, stream = steps
    assert whole["response_body"] == tap.sent[0].body.decode()
    # Read as a chat answer is: the `<think>` block the text opens with is its reasoning.
    assert whole["reasoning"] and whole["reasoning"] in text
    assert whole["content"] and text.endswith(whole["content"])
    assert whole["finish_reason"] in ("stop", "length")
    assert whole["prompt_tokens"] is not None
    assert json.loads(whole["request_params"])["prompt"] == "The cat sat"
    assert again["run_id"] == whole["run_id"] and again["idx"] == 1
    assert stream["streamed"] and stream["content"] == "Once upon a time."
    assert stream["finish_reason"] == "stop" and stream["completion_tokens"] == 4
    assert [line for _, line in json.loads(stream["stream_events"])] == _lines(tap.sent[2].body)
    runs = _runs(db_path)
    assert [(r["steps"], r["conversation"], r["status"]) for r in runs] == [
        (2, "The cat sat", "completed"),
        (1, "Tell a story", "completed"),
    ]
    assert all(json.loads(r["settings"])["proxy"]["path"] == "/v1/completions" for r in runs)


TOOL = {
    "type": "function",
    "name": "lookup",
    "description": "Look a word up.",
    "parameters": {
        "type": "object",
        "properties": {"word": {"type": "string"}},
        "required": ["word"],
    },
}


def test_responses_recorded_raw(monkeypatch: pytest.MonkeyPatch, db_path: Path) -> None:
    """Responses API exchanges (as Codex CLI makes them) are relayed byte for byte and
    recorded as steps: the request whole, the raw body or every SSE line with its arrival
    time, the output text, function calls (checked against the declared schema, their
    outputs stored as tool results) and the usage. A request that sends the input and
    output back with the call's result, or names the previous response, continues the run;
    the checks find nothing to blame."""
    with (
        wire_sim(monkeypatch, SimConfig(seed=0)) as (sim, tap),
        proxy_to(sim.base_url, db_path) as proxy,
    ):
        client = _client(proxy.base_url)
        asked: list[Any] = [{"role": "user", "content": "Look up the word 'cat'."}]
        called = client.responses.create(model="m", input=asked, tools=[TOOL])  # type: ignore[list-item]
        (call,) = called.output
        assert call.type == "function_call"
        back = [
            *asked,
            call.model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": call.call_id, "output": "a pet"},
        ]
        answered = client.responses.create(model="m", input=back, tools=[TOOL])  # type: ignore[arg-type]
        chained = client.responses.create(
            model="m", input="And 'dog'?", previous_response_id=answered.id
        )
        events = list(client.responses.create(model="m", input="Say hello.", stream=True))
    assert answered.output_text == "Read 3 items."
    assert chained.output_text
    assert events[-1].type == "response.completed"
    assert [s.path for s in tap.sent] == ["/v1/responses"] * 4
    steps = _steps(db_path)
    assert len(steps) == 4
    assert [s["response_body"] for s in steps[:3]] == [t.body.decode() for t in tap.sent[:3]]
    assert [s["idx"] for s in steps[:3]] == [0, 1, 2]
    assert len({s["run_id"] for s in steps[:3]}) == 1
    assert json.loads(steps[1]["request_params"])["input"][2]["output"] == "a pet"
    calls = query_rows(db_path, "SELECT run_id, step_idx, id, name, schema_valid FROM tool_calls")
    assert [(c["step_idx"], c["id"], c["name"], c["schema_valid"]) for c in calls] == [
        (0, call.call_id, "lookup", True)
    ]
    results = query_rows(db_path, "SELECT step_idx, tool_call_id, name, output FROM tool_results")
    assert results == [
        {"step_idx": 0, "tool_call_id": call.call_id, "name": "lookup", "output": "a pet"}
    ]
    assert steps[1]["content"] == "Read 3 items."
    assert steps[1]["prompt_tokens"] == 30 and steps[1]["completion_tokens"] == 7
    stream = steps[3]
    assert stream["streamed"] and stream["content"] == "Read 1 items."
    assert [line for _, line in json.loads(stream["stream_events"])] == _lines(tap.sent[3].body)
    assert stream["ttft_content_ms"] is not None
    runs = _runs(db_path)
    assert [(r["steps"], r["status"], r["conversation"]) for r in runs] == [
        (3, "completed", "Look up the word 'cat'."),
        (1, "completed", "Say hello."),
    ]
    settings = json.loads(runs[0]["settings"])["proxy"]
    assert (settings["path"], settings["grouped_by"]) == ("/v1/responses", "input")
    analyzed = run_cli("analyze", "--db", str(db_path), "-f", "json")
    assert analyzed.returncode == 0, analyzed.stderr
    assert [r["findings"] for r in json.loads(analyzed.stdout)] == [0, 0]


def test_upstream_errors_relayed_and_recorded(
    monkeypatch: pytest.MonkeyPatch, db_path: Path
) -> None:
    """Errors come back to the client as the upstream sent them (status, body) and are
    recorded with their kind: a 5xx from the chat endpoint, a 400 from the Responses API."""
    with (
        wire_sim(monkeypatch, SimConfig(seed=0, faults={"server_error_5xx": 1.0})) as (sim, tap),
        proxy_to(sim.base_url, db_path) as proxy,
    ):
        chat = httpx2.post(
            f"{proxy.base_url}/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "Hi."}]},
        )
        responses = httpx2.post(f"{proxy.base_url}/responses", json={"model": "m"})
    assert (chat.status_code, chat.content) == (tap.sent[0].status, tap.sent[0].body)
    assert chat.status_code in (500, 502, 503)
    assert (responses.status_code, responses.content) == (400, tap.sent[1].body)
    steps = _steps(db_path)
    assert [(s["http_status"], s["error_kind"]) for s in steps] == [
        (chat.status_code, "server_error"),
        (400, "bad_request"),
    ]
    assert steps[1]["response_body"] == tap.sent[1].body.decode()
    assert "input" in steps[1]["error_message"]
    assert {r["status"] for r in _runs(db_path)} == {"failed"}


def test_header_groups_and_unreadable_bodies(
    monkeypatch: pytest.MonkeyPatch, db_path: Path
) -> None:
    """`X-Traces-Run` groups unrelated Responses API and text-completion requests into one
    run; a body that is not JSON on a recorded path is relayed as it came, logged, and not
    recorded."""
    logged: list[str] = []
    with (
        wire_sim(monkeypatch, SimConfig(seed=0)) as (sim, tap),
        proxy_to(sim.base_url, db_path, logged=logged) as proxy,
    ):
        named = {"X-Traces-Run": "batch-1"}
        for text in ("First.", "Unrelated."):
            sent = httpx2.post(
                f"{proxy.base_url}/responses", json={"model": "m", "input": text}, headers=named
            )
            assert sent.status_code == 200
        sent = httpx2.post(
            f"{proxy.base_url}/completions",
            json={"model": "sim-model", "prompt": "Other."},
            headers=named,
        )
        assert sent.status_code == 200
        broken = httpx2.post(
            f"{proxy.base_url}/completions",
            content=b"{not json",
            headers={"Content-Type": "application/json"},
        )
    assert broken.status_code == 400 and broken.content == tap.sent[3].body
    assert logged == ["POST /v1/completions: the body is not a JSON object; relayed, not recorded"]
    (run,) = _runs(db_path)
    assert run["steps"] == 3 and run["conversation"] == "First."
    proxy_settings = json.loads(run["settings"])["proxy"]
    assert (proxy_settings["grouped_by"], proxy_settings["run_header"]) == ("header", "batch-1")
