"""A 200 that carries nothing generated (a stream of only `[DONE]`, no event at all, a usage
chunk alone, an empty body, `choices: []`) is a failed call of its own kind, `empty_response`:
read so by the real client over loopback HTTP, by the importer, retried like a dropped
connection, blamed on the host, and ending the run `provider_error`, never `dropped_call` and
`model_error`. A turn the model ended with nothing (a choice with a finish_reason) is not one."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_checks_real import Reply, WireEndpoint

from analyzer.checks.http import empty_response
from analyzer.checks.persist import analyze_run
from analyzer.checks.records import Run, Step
from analyzer.checks.registry import run_checks
from traces.client import EndpointClient, EndpointConfig
from traces.exchange import Exchange
from traces.importing import ImportOptions, import_files
from traces.retry import RetryPolicy
from traces.sim.config import SimConfig
from traces.sse import EMPTY_STREAM
from traces.store.database import open_for_writing

from conftest import query_rows
from recording import Recording, record_many

_TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
_USAGE = {"prompt_tokens": 12, "completion_tokens": 0, "total_tokens": 12}


@pytest.fixture(scope="module")
def endpoint() -> Iterator[WireEndpoint]:
    with WireEndpoint().serving() as served:
        yield served


def _exchange(endpoint: WireEndpoint, reply: Reply, stream: bool) -> Exchange:
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "Go."}]}
    body["tools"] = _TOOLS
    if stream:
        body["stream"] = True

    async def send() -> Exchange:
        client = EndpointClient(EndpointConfig(base_url=endpoint.base_url, api_key="k"))
        try:
            return await client.complete(body)
        finally:
            await client.close()

    endpoint.replies.append(reply)
    return asyncio.run(send())


def _chunk(choices: list[Any], **extra: Any) -> str:
    return "data: " + json.dumps({"object": "chat.completion.chunk", "choices": choices, **extra})


EMPTY_STREAMS = {
    "only_done": ["data: [DONE]"],
    "no_event": [],
    "usage_only": [_chunk([], usage=_USAGE), "data: [DONE]"],
    "empty_choices_no_done": [_chunk([])],
}


@pytest.mark.parametrize("lines", list(EMPTY_STREAMS.values()), ids=list(EMPTY_STREAMS))
def test_a_stream_without_a_choice_is_an_empty_response(
    endpoint: WireEndpoint, lines: list[str]
) -> None:
    exchange = _exchange(endpoint, Reply(sse=lines), stream=True)
    assert exchange.error is not None and exchange.message is None
    assert exchange.error.kind == "empty_response" and exchange.error.status == 200
    assert EMPTY_STREAM in exchange.error.message


EMPTY_BODIES = {
    "empty_body": b"",
    "whitespace_body": b" \n",
    "no_choice": json.dumps({"object": "chat.completion", "choices": [], "usage": _USAGE}).encode(),
    "null_choices": json.dumps({"object": "chat.completion", "choices": None}).encode(),
}


@pytest.mark.parametrize("body", list(EMPTY_BODIES.values()), ids=list(EMPTY_BODIES))
def test_a_body_without_a_choice_is_an_empty_response(endpoint: WireEndpoint, body: bytes) -> None:
    exchange = _exchange(endpoint, Reply(body=body), stream=False)
    assert exchange.error is not None and exchange.error.kind == "empty_response"
    assert exchange.message is None and "nothing was generated" in exchange.error.message


def test_a_raw_completion_without_a_choice_is_an_empty_response(endpoint: WireEndpoint) -> None:
    async def send() -> Exchange:
        client = EndpointClient(EndpointConfig(base_url=endpoint.base_url, api_key="k"))
        try:
            return await client.complete_text({"model": "m", "prompt": "<|im_start|>user"})
        finally:
            await client.close()

    for body in (b"", json.dumps({"object": "text_completion", "choices": []}).encode()):
        endpoint.replies.append(Reply(body=body))
        exchange = asyncio.run(send())
        assert exchange.error is not None and exchange.error.kind == "empty_response", body
    endpoint.replies.append(Reply(body=json.dumps({"choices": [{"text": "hi"}]}).encode()))
    answered = asyncio.run(send())
    assert answered.error is None and answered.message == {"role": "assistant", "content": "hi"}


def test_a_turn_the_model_ended_empty_is_an_answer_not_a_failure(endpoint: WireEndpoint) -> None:
    # A choice came and finished: the host generated (at least the end of the turn).
    lines = [
        _chunk([{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]),
        _chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]),
        "data: [DONE]",
    ]
    streamed = _exchange(endpoint, Reply(sse=lines), stream=True)
    assert streamed.error is None and streamed.finish_reason_raw == "stop"
    body = {
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": ""}}],
    }
    whole = _exchange(endpoint, Reply(body=json.dumps(body).encode()), stream=False)
    assert whole.error is None and whole.message == {"role": "assistant", "content": ""}


def test_an_error_object_sent_with_200_stays_an_invalid_response(endpoint: WireEndpoint) -> None:
    body = {"error": {"message": "upstream failed"}, "choices": []}
    exchange = _exchange(endpoint, Reply(body=json.dumps(body).encode()), stream=False)
    assert exchange.error is not None and exchange.error.kind == "invalid_response"
    garbled = _exchange(endpoint, Reply(body=b'{"id": "x"}'), stream=False)  # no `choices` key
    assert garbled.error is not None and garbled.error.kind == "invalid_response"


def test_an_imported_stream_without_a_choice_is_an_empty_response(
    tmp_path: Path, db_path: Path
) -> None:
    request = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "Go."}]}
    answered = {"index": 0, "delta": {"content": "Hi."}, "finish_reason": "stop"}
    chunks: dict[str, list[Any]] = {
        "usage_only": [{"object": "chat.completion.chunk", "choices": [], "usage": _USAGE}],
        "only_done": ["data: [DONE]"],
        "answered": [{"object": "chat.completion.chunk", "choices": [answered]}],
    }
    log = tmp_path / "log.jsonl"
    log.write_text(
        "".join(
            json.dumps({"conversation": name, "request": request, "chunks": lines}) + "\n"
            for name, lines in chunks.items()
        ),
        encoding="utf-8",
    )
    import_files(db_path, [log], ImportOptions(provider="p"))
    rows = query_rows(
        db_path,
        "SELECT r.conversation, s.error_kind, r.termination "
        "FROM runs r JOIN steps s ON s.run_id = r.id",
    )
    ended = {r["conversation"]: (r["error_kind"], r["termination"]) for r in rows}
    assert ended == {
        "usage_only": ("empty_response", "provider_error"),
        "only_done": ("empty_response", "provider_error"),
        "answered": (None, "completed"),
    }


def _step(**fields: Any) -> Step:
    return Step(
        **{"index": 0, "finish_reason": "none", "request_params": {"tools": _TOOLS}, **fields}
    )


def test_a_stored_empty_answer_is_an_empty_response_and_no_dropped_call() -> None:
    # A store from before such 200s failed the call: no finish_reason, no usage, nothing.
    old = _step(streamed=True)
    found = run_checks(Run(id="r", steps=(old,)))
    assert [(f.kind, f.layer, f.confidence) for f in found] == [
        ("empty_response", "provider", None)
    ]


def test_an_answer_with_anything_in_it_is_no_empty_response() -> None:
    for step in (
        _step(content="Hi."),
        _step(reasoning="thinking"),
        _step(finish_reason="stop", finish_reason_raw="stop"),
        _step(completion_tokens=40),
        _step(error_kind="empty_response"),  # a failed call: `http_errors` reports it
    ):
        assert list(empty_response(step, Run(id="r"))) == [], step


@pytest.mark.slow
def test_an_empty_response_is_retried_blamed_on_the_host_and_ends_provider_error(
    db_path: Path,
) -> None:
    recordings = {
        f"{rate}/{stream}": Recording(
            sim=SimConfig(faults={"empty_response": rate}),
            stream=stream,
            settings={"retry": RetryPolicy(base_s=0.0, max_retries=1 if rate == 1.0 else 10)},
        )
        for rate in (1.0, 0.4)
        for stream in (False, True)
    }
    summaries = record_many(db_path, recordings)
    conn = open_for_writing(db_path)
    try:
        found = {key: analyze_run(conn, s.id) for key, s in summaries.items()}
    finally:
        conn.close()
    for stream in (False, True):
        always, sometimes = summaries[f"1.0/{stream}"], summaries[f"0.4/{stream}"]
        assert always.outcome.termination == "provider_error"
        assert "nothing was generated" in (always.outcome.error or "")
        [step] = query_rows(db_path, "SELECT * FROM steps WHERE run_id = ?", [always.id])
        assert (step["error_kind"], step["retries"]) == ("empty_response", 1)
        kinds = {(f.kind, f.severity, f.layer) for f in found[f"1.0/{stream}"]}
        assert ("empty_response", "error", "provider") in kinds
        assert not {k for k, _, _ in kinds} & {"dropped_call", "http_connection"}
        # Met at random, it is retried past, and each retried attempt stays visible.
        assert sometimes.outcome.success is True
        retried = [f for f in found[f"0.4/{stream}"] if f.kind == "empty_response"]
        assert retried and all(f.severity == "warning" for f in retried)
