"""The simulator over real HTTP on loopback, through the real `openai` client."""

from __future__ import annotations

import asyncio
import json
import random
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any, Literal

import jsonschema
import openai
import pytest
from openai.types.chat import ChatCompletionMessageFunctionToolCall

from traces.sim.config import SimConfig
from traces.sim.server import SimServer

OPEN_BOX_SCHEMA = {
    "type": "object",
    "properties": {"box_id": {"type": "string", "pattern": "^box-[0-9a-f]{6}$"}},
    "required": ["box_id"],
    "additionalProperties": False,
}
CHAIN_TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "open_box",
            "description": "Open a box by id.",
            "parameters": OPEN_BOX_SCHEMA,
        },
    }
]
FILES_TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {"name": name, "parameters": {"type": "object", "properties": props}},
    }
    for name, props in [
        ("list_files", {"path": {"type": "string"}}),
        ("read_file", {"path": {"type": "string"}}),
        ("write_file", {"path": {"type": "string"}, "content": {"type": "string"}}),
        ("grep", {"pattern": {"type": "string"}, "path": {"type": "string"}}),
    ]
]
ReasoningField = Literal["reasoning_content", "reasoning", "think"]
FIELDS: dict[str, ReasoningField] = {
    "openai": "reasoning_content",
    "reasoning-field": "reasoning",
    "minimax": "think",
}
"""One dialect per place reasoning can travel: a message field, or an inline `<think>`."""


@pytest.fixture(scope="module", params=list(FIELDS))
def dialect_sim(request: pytest.FixtureRequest) -> Iterator[SimServer]:
    """One simulator per reasoning dialect, small chunks so streams have many deltas."""
    with SimServer(SimConfig(dialect=request.param, chunk_chars=7)) as server:
        yield server


def _field(server: SimServer) -> ReasoningField:
    return FIELDS[server.config.dialect]


def _client(server: SimServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)


def _start(box: str = "box-1a2b3c") -> list[Any]:
    return [
        {"role": "system", "content": "You open boxes."},
        {"role": "user", "content": f"Start with {box} and report the treasure."},
    ]


class ChainWorld:
    """The contract's chain world in miniature: `length` boxes and a treasure."""

    def __init__(self, length: int, seed: int = 0) -> None:
        rng = random.Random(seed)
        self.ids = [f"box-{rng.getrandbits(24):06x}" for _ in range(length)]
        self.treasure = f"amber-falcon-{seed:03d}"
        self.opened = 0

    def open(self, box_id: str) -> str:
        if box_id not in self.ids or self.ids.index(box_id) > self.opened:
            return f"Error: {box_id} is locked or does not exist"
        index = self.ids.index(box_id)
        self.opened = max(self.opened, index + 1)
        body: dict[str, Any] = {
            "box_id": box_id,
            "opened": index + 1,
            "remaining": len(self.ids) - index - 1,
        }
        if index + 1 == len(self.ids):
            body["treasure"] = self.treasure
        else:
            body["next_box_id"] = self.ids[index + 1]
        return json.dumps(body)


def _reasoning_of(message: Any, field: ReasoningField) -> str:
    if field == "think":
        content = message.content or ""
        assert content.startswith("<think>\n")
        return content[len("<think>\n") : content.index("\n</think>")]
    extra = message.model_extra or {}
    return str(extra[field])


def _function_calls(message: Any) -> list[ChatCompletionMessageFunctionToolCall]:
    calls = message.tool_calls or []
    assert all(isinstance(c, ChatCompletionMessageFunctionToolCall) for c in calls)
    return list(calls)


def _echo(message: Any, field: ReasoningField) -> dict[str, Any]:
    """The assistant message as an interleaved-thinking client sends it back."""
    echoed: dict[str, Any] = {"role": "assistant", "content": message.content}
    if field != "think":
        echoed[field] = (message.model_extra or {})[field]
    if message.tool_calls:
        echoed["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.function.name, "arguments": c.function.arguments},
            }
            for c in message.tool_calls
        ]
    return echoed


def _reassemble(stream: Any, field: ReasoningField) -> dict[str, Any]:
    reasoning, content, finish, usage = "", "", None, None
    calls: dict[int, dict[str, Any]] = {}
    roles = []
    for chunk in stream:
        if chunk.usage is not None:
            assert chunk.choices == []
            usage = chunk.usage
            continue
        delta = chunk.choices[0].delta
        if delta.role:
            roles.append(delta.role)
        reasoning += getattr(delta, field, None) or "" if field != "think" else ""
        content += delta.content or ""
        for tc in delta.tool_calls or []:
            if tc.index not in calls:
                # The first delta of a call carries its id, type, name and empty arguments.
                assert tc.id and tc.type == "function" and tc.function and tc.function.name
                assert tc.function.arguments == ""
                calls[tc.index] = {"id": tc.id, "name": tc.function.name, "arguments": ""}
            else:
                assert tc.id is None
                calls[tc.index]["arguments"] += tc.function.arguments or ""
        if chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    assert roles == ["assistant"]
    return {
        "reasoning": reasoning,
        "content": content,
        "calls": [calls[i] for i in sorted(calls)],
        "finish": finish,
        "usage": usage,
    }


def test_models_lists_the_model(sim: SimServer) -> None:
    models = _client(sim).models.list()
    assert [m.id for m in models.data] == ["sim-reasoner-1"]
    assert _client(sim).models.retrieve("sim-reasoner-1").id == "sim-reasoner-1"


def test_server_binds_loopback_ephemeral_port(sim: SimServer) -> None:
    assert sim.port > 0
    assert sim.base_url == f"http://127.0.0.1:{sim.port}/v1"


def test_non_streaming_tool_call_is_schema_valid(dialect_sim: SimServer) -> None:
    field = _field(dialect_sim)
    raw = _client(dialect_sim).chat.completions.with_raw_response.create(
        model="sim-reasoner-1", messages=_start(), tools=CHAIN_TOOLS
    )
    assert raw.headers["x-request-id"].startswith("req_")
    assert int(raw.headers["x-ratelimit-remaining-requests"]) > 0
    response = raw.parse()
    choice = response.choices[0]
    assert response.object == "chat.completion"
    assert response.id.startswith("chatcmpl-")
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_") and len(call.id) == 29
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, OPEN_BOX_SCHEMA)
    assert arguments == {"box_id": "box-1a2b3c"}
    reasoning = _reasoning_of(choice.message, field)
    assert "box-1a2b3c" in reasoning
    extra = choice.message.model_extra or {}
    for other in FIELDS.values():
        if other not in (field, "think"):
            assert other not in extra  # reasoning appears in exactly one place
    if field != "think":
        assert choice.message.content is None
    usage = response.usage
    assert usage is not None and usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.completion_tokens_details is not None
    assert 0 < (usage.completion_tokens_details.reasoning_tokens or 0) < usage.completion_tokens


def test_stream_reassembles_to_the_non_streaming_decision(dialect_sim: SimServer) -> None:
    field = _field(dialect_sim)
    client = _client(dialect_sim)
    world = ChainWorld(4)
    messages = _start(world.ids[0])
    first = client.chat.completions.create(model="m", messages=messages, tools=CHAIN_TOOLS)
    message = first.choices[0].message
    messages.append(_echo(message, field))
    for call in _function_calls(message):
        messages.append(
            {"role": "tool", "tool_call_id": call.id, "content": world.open(world.ids[0])}
        )

    whole = client.chat.completions.create(model="m", messages=messages, tools=CHAIN_TOOLS, seed=5)
    stream = client.chat.completions.create(
        model="m",
        messages=messages,
        tools=CHAIN_TOOLS,
        seed=5,
        stream=True,
        stream_options={"include_usage": True},
    )
    parts = _reassemble(stream, field)
    whole_message = whole.choices[0].message
    if field == "think":
        assert parts["content"].startswith("<think>")
        assert parts["content"] == whole_message.content
    else:
        assert parts["reasoning"] == _reasoning_of(whole_message, field)
        assert parts["content"] == ""
    assert parts["calls"] == [
        {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
        for c in _function_calls(whole_message)
    ]
    assert json.loads(parts["calls"][0]["arguments"]) == {"box_id": world.ids[1]}
    assert parts["finish"] == whole.choices[0].finish_reason == "tool_calls"
    assert parts["usage"] is not None and whole.usage is not None
    assert parts["usage"].prompt_tokens == whole.usage.prompt_tokens
    assert parts["usage"].completion_tokens == whole.usage.completion_tokens


def test_stream_without_include_usage_has_no_usage_chunk(sim: SimServer) -> None:
    stream = _client(sim).chat.completions.create(
        model="m", messages=_start(), tools=CHAIN_TOOLS, stream=True
    )
    chunks = list(stream)
    assert all(chunk.choices for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)


def test_full_chain_walk_finds_the_treasure(dialect_sim: SimServer) -> None:
    field = _field(dialect_sim)
    client = _client(dialect_sim)
    world = ChainWorld(5, seed=7)
    messages = _start(world.ids[0])
    steps = 0
    prompt_tokens = []
    while True:
        steps += 1
        assert steps <= 10, "the chain walk did not finish"
        response = client.chat.completions.create(model="m", messages=messages, tools=CHAIN_TOOLS)
        assert response.usage is not None
        prompt_tokens.append(response.usage.prompt_tokens)
        message = response.choices[0].message
        messages.append(_echo(message, field))
        if response.choices[0].finish_reason == "stop":
            break
        for call in _function_calls(message):
            box_id = json.loads(call.function.arguments)["box_id"]
            messages.append(
                {"role": "tool", "tool_call_id": call.id, "content": world.open(box_id)}
            )
    final = message.content or ""
    if field == "think":
        final = final.split("</think>", 1)[1].strip()
    assert final == f"The treasure is {world.treasure}."
    assert steps == 6 and world.opened == 5
    assert prompt_tokens == sorted(prompt_tokens)  # interleaved reasoning keeps the prompt growing


def test_prompt_tokens_count_reasoning_only_after_the_last_user(sim: SimServer) -> None:
    client = _client(sim)
    call = {
        "id": "call_x",
        "type": "function",
        "function": {"name": "open_box", "arguments": '{"box_id": "box-1a2b3c"}'},
    }
    result = '{"box_id": "box-1a2b3c", "opened": 1, "remaining": 3, "next_box_id": "box-4d5e6f"}'
    thought = "I considered many alternatives carefully before choosing this box"

    def tokens(messages: list[Any]) -> int:
        response = client.chat.completions.create(model="m", messages=messages, tools=CHAIN_TOOLS)
        assert response.usage is not None
        return response.usage.prompt_tokens

    # Inside the current tool chain: the reasoning is rendered and counted.
    bare = [*_start(), {"role": "assistant", "content": None, "tool_calls": [call]}]
    bare.append({"role": "tool", "tool_call_id": "call_x", "content": result})
    with_thought = [dict(m) for m in bare]
    with_thought[2]["reasoning_content"] = thought
    assert tokens(with_thought) > tokens(bare)
    # The same reasoning sent in a field this dialect does not read is dropped.
    wrong_field = [dict(m) for m in bare]
    wrong_field[2]["reasoning"] = thought
    assert tokens(wrong_field) == tokens(bare)
    # Before the last user message: dropped by the template, not counted.
    later = [{"role": "user", "content": "Now start again with box-1a2b3c."}]
    assert tokens(with_thought + later) == tokens(bare + later)


def test_parallel_read_file_calls_in_one_streamed_turn(sim: SimServer) -> None:
    messages: list[Any] = [
        {
            "role": "user",
            "content": 'Find every line containing "TODO" and write them to `report.md`.',
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_g",
                    "type": "function",
                    "function": {"name": "grep", "arguments": '{"pattern": "TODO", "path": "."}'},
                }
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "call_g",
            "content": json.dumps(
                [
                    {"path": "a.txt", "line": 1, "text": "TODO one"},
                    {"path": "b/c.txt", "line": 4, "text": "TODO two"},
                    {"path": "d.md", "line": 2, "text": "TODO three"},
                ]
            ),
        },
    ]
    stream = _client(sim).chat.completions.create(
        model="m",
        messages=messages,
        tools=FILES_TOOLS,
        stream=True,
        stream_options={"include_usage": True},
    )
    parts = _reassemble(stream, "reasoning_content")
    assert [c["name"] for c in parts["calls"]] == ["read_file"] * 3
    assert [json.loads(c["arguments"]) for c in parts["calls"]] == [
        {"path": "a.txt"},
        {"path": "b/c.txt"},
        {"path": "d.md"},
    ]
    assert len({c["id"] for c in parts["calls"]}) == 3
    assert parts["finish"] == "tool_calls"


def test_no_tools_gives_a_plain_answer(sim: SimServer) -> None:
    response = _client(sim).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Say hello."}]
    )
    assert response.choices[0].finish_reason == "stop"
    assert response.choices[0].message.tool_calls is None
    assert "Say hello." in (response.choices[0].message.content or "")


def _post(server: SimServer, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        server.base_url + path, data=body, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        (json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode(), "model"),
        (json.dumps({"model": "m"}).encode(), "messages"),
        (json.dumps({"model": "m", "messages": []}).encode(), "messages"),
        (json.dumps({"model": "m", "messages": [{"role": "robot"}]}).encode(), "messages[0].role"),
        (
            json.dumps({"model": "m", "messages": [{"role": "user"}], "tools": [{}]}).encode(),
            "tools[0].function.name",
        ),
    ],
)
def test_bad_requests_get_400_with_openai_error_shape(
    sim: SimServer, body: bytes, param: str | None
) -> None:
    status, payload = _post(sim, "/chat/completions", body)
    assert status == 400
    assert set(payload["error"]) == {"message", "type", "param", "code"}
    assert payload["error"]["type"] == "invalid_request_error"
    assert payload["error"]["param"] == param


def test_the_openai_client_raises_bad_request(sim: SimServer) -> None:
    with pytest.raises(openai.BadRequestError):
        _client(sim).chat.completions.create(model="m", messages=[])


def test_unknown_route_is_404(sim: SimServer) -> None:
    status, payload = _post(sim, "/embeddings", b"{}")
    assert status == 404
    assert payload["error"]["code"] == "unknown_url"


def test_latency_is_applied() -> None:
    with SimServer(SimConfig(latency_ms=150)) as server:
        client = _client(server)
        client.models.list()  # warm the connection
        response = client.chat.completions.with_raw_response.create(
            model="m", messages=[{"role": "user", "content": "hi"}]
        )
        assert response.elapsed.total_seconds() >= 0.14


@pytest.mark.slow
def test_concurrent_chain_walks() -> None:
    """Many runs share one stateless server, half of them streaming; each finds its treasure."""

    async def turn(
        client: openai.AsyncOpenAI, messages: list[Any], stream: bool
    ) -> tuple[dict[str, Any], str]:
        if not stream:
            response = await client.chat.completions.create(
                model="m", messages=messages, tools=CHAIN_TOOLS
            )
            message = response.choices[0].message
            return _echo(message, "reasoning_content"), response.choices[0].finish_reason
        chunks = await client.chat.completions.create(
            model="m", messages=messages, tools=CHAIN_TOOLS, stream=True
        )
        reasoning, content, finish = "", "", ""
        calls: dict[int, dict[str, Any]] = {}
        async for chunk in chunks:
            delta = chunk.choices[0].delta
            reasoning += getattr(delta, "reasoning_content", None) or ""
            content += delta.content or ""
            for tc in delta.tool_calls or []:
                function = tc.function
                entry = calls.setdefault(
                    tc.index,
                    {"id": tc.id, "type": "function", "function": {"name": "", "arguments": ""}},
                )
                if function is not None:
                    entry["function"]["name"] += function.name or ""
                    entry["function"]["arguments"] += function.arguments or ""
            finish = chunk.choices[0].finish_reason or finish
        echoed: dict[str, Any] = {
            "role": "assistant",
            "content": content or None,
            "reasoning_content": reasoning,
        }
        if calls:
            echoed["tool_calls"] = [calls[i] for i in sorted(calls)]
        return echoed, finish

    async def walk(client: openai.AsyncOpenAI, seed: int) -> str:
        world = ChainWorld(15, seed=seed)
        messages = _start(world.ids[0])
        for _ in range(20):
            message, finish = await turn(client, messages, stream=seed % 2 == 0)
            messages.append(message)
            if finish == "stop":
                return str(message["content"])
            for call in message["tool_calls"]:
                box_id = json.loads(call["function"]["arguments"])["box_id"]
                result = world.open(box_id)
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": result})
        raise AssertionError("walk did not finish")

    async def main() -> list[str]:
        with SimServer() as server:
            async with openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-test") as client:
                return await asyncio.gather(*(walk(client, seed) for seed in range(16)))

    answers = asyncio.run(main())
    assert answers == [f"The treasure is amber-falcon-{seed:03d}." for seed in range(16)]
