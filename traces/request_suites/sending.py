"""Sending a request suite to each target and recording every answer as a one-step run.

A replayed request is an ordinary run (origin `replay`, task = the suite's name) with one
ordinary step: the request as the suite wrote it, with the target's model and body fields
and the replay's streaming mode, and the answer read as any step is (reasoning, calls
checked against the request's own tool schemas). Its `request_hash` is the request's, so
the answers of every provider and every repeat pair by what was asked (`compare`'s
tool_call_f1). Requests a target answered already (same suite, model, request, repeat and
mode) are skipped: a replay that stopped is run again to finish it.

All targets go at once, each with at most `concurrency` requests in flight and one
connection pool; a request waits for its run to be committed only at its end, so the
store's group commit carries many answers per transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from traces.client import EndpointClient, EndpointConfig
from traces.importing.toolsets import ToolSets
from traces.model import (
    ExchangeError,
    RunOutcome,
    RunRecord,
    RunStatus,
    StepRecord,
    Termination,
    message_hash,
    new_run_id,
)
from traces.normalize import read_message, step_from_exchange
from traces.redaction import redact_url
from traces.request_suites.answered import AnswerKey
from traces.request_suites.reading import Suite, SuiteRequest
from traces.retry import RetryPolicy, send_with_retries
from traces.sim.config import SimConfig
from traces.store.recorder import Recorder
from traces.token_totals import TokenTotals

ORIGIN = "replay"


@dataclass(frozen=True)
class ReplayTarget:
    """One endpoint to send the suite to, under the label its runs are stored with."""

    provider: str
    model: str
    endpoint: EndpointConfig
    dialect: str | None = None
    profile: str | None = None
    sim: SimConfig | None = None
    extra_body: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReplayItem:
    """One answer to ask for: a request, which repeat of it, streamed or not."""

    request: SuiteRequest
    repeat_index: int
    stream: bool

    @property
    def key(self) -> AnswerKey:
        """What identifies its answer in the store."""
        return (self.request.request_hash, self.request.copy, self.repeat_index, self.stream)


def replay_items(suite: Suite, repeat: int, streams: tuple[bool, ...] | None) -> list[ReplayItem]:
    """Every answer a replay asks of each target: each request `repeat` times in each mode
    of `streams` (None: the mode the line asks for, not streamed when it says nothing)."""
    return [
        ReplayItem(request, index, stream)
        for request in suite.requests
        for index in range(repeat)
        for stream in (streams if streams is not None else (bool(request.stream),))
    ]


@dataclass(frozen=True)
class ReplayedRun:
    """One recorded answer, as the command reports progress."""

    run_id: str
    provider: str
    request: str
    status: RunStatus
    error: str | None = None


@dataclass
class TargetTally:
    """What a replay did for one target."""

    provider: str
    model: str
    asked: int = 0
    """Answers the suite asks for (requests × repeats × modes)."""
    skipped: int = 0
    """Of those, already answered in the store."""
    run_ids: list[str] = field(default_factory=list)
    """The runs this replay recorded, in suite order."""
    failed: int = 0
    """Of those, runs that got no answer (kept; the next replay sends them again)."""


ProgressCallback = Callable[[ReplayedRun], None]


async def replay_suite(
    suite: Suite,
    targets: list[ReplayTarget],
    pending: dict[str, list[ReplayItem]],
    recorder: Recorder,
    *,
    concurrency: int,
    retry: RetryPolicy | None = None,
    on_done: ProgressCallback | None = None,
    on_interrupted: Callable[[str], None] | None = None,
) -> dict[str, list[ReplayedRun]]:
    """Send each target its `pending` items (by target label), all targets at once and at
    most `concurrency` requests of one target in flight; the recorded runs by label, in the
    order of the items. A cancellation (Ctrl-C, SIGTERM) ends each request under way as an
    interrupted run, named to `on_interrupted`, which the next replay sends again."""
    policy = retry or RetryPolicy()
    tool_sets = ToolSets()  # compiled once per distinct tools list, shared by the targets

    async def one_target(target: ReplayTarget) -> list[ReplayedRun]:
        limit = asyncio.Semaphore(max(1, concurrency))
        client = EndpointClient(target.endpoint)

        async def one(item: ReplayItem) -> ReplayedRun:
            async with limit:
                run = await _record(
                    suite, target, client, recorder, item, tool_sets, policy, on_interrupted
                )
            if on_done is not None:
                on_done(run)
            return run

        try:
            return list(await asyncio.gather(*(one(i) for i in pending[target.provider])))
        finally:
            await client.close()

    results = await asyncio.gather(*(one_target(t) for t in targets))
    return {t.provider: runs for t, runs in zip(targets, results, strict=True)}


async def _record(
    suite: Suite,
    target: ReplayTarget,
    client: EndpointClient,
    recorder: Recorder,
    item: ReplayItem,
    tool_sets: ToolSets,
    policy: RetryPolicy,
    on_interrupted: Callable[[str], None] | None,
) -> ReplayedRun:
    request = item.request
    run_id = new_run_id()
    body = {**request.body, "model": target.model, **target.extra_body}
    if item.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    # Queued, not awaited: the run's row commits with the step's, in the order queued.
    begun = recorder.queue_run(
        RunRecord(
            id=run_id,
            task=suite.name,
            task_path=str(suite.path),
            task_sha256=suite.sha256,
            provider=target.provider,
            model=target.model,
            base_url=redact_url(target.endpoint.base_url),
            settings=_settings(target, item, suite),
            seed=item.repeat_index,
            started_at=_now(),
            recorder_pid=recorder.pid,
            recorder_host=recorder.host,
            origin=ORIGIN,
        )
    )
    try:
        exchange, retries = await send_with_retries(client.complete, body, policy)
        message = exchange.message if exchange.error is None else None
        validate = tool_sets.get(request.body.get("tools")).validate
        reading = read_message(message, validate) if message is not None else None
        hashes = [message_hash(m) for m in request.messages]
        step = step_from_exchange(
            run_id,
            0,
            exchange,
            reading,
            message_hashes=hashes,
            prefix=0,
            retry_errors=retries,
            pairing_hash=request.request_hash,
        )
        recorder.queue_step(step, dict(zip(hashes, request.messages, strict=True)))
        outcome = _outcome(step.content, exchange.error, step)
    except asyncio.CancelledError:
        await asyncio.shield(begun)
        ended = _ended(RunStatus.INTERRUPTED, Termination.INTERRUPTED, error="interrupted")
        if on_interrupted is not None:
            on_interrupted(run_id)
        await asyncio.shield(recorder.end_run(run_id, ended))
        raise
    await recorder.end_run(run_id, outcome)
    return ReplayedRun(run_id, target.provider, request.label, outcome.status, outcome.error)


def _settings(target: ReplayTarget, item: ReplayItem, suite: Suite) -> dict[str, Any]:
    return {
        "replay": {
            "suite": suite.name,
            "suite_sha256": suite.sha256,
            "line": item.request.line,
            "custom_id": item.request.custom_id,
            "request_hash": item.request.request_hash,
            "copy": item.request.copy,
            "repeat_index": item.repeat_index,
        },
        "stream": item.stream,
        "max_steps": 1,
        "dialect": target.dialect,
        "extra_body_keys": sorted(target.extra_body),
        "api_key_env": target.endpoint.api_key_env,
        "endpoint": {
            "kind": "simulator" if target.sim else "profile" if target.profile else "custom",
            "profile": target.profile,
            "sim": target.sim.model_dump() if target.sim else None,
            "timeout_s": target.endpoint.timeout_s,
        },
    }


def _outcome(content: str | None, error: ExchangeError | None, step: StepRecord) -> RunOutcome:
    tokens = TokenTotals()
    tokens.add(step)
    totals: dict[str, Any] = {"steps": 1, "tool_calls": len(step.tool_calls), **tokens.as_fields()}
    if error is not None:
        termination = (
            Termination.CONTEXT_OVERFLOW
            if error.kind == "context_overflow"
            else Termination.PROVIDER_ERROR
        )
        return _ended(RunStatus.FAILED, termination, error=error.message, **totals)
    outcome = _ended(RunStatus.COMPLETED, Termination.COMPLETED, **totals)
    outcome.final_answer = (content or "").strip() or None
    return outcome


def _ended(status: RunStatus, termination: Termination, **fields: Any) -> RunOutcome:
    return RunOutcome(status=status, termination=termination, ended_at=_now(), **fields)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
