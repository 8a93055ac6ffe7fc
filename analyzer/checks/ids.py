"""Tool-call ids: the family's format, present, and unique across the run.

Kimi's template renders ids back to the model verbatim and its parser accepts only
`functions.NAME:IDX`: a host handing out `call_…` ids teaches the model ids the parser then
rejects, so the turns after break (calls dropped, markup dumped into content). Such hosts
often get the first turn right and fail from the second on; the evidence says where it began.
A repeated id makes the next request ambiguous (which result answers which call), and some
hosts refuse it outright.
"""

from __future__ import annotations

from collections.abc import Iterator

from analyzer.checks.onset import onset
from analyzer.checks.records import Finding, Run, Severity, Step
from analyzer.checks.requests import call_ids, request_increments
from traces.dialects import DIALECTS
from traces.families import KIMI_ID, expected_id_style
from traces.wire_forms import IdStyle

KINDS = frozenset({"tool_call_id_missing", "tool_call_id_format", "duplicate_tool_call_id"})
"""Finding kinds this module emits (the catalogue describes each)."""


_FAMILY_IDS: dict[IdStyle, tuple[str, str]] = {"kimi": ("kimi", KIMI_ID.pattern)}
"""Id styles a family's own parser insists on: (family, the pattern its ids must match)."""


def _expected_format(run: Run) -> IdStyle | None:
    # The model family decides (SGLang's kimi_k2 parser handed out `call_<uuid>` ids under a
    # generic dialect until it learned the family's form, sgl-project/sglang#9606); a family
    # that writes no ids of its own gets the host's `call_…`.
    dialect = DIALECTS.get(run.dialect or "")
    return expected_id_style(run.model, dialect.family if dialect else None)


def id_format(run: Run) -> Iterator[Finding]:
    """Ids missing, or in a format other than the model family's or the dialect's
    (`call_…` vs `functions.NAME:IDX`): an error where the family's own parser rejects them,
    with its pattern and the step the wrong ids began at."""
    expected = _expected_format(run)
    family = _FAMILY_IDS.get(expected) if expected is not None else None

    def wrong(step: Step) -> bool:
        return any(c.id_format not in ("missing", expected) for c in step.calls)

    began: dict[str, object] | None = None
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
                if began is None:
                    began = onset(run, step.index, wrong, lambda s: bool(s.calls))
                evidence: dict[str, object] = {
                    "call": call.index,
                    "id": call.id,
                    "format": call.id_format,
                    "expected": expected,
                    "dialect": run.dialect,
                    **began,
                }
                if family is not None:
                    evidence["family"], evidence["pattern"] = family
                severity: Severity = "error" if family is not None else "warning"
                yield Finding("tool_call_id_format", severity, "provider", step.index, evidence)


def duplicate_ids(run: Run) -> Iterator[Finding]:
    """An id used twice within a step, reused from an earlier step's response, or reused from
    the request's history: the ids the client sent back, which a replay policy may have
    renumbered (`functions.NAME:IDX`), so they need not be any response's."""
    seen: dict[str, tuple[int, int]] = {}
    sent: dict[str, int] = {}  # id -> position of the first request message that carried it
    for step, start in request_increments(run):
        if start == 0:
            sent = {}
        messages = step.request_messages
        for position in range(start, len(messages)):
            if messages[position].get("tool_calls"):
                for call_id in call_ids(messages[position]):
                    sent.setdefault(call_id, position)
        for call in step.calls:
            if not call.id:
                continue
            first = seen.get(call.id)
            at = sent.get(call.id)
            if first is None and at is None:
                seen[call.id] = (step.index, call.index)
                continue
            yield Finding(
                "duplicate_tool_call_id",
                "error",
                "provider",
                step.index,
                {
                    "call": call.index,
                    "id": call.id,
                    "first_step": first[0] if first else None,
                    "first_call": first[1] if first else None,
                    "same_step": first is not None and first[0] == step.index,
                    "request_position": at,
                },
            )
