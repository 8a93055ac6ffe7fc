"""What the requests' history shows: tool results the client paired with no call, or calls
it left unanswered.

Every `tool` message must answer a call id an earlier assistant message made, and every call
must be answered before the conversation moves on; otherwise the host pairs results with the
wrong calls, or refuses the request (OpenAI-compatible servers answer 400). The client built
the request, so it is at fault. What the host did with the history it was sent (kept the
reasoning, the tool results) is the ledger's (`kept`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from analyzer.checks.records import Finding, Run, Step
from analyzer.checks.requests import call_ids, request_increments

KINDS = frozenset({"tool_result_unmatched_id", "tool_call_unanswered"})

_TOOL_ROLES = frozenset({"tool", "function"})


@dataclass
class _Pairing:
    """Walks a run's requests once, new messages only when a request extends the last."""

    run: Run
    unmatched: list[Finding] = field(default_factory=list)
    unanswered: list[Finding] = field(default_factory=list)

    def walk(self) -> None:
        reported: set[tuple[str, int, str]] = set()
        available: dict[str, None] = {}  # ordered: the evidence lists the latest ids
        for step, start in request_increments(self.run):
            if start == 0:
                available = {}
            self._scan(step, step.request_messages, start, available, reported)

    def _scan(
        self,
        step: Step,
        messages: Sequence[Mapping[str, Any]],
        start: int,
        available: dict[str, None],
        reported: set[tuple[str, int, str]],
    ) -> None:
        # Counts of the open calls' ids in plain dicts: a `Counter` costs a Python-level
        # constructor per step, and this runs for every step of every run.
        open_at: int | None = None
        pending: dict[str, int] = {}
        for position in range(start, len(messages) + 1):
            message = messages[position] if position < len(messages) else None
            role = message.get("role") if message is not None else None
            if role in _TOOL_ROLES and message is not None:
                answered = str(message.get("tool_call_id") or "")
                count = pending.get(answered, 0)
                if count > 0:
                    pending[answered] = count - 1
                elif (
                    answered not in available
                    and (key := ("unmatched", position, answered)) not in reported
                ):
                    reported.add(key)
                    self.unmatched.append(
                        Finding(
                            "tool_result_unmatched_id",
                            "error",
                            "client",
                            step.index,
                            {
                                "tool_call_id": answered,
                                "position": position,
                                "available_ids": list(available)[-20:],
                            },
                        )
                    )
                continue
            if open_at is not None and role != "system":
                # The conversation moved on (or the request ended): what is pending is lost.
                # (Mostly every call was answered: nothing to look for.)
                if any(pending.values()):
                    self._report_pending(step, messages, open_at, pending, reported)
                open_at, pending = None, {}
            if role == "assistant" and message is not None:
                ids = call_ids(message)
                if ids:
                    available.update(dict.fromkeys(ids))
                    open_at, pending = position, _counts(ids)

    def _report_pending(
        self,
        step: Step,
        messages: Sequence[Mapping[str, Any]],
        at: int,
        pending: dict[str, int],
        reported: set[tuple[str, int, str]],
    ) -> None:
        left = {call_id: count for call_id, count in pending.items() if count > 0}
        for index, call_id in enumerate(call_ids(messages[at])):
            key = ("unanswered", at, f"{index}:{call_id}")
            if left.get(call_id, 0) <= 0 or key in reported:
                continue
            left[call_id] -= 1
            reported.add(key)
            self.unanswered.append(
                Finding(
                    "tool_call_unanswered",
                    "warning",
                    "client",
                    step.index,
                    {"tool_call_id": call_id, "call": index, "position": at},
                )
            )


def _counts(ids: Sequence[str]) -> dict[str, int]:
    """How many times each id occurs in `ids`."""
    counts: dict[str, int] = {}
    for call_id in ids:
        counts[call_id] = counts.get(call_id, 0) + 1
    return counts


def tool_call_pairing(run: Run) -> Iterator[Finding]:
    """Tool results answering an id no earlier call made, and calls left unanswered; each
    reported once, on the first request that carries it."""
    pairing = _Pairing(run)
    pairing.walk()
    yield from pairing.unmatched
    yield from pairing.unanswered
