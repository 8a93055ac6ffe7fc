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
from analyzer.checks.records import Finding, Run
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
