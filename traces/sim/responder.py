"""Answer one chat-completions request as the configured host would, faults included.

Stages: pick the faults of this request; refuse or stall it (request faults, the dialect's
own reasoning requirement); let sampling faults drop a parameter the host then ignores;
render the prompt with the template of the family the request's
model id names, else the dialect's own (what the host keeps of the history decides
`prompt_tokens`, and the prefix it shares with prompts served before decides the cached
tokens); let the policy decide the turn; build the host's
reply, honour the sampling parameters (`sampling`: one reply per choice) and let reply faults
rewrite choice 0; serialise it, for streams let stream faults disturb
the deltas, and let wire faults break the bytes or cut the connection. Everything is computed
before the first byte is sent, so the `x-sim-faults` header lists exactly the faults the
response carries.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, fields

from traces.dialects import DIALECTS
from traces.families import resolve_family
from traces.sim import wire
from traces.sim.config import SimConfig
from traces.sim.faults import (
    FAULTS,
    AttemptCounter,
    Fault,
    FaultContext,
    PromptFault,
    PromptOptions,
    Rejection,
    ReplyFault,
    RequestFault,
    SamplingFault,
    Stall,
    StreamFault,
    WireFault,
    Written,
    conversation_key,
    fired,
    request_key,
)
from traces.sim.interleaved import missing_reasoning_index, reasoning_required_error
from traces.sim.placement import response_content
from traces.sim.policy import Decision, decide
from traces.sim.prefix_cache import PrefixCache
from traces.sim.reply import Reply, build_reply
from traces.sim.request import ChatRequest
from traces.sim.sampling import choice_seed, combined_usage, honour
from traces.sim.templates import Prompt, template_for
from traces.sim.tokenizer import count_tokens_cached


@dataclass(slots=True)
class Outcome:
    """What to send back: a JSON body or SSE events, after an optional stall."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    events: list[bytes] | None = None
    """SSE events of a streamed completion (then `body` is unused)."""
    headers: list[tuple[str, str]] = field(default_factory=list)
    stall_s: float = 0.0
    """Hold the response this long first (the timeout fault)."""
    faults: list[str] = field(default_factory=list)
    """Faults injected into this response, for `x-sim-faults`."""
    complete: bool = True
    """False: the connection drops after what `body` or `events` hold (a cut response)."""
    trickle: bytes | None = None
    """Written every `TRICKLE_S` after `body` or `events` until the client leaves."""

    def reject(self, rejection: Rejection) -> Outcome:
        """Turn this outcome into the error response `rejection`."""
        self.status = rejection.status
        self.body = rejection.body
        self.content_type = rejection.content_type
        self.headers.extend(rejection.headers)
        return self


def answer(
    request: ChatRequest,
    config: SimConfig,
    attempts: AttemptCounter | None = None,
    cache: PrefixCache | None = None,
    authorization: str = "",
) -> Outcome:
    """The complete response of the simulated host to `request`; `cache` holds the prompts
    this host served before (None: nothing is ever cached); `authorization` is the request's
    Authorization header (faults may echo it)."""
    ctx = _context(request, config, authorization)
    names: list[str] = []
    attempt = 0
    if ctx.key:
        attempt = attempts.next(ctx.key) if attempts is not None else 0
        conversation = conversation_key(request.messages, request.seed)
        names = fired(config.faults, config.seed, ctx.key, attempt, conversation)
    outcome = Outcome()
    if _refused(request, ctx, names, outcome):
        return outcome
    replies = _replies(request, config, ctx, names, outcome, cache, attempt)
    reply, alternates = replies[0], replies[1:]
    usage = combined_usage(replies)
    completion_id = "chatcmpl-" + uuid.uuid4().hex
    created = int(time.time())
    if not request.stream:
        body = wire.completion(
            reply,
            ctx.dialect,
            completion_id=completion_id,
            created=created,
            model=request.model,
            alternates=alternates,
            usage=usage,
        )
        outcome.body = wire.dumps(body)
        return _written(outcome, names, Written((outcome.body,), streamed=False))
    chunks = wire.stream_chunks(reply, ctx.dialect, config.chunk_chars)
    for name in names:
        fault = FAULTS[name]
        if isinstance(fault, StreamFault):
            disturbed = fault.apply(chunks)
            if disturbed is not None:
                chunks = disturbed
                outcome.faults.append(name)
    for index, alternate in enumerate(alternates, start=1):
        chunks.extend(wire.stream_chunks(alternate, ctx.dialect, config.chunk_chars, index))
    outcome.content_type = "text/event-stream; charset=utf-8"
    events = wire.sse_events(
        chunks,
        completion_id=completion_id,
        created=created,
        model=request.model,
        usage_body=usage if request.include_usage else None,
    )
    return _written(outcome, names, Written(tuple(events), streamed=True))


def _written(outcome: Outcome, names: list[str], written: Written) -> Outcome:
    """Let wire faults break the serialised response, then put it in `outcome`."""
    for name in names:
        fault = FAULTS[name]
        changed = fault.apply(written) if isinstance(fault, WireFault) else None
        if changed is not None:
            written = changed
            outcome.faults.append(name)
    if written.streamed:
        outcome.events = list(written.pieces)
    else:
        outcome.body = b"".join(written.pieces)
    outcome.complete = written.complete
    outcome.trickle = written.trickle
    return outcome


def _context(request: ChatRequest, config: SimConfig, authorization: str = "") -> FaultContext:
    dialect = DIALECTS[config.dialect]
    # The weights decide the template and the ids (Kimi on vLLM is still Kimi); the host the rest.
    family = resolve_family(request.model, dialect.family)
    # Hashing the messages costs a pass over the request: only pay for it when faults are on.
    active = any(rate > 0 for rate in config.faults.values())
    return FaultContext(
        dialect=dialect,
        template=template_for(family.name),
        messages=request.messages,
        seed=config.seed,
        key=request_key(request.messages) if active else "",  # "": no fault can fire
        stream=request.stream,
        sends_usage=request.include_usage or not request.stream,
        timeout_s=config.timeout_s,
        model=request.model,
        max_tokens=request.max_tokens,
        tools=request.tools or (),
        authorization=authorization,
        id_style=family.id_style or "openai",
    )


def _refused(request: ChatRequest, ctx: FaultContext, names: list[str], outcome: Outcome) -> bool:
    """Apply request faults and the dialect's own requirement; True when refused."""
    for name in names:
        fault = FAULTS[name]
        effect = fault.apply(ctx) if isinstance(fault, RequestFault) else None
        if effect is None:
            continue
        outcome.faults.append(name)
        if isinstance(effect, Stall):
            outcome.stall_s = effect.seconds
        else:
            outcome.reject(effect)
            return True
    if ctx.dialect.requires_reasoning_back:
        index = missing_reasoning_index(request.messages, ctx.dialect.reasoning_in)
        if index is not None:
            body = reasoning_required_error(index, ctx.dialect.reasoning_back)
            outcome.reject(Rejection(400, wire.dumps(body)))
            return True
    return False


_REASONING_OPTIONS = frozenset({"history_reasoning", "last_reasoning_only"})


def _changed(prompt: Prompt, fault: Fault) -> bool:
    """Whether the prompt fault `fault` changed this prompt (only then is it reported)."""
    default = PromptOptions()
    applied = fault.apply(default) if isinstance(fault, PromptFault) else default
    options = {
        f.name
        for f in fields(PromptOptions)
        if getattr(applied, f.name) != getattr(default, f.name)
    }
    if options & _REASONING_OPTIONS and prompt.reasoning_suppressed:
        return True
    return bool(options & prompt.altered)


def _replies(
    request: ChatRequest,
    config: SimConfig,
    ctx: FaultContext,
    names: list[str],
    outcome: Outcome,
    cache: PrefixCache | None,
    attempt: int,
) -> list[Reply]:
    """Render the prompt, decide each choice's turn, build its reply, honour the sampling
    parameters the host keeps, and let reply faults rewrite choice 0."""
    asked = request.sampling
    used, dropped = asked, list[SamplingFault]()
    for name in names:
        fault = FAULTS[name]
        if isinstance(fault, SamplingFault) and (ignoring := fault.apply(used)) is not None:
            used = ignoring
            dropped.append(fault)
    options = PromptOptions()
    prompt_faults: list[str] = []
    for name in names:
        fault = FAULTS[name]
        if isinstance(fault, PromptFault):
            options = fault.apply(options)
            prompt_faults.append(name)
    prompt = ctx.template.render(
        request.messages,
        request.tools,
        ctx.dialect.reasoning_in,
        history_reasoning=options.history_reasoning,
        last_reasoning_only=options.last_reasoning_only,
        tool_results=options.tool_results,
        escape_html=options.escape_html,
        hidden_system=options.hidden_system,
        reencode_arguments=options.reencode_arguments,
    )
    outcome.faults.extend(name for name in prompt_faults if _changed(prompt, FAULTS[name]))
    counts = [count_tokens_cached(segment) for segment in prompt.segments]
    prompt_tokens = sum(counts)
    # The host caches what it rendered: a fault that changes the rendering changes the hits.
    cached = cache.serve(prompt.segments, counts) if cache is not None else 0

    def decision(seed: int) -> Decision:
        return decide(
            request.messages,
            request.tools,
            seed=seed,
            tool_choice=request.tool_choice,
            prompt_text=lambda: prompt.text,  # what the model sees, for the planted-secret probe
        )

    def built(turn: Decision) -> Reply:
        return build_reply(
            turn, ctx.dialect, ctx.template, ctx.id_style, request.messages, prompt_tokens, cached
        )

    seed = request.seed if request.seed is not None else config.seed
    first = decision(seed)
    acted: set[str] = set()
    if used.fresh:
        sampled = _resampled(first, decision, seed, attempt)
        if sampled is not None:
            first, seed = sampled
            acted.add("seed")
    replies = []
    for index in range(used.n):
        # At temperature 0 every choice is the one most likely answer.
        turn = first if index == 0 or used.greedy else decision(choice_seed(seed, index))
        raw = built(turn)
        rng = random.Random(f"{seed}:{index}:format")
        reply, _ = honour(raw, used, ctx.template, rng)
        if index == 0 and dropped:
            # What a faithful host would have changed: only then did dropping it matter.
            _, honoured = honour(raw, asked, ctx.template, rng)
            acted |= honoured
        replies.append(reply)
    if asked.n > 1:
        acted.add("n")
    reply = replies[0]
    rewrote = []
    for name in names:
        fault = FAULTS[name]
        changed = fault.apply(reply, ctx) if isinstance(fault, ReplyFault) else None
        if changed is not None:
            reply = changed
            rewrote.append(name)
    if not response_content(ctx.dialect, reply.reasoning, reply.content):
        # Log probabilities come with the tokens of `content`, as it goes out: a turn without
        # any (a call, reasoning in its own field, a turn a reply fault emptied) looks the same
        # with or without them, and one a reply fault gave content (a call written as text)
        # lacks them.
        acted.discard("logprobs")
    outcome.faults.extend(fault.name for fault in dropped if fault.parameter in acted)
    outcome.faults.extend(rewrote)
    outcome.headers.extend(reply.headers)
    return [reply, *replies[1:]]


_RESAMPLINGS = 12
"""Seeds tried for the answers of a host that ignores the seed: enough to find several that
differ from the seeded answer, whatever the turn."""


def _resampled(
    seeded: Decision, decision: Callable[[int], Decision], seed: int, attempt: int
) -> tuple[Decision, int] | None:
    """The turn of a host that samples every request anew: each attempt of the same request
    gets another of the answers that differ from the seeded one (None: the turn does not
    depend on the seed, so ignoring it changes nothing)."""
    variants: list[tuple[Decision, int]] = []
    seen = {_words(seeded)}
    for offset in range(1, _RESAMPLINGS + 1):
        other_seed = seed * 7919 + offset
        other = decision(other_seed)
        if _words(other) not in seen:
            seen.add(_words(other))
            variants.append((other, other_seed))
    return variants[attempt % len(variants)] if variants else None


def _words(turn: Decision) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    return turn.reasoning, turn.content, tuple((c.name, c.arguments) for c in turn.tool_calls)
