"""Markup a host did not parse, and failures that begin only after the first turn, as pure
checks over hand-built steps: gpt-oss harmony channels (tokens or the words a detokenizer
leaves), reasoning ended by a lone `</think>`, an empty turn after reasoning mid-chain, emptied
arguments and ids the family's parser rejects from turn 2 on. Each with the ordinary text and
healthy runs that must stay silent, and the confidence an inferred finding states."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from analyzer.checks.records import Finding, Result, Run, Step
from analyzer.checks.registry import run_checks
from analyzer.checks.unseen import unexplained_tokens
from traces.families import KIMI_ID
from traces.normalize import read_message
from traces.replay import replay_message

from check_builders import TOOLS, answer_step, call, clean_run, tool_step


def _found(run: Run, kind: str) -> list[Finding]:
    return [f for f in run_checks(run) if f.kind == kind]


def _after_one_tool_step(step: Step, dialect: str | None = "openai", **run: Any) -> Run:
    """`step` as the second step of a run whose first step made a call."""
    return Run(id="r", dialect=dialect, steps=(tool_step(0), replace(step, index=1)), **run)


def _answer(content: str | None, reasoning: str | None = None, **kw: Any) -> Step:
    """An answer turn; its usage reports no reasoning tokens unless `kw` says so."""
    fields: dict[str, Any] = {
        "content": content,
        "reasoning": reasoning,
        "reasoning_source": "reasoning_content" if reasoning else "none",
        "reasoning_tokens": None,
        "reasoning_tokens_source": "missing",
    }
    return answer_step(1, **{**fields, **kw})


# -- harmony ------------------------------------------------------------------------------

HARMONY_FOUND: list[tuple[str, str, str, float]] = [
    # (why, content, form, confidence)
    (
        "the channel tokens themselves (parser fixture gpt_oss.commentary_constrain)",
        "<|channel|>analysis<|message|>Thinking about edit...<|end|><|start|>assistant<|channel|>"
        'commentary to=functions.edit <|constrain|>json<|message|>{"oldString": "a"}',
        "tokens",
        1.0,
    ),
    (
        "only tokens another format shares (Phi-3 ends its turns with <|end|>)",
        "The answer is four.<|end|>",
        "tokens",
        0.8,
    ),
    (
        "channel names run together, at the start and at the end (macprovider#743)",
        'analysisWe need to answer "What is 2+2?". The answer is "four".assistantfinalfour',
        "stripped",
        0.99,
    ),
    (
        "a call's channel and recipient, its tokens stripped",
        'We should check.assistantcommentary to=functions.get_weather json{"city": "Berlin"}',
        "stripped",
        0.99,
    ),
    (
        "role and channel run together, alone",
        "Paris is the capital.assistantfinalParis",
        "stripped",
        0.95,
    ),
    ("a recipient alone", 'to=functions.get_weather json{"city": "Berlin"}', "stripped", 0.9),
    (
        "the analysis channel glued to the reasoning, alone",
        "analysisThe user greets me.",
        "stripped",
        0.7,
    ),
]


@pytest.mark.parametrize(
    ("content", "form", "confidence"),
    [c[1:] for c in HARMONY_FOUND],
    ids=[c[0] for c in HARMONY_FOUND],
)
def test_harmony_in_content_is_graded_by_its_anchor(
    content: str, form: str, confidence: float
) -> None:
    step = _answer(content, finish_reason="stop", calls=())
    [finding] = _found(_after_one_tool_step(step), "harmony_unparsed")
    assert (finding.layer, finding.severity, finding.step) == ("provider", "error", 1)
    assert (finding.evidence["form"], finding.confidence) == (form, confidence)
    assert finding.evidence["excerpt"] and finding.evidence["markers"]


ORDINARY = [
    "The final analysis shows the commentary was right.",
    "analysis of the logs: nothing failed. Final answer below.",
    "My analysis is final; the assistant's commentary agrees.",
    "An assistant final check found no functions to call.",
    "Analysis\n\nWe looked at the channel and the message.",
    "Use `to = functions` only in the config.",
]


@pytest.mark.parametrize("content", ORDINARY)
def test_ordinary_english_is_not_harmony(content: str) -> None:
    run = _after_one_tool_step(_answer(content, reasoning="I answer now."))
    assert not _found(run, "harmony_unparsed")


def test_harmony_in_reasoning_is_a_warning() -> None:
    step = tool_step(1, reasoning="Next box.assistantcommentary to=functions.open_box json{}")
    [finding] = _found(_after_one_tool_step(step), "harmony_unparsed")
    assert (finding.severity, finding.evidence["field"]) == ("warning", "reasoning")


def _harmony_read(content: str) -> Step:
    reading = read_message({"content": content})
    return _answer(reading.content, reading.reasoning, reasoning_source=reading.reasoning_source)


CHANNELS = "<|channel|>analysis<|message|>I'm\nthinking<|end|>Hello, world!"
"""llama.cpp with --reasoning-format none (parser fixture gpt_oss.analysis_then_final)."""


def test_channels_parsed_by_the_client_are_still_the_hosts_failure() -> None:
    step = _harmony_read(CHANNELS)
    assert step.reasoning_source == "harmony" and step.content == "Hello, world!"
    [finding] = _found(_after_one_tool_step(step, dialect="llamacpp"), "harmony_unparsed")
    assert finding.evidence["parsed_by_client"] is True and finding.confidence == 1.0
    run = _after_one_tool_step(step, dialect="llamacpp")
    # One failure, one finding: not a token leak, not reasoning in content as well.
    assert not _found(run, "leaked_special_tokens") and not _found(run, "reasoning_in_content")


def test_a_host_declared_to_serve_harmony_raw_is_clean() -> None:
    assert not _found(
        _after_one_tool_step(_harmony_read(CHANNELS), dialect="harmony"), "harmony_unparsed"
    )


def test_harmony_quoted_from_a_tool_result_is_not_a_leak() -> None:
    shown = Result(0, "call_box-1_0", "open_box", "error: unexpected <|channel|> in name", None)
    first = tool_step(0, results=(shown,))
    second = _answer("The tool refused the <|channel|> token.", reasoning="It failed.")
    run = Run(id="r", dialect="openai", steps=(first, second))
    assert not _found(run, "harmony_unparsed")


# -- reasoning ended by a lone </think> -----------------------------------------------------


def _close_only(content: str, **kw: Any) -> Step:
    reading = read_message({"content": content})
    return _answer(
        reading.content, reading.reasoning, reasoning_source=reading.reasoning_source, **kw
    )


def test_a_lone_closing_tag_is_reasoning_in_content() -> None:
    # Cerebras' qwen-3-235b-a22b-thinking-2507 (cerebras-cloud-sdk-python#10): the template
    # opened <think>, the model wrote only </think>, no parser ran.
    step = _close_only("Okay, the user asks for the capital.\n</think>\n\nParis.")
    assert (step.reasoning_source, step.content) == ("think_close", "Paris.")
    [finding] = _found(_after_one_tool_step(step, dialect=None), "reasoning_in_content")
    assert (finding.layer, finding.severity) == ("provider", "warning")
    assert (finding.evidence["form"], finding.confidence) == ("close_tag_only", 0.9)
    counted = replace(step, reasoning_tokens=9, reasoning_tokens_source="reported")
    [finding] = _found(_after_one_tool_step(counted, dialect=None), "reasoning_in_content")
    assert finding.confidence == 0.97  # the host counted reasoning tokens for it too


def test_a_lone_closing_tag_after_an_empty_thought_counts_too() -> None:
    step = _close_only("\n</think>\n\nParis.")  # minimax_m2.think_then_call's opening
    assert _found(_after_one_tool_step(step, dialect="minimax"), "reasoning_in_content")


def test_a_quoted_closing_tag_is_prose() -> None:
    step = _close_only("End the block with `</think>` and the parser takes the rest.")
    assert not _found(_after_one_tool_step(step), "reasoning_in_content")


def test_a_whole_think_block_from_a_host_that_sends_one_is_clean() -> None:
    step = _close_only("<think>\nplan\n</think>\n\nanswer")
    assert step.reasoning_source == "think_tag"
    assert not _found(_after_one_tool_step(step, dialect="minimax"), "reasoning_in_content")


def test_reasoning_tokens_a_short_answer_cannot_hold_are_hidden_not_in_content() -> None:
    hidden = _answer("Paris.", reasoning_tokens=900, reasoning_tokens_source="reported")
    assert not _found(_after_one_tool_step(hidden), "reasoning_in_content")


def test_a_half_open_block_goes_back_whole() -> None:
    message = {"content": "plan the call\n</think>\n\nanswer"}
    out, _ = replay_message(message, read_message(message))
    assert out["content"] == "<think>plan the call</think>answer"


# -- an empty turn after reasoning, mid-chain ----------------------------------------------

CUT = "box-2 is open and its card names box-3 as the next box, so I"
"""Reasoning that stops mid-sentence (halogen-flash-server#84, shape A)."""


def _empty(reasoning: str = CUT, **kw: Any) -> Step:
    fields: dict[str, Any] = {
        "content": None,
        "calls": (),
        "results": (),
        "finish_reason": "stop",
        "finish_reason_raw": "stop",
        "reasoning": reasoning,
        "completion_tokens": 20,
        "reasoning_tokens": 18,
    }
    return tool_step(1, **{**fields, **kw})


def test_a_turn_that_stops_thinking_mid_chain_is_an_empty_turn() -> None:
    run = _after_one_tool_step(_empty())
    [finding] = _found(run, "empty_turn_after_reasoning")
    assert (finding.layer, finding.severity, finding.step) == ("provider", "error", 1)
    assert finding.confidence == 0.8
    assert finding.evidence["previous_calls"] == ["open_box"]
    assert (finding.evidence["first_step"], finding.evidence["clean_steps_before"]) == (1, 1)
    # One diagnosis: not an answer swallowed by the reasoning, not a call dropped.
    assert not _found(run, "reasoning_swallows_answer") and not _found(run, "dropped_call")


def test_naming_the_tool_it_was_about_to_call_raises_the_confidence() -> None:
    step = _empty("The card names box-3. Next I call open_box with")
    [finding] = _found(_after_one_tool_step(step), "empty_turn_after_reasoning")
    assert (finding.confidence, finding.evidence["tools_named"]) == (0.9, ["open_box"])


NOT_EMPTY_TURNS: dict[str, Run] = {
    "the first step, nothing pending": Run(id="r", steps=(replace(_empty(), index=0),)),
    "the step before made no call": Run(id="r", steps=(answer_step(0), _empty())),
    "a finished sentence": _after_one_tool_step(_empty("The treasure is in box-3.")),
    "cut by max_tokens": _after_one_tool_step(_empty(finish_reason="length")),
    "it answered": _after_one_tool_step(_empty(content="box-3 holds it.")),
    "no tools offered": _after_one_tool_step(_empty(request_params={})),
    "tokens spent beyond the reasoning": _after_one_tool_step(_empty(completion_tokens=90)),
}


@pytest.mark.parametrize("why", list(NOT_EMPTY_TURNS))
def test_what_is_not_an_empty_turn(why: str) -> None:
    assert not _found(NOT_EMPTY_TURNS[why], "empty_turn_after_reasoning")


def test_a_colon_announces_more() -> None:
    step = _empty("The card names box-3. Opening it with:")
    assert _found(_after_one_tool_step(step), "empty_turn_after_reasoning")


def test_reported_reasoning_tokens_explain_a_long_thought() -> None:
    # Ids split finer in a real tokenizer than in a word count (36 words and signs here):
    # the host's own count is used when it is the larger.
    step = _empty("box-54c530 box-189cb0 box-a1128f " * 4, completion_tokens=40)
    run = clean_run()
    assert unexplained_tokens(replace(step, reasoning_tokens=38), run) == 2
    assert unexplained_tokens(replace(step, reasoning_tokens=18), run) == 4
    # LiteLLM's hosted_vllm reports 0: no count at all, the estimate stands.
    assert unexplained_tokens(replace(step, reasoning_tokens=0), run) == 4
    missing = replace(step, reasoning_tokens=None, reasoning_tokens_source="missing")
    assert unexplained_tokens(missing, run) == 4


# -- emptied arguments ----------------------------------------------------------------------


def _emptied(raw: str | None) -> Any:
    kind = "missing" if raw is None else "string"
    return call(
        arguments=None,
        arguments_raw=raw or "",
        arguments_type=kind,
        json_valid=False,
        schema_valid=None,
    )


@pytest.mark.parametrize("raw", ["", "  ", None], ids=["empty", "blank", "missing"])
def test_no_arguments_for_required_parameters_is_the_hosts(raw: str | None) -> None:
    run = _after_one_tool_step(tool_step(1, calls=(_emptied(raw),)))
    [finding] = _found(run, "empty_arguments")
    assert (finding.layer, finding.evidence["required"]) == ("provider", ["box_id"])
    assert not _found(run, "invalid_json_arguments")  # not the model's broken JSON


def test_no_arguments_for_a_tool_that_takes_none_is_fine() -> None:
    # OpenAI itself sends "" for a parameterless tool (Portkey-AI/gateway#1103; aichat#1217
    # failed on it): no finding, neither emptied nor invalid JSON.
    ping = {"type": "function", "function": {"name": "ping", "parameters": {"type": "object"}}}
    params = {"tools": [*TOOLS["tools"], ping]}
    step = tool_step(1, calls=(replace(_emptied(""), name="ping"),), request_params=params)
    found = run_checks(_after_one_tool_step(step))
    assert not {"empty_arguments", "invalid_json_arguments"} & {f.kind for f in found}


def test_emptied_arguments_say_where_they_began() -> None:
    empty = call(arguments={}, arguments_raw="{}", schema_valid=False)
    steps = (
        tool_step(0),
        tool_step(1, box="box-2"),
        tool_step(2, calls=(empty,)),
        tool_step(3, calls=(empty,)),
    )
    found = _found(Run(id="r", steps=steps), "empty_arguments")
    assert [f.step for f in found] == [2, 3]
    assert {(f.evidence["first_step"], f.evidence["clean_steps_before"]) for f in found} == {(2, 2)}


# -- ids the family's own parser rejects -----------------------------------------------------


def _kimi_call(index: int, box: str) -> Any:
    return call(box=box, id=f"functions.open_box:{index}", id_format="kimi")


def test_kimi_ids_gone_wrong_from_the_third_turn_are_errors_with_the_pattern() -> None:
    steps = (
        tool_step(0, calls=(_kimi_call(0, "box-1"),)),
        tool_step(1, calls=(_kimi_call(1, "box-2"),)),
        tool_step(2, calls=(call(box="box-3", id="call_2"),)),
    )
    [finding] = _found(Run(id="r", dialect="moonshot", steps=steps), "tool_call_id_format")
    assert (finding.layer, finding.severity, finding.step) == ("provider", "error", 2)
    assert finding.evidence["family"] == "kimi" and finding.evidence["pattern"] == KIMI_ID.pattern
    assert KIMI_ID.match(str(finding.evidence["id"])) is None
    assert (finding.evidence["first_step"], finding.evidence["clean_steps_before"]) == (2, 2)


def test_a_kimi_model_on_an_unknown_host_expects_its_own_ids() -> None:
    steps = (tool_step(0, calls=(call(id="call_0"),)),)
    [finding] = _found(Run(id="r", model="moonshotai/Kimi-K2", steps=steps), "tool_call_id_format")
    assert finding.severity == "error" and finding.evidence["first_step"] == 0


def test_ids_a_host_mints_in_another_shape_are_a_warning() -> None:
    steps = (tool_step(0, calls=(_kimi_call(0, "box-1"),)),)
    [finding] = _found(Run(id="r", dialect="openai", steps=steps), "tool_call_id_format")
    assert finding.severity == "warning" and "pattern" not in finding.evidence


def test_clean_runs_carry_none_of_these() -> None:
    kinds = {"harmony_unparsed", "empty_turn_after_reasoning", "empty_arguments"}
    steps = (*(tool_step(i, box=f"box-{i}") for i in range(3)), answer_step(3))
    for dialect in ("openai", "moonshot", "harmony", None):
        found = run_checks(Run(id="r", dialect=dialect, steps=steps))
        assert not kinds & {f.kind for f in found}, (dialect, found)
