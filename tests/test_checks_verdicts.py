"""One diagnosis per step, by what happened: the cases the labelled corpus
(`benchmarks/bench_findings.py`) found misread, each beside the cases that must not change.

A stream the host ended early is the stream's, not a lost connection; a reused id is found
against the ids the client sent back too; a call the parser lost is not also a host ignoring
`tool_choice`; a turn the token budget or a stop sequence ended hides nothing."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from analyzer.checks import ids
from analyzer.checks.records import Finding, Run, Step
from analyzer.checks.registry import run_checks
from traces.sse import STREAM_CUT

from check_builders import TOOLS, answer_step, call, kinds, tool_step, with_step

CUT = {"kind": "connection", "status": 200, "message": STREAM_CUT, "body": None}
LOST = {"kind": "connection", "status": 200, "message": "connection lost: reset", "body": None}


def _one(found: list[Finding], kind: str) -> Finding:
    [finding] = [f for f in found if f.kind == kind]
    return finding


# -- a stream cut short ----------------------------------------------------------------------


def test_a_cut_stream_that_was_retried_is_the_streams_not_a_lost_connection() -> None:
    step = tool_step(4, streamed=True, retry_errors=(CUT,))
    found = with_step(step)
    assert "http_connection" not in kinds(found)
    finding = _one(found, "stream_without_done")
    assert (finding.severity, finding.layer) == ("warning", "provider")
    assert finding.evidence["cut_attempts"] == 1 and finding.evidence["step_failed"] is False


def test_a_stream_cut_on_every_attempt_fails_the_step_as_the_streams() -> None:
    failed = tool_step(
        4,
        streamed=True,
        calls=(),
        results=(),
        retry_errors=(CUT, CUT),
        error_kind="connection",
        error_status=200,
        error_message=STREAM_CUT,
        anomalies=({"kind": "stream_without_done"},),
    )
    found = with_step(failed)
    assert "http_connection" not in kinds(found)
    finding = _one(found, "stream_without_done")
    assert finding.severity == "error"
    assert (finding.evidence["cut_attempts"], finding.evidence["step_failed"]) == (3, True)


def test_a_lost_connection_stays_a_lost_connection() -> None:
    # Reset mid-body: the transport failed, whatever the stream had said so far.
    found = with_step(tool_step(4, streamed=True, retry_errors=(LOST,)))
    assert _one(found, "http_connection").severity == "warning"
    assert "stream_without_done" not in kinds(found)
    # Both on one step: each attempt is counted where it belongs.
    both = with_step(tool_step(4, streamed=True, retry_errors=(LOST, CUT)))
    assert _one(both, "http_connection").evidence["attempts"] == 1
    assert _one(both, "stream_without_done").evidence["cut_attempts"] == 1


def test_a_finished_stream_without_done_is_a_warning_with_nothing_cut() -> None:
    step = tool_step(4, streamed=True, anomalies=({"kind": "stream_without_done"},))
    finding = _one(with_step(step), "stream_without_done")
    assert finding.severity == "warning"
    assert (finding.evidence["count"], finding.evidence["cut_attempts"]) == (1, 0)


@pytest.mark.parametrize(
    "error",
    [
        {"kind": "rate_limit", "status": 429, "message": "slow down", "body": None},
        # The same words from elsewhere are not the recorder's cut.
        {"kind": "server_error", "status": 500, "message": STREAM_CUT, "body": None},
    ],
)
def test_other_retried_errors_say_nothing_about_the_stream(error: dict[str, Any]) -> None:
    found = with_step(replace(answer_step(4), streamed=True, retry_errors=(error,)))
    assert "stream_without_done" not in kinds(found)


# -- ids reused from the history --------------------------------------------------------------


def _chain_with_history(sent_ids: list[str], response_ids: list[str]) -> Run:
    """A chain whose step i's request sends back turns 0..i-1 with `sent_ids` (as a replay
    policy renumbered them) and whose step i answered with `response_ids[i]`; the requests
    share their message objects as the loader's do."""
    history: list[dict[str, Any]] = [{"role": "user", "content": "Open the boxes."}]
    steps = []
    for index, response_id in enumerate(response_ids):
        steps.append(
            tool_step(
                index,
                box=f"box-{index}",
                calls=(call(box=f"box-{index}", id=response_id),),
                request_messages=tuple(history),
            )
        )
        turn = {"role": "assistant", "tool_calls": [{"id": sent_ids[index], "type": "function"}]}
        history = [*history, turn, {"role": "tool", "tool_call_id": sent_ids[index]}]
    return Run(id="r", dialect="moonshot", steps=tuple(steps))


def test_an_id_the_client_sent_back_renumbered_is_reused_by_the_host() -> None:
    # The host answers step 2 with the id of the history's last call, as the client sent it.
    sent = ["functions.open_box:0", "functions.open_box:1", "functions.open_box:2"]
    run = _chain_with_history(sent, ["call_a", "call_b", "functions.open_box:1"])
    [dup] = [f for f in ids.duplicate_ids(run)]
    assert (dup.step, dup.layer, dup.severity) == (2, "provider", "error")
    assert dup.evidence["id"] == "functions.open_box:1"
    assert dup.evidence["request_position"] == 3  # user, assistant, tool, assistant
    assert dup.evidence["first_step"] is None and dup.evidence["same_step"] is False


def test_ids_sent_back_renumbered_and_new_ones_are_no_reuse() -> None:
    sent = ["functions.open_box:0", "functions.open_box:1", "functions.open_box:2"]
    run = _chain_with_history(sent, ["call_a", "call_b", "call_c"])
    assert list(ids.duplicate_ids(run)) == []
    # Ids sent back verbatim, each new: nothing either.
    verbatim = ["call_a", "call_b", "call_c"]
    assert list(ids.duplicate_ids(_chain_with_history(verbatim, verbatim))) == []


def test_a_new_conversation_forgets_the_old_history() -> None:
    sent = ["functions.open_box:0", "functions.open_box:1", "functions.open_box:2"]
    run = _chain_with_history(sent, ["call_a", "call_b", "functions.open_box:0"])
    # The last request starts over: a history that never held the id.
    last = replace(run.steps[2], request_messages=({"role": "user", "content": "Again."},))
    run = replace(run, steps=(*run.steps[:2], last))
    assert list(ids.duplicate_ids(run)) == []


def test_a_response_id_reused_is_still_found_against_the_responses() -> None:
    run = _chain_with_history(["call_a", "call_b", "call_c"], ["call_a", "call_b", "call_a"])
    [dup] = list(ids.duplicate_ids(run))
    assert (dup.evidence["first_step"], dup.evidence["request_position"]) == (0, 1)


# -- a forced call the parser lost -------------------------------------------------------------

REQUIRED = {**TOOLS, "tool_choice": "required"}
KIMI_CALL = (
    "<|tool_calls_section_begin|><|tool_call_begin|>functions.open_box:0"
    '<|tool_call_argument_begin|>{"box_id": "box-4"}<|tool_call_end|><|tool_calls_section_end|>'
)
HARMONY_CALL = (
    '<|channel|>commentary to=functions.open_box <|constrain|>json<|message|>{"box_id": "box-4"}'
)


@pytest.mark.parametrize(
    ("changes", "kind"),
    [
        ({"content": KIMI_CALL}, "leaked_special_tokens"),
        ({"content": HARMONY_CALL}, "harmony_unparsed"),
        (
            {"content": '{"name": "open_box", "arguments": {"box_id": "box-4"}}'},
            "tool_call_as_text",
        ),
        # Nothing visible, but 40 completion tokens beyond the reasoning: a call was made.
        ({"content": "", "completion_tokens": 46, "reasoning_tokens": 6}, "dropped_call"),
    ],
)
def test_a_forced_call_the_parser_lost_is_one_diagnosis(changes: dict[str, Any], kind: str) -> None:
    step = answer_step(4, request_params=REQUIRED, **changes)
    found = kinds(with_step(step))
    assert kind in found and "tool_choice_ignored" not in found


def test_a_forced_call_answered_with_text_is_the_choice_ignored() -> None:
    found = kinds(with_step(answer_step(4, request_params=REQUIRED)))
    assert "tool_choice_ignored" in found
    assert not found & {"leaked_special_tokens", "harmony_unparsed", "tool_call_as_text"}
    # Under `none`, calls are the choice ignored whatever the text holds.
    forbidden = {**TOOLS, "tool_choice": "none"}
    step = tool_step(4, request_params=forbidden, content=KIMI_CALL)
    assert "tool_choice_ignored" in kinds(with_step(step))


# -- tokens the visible text does not explain -------------------------------------------------

CUT_OFF = "The search for Halvard Brenn ranks halvard-brenn"  # 9 words and signs
SWALLOWED = "The box holds the treasure. The treasure is rusty-falcon-886."


def _silent(reasoning: str, completion: int, reasoned: int, **kw: Any) -> Step:
    """A second step with nothing but `reasoning`: `completion` tokens, `reasoned` of them
    reported as reasoning."""
    fields: dict[str, Any] = {
        "content": "",
        "calls": (),
        "results": (),
        "finish_reason": "stop",
        "finish_reason_raw": "stop",
        "reasoning": reasoning,
        "completion_tokens": completion,
        "reasoning_tokens": reasoned,
    }
    return tool_step(1, **{**fields, **kw})


def _second(step: Step, dialect: str = "harmony", model: str = "model") -> list[Finding]:
    return run_checks(Run(id="r", dialect=dialect, model=model, steps=(tool_step(0), step)))


@pytest.mark.parametrize(
    ("dialect", "model", "source"),
    [
        ("harmony", "model", "harmony"),  # channels served raw, read by the client
        ("vllm", "openai/gpt-oss-120b", "reasoning"),  # a host whose parser took them apart
    ],
)
def test_harmony_markup_is_no_lost_call(dialect: str, model: str, source: str) -> None:
    # gpt-oss spends 10 tokens on channel headers around an empty answer (seen on the
    # simulator's template, as gpt-oss renders it): an empty turn, not a dropped call.
    empty = _silent(CUT_OFF, 21, 11, reasoning_source=source)
    found = kinds(_second(empty, dialect, model))
    assert "empty_turn_after_reasoning" in found and "dropped_call" not in found
    # The answer inside the reasoning, 13 tokens unseen of 50: swallowed, not dropped.
    swallowed = _silent(SWALLOWED, 27, 14, reasoning_source=source)
    found = kinds(_second(swallowed, dialect, model))
    assert "reasoning_swallows_answer" in found and "dropped_call" not in found


def test_a_call_harmony_lost_is_still_a_dropped_call() -> None:
    # A commentary message to a function is 20-odd tokens beyond the markup.
    lost = _silent("I will search for Halvard Brenn.", 40, 8, reasoning_source="harmony")
    assert "dropped_call" in kinds(_second(lost))
    # Ten unexplained tokens from a family that spends two or three on markup: lost there.
    elsewhere = _silent(CUT_OFF, 21, 11)
    found = kinds(_second(elsewhere, "openai"))
    assert "dropped_call" in found and "empty_turn_after_reasoning" not in found


def test_usage_over_several_choices_explains_nothing_about_the_first() -> None:
    # n=2: usage adds up both choices, the step keeps the first one's text only.
    two = {**TOOLS, "n": 2}
    empty = _silent(CUT_OFF, 94, 55, request_params=two)
    found = kinds(_second(empty, "openai"))
    assert "empty_turn_after_reasoning" in found and "dropped_call" not in found
    # A host that sent one choice (n ignored) counts that choice alone: lost tokens show.
    one = _silent(
        CUT_OFF,
        94,
        55,
        request_params=two,
        anomalies=({"kind": "choices_missing", "requested": 2, "received": 1},),
    )
    assert "dropped_call" in kinds(_second(one, "openai"))


def test_a_budget_over_several_choices_is_per_choice() -> None:
    both_cut = {**TOOLS, "n": 2, "max_tokens": 8}
    step = answer_step(4, request_params=both_cut, completion_tokens=16, finish_reason="length")
    assert not kinds(with_step(step)) & {"max_tokens_ignored", "finish_length_hidden"}
    over = replace(step, completion_tokens=30)
    [finding] = [f for f in with_step(over) if f.kind == "max_tokens_ignored"]
    assert finding.evidence["choices"] == 2
    # Both cut, the finish_reason hidden: the budget is spent per choice.
    hidden = replace(step, finish_reason="stop", finish_reason_raw="stop")
    assert "finish_length_hidden" in kinds(with_step(hidden))
    assert "finish_length_hidden" not in kinds(with_step(replace(hidden, completion_tokens=9)))


BUDGET = {**TOOLS, "max_tokens": 8}


@pytest.mark.parametrize(
    "changes",
    [
        # The budget ran out while thinking: no answer was ever reached.
        {"request_params": BUDGET, "finish_reason": "length", "finish_reason_raw": "length"},
        # The same with the finish_reason hidden: the budget spent says it.
        {"request_params": BUDGET},
        # The request's stop sequence may have matched where the answer began.
        {"request_params": {**TOOLS, "stop": ["The treasure is"]}, "completion_tokens": 14},
    ],
)
def test_a_turn_the_request_ended_swallowed_nothing(changes: dict[str, Any]) -> None:
    step = _silent(SWALLOWED, **{"completion": 8, "reasoned": 8, **changes})
    found = kinds(_second(step, "openai"))
    assert "reasoning_swallows_answer" not in found and "dropped_call" not in found
    assert "empty_turn_after_reasoning" not in found


def test_a_turn_with_room_left_swallowed_its_answer() -> None:
    step = _silent(SWALLOWED, 14, 14, request_params={**TOOLS, "max_tokens": 512})
    assert "reasoning_swallows_answer" in kinds(_second(step, "openai"))


def test_without_usage_a_thought_cut_off_mid_chain_is_the_empty_turn() -> None:
    uncounted = _silent(CUT_OFF, 0, 0, completion_tokens=None, reasoning_tokens=None)
    found = _second(uncounted, "openai")
    [empty] = [f for f in found if f.kind == "empty_turn_after_reasoning"]
    assert empty.confidence == 0.65  # less sure than with a count (0.8)
    assert "dropped_call" not in kinds(found)
    # A finished thought, then nothing: only the finish_reason says a turn was generated.
    finished = replace(uncounted, reasoning="I will open the next box.")
    [dropped] = [f for f in _second(finished, "openai") if f.kind == "dropped_call"]
    assert dropped.confidence == 0.5


# -- an answer held to the format the request asked for ---------------------------------------

JSON_MODE = {**TOOLS, "response_format": {"type": "json_object"}}
CALL_JSON = '{"name": "open_box", "arguments": {"box_id": "box-4"}}'


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (KIMI_CALL, "leaked_special_tokens"),
        (HARMONY_CALL, "harmony_unparsed"),
        # Prose around it: not the JSON asked for, so no answer either, but a call.
        (f"I'll call the tool now.\n{CALL_JSON}", "tool_call_as_text"),
    ],
)
def test_a_call_the_parser_left_in_content_is_no_answer_to_format(content: str, kind: str) -> None:
    found = kinds(with_step(answer_step(4, request_params=JSON_MODE, content=content)))
    assert kind in found and "response_format_ignored" not in found


def test_json_asked_for_and_given_is_the_answer_unless_it_is_a_call_beyond_doubt() -> None:
    # A call to a declared tool with the arguments its schema asks for: a host holding the
    # turn to JSON left the model no other way to call. The call, not an answer.
    found = kinds(with_step(answer_step(4, request_params=JSON_MODE, content=CALL_JSON)))
    assert "tool_call_as_text" in found and "response_format_ignored" not in found
    # Arguments the tool does not take: JSON that merely looks like a call, the answer.
    odd = '{"name": "open_box", "arguments": {"box": 4}}'
    found = kinds(with_step(answer_step(4, request_params=JSON_MODE, content=odd)))
    assert not found & {"tool_call_as_text", "response_format_ignored"}
    # Prose where JSON was asked for: the format ignored.
    prose = kinds(with_step(answer_step(4, request_params=JSON_MODE)))
    assert "response_format_ignored" in prose and "tool_call_as_text" not in prose
