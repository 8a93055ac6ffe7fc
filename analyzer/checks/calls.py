"""What is wrong with the calls themselves: as text, dropped, broken arguments, bad names."""

from __future__ import annotations

import json
import re
from typing import Any

from analyzer.checks.emptied import emptied
from analyzer.checks.finish import budget_spent
from analyzer.checks.leaks import find_leaks
from analyzer.checks.reasoning import empty_turn
from analyzer.checks.records import Call, Finding, Layer, Run, Severity, Step
from analyzer.checks.text_calls import TextCalls, calls_in_text, fits_schema, own_syntax
from analyzer.checks.unseen import (
    UNEXPLAINED_MIN,
    arguments_in_text,
    decode_at,
    unexplained_tokens,
)
from traces.families import json_call_syntax

_NAME_OK = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_BAD_KEY = re.compile(r"[<>|\"{}\s]")

KINDS = frozenset(
    {
        "tool_call_as_text",
        "dropped_call",
        "object_arguments",
        "invalid_json_arguments",
        "arguments_merged",
        "schema_violation",
        "malformed_tool_name",
        "unknown_tool",
        "malformed_argument_key",
    }
)
"""Finding kinds this module emits (the catalogue describes each)."""


def concatenated_objects(raw: str) -> int:
    """How many JSON objects `raw` holds back to back (0 when it is not such a sequence).

    A stream that gives two calls the same index, or resends the whole arguments in every
    chunk, leaves `{..}{..}` in one call: invalid JSON the model never wrote.
    """
    position, count = 0, 0
    text = raw.strip()
    while position < len(text):
        decoded = decode_at(text, position)
        if decoded is None or not isinstance(decoded[0], dict):
            return 0
        position, count = decoded[1], count + 1
        while position < len(text) and text[position].isspace():
            position += 1
    return count


def malformed_name(name: str) -> bool:
    """Whether a tool name carries characters or pieces of a call format no tool has."""
    return not _NAME_OK.match(name) or bool(find_leaks(name))


def _confidence(found: TextCalls, own: bool, json_asked: bool) -> float:
    """How sure the text is a call: the family's exact syntax is beyond doubt; otherwise a
    text that is nothing but calls beats calls after prose, arguments that fit the schema
    beat ones that do not, named arguments beat keys that merely match parameters, and
    complete JSON beats JSON read with its last braces supplied. Where the client asked for
    JSON, the call's shape alone tells it from an answer: less sure."""
    if own:
        return 0.95
    score = 0.9 if found.placement == "whole" else 0.65
    if json_asked:
        score -= 0.1
    if all(call.schema_valid for call in found.calls):
        score += 0.05
    elif any(call.schema_valid is False for call in found.calls):
        score -= 0.15
    if not all(call.explicit for call in found.calls):
        score -= 0.1
    if "unclosed" in found.wrappers:
        score -= 0.1
    return round(score, 2)


def _json_asked(step: Step) -> dict[str, Any] | None:
    """The request's `response_format` when it asked for JSON (an object or a schema)."""
    response_format = step.request_params.get("response_format")
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") not in ("json_object", "json_schema"):
        return None
    return response_format


def _fits_schema_asked(response_format: dict[str, Any], value: Any) -> bool:
    """Whether `value` satisfies the schema a `json_schema` format gave (False: no schema to
    satisfy, or one no validator takes)."""
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    return isinstance(schema, dict) and fits_schema(schema, value) is True


def _the_answer(step: Step, found: TextCalls) -> bool:
    """Whether what reads as calls is the answer the client asked for: calls were forbidden
    (`tool_choice` none), or JSON was asked for and the text is that JSON, in the shape a
    schema asked for, or, with no schema to tell, anything short of a call beyond doubt.

    A host that constrains the whole turn to JSON (guided decoding) leaves the model no way
    to call but to write the call as JSON, so asking for JSON does not make every call-shaped
    text an answer: every value a call to a declared tool whose arguments fit its schema is
    a call. Prose around the JSON is no answer in the format asked for."""
    if step.request_params.get("tool_choice") == "none":
        return True
    response_format = _json_asked(step)
    if response_format is None:
        return False
    content = (step.content or "").strip()
    decoded = decode_at(content, 0)
    if decoded is None or decoded[1] != len(content):
        return False
    if _fits_schema_asked(response_format, decoded[0]):
        return True
    return not all(call.schema_valid for call in found.calls)


def tool_call_as_text(step: Step, run: Run) -> list[Finding]:
    """A call to a declared tool written as text in content instead of called, in any common
    shape (`text_calls`). The model's, unless the text is exactly its family's own plain-JSON
    call syntax (Llama, Mistral): then the host should have parsed it."""
    findings: list[Finding] = []
    content = step.content
    if step.calls or not content or "{" not in content or not step.tools or step.failed:
        return findings
    found = calls_in_text(content, step.tools)
    if found is None or _the_answer(step, found):
        return findings
    if found.placement == "trailing" and not all(
        call.explicit and call.schema_valid for call in found.calls
    ):
        return findings  # after prose only a call beyond doubt counts: it may be an example
    if find_leaks(content):
        return findings  # a family's call tokens: the host's parser missed them, reported as leaks
    syntax = json_call_syntax(run.model)
    own = own_syntax(found, syntax)
    response_format = _json_asked(step)
    findings.append(
        Finding(
            "tool_call_as_text",
            "error",
            "provider" if own else "model",
            step.index,
            {
                "field": "content",
                "tools": [call.name for call in found.calls],
                "calls": [
                    {
                        "name": call.name,
                        "arguments": json.dumps(call.arguments, ensure_ascii=False)[:200],
                        "shape": call.shape,
                        "schema_valid": call.schema_valid,
                    }
                    for call in found.calls[:10]
                ],
                "placement": found.placement,
                "wrappers": list(found.wrappers),
                "declared": sorted(step.tools)[:20],
                "family": syntax.name if syntax else None,
                "own_syntax": own,
                "response_format": response_format.get("type") if response_format else None,
                "excerpt": content[found.start : found.start + 200],
            },
            confidence=_confidence(found, own, response_format is not None),
        )
    )
    return findings


IN_REASONING_CONFIDENCE = 0.95
"""A call's complete arguments ending the reasoning: the call was made, its wrapper lost."""
UNEXPLAINED_CONFIDENCE = 0.85
"""Completion tokens the visible text does not account for: the count is an estimate."""
FINISHED_ONLY_CONFIDENCE = 0.5
"""No usage, only the host's finish_reason says a turn was generated: it may have been an
empty turn the model chose, as likely as a call the parser lost."""


def dropped_call(step: Step, run: Run) -> list[Finding]:
    """Tools offered, finish `stop`, nothing visible, and evidence that something was
    generated: completion tokens beyond the reasoning text, the reasoning ending with a
    call's arguments, or (without a token count) the host's own finish_reason, unless the
    thought was cut off mid-chain (`reasoning.empty_turn`). The host produced a call and lost
    it in parsing. With no finish_reason and no usage nothing says anything
    was generated: that is `empty_response`, the host failing before its first token."""
    findings: list[Finding] = []
    if step.failed or step.calls or (step.content or "").strip() or not step.tools:
        return findings
    if step.finish_reason not in ("stop", "none") or budget_spent(step):
        return findings  # a turn the budget cut short never finished a call to lose
    in_reasoning = arguments_in_text(step.reasoning, step.tools)
    unexplained = unexplained_tokens(step, run)
    if in_reasoning is not None:
        confidence = IN_REASONING_CONFIDENCE
    elif unexplained is not None:
        if unexplained < UNEXPLAINED_MIN:
            return (
                findings  # the tokens are all in the reasoning (reasoning_swallows_answer) or none
            )
        confidence = UNEXPLAINED_CONFIDENCE
    elif step.finish_reason_raw is not None:
        if empty_turn(step, run) is not None:
            return findings  # thinking cut off mid-chain, nothing counted beyond it: the empty turn
        confidence = FINISHED_ONLY_CONFIDENCE
    else:
        return findings  # no usage, no finish_reason: no evidence a token was generated
    evidence: dict[str, Any] = {
        "finish_reason": step.finish_reason_raw,
        "completion_tokens": step.completion_tokens,
        "reasoning_tokens": step.reasoning_tokens,
        "unexplained_tokens": unexplained,
        "tools_offered": sorted(step.tools),
    }
    if in_reasoning is not None:
        evidence["arguments_in_reasoning"] = in_reasoning
        evidence["reasoning_tail"] = (step.reasoning or "")[-200:]
    findings.append(
        Finding("dropped_call", "error", "provider", step.index, evidence, confidence=confidence)
    )
    return findings


def stream_cut(step: Step) -> bool:
    """Whether the step's calls come from a stream that never finished: no finish_reason
    arrived, so the last call may stop mid-arguments through no fault of the model.

    A stream cut so fails the call today (retried, never read as an answer); such a step is
    one stored before that, or imported from a log of parsed chunks, which cannot show the
    cut otherwise. A stream that sent its finish_reason but no `[DONE]` (the
    `stream_without_done` anomaly) was complete: its calls are whole as the model wrote them.
    """
    return step.streamed and step.finish_reason_raw is None


def malformed_keys(call: Call, schema: Any = None) -> list[str]:
    """Argument keys that carry pieces of a call format (`path</arg_key>`), other than those
    the tool's `schema` declares: a tool may well name a property `first name` (Moonshot's
    verifier schemas do), and a call that uses it is right."""
    if not isinstance(call.arguments, dict):
        return []
    properties = schema.get("properties") if isinstance(schema, dict) else None
    declared = properties if isinstance(properties, dict) else {}
    return [key for key in call.arguments if _BAD_KEY.search(key) and key not in declared]


def _call_finding(
    kind: str, severity: Severity, layer: Layer, step: Step, call: Call, **evidence: Any
) -> Finding:
    return Finding(
        kind, severity, layer, step.index, {"call": call.index, "tool": call.name, **evidence}
    )


def arguments(step: Step, run: Run) -> list[Finding]:
    """Invalid JSON, schema violations (first error path), objects (emptied arguments are
    `emptied`'s)."""
    findings: list[Finding] = []
    tools = step.tools
    for call in step.calls:
        if call.arguments_type == "object":
            findings.append(_call_finding("object_arguments", "warning", "provider", step, call))
        if emptied(call, tools.get(call.name)):
            continue  # no arguments at all: emptied.empty_arguments judges them
        if not call.json_valid:
            merged = concatenated_objects(call.arguments_raw)
            if merged > 1:
                findings.append(
                    _call_finding(
                        "arguments_merged",
                        "error",
                        "provider",
                        step,
                        call,
                        objects=merged,
                        arguments=call.arguments_raw[:200],
                    )
                )
                continue
            # A stream cut before its end truncates arguments the model may have finished.
            cut = stream_cut(step)
            findings.append(
                _call_finding(
                    "invalid_json_arguments",
                    "error",
                    "provider" if cut else "model",
                    step,
                    call,
                    arguments=call.arguments_raw[:200],
                    finish_reason=step.finish_reason_raw,
                    stream_cut=cut,
                )
            )
            continue
        if call.schema_valid is False and not malformed_keys(call, tools.get(call.name)):
            # A key carrying call syntax fails the schema too; names_and_keys blames the host.
            path, _, message = (call.schema_error or "").partition(": ")
            findings.append(
                _call_finding(
                    "schema_violation",
                    "error",
                    "model",
                    step,
                    call,
                    path=path,
                    message=message or call.schema_error,
                    arguments=call.arguments_raw[:200],
                )
            )
    return findings


def names_and_keys(step: Step, run: Run) -> list[Finding]:
    """Unknown tools, and names or argument keys carrying pieces of a call format."""
    findings: list[Finding] = []
    tools = step.tools
    for call in step.calls:
        if call.name not in tools:
            if malformed_name(call.name):
                findings.append(
                    _call_finding("malformed_tool_name", "error", "provider", step, call)
                )
            elif tools:
                findings.append(
                    _call_finding(
                        "unknown_tool", "error", "model", step, call, declared=sorted(tools)
                    )
                )
        bad = malformed_keys(call, tools.get(call.name))
        if bad:
            findings.append(
                _call_finding("malformed_argument_key", "error", "provider", step, call, keys=bad)
            )
    return findings
