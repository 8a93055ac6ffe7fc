"""What the requests' history shows: reasoning the host did not keep inside a tool chain, and
tool results the client paired with no call (or calls it left unanswered).

Interleaved thinking means each request of a tool chain is the previous request plus the
assistant turn and its tool results, with that turn's reasoning sent back. A host that strips
it (vLLM reading only `reasoning`, a proxy deleting `reasoning_content`) gives no error: only
the token counts show it, in two ways. Chains are read from `Step.request_messages`.

- Prompt growth. With P prompt, C completion and R reasoning tokens, the residual
  `r_i = P_i - P_{i-1} - C_{i-1}` is what the template and the new tool results add (o_i) when
  the reasoning is kept, and `o_i - R_{i-1}` when it is dropped. o_i is unknown (tool-result
  size in the host's tokenizer, template overhead), so the check learns it from the run itself:
  the slope of `r - T` (T: tool-result tokens, estimated) against R, taken as the median over
  pairs of transitions, is 0 when the host keeps the reasoning and -1 when it drops it; the
  retained fraction is 1 + slope. Only pairs whose reasoning differs more than their tool
  results do count, so a tokenizer that miscounts tool output by tens of percent cannot fake it.
  The fit's intercept is the overhead of a transition that loses nothing; a transition whose
  residual falls short of it by half its reasoning or more is an affected step.
- Cached tokens. With prefix caching, a chain request shares the whole previous prompt, so the
  cached tokens reach about P_{i-1}. When they keep falling well short, the host rendered the
  earlier history differently this time: typically it kept only the newest turn's reasoning.

One finding per run, on the first affected step, with each signal's numbers as evidence.

Tool results and calls, from the same requests: every `tool` message must answer a call id an
earlier assistant message made, and every call must be answered before the conversation moves
on; otherwise the host pairs results with the wrong calls, or refuses the request
(OpenAI-compatible servers answer 400). The client built the request, so it is at fault.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from analyzer.checks.records import Finding, Run, Step
from analyzer.checks.requests import call_ids, request_increments
from traces.normalize import estimate_tokens

KINDS = frozenset(
    {"reasoning_dropped_in_chain", "tool_result_unmatched_id", "tool_call_unanswered"}
)

MIN_REASONING_TOKENS = 16
"""Median reasoning per chain turn below which a drop is not told apart from the few tokens
by which template overhead varies between turns."""
MIN_PAIRS = 3
"""Informative pairs of transitions needed before the slope is trusted."""
MIN_REASONING_DELTA = 4
"""A pair is informative when its reasoning differs by at least this many tokens and by more
than its tool results do (so a tool-result estimate off by 40% moves the slope by < 0.4)."""
PAIR_REACH = 16
"""Each transition is paired with the next PAIR_REACH ones: all pairs for short runs, linear
cost for 300-step ones."""
RETAINED_MAX = 0.5
"""Retained fraction at or below which the reasoning counts as dropped: halfway between
keeping it (1) and dropping it (0); a host truncating it to a summary lands in between."""
MIN_STEP_LOSS = 8
"""Tokens a transition must lose against the fitted overhead to count as affected: above the
few tokens by which a template's overhead varies from turn to turn."""
SLOPE_TOLERANCE = 0.4
"""How far below -1 the slope may fall and still read as a drop: each informative pair's
slope is off by less than the tool-result estimate's relative error (< 0.4). Steeper than
that, the prompt lost more than the reasoning: something else changed (see cached tokens)."""
MIN_CACHE_FALL = 32
"""Tokens by which cached tokens must fall short of the previous prompt, beyond the host's
cache granularity, to count as a re-rendered history rather than a rounding."""
MAX_CACHE_BLOCK = 128
"""Largest cache granularity assumed (OpenAI caches in 128-token steps; vLLM 16, DeepSeek 64)."""

_TOOL_ROLES = frozenset({"tool", "function"})
_REASONING_FIELDS = ("reasoning_content", "reasoning")


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text") or "") for part in content if isinstance(part, dict))
    return ""


def sent_reasoning(message: Mapping[str, Any]) -> bool:
    """Whether an assistant message carries reasoning in any form a host might read: a
    reasoning field, `reasoning_details`, a `<think>` block or a harmony analysis channel."""
    if any(isinstance(message.get(f), str) and message[f].strip() for f in _REASONING_FIELDS):
        return True
    details = message.get("reasoning_details")
    if isinstance(details, list) and any(
        isinstance(d, dict) and (d.get("text") or d.get("summary") or d.get("data"))
        for d in details
    ):
        return True
    content = _text(message.get("content"))
    if "<|channel|>analysis" in content:
        return True
    start = content.find("<think>")
    if start < 0:
        return False
    end = content.find("</think>", start)
    inner = content[start + len("<think>") : end if end >= 0 else None]
    return bool(inner.strip())


@dataclass(frozen=True, slots=True)
class Transition:
    """Step `step` continuing the tool chain of the step before it."""

    step: int
    prompt: int
    previous_prompt: int
    previous_completion: int | None
    reasoning: int
    """Reasoning tokens of the previous turn, 0 when the client did not send it back."""
    tool_tokens: int
    """Estimated tokens of the tool results new in this request."""
    cached: int | None
    earlier_reasoning: bool
    """The previous request already carried reasoning (something a host could strip)."""

    @property
    def growth(self) -> int | None:
        """`P_i - P_{i-1} - C_{i-1}`: what the prompt gained beyond the previous completion."""
        if self.previous_completion is None:
            return None
        return self.prompt - self.previous_prompt - self.previous_completion


def _chain_tail(before: Step, step: Step) -> Sequence[Mapping[str, Any]] | None:
    """The messages `step` adds to `before`'s request when they are one assistant turn with
    tool calls and its tool results; None for anything else (a new user turn, an edit)."""
    previous, current = before.request_messages, step.request_messages
    n = len(previous)
    # Consecutive requests share their message objects, so this is a pointer comparison.
    if n == 0 or len(current) < n + 2 or current[:n] != previous:
        return None
    tail = current[n:]
    turn = tail[0]
    if turn.get("role") != "assistant" or not turn.get("tool_calls"):
        return None
    if any(m.get("role") not in _TOOL_ROLES for m in tail[1:]):
        return None
    return tail


def _reasoning_tokens(step: Step) -> int:
    """Tokens of the reasoning a client can send back for `step`; 0 when what it saw is only
    a summary of hidden reasoning (a host keeping the summary must not look like a drop)."""
    text = step.reasoning or ""
    # Words miss CJK (a sentence is one \w run) and bytes/4 miss short words; take the larger.
    visible = max(estimate_tokens(text), len(text.encode()) // 4)
    reported = step.reasoning_tokens
    if reported is None or step.reasoning_tokens_source != "reported":
        return visible
    return reported if visible * 2 >= reported else 0


def _carries_reasoning(steps: Sequence[Step]) -> list[bool]:
    """Per step, whether its request carries reasoning on some assistant message; read
    incrementally, since a request usually extends the one before it."""
    carries: list[bool] = []
    previous: tuple[dict[str, Any], ...] = ()
    for step in steps:
        messages = step.request_messages
        start = len(previous)
        flag = bool(carries) and carries[-1]
        if not previous or len(messages) < start or messages[:start] != previous:
            start, flag = 0, False
        flag = flag or any(
            m.get("role") == "assistant" and sent_reasoning(m) for m in messages[start:]
        )
        carries.append(flag)
        previous = messages
    return carries


def chain_transitions(run: Run) -> list[Transition]:
    """Every step that continues its predecessor's tool chain, both with a prompt count."""
    carries = _carries_reasoning(run.steps)
    found = []
    for position in range(1, len(run.steps)):
        before, step = run.steps[position - 1], run.steps[position]
        if before.failed or step.failed or before.prompt_tokens is None:
            continue
        if step.prompt_tokens is None:
            continue
        tail = _chain_tail(before, step)
        if tail is None:
            continue
        sent = sent_reasoning(tail[0])
        found.append(
            Transition(
                step=step.index,
                prompt=step.prompt_tokens,
                previous_prompt=before.prompt_tokens,
                previous_completion=before.completion_tokens,
                reasoning=_reasoning_tokens(before) if sent else 0,
                tool_tokens=sum(estimate_tokens(_text(m.get("content"))) for m in tail[1:]),
                cached=step.cached_tokens,
                earlier_reasoning=carries[position - 1],
            )
        )
    return found


def _growth_evidence(transitions: list[Transition]) -> dict[str, Any] | None:
    """The prompt-growth signal, when it says at most RETAINED_MAX of the reasoning stayed."""
    usable = [t for t in transitions if t.reasoning > 0 and t.growth is not None]
    if len(usable) < MIN_PAIRS or statistics.median(t.reasoning for t in usable) < (
        MIN_REASONING_TOKENS
    ):
        return None
    points = [(float((t.growth or 0) - t.tool_tokens), t.reasoning, t.tool_tokens) for t in usable]
    slopes = []
    for i, (y1, r1, t1) in enumerate(points):
        for y2, r2, t2 in points[i + 1 : i + 1 + PAIR_REACH]:
            d_r = r2 - r1
            if abs(d_r) >= MIN_REASONING_DELTA and abs(t2 - t1) < abs(d_r):
                slopes.append((y2 - y1) / d_r)
    if len(slopes) < MIN_PAIRS:
        return None
    slope = statistics.median(slopes)
    retained = min(1.0, max(0.0, 1.0 + slope))
    if retained > RETAINED_MAX or slope < -1.0 - SLOPE_TOLERANCE:
        return None
    # The intercept is what a transition adds when nothing is dropped (template overhead beyond
    # the tool results); each transition's shortfall from it is what that request lost.
    overhead = statistics.median(y - slope * r for y, r, _ in points)
    typical = statistics.median(t.reasoning for t in usable)
    lost = [(t, overhead - y) for t, (y, _, _) in zip(usable, points, strict=True)]
    # Half of what there was to lose (the turn's own reasoning, or a typical turn's when the
    # host drops an older turn's instead), never less than template jitter.
    affected = [(t, d) for t, d in lost if d >= max(MIN_STEP_LOSS, min(t.reasoning, typical) / 2)]
    if not affected:
        return None
    example = affected[0][0]
    return {
        "first_step": example.step,
        "last_step": affected[-1][0].step,
        "affected_steps": len(affected),
        "retained_fraction": round(retained, 2),
        "estimated_dropped_tokens": round(sum(d for _, d in affected)),
        "slope": round(slope, 3),
        "pairs": len(slopes),
        "overhead_tokens": round(overhead, 1),
        "median_reasoning_tokens": typical,
        "example": {
            "step": example.step,
            "prompt_tokens": example.prompt,
            "previous_prompt_tokens": example.previous_prompt,
            "previous_completion_tokens": example.previous_completion,
            "previous_reasoning_tokens": example.reasoning,
            "tool_tokens_estimate": example.tool_tokens,
            "growth_residual": example.growth,
        },
    }


def _cache_block(run: Run) -> int:
    """The host's cache granularity as seen in the run (gcd of the cached counts), capped."""
    block = 0
    for step in run.steps:
        if step.cached_tokens:
            block = math.gcd(block, step.cached_tokens)
    return min(block, MAX_CACHE_BLOCK)


def _cache_evidence(run: Run, transitions: list[Transition]) -> dict[str, Any] | None:
    """The cached-tokens signal, when cached tokens fall short on most chain steps."""
    block = _cache_block(run)
    if block == 0:
        return None  # the host reports no cache hits at all: caching is off or unreported
    # A zero is a plain miss (evicted, another replica, a prompt below the minimum), not a
    # history rendered differently; only partial hits are evidence.
    evaluated = [t for t in transitions if t.cached and t.earlier_reasoning]
    fallen = [t for t in evaluated if t.previous_prompt - (t.cached or 0) > block + MIN_CACHE_FALL]
    if len(fallen) < 2 or 2 * len(fallen) < len(evaluated):
        return None
    shortfalls = [t.previous_prompt - (t.cached or 0) for t in fallen]
    example = fallen[0]
    return {
        "first_step": fallen[0].step,
        "last_step": fallen[-1].step,
        "affected_steps": len(fallen),
        "evaluated_steps": len(evaluated),
        "median_shortfall_tokens": statistics.median(shortfalls),
        "cache_block": block,
        "example": {
            "step": example.step,
            "cached_tokens": example.cached,
            "previous_prompt_tokens": example.previous_prompt,
        },
    }


def reasoning_dropped_in_chain(run: Run) -> Iterator[Finding]:
    """Reasoning the client sent back inside a tool chain that the host did not count (prompt
    growth) or did not render the same way twice (cached tokens); one finding per run."""
    transitions = chain_transitions(run)
    if not transitions:
        return
    signals = {
        name: evidence
        for name, evidence in (
            ("prompt_growth", _growth_evidence(transitions)),
            ("cached_tokens", _cache_evidence(run, transitions)),
        )
        if evidence is not None
    }
    if not signals:
        return
    first = min(s["first_step"] for s in signals.values())
    growth = signals.get("prompt_growth", {})
    yield Finding(
        "reasoning_dropped_in_chain",
        "warning",
        "provider",
        first,
        {
            "signal": "+".join(signals),
            "steps": [first, max(s["last_step"] for s in signals.values())],
            "affected_steps": max(s["affected_steps"] for s in signals.values()),
            "retained_fraction": growth.get("retained_fraction"),
            "estimated_dropped_tokens": growth.get("estimated_dropped_tokens"),
            **signals,
        },
    )


# -- tool-call ids: results and calls paired, as the client built each request ---------------


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
        open_at: int | None = None
        pending: Counter[str] = Counter()
        for position in range(start, len(messages) + 1):
            message = messages[position] if position < len(messages) else None
            role = message.get("role") if message is not None else None
            if role in _TOOL_ROLES and message is not None:
                answered = str(message.get("tool_call_id") or "")
                if pending[answered] > 0:
                    pending[answered] -= 1
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
                self._report_pending(step, messages, open_at, pending, reported)
                open_at, pending = None, Counter()
            if role == "assistant" and message is not None:
                ids = call_ids(message)
                if ids:
                    available.update(dict.fromkeys(ids))
                    open_at, pending = position, Counter(ids)

    def _report_pending(
        self,
        step: Step,
        messages: Sequence[Mapping[str, Any]],
        at: int,
        pending: Counter[str],
        reported: set[tuple[str, int, str]],
    ) -> None:
        left = +pending
        for index, call_id in enumerate(call_ids(messages[at])):
            key = ("unanswered", at, f"{index}:{call_id}")
            if left[call_id] <= 0 or key in reported:
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


def tool_call_pairing(run: Run) -> Iterator[Finding]:
    """Tool results answering an id no earlier call made, and calls left unanswered; each
    reported once, on the first request that carries it."""
    pairing = _Pairing(run)
    pairing.walk()
    yield from pairing.unmatched
    yield from pairing.unanswered
