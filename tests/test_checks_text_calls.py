"""Calls written as text: every common shape is recognised with its evidence and confidence,
the family's own plain-JSON syntax is blamed on the host, and text that only looks like a call
(a JSON answer, an example inside an explanation, a name no tool has) is left alone."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from analyzer.checks.calls import tool_call_as_text
from analyzer.checks.records import Finding, Run, Step
from analyzer.checks.registry import run_checks
from analyzer.checks.text_calls import calls_in_text

from check_builders import TOOLS, answer_step, clean_run, kinds

SEARCH = {
    "type": "function",
    "function": {
        "name": "search",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
            "required": ["query"],
        },
    },
}
PARAMS = {"tools": [*TOOLS["tools"], SEARCH]}
CALL = '{"name": "open_box", "arguments": {"box_id": "box-1"}}'


def found(content: str, model: str = "sim-reasoner-1", **params: Any) -> list[Finding]:
    """tool_call_as_text on a final step with `content`, in a run of `model`."""
    step = answer_step(4, content=content, request_params={**PARAMS, **params})
    run = replace(clean_run(), model=model)
    return list(tool_call_as_text(step, run))


SHAPES: dict[str, str] = {
    "name+arguments": CALL,
    "name+parameters": '{"name": "open_box", "parameters": {"box_id": "box-1"}}',
    "arguments as a string": '{"name": "open_box", "arguments": "{\\"box_id\\": \\"box-1\\"}"}',
    "flattened": '{"name": "open_box", "box_id": "box-1"}',
    "function object": '{"function": {"name": "open_box", "arguments": {"box_id": "box-1"}}}',
    "typed function": (
        '{"type": "function", "function": {"name": "open_box", "parameters": {"box_id": "box-1"}}}'
    ),
    "typed flat": '{"type": "function", "name": "open_box", "parameters": {"box_id": "box-1"}}',
    "fenced": f"```json\n{CALL}\n```",
    "fenced without language": f"```\n{CALL}\n```",
    "list": f'[{CALL}, {{"name": "search", "arguments": {{"query": "boxes"}}}}]',
    "lines": f'{CALL}\n{{"name": "search", "arguments": {{"query": "boxes"}}}}',
    "fenced blocks": f'```json\n{CALL}\n```\n```json\n{{"name": "search", "query": "q"}}\n```',
    "tool_calls object": '{"tool_calls": [{"type": "function", "function": '
    '{"name": "open_box", "arguments": "{\\"box_id\\": \\"box-1\\"}"}}]}',
    "one brace short": '{"type": "function", "function": {"name": "open_box", "parameters": '
    '{"box_id": "box-1"}}',
    "after a sentence": f"I'll open the first box now.\n{CALL}",
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_common_shape_is_a_call_as_text(shape: str) -> None:
    [finding] = found(SHAPES[shape])
    assert (finding.kind, finding.layer, finding.severity) == (
        "tool_call_as_text",
        "model",
        "error",
    )
    assert finding.evidence["tools"][0] == "open_box"
    assert finding.evidence["calls"][0]["schema_valid"] is True
    assert json.loads(finding.evidence["calls"][0]["arguments"]) == {"box_id": "box-1"}
    assert finding.confidence is not None and 0.5 <= finding.confidence <= 0.95
    assert finding.evidence["excerpt"] in SHAPES[shape]


def test_confidence_follows_the_evidence() -> None:
    def confidence(content: str) -> float:
        [finding] = found(content)
        assert finding.confidence is not None
        return finding.confidence

    whole = confidence(CALL)
    assert whole > confidence(SHAPES["flattened"])  # keys that merely match parameters
    assert whole > confidence(SHAPES["one brace short"])  # braces supplied
    assert whole > confidence(SHAPES["after a sentence"])  # prose before the call
    bad = '{"name": "open_box", "arguments": {"box_id": 7}}'
    [finding] = found(bad)
    assert finding.evidence["calls"][0]["schema_valid"] is False
    assert confidence(bad) < whole


@pytest.mark.parametrize(
    ("model", "content", "family"),
    [
        # Llama 3.x/4: bare `{"name", "parameters"}` is its own syntax (llama3_json parses it).
        ("meta-llama/Llama-3.1-8B-Instruct", SHAPES["name+parameters"], "llama"),
        (
            "llama3.2:3b",
            '<|python_tag|>{"name": "open_box", "parameters": {"box_id": "b"}}',
            "llama",
        ),
        ("Llama-4-Scout-17B-16E-Instruct", CALL, "llama"),
        # Mistral's list with its token still in front: the parser's start was right there.
        ("mistralai/Mistral-Small-3.2-24B", f"[TOOL_CALLS][{CALL}]", "mistral"),
    ],
)
def test_the_familys_own_syntax_is_the_hosts(model: str, content: str, family: str) -> None:
    [finding] = found(content, model=model)
    assert finding.layer == "provider"
    assert finding.evidence["own_syntax"] is True and finding.evidence["family"] == family


@pytest.mark.parametrize(
    ("model", "content"),
    [
        ("llama3.2:3b", SHAPES["fenced"]),  # the fence is the model's, no parser expects it
        ("Llama-3.1-8B", SHAPES["typed function"]),  # not Llama's shape
        ("Llama-3.1-8B", f"I'll call it.\n{CALL}"),  # prose before it
        ("mistral-large-latest", f"[{CALL}]"),  # the list without the token the parser needs
        ("mistral-large-latest", f"<|python_tag|>{CALL}"),  # another family's token
        ("deepseek-ai/DeepSeek-R1-Distill-Llama-8B", CALL),  # a distill speaks DeepSeek
        ("Qwen/Qwen3-8B", CALL),  # Qwen's syntax wraps it in <tool_call>
        ("sim-reasoner-1", CALL),  # no family known
    ],
)
def test_other_text_calls_are_the_models(model: str, content: str) -> None:
    [finding] = found(content, model=model)
    assert finding.layer == "model" and finding.evidence["own_syntax"] is False


ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "arguments": {"type": "object"}},
    "required": ["name", "arguments"],
}
"""An answer schema whose answers are shaped like calls: a router that names the next step."""

NOT_CALLS: dict[str, tuple[str, dict[str, Any]]] = {
    "a JSON answer": ('{"treasure": "rusty-falcon-886", "boxes": 5}', {}),
    "a name no tool has": ('{"name": "open_door", "arguments": {"door": "d1"}}', {}),
    "a person called like a tool": ('{"name": "search"}', {}),
    "keys that are not the tool's": ('{"name": "search", "results": ["a", "b"]}', {}),
    "required keys missing": ('{"name": "search", "limit": 3}', {}),
    "unknown keys beside the arguments": (
        '{"name": "open_box", "arguments": {"box_id": "b"}, "reason": "to look"}',
        {},
    ),
    "a list mixing calls and data": (f'[{CALL}, {{"box": "b"}}]', {}),
    "an example inside an explanation": (
        f"A call looks like {CALL} and the host turns it into tool_calls.",
        {},
    ),
    "a code block about JSON, then prose": (
        f"Here is the format:\n```json\n{CALL}\n```\nUse it when you need a box.",
        {},
    ),
    "an unsure call after prose": (
        'Maybe something like {"name": "open_box", "box_id": "b"}',
        {},
    ),
    "JSON the client asked for, not a call beyond doubt": (
        '{"name": "open_box", "arguments": {"box_id": 7}}',
        {"response_format": {"type": "json_object"}},
    ),
    "JSON the client asked for, a list of records": (
        '[{"name": "open_box", "box_id": "box-1"}, {"name": "open_box", "box_id": 2}]',
        {"response_format": {"type": "json_object"}},
    ),
    "a schema-bound answer in the shape asked for": (
        CALL,
        {"response_format": {"type": "json_schema", "json_schema": {"schema": ANSWER_SCHEMA}}},
    ),
    "calls forbidden by tool_choice": (CALL, {"tool_choice": "none"}),
    "Hermes tags: the leak check's": (f"<tool_call>\n{CALL}\n</tool_call>", {}),
    "broken JSON": ('{"name": "open_box", "arguments": {"box_id": ', {}),
    "prose": ("The treasure is rusty-falcon-886.", {}),
}


@pytest.mark.parametrize("case", sorted(NOT_CALLS))
def test_text_that_only_looks_like_a_call_is_not_one(case: str) -> None:
    content, params = NOT_CALLS[case]
    assert found(content, **params) == []


JSON_ASKED: dict[str, tuple[str, dict[str, Any]]] = {
    # bench_findings (--seeds 12) missed these two: a run asking for JSON answers with tools
    # declared, the model writing its call as JSON (minimax-split/chain/stream/0 step 4,
    # openrouter/research/plain/0 step 0).
    "typed function, arguments as a string": (
        '{"type": "function", "function": {"name": "open_box", '
        '"arguments": "{\\"box_id\\": \\"box-1\\"}"}}',
        {"type": "json_object"},
    ),
    "Llama's parameters": (SHAPES["name+parameters"], {"type": "json_object"}),
    "flattened": (SHAPES["flattened"], {"type": "json_object"}),
    "a list": (SHAPES["list"], {"type": "json_object"}),
    "no schema to hold it to": (CALL, {"type": "json_schema"}),
    "not the schema's shape": (
        CALL,
        {
            "type": "json_schema",
            "json_schema": {"schema": {"type": "object", "required": ["treasure"]}},
        },
    ),
}


@pytest.mark.parametrize("case", sorted(JSON_ASKED))
def test_a_call_beyond_doubt_is_a_call_even_where_json_was_asked_for(case: str) -> None:
    """A host that holds the whole turn to JSON leaves the model no way to call but to write
    the call as JSON: JSON asked for does not make a call to a declared tool, with the
    arguments its schema asks for, an answer. Less sure than without the format."""
    content, response_format = JSON_ASKED[case]
    [finding] = found(content, response_format=response_format)
    [plain] = found(content)
    assert finding.layer == "model" and finding.evidence["tools"][0] == "open_box"
    assert finding.evidence["response_format"] == response_format["type"]
    assert plain.evidence["response_format"] is None
    assert finding.confidence is not None and plain.confidence is not None
    assert finding.confidence < plain.confidence


def test_hermes_tags_are_reported_once_as_a_leak() -> None:
    step = answer_step(4, content=f"<tool_call>\n{CALL}\n</tool_call>")
    run = clean_run(model="Qwen/Qwen3-8B")
    findings = run_checks(replace(run, steps=(*run.steps[:-1], step)))
    assert "leaked_special_tokens" in kinds(findings)
    assert "tool_call_as_text" not in kinds(findings)
    # The recogniser itself reads the tagged shape: only the report is left to the leak.
    recognised = calls_in_text(step.content, step.tools)
    assert recognised is not None and recognised.wrappers == ("tag",)


def test_no_tools_or_real_calls_means_nothing_to_report() -> None:
    assert found(CALL, tools=[]) == []
    with_calls = answer_step(4, content=CALL, calls=clean_run().steps[0].calls)
    assert list(tool_call_as_text(with_calls, clean_run())) == []


def test_a_call_as_text_after_the_first_turn() -> None:
    """The failure often appears only later in a run: each step is judged on its own."""
    run = clean_run()
    steps: tuple[Step, ...] = (
        *run.steps[:2],
        answer_step(2, content=SHAPES["list"], request_params=PARAMS),
    )
    findings = [f for f in run_checks(Run(id="r", steps=steps)) if f.kind == "tool_call_as_text"]
    assert [f.step for f in findings] == [2]


def test_long_text_full_of_braces_stays_cheap_and_silent() -> None:
    """Candidates are capped and each is decoded once: a long answer that is all JSON-ish
    code, or an object per line that is never a call, is read in a bounded number of passes
    (no timing here: `benchmarks/` measures speed) and reported as nothing."""
    code = "\n".join(f'{{"name": "item{i}", "value": {i}}}' for i in range(5000))
    assert calls_in_text(code, {"open_box": {}}) is None
    listing = "[" + ", ".join(f'{{"id": {i}}}' for i in range(5000)) + "]"
    assert calls_in_text(listing, {"open_box": {}}) is None
    braces = "{" * 10_000 + " " + CALL
    [finding] = found(braces)  # unbalanced braces are prose before the call
    assert finding.evidence["placement"] == "trailing"
