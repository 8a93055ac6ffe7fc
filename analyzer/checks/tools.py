"""Tool errors, whose fault they were, and whether the model recovered from them.

Layer `tool` is for tools that fail: a crash, a time-out. A tool that answers a well-formed
call with a correct no (no such box, document or file; a path outside the sandbox; a locked
box) did its job, and the call was the model's mistake; a call the host's parser broke is the
host's. The recorded `error_kind` says which; a result without one (an import) is judged by
the call and, conservatively, by the error text, with a lower confidence.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from analyzer.checks.calls import concatenated_objects, malformed_keys, malformed_name, stream_cut
from analyzer.checks.emptied import emptied
from analyzer.checks.records import Call, Finding, Layer, Result, Run, Step
from traces.model import ToolErrorKind

KINDS = frozenset({"tool_error"})
"""Finding kinds this module emits (the catalogue describes each)."""

_MODELS = frozenset(
    {
        ToolErrorKind.NOT_FOUND,
        ToolErrorKind.INVALID_ARGUMENTS,
        ToolErrorKind.MISSING,
        ToolErrorKind.SANDBOX,
        ToolErrorKind.REJECTED,
    }
)
"""Error kinds that blame the call (the model's), not the tool that answered it."""

RECORDED = 1.0
"""Confidence of a layer read off a recorded error kind, or off a call the host garbled."""
BY_CALL = 0.9
"""An unrecorded kind, but the call itself was broken (invalid JSON, off the schema)."""
BY_TEXT = 0.7
"""An unrecorded kind judged by the error text alone."""
UNKNOWN = 0.5
"""Nothing says whose it was: the tool's, by default, as the one that reported failure."""

_NO_SUCH = re.compile(
    r"no such (?:file|directory|document|box|item|key|record|entity)|\bdoes ?n[o']t exist"
    r"|\bnot found\b|\bno document with\b|\bunknown (?:id|key|path|file)\b|\benoent\b"
    r"|\bcould not find\b|\bcannot find\b",
    re.IGNORECASE,
)
"""A tool saying the call named something that does not exist."""
_BROKE = re.compile(
    r"\btimed? ?out\b|\btraceback\b|\bexception\b|\bcrash|\binternal error\b"
    r"|\bsegmentation fault\b|\bout of memory\b|\bkilled\b",
    re.IGNORECASE,
)
"""A tool saying it failed itself (checked first: a crash that mentions a file is a crash)."""


def _garbled_by_host(call: Call, step: Step) -> bool:
    # A broken call the host's parser made out of a good one: see the named findings.
    if malformed_name(call.name) or malformed_keys(call, step.tools.get(call.name)):
        return True
    if concatenated_objects(call.arguments_raw) > 1:
        return True  # the stream merged calls: see arguments_merged
    if not call.json_valid and stream_cut(step):
        return True  # the stream never finished: see invalid_json_arguments
    return emptied(call, step.tools.get(call.name))  # see empty_arguments


def _unrecorded(result: Result, call: Call | None, step: Step) -> tuple[Layer, float]:
    """Whose fault a failure with no recorded kind is (an import, or a run stored before
    kinds were), and how sure that is."""
    if call is not None and (
        not call.json_valid or call.schema_valid is False or call.name not in step.tools
    ):
        return "model", BY_CALL
    text = result.error or ""
    if _BROKE.search(text):
        return "tool", BY_TEXT
    if _NO_SUCH.search(text):
        return "model", BY_TEXT
    return "tool", UNKNOWN


def _layer(result: Result, call: Call | None, step: Step) -> tuple[Layer, float]:
    if call is not None and _garbled_by_host(call, step):
        return "provider", RECORDED
    if result.error_kind is not None:
        return ("model" if result.error_kind in _MODELS else "tool"), RECORDED
    return _unrecorded(result, call, step)


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
            layer, confidence = _layer(result, calls.get(result.index), step)
            yield Finding(
                "tool_error",
                "warning" if recovered_at is not None else "error",
                layer,
                step.index,
                {
                    "call": result.index,
                    "tool": result.name,
                    "error_kind": result.error_kind,
                    "error": result.error[:300],
                    "recovered": recovered_at is not None,
                    "recovered_at_step": recovered_at,
                },
                confidence,
            )
