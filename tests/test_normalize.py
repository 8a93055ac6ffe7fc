"""Reading reasoning, content, calls and usage from every shape hosts send."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from traces.normalize import (
    estimate_tokens,
    normalize_usage,
    read_message,
    read_reasoning,
    read_tool_calls,
)
from traces.replay import ReplayPolicy, replay_message

from conftest import EXTERNAL, reference_missing

CASES = json.loads((Path(__file__).parent / "fixtures" / "reading_cases.json").read_text())


@pytest.mark.parametrize("case", CASES["reasoning"], ids=lambda c: c["source"][:40])
def test_reasoning_is_read_with_its_source(case: dict[str, Any]) -> None:
    reasoning, source, content = read_reasoning(case["message"])
    assert (reasoning, source) == (case["reasoning"], case["from"])
    assert (content or None) == case["content"]


@pytest.mark.parametrize("case", CASES["usage"], ids=lambda c: c["source"][:40])
def test_usage_is_normalized_from_every_shape(case: dict[str, Any]) -> None:
    usage = normalize_usage(case["usage"], case.get("reasoning"))
    for field, value in case["expected"].items():
        assert getattr(usage, field) == value, field


def test_tool_calls_keep_raw_and_parsed_arguments() -> None:
    message = {
        "tool_calls": [
            {
                "id": "functions.get_weather:0",
                "function": {"name": "get_weather", "arguments": '{"city": "Beijing"}'},
            },
            {"id": "call_1", "function": {"name": "f", "arguments": {"a": 1}}},
            {"id": "x", "function": {"name": "g", "arguments": '{"city"'}},
            {"function": {"name": "h"}},
        ]
    }
    calls = read_tool_calls(message)
    assert [c.id_format for c in calls] == ["kimi", "openai", "other", "missing"]
    assert [c.arguments_type for c in calls] == ["string", "object", "string", "missing"]
    assert [c.json_valid for c in calls] == [True, True, False, False]
    assert (
        calls[0].arguments == {"city": "Beijing"}
        and calls[0].arguments_raw == '{"city": "Beijing"}'
    )
    assert calls[1].arguments_raw == '{"a": 1}'
    assert calls[2].arguments is None and calls[2].arguments_raw == '{"city"'


def test_replay_places_reasoning_where_asked() -> None:
    message = {
        "content": None,
        "reasoning_content": "why",
        "tool_calls": [
            {"id": "call_9", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
        ],
    }
    reading = read_message(message)
    for mode, field in (("reasoning_content", "reasoning_content"), ("reasoning", "reasoning")):
        out, ids = replay_message(message, reading, ReplayPolicy(reasoning=mode))  # type: ignore[arg-type]
        assert out[field] == "why" and ids == ["call_9"]
    out, _ = replay_message(message, reading, ReplayPolicy(reasoning="think_tag"))
    assert out["content"] == "<think>why</think>" and "reasoning_content" not in out
    out, _ = replay_message(message, reading, ReplayPolicy(reasoning="drop"))
    assert set(out) == {"role", "content", "tool_calls"}
    out, ids = replay_message(message, reading, ReplayPolicy(ids="kimi", arguments="object"), 7)
    assert ids == ["functions.f:7"] and out["tool_calls"][0]["id"] == "functions.f:7"
    assert out["tool_calls"][0]["function"]["arguments"] == {"a": 1}


def test_think_content_goes_back_verbatim() -> None:
    message = {"content": "<think>\nplan\n</think>\n\nanswer"}
    out, _ = replay_message(message, read_message(message))
    assert out["content"] == message["content"]


def test_every_harmony_and_think_fixture_of_the_reference_reads() -> None:
    """Against the reference parser fixtures themselves, where they are present."""
    path = EXTERNAL / "dialects" / "raw_outputs" / "parser_fixtures.jsonl"
    if not path.is_file():
        reference_missing(path)
    checked = 0
    for line in path.read_text().splitlines():
        case = json.loads(line)
        raw, expected = case["raw_text"], case["expected"]
        if not isinstance(raw, str) or "reasoning" not in expected or "tool_calls" in expected:
            continue
        reasoning, _, _ = read_reasoning({"content": raw})
        assert reasoning == expected["reasoning"], case["id"]
        checked += 1
    assert checked >= 1


def test_estimate_tokens_counts_words_and_punctuation_as_the_pattern_does() -> None:
    # The ASCII path counts bytes by class instead of matching the pattern: the same count
    # on every kind of text (random ASCII, including controls and every punctuation mark).
    pattern = re.compile(r"\w+|[^\w\s]")
    rng = random.Random(7)
    alphabet = [chr(c) for c in range(128)]
    texts = ["", " ", "a", "_", "é", "données, 数据!", '{"path": "a_b.txt", "n": 12}']
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))) for _ in range(3000)]
    for text in texts:
        assert estimate_tokens(text) == len(pattern.findall(text)), repr(text)
