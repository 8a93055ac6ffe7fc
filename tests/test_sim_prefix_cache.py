"""The simulator's prefix cache reports cached prompt tokens the way real hosts do: a chain
request reuses the whole previous prompt, in the usage shape of the dialect's host, and the
cache stays bounded."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from traces.normalize import normalize_usage
from traces.sim.config import SimConfig
from traces.sim.prefix_cache import PrefixCache
from traces.sim.server import SimServer
from traces.sim.templates import template_for
from traces.sim.tokenizer import count_tokens

TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "open_box",
            "parameters": {
                "type": "object",
                "properties": {"box_id": {"type": "string"}},
                "required": ["box_id"],
            },
        },
    }
]


def _start(user: str = "Start with box-1a2b3c and report the treasure.") -> list[Any]:
    return [{"role": "system", "content": "You open boxes."}, {"role": "user", "content": user}]


@pytest.fixture
def openai_sim() -> Iterator[SimServer]:
    """A fresh host: nothing cached yet."""
    with SimServer(SimConfig(dialect="openai")) as server:
        yield server


def _post(server: SimServer, messages: list[Any], **extra: Any) -> dict[str, Any]:
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="m", messages=messages, tools=TOOLS, **extra
    )
    body: dict[str, Any] = raw.http_response.json()
    return body


def _next(messages: list[Any], body: dict[str, Any]) -> list[Any]:
    """The chain's next request: the assistant turn sent back with reasoning, and its result."""
    message = body["choices"][0]["message"]
    call = message["tool_calls"][0]
    turn = {
        "role": "assistant",
        "content": message["content"],
        "reasoning_content": message["reasoning_content"],
        "tool_calls": [call],
    }
    result = {"role": "tool", "tool_call_id": call["id"], "content": '{"opened": 1}'}
    return [*messages, turn, result]


def _cached(body: dict[str, Any]) -> int:
    cached: int = body["usage"]["prompt_tokens_details"]["cached_tokens"]
    return cached


GENERATION = count_tokens(template_for("chatml").generation_prompt("tool"))
"""Tokens that open the turn to generate: hosts compute them anew on every request."""


def test_a_chain_request_reuses_the_whole_previous_prompt(openai_sim: SimServer) -> None:
    first_messages = _start()
    first = _post(openai_sim, first_messages)
    assert _cached(first) == 0  # a cold cache
    second = _post(openai_sim, _next(first_messages, first))
    assert _cached(second) == first["usage"]["prompt_tokens"] - GENERATION
    # Asking the same again: everything but the generation prompt comes from the cache.
    again = _post(openai_sim, _next(first_messages, first))
    assert _cached(again) == again["usage"]["prompt_tokens"] - GENERATION


def test_another_conversation_shares_only_its_common_prefix(openai_sim: SimServer) -> None:
    first = _post(openai_sim, _start())
    other = _post(openai_sim, _start("Start with box-999999 instead."))
    # The system turn with the tool declarations is shared; the user turn is not.
    assert 0 < _cached(other) < first["usage"]["prompt_tokens"] - GENERATION


def test_streamed_usage_reports_the_cache_too(openai_sim: SimServer) -> None:
    first = _post(openai_sim, _start())
    client = openai.OpenAI(base_url=openai_sim.base_url, api_key="sk-test", max_retries=0)
    stream = client.chat.completions.create(
        model="m",
        messages=_next(_start(), first),
        tools=TOOLS,
        stream=True,
        stream_options={"include_usage": True},
    )
    usage = [chunk.usage for chunk in stream if chunk.usage is not None][-1]
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == first["usage"]["prompt_tokens"] - GENERATION


def test_deepseek_reports_hits_and_misses_at_the_top_of_usage() -> None:
    with SimServer(SimConfig(dialect="deepseek")) as server:
        first = _post(server, _start())
        second = _post(server, _next(_start(), first))
    usage = second["usage"]
    assert "prompt_tokens_details" not in usage
    hit, miss = usage["prompt_cache_hit_tokens"], usage["prompt_cache_miss_tokens"]
    assert hit > 0 and hit + miss == usage["prompt_tokens"]
    assert normalize_usage(usage, None).cached_tokens == hit  # the recorder reads it


def test_the_cache_is_a_bounded_lru() -> None:
    cache = PrefixCache(capacity=6)
    old = ["sys", "old user", "gen"]
    cache.serve(old, [10, 5, 2])
    for n in range(5):
        cache.serve(["sys", f"user {n}", "gen"], [10, 5, 2])
        cache.serve(old, [10, 5, 2])  # used again: stays while the others come and go
    assert len(cache) == 6
    assert cache.serve(old, [10, 5, 2]) == 15
    assert cache.serve(["sys", "user 0", "gen"], [10, 5, 2]) == 10  # evicted, but "sys" hit
    for n in range(10):
        cache.serve([f"other {n}", "x", "gen"], [3, 3, 2])
    assert cache.serve(old, [10, 5, 2]) == 0  # forgotten at last
