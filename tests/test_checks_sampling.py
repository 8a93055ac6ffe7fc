"""The sampling checks as pure functions: what counts as a parameter ignored, what does not
(a budget spent, a stop sequence in the reasoning, JSON cut at the budget, different
requests), and how sure each inferred finding is."""

from __future__ import annotations

from typing import Any

import pytest

from analyzer.checks.records import Finding, Run, Step
from analyzer.checks.registry import run_checks
from analyzer.checks.sampling import nondeterministic_output, sampling_parameters

LINE = ({"role": "user", "content": "Name three colours."},)
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}


def answer(index: int = 0, content: str = "Red, green, blue.", **kw: Any) -> Step:
    fields: dict[str, Any] = {
        "index": index,
        "finish_reason": "stop",
        "finish_reason_raw": "stop",
        "content": content,
        "prompt_tokens": 20,
        "completion_tokens": 6,
        "total_tokens": 26,
        "request_messages": LINE,
    }
    return Step(**{**fields, **kw})


def kinds(step: Step) -> list[str]:
    return [f.kind for f in sampling_parameters(step, Run(id="r", steps=(step,)))]


def only(step: Step, kind: str) -> Finding:
    [found] = [f for f in run_checks(Run(id="r", steps=(step,))) if f.kind == kind]
    assert found.layer == "provider"
    return found


def test_a_budget_run_past_is_ignored_a_budget_spent_is_not() -> None:
    capped = {"max_tokens": 16}
    assert kinds(answer(completion_tokens=16, finish_reason="length", request_params=capped)) == []
    # An end-of-turn token counted past the budget: spent, not ignored.
    assert kinds(answer(completion_tokens=18, finish_reason="length", request_params=capped)) == []
    past = answer(completion_tokens=49, request_params={"max_completion_tokens": 16})
    found = only(past, "max_tokens_ignored")
    assert found.confidence == 1.0
    assert found.evidence == {
        "max_tokens": 16,
        "finish_reason": "stop",
        "completion_tokens": 49,
        "reasoning_tokens": None,
    }
    # Spent exactly and relabelled: that is the hidden length, not an ignored budget.
    hidden = answer(completion_tokens=16, request_params=capped)
    [spent] = run_checks(Run(id="r", steps=(hidden,)))
    assert (spent.kind, spent.confidence) == ("finish_length_hidden", 0.9)
    # One end-of-turn token past it: still spent, though a turn ending there is likelier.
    margin = answer(completion_tokens=17, request_params=capped)
    [spent] = run_checks(Run(id="r", steps=(margin,)))
    assert (spent.kind, spent.confidence) == ("finish_length_hidden", 0.75)
    assert "finish_length_hidden" not in {f.kind for f in run_checks(Run(id="r", steps=(past,)))}


def test_a_budget_on_the_answer_alone_or_no_usage_is_less_certain() -> None:
    reasoned = answer(
        completion_tokens=60,
        reasoning_tokens=50,
        reasoning_tokens_source="reported",
        request_params={"max_tokens": 16},
    )
    assert only(reasoned, "max_tokens_ignored").confidence == 0.6
    words = " ".join(["word"] * 80)
    unsized = answer(content=words, completion_tokens=None, request_params={"max_tokens": 16})
    found = only(unsized, "max_tokens_ignored")
    assert found.confidence == 0.7 and found.evidence["estimated_tokens"] == 80
    short = answer(content="one two", completion_tokens=None, request_params={"max_tokens": 16})
    assert kinds(short) == []


def test_a_stop_sequence_in_the_answer_is_ignored() -> None:
    text = "alpha bravo charlie delta"
    found = only(answer(content=text, request_params={"stop": "charlie"}), "stop_ignored")
    assert found.evidence["found"] == "charlie" and found.evidence["at"] == 12
    assert kinds(answer(content="alpha bravo ", request_params={"stop": ["charlie"]})) == []
    # Hosts differ on whether stop applies inside the reasoning: only the answer is judged.
    hidden = answer(content="Done.", reasoning=text, request_params={"stop": ["charlie"]})
    assert kinds(hidden) == []
    assert kinds(answer(content=text, request_params={"stop": ["", None]})) == []


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('```json\n{"city": "Paris"}\n```', "not JSON"),
        ('["Paris"]', "JSON list, not an object"),
        ('{"town": "Paris"}', "schema: "),
    ],
)
def test_an_answer_outside_the_json_format_is_ignored(content: str, problem: str) -> None:
    schema = {"type": "json_schema", "json_schema": {"name": "c", "schema": SCHEMA}}
    found = only(
        answer(content=content, request_params={"response_format": schema}),
        "response_format_ignored",
    )
    assert found.severity == "error" and found.evidence["problem"].startswith(problem)


def test_json_the_format_does_not_promise_is_not_required() -> None:
    loose = {
        "type": "json_schema",
        "json_schema": {"name": "c", "strict": False, "schema": SCHEMA},
    }
    assert (
        kinds(answer(content='{"town": "Paris"}', request_params={"response_format": loose})) == []
    )
    json_object = {"response_format": {"type": "json_object"}}
    assert kinds(answer(content='{"city": "Paris"}', request_params=json_object)) == []
    # Cut at the budget, a JSON answer cannot close: the budget's doing, not the format's.
    cut = answer(content='{"city": "Par', finish_reason="length", request_params=json_object)
    assert kinds(cut) == []
    text = {"response_format": {"type": "text"}}
    assert kinds(answer(content="Paris.", request_params=text)) == []


def test_missing_choices_and_logprobs_come_from_the_recorded_anomalies() -> None:
    step = answer(
        anomalies=(
            {"kind": "choices_missing", "requested": 2, "received": 1},
            {"kind": "logprobs_missing", "top_logprobs": 2, "tokens": None, "received_top": None},
        )
    )
    assert sorted(kinds(step)) == ["logprobs_ignored", "n_ignored"]
    # Not stream quirks: the streaming check leaves them to this one.
    assert not {f.kind for f in run_checks(Run(id="r", steps=(step,)))} & {"stream_other"}


def test_a_failed_step_is_not_judged() -> None:
    failed = answer(
        content=None,
        completion_tokens=None,
        error_kind="bad_request",
        error_status=400,
        error_message="HTTP 400: 'n' is not supported",
        request_params={"n": 2, "stop": ["x"]},
    )
    assert kinds(failed) == []


def test_a_refused_parameter_probe_is_no_client_error() -> None:
    refused = answer(
        content=None,
        error_kind="bad_request",
        error_status=400,
        error_message="HTTP 400: 'n' is not supported",
        request_params={"n": 2},
    )
    assert [f.kind for f in run_checks(Run(id="r", steps=(refused,)))] == ["http_bad_request"]
    probe = Run(id="r", steps=(refused,), parameter_probe=True)
    assert run_checks(probe) == []
    crashed = answer(content=None, error_kind="server_error", error_status=500)
    assert [f.kind for f in run_checks(Run(id="r", steps=(crashed,), parameter_probe=True))] == [
        "http_server_error"
    ]


def repeats(*contents: str, **params: Any) -> Run:
    return Run(
        id="r",
        steps=tuple(
            answer(index, content, request_params=params) for index, content in enumerate(contents)
        ),
    )


def test_equal_requests_asking_for_determinism_must_agree() -> None:
    assert list(nondeterministic_output(repeats("Red.", "Red.", "Red.", temperature=0))) == []
    [found] = nondeterministic_output(repeats("Red.", "Blue.", "Red.", temperature=0, seed=1))
    assert found.step == 0 and found.evidence["steps"] == [0, 1, 2]
    assert found.evidence["distinct_answers"] == 2
    # A seed alone asks for reproducible sampling too.
    assert list(nondeterministic_output(repeats("Red.", "Blue.", seed=3, temperature=1)))
    # Nothing asked for it: different answers are sampling at work.
    assert list(nondeterministic_output(repeats("Red.", "Blue.", temperature=0.7))) == []


def test_the_seed_does_not_matter_to_a_greedy_decode() -> None:
    run = Run(
        id="r",
        steps=(
            answer(0, "Red.", request_params={"temperature": 0, "seed": 1}),
            answer(1, "Blue.", request_params={"temperature": 0, "seed": 2}),
        ),
    )
    [found] = nondeterministic_output(run)
    assert found.evidence["seeds"] == [1, 2]
    sampled = Run(
        id="r",
        steps=(
            answer(0, "Red.", request_params={"temperature": 1, "seed": 1}),
            answer(1, "Blue.", request_params={"temperature": 1, "seed": 2}),
        ),
    )
    assert list(nondeterministic_output(sampled)) == []  # two seeds, two samples


def test_answers_that_part_late_are_less_surely_the_hosts_doing() -> None:
    shared = "The primary colours of light are red, green and blue; " * 4
    [early] = nondeterministic_output(repeats("Red.", "Blue.", temperature=0))
    [late] = nondeterministic_output(repeats(shared + "done.", shared + "end.", temperature=0))
    assert early.confidence is not None and late.confidence is not None
    assert early.confidence == 0.95 and 0.5 <= late.confidence < 0.6
    assert late.evidence["identical_prefix_chars"] == len(shared)
