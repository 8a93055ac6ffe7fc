"""What is wrong with the calls themselves: as text, dropped, broken arguments, bad names."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from analyzer.checks.leaks import find_leaks
from analyzer.checks.records import Call, Finding, Layer, Run, Severity, Step
from traces.normalize import estimate_tokens

_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")
_NAME_OK = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_BAD_KEY = re.compile(r"[<>|\"{}\s]")
_NAME_KEYS = ("name", "function", "tool", "tool_name")
_ARGUMENT_KEYS = ("arguments", "parameters", "args", "input")

UNEXPLAINED_MIN = 8
"""Completion tokens beyond the visible text that count as 'something was generated'; the
estimate of visible tokens is rough, so a handful of tokens of slack is not evidence."""


def _json_objects(text: str) -> list[Any]:
    stripped = _FENCE.sub("", text.strip())
    try:
        whole = json.loads(stripped)
        return whole if isinstance(whole, list) else [whole]
    except ValueError:
        pass
    objects = []
    for line in stripped.splitlines():
        try:
            objects.append(json.loads(line))
        except ValueError:
            if line.strip():
                return []
    return objects


def _as_call(obj: Any, tools: dict[str, dict[str, Any]]) -> str | None:
    if not isinstance(obj, dict):
        return None
    name = next((obj[k] for k in _NAME_KEYS if isinstance(obj.get(k), str)), None)
    if isinstance(obj.get("function"), dict):
        name = obj["function"].get("name")
        obj = obj["function"]
    has_arguments = any(k in obj for k in _ARGUMENT_KEYS)
    return name if name in tools and has_arguments else None


def malformed_name(name: str) -> bool:
    """Whether a tool name carries characters or pieces of a call format no tool has."""
    return not _NAME_OK.match(name) or bool(find_leaks(name))


def tool_call_as_text(step: Step, run: Run) -> Iterator[Finding]:
    """The model wrote a call to a declared tool as JSON text in content instead of calling."""
    if step.calls or not step.content or not step.tools or find_leaks(step.content):
        return  # leaked call tokens are the parser's fault, reported as leaks
    names = [_as_call(obj, step.tools) for obj in _json_objects(step.content)]
    if names and all(names):
        yield Finding(
            "tool_call_as_text",
            "error",
            "model",
            step.index,
            {"field": "content", "tools": names, "excerpt": step.content[:200]},
        )


def unexplained_tokens(step: Step) -> int | None:
    """Completion tokens not accounted for by the visible reasoning and content (estimated)."""
    if step.completion_tokens is None:
        return None
    visible = estimate_tokens(step.reasoning or "") + estimate_tokens(step.content or "")
    return step.completion_tokens - visible


def dropped_call(step: Step, run: Run) -> Iterator[Finding]:
    """Tools offered, finish `stop`, nothing visible, yet completion tokens were generated
    beyond the reasoning text: the host produced a call and lost it in parsing."""
    if step.failed or step.calls or (step.content or "").strip() or not step.tools:
        return
    if step.finish_reason not in ("stop", "none"):
        return
    unexplained = unexplained_tokens(step)
    if unexplained is not None and unexplained < UNEXPLAINED_MIN:
        return  # the tokens are all in the reasoning: see reasoning_swallows_answer
    yield Finding(
        "dropped_call",
        "error",
        "provider",
        step.index,
        {
            "finish_reason": step.finish_reason_raw,
            "completion_tokens": step.completion_tokens,
            "reasoning_tokens": step.reasoning_tokens,
            "unexplained_tokens": unexplained,
            "tools_offered": sorted(step.tools),
        },
    )


def _call_finding(
    kind: str, severity: Severity, layer: Layer, step: Step, call: Call, **evidence: Any
) -> Finding:
    return Finding(
        kind, severity, layer, step.index, {"call": call.index, "tool": call.name, **evidence}
    )


def arguments(step: Step, run: Run) -> Iterator[Finding]:
    """Invalid JSON, schema violations (first error path), required fields emptied, objects."""
    tools = step.tools
    for call in step.calls:
        if call.arguments_type == "object":
            yield _call_finding("object_arguments", "warning", "provider", step, call)
        if not call.json_valid:
            yield _call_finding(
                "invalid_json_arguments",
                "error",
                "model",
                step,
                call,
                arguments=call.arguments_raw[:200],
            )
            continue
        schema = tools.get(call.name)
        required = schema.get("required") if schema else None
        if call.arguments == {} and required:
            # Real parsers empty the arguments when they miss a value tag (GLM on vLLM).
            yield _call_finding(
                "empty_arguments", "error", "provider", step, call, required=required
            )
        elif call.schema_valid is False:
            path, _, message = (call.schema_error or "").partition(": ")
            yield _call_finding(
                "schema_violation",
                "error",
                "model",
                step,
                call,
                path=path,
                message=message or call.schema_error,
                arguments=call.arguments_raw[:200],
            )


def names_and_keys(step: Step, run: Run) -> Iterator[Finding]:
    """Unknown tools, and names or argument keys carrying pieces of a call format."""
    tools = step.tools
    for call in step.calls:
        if call.name not in tools:
            if malformed_name(call.name):
                yield _call_finding("malformed_tool_name", "error", "provider", step, call)
            elif tools:
                yield _call_finding(
                    "unknown_tool", "error", "model", step, call, declared=sorted(tools)
                )
        if isinstance(call.arguments, dict):
            bad = [k for k in call.arguments if _BAD_KEY.search(k)]
            if bad:
                yield _call_finding(
                    "malformed_argument_key", "error", "provider", step, call, keys=bad
                )
