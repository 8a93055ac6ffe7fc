"""Sending the probe set to each target and recording every probe as a one-step run.

A probe run is an ordinary run (origin `probe`, task `probe:NAME`, or `probe:NAME:raw` for
the raw `/completions` variant) with one ordinary step per request it sends (one, or the
repeats of a parameter probe that compares answers), so `show`, `sql` and the checks read it
like any other. Probes of all targets go out concurrently, a bounded number at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from traces.client import EndpointClient, EndpointConfig
from traces.dialects import DIALECTS
from traces.errors import TracesError
from traces.families import expected_id_style
from traces.model import (
    ExchangeError,
    RunOutcome,
    RunRecord,
    RunStatus,
    StepRecord,
    Termination,
    message_hash,
    new_run_id,
    request_hash,
)
from traces.normalize import read_message, step_from_exchange
from traces.probes.catalogue import (
    PROBE_SET_VERSION,
    PROBES,
    Probe,
    ProbeRequest,
    Wire,
)
from traces.probes.raw import Renderer, not_served, raw_wire
from traces.redaction import redact_url
from traces.replay import ReplayPolicy, reasoning_back
from traces.retry import RetryPolicy, send_with_retries
from traces.store.recorder import Recorder
from traces.token_totals import TokenTotals
from traces.tools.schema_check import ArgumentChecker
from traces.wire_forms import IdStyle

Variant = Literal["chat", "raw"]
"""`chat`: the probe sent to `/chat/completions`; `raw`: rendered client-side, `/completions`."""


@dataclass(frozen=True)
class ProbeTarget:
    """One endpoint to probe, under the label its runs are stored with."""

    provider: str
    model: str
    endpoint: EndpointConfig
    dialect: str | None = None
    """Dialect the target speaks, when known: decides where history reasoning goes and
    which id style its tool calls should have."""
    extra_body: dict[str, Any] = field(default_factory=dict)

    def wire(self) -> Wire:
        """How this target wants history sent (the defaults when the dialect is unknown)."""
        dialect = DIALECTS.get(self.dialect or "")
        if dialect is None:
            return Wire()
        # History sent back the way a recorded run of this model on this host would send it.
        policy = ReplayPolicy.for_dialect(dialect, self.model)
        ids: IdStyle = "kimi" if policy.ids == "kimi" else "openai"
        return Wire(reasoning_back(dialect), ids, policy.arguments)

    def expected_ids(self) -> IdStyle | None:
        """The id style the target's own tool calls should have (None: unknown)."""
        dialect = DIALECTS.get(self.dialect or "")
        return expected_id_style(self.model, dialect.family if dialect else None)


@dataclass(frozen=True)
class ProbePlan:
    """What to send: the probe set to every target, and the raw variant when possible."""

    targets: list[ProbeTarget]
    probes: list[Probe] = field(default_factory=lambda: list(PROBES))
    renderer: Renderer | None = None
    """The official chat template; None skips the raw `/completions` variant."""
    template_origin: str | None = None
    """Where the template came from (stored with raw runs)."""
    max_tokens: int = 2048
    seed: int = 0
    concurrency: int = 4
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(max_retries=2))
    """Fewer retries than a run's: a probe's verdict must not hang on a blip."""
    batch: str = field(default_factory=new_run_id)
    """Shared by every run of one probing, so a report reads one probing per provider."""

    def raw_probes(self) -> list[Probe]:
        """The probes also sent rendered client-side (none without a template)."""
        return [p for p in self.probes if p.raw] if self.renderer is not None else []

    def runs_per_target(self) -> int:
        """Probe runs each target gets: every probe, and the raw variants."""
        return len(self.probes) + len(self.raw_probes())


@dataclass(frozen=True)
class ProbeRun:
    """One recorded probe, as the command reports progress."""

    run_id: str
    provider: str
    probe: str
    variant: Variant
    status: RunStatus
    note: str | None = None
    """The error line, or why the run carries no answer (`not served`)."""


ProgressCallback = Callable[[ProbeRun], None]

NOT_SERVED = "not served"
"""Note of a raw probe whose host has no `/completions` route (not a failure of the run)."""


async def probe_targets(
    plan: ProbePlan, recorder: Recorder, on_done: ProgressCallback | None = None
) -> list[ProbeRun]:
    """Send every probe to every target and record each; returns the runs per target in
    probe order (chat variants first, then raw)."""
    limit = asyncio.Semaphore(max(1, plan.concurrency))
    clients: list[EndpointClient] = []
    try:
        for target in plan.targets:
            clients.append(EndpointClient(target.endpoint))  # a missing key fails here
        per_target = await asyncio.gather(
            *(
                _probe_target(plan, target, client, recorder, limit, on_done)
                for target, client in zip(plan.targets, clients, strict=True)
            )
        )
    finally:
        for client in clients:
            await client.close()
    return [run for runs in per_target for run in runs]


async def _probe_target(
    plan: ProbePlan,
    target: ProbeTarget,
    client: EndpointClient,
    recorder: Recorder,
    limit: asyncio.Semaphore,
    on_done: ProgressCallback | None,
) -> list[ProbeRun]:
    async def one(probe: Probe, variant: Variant) -> ProbeRun:
        async with limit:
            run = await _record_probe(plan, target, client, recorder, probe, variant)
        if on_done is not None:
            on_done(run)
        return run

    async def raw() -> list[ProbeRun]:
        probes = plan.raw_probes()
        if plan.renderer is None or not probes:
            return []
        # The first raw probe tells whether the route exists; only then do the others go.
        first = await one(probes[0], "raw")
        if first.note == NOT_SERVED:
            return [first]
        return [first, *await asyncio.gather(*(one(p, "raw") for p in probes[1:]))]

    chat, raws = await asyncio.gather(
        asyncio.gather(*(one(probe, "chat") for probe in plan.probes)), raw()
    )
    return [*chat, *raws]


async def _record_probe(
    plan: ProbePlan,
    target: ProbeTarget,
    client: EndpointClient,
    recorder: Recorder,
    probe: Probe,
    variant: Variant,
) -> ProbeRun:
    run_id = new_run_id()
    wire = target.wire() if variant == "chat" else raw_wire(target.wire())
    request = probe.request(wire)
    await recorder.begin_run(
        RunRecord(
            id=run_id,
            task=f"probe:{probe.name}" + (":raw" if variant == "raw" else ""),
            task_path=f"probe-set-v{PROBE_SET_VERSION}",
            task_sha256=probe.digest(),
            provider=target.provider,
            model=target.model,
            base_url=redact_url(target.endpoint.base_url),
            settings=_settings(plan, target, probe, variant, wire),
            seed=plan.seed,
            started_at=_now(),
            recorder_pid=recorder.pid,
            recorder_host=recorder.host,
            origin="probe",
        )
    )
    try:
        if variant == "chat":
            outcome, note = await _send_chat(plan, target, client, recorder, run_id, probe, request)
        else:
            outcome, note = await _send_raw(plan, target, client, recorder, run_id, probe, request)
    except asyncio.CancelledError:
        interrupted = _ended(RunStatus.INTERRUPTED, Termination.INTERRUPTED, error="interrupted")
        await asyncio.shield(recorder.end_run(run_id, interrupted))
        raise
    await recorder.end_run(run_id, outcome)
    return ProbeRun(run_id, target.provider, probe.name, variant, outcome.status, note)


def _settings(
    plan: ProbePlan, target: ProbeTarget, probe: Probe, variant: Variant, wire: Wire
) -> dict[str, Any]:
    return {
        "probe_set_version": PROBE_SET_VERSION,
        "batch": plan.batch,
        "probe": probe.name,
        "pair": probe.pair,
        "variant": variant,
        "dialect": target.dialect,
        "ids_expected": target.expected_ids(),
        "wire": {"reasoning": wire.reasoning, "ids": wire.ids, "arguments": wire.arguments},
        "template": plan.template_origin if variant == "raw" else None,
        "max_tokens": plan.max_tokens,
        "seed": plan.seed,
        "parameter": probe.parameter,
        "parameters": probe.params if variant == "chat" else None,
        "repeats": probe.repeats,
        "extra_body_keys": sorted(target.extra_body),
        "api_key_env": target.endpoint.api_key_env,
    }


async def _send_chat(
    plan: ProbePlan,
    target: ProbeTarget,
    client: EndpointClient,
    recorder: Recorder,
    run_id: str,
    probe: Probe,
    request: ProbeRequest,
) -> tuple[RunOutcome, str | None]:
    body: dict[str, Any] = {"model": target.model, "messages": request.messages}
    if request.tools:
        body["tools"] = request.tools
    # The probe's own parameters win: they are what it tests.
    body.update({"max_tokens": plan.max_tokens, "seed": plan.seed, **target.extra_body})
    body.update(probe.params or {})
    checker = ArgumentChecker(request.tools or [])
    names = {t["function"]["name"] for t in request.tools or []}

    def validate(name: str, arguments: Any) -> tuple[bool | None, str | None]:
        if name not in names:
            return None, None
        problem = checker.check(name, arguments)
        return problem is None, problem

    hashes = [message_hash(m) for m in request.messages]
    steps: list[StepRecord] = []
    error: ExchangeError | None = None
    for index in range(probe.repeats):
        exchange, retries = await send_with_retries(client.complete, body, plan.retry)
        message = exchange.message if exchange.error is None else None
        reading = read_message(message, validate) if message is not None else None
        # A repeat sends the very same request: every message is already stored.
        prefix = 0 if index == 0 else len(hashes)
        step = step_from_exchange(
            run_id,
            index,
            exchange,
            reading,
            message_hashes=hashes,
            prefix=prefix,
            retry_errors=retries,
        )
        stored = dict(zip(hashes, request.messages, strict=True)) if index == 0 else {}
        await recorder.record_step(step, stored)
        steps.append(step)
        error = exchange.error
        if error is not None:
            break  # an answer is what the repeats compare; a failure ends the probe
    return _outcome(probe, steps, error), _note(error)


async def _send_raw(
    plan: ProbePlan,
    target: ProbeTarget,
    client: EndpointClient,
    recorder: Recorder,
    run_id: str,
    probe: Probe,
    request: ProbeRequest,
) -> tuple[RunOutcome, str | None]:
    assert plan.renderer is not None  # raw variants are only scheduled with a template
    try:
        prompt = plan.renderer(request.messages, request.tools)
    except TracesError as err:  # the template refused this conversation: nothing was sent
        failure = f"template could not render the probe: {err}"
        return _ended(RunStatus.FAILED, Termination.CLIENT_ERROR, error=failure), failure
    body: dict[str, Any] = {
        "model": target.model,
        "prompt": prompt,
        "max_tokens": plan.max_tokens,
        "seed": plan.seed,
        **target.extra_body,
    }
    exchange, retries = await send_with_retries(client.complete_text, body, plan.retry)
    message = exchange.message if exchange.error is None else None
    reading = read_message(message) if message is not None else None
    step = step_from_exchange(
        run_id, 0, exchange, reading, message_hashes=[], prefix=0, retry_errors=retries
    )
    # A raw request has no messages: its identity is the prompt it sent.
    step.request_hash = request_hash([message_hash({"prompt": prompt})], step.request_params)
    await recorder.record_step(step, {})
    if not_served(exchange):
        detail = exchange.error.message if exchange.error is not None else ""
        outcome = _ended(RunStatus.COMPLETED, Termination.COMPLETED, steps=1)
        outcome.success_detail = f"{NOT_SERVED}: {detail}".rstrip(": ")
        return outcome, NOT_SERVED
    return _outcome(probe, [step], exchange.error), _note(exchange.error)


def _note(error: ExchangeError | None) -> str | None:
    return error.message if error is not None else None


def _outcome(probe: Probe, steps: list[StepRecord], error: ExchangeError | None) -> RunOutcome:
    step = steps[-1]
    tokens = TokenTotals()
    for each in steps:
        tokens.add(each)
    totals: dict[str, Any] = {
        "steps": len(steps),
        "tool_calls": sum(len(s.tool_calls) for s in steps),
        **tokens.as_fields(),
    }
    if error is not None:
        termination = (
            Termination.CONTEXT_OVERFLOW
            if error.kind == "context_overflow"
            else Termination.PROVIDER_ERROR
        )
        return _ended(RunStatus.FAILED, termination, error=error.message, **totals)
    answer = (step.content or "").strip() or None
    outcome = _ended(RunStatus.COMPLETED, Termination.COMPLETED, **totals)
    outcome.final_answer = answer
    if probe.expect_answer is not None:
        outcome.success = probe.expect_answer in (answer or "")
        outcome.success_detail = (
            f"the answer states the planted code {probe.expect_answer}"
            if outcome.success
            else f"the answer does not state the planted code {probe.expect_answer}"
        )
    elif step.tool_calls:
        called = ", ".join(call.name for call in step.tool_calls)
        outcome.success_detail = f"one-step probe: the model called {called}"
    return outcome


def _ended(status: RunStatus, termination: Termination, **fields: Any) -> RunOutcome:
    return RunOutcome(status=status, termination=termination, ended_at=_now(), **fields)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
