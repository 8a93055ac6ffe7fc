"""The simulator honours the sampling parameters as a faithful host does, refuses malformed
ones with a 400 naming them, and the endpoint client reads several choices and log
probabilities without losing or merging anything (over real HTTP, the real `openai` client)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from traces.client import EndpointClient, EndpointConfig
from traces.exchange import Exchange
from traces.sim.config import SimConfig
from traces.sim.server import SimServer
from traces.sim.tokenizer import count_tokens, cut_tokens, token_pieces

LINE = [{"role": "user", "content": "Reply with exactly: alpha bravo charlie delta echo"}]
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "year": {"type": "integer", "minimum": 1000}},
    "required": ["city", "year"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def client(sim: SimServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=sim.base_url, api_key="test-key", max_retries=0) as made:
        yield made


def _post(client: openai.OpenAI, **extra: Any) -> tuple[dict[str, Any], dict[str, str]]:
    raw = client.chat.completions.with_raw_response.create(
        model="sim-reasoner-1", messages=extra.pop("messages", LINE), **extra
    )
    body: dict[str, Any] = raw.http_response.json()
    return body, dict(raw.headers)


def _content(body: dict[str, Any], choice: int = 0) -> str:
    return str(body["choices"][choice]["message"]["content"] or "")


def test_max_tokens_cuts_the_turn_at_the_budget(client: openai.OpenAI) -> None:
    whole, _ = _post(client)
    assert whole["usage"]["completion_tokens"] > 12
    cut, _ = _post(client, max_tokens=12)
    choice = cut["choices"][0]
    assert choice["finish_reason"] == "length"
    assert cut["usage"]["completion_tokens"] == 12
    # Reasoning comes first: what was generated is a prefix of the whole turn.
    reasoning = choice["message"]["reasoning_content"]
    assert whole["choices"][0]["message"]["reasoning_content"].startswith(reasoning)
    assert count_tokens(reasoning) + count_tokens(_content(cut)) <= 12
    assert _content(whole).startswith(_content(cut))
    # max_completion_tokens is the same budget.
    newer, _ = _post(client, max_completion_tokens=12)
    assert newer["choices"][0] == choice


def test_stop_ends_the_text_before_the_sequence(client: openai.OpenAI) -> None:
    whole, _ = _post(client)
    assert "charlie" in _content(whole)
    stopped, _ = _post(client, stop=["charlie", "zulu"])
    text = _content(stopped)
    assert text == _content(whole).split("charlie")[0]
    assert stopped["choices"][0]["finish_reason"] == "stop"
    assert stopped["usage"]["completion_tokens"] < whole["usage"]["completion_tokens"]
    one, _ = _post(client, stop="charlie")  # a single string is one sequence
    assert _content(one) == text


def test_n_returns_that_many_choices(client: openai.OpenAI) -> None:
    one, _ = _post(client)
    two, _ = _post(client, n=2)
    assert [c["index"] for c in two["choices"]] == [0, 1]
    assert _content(two, 0) == _content(one)  # choice 0 is the answer n=1 gets
    # Every choice is its own sample, and usage counts them all (one prompt).
    assert two["usage"]["prompt_tokens"] == one["usage"]["prompt_tokens"]
    per_choice = [count_tokens(_content(two, i)) for i in (0, 1)]
    assert two["usage"]["completion_tokens"] > one["usage"]["completion_tokens"]
    assert all(n > 0 for n in per_choice)
    greedy, _ = _post(client, n=3, temperature=0)
    assert len({_content(greedy, i) for i in range(3)}) == 1  # the one most likely answer


def test_logprobs_come_with_every_answer_token(client: openai.OpenAI) -> None:
    body, _ = _post(client, logprobs=True, top_logprobs=3)
    logprobs = body["choices"][0]["logprobs"]["content"]
    assert "".join(entry["token"] for entry in logprobs) == _content(body)
    for entry in logprobs:
        assert entry["logprob"] <= 0 and bytes(entry["bytes"]) == entry["token"].encode()
        tops = entry["top_logprobs"]
        assert len(tops) == 3 and tops[0]["token"] == entry["token"]
        assert [t["logprob"] for t in tops] == sorted((t["logprob"] for t in tops), reverse=True)
    plain, _ = _post(client)
    assert plain["choices"][0]["logprobs"] is None
    bare, _ = _post(client, logprobs=True)
    assert all(e["top_logprobs"] == [] for e in bare["choices"][0]["logprobs"]["content"])


def test_response_format_makes_the_answer_json(client: openai.OpenAI) -> None:
    body, _ = _post(client, response_format={"type": "json_object"})
    assert json.loads(_content(body)) == {"answer": _content(_post(client)[0])}
    schema = {"type": "json_schema", "json_schema": {"name": "place", "schema": SCHEMA}}
    shaped, _ = _post(client, response_format=schema)
    value = json.loads(_content(shaped))
    assert set(value) == {"city", "year"} and isinstance(value["year"], int)
    assert value["year"] >= 1000
    text, _ = _post(client, response_format={"type": "text"})
    assert _content(text) == _content(_post(client)[0])


def test_seed_and_temperature_zero_repeat_the_answer(client: openai.OpenAI) -> None:
    first = [_content(_post(client, seed=7, temperature=0)[0]) for _ in range(3)]
    assert len(set(first)) == 1


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"n": 0}, "n"),
        ({"n": 129}, "n"),
        ({"stop": [1]}, "stop"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"top_logprobs": 21, "logprobs": True}, "top_logprobs"),
        ({"logprobs": "yes"}, "logprobs"),
        ({"temperature": 3}, "temperature"),
        ({"response_format": {"type": "yaml"}}, "response_format.type"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema.name"),
    ],
)
def test_malformed_parameters_are_refused_naming_them(
    client: openai.OpenAI, extra: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="sim-reasoner-1", messages=LINE, extra_body=extra)
    assert refused.value.body is not None
    assert refused.value.body["param"] == param  # type: ignore[index]


def _exchange(base_url: str, body: dict[str, Any]) -> Exchange:
    async def send() -> Exchange:
        client = EndpointClient(EndpointConfig(base_url=base_url, api_key="test-key"))
        try:
            return await client.complete({"model": "sim-reasoner-1", "messages": LINE, **body})
        finally:
            await client.close()

    return asyncio.run(send())


@pytest.mark.parametrize("stream", [False, True])
def test_the_client_keeps_choices_apart_and_notes_nothing_when_honoured(
    sim: SimServer, stream: bool
) -> None:
    single = _exchange(sim.base_url, {})
    several = _exchange(
        sim.base_url, {"n": 3, "logprobs": True, "top_logprobs": 2, "stream": stream}
    )
    assert several.error is None and several.anomalies == []
    # Choice 0 is the message; the others are not merged into it.
    assert several.message is not None and single.message is not None
    assert several.message["content"] == single.message["content"]
    if stream:
        indices = {
            c["index"]
            for event in several.stream_events or []
            if event.line.startswith("data: {")
            for c in json.loads(event.line[6:])["choices"]
        }
        assert indices == {0, 1, 2}  # every choice is kept, raw, in the events
    else:
        assert len(json.loads(several.response_body or "")["choices"]) == 3


@pytest.mark.parametrize("stream", [False, True])
def test_the_client_notes_choices_and_logprobs_a_host_leaves_out(stream: bool) -> None:
    config = SimConfig(faults={"n_ignored": 1.0, "logprobs_ignored": 1.0})
    with SimServer(config) as server:
        few = _exchange(server.base_url, {"n": 2, "stream": stream})
        bare = _exchange(server.base_url, {"logprobs": True, "top_logprobs": 2, "stream": stream})
    assert few.anomalies == [{"kind": "choices_missing", "requested": 2, "received": 1}]
    assert bare.anomalies == [
        {"kind": "logprobs_missing", "top_logprobs": 2, "tokens": None, "received_top": None}
    ]


def test_sampling_faults_are_reported_only_when_they_changed_the_answer() -> None:
    config = SimConfig(faults={"max_tokens_ignored": 1.0, "stop_ignored": 1.0})
    with (
        SimServer(config) as server,
        openai.OpenAI(base_url=server.base_url, api_key="test-key", max_retries=0) as client,
    ):
        _, roomy = _post(client, max_tokens=4000, stop=["zulu"])
        assert roomy["x-sim-faults"] == ""  # neither would have acted: nothing was ignored
        body, tight = _post(client, max_tokens=8, stop=["charlie"])
        assert tight["x-sim-faults"] == "max_tokens_ignored,stop_ignored"
        assert "charlie" in _content(body) and body["choices"][0]["finish_reason"] == "stop"


def test_token_pieces_rejoin_the_text() -> None:
    text = "  You asked: “alpha, bravo” 12345 <|im_end|>\n"
    pieces = token_pieces(text)
    assert "".join(pieces) == text and len(pieces) == count_tokens(text)
    assert cut_tokens(text, 3) == "  You asked:"
    assert cut_tokens(text, 0) == "" and cut_tokens(text, 99) == text
    assert token_pieces("") == [] and token_pieces("   ") == ["   "]


CALL_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "open_box",
            "parameters": {"type": "object", "properties": {"box_id": {"type": "string"}}},
        },
    }
]
OPEN = [{"role": "user", "content": "Start with box-1a2b3c and report the treasure."}]


@pytest.mark.parametrize(("dialect", "named"), [("openai", False), ("minimax", True)])
def test_dropped_logprobs_are_named_only_where_content_would_carry_them(
    dialect: str, named: bool
) -> None:
    # A call turn: its reasoning is in a field (openai), so no token of `content` would carry
    # a log probability; or inline in `content` (minimax's <think>), which would.
    config = SimConfig(dialect=dialect, faults={"logprobs_ignored": 1.0})
    with (
        SimServer(config) as server,
        openai.OpenAI(base_url=server.base_url, api_key="test-key", max_retries=0) as client,
    ):
        body, headers = _post(client, messages=OPEN, tools=CALL_TOOLS, logprobs=True)
    assert body["choices"][0]["message"]["tool_calls"]
    assert body["choices"][0]["logprobs"] is None
    assert (headers["x-sim-faults"] == "logprobs_ignored") is named
