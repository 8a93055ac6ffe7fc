"""Real failures, quoted from public threads and the shared dialect data, recognised end to end.

Each case of `fixtures/real_excerpts.json` is what a client received from a host, in wire form:
an assistant message, SSE lines, an HTTP error body, a dropped connection. The test serves it
from a loopback endpoint, reads it with the real `openai` client (`EndpointClient`),
normalizes it as the harness does, runs every check, and asserts the expected finding kind
fires with the expected layer. The same excerpt repaired (tokens removed, finish_reason
corrected, index fixed) must no longer produce that kind, nor any new host-layer finding.

The observed failures and parser fixtures of `shared/external/dialects` are also read
directly, when that folder is present, so the shared reference data and the checks cannot
drift apart.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from analyzer.checks.catalogue import KINDS
from analyzer.checks.records import Call, Finding, Result, Run, Step
from analyzer.checks.registry import RUN_CHECKS, STEP_CHECKS, run_checks
from traces.client import EndpointClient, EndpointConfig
from traces.exchange import Exchange
from traces.model import ExchangeError
from traces.normalize import (
    SchemaValidator,
    normalize_finish_reason,
    normalize_usage,
    read_message,
)
from traces.tools.schema_check import ArgumentChecker

from conftest import EXTERNAL, reference_missing

FIXTURE = Path(__file__).parent / "fixtures" / "real_excerpts.json"
DOC: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
CASES: list[dict[str, Any]] = DOC["cases"]
DIALECT_DATA = EXTERNAL / "dialects"

HANG_S = 1.0
"""How long a `hang` reply holds the connection; the client gives up well before."""


def registered_modules() -> set[str]:
    """Check modules whose checks the registry runs (`history` only once it is registered)."""
    checks = [*STEP_CHECKS.values(), *RUN_CHECKS.values()]
    return {check.__module__.rsplit(".", 1)[-1] for check in checks}


def pending(kind: str) -> bool:
    """Whether `kind`'s check is catalogued but not registered yet."""
    return KINDS[kind].check not in registered_modules()


# -- a loopback endpoint that replays raw replies ------------------------------------------


@dataclass
class Reply:
    """One HTTP reply, byte for byte: a body, SSE lines, or a broken connection."""

    status: int = 200
    body: bytes = b""
    sse: list[str] | None = None
    transport: str | None = None


@dataclass
class WireEndpoint:
    """Serves queued `Reply`s in order, whatever was posted."""

    replies: list[Reply] = field(default_factory=list)
    base_url: str = ""

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                reply = endpoint.replies.pop(0)
                if reply.transport == "disconnect":
                    return  # close without a status line
                if reply.transport == "hang":
                    time.sleep(HANG_S)
                    return
                self.send_response(reply.status)
                if reply.sse is not None:
                    # HTTP/1.0 without a length: the stream ends when the connection closes.
                    self.send_header("content-type", "text/event-stream")
                    self.end_headers()
                    for line in reply.sse:
                        self.wfile.write(f"{line}\n\n".encode())
                    return
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    @contextmanager
    def serving(self) -> Iterator[WireEndpoint]:
        server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.base_url = f"http://127.0.0.1:{server.server_port}/v1"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="module")
def endpoint() -> Iterator[WireEndpoint]:
    with WireEndpoint().serving() as served:
        yield served


# -- from a case's wire excerpt to the records the checks read -----------------------------


def _text(body: Any) -> bytes:
    return (body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)).encode()


def _completion(spec: dict[str, Any]) -> dict[str, Any]:
    message = spec["message"]
    finish = spec.get("finish_reason", "tool_calls" if message.get("tool_calls") else "stop")
    body: dict[str, Any] = {
        "id": "chatcmpl-excerpt",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
    }
    if "usage" in spec:
        body["usage"] = spec["usage"]
    return body


def _chunk_of(item: dict[str, Any]) -> dict[str, Any]:
    """A full chunk from the fixture's shorthand: `{delta, finish_reason}` or `{usage}`."""
    if "choices" in item:
        return item  # a chunk quoted whole
    chunk: dict[str, Any] = {"id": "chatcmpl-excerpt", "object": "chat.completion.chunk"}
    chunk["choices"] = (
        [{"index": 0, "delta": item["delta"], "finish_reason": item.get("finish_reason")}]
        if "delta" in item
        else []
    )
    if "usage" in item:
        chunk["usage"] = item["usage"]
    return chunk


def reply_of(spec: dict[str, Any]) -> Reply:
    """The HTTP reply a step (or a retried attempt) of a case describes."""
    if "transport" in spec:
        return Reply(transport=spec["transport"])
    if "error" in spec:
        return Reply(status=spec["error"]["status"], body=_text(spec["error"]["body"]))
    if "raw" in spec:
        return Reply(status=spec["raw"]["status"], body=_text(spec["raw"]["body"]))
    if "sse" in spec:
        lines = [
            c if isinstance(c, str) else "data: " + json.dumps(_chunk_of(c)) for c in spec["sse"]
        ]
        return Reply(sse=lines + (["data: [DONE]"] if spec.get("done", True) else []))
    return Reply(body=_text(_completion(spec)))


def tool_specs(tools: Any) -> list[dict[str, Any]]:
    """OpenAI tool declarations from a case's `tools` (a toolset name or name -> schema)."""
    named = DOC["toolsets"][tools] if isinstance(tools, str) else tools or {}
    return [
        {"type": "function", "function": {"name": n, "parameters": p}} for n, p in named.items()
    ]


def _continued(previous: dict[str, Any]) -> list[dict[str, Any]]:
    """The previous request, its assistant turn and the tool results: the next request of a
    tool chain as a harness replays it."""
    turn = previous["message"]
    answers = [
        {"role": "tool", "tool_call_id": call["id"], "content": result["output"]}
        for call, result in zip(
            turn.get("tool_calls") or [], previous.get("results", []), strict=False
        )
    ]
    return [*previous["body"]["messages"], turn, *answers]


def request_body(
    case: dict[str, Any], spec: dict[str, Any], previous: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The request a harness would have sent for this step (`previous`: the step before,
    with the body it sent, for `messages: "continue"`)."""
    messages = spec.get("messages") or [{"role": "user", "content": "Go."}]
    if messages == "continue":
        assert previous is not None, case["id"]
        messages = _continued(previous)
    body: dict[str, Any] = {"model": case.get("run", {}).get("model", "m"), "messages": messages}
    tools = tool_specs(case.get("tools"))
    if tools:
        body["tools"] = tools
    if "sse" in spec:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    body.update(spec.get("request", {}))
    return body


async def _exchanges(
    endpoint: WireEndpoint, case: dict[str, Any], steps: list[dict[str, Any]]
) -> list[tuple[list[Exchange], Exchange]]:
    hangs = any(s.get("transport") == "hang" for s in steps)
    config = EndpointConfig(
        base_url=endpoint.base_url, api_key="excerpt", timeout_s=HANG_S / 4 if hangs else 10.0
    )
    client = EndpointClient(config)
    try:
        out = []
        previous: dict[str, Any] | None = None
        for spec in steps:
            body = request_body(case, spec, previous)
            previous = {**spec, "body": body}
            retried = []
            for attempt in spec.get("retries", []):
                endpoint.replies.append(reply_of(attempt))
                retried.append(await client.complete(body))
            endpoint.replies.append(reply_of(spec))
            out.append((retried, await client.complete(body)))
        return out
    finally:
        await client.close()


def _validator(body: dict[str, Any]) -> SchemaValidator:
    tools = body.get("tools") or []
    names = {t["function"]["name"] for t in tools}
    checker = ArgumentChecker(tools)

    def validate(name: str, arguments: Any) -> tuple[bool | None, str | None]:
        if name not in names:
            return None, None
        error = checker.check(name, arguments)
        return error is None, error

    return validate


def _error(error: ExchangeError | None) -> dict[str, Any]:
    if error is None:
        return {}
    return {
        "error_kind": error.kind,
        "error_status": error.status,
        "error_message": error.message,
        "error_body": error.body,
    }


def step_of(index: int, spec: dict[str, Any], retried: list[Exchange], exchange: Exchange) -> Step:
    """The step the harness would have recorded, as the checks read it back."""
    body = exchange.request_body
    failed = exchange.error is not None or exchange.message is None
    reading = None if failed else read_message(exchange.message or {}, _validator(body))
    calls = tuple(Call(**c.model_dump()) for c in reading.tool_calls) if reading else ()
    results = tuple(
        Result(i, call.id, call.name, r["output"], r.get("error"))
        for i, (call, r) in enumerate(zip(calls, spec.get("results", []), strict=False))
    )
    usage = normalize_usage(exchange.usage_raw, reading.reasoning if reading else None)
    return Step(
        index=index,
        finish_reason=normalize_finish_reason(exchange.finish_reason_raw),
        finish_reason_raw=exchange.finish_reason_raw,
        content=reading.content if reading else None,
        reasoning=reading.reasoning if reading else None,
        reasoning_source=reading.reasoning_source if reading else "none",
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        reasoning_tokens_source=usage.reasoning_tokens_source,
        cached_tokens=usage.cached_tokens,
        total_tokens=usage.total_tokens,
        streamed=exchange.streamed,
        http_status=exchange.http_status,
        retry_errors=tuple(e.error.model_dump() for e in retried if e.error is not None),
        anomalies=(*exchange.anomalies, *spec.get("anomalies", [])),
        request_params={k: v for k, v in body.items() if k != "messages"},
        calls=calls,
        results=results,
        request_messages=tuple(body["messages"]),
        **_error(exchange.error),
    )


def run_of(endpoint: WireEndpoint, case: dict[str, Any], steps: list[dict[str, Any]]) -> Run:
    """Serve `steps` of `case` and read them back as a run."""
    exchanges = asyncio.run(_exchanges(endpoint, case, steps))
    info = case.get("run", {})
    return Run(
        id=case["id"],
        provider=info.get("provider", "host"),
        model=info.get("model", "m"),
        dialect=info.get("dialect"),
        steps=tuple(
            step_of(i, s, r, e) for i, (s, (r, e)) in enumerate(zip(steps, exchanges, strict=True))
        ),
    )


def repaired_steps(case: dict[str, Any]) -> list[dict[str, Any]]:
    """The case's steps with its `repaired` replacements applied."""
    steps: list[dict[str, Any]] = copy.deepcopy(case["steps"])
    for index, replacement in case["repaired"].items():
        steps[int(index)] = replacement
    return steps


def _contains(value: Any, expected: Any) -> bool:
    if isinstance(expected, dict):
        return isinstance(value, dict) and all(
            k in value and _contains(value[k], v) for k, v in expected.items()
        )
    return bool(value == expected)


def _matches(finding: Finding, kind: str, layer: str, expect: dict[str, Any]) -> bool:
    return (
        finding.kind == kind
        and finding.layer == layer
        and finding.step == expect.get("step")
        and finding.severity == expect.get("severity", finding.severity)
        and _contains(finding.evidence, expect.get("evidence", {}))
        and expect.get("contains", "") in json.dumps(finding.evidence, ensure_ascii=False)
    )


def _skip_if_pending(kind: str) -> None:
    if pending(kind):
        pytest.skip(f"{kind}: its check ({KINDS[kind].check}) is not registered yet")


# -- the fixture cases ---------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_real_excerpt_is_recognised(endpoint: WireEndpoint, case: dict[str, Any]) -> None:
    _skip_if_pending(case["kind"])
    found = run_checks(run_of(endpoint, case, case["steps"]))
    assert any(_matches(f, case["kind"], case["layer"], case["expect"]) for f in found), found
    for also in case.get("also", []):
        if not pending(also["kind"]):
            assert any(_matches(f, also["kind"], also["layer"], also) for f in found), (also, found)
    # Where a host fault used to be blamed on the model, the model's kind must stay quiet.
    assert not {f.kind for f in found} & set(case.get("absent", [])), found
    unknown = {f.kind for f in found} - set(KINDS)
    assert not unknown, f"emitted kinds missing from the catalogue: {unknown}"


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_repaired_excerpt_is_clean(endpoint: WireEndpoint, case: dict[str, Any]) -> None:
    _skip_if_pending(case["kind"])
    broken = run_checks(run_of(endpoint, case, case["steps"]))
    repaired = run_checks(run_of(endpoint, case, repaired_steps(case)))
    assert case["kind"] not in {f.kind for f in repaired}, repaired
    # Repairing a fault must not move the blame onto the host somewhere else.
    host_before = {f.kind for f in broken if f.layer == "provider"}
    assert {f.kind for f in repaired if f.layer == "provider"} <= host_before, repaired


def test_cases_are_documented() -> None:
    for case in CASES:
        assert case["kind"] in KINDS, case["id"]
        assert case["layer"] in ("model", "tool", "provider", "client"), case["id"]
        assert case["source_url"].startswith("https://"), case["id"]
        assert case["source"] and case["note"], case["id"]
        assert case["repaired"], case["id"]
    assert len({c["id"] for c in CASES}) == len(CASES)


# -- the shared reference data, read directly ----------------------------------------------

FAILURE_KINDS: dict[str, str] = {
    "special_tokens_in_reasoning": "leaked_special_tokens",
    "special_tokens_in_content": "leaked_special_tokens",
    "harmony_channels_in_content": "harmony_unparsed",
    "tool_call_silently_dropped": "dropped_call",
    "tool_args_in_reasoning": "dropped_call",
    "reasoning_swallows_answer": "reasoning_swallows_answer",
    "arguments_silently_emptied": "empty_arguments",
    "special_tokens_in_argument_key": "malformed_argument_key",
    "streaming_name_repeated": "stream_tool_call_name_repeated",
    "streaming_field_repeated": "stream_tool_call_id_repeated",
    "streaming_index_missing": "stream_tool_call_index_missing",
    "interleaved_reasoning_required": "http_reasoning_required",
    "reasoning_dropped_in_history": "reasoning_dropped_in_chain",
    "reasoning_field_location": "reasoning_in_content",
    "finish_reason_wrong": "finish_stop_with_calls",
}
"""`failure_kind` of observed_failures.jsonl -> the finding kind that recognises it."""


def _rows(name: str) -> list[dict[str, Any]]:
    path = DIALECT_DATA / "raw_outputs" / name
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


OBSERVED = _rows("observed_failures.jsonl")
PARSER_FIXTURES = _rows("parser_fixtures.jsonl")


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _call(id_: str, name: str, arguments: Any) -> dict[str, Any]:
    return {"id": id_, "type": "function", "function": {"name": name, "arguments": arguments}}


def _reasoning_chain(keep: bool) -> list[dict[str, Any]]:
    """A six-step tool chain sending each turn's reasoning back, its prompt_tokens grown as a
    host that keeps (or drops) that reasoning would count them."""
    steps, prompt = [], 300
    for i, size in enumerate((120, 400, 60, 300, 200, 500)):
        call = _call(f"call_{i}", "search", json.dumps({"query": f"page {i}"}))
        reasoning = " ".join(["thought"] * size)
        usage = {"prompt_tokens": prompt, "completion_tokens": size + 20}
        steps.append(
            {
                "messages": "continue" if i else [{"role": "user", "content": "Research."}],
                "message": {
                    "role": "assistant",
                    "reasoning_content": reasoning,
                    "tool_calls": [call],
                },
                "usage": {**usage, "completion_tokens_details": {"reasoning_tokens": size}},
                "results": [{"output": f"result {i}"}],
            }
        )
        # The completion, the tool result and some template come back; the reasoning may not.
        prompt += size + 20 + 14 - (0 if keep else size)
    return steps


def observed_case(row: dict[str, Any]) -> dict[str, Any]:
    """A case built straight from one observed_failures.jsonl row, its excerpt verbatim."""
    excerpt = row["excerpt"]
    kind = FAILURE_KINDS[row["failure_kind"]]
    search = {
        "search": {
            "type": "object",
            "properties": {"query": {"type": "string"}},
            "required": ["query"],
        }
    }
    weather = {
        "get_weather": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        }
    }
    case: dict[str, Any] = {
        "id": row["id"],
        "kind": kind,
        "tools": search,
        "run": {"model": row["model"]},
    }
    failure = row["failure_kind"]
    step: dict[str, Any]
    if failure == "special_tokens_in_reasoning":
        text = excerpt if isinstance(excerpt, str) else json.dumps(excerpt)
        step = {
            "message": {"role": "assistant", "content": "", "reasoning_content": text},
            "finish_reason": "stop",
        }
    elif failure in ("special_tokens_in_content", "harmony_channels_in_content"):
        text = excerpt["content"] if isinstance(excerpt, dict) else excerpt
        step = {"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    elif failure == "tool_call_silently_dropped":
        response = excerpt["response"]
        step = {
            "message": {
                "role": "assistant",
                "content": response["content"],
                "tool_calls": response["tool_calls"],
            },
            "finish_reason": response["finish_reason"],
        }
        case["tools"] = weather
    elif failure == "tool_args_in_reasoning":
        # The row's own SSE lines, then the tokens that close the arguments object.
        tail = [_chunk({"reasoning_content": p}) for p in ("how to bake bread", '"}')]
        step = {"sse": [*excerpt, *tail, _chunk({}, "stop")]}
    elif failure == "reasoning_swallows_answer":
        step = {"message": {"role": "assistant", **excerpt}, "finish_reason": "stop"}
        case["tools"] = {}
    elif failure == "arguments_silently_emptied":
        step = {
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [_call("call_0", "search", excerpt["arguments"])],
            }
        }
    elif failure == "special_tokens_in_argument_key":
        key_tools = {
            "write": {
                "type": "object",
                "properties": {"path": {"type": "string"}},
                "required": ["path"],
            }
        }
        case["tools"] = key_tools
        step = {
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [_call("call_0", "write", excerpt["arguments"])],
            }
        }
    elif failure == "streaming_name_repeated":
        name = excerpt["chunks_name"][0]
        case["tools"] = {name: search["search"]}
        first = {"index": 0, "id": "call_0", "type": "function", "function": {"name": name}}
        again = {"index": 0, "function": {"name": excerpt["chunks_name"][1], "arguments": "{}"}}
        step = {"sse": [_chunk({"tool_calls": [first]}), _chunk({"tool_calls": [again]})]}
    elif failure == "streaming_field_repeated":
        head = {"index": 0, "id": excerpt["id"], "type": "function"}
        first = {**head, "function": {"name": "search", "arguments": '{"query": '}}
        again = {**head, "function": {"arguments": '"x"}'}}
        step = {"sse": [_chunk({"tool_calls": [first]}), _chunk({"tool_calls": [again]})]}
    elif failure == "streaming_index_missing":
        delta = {
            "id": "call_0",
            "type": "function",
            "function": {"name": "search", "arguments": '{"query": "x"}'},
        }
        step = {
            "sse": [_chunk({"role": "assistant", "tool_calls": [delta]}), _chunk({}, "tool_calls")]
        }
    elif failure == "interleaved_reasoning_required":
        body = excerpt if isinstance(excerpt, dict) else excerpt.removeprefix("400 ")
        step = {"error": {"status": 400, "body": body}}
    elif failure == "reasoning_dropped_in_history":
        case["steps"] = _reasoning_chain(keep=False)
        return case
    elif failure == "reasoning_field_location":
        delta = json.loads(excerpt["llama_server"])["delta"]
        rest = [{"content": " the user greets me.</think>"}, {"content": "Hello!"}]
        case["run"]["dialect"] = "llamacpp"
        step = {"sse": [_chunk(delta), *(_chunk(d) for d in rest), _chunk({}, "stop")]}
    elif failure == "finish_reason_wrong":
        required = excerpt["required,non-stream"]
        case["tools"] = weather
        step = {
            "request": {"tool_choice": "required"},
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [_call("call_0", "get_weather", '{"city": "Paris"}')],
            },
            "finish_reason": required["vllm"],
        }
    else:  # pragma: no cover - a new failure_kind must be mapped above
        raise AssertionError(f"no mapping for failure_kind {failure!r}")
    case["steps"] = [step]
    return case


def test_every_observed_failure_kind_is_mapped() -> None:
    if not OBSERVED:
        reference_missing(DIALECT_DATA / "raw_outputs" / "observed_failures.jsonl")
    assert {row["failure_kind"] for row in OBSERVED} <= set(FAILURE_KINDS)
    assert set(FAILURE_KINDS.values()) <= set(KINDS)


@pytest.mark.skipif(not OBSERVED, reason="shared/external/dialects not present")
@pytest.mark.parametrize("index", range(len(OBSERVED)), ids=[r["id"] for r in OBSERVED])
def test_observed_failure_is_recognised(endpoint: WireEndpoint, index: int) -> None:
    row = OBSERVED[index]
    case = observed_case(row)
    _skip_if_pending(case["kind"])
    found = run_checks(run_of(endpoint, case, case["steps"]))
    assert case["kind"] in {f.kind for f in found}, (row["id"], found)


def _arguments(value: Any) -> str:
    # The reference parse gives objects, or the JSON text vLLM passes through verbatim.
    return value if isinstance(value, str) else json.dumps(value)


def _parser_cases() -> list[dict[str, Any]]:
    """Parser fixtures whose model output holds calls, as a host without that parser returns
    them (raw text in content), and as the reference parse says they should arrive."""
    cases = []
    for row in PARSER_FIXTURES:
        expected = row["expected"]
        if "tool_calls" not in expected:
            continue
        raw = row["raw_text"] if isinstance(row["raw_text"], str) else "".join(row["raw_text"])
        calls = [
            _call(c.get("id") or f"call_{i}", c["name"], _arguments(c.get("arguments", {})))
            for i, c in enumerate(expected["tool_calls"])
            if "name" in c
        ]
        names = {c["function"]["name"] for c in calls}
        parsed: dict[str, Any] = {
            "role": "assistant",
            "content": expected.get("content"),
            "tool_calls": calls,
        }
        if expected.get("reasoning"):
            parsed["reasoning_content"] = expected["reasoning"]
        cases.append(
            {
                "id": row["id"],
                "tools": {n: {"type": "object", "properties": {}} for n in names},
                "raw": {"message": {"role": "assistant", "content": raw}, "finish_reason": "stop"},
                "parsed": {"message": parsed, "finish_reason": "tool_calls"},
                "has_calls": bool(calls),
            }
        )
    return cases


PARSER_CASES = _parser_cases()


@pytest.mark.skipif(not PARSER_CASES, reason="shared/external/dialects not present")
@pytest.mark.parametrize("case", PARSER_CASES, ids=[c["id"] for c in PARSER_CASES])
def test_unparsed_model_output_is_a_leak(endpoint: WireEndpoint, case: dict[str, Any]) -> None:
    found = run_checks(run_of(endpoint, case, [case["raw"]]))
    # gpt-oss's markup is a whole response format the host did not parse: its own kind.
    kind = "harmony_unparsed" if case["id"].startswith("gpt_oss.") else "leaked_special_tokens"
    leaks = [f for f in found if f.kind == kind]
    assert leaks and leaks[0].evidence["field"] == "content", found
    if case["has_calls"]:
        clean = run_checks(run_of(endpoint, case, [case["parsed"]]))
        assert not [f for f in clean if f.severity != "info"], clean


def test_reasoning_chain_kept_by_the_host_is_clean(endpoint: WireEndpoint) -> None:
    """The negative twin of the reasoning_dropped_in_history rows: the same chain, counted."""
    _skip_if_pending("reasoning_dropped_in_chain")
    case = {"id": "chain.kept", "tools": {"search": {"type": "object", "properties": {}}}}
    kept = run_checks(run_of(endpoint, case, _reasoning_chain(keep=True)))
    dropped = run_checks(run_of(endpoint, case, _reasoning_chain(keep=False)))
    assert "reasoning_dropped_in_chain" in {f.kind for f in dropped}
    assert "reasoning_dropped_in_chain" not in {f.kind for f in kept}, kept
