"""Tool errors, whose fault they were, and whether the model recovered from them."""

from __future__ import annotations

from collections.abc import Iterator

from analyzer.checks.calls import concatenated_objects, malformed_keys, malformed_name
from analyzer.checks.records import Call, Finding, Layer, Result, Run, Step
from traces.model import ToolErrorKind

KINDS = frozenset({"tool_error"})
"""Finding kinds this module emits (the catalogue describes each)."""

_CALL_FAULTS = frozenset({ToolErrorKind.NOT_FOUND, ToolErrorKind.INVALID_ARGUMENTS})
"""Error kinds that blame the call, not the tool that refused it."""


def _garbled_by_host(call: Call, step: Step) -> bool:
    # A broken call the host's parser made out of a good one: see the named findings.
    if malformed_name(call.name) or malformed_keys(call):
        return True
    if concatenated_objects(call.arguments_raw) > 1:
        return True  # the stream merged calls: see arguments_merged
    if not call.json_valid and any(a.get("kind") == "stream_without_done" for a in step.anomalies):
        return True  # the stream was cut mid-call: see invalid_json_arguments
    # the parser emptied them: see empty_arguments
    return call.arguments == {} and bool((step.tools.get(call.name) or {}).get("required"))


def _layer(result: Result, call: Call | None, step: Step) -> Layer:
    if call is not None and _garbled_by_host(call, step):
        return "provider"
    if result.error_kind is not None:
        return "model" if result.error_kind in _CALL_FAULTS else "tool"
    # No recorded kind (an import, or a run stored before kinds were): judge by the call.
    if call is None:
        return "tool"
    if not call.json_valid or call.schema_valid is False or call.name not in step.tools:
        return "model"
    return "tool"


def tool_errors(run: Run) -> Iterator[Finding]:
    """Each failed tool execution; `recovered` when a later call to that tool succeeded."""
    for position, step in enumerate(run.steps):
        calls = {call.index: call for call in step.calls}
        for result in step.results:
            if result.error is None:
                continue
            recovered_at = next(
                (
                    later.index
                    for later in run.steps[position + 1 :]
                    if any(r.name == result.name and r.error is None for r in later.results)
                ),
                None,
            )
            yield Finding(
                "tool_error",
                "warning" if recovered_at is not None else "error",
                _layer(result, calls.get(result.index), step),
                step.index,
                {
                    "call": result.index,
                    "tool": result.name,
                    "error_kind": result.error_kind,
                    "error": result.error[:300],
                    "recovered": recovered_at is not None,
                    "recovered_at_step": recovered_at,
                },
            )
