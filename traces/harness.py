"""The agent loop: ask the model, run its tool calls, send results and reasoning back, repeat.

One coroutine is one run. Every step is handed to the recorder and awaited, so a step is
durable before the next request leaves; everything else (tools, parsing) stays out of the way
of the endpoint's latency.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from traces.client import EndpointClient
from traces.elapsed import elapsed_ms
from traces.exchange import Exchange
from traces.model import (
    ExchangeError,
    RunOutcome,
    RunStatus,
    StepRecord,
    Termination,
    ToolCallRecord,
    ToolErrorKind,
    ToolResultRecord,
    message_hash,
)
from traces.normalize import Reading, read_message, step_from_exchange
from traces.replay import ReplayPolicy, replay_message
from traces.retry import RetryPolicy, send_with_retries
from traces.store.recorder import Recorder
from traces.token_totals import TokenTotals
from traces.tools.base import ToolEnvironment, ToolOutcome
from traces.tools.schema_check import ArgumentChecker

TOOL_TIMEOUT_S = 120.0
"""How long one tool call may run before it fails as `timeout` and the run goes on. The
shipped tools answer in milliseconds; the limit is for environments that await I/O."""


class HarnessSettings(BaseModel):
    """How the loop talks to the endpoint."""

    model: str = Field(description="Model id sent in every request.")
    max_steps: int = Field(description="Model calls allowed before the run stops.")
    stream: bool = Field(default=False, description="Stream responses (SSE).")
    seed: int | None = Field(default=None, description="Request `seed` field, when set.")
    temperature: float | None = Field(default=None, description="Sampling temperature.")
    max_tokens: int | None = Field(default=None, description="Per-step completion token cap.")
    replay: ReplayPolicy = Field(
        default_factory=ReplayPolicy,
        description="How each turn's reasoning, tool-call ids and arguments go back.",
    )
    extra_body: dict[str, Any] = Field(
        default_factory=dict, description="Provider-specific body fields sent every request."
    )
    retry: RetryPolicy = Field(
        default_factory=RetryPolicy, description="When, and after how long, a call is sent again."
    )


@dataclass
class _Tally:
    steps: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    tokens: TokenTotals = field(default_factory=TokenTotals)


@dataclass
class _Conversation:
    """Messages with their hashes, computed once when appended (hashing is O(message)).

    The conversation only grows, so each request is the previous one plus what was appended
    since: `sent` counts the messages already recorded with an earlier request, and a step
    stores only the rest. That keeps a 300-step run O(steps) in the store.
    """

    messages: list[dict[str, Any]] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)
    unrecorded: dict[str, dict[str, Any]] = field(default_factory=dict)
    sent: int = 0

    def append(self, message: dict[str, Any]) -> str:
        digest = message_hash(message)
        self.messages.append(message)
        self.hashes.append(digest)
        self.unrecorded[digest] = message
        return digest

    def take_unrecorded(self) -> dict[str, dict[str, Any]]:
        """Messages appended since the last request was recorded; marks them recorded."""
        fresh, self.unrecorded = self.unrecorded, {}
        self.sent = len(self.messages)
        return fresh


@dataclass(frozen=True)
class StepEnding:
    """How a recorded step that ended its run ended: a failed call, or a turn without tool
    calls (an answer, or nothing)."""

    index: int
    error: ExchangeError | None
    content: str | None
    finish_reason: str


@dataclass(frozen=True)
class PendingTools:
    """The tool calls of a recorded step whose results never reached the store: they run
    before the next request, as they would have had the run not been stopped."""

    index: int
    calls: list[ToolCallRecord]
    reply_ids: list[str | None]


@dataclass(frozen=True)
class ResumePoint:
    """Where a resumed run takes up again, rebuilt from the store (`traces.resumption`)."""

    number: int
    """Which resumption of the run this is: 1 for the first."""
    next_index: int
    """The index of the next step to send."""
    messages: list[dict[str, Any]]
    """The conversation as the next request carries it (before any pending tool results)."""
    recorded: int
    """Leading messages the last recorded request already carries (the rest are stored
    with the next step)."""
    steps: int
    tool_calls: int
    tool_errors: int
    tokens: TokenTotals
    pending: PendingTools | None = None
    ending: StepEnding | None = None
    """Set when the last recorded step ended the run: nothing more is sent."""


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Agent:
    """Runs one task episode against one endpoint and records it."""

    def __init__(
        self,
        *,
        run_id: str,
        client: EndpointClient,
        recorder: Recorder,
        environment: ToolEnvironment,
        system_prompt: str,
        user_prompt: str,
        settings: HarnessSettings,
        rng: random.Random | None = None,
        tool_timeout_s: float = TOOL_TIMEOUT_S,
    ) -> None:
        """Prepare a run; nothing is sent until `run()`. `rng` draws the retry jitter (one
        seeded from the OS when not given, so concurrent runs never retry in lockstep); a
        tool call may take `tool_timeout_s`."""
        self.run_id = run_id
        self.tool_timeout_s = tool_timeout_s
        self.client = client
        self.recorder = recorder
        self.env = environment
        self.settings = settings
        self.tools = environment.tool_specs()
        self.tool_names = {t["function"]["name"] for t in self.tools}
        checker = ArgumentChecker(self.tools)
        self._validate = lambda name, args: (
            (None, None) if name not in self.tool_names else _verdict(checker.check(name, args))
        )
        self.conversation = _Conversation()
        self.conversation.append({"role": "system", "content": system_prompt})
        self.conversation.append({"role": "user", "content": user_prompt})
        self.tally = _Tally()
        self._rng = rng if rng is not None else random.Random()
        self._resumption: int | None = None

    async def run(self) -> RunOutcome:
        """Loop until a final answer, the step limit or an unrecoverable error."""
        return await self._loop(0)

    async def resume(self, point: ResumePoint) -> RunOutcome:
        """Take a recorded run up where `point` says it stopped: the conversation and totals
        are the stored ones, the environment has had the recorded calls replayed into it,
        and the next step continues the numbering, marked with the resumption's number."""
        conversation = _Conversation()
        for message in point.messages:
            conversation.append(message)
        # What the last recorded request carried is in the store already; the rest (its
        # answer sent back, the tool results) goes with the next step, as it would have.
        conversation.sent = point.recorded
        conversation.unrecorded = dict(
            zip(
                conversation.hashes[point.recorded :],
                conversation.messages[point.recorded :],
                strict=True,
            )
        )
        self.conversation = conversation
        self.tally = _Tally(point.steps, point.tool_calls, point.tool_errors, point.tokens)
        self._resumption = point.number
        if point.ending is not None:
            return self._ended_by(point.ending)
        if point.pending is not None:
            pending = point.pending
            await self._run_tools(pending.index, pending.calls, pending.reply_ids)
        return await self._loop(point.next_index)

    async def _loop(self, start: int) -> RunOutcome:
        settings = self.settings
        for index in range(start, settings.max_steps):
            exchange, retry_errors = await self._call_with_retries()
            message = exchange.message if exchange.error is None else None
            reading = read_message(message, self._validate) if message is not None else None
            step = self._step_record(index, exchange, retry_errors, reading)
            new_messages = self.conversation.take_unrecorded()
            if message is not None and reading is not None:
                replay, reply_ids = replay_message(
                    message, reading, settings.replay, self.tally.tool_calls
                )
                step.replay_message_hash = message_hash(replay)
                # Stored now, so even a final answer (never sent back) is in `messages`.
                new_messages[step.replay_message_hash] = replay
            durable = self.recorder.queue_step(step, new_messages)
            self._count(step)
            if exchange.error is not None or reading is None:
                await durable
                return self._failed_by_endpoint(exchange.error)
            self.conversation.append(replay)
            if reading.tool_calls:
                # The tools run while the writer commits the step, and their results commit
                # after it: one commit wait per step instead of two, and the step is still
                # durable before the next request leaves.
                try:
                    await self._run_tools(index, reading.tool_calls, reply_ids)
                finally:
                    await durable
                continue
            await durable
            return self._answered(index, reading.content, step.finish_reason)
        error = f"no final answer within {settings.max_steps} steps"
        return self.outcome(
            RunStatus.FAILED, Termination.MAX_STEPS, error=error, **_not_achieved(error)
        )

    # -- model calls --------------------------------------------------------------------------

    def _request_body(self) -> dict[str, Any]:
        s = self.settings
        body: dict[str, Any] = {"model": s.model, "messages": self.conversation.messages}
        if self.tools:
            body["tools"] = self.tools
        if s.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if s.seed is not None:
            body["seed"] = s.seed
        if s.temperature is not None:
            body["temperature"] = s.temperature
        if s.max_tokens is not None:
            body["max_tokens"] = s.max_tokens
        body.update(s.extra_body)
        return body

    async def _call_with_retries(self) -> tuple[Exchange, list[ExchangeError]]:
        # The conversation list is sent as is: copying it every step would be O(n^2).
        return await send_with_retries(
            self.client.complete, self._request_body(), self.settings.retry, self._rng
        )

    def _step_record(
        self,
        index: int,
        exchange: Exchange,
        retry_errors: list[ExchangeError],
        reading: Reading | None,
    ) -> StepRecord:
        step = step_from_exchange(
            self.run_id,
            index,
            exchange,
            reading,
            message_hashes=self.conversation.hashes,
            prefix=self.conversation.sent,
            retry_errors=retry_errors,
        )
        # The first step a resumption sends carries its number; the others none.
        step.resumption, self._resumption = self._resumption, None
        return step

    # -- tools --------------------------------------------------------------------------------

    async def _run_tools(
        self, index: int, calls: list[ToolCallRecord], reply_ids: list[str | None]
    ) -> None:
        if len(calls) == 1:
            # Awaited directly: gather() wraps it in a task, and the run then waits a whole
            # event-loop turn behind every other run before it can send its next request.
            results = [await self._run_tool(calls[0], reply_ids[0])]
        else:
            results = list(
                await asyncio.gather(
                    *(self._run_tool(c, i) for c, i in zip(calls, reply_ids, strict=True))
                )
            )
        for result in results:
            self.conversation.append(
                {
                    "role": "tool",
                    "tool_call_id": result.tool_call_id or "",
                    "content": result.output,
                }
            )
            if result.error is not None:
                self.tally.tool_errors += 1
        await self.recorder.record_tool_results(self.run_id, index, results)

    async def _run_tool(self, call: ToolCallRecord, reply_id: str | None) -> ToolResultRecord:
        """Execute one call; the result answers `reply_id` (the id as it was sent back)."""
        return await execute_call(
            self.env, self.tool_names, call, reply_id, timeout_s=self.tool_timeout_s
        )

    # -- outcomes -----------------------------------------------------------------------------

    def _count(self, step: StepRecord) -> None:
        t = self.tally
        t.steps += 1
        t.tool_calls += len(step.tool_calls)
        t.tokens.add(step)

    def _answered(self, index: int, content: str | None, finish_reason: str) -> RunOutcome:
        """The outcome of a turn without tool calls: the final answer judged, or nothing."""
        answer = (content or "").strip()
        if not answer:
            why = "finish_reason=length" if finish_reason == "length" else "empty turn"
            error = f"step {index}: the model returned no answer and no tool call ({why})"
            return self.outcome(
                RunStatus.FAILED, Termination.MODEL_ERROR, error=error, **_not_achieved(error)
            )
        verdict = self.env.check_success(answer)
        return self.outcome(
            RunStatus.COMPLETED,
            Termination.COMPLETED,
            final_answer=answer,
            success=verdict.passed,
            success_detail=verdict.detail,
        )

    def _ended_by(self, ending: StepEnding) -> RunOutcome:
        """The outcome a recorded step that ended the run gave it (decided as `_loop` does)."""
        if ending.error is not None:
            return self._failed_by_endpoint(ending.error)
        return self._answered(ending.index, ending.content, ending.finish_reason)

    def _failed_by_endpoint(self, error: ExchangeError | None) -> RunOutcome:
        if error is not None and error.kind == "context_overflow":
            termination = Termination.CONTEXT_OVERFLOW
        else:
            termination = Termination.PROVIDER_ERROR
        message = error.message if error is not None else "no message in the response"
        return self.outcome(RunStatus.FAILED, termination, error=message)

    def outcome(
        self,
        status: RunStatus,
        termination: Termination,
        *,
        error: str | None = None,
        final_answer: str | None = None,
        success: bool | None = None,
        success_detail: str | None = None,
    ) -> RunOutcome:
        """The run's outcome with the totals counted so far (also for interrupted runs)."""
        t = self.tally
        return RunOutcome(
            status=status,
            termination=termination,
            ended_at=_now(),
            success=success,
            success_detail=success_detail,
            final_answer=final_answer,
            error=error,
            steps=t.steps,
            tool_calls=t.tool_calls,
            tool_errors=t.tool_errors,
            **t.tokens.as_fields(),
        )


async def execute_call(
    env: ToolEnvironment,
    tool_names: set[str],
    call: ToolCallRecord,
    reply_id: str | None,
    *,
    timeout_s: float = TOOL_TIMEOUT_S,
) -> ToolResultRecord:
    """Execute one tool call the way a run does; the result answers `reply_id` (the id as it
    was sent back). A call naming no tool of `tool_names`, or with arguments that are not a
    JSON object, is refused here without reaching `env`. Also how a resumption replays the
    recorded calls, so a replayed result is made exactly as the recorded one was."""
    started = _now()
    t0 = time.perf_counter()
    if call.name not in tool_names:
        available = ", ".join(sorted(tool_names))
        outcome = _error_outcome(
            ToolErrorKind.NOT_FOUND,
            f"unknown tool {call.name!r}; available tools: {available}",
        )
    elif not call.json_valid:
        outcome = _error_outcome(
            ToolErrorKind.INVALID_ARGUMENTS,
            f"arguments of {call.name} are not a JSON object: {call.arguments_raw[:200]!r}",
        )
    else:
        try:
            # A context manager, not wait_for(): no task per call (see `Agent._run_tools`).
            async with asyncio.timeout(timeout_s):
                outcome = await env.call(call.name, call.arguments)
        except TimeoutError:
            outcome = _error_outcome(
                ToolErrorKind.TIMEOUT, f"tool {call.name} did not finish within {timeout_s:g} s"
            )
        except Exception as exc:  # a bug in a tool must not kill the run silently
            outcome = _error_outcome(
                ToolErrorKind.CRASHED, f"tool {call.name} crashed: {type(exc).__name__}: {exc}"
            )
    return ToolResultRecord(
        index=call.index,
        tool_call_id=reply_id,
        name=call.name,
        output=outcome.output,
        error=outcome.error,
        error_kind=outcome.error_kind,
        started_at=started,
        duration_ms=elapsed_ms(t0),
        structured=outcome.structured,
    )


def _not_achieved(error: str) -> dict[str, Any]:
    """The success of a run the model ended without a final answer: the task was not achieved
    (a failure, not unknown: an endpoint that failed, or an imported log, leaves it unknown)."""
    return {"success": False, "success_detail": error}


def _verdict(error: str | None) -> tuple[bool | None, str | None]:
    return (error is None, error)


def _error_outcome(kind: ToolErrorKind, message: str) -> ToolOutcome:
    # The harness's own refusals go back as a JSON object, the tools' as `Error: ...` text.
    return ToolOutcome(output=json.dumps({"error": message}), error=message, error_kind=kind)
