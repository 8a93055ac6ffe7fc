"""Checks as pure functions: clean data gives nothing; hand-built steps and excerpts of real
failures (observed on hosted Kimi, gpt-oss, GLM and DeepSeek endpoints) give the right kind."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from analyzer.checks.records import Result, Run
from analyzer.checks.registry import RUN_CHECKS, STEP_CHECKS, run_checks
from traces.normalize import estimate_tokens

from check_builders import TOOLS, answer_step, call, clean_run, kinds, tool_step, with_step


@pytest.mark.parametrize("name", sorted(STEP_CHECKS))
def test_step_checks_are_silent_on_clean_steps(name: str) -> None:
    run = clean_run()
    assert [f for s in run.steps for f in STEP_CHECKS[name](s, run)] == []


@pytest.mark.parametrize("name", sorted(RUN_CHECKS))
def test_run_checks_are_silent_on_clean_runs(name: str) -> None:
    assert list(RUN_CHECKS[name](clean_run())) == []


REAL_EXCERPTS: list[tuple[str, dict[str, Any], str]] = [
    (  # OpenRouter, Kimi-K2: call tokens in the reasoning, closing `>` lost as posted
        "kimi.openrouter.tool_tokens_in_thinking",
        {
            "reasoning": "Let me look. <|tool_calls_section_begin|> <|tool_call_begin|> "
            'functions.bash:0 <|tool_call_argument_begin|> {"command": "ls -la"} '
            "<|tool_call_end|> <|tool_calls_section_end|"
        },
        "leaked_special_tokens",
    ),
    (  # Fireworks, Kimi-K2.6: delimiters in content, finish stop
        "kimi.fireworks.delimiters_in_content_stop",
        {
            "content": 'channel_reply:0<|tool_call_argument_begin|>{"text": "..."}'
            "<|tool_calls_section_end|>",
            "calls": (),
            "results": (),
            "finish_reason": "stop",
        },
        "leaked_special_tokens",
    ),
    (  # a detokenizer stripped harmony's special tokens, leaving the channel names
        "gptoss.macprovider.harmony_in_content",
        {
            "content": 'analysisWe need to answer "What is 2+2?". The answer is "four".'
            "assistantfinalfour",
            "calls": (),
            "results": (),
            "finish_reason": "stop",
        },
        "harmony_unparsed",
    ),
    (  # DeepSeek's tokens with fullwidth bars
        "deepseek.raw_tokens",
        {
            "content": '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>open_box<｜tool▁sep｜>{"box_id":'
            ' "box-1"}<｜tool▁call▁end｜>',
            "calls": (),
            "results": (),
            "finish_reason": "stop",
        },
        "leaked_special_tokens",
    ),
    (  # MiniMax XML calls left in content
        "minimax.raw_tool_call",
        {
            "content": '<minimax:tool_call>\n<invoke name="open_box">\n<parameter name="box_id">'
            "box-1</parameter>\n</invoke>\n</minimax:tool_call>",
            "calls": (),
            "results": (),
            "finish_reason": "stop",
        },
        "leaked_special_tokens",
    ),
    (  # gpt-oss commentary channel not parsed: empty content, finish stop, tokens spent
        "gptoss.imp.commentary_not_parsed",
        {
            "content": "",
            "calls": (),
            "results": (),
            "finish_reason": "stop",
            "reasoning": "We need to use the get_weather function.",
            "completion_tokens": 60,
        },
        "dropped_call",
    ),
    (  # Kimi on Dynamo: `</think>` stripped, the whole reply lands in reasoning_content
        "kimi.dynamo.skip_special_tokens",
        {
            "content": None,
            "calls": (),
            "results": (),
            "finish_reason": "stop",
            "reasoning": "The box chain ends here. The treasure is rusty-falcon-886.",
            "completion_tokens": 14,
        },
        "reasoning_swallows_answer",
    ),
    (  # GLM-4.7 on vLLM: a stray closing tag kept in the argument key
        "glm47.vllm.stray_tag_in_key",
        {
            "calls": (
                call(
                    arguments={"box_id</arg_key>": "box-1"},
                    arguments_raw='{"box_id</arg_key>": "box-1"}',
                    schema_valid=False,
                    schema_error="box_id: required property is missing",
                ),
            )
        },
        "malformed_argument_key",
    ),
    (  # GLM-4.7 on vLLM: value tag missed, arguments silently emptied
        "glm47.vllm.missing_arg_value_open",
        {
            "calls": (
                call(
                    arguments={},
                    arguments_raw="{}",
                    schema_valid=False,
                    schema_error="box_id: required property is missing",
                ),
            )
        },
        "empty_arguments",
    ),
    (  # DeepSeek API: reasoning_content required back
        "deepseek.api.missing_reasoning_content_400",
        {
            "calls": (),
            "results": (),
            "finish_reason": "none",
            "error_kind": "bad_request",
            "error_status": 400,
            "error_message": "HTTP 400",
            "error_body": "Missing `reasoning_content` field in the assistant message at "
            "message index 2.",
        },
        "http_reasoning_required",
    ),
    (  # DeepSeek's Anthropic-compatible API: thinking required back
        "deepseek.api.anthropic_thinking_400",
        {
            "calls": (),
            "results": (),
            "finish_reason": "none",
            "error_kind": "bad_request",
            "error_status": 400,
            "error_message": "HTTP 400",
            "error_body": '{"error": {"message": "The `content[].thinking` in the thinking mode '
            'must be passed back to the API."}}',
        },
        "http_reasoning_required",
    ),
    (  # vLLM with tool_choice required answers `stop` with calls
        "vllm.finish_reason_matrix",
        {"finish_reason": "stop", "finish_reason_raw": "stop"},
        "finish_stop_with_calls",
    ),
]


@pytest.mark.parametrize(
    ("changes", "kind"), [(c, k) for _, c, k in REAL_EXCERPTS], ids=[i for i, _, _ in REAL_EXCERPTS]
)
def test_real_failures_are_recognised(changes: dict[str, Any], kind: str) -> None:
    run = clean_run()
    step = replace(run.steps[1], **changes)
    found = run_checks(replace(run, steps=(run.steps[0], step)))
    assert kind in kinds(found), found


def test_named_tool_choice_may_finish_with_stop() -> None:
    params = {**TOOLS, "tool_choice": {"type": "function", "function": {"name": "open_box"}}}
    step = tool_step(0, finish_reason="stop", request_params=params)
    assert "finish_stop_with_calls" not in kinds(run_checks(Run(id="r", steps=(step,))))


def test_finish_length_with_truncated_calls_is_the_models() -> None:
    broken = call(json_valid=False, arguments=None, arguments_raw='{"box_id": "bo')
    step = tool_step(0, finish_reason="length", calls=(broken,))
    [finding] = [f for f in run_checks(Run(id="r", steps=(step,))) if f.kind.startswith("finish")]
    assert (finding.layer, finding.evidence["calls_complete"]) == ("model", False)


def test_kimi_dialect_expects_kimi_ids() -> None:
    run = clean_run(dialect="moonshot")
    found = [f for f in run_checks(run) if f.kind == "tool_call_id_format"]
    assert len(found) == 4 and found[0].evidence["expected"] == "kimi"


def test_duplicate_ids_within_a_step() -> None:
    twins = (call(0, box="box-9"), call(1, box="box-9", id="call_box-9_0"))
    found = with_step(tool_step(4, calls=twins))
    [dup] = [f for f in found if f.kind == "duplicate_tool_call_id"]
    assert dup.step == 4 and dup.evidence["same_step"] is True


def test_unknown_tool_is_the_models_and_tagged_name_the_providers() -> None:
    assert "unknown_tool" in kinds(with_step(tool_step(4, calls=(call(name="open_door"),))))
    tagged = with_step(tool_step(4, calls=(call(name="open_box<|tool_call_end|>"),)))
    assert "malformed_tool_name" in kinds(tagged) and "unknown_tool" not in kinds(tagged)


def test_tool_call_written_as_json_text() -> None:
    text = '```json\n{"name": "open_box", "arguments": {"box_id": "box-1"}}\n```'
    step = answer_step(4, content=text)
    assert "tool_call_as_text" in kinds(with_step(step))
    # Plain JSON answers that name no declared tool are answers.
    assert "tool_call_as_text" not in kinds(with_step(answer_step(4, content='{"a": 1}')))


def test_reasoning_tokens_counted_outside_completion() -> None:
    step = tool_step(4, completion_tokens=10, reasoning_tokens=12, total_tokens=322)
    assert "reasoning_tokens_outside_completion" in kinds(with_step(step))


def test_unreported_reasoning_tokens_are_one_finding_per_run_and_source() -> None:
    """Every step of a run, however many, is one finding at its first step, naming the
    steps it pools; a count of zero beside visible reasoning is one of its own."""
    thinking = "I should open the box and read what it says about the next one. " * 4
    missing: dict[str, Any] = {"reasoning_tokens": 8, "reasoning_tokens_source": "estimated"}
    steps = (
        tool_step(0),
        tool_step(1, **missing),
        tool_step(2, reasoning=thinking, reasoning_tokens=0),
        tool_step(3, **missing),
        answer_step(4, http_status=500, error_kind="server", **missing),  # failed: no count
        answer_step(5, reasoning=thinking, reasoning_tokens=0),
        answer_step(6, **missing),
    )
    found = [f for f in run_checks(clean_run(steps=steps)) if f.kind == "reasoning_tokens_missing"]
    assert [(f.step, f.severity, f.layer, f.evidence) for f in found] == [
        (
            1,
            "info",
            "provider",
            {"source": "estimated", "estimated": 24, "affected_steps": 3, "steps": [1, 6]},
        ),
        (
            2,
            "info",
            "provider",
            {
                "source": "reported",
                "reported": 0,
                "estimated": 2 * estimate_tokens(thinking),
                "affected_steps": 2,
                "steps": [2, 5],
            },
        ),
    ]
    # A short reasoning counted as zero may be a rounding: left alone.
    assert "reasoning_tokens_missing" not in kinds(with_step(tool_step(4, reasoning_tokens=0)))


def test_retried_rate_limits_are_warnings_and_a_final_failure_an_error() -> None:
    retried = ({"kind": "rate_limit", "status": 429, "message": "slow down", "body": None},)
    ok = tool_step(4, retry_errors=retried)
    [warning] = [f for f in with_step(ok) if f.kind == "http_rate_limit"]
    assert (warning.severity, warning.evidence["attempts"]) == ("warning", 1)
    failed = replace(ok, calls=(), results=(), error_kind="rate_limit", error_status=429)
    [error] = [f for f in with_step(failed) if f.kind == "http_rate_limit"]
    assert (error.severity, error.evidence["attempts"]) == ("error", 2)


def test_other_400s_are_classified() -> None:
    template = tool_step(
        4,
        calls=(),
        results=(),
        error_kind="bad_request",
        error_status=400,
        error_body="Error rendering chat template: jinja2 UndefinedError",
    )
    assert "http_template_error" in kinds(with_step(template))
    overflow = replace(template, error_kind="context_overflow", error_body="too long")
    [finding] = [f for f in with_step(overflow) if f.kind == "http_context_overflow"]
    assert finding.layer == "client"


def test_loops_are_reported_once_per_streak() -> None:
    steps = tuple(tool_step(i, box="box-1") for i in range(5))
    [loop] = [f for f in run_checks(Run(id="r", steps=steps)) if f.kind == "repeated_call"]
    assert (loop.step, loop.evidence["times"]) == (2, 5)


def test_tool_errors_and_recovery() -> None:
    failed = Result(0, "call_box-0_0", "open_box", '{"error": "no such box"}', "no such box")
    steps = (tool_step(0, box="box-0", results=(failed,)), tool_step(1, box="box-1"))
    [finding] = [f for f in run_checks(Run(id="r", steps=steps)) if f.kind == "tool_error"]
    # No recorded kind: the text says the box named does not exist, the model's mistake.
    assert (finding.layer, finding.severity) == ("model", "warning")
    assert finding.evidence["recovered_at_step"] == 1
    [unrecovered] = [f for f in run_checks(Run(id="r", steps=steps[:1])) if f.kind == "tool_error"]
    assert unrecovered.severity == "error" and unrecovered.evidence["recovered"] is False


@pytest.mark.parametrize(
    ("kind", "layer"),
    [
        ("not_found", "model"),
        ("invalid_arguments", "model"),
        # The tool rightly refused a well-formed call: what it named does not exist or is
        # not allowed. The model's mistake, not the tool's.
        ("missing", "model"),
        ("sandbox", "model"),
        ("rejected", "model"),
        ("timeout", "tool"),
        ("crashed", "tool"),
        (None, "tool"),  # not recorded (an import): judged by the call, which is well-formed
    ],
)
def test_tool_error_blames_by_its_recorded_kind(kind: str | None, layer: str) -> None:
    failed = Result(0, "call_box-0_0", "open_box", "Error: no", "no", error_kind=kind)
    steps = (tool_step(0, box="box-0", results=(failed,)),)
    [finding] = [f for f in run_checks(Run(id="r", steps=steps)) if f.kind == "tool_error"]
    assert finding.layer == layer
    assert finding.evidence["error_kind"] == kind


def test_reasoning_quoting_a_tool_error_is_not_a_leak() -> None:
    echo = Result(
        0,
        "x",
        "open_box<|tool_call_end|>",
        "unknown tool 'open_box<|tool_call_end|>'",
        "unknown tool 'open_box<|tool_call_end|>'",
    )
    first = tool_step(0, results=(echo,))
    second = tool_step(1, box="box-2", reasoning="The tool 'open_box<|tool_call_end|>' failed.")
    found = run_checks(Run(id="r", steps=(first, second)))
    assert "leaked_special_tokens" not in kinds(found)


def test_an_argument_key_the_schema_declares_is_not_malformed() -> None:
    # Moonshot's verifier schemas name properties `first name` and `\nxxx`: a call that uses
    # them is right, and the same key undeclared is still a host's markup in a key.
    schema = {"type": "object", "properties": {"first name": {"type": "string"}}}
    tools = {"tools": [{"type": "function", "function": {"name": "p", "parameters": schema}}]}
    arguments = {"first name": "Ada"}
    declared = tool_step(
        2,
        request_params=tools,
        calls=(call(name="p", arguments=arguments, arguments_raw=json.dumps(arguments)),),
        results=(Result(0, "call_box-1_0", "p", "ok", None),),
    )
    assert "malformed_argument_key" not in kinds(with_step(declared))
    undeclared = replace(declared, request_params=TOOLS)
    assert "malformed_argument_key" in kinds(with_step(undeclared))
