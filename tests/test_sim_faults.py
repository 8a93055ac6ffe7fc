"""Every fault of the catalogue, injected at rate 1.0, shows its effect on the wire and is
named in `x-sim-faults`; rates select a seeded share of distinct requests, deterministically.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import openai
import pytest

from analyzer.checks.text_calls import calls_in_text
from traces.dialects import DIALECTS
from traces.sim.config import SimConfig
from traces.sim.faults import FAULTS, WireFault
from traces.sim.faults.calls import TEXT_SHAPES
from traces.sim.faults.history import HIDDEN_SYSTEM_PROMPT
from traces.sim.server import SimServer
from traces.sim.templates.base import TRUNCATED_CHARS, html_escaped
from traces.sim.tokenizer import count_tokens

# Slow as a whole, outside the fast path `pytest -m "not slow"`: every simulator fault over HTTP.
pytestmark = pytest.mark.slow

CHAIN_TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "open_box",
            "description": "Open a box by id.",
            "parameters": {
                "type": "object",
                "properties": {"box_id": {"type": "string", "pattern": "^box-[0-9a-f]{6}$"}},
                "required": ["box_id"],
            },
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
START: list[Any] = [
    {"role": "system", "content": "You open boxes."},
    {"role": "user", "content": "Start with box-1a2b3c and report the treasure."},
]
HELLO: list[Any] = [{"role": "user", "content": "Say hello."}]
RESULT = '{"box_id": "box-1a2b3c", "opened": 1, "remaining": 3, "next_box_id": "box-4d5e6f"}'


def _second_step(reasoning: str | None = "I open the first box now.") -> list[Any]:
    """The chain after one call: an assistant tool turn (with reasoning) and its result."""
    turn: dict[str, Any] = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_first",
                "type": "function",
                "function": {"name": "open_box", "arguments": '{"box_id": "box-1a2b3c"}'},
            }
        ],
    }
    if reasoning is not None:
        turn["reasoning_content"] = reasoning
    return [*START, turn, {"role": "tool", "tool_call_id": "call_first", "content": RESULT}]


GREP_RESULT = json.dumps(
    [
        {"path": "a.txt", "line": 1, "text": "TODO one"},
        {"path": "b.txt", "line": 4, "text": "TODO two"},
    ]
)
PARALLEL: list[Any] = [
    {"role": "user", "content": 'Find every line containing "TODO" and write them to `r.md`.'},
    {
        "role": "assistant",
        "content": None,
        "reasoning_content": "grep first",
        "tool_calls": [
            {
                "id": "call_g",
                "type": "function",
                "function": {"name": "grep", "arguments": '{"pattern": "TODO", "path": "."}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_g", "content": GREP_RESULT},
]
"""A files-task turn where the policy reads two files in parallel."""


class Faulty:
    """A simulator with faults, and a fault-free twin to compare against."""

    def __init__(self, server: SimServer, clean: SimServer) -> None:
        self.server, self.clean = server, clean
        # One client each: building a client per request costs more than the request.
        self.client, self.clean_client = _client(server), _client(clean)

    def post(
        self, messages: list[Any], *, clean: bool = False, **extra: Any
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """Non-streamed response body and headers."""
        client = self.clean_client if clean else self.client
        raw = client.chat.completions.with_raw_response.create(
            model="m", messages=messages, **extra
        )
        return raw.http_response.json(), dict(raw.headers)

    def stream(self, messages: list[Any], **extra: Any) -> tuple[list[Any], dict[str, str]]:
        """The raw SSE payloads (decoded JSON, `[DONE]` excluded) and the headers."""
        with self.client.chat.completions.with_streaming_response.create(
            model="m", messages=messages, stream=True, **extra
        ) as response:
            payloads = [
                json.loads(line[len("data: ") :])
                for line in response.iter_lines()
                if line.startswith("data: {")
            ]
            return payloads, dict(response.headers)

    def lines(self, messages: list[Any], **extra: Any) -> tuple[list[str], dict[str, str]]:
        """Every non-empty line of a streamed response, as received, and the headers."""
        with self.client.chat.completions.with_streaming_response.create(
            model="m", messages=messages, stream=True, **extra
        ) as response:
            return [line for line in response.iter_lines() if line], dict(response.headers)


def _client(server: SimServer, **options: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0, **options)


@pytest.fixture(scope="module")
def clean() -> Iterator[SimServer]:
    """A fault-free openai-dialect simulator with the faulty ones' seed, to compare against."""
    with SimServer(SimConfig(dialect="openai")) as server:
        yield server


def _faulty(clean: SimServer, name: str, dialect: str = "openai", **config: Any) -> Faulty:
    server = SimServer(SimConfig(dialect=dialect, faults={name: 1.0}, chunk_chars=5, **config))
    return Faulty(server.start(), clean)


def _message(body: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = body["choices"][0]["message"]
    return message


def _faults(headers: dict[str, str]) -> list[str]:
    return [name for name in headers["x-sim-faults"].split(",") if name]


def _tool_entries(payloads: list[Any]) -> list[list[dict[str, Any]]]:
    return [
        p["choices"][0]["delta"]["tool_calls"]
        for p in payloads
        if p["choices"] and p["choices"][0]["delta"].get("tool_calls")
    ]


# --- one check per fault: the effect on the wire (the header is checked by the caller) ----

Check = Callable[[Faulty], dict[str, str]]


def leaked_tokens_content(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(START, tools=CHAIN_TOOLS)
    message = _message(body)
    assert body["choices"][0]["finish_reason"] == "stop" and not message.get("tool_calls")
    assert message["content"].startswith("<|tool_calls_section_begin|><|tool_call_begin|>")
    assert "functions.open_box:0<|tool_call_argument_begin|>" in message["content"]
    return headers


def leaked_tokens_reasoning(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(START, tools=CHAIN_TOOLS)
    message = _message(body)
    assert "<|tool_call_begin|>functions.open_box:0" in message["reasoning_content"]
    assert message["tool_calls"][0]["id"] == "functions.open_box:0"
    return headers


def foreign_call_tags(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(START, tools=CHAIN_TOOLS)
    message = _message(body)
    assert body["choices"][0]["finish_reason"] == "stop" and not message.get("tool_calls")
    # Hermes' blocks on a Kimi host, none of Kimi's own tokens.
    assert message["content"].startswith("<tool_call>\n") and "<|" not in message["content"]
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in CHAIN_TOOLS}
    found = calls_in_text(message["content"], schemas)
    assert found is not None and "tag" in found.wrappers, message["content"]
    assert [(c.name, c.arguments) for c in found.calls] == [("open_box", {"box_id": "box-1a2b3c"})]
    return headers


def test_foreign_call_tags_leave_a_family_that_calls_so_alone(clean: SimServer) -> None:
    """A Qwen host's model writing `<tool_call>` blocks is its own syntax, not this fault."""
    sim = _faulty(clean, "foreign_call_tags", "vllm")
    try:
        body, headers = sim.post(START, tools=CHAIN_TOOLS)
    finally:
        sim.server.stop()
    assert _faults(headers) == [] and _message(body)["tool_calls"]


def tool_call_as_text(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(START, tools=CHAIN_TOOLS)
    message = _message(body)
    assert body["choices"][0]["finish_reason"] == "stop" and not message.get("tool_calls")
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in CHAIN_TOOLS}
    found = calls_in_text(message["content"], schemas)
    assert found is not None, message["content"]
    assert [(c.name, c.arguments) for c in found.calls] == [("open_box", {"box_id": "box-1a2b3c"})]
    # The shape is chosen per request: other conversations get the other shapes.
    shapes = set()
    for n in range(40):
        ask = [*START[:1], {"role": "user", "content": f"Start with box-1a2b3c ({n})."}]
        content = _message(sim.post(ask, tools=CHAIN_TOOLS)[0])["content"]
        found = calls_in_text(content, schemas)
        assert found is not None, content
        shapes.add((found.calls[0].shape, found.placement, found.wrappers))
    assert len(shapes) == len(TEXT_SHAPES), shapes
    return headers


def tool_choice_ignored(sim: Faulty) -> dict[str, str]:
    named = {"type": "function", "function": {"name": "write_file"}}
    ping = [{"type": "function", "function": {"name": "ping", "parameters": {}}}]
    pinged = [
        *HELLO,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_p",
                    "type": "function",
                    "function": {"name": "ping", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_p", "content": "pong"},
    ]
    body, headers = sim.post(pinged, tools=ping, tool_choice="required")
    # `required` dropped: the model, done with its one tool, answers instead of calling.
    assert not _message(body).get("tool_calls") and _message(body)["content"]
    clean, _ = sim.post(pinged, clean=True, tools=ping, tool_choice="required")
    assert [c["function"]["name"] for c in _message(clean)["tool_calls"]] == ["ping"]
    # A named function dropped: the model's own first move instead of write_file.
    ignored, _ = sim.post(START, tools=FILES_TOOLS, tool_choice=named)
    assert [c["function"]["name"] for c in _message(ignored)["tool_calls"]] != ["write_file"]
    enforced, _ = sim.post(START, clean=True, tools=FILES_TOOLS, tool_choice=named)
    assert [c["function"]["name"] for c in _message(enforced)["tool_calls"]] == ["write_file"]
    # `none` dropped: calls come back although none were allowed.
    called, _ = sim.post(START, tools=CHAIN_TOOLS, tool_choice="none")
    assert _message(called)["tool_calls"]
    _, complied = sim.post(START, tools=CHAIN_TOOLS)
    assert _faults(complied) == []  # no tool_choice: nothing to ignore
    return headers


def dropped_call(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(START, tools=CHAIN_TOOLS)
    message = _message(body)
    assert body["choices"][0]["finish_reason"] == "stop"
    assert message["content"] == "" and not message.get("tool_calls")
    clean, _ = sim.post(START, clean=True, tools=CHAIN_TOOLS)
    assert body["usage"]["completion_tokens"] == clean["usage"]["completion_tokens"] > 0
    return headers


def invalid_json_arguments(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(START, tools=CHAIN_TOOLS)
    arguments = _message(body)["tool_calls"][0]["function"]["arguments"]
    assert isinstance(arguments, str)
    with pytest.raises(json.JSONDecodeError):
        json.loads(arguments)
    return headers


def wrong_type_arguments(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(START, tools=CHAIN_TOOLS)
    arguments = json.loads(_message(body)["tool_calls"][0]["function"]["arguments"])
    assert arguments == {"box_id": ["box-1a2b3c"]}
    return headers


def tag_in_name(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(START, tools=CHAIN_TOOLS)
    assert _message(body)["tool_calls"][0]["function"]["name"] == "open_box</tool_call>"
    return headers


def tag_in_key(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(START, tools=CHAIN_TOOLS)
    arguments = json.loads(_message(body)["tool_calls"][0]["function"]["arguments"])
    assert arguments == {"box_id</arg_key>": "box-1a2b3c"}  # GLM's tag (dialect zai)
    return headers


def object_arguments(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(START, tools=CHAIN_TOOLS)
    assert _message(body)["tool_calls"][0]["function"]["arguments"] == {"box_id": "box-1a2b3c"}
    return headers


def rewritten_ids(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(START, tools=CHAIN_TOOLS)
    assert _message(body)["tool_calls"][0]["id"] == "functions.open_box:0"  # on an openai host
    return headers


def duplicated_ids(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(_second_step(), tools=CHAIN_TOOLS)
    assert _message(body)["tool_calls"][0]["id"] == "call_first"  # reused from the history
    body, _ = sim.post(PARALLEL, tools=FILES_TOOLS)
    first, second = (call["id"] for call in _message(body)["tool_calls"])
    assert first == second
    return headers


def missing_ids(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(START, tools=CHAIN_TOOLS)
    assert "id" not in _message(body)["tool_calls"][0]
    return headers


def finish_stop_with_calls(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(START, tools=CHAIN_TOOLS)
    assert body["choices"][0]["finish_reason"] == "stop" and _message(body)["tool_calls"]
    return headers


def finish_tool_calls_without_calls(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(HELLO)
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert "tool_calls" not in _message(body)
    return headers


def finish_length_with_calls(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(START, tools=CHAIN_TOOLS)
    assert body["choices"][0]["finish_reason"] == "length" and _message(body)["tool_calls"]
    return headers


def repeated_call(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(_second_step(), tools=CHAIN_TOOLS)
    [call] = _message(body)["tool_calls"]
    # The call of the previous turn again, not the box its result pointed to.
    assert json.loads(call["function"]["arguments"]) == {"box_id": "box-1a2b3c"}
    assert call["id"] != "call_first" and body["choices"][0]["finish_reason"] == "tool_calls"
    clean = _message(sim.post(_second_step(), clean=True, tools=CHAIN_TOOLS)[0])
    assert json.loads(clean["tool_calls"][0]["function"]["arguments"]) == {"box_id": "box-4d5e6f"}
    _, first_turn = sim.post(START, tools=CHAIN_TOOLS)
    assert _faults(first_turn) == []  # nothing to repeat yet
    return headers


def repeated_call_once(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(_second_step(), tools=CHAIN_TOOLS)
    [call] = _message(body)["tool_calls"]
    assert json.loads(call["function"]["arguments"]) == {"box_id": "box-1a2b3c"}
    # After one repeat the model moves on: the turn after it opens the next box.
    repeated = _message(body)
    after = [
        *_second_step(),
        {**repeated, "content": None},
        {"role": "tool", "tool_call_id": call["id"], "content": RESULT},
    ]
    moved, moved_headers = sim.post(after, tools=CHAIN_TOOLS)
    assert _faults(moved_headers) == []
    next_box = json.loads(_message(moved)["tool_calls"][0]["function"]["arguments"])
    assert next_box == {"box_id": "box-4d5e6f"}
    return headers


def misnamed_argument(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(START, tools=CHAIN_TOOLS)
    arguments = _message(body)["tool_calls"][0]["function"]["arguments"]
    assert json.loads(arguments) == {"id": "box-1a2b3c"}
    refused = [
        *_second_step()[:-1],
        {
            "role": "tool",
            "tool_call_id": "call_first",
            "content": "Error: invalid arguments for open_box: 'box_id' is a required property",
        },
    ]
    retried, after_failure = sim.post(refused, tools=CHAIN_TOOLS)
    assert _faults(after_failure) == []  # the retry gets it right
    assert json.loads(_message(retried)["tool_calls"][0]["function"]["arguments"]) == {
        "box_id": "box-1a2b3c"
    }
    return headers


def invented_id(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(START, tools=CHAIN_TOOLS)
    arguments = _message(body)["tool_calls"][0]["function"]["arguments"]
    assert json.loads(arguments) == {"box_id": "box-1a2b3c-x"}
    refused = [
        *_second_step()[:-1],
        {
            "role": "tool",
            "tool_call_id": "call_first",
            "content": "Error: box-1a2b3c-x is locked or does not exist",
        },
    ]
    retried, after_failure = sim.post(refused, tools=CHAIN_TOOLS)
    assert _faults(after_failure) == []  # the retry names the real box
    assert json.loads(_message(retried)["tool_calls"][0]["function"]["arguments"]) == {
        "box_id": "box-1a2b3c"
    }
    return headers


def hallucinated_tool(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(START, tools=CHAIN_TOOLS)
    real, extra = _message(body)["tool_calls"]
    assert json.loads(real["function"]["arguments"]) == {"box_id": "box-1a2b3c"}
    assert extra["function"]["name"] in ("toolbox.web.answer", "browser.search", "web_search")
    assert json.loads(extra["function"]["arguments"]) == {"query": "box-1a2b3c"}
    assert extra["id"].startswith("call_") and extra["id"] != real["id"]
    # The model generated the extra call: usage bills it beside the call its clean twin made.
    clean, _ = sim.post(START, clean=True, tools=CHAIN_TOOLS)
    billed = body["usage"]["completion_tokens"] - clean["usage"]["completion_tokens"]
    assert billed >= count_tokens(f"{extra['function']['name']} {extra['function']['arguments']}")
    return headers


def emptied_arguments(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(START, tools=CHAIN_TOOLS)
    assert _message(body)["tool_calls"][0]["function"]["arguments"] == "{}"
    _, optional_only = sim.post(PARALLEL, tools=FILES_TOOLS)  # no required parameter to lose
    assert _faults(optional_only) == []
    return headers


def late_emptied_arguments(sim: Faulty) -> dict[str, str]:
    _, first_turn = sim.post(START, tools=CHAIN_TOOLS)
    assert _faults(first_turn) == []  # no history yet: the first turn is clean
    body, headers = sim.post(_second_step(), tools=CHAIN_TOOLS)
    assert _message(body)["tool_calls"][0]["function"]["arguments"] == ""
    return headers


def late_rewritten_ids(sim: Faulty) -> dict[str, str]:
    first, first_turn = sim.post(START, tools=CHAIN_TOOLS)
    assert _faults(first_turn) == []
    assert _message(first)["tool_calls"][0]["id"] == "functions.open_box:0"  # Kimi's own
    body, headers = sim.post(_second_step(), tools=CHAIN_TOOLS)
    assert _message(body)["tool_calls"][0]["id"].startswith("call_")
    return headers


def late_empty_turn(sim: Faulty) -> dict[str, str]:
    _, first_turn = sim.post(START, tools=CHAIN_TOOLS)
    assert _faults(first_turn) == []
    body, headers = sim.post(_second_step(), tools=CHAIN_TOOLS)
    clean, _ = sim.post(_second_step(), clean=True, tools=CHAIN_TOOLS)
    message, whole = _message(body), _message(clean)["reasoning_content"]
    assert body["choices"][0]["finish_reason"] == "stop"
    assert not message.get("content") and not message.get("tool_calls")
    # Cut mid-sentence: the start of the clean turn's reasoning, no final punctuation.
    reasoning = message["reasoning_content"]
    assert whole.startswith(reasoning) and len(reasoning) < len(whole)
    assert reasoning[-1].isalnum()
    usage = body["usage"]
    assert usage["completion_tokens"] < clean["usage"]["completion_tokens"]
    assert usage["completion_tokens_details"]["reasoning_tokens"] <= usage["completion_tokens"]
    return headers


def reasoning_close_tag_only(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(HELLO)
    clean = _message(sim.post(HELLO, clean=True)[0])
    message = _message(body)
    assert "reasoning_content" not in message
    assert message["content"] == f"{clean['reasoning_content']}\n</think>\n\n{clean['content']}"
    return headers


def harmony_in_content(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(START, tools=CHAIN_TOOLS)
    message = _message(body)
    assert body["choices"][0]["finish_reason"] == "stop" and not message.get("tool_calls")
    assert "reasoning_content" not in message
    content = message["content"]
    assert content.startswith("<|channel|>analysis<|message|>")
    assert (
        "<|start|>assistant to=functions.open_box<|channel|>commentary json<|message|>" in content
    )
    answer = _message(sim.post(HELLO)[0])["content"]
    assert "<|start|>assistant<|channel|>final<|message|>" in answer
    # Cut by the budget mid-thought: the engine still says `length` (no parser decides that),
    # and the text ends where the budget did, no message closed after it.
    cut, _ = sim.post(START, tools=CHAIN_TOOLS, max_tokens=8)
    assert cut["choices"][0]["finish_reason"] == "length"
    assert cut["usage"]["completion_tokens"] == 8
    text = _message(cut)["content"]
    assert text.startswith("<|channel|>analysis<|message|>") and text.count("<|") == 2
    return headers


def harmony_stripped(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(START, tools=CHAIN_TOOLS)
    message = _message(body)
    assert body["choices"][0]["finish_reason"] == "stop" and not message.get("tool_calls")
    content = message["content"]
    assert content.startswith("analysis") and "<|" not in content
    assert "assistant to=functions.open_box" in content
    answer = _message(sim.post(HELLO)[0])["content"]
    assert answer.startswith("analysis") and "assistantfinal" in answer
    cut, _ = sim.post(START, tools=CHAIN_TOOLS, max_tokens=8)
    assert cut["choices"][0]["finish_reason"] == "length"
    assert "assistant" not in _message(cut)["content"]  # cut mid-thought, nothing after it
    return headers


def finish_length_hidden(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(START, tools=CHAIN_TOOLS, max_tokens=512)
    usage = body["usage"]
    assert body["choices"][0]["finish_reason"] == "tool_calls" and _message(body)["tool_calls"]
    assert usage["completion_tokens"] == 512
    assert usage["total_tokens"] == usage["prompt_tokens"] + 512
    assert usage["completion_tokens_details"]["reasoning_tokens"] <= 512
    _, no_budget = sim.post(START, tools=CHAIN_TOOLS)
    assert _faults(no_budget) == []
    return headers


def stream_index_missing(sim: Faulty) -> dict[str, str]:
    payloads, headers = sim.stream(START, tools=CHAIN_TOOLS)
    entries = [e for chunk in _tool_entries(payloads) for e in chunk]
    assert entries and all("index" not in e for e in entries)
    return headers


def stream_fields_repeated(sim: Faulty) -> dict[str, str]:
    payloads, headers = sim.stream(START, tools=CHAIN_TOOLS)
    entries = [e for chunk in _tool_entries(payloads) for e in chunk]
    assert len(entries) > 2
    assert all(e["id"] and e["type"] == "function" and e["function"]["name"] for e in entries)
    return headers


def stream_arguments_cumulative(sim: Faulty) -> dict[str, str]:
    payloads, headers = sim.stream(START, tools=CHAIN_TOOLS)
    pieces = [
        e["function"]["arguments"]
        for chunk in _tool_entries(payloads)
        for e in chunk
        if e["function"].get("arguments")
    ]
    assert len(pieces) > 2
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(pieces))
    assert json.loads(pieces[-1]) == {"box_id": "box-1a2b3c"}
    return headers


def stream_index_from_one(sim: Faulty) -> dict[str, str]:
    payloads, headers = sim.stream(PARALLEL, tools=FILES_TOOLS)
    indices = {e["index"] for chunk in _tool_entries(payloads) for e in chunk}
    assert indices == {1, 2}
    return headers


def stream_index_split(sim: Faulty) -> dict[str, str]:
    payloads, headers = sim.stream(START, tools=CHAIN_TOOLS)
    doubled = [
        chunk for chunk in _tool_entries(payloads) if len(chunk) == 2 and chunk[0]["index"] == 0
    ]
    assert doubled and doubled[0][1]["index"] == 0
    return headers


def stream_id_repeated(sim: Faulty) -> dict[str, str]:
    payloads, headers = sim.stream(START, tools=CHAIN_TOOLS)
    first, *later = [e for chunk in _tool_entries(payloads) for e in chunk]
    assert len(later) > 1
    assert all(e["id"] == first["id"] and e["type"] == "function" for e in later)
    assert all("name" not in e["function"] for e in later)
    return headers


def stream_id_changed(sim: Faulty) -> dict[str, str]:
    payloads, headers = sim.stream(START, tools=CHAIN_TOOLS)
    first, *later = [e for chunk in _tool_entries(payloads) for e in chunk]
    assert first["function"]["name"] == "open_box" and len(later) > 1
    assert {e["id"] for e in later} == {later[0]["id"]} != {first["id"]}
    return headers


def stream_arguments_object(sim: Faulty) -> dict[str, str]:
    payloads, headers = sim.stream(PARALLEL, tools=FILES_TOOLS)
    entries = [e for chunk in _tool_entries(payloads) for e in chunk]
    assert [e["index"] for e in entries] == [0, 1]  # each call whole, in one delta
    assert [e["function"]["arguments"] for e in entries] == [{"path": "a.txt"}, {"path": "b.txt"}]
    assert all(e["id"] and e["function"]["name"] == "read_file" for e in entries)
    return headers


def stream_index_collision(sim: Faulty) -> dict[str, str]:
    payloads, headers = sim.stream(PARALLEL, tools=FILES_TOOLS)
    entries = [e for chunk in _tool_entries(payloads) for e in chunk]
    assert {e["index"] for e in entries} == {0}
    assert len({e["id"] for e in entries if "id" in e}) == 2  # two calls, one index
    merged = "".join(e["function"].get("arguments", "") for e in entries)
    assert merged == '{"path": "a.txt"}{"path": "b.txt"}'
    _, single = sim.stream(START, tools=CHAIN_TOOLS)
    assert _faults(single) == []  # one call cannot collide
    return headers


def stream_finish_twice(sim: Faulty) -> dict[str, str]:
    payloads, headers = sim.stream(START, tools=CHAIN_TOOLS)
    finishes = [
        p["choices"][0]["finish_reason"]
        for p in payloads
        if p["choices"] and p["choices"][0]["finish_reason"]
    ]
    assert finishes == ["tool_calls", "stop"]
    _, answer = sim.stream(HELLO)
    assert _faults(answer) == []  # a stream finished by `stop` stays as it is
    return headers


def reasoning_required_400(sim: Faulty) -> dict[str, str]:
    with pytest.raises(openai.BadRequestError) as refused:
        _client(sim.server).chat.completions.create(
            model="m", messages=_second_step(reasoning=None), tools=CHAIN_TOOLS
        )
    assert "Missing `reasoning_content` field" in refused.value.response.json()["error"]["message"]
    _, unaffected = sim.post(_second_step(), tools=CHAIN_TOOLS)  # reasoning sent back: fine
    assert _faults(unaffected) == []
    return dict(refused.value.response.headers)


def rate_limit_429(sim: Faulty) -> dict[str, str]:
    with pytest.raises(openai.RateLimitError) as limited:
        _client(sim.server).chat.completions.create(model="m", messages=HELLO)
    headers = dict(limited.value.response.headers)
    assert headers["retry-after"] == "1" and headers["x-ratelimit-remaining-requests"] == "0"
    return headers


def server_error_5xx(sim: Faulty) -> dict[str, str]:
    statuses = set()
    headers: dict[str, str] = {}
    for n in range(30):
        with pytest.raises(openai.APIStatusError) as failed:
            sim.client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": f"hello {n}"}]
            )
        statuses.add(failed.value.status_code)
        headers = dict(failed.value.response.headers)
    assert statuses == {500, 502, 503}
    return headers


def timeout(sim: Faulty) -> dict[str, str]:
    with pytest.raises(openai.APITimeoutError):
        _client(sim.server, timeout=0.2).chat.completions.create(model="m", messages=HELLO)
    raw = _client(sim.server, timeout=10).chat.completions.with_raw_response.create(
        model="m", messages=HELLO
    )
    assert raw.elapsed.total_seconds() >= 0.5
    return dict(raw.headers)


def _refused(sim: Faulty, error: type[openai.APIStatusError], **request: Any) -> Any:
    with pytest.raises(error) as refused:
        _client(sim.server).chat.completions.create(model="m", **request)
    return refused.value


def unauthorized_401(sim: Faulty) -> dict[str, str]:
    refused = _refused(sim, openai.AuthenticationError, messages=HELLO)
    assert refused.response.json() == {
        "error": {"message": "No auth credentials found", "code": 401}
    }
    return dict(refused.response.headers)


def payment_required_402(sim: Faulty) -> dict[str, str]:
    refused = _refused(sim, openai.APIStatusError, messages=HELLO, max_tokens=4000)
    assert refused.status_code == 402
    message = refused.response.json()["error"]["message"]
    assert "requires more credits" in message and "You requested up to 4000 tokens" in message
    return dict(refused.response.headers)


def model_not_found_404(sim: Faulty) -> dict[str, str]:
    refused = _refused(sim, openai.NotFoundError, messages=HELLO)
    body = refused.response.json()
    assert body["message"] == "The model `m` does not exist." and body["code"] == 404
    return dict(refused.response.headers)


def bad_request_400(sim: Faulty) -> dict[str, str]:
    refused = _refused(sim, openai.BadRequestError, messages=START, tools=CHAIN_TOOLS)
    message = refused.response.json()["error"]["message"]
    assert message == "Unrecognized request argument supplied: tools"
    _, without_tools = sim.post(HELLO)
    assert _faults(without_tools) == []
    return dict(refused.response.headers)


def template_error_400(sim: Faulty) -> dict[str, str]:
    refused = _refused(sim, openai.BadRequestError, messages=HELLO)
    assert refused.response.json()["message"].startswith("expected token")
    return dict(refused.response.headers)


def template_error_500(sim: Faulty) -> dict[str, str]:
    refused = _refused(sim, openai.InternalServerError, messages=_second_step(), tools=CHAIN_TOOLS)
    error = refused.response.json()["error"]
    assert error == {
        "message": "'dict object' has no attribute 'name'",
        "type": "internal_server_error",
        "param": None,
        "code": None,
    }
    _, first = sim.post(START, tools=CHAIN_TOOLS)  # no tool result in the history yet
    named = _second_step()
    named[-1] = {**named[-1], "name": "open_box"}
    _, with_name = sim.post(named, tools=CHAIN_TOOLS)
    assert _faults(first) == _faults(with_name) == []
    return dict(refused.response.headers)


def argument_type_error_500(sim: Faulty) -> dict[str, str]:
    refused = _refused(sim, openai.InternalServerError, messages=_second_step(), tools=CHAIN_TOOLS)
    message = refused.response.json()["error"]["message"]
    assert message.startswith('Invalid tool call arguments passed: {"box_id": "box-1a2b3c"}')
    assert "{% if _args is not mapping %}" in message
    _, no_history = sim.post(START, tools=CHAIN_TOOLS)
    objects = _second_step()
    objects[2] = {**objects[2], "tool_calls": [dict(objects[2]["tool_calls"][0])]}
    objects[2]["tool_calls"][0]["function"] = {"name": "open_box", "arguments": {"box_id": "x"}}
    _, mapping = sim.post(objects, tools=CHAIN_TOOLS)  # arguments sent back as a mapping
    assert _faults(no_history) == _faults(mapping) == []
    return dict(refused.response.headers)


_CONTEXT = re.compile(
    r"maximum context length is (\d+) tokens\. However, you requested (\d+) tokens "
    r"\((\d+) in the messages, (\d+) in the completion\)"
)


_PROMPT_ONLY = re.compile(
    r"maximum context length is (\d+) tokens\. However, your request has (\d+) input tokens"
)


def context_overflow_400(sim: Faulty) -> dict[str, str]:
    refused = _refused(sim, openai.BadRequestError, messages=HELLO, max_tokens=1000)
    match = _CONTEXT.search(refused.response.json()["message"])
    assert match is not None
    window, requested, prompt, completion = map(int, match.groups())
    assert completion == 1000 and prompt + completion == requested > window >= requested / 2
    # Without a budget, vLLM leaves the completion what the window does not take: only the
    # prompt can overflow it.
    alone = _refused(sim, openai.BadRequestError, messages=HELLO)
    found = _PROMPT_ONLY.search(alone.response.json()["message"])
    assert found is not None
    window, prompt = map(int, found.groups())
    assert prompt > window >= prompt / 2
    return dict(refused.response.headers)


def host_context_overflow_400(sim: Faulty) -> dict[str, str]:
    from traces.sim.faults.http import HOST_CONTEXT_WINDOW

    refused = _refused(sim, openai.BadRequestError, messages=HELLO, max_tokens=100)
    error = refused.response.json()["error"]
    assert error["code"] == "context_length_exceeded" and error["param"] == "messages"
    match = _CONTEXT.search(error["message"])
    assert match is not None
    window, requested, grown, completion = map(int, match.groups())
    # The host counts a prompt far beyond the one it was sent, and beyond its own window.
    assert window == HOST_CONTEXT_WINDOW and completion == 100 and grown > window
    assert requested == grown + completion
    unset = _refused(sim, openai.BadRequestError, messages=HELLO)
    assert "in the messages, None in the completion)" in unset.response.json()["error"]["message"]
    big = [{"role": "user", "content": "word " * HOST_CONTEXT_WINDOW}]
    _, headers = sim.post(big)  # a request this large could overflow it by itself
    assert _faults(headers) == []
    return dict(refused.response.headers)


def invalid_response_200(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(HELLO)
    assert "choices" not in body
    assert body["object"] == "error" and body["message"] == "The model `m` does not exist."
    lines, _ = sim.lines(HELLO)  # a stream was asked for: the same JSON body comes back
    assert [json.loads(line) for line in lines] == [body]
    return headers


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def stream_broken_chunk(sim: Faulty) -> dict[str, str]:
    lines, headers = sim.lines(HELLO)
    broken = [
        n for n, line in enumerate(lines) if line.startswith("data: {") and not _parses(line[5:])
    ]
    assert broken == [broken[0]] and lines[-1] == "data: [DONE]"
    line = lines[broken[0]]
    assert line.endswith('"}') and '"delta":{"reasoning_content":"' in line
    assert json.loads(lines[broken[0] + 1])["error"]["message"] == "stream_read_error"
    return headers


def stream_truncated(sim: Faulty) -> dict[str, str]:
    lines, headers = sim.lines(START, tools=CHAIN_TOOLS, stream_options={"include_usage": True})
    payloads = [json.loads(line[len("data: ") :]) for line in lines]  # every line still parses
    assert all(p["choices"] and p["choices"][0]["finish_reason"] is None for p in payloads)
    assert all(p.get("usage") is None for p in payloads)
    pieces = [
        e["function"].get("arguments", "") for chunk in _tool_entries(payloads) for e in chunk
    ]
    arguments = "".join(pieces)
    assert arguments and '{"box_id": "box-1a2b3c"}'.startswith(arguments)
    assert arguments != '{"box_id": "box-1a2b3c"}'  # cut mid-call
    return headers


def connection_reset(sim: Faulty) -> dict[str, str]:
    received: list[str] = []
    cut = pytest.raises(httpx2.RemoteProtocolError, match="incomplete chunked read")
    streamed = sim.client.chat.completions.with_streaming_response.create(
        model="m", messages=HELLO, stream=True
    )
    with cut, streamed as response:
        assert response.status_code == 200
        received.extend(line for line in response.iter_lines() if line)
    assert received and "data: [DONE]" not in received
    cut = pytest.raises(httpx2.RemoteProtocolError, match="incomplete chunked read")
    whole = sim.client.chat.completions.with_streaming_response.create(model="m", messages=HELLO)
    with cut, whole as response:
        headers = dict(response.headers)
        response.read()
    with pytest.raises(openai.APIConnectionError):
        sim.client.chat.completions.create(model="m", messages=HELLO)
    return headers


def empty_response(sim: Faulty) -> dict[str, str]:
    lines, _ = sim.lines(HELLO, stream_options={"include_usage": True})
    assert lines == ["data: [DONE]"]  # not a chunk, not a choice: nothing was generated
    body, headers = sim.post(HELLO)
    clean, _ = sim.post(HELLO, clean=True)
    assert body["choices"] == [] and body["object"] == "chat.completion"
    prompt = clean["usage"]["prompt_tokens"]
    usage = {"prompt_tokens": prompt, "completion_tokens": 0, "total_tokens": prompt}
    assert body["usage"] == usage
    return headers


def endless_response(sim: Faulty) -> dict[str, str]:
    lines: list[str] = []
    with sim.client.chat.completions.with_streaming_response.create(
        model="m", messages=HELLO, stream=True
    ) as response:
        headers = dict(response.headers)
        for line in response.iter_lines():
            lines.extend([line] if line else [])
            if len(lines) > 4 and len(set(lines[-3:])) == 1:
                break  # the last piece, again and again: leaving ends the stream
    payloads = [json.loads(line[len("data: ") :]) for line in lines]
    assert all(p["choices"][0]["finish_reason"] is None for p in payloads)
    assert payloads[-1]["choices"][0]["delta"]["content"]
    received = b""
    with sim.client.chat.completions.with_streaming_response.create(
        model="m", messages=HELLO
    ) as response:
        for piece in response.iter_bytes():
            received += piece
            if len(received) >= 3:
                break
    assert received.strip() == b""  # keep-alive spaces, never a body
    return headers


def _strict_loads(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(name)

    return json.loads(text, parse_constant=refuse)


def non_json_numbers(sim: Faulty) -> dict[str, str]:
    raw = sim.client.chat.completions.with_raw_response.create(model="m", messages=HELLO)
    text = raw.http_response.text
    assert (
        '"usage":{"prompt_tokens":NaN,"completion_tokens":1e999,"total_tokens":-Infinity}' in text
    )
    with pytest.raises(ValueError, match="NaN"):
        _strict_loads(text)
    assert _message(json.loads(text))["content"]  # the rest of the answer is intact
    lines, _ = sim.lines(HELLO, stream_options={"include_usage": True})
    spoiled = [line for line in lines if "NaN" in line]
    assert len(spoiled) == 1 and '"usage":{"prompt_tokens":NaN' in spoiled[0]
    assert lines[-1] == "data: [DONE]"
    return dict(raw.headers)


def usage_omitted(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(HELLO)
    assert "usage" not in body and _message(body)["content"]  # the answer is intact
    payloads, _ = sim.stream(HELLO, stream_options={"include_usage": True})
    assert payloads and not any(p.get("usage") for p in payloads)
    assert payloads[-1]["choices"][0]["finish_reason"] == "stop"
    return headers


def deeply_nested_json(sim: Faulty) -> dict[str, str]:
    from traces.sim.faults.transport import NESTING

    raw = sim.client.chat.completions.with_raw_response.create(model="m", messages=HELLO)
    text = raw.http_response.text
    assert '"usage":' + "[" * NESTING + "]" * NESTING in text
    with pytest.raises(RecursionError):
        json.loads(text)
    lines, _ = sim.lines(HELLO, stream_options={"include_usage": True})
    assert sum("[" * NESTING in line for line in lines) == 1
    return dict(raw.headers)


def auth_echoed(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(HELLO)
    message = _message(body)
    echo = "(request received with Authorization: Bearer sk-test)"
    assert message["content"].endswith(echo) and message["reasoning_content"].endswith(echo)
    assert headers["x-request-id"] == "req_Bearer sk-test"
    payloads, _ = sim.stream(HELLO)
    content = "".join(p["choices"][0]["delta"].get("content") or "" for p in payloads)
    assert content.endswith(echo)
    return headers


def auth_echoed_in_error(sim: Faulty) -> dict[str, str]:
    refused = _refused(sim, openai.AuthenticationError, messages=HELLO)
    error = refused.response.json()["error"]
    assert error["message"] == "Incorrect API key provided: Bearer sk-test"
    assert error["request_headers"] == {"Authorization": "Bearer sk-test"}
    assert refused.response.headers["x-request-id"] == "req_Bearer sk-test"
    return dict(refused.response.headers)


def reasoning_swallows_answer(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(HELLO)
    clean = _message(sim.post(HELLO, clean=True)[0])
    message = _message(body)
    assert message["content"] == ""
    assert message["reasoning_content"] == f"{clean['reasoning_content']}\n\n{clean['content']}"
    return headers


def reasoning_in_content(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(HELLO)
    clean = _message(sim.post(HELLO, clean=True)[0])
    message = _message(body)
    assert "reasoning_content" not in message
    assert message["content"] == f"{clean['reasoning_content']}\n\n{clean['content']}"
    return headers


def reasoning_tokens_missing(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(HELLO)
    assert body["usage"]["completion_tokens_details"] is None
    return headers


def reasoning_tokens_outside_completion(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(HELLO)
    clean = sim.post(HELLO, clean=True)[0]["usage"]
    usage = body["usage"]
    reasoning = usage["completion_tokens_details"]["reasoning_tokens"]
    assert reasoning > 0 and usage["completion_tokens"] == clean["completion_tokens"] - reasoning
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] + reasoning
    return headers


def reasoning_dropped_from_history(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(_second_step(), tools=CHAIN_TOOLS)
    bare, _ = sim.post(_second_step(reasoning=None), clean=True, tools=CHAIN_TOOLS)
    kept, _ = sim.post(_second_step(), clean=True, tools=CHAIN_TOOLS)
    prompt = body["usage"]["prompt_tokens"]
    assert prompt == bare["usage"]["prompt_tokens"] < kept["usage"]["prompt_tokens"]
    _, nothing_to_drop = sim.post(START, tools=CHAIN_TOOLS)
    assert _faults(nothing_to_drop) == []
    return headers


def _third_step(first_reasoning: str | None = "I open the first box now.") -> list[Any]:
    """The chain after two calls, both turns sent back with their reasoning (the first one's
    replaced by `first_reasoning`, removed when None)."""
    messages = [dict(m) for m in _second_step()]
    if first_reasoning is None:
        del messages[2]["reasoning_content"]
    else:
        messages[2]["reasoning_content"] = first_reasoning
    turn = {
        "role": "assistant",
        "content": None,
        "reasoning_content": "The first box points to box-4d5e6f; I open it next.",
        "tool_calls": [
            {
                "id": "call_second",
                "type": "function",
                "function": {"name": "open_box", "arguments": '{"box_id": "box-4d5e6f"}'},
            }
        ],
    }
    result = '{"box_id": "box-4d5e6f", "opened": 2, "remaining": 2, "next_box_id": "box-7a8b9c"}'
    return [*messages, turn, {"role": "tool", "tool_call_id": "call_second", "content": result}]


def _cached(body: dict[str, Any]) -> int:
    cached: int = body["usage"]["prompt_tokens_details"]["cached_tokens"]
    return cached


def reasoning_kept_last_only(sim: Faulty) -> dict[str, str]:
    # A faithful host's cache covers the whole previous prompt of the chain: the second
    # request extends the first (this chain is new to the clean simulator's cache).
    first, _ = sim.post(_second_step(), clean=True, tools=CHAIN_TOOLS)
    kept, _ = sim.post(_third_step(), clean=True, tools=CHAIN_TOOLS)
    assert _cached(kept) >= first["usage"]["prompt_tokens"] - 5
    before, nothing_to_drop = sim.post(_second_step(), tools=CHAIN_TOOLS)
    assert _faults(nothing_to_drop) == []  # one turn with reasoning: it is the latest
    body, headers = sim.post(_third_step(), tools=CHAIN_TOOLS)
    bare, _ = sim.post(_third_step(first_reasoning=None), clean=True, tools=CHAIN_TOOLS)
    prompt = body["usage"]["prompt_tokens"]
    assert prompt == bare["usage"]["prompt_tokens"] < kept["usage"]["prompt_tokens"]
    # This host rendered the first turn differently this time: its cache stops before that
    # turn, far short of the previous prompt.
    assert _cached(body) < before["usage"]["prompt_tokens"] - 20
    return headers


def _with_result(text: str) -> list[Any]:
    """The chain after one call, its result replaced by `text`."""
    messages = _second_step()
    return [*messages[:-1], {**messages[-1], "content": text}]


def _prompt(body: dict[str, Any]) -> int:
    tokens: int = body["usage"]["prompt_tokens"]
    return tokens


def tool_results_dropped(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(_second_step(), tools=CHAIN_TOOLS)
    kept, _ = sim.post(_second_step(), clean=True, tools=CHAIN_TOOLS)
    empty, _ = sim.post(_with_result(""), clean=True, tools=CHAIN_TOOLS)
    # The result is gone, and the turn that would have carried it with it.
    assert _prompt(body) < _prompt(empty) < _prompt(kept)
    _, nothing_to_drop = sim.post(START, tools=CHAIN_TOOLS)
    assert _faults(nothing_to_drop) == []
    return headers


def tool_results_truncated(sim: Faulty) -> dict[str, str]:
    long = " ".join(f"line {n}: TODO item number {n}" for n in range(40))
    body, headers = sim.post(_with_result(long), tools=CHAIN_TOOLS)
    cut, _ = sim.post(_with_result(long[:TRUNCATED_CHARS]), clean=True, tools=CHAIN_TOOLS)
    kept, _ = sim.post(_with_result(long), clean=True, tools=CHAIN_TOOLS)
    assert _prompt(body) == _prompt(cut) < _prompt(kept)
    # A result within the length reaches the model whole, and nothing is reported.
    short, nothing_cut = sim.post(_second_step(), tools=CHAIN_TOOLS)
    assert _faults(nothing_cut) == []
    assert _prompt(short) == _prompt(sim.post(_second_step(), clean=True, tools=CHAIN_TOOLS)[0])
    return headers


def history_html_escaped(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(_second_step(), tools=CHAIN_TOOLS)
    escaped = [
        {**m, "content": html_escaped(m["content"])} if isinstance(m.get("content"), str) else m
        for m in _second_step()
    ]
    escaped[2] = {
        **escaped[2],
        "tool_calls": [
            {
                **c,
                "function": {
                    **c["function"],
                    "arguments": html_escaped(c["function"]["arguments"]),
                },
            }
            for c in escaped[2]["tool_calls"]
        ],
    }
    # The same prompt as a faithful host's for text escaped by the client: `"` -> `&#34;`.
    assert _prompt(body) == _prompt(sim.post(escaped, clean=True, tools=CHAIN_TOOLS)[0])
    assert _prompt(body) > _prompt(sim.post(_second_step(), clean=True, tools=CHAIN_TOOLS)[0])
    _, plain = sim.post(HELLO)  # nothing to escape
    assert _faults(plain) == []
    return headers


def arguments_reencoded(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(_second_step(), tools=CHAIN_TOOLS)
    twice = _second_step()
    call = twice[2]["tool_calls"][0]
    encoded = json.dumps(call["function"]["arguments"])  # '"{\\"box_id\\": ...}"'
    twice[2] = {
        **twice[2],
        "tool_calls": [{**call, "function": {**call["function"], "arguments": encoded}}],
    }
    # The same prompt as a faithful host's for arguments the client encoded twice.
    assert _prompt(body) == _prompt(sim.post(twice, clean=True, tools=CHAIN_TOOLS)[0])
    assert _prompt(body) > _prompt(sim.post(_second_step(), clean=True, tools=CHAIN_TOOLS)[0])
    _, no_calls = sim.post(START, tools=CHAIN_TOOLS)
    assert _faults(no_calls) == []
    return headers


def system_prompt_injected(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(START, tools=CHAIN_TOOLS)
    clean, _ = sim.post(START, clean=True, tools=CHAIN_TOOLS)
    hidden = count_tokens(HIDDEN_SYSTEM_PROMPT)
    # Every request carries it, first or not.
    assert hidden - 2 <= _prompt(body) - _prompt(clean) <= hidden + 2
    later, _ = sim.post(_second_step(), tools=CHAIN_TOOLS)
    later_clean, _ = sim.post(_second_step(), clean=True, tools=CHAIN_TOOLS)
    assert _prompt(later) - _prompt(later_clean) == _prompt(body) - _prompt(clean)
    return headers


def test_prompt_faults_fire_on_whole_conversations() -> None:
    # At rate one half, a conversation's requests all meet the fault or none does.
    with SimServer(SimConfig(faults={"tool_results_dropped": 0.5})) as server:
        sim = Faulty(server, server)
        outcomes = set()
        for n in range(12):
            opening = [
                {"role": "system", "content": "You open boxes."},
                {"role": "user", "content": f"Start with box-{n} and report the treasure."},
            ]
            chain = [*opening, *_second_step()[2:]]
            later = [*chain, *_third_step()[4:]]
            fired = {bool(_faults(sim.post(m, tools=CHAIN_TOOLS)[1])) for m in (chain, later)}
            assert len(fired) == 1, n
            outcomes |= fired
        assert outcomes == {True, False}
        # Runs of one task open alike; each sends the seed of its own world.
        seeded = {
            bool(_faults(sim.post(_second_step(), tools=CHAIN_TOOLS, seed=n)[1])) for n in range(12)
        }
        assert seeded == {True, False}


def _deltas(payloads: list[Any]) -> list[dict[str, Any]]:
    return [p["choices"][0]["delta"] for p in payloads if p["choices"]]


def _joined(deltas: list[dict[str, Any]], field: str) -> str:
    return "".join(d.get(field) or "" for d in deltas)


def stream_usage_every_chunk(sim: Faulty) -> dict[str, str]:
    payloads, headers = sim.stream(HELLO, stream_options={"include_usage": True})
    usages = [p.get("usage") for p in payloads]
    assert all(usages) and payloads[-1]["choices"] == []  # every chunk, the final one kept
    final = payloads[-1]["usage"]["completion_tokens"]
    running = [p["usage"]["completion_tokens"] for p in payloads[:-1]]
    assert running == sorted(running) and running[-1] == final > running[0]
    _, unasked = sim.stream(HELLO)  # no usage chunk to repeat: nothing changes
    assert _faults(unasked) == []
    return headers


def stream_content_with_reasoning(sim: Faulty) -> dict[str, str]:
    payloads, headers = sim.stream(HELLO)
    deltas = _deltas(payloads)
    mixed = [d for d in deltas if d.get("content") and d.get("reasoning_content")]
    assert len(mixed) == 1
    clean = _message(sim.post(HELLO, clean=True)[0])
    assert _joined(deltas, "content") == clean["content"]  # moved, not lost
    assert _joined(deltas, "reasoning_content") == clean["reasoning_content"]
    _, tool_turn = sim.stream(START, tools=CHAIN_TOOLS)  # reasoning, but no content
    assert _faults(tool_turn) == []
    return headers


def stream_split_utf8(sim: Faulty) -> dict[str, str]:
    payloads, headers = sim.stream(HELLO)
    deltas = _deltas(payloads)
    pieces = [d.get("content") or "" for d in deltas]
    cut = [i for i in range(1, len(pieces)) if pieces[i - 1][-1:] == pieces[i][:1] == "\ufffd"]
    assert len(cut) == 1
    clean = _message(sim.post(HELLO, clean=True)[0])["content"]
    # The reply's first multi-byte character, `“` (3 bytes), became one U+FFFD per half.
    assert _joined(deltas, "content") == clean.replace("“", "\ufffd\ufffd\ufffd", 1)
    payloads, ascii_only = sim.stream(START, tools=CHAIN_TOOLS)
    reasoning = _joined(_deltas(payloads), "reasoning_content")
    clean = _message(sim.post(START, clean=True, tools=CHAIN_TOOLS)[0])["reasoning_content"]
    assert clean.isascii() and _faults(ascii_only) == ["stream_split_utf8"]
    first, rest = clean.split(" ", 1)  # the em dash the model wrote after its first word
    assert reasoning == f"{first}\ufffd\ufffd\ufffd {rest}"
    return headers


def stream_single_chunk(sim: Faulty) -> dict[str, str]:
    payloads, headers = sim.stream(_second_step(), tools=CHAIN_TOOLS)
    deltas = _deltas(payloads)
    reasoning = [d["reasoning_content"] for d in deltas if d.get("reasoning_content")]
    clean = _message(sim.post(_second_step(), clean=True, tools=CHAIN_TOOLS)[0])
    assert reasoning == [clean["reasoning_content"]] and len(reasoning[0]) >= 120
    assert _tool_entries(payloads)  # the call still streams as before
    _, short = sim.stream(START, tools=CHAIN_TOOLS)  # 69 characters: no buffering to see
    assert _faults(short) == []
    return headers


LINE: list[Any] = [{"role": "user", "content": "Say exactly: alpha bravo charlie delta"}]
"""An answer turn that generates `charlie` (for the sampling faults)."""


def max_tokens_ignored(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(LINE, max_tokens=8)
    honoured, _ = sim.post(LINE, clean=True, max_tokens=8)
    assert honoured["choices"][0]["finish_reason"] == "length"
    assert honoured["usage"]["completion_tokens"] == 8
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] > 8
    return headers


def stop_ignored(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(LINE, stop=["charlie"])
    honoured, _ = sim.post(LINE, clean=True, stop=["charlie"])
    assert "charlie" not in _message(honoured)["content"]
    assert "charlie" in _message(body)["content"]
    _, never = sim.post(LINE, stop=["zulu"])
    assert _faults(never) == []  # no stop sequence generated: nothing to ignore
    return headers


def n_ignored(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(LINE, n=2)
    assert len(sim.post(LINE, clean=True, n=2)[0]["choices"]) == 2
    assert len(body["choices"]) == 1
    return headers


def logprobs_ignored(sim: Faulty) -> dict[str, str]:
    body, headers = sim.post(LINE, logprobs=True, top_logprobs=2)
    honoured, _ = sim.post(LINE, clean=True, logprobs=True, top_logprobs=2)
    assert honoured["choices"][0]["logprobs"]["content"]
    assert body["choices"][0]["logprobs"] is None
    called, unseen = sim.post(START, tools=CHAIN_TOOLS, logprobs=True, top_logprobs=2)
    # A call has no answer tokens to carry them: dropping them changed nothing to name.
    assert _message(called)["tool_calls"] and _faults(unseen) == []
    return headers


def response_format_ignored(sim: Faulty) -> dict[str, str]:
    asked = {"type": "json_object"}
    body, headers = sim.post(LINE, response_format=asked)
    honoured, _ = sim.post(LINE, clean=True, response_format=asked)
    assert isinstance(json.loads(_message(honoured)["content"]), dict)
    assert _message(body)["content"] == _message(sim.post(LINE, clean=True)[0])["content"]
    _, tool_turn = sim.post(START, tools=CHAIN_TOOLS, response_format=asked)
    assert _faults(tool_turn) == []  # calls, no answer to format
    return headers


def seed_ignored(sim: Faulty) -> dict[str, str]:
    answers, headers = [], {}
    for _ in range(3):
        body, headers = sim.post(LINE, seed=5, temperature=0)
        answers.append(json.dumps(_message(body)))
        assert _faults(headers) == ["seed_ignored"]
    # Each request is sampled anew: no two answers alike, none the seeded one.
    seeded = json.dumps(_message(sim.post(LINE, clean=True, seed=5, temperature=0)[0]))
    assert len(set(answers)) == 3 and seeded not in answers
    _, unseeded = sim.post([{"role": "user", "content": "hi"}], temperature=0.7)
    assert _faults(unseeded) == []  # nothing asked for reproducible answers
    return headers


CHECKS: dict[str, tuple[Check, str, dict[str, Any]]] = {
    "repeated_call": (repeated_call, "openai", {}),
    "repeated_call_once": (repeated_call_once, "openai", {}),
    "tool_choice_ignored": (tool_choice_ignored, "openai", {}),
    "misnamed_argument": (misnamed_argument, "openai", {}),
    "invented_id": (invented_id, "openai", {}),
    "hallucinated_tool": (hallucinated_tool, "openai", {}),
    "emptied_arguments": (emptied_arguments, "openai", {}),
    "late_emptied_arguments": (late_emptied_arguments, "openai", {}),
    "late_rewritten_ids": (late_rewritten_ids, "moonshot", {}),
    "late_empty_turn": (late_empty_turn, "openai", {}),
    "reasoning_close_tag_only": (reasoning_close_tag_only, "openai", {}),
    "harmony_in_content": (harmony_in_content, "openai", {}),
    "harmony_stripped": (harmony_stripped, "openai", {}),
    "finish_length_hidden": (finish_length_hidden, "openai", {}),
    "stream_id_repeated": (stream_id_repeated, "openai", {}),
    "stream_id_changed": (stream_id_changed, "openai", {}),
    "stream_arguments_object": (stream_arguments_object, "openai", {}),
    "stream_index_collision": (stream_index_collision, "openai", {}),
    "stream_finish_twice": (stream_finish_twice, "openai", {}),
    "stream_usage_every_chunk": (stream_usage_every_chunk, "openai", {}),
    "stream_content_with_reasoning": (stream_content_with_reasoning, "openai", {}),
    "stream_split_utf8": (stream_split_utf8, "openai", {}),
    "stream_single_chunk": (stream_single_chunk, "openai", {}),
    "unauthorized_401": (unauthorized_401, "openai", {}),
    "payment_required_402": (payment_required_402, "openai", {}),
    "model_not_found_404": (model_not_found_404, "openai", {}),
    "bad_request_400": (bad_request_400, "openai", {}),
    "template_error_400": (template_error_400, "openai", {}),
    "argument_type_error_500": (argument_type_error_500, "openai", {}),
    "template_error_500": (template_error_500, "openai", {}),
    "context_overflow_400": (context_overflow_400, "openai", {}),
    "host_context_overflow_400": (host_context_overflow_400, "openai", {}),
    "invalid_response_200": (invalid_response_200, "openai", {}),
    "stream_broken_chunk": (stream_broken_chunk, "openai", {}),
    "stream_truncated": (stream_truncated, "openai", {}),
    "connection_reset": (connection_reset, "openai", {}),
    "endless_response": (endless_response, "openai", {}),
    "empty_response": (empty_response, "openai", {}),
    "usage_omitted": (usage_omitted, "openai", {}),
    "non_json_numbers": (non_json_numbers, "openai", {}),
    "deeply_nested_json": (deeply_nested_json, "openai", {}),
    "auth_echoed": (auth_echoed, "openai", {}),
    "auth_echoed_in_error": (auth_echoed_in_error, "openai", {}),
    "leaked_tokens_content": (leaked_tokens_content, "moonshot", {}),
    "leaked_tokens_reasoning": (leaked_tokens_reasoning, "moonshot", {}),
    "foreign_call_tags": (foreign_call_tags, "moonshot", {}),
    "tool_call_as_text": (tool_call_as_text, "openai", {}),
    "dropped_call": (dropped_call, "openai", {}),
    "invalid_json_arguments": (invalid_json_arguments, "openai", {}),
    "wrong_type_arguments": (wrong_type_arguments, "openai", {}),
    "tag_in_name": (tag_in_name, "openai", {}),
    "tag_in_key": (tag_in_key, "zai", {}),
    "object_arguments": (object_arguments, "openai", {}),
    "rewritten_ids": (rewritten_ids, "openai", {}),
    "duplicated_ids": (duplicated_ids, "openai", {}),
    "missing_ids": (missing_ids, "openai", {}),
    "finish_stop_with_calls": (finish_stop_with_calls, "openai", {}),
    "finish_tool_calls_without_calls": (finish_tool_calls_without_calls, "openai", {}),
    "finish_length_with_calls": (finish_length_with_calls, "openai", {}),
    "stream_index_missing": (stream_index_missing, "openai", {}),
    "stream_fields_repeated": (stream_fields_repeated, "openai", {}),
    "stream_arguments_cumulative": (stream_arguments_cumulative, "openai", {}),
    "stream_index_from_one": (stream_index_from_one, "openai", {}),
    "stream_index_split": (stream_index_split, "openai", {}),
    "reasoning_required_400": (reasoning_required_400, "openai", {}),
    "rate_limit_429": (rate_limit_429, "openai", {}),
    "server_error_5xx": (server_error_5xx, "openai", {}),
    "timeout": (timeout, "openai", {"timeout_s": 0.5}),
    "reasoning_swallows_answer": (reasoning_swallows_answer, "openai", {}),
    "reasoning_in_content": (reasoning_in_content, "openai", {}),
    "reasoning_tokens_missing": (reasoning_tokens_missing, "openai", {}),
    "reasoning_tokens_outside_completion": (reasoning_tokens_outside_completion, "openai", {}),
    "reasoning_dropped_from_history": (reasoning_dropped_from_history, "openai", {}),
    "reasoning_kept_last_only": (reasoning_kept_last_only, "openai", {}),
    "tool_results_dropped": (tool_results_dropped, "openai", {}),
    "tool_results_truncated": (tool_results_truncated, "openai", {}),
    "history_html_escaped": (history_html_escaped, "openai", {}),
    "system_prompt_injected": (system_prompt_injected, "openai", {}),
    "arguments_reencoded": (arguments_reencoded, "openai", {}),
    "max_tokens_ignored": (max_tokens_ignored, "openai", {}),
    "stop_ignored": (stop_ignored, "openai", {}),
    "n_ignored": (n_ignored, "openai", {}),
    "logprobs_ignored": (logprobs_ignored, "openai", {}),
    "response_format_ignored": (response_format_ignored, "openai", {}),
    "seed_ignored": (seed_ignored, "openai", {}),
}


def test_every_fault_has_a_check() -> None:
    assert set(CHECKS) == set(FAULTS)


@pytest.mark.parametrize("name", list(FAULTS))
def test_fault_at_rate_one_shows_its_effect(clean: SimServer, name: str) -> None:
    check, dialect, config = CHECKS[name]
    sim = _faulty(clean, name, dialect, **config)
    try:
        headers = check(sim)
    finally:
        sim.server.stop()
    assert headers["x-sim-dialect"] == dialect
    assert _faults(headers) == [name]


def test_a_stream_too_short_to_buffer_goes_out_unchanged(clean: SimServer) -> None:
    """`stream_single_chunk` leaves a short answer alone, and alone means untouched: the
    pieces it would have merged are not glued onto the first one as well."""

    def text(payloads: list[Any]) -> str:
        deltas = [c["choices"][0]["delta"] for c in payloads if c["choices"]]
        return "".join(d.get("content") or "" for d in deltas)

    with SimServer(SimConfig(faults={"stream_single_chunk": 1.0})) as server:
        payloads, headers = Faulty(server, clean).stream(HELLO)
    assert _faults(headers) == []
    assert text(payloads) == text(Faulty(clean, clean).stream(HELLO)[0])


def test_faults_that_do_not_apply_are_not_reported(clean: SimServer) -> None:
    tool_only = ["dropped_call", "missing_ids", "finish_stop_with_calls", "stream_index_missing"]
    with SimServer(SimConfig(faults=dict.fromkeys(tool_only, 1.0))) as server:
        sim = Faulty(server, clean)
        body, headers = sim.post(HELLO)  # an answer turn: no tool-call fault applies
        assert _faults(headers) == []
        assert _message(body)["content"] == _message(sim.post(HELLO, clean=True)[0])["content"]
        _, headers = sim.stream(START, tools=CHAIN_TOOLS)
        assert _faults(headers) == ["dropped_call"]  # it left nothing for the others to act on


def test_dropped_logprobs_are_named_where_the_content_that_goes_out_lacks_them(
    clean: SimServer,
) -> None:
    """Whether ignoring `logprobs` shows is judged on the reply as it goes out, after the
    reply faults: a call written as text is content without log probabilities (bench_findings
    counted the finding there as a false positive: sglang/chain_short/plain/1), and an answer
    moved into the reasoning leaves no content to carry them."""
    faults = {"logprobs_ignored": 1.0, "tool_call_as_text": 1.0}
    with SimServer(SimConfig(faults=faults)) as server:
        body, headers = Faulty(server, clean).post(
            START, tools=CHAIN_TOOLS, logprobs=True, top_logprobs=2
        )
    assert _message(body)["content"] and not _message(body).get("tool_calls")
    assert body["choices"][0]["logprobs"] is None
    assert _faults(headers) == ["logprobs_ignored", "tool_call_as_text"]
    faults = {"logprobs_ignored": 1.0, "reasoning_swallows_answer": 1.0}
    with SimServer(SimConfig(faults=faults)) as server:
        body, headers = Faulty(server, clean).post(LINE, logprobs=True, top_logprobs=2)
    assert not _message(body)["content"] and body["choices"][0]["logprobs"] is None
    assert _faults(headers) == ["reasoning_swallows_answer"]


def test_cumulative_arguments_need_a_split_call(clean: SimServer) -> None:
    """Arguments that arrive in one piece read the same cumulative or not: the response must
    not claim a fault its client cannot see."""
    config = SimConfig(faults={"stream_arguments_cumulative": 1.0}, chunk_chars=4096)
    with SimServer(config) as server:
        payloads, headers = Faulty(server, clean).stream(START, tools=CHAIN_TOOLS)
    pieces = [e["function"].get("arguments") for chunk in _tool_entries(payloads) for e in chunk]
    assert [p for p in pieces if p] == ['{"box_id": "box-1a2b3c"}']
    assert _faults(headers) == []


@pytest.mark.parametrize("stream", [False, True])
def test_wire_faults_stack(stream: bool) -> None:
    """Every wire fault on one response: each acts on what the ones before it left (a broken
    event is no chunk to spoil, a body never sent holds no usage) and the simulator answers
    instead of failing with a 500 of its own."""
    wire = [n for n, f in FAULTS.items() if isinstance(f, WireFault) and n != "connection_reset"]
    body = {"model": "m", "messages": START, "tools": CHAIN_TOOLS, "stream": stream}
    with (
        SimServer(SimConfig(faults=dict.fromkeys(wire, 1.0))) as server,
        httpx2.stream("POST", f"{server.base_url}/chat/completions", json=body) as response,
    ):
        # endless_response never ends the body: the status and headers are the verdict.
        assert response.status_code == 200
        faults = _faults(dict(response.headers))
    assert "endless_response" in faults and set(faults) <= set(wire)


def test_rate_zero_never_fires(clean: SimServer) -> None:
    with SimServer(SimConfig(faults=dict.fromkeys(FAULTS, 0.0))) as server:
        sim = Faulty(server, clean)
        for n in range(40):
            _, headers = sim.post([{"role": "user", "content": f"hello {n}"}])
            assert _faults(headers) == []


def _share(server: SimServer, requests: int, prefix: str = "hello") -> float:
    sim = Faulty(server, server)
    fired = 0
    for n in range(requests):
        body, headers = sim.post([{"role": "user", "content": f"{prefix} {n}"}])
        assert (body["usage"]["completion_tokens_details"] is None) is bool(_faults(headers))
        fired += bool(_faults(headers))
    return fired / requests


def test_rate_one_half_fires_on_about_half_the_requests() -> None:
    with SimServer(SimConfig(faults={"reasoning_tokens_missing": 0.5})) as server:
        assert 0.35 <= _share(server, 200) <= 0.65


def test_fault_selection_is_deterministic(clean: SimServer) -> None:
    config = SimConfig(seed=3, faults={"reasoning_tokens_missing": 0.5, "missing_ids": 0.5})
    with SimServer(config) as first, SimServer(config) as second:
        outcomes = []
        for server in (first, second, first):
            sim = Faulty(server, clean)
            outcomes.append(
                [
                    _faults(sim.post([{"role": "user", "content": f"q {n}"}], tools=CHAIN_TOOLS)[1])
                    for n in range(20)
                ]
            )
        assert outcomes[0] == outcomes[1] == outcomes[2]
        assert any(outcomes[0]) and not all(outcomes[0])
    with SimServer(config.model_copy(update={"seed": 4})) as other:
        sim = Faulty(other, clean)
        reseeded = [
            _faults(sim.post([{"role": "user", "content": f"q {n}"}], tools=CHAIN_TOOLS)[1])
            for n in range(20)
        ]
        assert reseeded != outcomes[0]


FAMILY_CALL_TOKENS = {
    "kimi": "<|tool_calls_section_begin|><|tool_call_begin|>functions.open_box:0",
    "deepseek": "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>open_box<｜tool▁sep｜>",
    "minimax": '<minimax:tool_call>\n<invoke name="open_box">\n<parameter name="box_id">',
    "glm": "<tool_call>open_box\n<arg_key>box_id</arg_key>",
    "qwen": '<tool_call>\n{"name": "open_box", "arguments": {"box_id"',
    "chatml": '<tool_call>\n{"name": "open_box", "arguments": {"box_id"',
    "gpt-oss": "<|start|>assistant to=functions.open_box<|channel|>commentary json<|message|>",
}


@pytest.mark.parametrize(
    "dialect", ["moonshot", "deepseek", "minimax", "zai", "vllm", "openai", "harmony"]
)
def test_leaked_calls_use_the_family_tokens(clean: SimServer, dialect: str) -> None:
    sim = _faulty(clean, "leaked_tokens_content", dialect)
    try:
        body, headers = sim.post(START, tools=CHAIN_TOOLS)
    finally:
        sim.server.stop()
    assert FAMILY_CALL_TOKENS[DIALECTS[dialect].family] in _message(body)["content"]
    assert _faults(headers) == ["leaked_tokens_content"]
