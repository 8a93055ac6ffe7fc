"""Rebuilding where an interrupted run stopped: the conversation its next request carries,
its totals, and its tool world, restored by replaying every recorded call into a fresh one.

The conversation is the last recorded request (`request_messages`), each message checked
against the hash it is stored under, then that step's answer as it went back and its tool
results: exactly the next request the run would have sent. The world is rebuilt from the
task and seed, and every recorded call is made again, in order, through the harness's own
`execute_call`; a result that differs from the recorded one (a corpus edited since, a seed
folder changed) refuses the resumption, naming the call, because the model would go on from
a world that is not the one it saw.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from traces.harness import (
    PendingTools,
    ResumePoint,
    StepEnding,
    execute_call,
)
from traces.model import ToolCallRecord, ToolResultRecord, message_hash
from traces.resume.recorded import refuse
from traces.resume.stored import RunHistory, StoredResult, StoredStep
from traces.tasks import Task, render_prompts
from traces.token_totals import TokenTotals
from traces.tools.base import ToolEnvironment

_SHOWN = 80
"""Characters of a diverging tool output shown in the refusal."""


async def restore(
    history: RunHistory, task: Task, environment: ToolEnvironment
) -> tuple[tuple[str, str], ResumePoint]:
    """Replay the run's recorded calls into `environment`, a fresh world of its task and
    seed; its prompts, and where it resumes (resumption number 0 until the run is claimed).
    One-line refusals when it cannot be."""
    run = history.run
    prompts = render_prompts(task, environment)
    steps = history.steps
    if [s.index for s in steps] != list(range(len(steps))):
        raise refuse(run, "its steps are not numbered 0, 1, 2…: the store lost some")
    if not steps:
        messages = [
            {"role": "system", "content": prompts[0]},
            {"role": "user", "content": prompts[1]},
        ]
        point = _point(history, messages, recorded=0, next_index=0)
        return prompts, point
    if history.calls and not environment.replayable:
        raise refuse(
            run,
            f"its tools ({task.environment.type} world) cannot be replayed, so the world "
            "it left cannot be restored",
        )
    messages = _last_request(history, prompts)
    last = steps[-1]
    tool_names = {spec["function"]["name"] for spec in environment.tool_specs()}
    for step in steps[:-1]:
        if step.error is not None or not history.calls.get(step.index):
            raise refuse(run, f"step {step.index} ended the run, yet later steps are stored")
        await _replay(history, step, environment, tool_names)
    if last.error is not None or not history.calls.get(last.index):
        ending = StepEnding(last.index, last.error, last.content, last.finish_reason)
        point = _point(history, messages, recorded=len(messages), next_index=last.index + 1)
        return prompts, _with(point, ending=ending)
    reply = history.last_reply
    if reply is None:
        raise refuse(run, f"step {last.index}'s answer as it went back is not in the store")
    recorded = len(messages)
    messages.append(reply)
    calls = history.calls[last.index]
    results = history.results.get(last.index, [])
    if not results:
        # Stopped between the step and its tools' results: they run again, as they would
        # have, before the next request.
        ids = [c.get("id") for c in reply.get("tool_calls") or []]
        reply_ids = [ids[i] if i < len(ids) else None for i in range(len(calls))]
        point = _point(history, messages, recorded=recorded, next_index=last.index + 1)
        return prompts, _with(point, pending=PendingTools(last.index, calls, reply_ids))
    await _replay(history, last, environment, tool_names)
    messages.extend(
        {"role": "tool", "tool_call_id": r.tool_call_id or "", "content": r.output} for r in results
    )
    point = _point(history, messages, recorded=recorded, next_index=last.index + 1)
    return prompts, point


def _last_request(history: RunHistory, prompts: tuple[str, str]) -> list[dict[str, Any]]:
    """The last recorded request's messages, each checked against its stored hash, and its
    system and user prompts against the task's, rendered for this seed."""
    run = history.run
    last = history.steps[-1]
    request = history.last_request
    if len(request) != last.request_message_count:
        raise refuse(
            run,
            f"step {last.index}'s request has {last.request_message_count} messages, "
            f"the store gives back {len(request)}",
        )
    for position, (digest, message) in enumerate(request):
        if message_hash(message) != digest:
            raise refuse(
                run, f"message {position} of step {last.index}'s request does not match its hash"
            )
    expected = [{"role": "system", "content": prompts[0]}, {"role": "user", "content": prompts[1]}]
    if [m for _, m in request[:2]] != expected:
        raise refuse(run, "its task's prompts, rendered for its seed, are not the ones it sent")
    return [message for _, message in request]


async def _replay(
    history: RunHistory, step: StoredStep, environment: ToolEnvironment, tool_names: set[str]
) -> None:
    """Make the step's recorded calls again, in order; refuse at the first that differs."""
    run = history.run
    calls = history.calls[step.index]
    results = {r.call_index: r for r in history.results.get(step.index, [])}
    if set(results) != {c.index for c in calls}:
        raise refuse(run, f"step {step.index}'s tool results are not all in the store")
    for call in calls:
        recorded = results[call.index]
        replayed = await execute_call(environment, tool_names, call, recorded.tool_call_id)
        if not _same(recorded, replayed):
            raise refuse(run, _divergence(step.index, call, recorded, replayed))


def _same(recorded: StoredResult, replayed: ToolResultRecord) -> bool:
    return (recorded.output, recorded.error, recorded.error_kind) == (
        replayed.output,
        replayed.error,
        replayed.error_kind,
    )


def _divergence(
    index: int, call: ToolCallRecord, recorded: StoredResult, replayed: ToolResultRecord
) -> str:
    return (
        f"replaying step {index}'s call {call.index} ({call.name}) into a fresh world gave "
        f"{_short(replayed.output)}, the run recorded {_short(recorded.output)}: its world "
        "cannot be restored"
    )


def _short(text: str) -> str:
    return repr(text if len(text) <= _SHOWN else text[:_SHOWN] + "…")


def _point(
    history: RunHistory, messages: list[dict[str, Any]], *, recorded: int, next_index: int
) -> ResumePoint:
    """A resume point with the run's totals summed from its stored steps and results."""
    tokens = TokenTotals()
    for step in history.steps:
        tokens.add_counts(answered=step.error is None, counts=step.tokens)
    return ResumePoint(
        number=0,
        next_index=next_index,
        messages=list(messages),
        recorded=recorded,
        steps=len(history.steps),
        tool_calls=sum(len(calls) for calls in history.calls.values()),
        tool_errors=sum(
            1 for results in history.results.values() for r in results if r.error is not None
        ),
        tokens=tokens,
    )


def _with(
    point: ResumePoint, *, pending: PendingTools | None = None, ending: StepEnding | None = None
) -> ResumePoint:
    return replace(point, pending=pending, ending=ending)
