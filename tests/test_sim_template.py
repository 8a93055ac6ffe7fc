"""The simulator's generic ChatML template, tokenizer and pattern generator (the family
templates are covered in test_sim_dialects.py)."""

from __future__ import annotations

import random
import re
from typing import Any, Literal

import pytest

from traces.sim.regex_gen import generate
from traces.sim.templates import template_for
from traces.sim.templates.history import split_think
from traces.sim.tokenizer import count_tokens, count_tokens_cached
from traces.wire_forms import ReasoningLocation

from conftest import python_calls

ReasoningField = Literal["reasoning_content", "reasoning", "think"]
CHATML = template_for("chatml")
_READS: dict[ReasoningField, tuple[ReasoningLocation, ...]] = {
    "reasoning_content": ("reasoning_content",),
    "reasoning": ("reasoning",),
    "think": ("think_tag",),
}


def render_segments(
    messages: list[dict[str, Any]], tools: list[Any], field: ReasoningField
) -> list[str]:
    return CHATML.render(messages, tools, _READS[field]).segments


def render_prompt(messages: list[dict[str, Any]], tools: list[Any], field: ReasoningField) -> str:
    return "".join(render_segments(messages, tools, field))


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "open_box",
            "parameters": {"type": "object", "properties": {"box_id": {"type": "string"}}},
        },
    }
]


def _assistant(reasoning: str, field: ReasoningField, box: str) -> dict[str, Any]:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "open_box", "arguments": f'{{"box_id": "{box}"}}'},
    }
    if field == "think":
        return {
            "role": "assistant",
            "content": f"<think>\n{reasoning}\n</think>\n\n",
            "tool_calls": [call],
        }
    return {"role": "assistant", "content": None, field: reasoning, "tool_calls": [call]}


def _conversation(field: ReasoningField) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "You are an agent."},
        {"role": "user", "content": "First task."},
        _assistant("OLD-REASONING before the last user turn", field, "box-000001"),
        {"role": "tool", "tool_call_id": "call_1", "content": '{"box_id": "box-000001"}'},
        {"role": "assistant", "content": "Done with the first task."},
        {"role": "user", "content": "Second task: start at box-abcdef."},
        _assistant("NEW-REASONING inside the current chain", field, "box-abcdef"),
        {"role": "tool", "tool_call_id": "call_1", "content": '{"box_id": "box-abcdef"}'},
    ]


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning", "think"])
def test_only_reasoning_after_last_user_is_rendered(field: ReasoningField) -> None:
    prompt = render_prompt(_conversation(field), TOOLS, field)
    assert "NEW-REASONING" in prompt
    assert "OLD-REASONING" not in prompt
    assert prompt.count("<think>") == 1
    assert prompt.startswith("<|im_start|>system\nYou are an agent.")
    assert '"name": "open_box"' in prompt.split("<|im_end|>")[0]  # tools live in the system turn
    assert '<tool_call>\n{"name": "open_box", "arguments": {"box_id": "box-abcdef"}}' in prompt
    assert "<|im_start|>tool\n" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")


def test_reasoning_in_a_field_the_dialect_does_not_read_is_ignored() -> None:
    messages = _conversation("reasoning")  # sent as `reasoning`
    assert "NEW-REASONING" not in render_prompt(messages, TOOLS, "reasoning_content")
    assert "NEW-REASONING" in render_prompt(messages, TOOLS, "reasoning")


def test_object_arguments_are_rendered_as_json() -> None:
    messages = _conversation("reasoning_content")
    messages[6]["tool_calls"][0]["function"]["arguments"] = {"box_id": "box-abcdef"}
    assert '"arguments": {"box_id": "box-abcdef"}' in render_prompt(
        messages, TOOLS, "reasoning_content"
    )


def test_split_think() -> None:
    assert split_think("<think>\nplan\n</think>\n\nanswer") == ("plan", "answer")
    assert split_think("plain answer") == (None, "plain answer")
    assert split_think("<think>unterminated") == ("unterminated", "")


def test_segment_counts_add_up_to_the_whole_prompt() -> None:
    fields: list[ReasoningField] = ["reasoning_content", "reasoning", "think"]
    for field in fields:
        segments = render_segments(_conversation(field), TOOLS, field)
        whole = count_tokens("".join(segments))
        assert sum(count_tokens_cached(s) for s in segments) == whole
        assert sum(count_tokens(s) for s in segments) == whole


def test_tokenizer_keeps_special_tokens_whole() -> None:
    assert count_tokens("<|im_start|>") == 1
    assert count_tokens("<think></think>") == 2
    assert count_tokens("Hello, world 12345!") == 6  # Hello , world 123 45 !
    assert count_tokens("") == 0


def test_rendering_is_linear_in_the_conversation() -> None:
    def conversation(steps: int) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = [{"role": "user", "content": "go"}]
        for step in range(steps):
            messages.append(_assistant(f"step {step} reasoning", "reasoning_content", "box-aaaaaa"))
            messages.append({"role": "tool", "tool_call_id": "call_1", "content": f"result {step}"})
        return messages

    def cost(steps: int) -> int:
        messages = conversation(steps)
        return python_calls(lambda: render_prompt(messages, TOOLS, "reasoning_content"))

    # 8x the conversation must cost about 8x, nowhere near 64x (quadratic).
    assert cost(800) < 12 * cost(100)


@pytest.mark.parametrize(
    "pattern",
    [
        r"^box-[0-9a-f]{6}$",
        r"^[A-Z]{2}-\d{3,5}$",
        r"^(foo|bar)_[a-z]+$",
        r"\.md$",
        r"^[^/\s][\w./-]*$",
        r"^v\d+\.\d+(\.\d+)?$",
        r"^(?:[a-z0-9]+)(?:-[a-z0-9]+)*$",
        r"^\w+@example\.com$",
    ],
)
def test_pattern_generator(pattern: str) -> None:
    for seed in range(20):
        text = generate(pattern, random.Random(seed))
        assert text is not None
        assert re.search(pattern, text), (pattern, text)


def test_pattern_generator_declines_what_it_cannot_do() -> None:
    assert generate(r"^(?=x)y$", random.Random(0)) is None
