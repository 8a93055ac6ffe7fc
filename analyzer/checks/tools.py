"""Tool errors, whose fault they were, and whether the model recovered from them."""

from __future__ import annotations

from collections.abc import Iterator

from analyzer.checks.calls import concatenated_objects, malformed_keys, malformed_name
from analyzer.checks.records import Call, Finding, Layer, Run, Step

KINDS = frozenset({"tool_error"})
"""Finding kinds this module emits (the catalogue describes each)."""


def _layer(call: Call | None, step: Step) -> Layer:
    # Arguments the model got wrong make the tool fail; otherwise the tool itself did.
    if call is None:
        return "tool"
    if malformed_name(call.name) or malformed_keys(call):
        return "provider"
    if concatenated_objects(call.arguments_raw) > 1:
        return "provider"  # the stream merged calls: see arguments_merged
    if not call.json_valid and any(a.get("kind") == "stream_without_done" for a in step.anomalies):
        return "provider"  # the stream was cut mid-call: see invalid_json_arguments
    if call.arguments == {} and (step.tools.get(call.name) or {}).get("required"):
        return "provider"  # the parser emptied them: see empty_arguments
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
                _layer(calls.get(result.index), step),
                step.index,
                {
                    "call": result.index,
                    "tool": result.name,
                    "error": result.error[:300],
                    "recovered": recovered_at is not None,
                    "recovered_at_step": recovered_at,
                },
            )
