"""`tool_choice` not enforced, and single repeated calls: hand-built steps give the finding
with the request's choice and what came back; responses cut short, choices met and requests
that were wrong themselves give nothing; a repeat is reported once per streak, never twice."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from analyzer.checks.records import Finding, Result, Run
from analyzer.checks.registry import run_checks
from analyzer.checks.tool_choice import tool_choice_ignored

from check_builders import TOOLS, answer_step, call, clean_run, tool_step

NAMED = {"type": "function", "function": {"name": "open_box"}}


def ignored(choice: Any, step_kind: str = "answer", **kw: Any) -> list[Finding]:
    """tool_choice_ignored on one step sent with `choice`."""
    make = answer_step if step_kind == "answer" else tool_step
    step = make(4, request_params={**TOOLS, "tool_choice": choice}, **kw)
    return list(tool_choice_ignored(step, clean_run()))


@pytest.mark.parametrize("choice", ["required", NAMED, {"type": "function", "name": "open_box"}])
def test_a_forced_call_that_never_came(choice: Any) -> None:
    [finding] = ignored(choice)
    assert (finding.kind, finding.layer, finding.severity) == (
        "tool_choice_ignored",
        "provider",
        "error",
    )
    assert finding.evidence["tool_choice"] == choice and finding.evidence["called"] == []
    assert finding.evidence["content"] == "The treasure is rusty-falcon-886."
    assert finding.confidence is None  # observed: the request and the reply are both recorded


def test_another_function_than_the_named_one() -> None:
    other = {"type": "function", "function": {"name": "open_door"}}
    params = {
        "tools": [
            *TOOLS["tools"],
            {"type": "function", "function": {"name": "open_door", "parameters": {}}},
        ],
        "tool_choice": other,
    }
    step = tool_step(4, request_params=params)
    [finding] = tool_choice_ignored(step, clean_run())
    assert finding.evidence["called"] == ["open_box"]


def test_calls_where_none_were_allowed() -> None:
    [finding] = ignored("none", step_kind="tool")
    assert finding.evidence["called"] == ["open_box"]


@pytest.mark.parametrize(
    ("choice", "step_kind", "kw"),
    [
        ("required", "tool", {}),  # a call came back
        (NAMED, "tool", {}),  # the named one
        ("none", "answer", {}),  # an answer, as asked
        ("auto", "answer", {}),  # nothing forced
        (None, "answer", {}),
        # The request named a tool it never declared: the client's mistake, not the host's.
        ({"type": "function", "function": {"name": "teleport"}}, "answer", {}),
        ({"type": "allowed_tools", "mode": "required"}, "answer", {}),  # unknown form
        # Cut short: at the token limit a call may have been on its way.
        ("required", "answer", {"finish_reason": "length", "finish_reason_raw": "length"}),
        # The request failed: there is no answer to hold to anything.
        ("required", "answer", {"content": None, "error_kind": "server_error"}),
        # The stream was cut before its finish_reason: the call may be in what never arrived.
        ("required", "answer", {"streamed": True, "finish_reason_raw": None}),
    ],
)
def test_choices_met_or_not_judgeable_are_silent(
    choice: Any, step_kind: str, kw: dict[str, Any]
) -> None:
    assert ignored(choice, step_kind, **kw) == []


def test_a_forced_turn_that_stopped_mid_thought_is_the_empty_turn_only() -> None:
    """A forced call that never came because the turn ended mid-sentence in its reasoning
    (bench_findings: moonshot/chain/plain/11, the `late_empty_turn` fault on a request with
    `tool_choice` required): the host cut the turn before the model could act, which is
    `empty_turn_after_reasoning`; nothing shows the constraint was dropped."""
    run = clean_run()
    cut = replace(
        run.steps[1],
        content="",
        calls=(),
        results=(),
        finish_reason="stop",
        finish_reason_raw="stop",
        reasoning="Opening box-0 revealed the next id: box-2",
        completion_tokens=12,
        reasoning_tokens=12,
        request_params={**TOOLS, "tool_choice": "required"},
    )
    findings = run_checks(replace(run, steps=(run.steps[0], cut)))
    found = {f.kind for f in findings if f.step == 1}
    assert "empty_turn_after_reasoning" in found and "tool_choice_ignored" not in found
    # The same turn with its thought finished is an answer where a call was forced.
    done = replace(cut, reasoning="box-0 is open and the chain is complete.")
    [finding] = tool_choice_ignored(done, replace(run, steps=(run.steps[0], done)))
    assert finding.evidence["called"] == []


def test_no_tools_declared_is_not_judged() -> None:
    step = answer_step(4, request_params={"tool_choice": "required"})
    assert list(tool_choice_ignored(step, clean_run())) == []


def test_both_forms_of_a_named_choice_are_read() -> None:
    flat = answer_step(
        4, request_params={**TOOLS, "tool_choice": {"type": "function", "name": "x"}}
    )
    assert flat.forced_tool == "x"
    assert answer_step(4, request_params={**TOOLS, "tool_choice": NAMED}).forced_tool == "open_box"
    unnamed = answer_step(4, request_params={**TOOLS, "tool_choice": {"type": "function"}})
    assert unnamed.forced_tool is None


# -- a single repeated call ---------------------------------------------------------------


def loops(*boxes: str | None) -> list[Finding]:
    """Loop findings of a run whose steps open `boxes` in order (None: an answer step)."""
    steps = tuple(
        answer_step(i) if box is None else tool_step(i, box=box) for i, box in enumerate(boxes)
    )
    return [
        f
        for f in run_checks(Run(id="r", steps=steps))
        if f.kind in ("repeated_call", "repeated_call_once")
    ]


def test_a_single_repeat_is_info() -> None:
    [once] = loops("box-1", "box-1", "box-2", None)
    assert (once.kind, once.layer, once.severity, once.step) == (
        "repeated_call_once",
        "model",
        "info",
        1,
    )
    assert once.evidence["steps"] == [0, 1] and once.evidence["previous_failed"] is False
    assert once.evidence["calls"] == [["open_box", {"box_id": "box-1"}]]


def test_each_pair_is_reported_and_a_loop_only_as_a_loop() -> None:
    found = loops("box-1", "box-1", "box-2", "box-2", "box-3", "box-3", "box-3", None)
    assert [(f.kind, f.step) for f in found] == [
        ("repeated_call_once", 1),
        ("repeated_call_once", 3),
        ("repeated_call", 6),
    ]


def test_different_arguments_or_no_calls_are_not_repeats() -> None:
    assert loops("box-1", "box-2", "box-1", None) == []
    assert loops("box-1", None, "box-1") == []  # not consecutive


def test_a_retry_after_a_failure_says_so() -> None:
    failed = Result(0, "call_box-1_0", "open_box", "Error: busy", "busy")
    steps = (tool_step(0, results=(failed,)), tool_step(1), answer_step(2))
    [once] = [f for f in run_checks(Run(id="r", steps=steps)) if f.kind == "repeated_call_once"]
    assert once.evidence["previous_failed"] is True


def test_a_failed_request_between_two_identical_calls_does_not_break_the_pair() -> None:
    broken = replace(answer_step(1), content=None, error_kind="server_error", error_status=500)
    steps = (tool_step(0), broken, tool_step(2), answer_step(3))
    [once] = [f for f in run_checks(Run(id="r", steps=steps)) if f.kind == "repeated_call_once"]
    assert once.evidence["steps"] == [0, 2]


def test_parallel_calls_repeat_only_as_a_whole() -> None:
    two = (call(0, box="box-1"), call(1, box="box-2"))
    steps = (
        tool_step(0, calls=two),
        tool_step(1, calls=two[:1]),  # a subset: not the same turn again
        tool_step(2, calls=two[:1]),
        answer_step(3),
    )
    found = [f for f in run_checks(Run(id="r", steps=steps)) if f.kind == "repeated_call_once"]
    assert [f.evidence["steps"] for f in found] == [[1, 2]]


@pytest.mark.parametrize(
    ("first", "second", "repeated"),
    [
        ('{"box_id": "box-1"}', '{ "box_id":"box-1" }', True),  # the same values, spaced apart
        ('{"n": 1}', '{"n": 1.0}', False),  # equal in Python, not as JSON
        ('{"n": 1}', '{"n": true}', False),
        ('{"n": NaN}', '{"n": NaN}', True),  # NaN is unequal to itself, its JSON is not
        ('{"n": Infinity}', '{"n": -Infinity}', False),
    ],
)
def test_calls_repeat_when_their_values_encode_alike(
    first: str, second: str, repeated: bool
) -> None:
    steps = tuple(
        tool_step(i, calls=(call(arguments_raw=raw, arguments=json.loads(raw)),))
        for i, raw in enumerate((first, second))
    )
    found = [
        f for f in run_checks(Run(id="r", steps=(*steps, answer_step(2)))) if "repeat" in f.kind
    ]
    assert [f.evidence["steps"] for f in found] == ([[0, 1]] if repeated else [])
