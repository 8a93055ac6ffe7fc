"""Tool-call ids: the family's format, present, and unique across the run.

Kimi's template expects `functions.NAME:IDX` and degrades after many steps when a host hands
out `call_…` ids; a repeated id makes the next request ambiguous (which result answers which
call), and some hosts refuse it outright.
"""

from __future__ import annotations

from collections.abc import Iterator

from analyzer.checks.records import Finding, Run
from traces.dialects import DIALECTS
from traces.families import expected_id_style

KINDS = frozenset({"tool_call_id_missing", "tool_call_id_format", "duplicate_tool_call_id"})
"""Finding kinds this module emits (the catalogue describes each)."""


def _expected_format(run: Run) -> str | None:
    # The model family decides (SGLang's kimi_k2 parser handed out `call_<uuid>` ids under a
    # generic dialect until it learned the family's form, sgl-project/sglang#9606); a family
    # that writes no ids of its own gets the host's `call_…`.
    dialect = DIALECTS.get(run.dialect or "")
    return expected_id_style(run.model, dialect.family if dialect else None)


def id_format(run: Run) -> Iterator[Finding]:
    """Ids missing, or in a format other than the model family's or the dialect's
    (`call_…` vs `functions.NAME:IDX`)."""
    expected = _expected_format(run)
    for step in run.steps:
        for call in step.calls:
            if call.id_format == "missing":
                yield Finding(
                    "tool_call_id_missing",
                    "warning",
                    "provider",
                    step.index,
                    {"call": call.index, "tool": call.name},
                )
            elif expected is not None and call.id_format != expected:
                yield Finding(
                    "tool_call_id_format",
                    "warning",
                    "provider",
                    step.index,
                    {
                        "call": call.index,
                        "id": call.id,
                        "format": call.id_format,
                        "expected": expected,
                        "dialect": run.dialect,
                    },
                )


def duplicate_ids(run: Run) -> Iterator[Finding]:
    """An id used twice within a step, or reused from an earlier step."""
    seen: dict[str, tuple[int, int]] = {}
    for step in run.steps:
        for call in step.calls:
            if not call.id:
                continue
            if call.id in seen:
                first_step, first_call = seen[call.id]
                yield Finding(
                    "duplicate_tool_call_id",
                    "error",
                    "provider",
                    step.index,
                    {
                        "call": call.index,
                        "id": call.id,
                        "first_step": first_step,
                        "first_call": first_call,
                        "same_step": first_step == step.index,
                    },
                )
            else:
                seen[call.id] = (step.index, call.index)
