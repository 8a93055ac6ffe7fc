"""Whose fault it is, decided by the evidence, with a confidence where it is inferred: a call
dropped by the parser needs evidence that something was generated, a template that raised
inside a 500 is a template error; hand-built steps, each with its negative twin."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from test_checks_units import TOOLS, answer_step

from analyzer.checks.calls import dropped_call
from analyzer.checks.http import classify
from analyzer.checks.records import Finding, Run, Step
from traces.model import ExchangeError
from traces.retry import is_deterministic

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
    assert finding.evidence["unexplained_tokens"] == 40
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
