"""What a conversation's requests say about the run they make, shared by `traces import`
(a log read line by line) and `traces proxy` (a client's requests as they arrive): the tool
results the next request sends back for a step's calls, and how the run ended."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from traces.model import RunOutcome, RunStatus, StepRecord, Termination, ToolResultRecord
from traces.store.rows import to_json
from traces.token_totals import TokenTotals


@dataclass
class Tally:
    """Totals of the steps a run stored so far."""

    steps: int = 0
    tool_calls: int = 0
    tokens: TokenTotals = field(default_factory=TokenTotals)

    def add(self, step: StepRecord) -> None:
        """Count one stored step."""
        self.steps += 1
        self.tool_calls += len(step.tool_calls)
        self.tokens.add(step)


def run_outcome(last: StepRecord, tally: Tally, ends: str) -> RunOutcome:
    """How a run read from a conversation ended, from its last step; `ends` says what
    stopped the conversation where it stops (`the log ends`, `the client went idle`)."""
    status, termination = RunStatus.COMPLETED, Termination.COMPLETED
    error: str | None = None
    answer = (last.content or "").strip()
    if last.error is not None:
        status = RunStatus.FAILED
        overflow = last.error.kind == "context_overflow"
        termination = Termination.CONTEXT_OVERFLOW if overflow else Termination.PROVIDER_ERROR
        error = last.error.message
    elif last.tool_calls:
        # The log stops while calls wait for their results (every K2VV tool-call line):
        # nothing failed, but the episode did not reach an answer within what was logged.
        termination = Termination.MAX_STEPS
        error = f"{ends} after step {last.index}'s {len(last.tool_calls)} tool call(s)"
    elif not answer:
        status, termination = RunStatus.FAILED, Termination.MODEL_ERROR
        why = "finish_reason=length" if last.finish_reason == "length" else "empty turn"
        error = f"step {last.index}: the model returned no answer and no tool call ({why})"
    return RunOutcome(
        status=status,
        termination=termination,
        ended_at=last.started_at + timedelta(milliseconds=last.latency_ms),
        final_answer=answer if termination is Termination.COMPLETED else None,
        error=error,
        steps=tally.steps,
        tool_calls=tally.tool_calls,
        tool_errors=0,
        **tally.tokens.as_fields(),
    )


def tool_results(
    step: StepRecord, messages: list[dict[str, Any]], sent: int, duration_ms: float
) -> list[ToolResultRecord]:
    """The tool messages of the next request (`messages`) after the replayed assistant turn
    at position `sent` (the step's request held `sent` messages), matched to the step's calls.

    A message answers the call whose id (as sent back) it names; otherwise the first call
    not answered yet, which is how a template that ignores ids pairs them. `duration_ms`
    bounds the tools' time (0 when unknown).
    """
    replay_calls = messages[sent].get("tool_calls")
    ids = [
        c.get("id") if isinstance(c, dict) else None
        for c in (replay_calls if isinstance(replay_calls, list) else [])
    ]
    ended = step.started_at + timedelta(milliseconds=step.latency_ms)
    duration = duration_ms
    answered: set[int] = set()
    results: list[ToolResultRecord] = []
    position = sent + 1
    while position < len(messages) and messages[position].get("role") == "tool":
        message = messages[position]
        position += 1
        call_id = message.get("tool_call_id")
        index = _answered_call(call_id, ids, answered)
        answered.add(index)
        name = step.tool_calls[index].name if index < len(step.tool_calls) else ""
        results.append(
            ToolResultRecord(
                index=index,
                tool_call_id=call_id if isinstance(call_id, str) else None,
                name=name or str(message.get("name") or ""),
                output=_text_of(message.get("content")),
                started_at=ended,
                duration_ms=duration,
            )
        )
    return results


def _answered_call(call_id: Any, ids: list[Any], answered: set[int]) -> int:
    if call_id is not None:
        for index, known in enumerate(ids):
            if known == call_id and index not in answered:
                return index
    index = 0
    while index in answered:
        index += 1
    return index


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: the text ones
        return "".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and "text" in p
        )
    return "" if content is None else to_json(content)
