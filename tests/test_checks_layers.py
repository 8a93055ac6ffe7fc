"""Whose fault it is, decided by the evidence, with a confidence where it is inferred: a call
dropped by the parser needs evidence that something was generated, a template that raised
inside a 500 is a template error, a context overflow is the client's unless the request was
far smaller than the window, a tool's correct no is the model's mistake, and only a stream
that never finished cuts arguments; hand-built steps, each with its negative twin."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from analyzer.checks.calls import arguments, dropped_call
from analyzer.checks.http import classify, http_errors
from analyzer.checks.records import Finding, Result, Run, Step
from analyzer.checks.registry import run_checks
from traces.model import ExchangeError
from traces.retry import is_deterministic

from check_builders import TOOLS, answer_step, call, tool_step

RUN = Run(id="r")


def _empty_turn(**kw: Any) -> Step:
    """Tools offered, the turn ended with nothing visible and no call."""
    fields: dict[str, Any] = {
        "content": "",
        "reasoning": None,
        "reasoning_source": "none",
        "reasoning_tokens": None,
        "completion_tokens": None,
        "total_tokens": None,
        "request_params": TOOLS,
    }
    return answer_step(0, **{**fields, **kw})


def _dropped(step: Step) -> list[Finding]:
    return list(dropped_call(step, RUN))


# -- dropped_call: evidence that something was generated --------------------------------------


@pytest.mark.parametrize(
    ("changes", "confidence"),
    [
        # Completion tokens the visible text does not account for.
        ({"completion_tokens": 40}, 0.85),
        # The reasoning ends with a call's complete arguments.
        ({"reasoning": 'I will open it. {"box_id": "box-1"}', "completion_tokens": 10}, 0.95),
        # No usage: only the host's finish_reason says a turn was generated.
        ({}, 0.5),
    ],
)
def test_a_dropped_call_needs_and_grades_its_evidence(
    changes: dict[str, Any], confidence: float
) -> None:
    [finding] = _dropped(_empty_turn(**changes))
    assert (finding.layer, finding.confidence) == ("provider", confidence)
    assert finding.evidence["completion_tokens"] == changes.get("completion_tokens")


@pytest.mark.parametrize(
    "changes",
    [
        # Nothing says a token was generated: no usage, no finish_reason (empty_response).
        {"finish_reason": "none", "finish_reason_raw": None},
        # Usage says nothing beyond the reasoning was generated.
        {"reasoning": "Let me think about which box.", "completion_tokens": 9},
        {"completion_tokens": 0},
        # Not an empty turn, or no tools to call.
        {"content": "The treasure is here."},
        {"request_params": {}},
        {"finish_reason": "length", "finish_reason_raw": "length", "completion_tokens": 90},
        {"error_kind": "server_error"},
    ],
)
def test_no_evidence_no_dropped_call(changes: dict[str, Any]) -> None:
    assert _dropped(_empty_turn(**changes)) == []


def test_a_dropped_call_states_the_numbers_behind_it() -> None:
    step = replace(_empty_turn(completion_tokens=40), reasoning_tokens=4)
    [finding] = _dropped(step)
    assert (
        finding.evidence["unexplained_tokens"] == 36
    )  # the 4 reported reasoning tokens explain the rest
    assert finding.evidence["tools_offered"] == ["open_box"]


# -- a template that raised inside a 500 -------------------------------------------------------


def _failed(status: int, message: str) -> dict[str, Any]:
    return {"kind": "server_error", "status": status, "message": f"HTTP {status}: {message}"}


@pytest.mark.parametrize(
    "message",
    [
        # llama-cpp-python quotes Jinja's exception bare (llama_cpp/server/errors.py).
        "'dict object' has no attribute 'name'",
        "'str object' has no attribute 'items'",
        "'bos_token' is undefined",
        # llama.cpp's template engine places its errors by row and column.
        "Value is not callable: null at row 49, column 79:\n {%- set content = x %}",
        "Jinja Exception: System message must be at the beginning.",
        "jinja2.exceptions.UndefinedError: 'list object' has no attribute 'content'",
        "Error rendering chat template",
    ],
)
def test_a_template_error_inside_a_500_is_a_template_error(message: str) -> None:
    assert classify(_failed(500, message)) == ("http_template_error", "provider")
    # The same request would fail the same way: retried once at most.
    assert is_deterministic(ExchangeError(kind="server_error", status=500, message=message))


@pytest.mark.parametrize(
    "message",
    [
        # Python's own AttributeError (a server bug, not a template): the quote closes
        # before `object`.
        "'Llama' object has no attribute 'ctx'",
        "The model is overloaded. Please try again later.",
        "internal error at row 3",  # no column: not the template engine's placement
        "variable is undefined",
    ],
)
def test_other_500s_stay_server_errors(message: str) -> None:
    assert classify(_failed(500, message)) == ("http_server_error", "provider")
    assert not is_deterministic(ExchangeError(kind="server_error", status=500, message=message))


# -- a context overflow: the request's size against the window -------------------------------


def _overflow(message: str, body: str | None = None, **kw: Any) -> Finding:
    fields: dict[str, Any] = {
        "calls": (),
        "results": (),
        "finish_reason": "none",
        "finish_reason_raw": None,
        "prompt_tokens": None,
        "completion_tokens": None,
        "error_kind": "context_overflow",
        "error_status": 400,
        "error_message": f"HTTP 400: {message}",
        "error_body": body,
        "request_messages": ({"role": "user", "content": "Open the first box."},),
    }
    [finding] = [
        f for f in http_errors(answer_step(0, **{**fields, **kw}), RUN) if f.kind.endswith("flow")
    ]
    return finding


VLLM = (
    "This model's maximum context length is {} tokens. However, your request has {} input tokens."
)


def test_a_small_request_overflowing_a_large_window_is_the_hosts() -> None:
    # What the request sent: a short message and one tool, some 60 tokens against 8192.
    finding = _overflow(
        "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens "
        "(8900 in the messages, 100 in the completion).",
        request_params={**TOOLS, "max_tokens": 100},
    )
    assert finding.layer == "provider" and finding.confidence is not None
    assert 0.9 <= finding.confidence <= 0.95
    evidence = finding.evidence
    assert evidence["context_limit"] == 8192 and evidence["limit_source"] == "error message"
    assert evidence["prompt_source"] == "estimated" and evidence["max_tokens"] == 100
    assert evidence["request_tokens"] == evidence["prompt_tokens"] + 100
    assert evidence["request_tokens"] < 8192 * 0.05
    assert evidence["host_prompt_tokens"] == 8900  # the host counted what it built itself


@pytest.mark.parametrize(
    ("message", "body", "changes"),
    [
        # The prompt the host reported is over the window.
        (VLLM.format(4096, 5000), None, {"prompt_tokens": 5000}),
        # The history is small but the asked budget fills the window.
        (
            "This model's maximum context length is 16384 tokens. However, you requested "
            "19591 tokens (9591 in the messages, 10000 in the completion).",
            None,
            {"request_params": {"max_tokens": 10000}},
        ),
        # llama.cpp states the window as a field of its body.
        (
            "the request exceeds the available context size",
            '{"error": {"n_prompt_tokens": 300, "n_ctx": 256}}',
            {"prompt_tokens": 300},
        ),
        ("prompt is too long: 210000 tokens > 200000 maximum", None, {"prompt_tokens": 150000}),
    ],
)
def test_a_request_near_or_over_the_window_is_the_clients(
    message: str, body: str | None, changes: dict[str, Any]
) -> None:
    finding = _overflow(message, body, **changes)
    assert finding.layer == "client" and finding.confidence is not None
    assert finding.evidence["ratio"] >= 0.5 and finding.evidence["context_limit"] is not None


def test_the_reported_prompt_counts_before_any_estimate() -> None:
    reported = _overflow(VLLM.format(8192, 9000), prompt_tokens=7000)
    assert reported.evidence["prompt_source"] == "reported" and reported.layer == "client"
    assert reported.confidence == pytest.approx(0.5 + 0.45 * (7000 / 8192 - 0.5) / 0.5, abs=0.01)


def test_an_overflow_that_states_no_window_stays_the_clients_with_less_confidence() -> None:
    finding = _overflow("prompt is too long")
    assert (finding.layer, finding.confidence) == ("client", 0.6)
    assert finding.evidence["context_limit"] is None
    assert finding.evidence["limit_source"] == "not stated"
    nothing_sent = _overflow(VLLM.format(8192, 9000), request_messages=())
    assert (nothing_sent.layer, nothing_sent.evidence["prompt_source"]) == ("client", "unknown")


# -- a tool's correct no is the model's mistake; a cut stream is the host's ------------------


def _tool_error(result: Result, **kw: Any) -> Finding:
    step = tool_step(0, results=(result,), **kw)
    [finding] = [f for f in run_checks(Run(id="r", steps=(step,))) if f.kind == "tool_error"]
    return finding


@pytest.mark.parametrize(
    ("error", "layer", "confidence"),
    [
        # Imported results carry no kind: the text decides, conservatively.
        ("box-9 is locked or does not exist", "model", 0.7),
        ("ENOENT: no such file or directory, open 'src/missing.ts'", "model", 0.7),
        ("Document not found: doc-17", "model", 0.7),
        ("Traceback (most recent call last): FileNotFoundError in the tool", "tool", 0.7),
        ("command timed out after 30 s", "tool", 0.7),
        ("permission denied", "tool", 0.5),
    ],
)
def test_an_unrecorded_tool_error_is_judged_by_its_text(
    error: str, layer: str, confidence: float
) -> None:
    finding = _tool_error(Result(0, "call_box-1_0", "open_box", f"Error: {error}", error))
    assert (finding.layer, finding.confidence) == (layer, confidence)


def test_a_recorded_kind_decides_with_certainty() -> None:
    made_up = Result(0, "c", "open_box", "Error: no", "no", error_kind="missing")
    assert (_tool_error(made_up).layer, _tool_error(made_up).confidence) == ("model", 1.0)
    crashed = replace(made_up, error="no such file, then the tool crashed", error_kind="crashed")
    assert _tool_error(crashed).layer == "tool"


def _broken_call() -> Any:
    return call(json_valid=False, arguments=None, arguments_raw='{"box_id": "bo')


def test_broken_arguments_of_a_stream_that_never_finished_are_the_hosts() -> None:
    # A store from before cut streams failed the call, or a log of parsed chunks.
    cut = tool_step(0, calls=(_broken_call(),), streamed=True, finish_reason="none")
    cut = replace(cut, finish_reason_raw=None, results=())
    [finding] = [f for f in arguments(cut, RUN) if f.kind == "invalid_json_arguments"]
    assert (finding.layer, finding.evidence["stream_cut"]) == ("provider", True)
    failed = Result(0, "c", "open_box", "Error: bad", "bad", error_kind="invalid_arguments")
    assert _tool_error(failed, calls=cut.calls, streamed=True, finish_reason_raw=None).layer == (
        "provider"
    )


@pytest.mark.parametrize(
    "changes",
    [
        # Finished without [DONE]: the turn was whole, the arguments as the model wrote them.
        {"streamed": True, "anomalies": ({"kind": "stream_without_done"},)},
        # A body read whole is never cut, with or without a finish_reason.
        {"streamed": False, "finish_reason_raw": None},
    ],
)
def test_broken_arguments_of_a_finished_turn_are_the_models(changes: dict[str, Any]) -> None:
    step = tool_step(0, calls=(_broken_call(),), results=(), **changes)
    [finding] = [f for f in arguments(step, RUN) if f.kind == "invalid_json_arguments"]
    assert (finding.layer, finding.evidence["stream_cut"]) == ("model", False)
    failed = Result(0, "c", "open_box", "Error: bad", "bad", error_kind="invalid_arguments")
    assert _tool_error(failed, calls=step.calls, **changes).layer == "model"
