"""The choices of `n` beyond choice 0: read back from the raw response (`checks.choices`) and
taken out of a usage that counts them all (`unseen.unexplained_tokens`), so a turn that shows
nothing is judged on its own tokens: a call lost from it is found on token evidence, and an
answer left in its reasoning is not mistaken for one.

The hand-built steps are the shapes of the held-out corpus (`bench_findings.py --base-seed 36
--seeds 12`) that first showed it; the recorded ones go over HTTP to the simulator.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from analyzer.checks.calls import FINISHED_ONLY_CONFIDENCE, UNEXPLAINED_CONFIDENCE, dropped_call
from analyzer.checks.choices import other_choices
from analyzer.checks.loader import load_run
from analyzer.checks.persist import analyze_run
from analyzer.checks.reasoning import reasoning_swallows_answer
from analyzer.checks.records import Call, OtherChoice, Run, Step
from analyzer.checks.unseen import call_overhead, unexplained_tokens
from traces.sim.config import SimConfig
from traces.store.database import open_for_reading, open_for_writing

from check_builders import TOOLS
from recording import Recording, record_many

_TOOLS = TOOLS["tools"]
_PARAMS = {"model": "sim-reasoner-1", "n": 2, "tools": _TOOLS}


# vLLM, `n: 2` (a chain): two turns where both choices called `open_box`, then one where
# choice 0's call was lost (nothing but its reasoning left, finish `stop`) and choice 1 made
# its call. Usage adds up both choices; the reasoning count too.
def _box(box: str) -> tuple[Call, ...]:
    arguments = json.dumps({"box_id": box})
    return (
        Call(0, "c", "openai", "open_box", arguments, "string", {"box_id": box}, True, True, None),
    )


_CHAIN = (
    Step(
        index=0,
        finish_reason="tool_calls",
        reasoning="The task starts at box-738205. I need to open boxes one at a time and follow "
        "the ids.",
        completion_tokens=116,
        reasoning_tokens=46,
        reasoning_tokens_source="reported",
        request_params=_PARAMS,
        calls=_box("box-738205"),
        other_choices=(
            OtherChoice(
                "The task starts at box-738205. I need to open boxes one at a time and follow "
                "the ids.",
                "",
                (("open_box", '{"box_id": "box-738205"}'),),
            ),
        ),
    ),
    Step(
        index=1,
        finish_reason="tool_calls",
        reasoning="box-738205 is open and its card names box-a213af as the next box. Progress: 1 "
        "done, 299 remaining. I'll open box-a213af now.",
        completion_tokens=146,
        reasoning_tokens=74,
        reasoning_tokens_source="reported",
        request_params=_PARAMS,
        calls=_box("box-a213af"),
        other_choices=(
            OtherChoice(
                "The result for box-738205 gives next_box_id = box-a213af. 299 boxes left after "
                "this one. Continuing with box-a213af.",
                "",
                (("open_box", '{"box_id": "box-a213af"}'),),
            ),
        ),
    ),
)
_LOST = Step(
    index=2,
    finish_reason="stop",
    finish_reason_raw="stop",
    content="",
    reasoning="box-a213af is open and its card names box-2832cf as the next box. Opening it next.",
    reasoning_source="reasoning",
    completion_tokens=136,
    reasoning_tokens=64,
    reasoning_tokens_source="reported",
    request_params=_PARAMS,
)
_CALLED = OtherChoice(
    reasoning="Opening box-a213af revealed the next id: box-2832cf. That makes 2 opened, 298 "
    "to go. Next step: open_box on box-2832cf.",
    calls=(("open_box", '{"box_id": "box-2832cf"}'),),
)

# MiniMax (split reasoning), `n: 2`: choice 0's answer went into its reasoning, choice 1
# answered in content. Usage: 68 completion tokens, 46 of them reasoning.
_THOUGHT = (
    "The chain ends at box-919e09 with treasure hidden-badger-936 after 5 boxes. Reporting it."
)
_SWALLOWED = Step(
    index=5,
    finish_reason="stop",
    finish_reason_raw="stop",
    content="",
    reasoning=f"{_THOUGHT}\n\nThe treasure is hidden-badger-936.",
    reasoning_source="reasoning_details",
    completion_tokens=68,
    reasoning_tokens=46,
    reasoning_tokens_source="reported",
    request_params={**_PARAMS, "reasoning_split": True},
)
_ANSWERED = OtherChoice(reasoning=_THOUGHT, content="The treasure is hidden-badger-936.")


def _run(step: Step, dialect: str, before: tuple[Step, ...] = ()) -> Run:
    return Run(id="r", dialect=dialect, steps=(*before, step))


def test_a_call_lost_from_one_choice_of_two_is_found_on_its_tokens() -> None:
    step = replace(_LOST, other_choices=(_CALLED,))
    run = _run(step, "vllm", _CHAIN)
    # What this host counts for a call beyond its name and arguments, from the turns before
    # (both choices called): 23.5 tokens a call, the median of the two.
    assert call_overhead(run, step.index) == 23.5
    assert unexplained_tokens(step, run) == 36
    [finding] = dropped_call(step, run)
    assert finding.confidence == UNEXPLAINED_CONFIDENCE
    assert finding.evidence["unexplained_tokens"] == 36


def test_another_choices_call_with_no_turn_to_price_it_leaves_the_tokens_unknown() -> None:
    """The first turn of a run: no step tells what the host counts for a call, and no one
    number stands for every template (5 to 27 tokens in the simulator's families)."""
    step = replace(_LOST, index=0, other_choices=(_CALLED,))
    run = _run(step, "vllm")
    assert call_overhead(run, 0) is None and unexplained_tokens(step, run) is None
    [finding] = dropped_call(step, run)
    assert finding.confidence == FINISHED_ONLY_CONFIDENCE


def test_an_answer_in_the_reasoning_of_one_choice_of_two_is_no_lost_call() -> None:
    step = replace(_SWALLOWED, other_choices=(_ANSWERED,))
    run = _run(step, "minimax-split")
    unexplained = unexplained_tokens(step, run)
    assert unexplained is not None and unexplained < 8  # the other choice's text and markup
    assert dropped_call(step, run) == []
    [finding] = reasoning_swallows_answer(step, run)
    assert finding.kind == "reasoning_swallows_answer"


@pytest.mark.parametrize("step", [_LOST, _SWALLOWED])
def test_without_the_other_choices_the_tokens_stay_unknown(step: Step) -> None:
    """A usage over two choices, the second not at hand (an import without the raw body):
    nothing says how many tokens the first generated; finish_reason alone is the evidence."""
    run = _run(step, "vllm")
    assert unexplained_tokens(step, run) is None
    [finding] = dropped_call(step, run)
    assert finding.confidence == FINISHED_ONLY_CONFIDENCE
    one_short = replace(step, other_choices=())  # a choice missing from the body
    assert unexplained_tokens(one_short, run) is None


def test_other_choices_are_read_from_a_body_and_from_stream_events() -> None:
    body = {
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": ""}},
            {
                "index": 1,
                "message": {
                    "role": "assistant",
                    "content": "<think>plan</think>Done.",
                    "tool_calls": [
                        {"function": {"name": "open_box", "arguments": {"box_id": "b-1"}}}
                    ],
                },
            },
        ]
    }
    [read] = other_choices(json.dumps(body), None) or ()
    assert read == OtherChoice("plan", "Done.", (("open_box", '{"box_id": "b-1"}'),))

    def line(choice: dict[str, object]) -> list[object]:
        return [1.5, "data: " + json.dumps({"choices": [choice]})]

    events = [
        line({"index": 0, "delta": {"content": "ignored"}}),
        line({"index": 1, "delta": {"reasoning_content": "think"}}),
        line({"index": 2, "delta": {"content": "two"}}),
        line(
            {
                "index": 1,
                "delta": {
                    "tool_calls": [
                        {"index": 0, "id": "c", "function": {"name": "open_box", "arguments": "{"}}
                    ]
                },
            }
        ),
        line({"index": 1, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]}}),
        [2.0, "data: [DONE]"],
    ]
    first, second = other_choices(None, json.dumps(events)) or ()
    assert first == OtherChoice("think", "", (("open_box", "{}"),))
    assert second == OtherChoice("", "two", ())
    assert other_choices(None, None) is None
    assert other_choices("not json", None) is None


@pytest.mark.parametrize("stream", [False, True])
def test_a_call_dropped_from_choice_zero_of_two_is_found_over_http(
    tmp_path: Path, stream: bool
) -> None:
    """The simulator drops choice 0's call (`dropped_call`, on half the requests: here the
    second) while the request asks for two choices: the store keeps the second choice in
    the raw response, the loader reads it back, the first turn tells what a call costs, and
    the finding stands on the tokens, not on finish_reason alone."""
    db = tmp_path / "t.duckdb"
    recording = Recording(
        sim=SimConfig(faults={"dropped_call": 0.5}),
        stream=stream,
        settings={"extra_body": {"n": 2}},
    )
    [summary] = record_many(db, {"n2": recording}).values()
    conn = open_for_reading(db)
    try:
        run = load_run(conn, summary.id)
    finally:
        conn.close()
    first, lost = run.steps
    assert first.calls and lost.choices_counted == 2 and not lost.calls
    [other] = lost.other_choices or ()
    assert other.calls and other.calls[0][0] == "open_box"
    assert call_overhead(run, lost.index) is not None
    conn = open_for_writing(db)
    try:
        found = [f for f in analyze_run(conn, summary.id) if f.kind == "dropped_call"]
    finally:
        conn.close()
    assert [f.step for f in found] == [1]
    assert found[0].confidence == UNEXPLAINED_CONFIDENCE


def test_a_harmony_turn_cut_by_the_budget_is_no_hidden_length(tmp_path: Path) -> None:
    """gpt-oss without the harmony parser, cut mid-thought by `max_tokens`: the host says
    `length` (the simulator's fault said `stop` once, and a true finding read as false)."""
    db = tmp_path / "t.duckdb"
    recording = Recording(
        sim=SimConfig(faults={"harmony_in_content": 1.0}),
        settings={"max_tokens": 8},
    )
    [summary] = record_many(db, {"cut": recording}).values()
    conn = open_for_writing(db)
    try:
        found = analyze_run(conn, summary.id)
        step = load_run(conn, summary.id).steps[0]
    finally:
        conn.close()
    assert step.finish_reason == "length" and step.completion_tokens == 8
    kinds = {f.kind for f in found}
    assert "harmony_unparsed" in kinds and "finish_length_hidden" not in kinds
