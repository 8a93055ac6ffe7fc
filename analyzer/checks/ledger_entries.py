"""What each request of a run added, by part type, beside the growth the host reported.

For every step that continues the conversation of the step before it, the request is the
previous one plus some messages, and the host's `prompt_tokens` grew by some amount. An entry
puts beside that growth the size of each part the request added: the reasoning sent back, the
assistant turn's content and calls, the tool results, user and system text. Sizes are in the
host's tokens where the host reported them (the previous step's completion and reasoning
tokens are exactly the assistant turn that comes back), else estimated
(`traces.normalize.estimate_tokens`) and scaled by the run's own ratio of host tokens to
estimated ones, learned from its reasoning.

Everything is linear in the run's steps: consecutive requests share their message dicts, so a
request's prefix is recognised by identity and only the new messages are read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from analyzer.checks.records import Run, Step
from traces.normalize import estimate_tokens, read_reasoning

EntryKind = Literal["first", "chain", "turn", "restart", "skipped"]
"""How a step relates to the one before it: the first counted request of the run, a tool-chain
step (one assistant turn with calls and its results added), another continuation (a user
turn, an answer), a request that does not extend the previous one, or a step with no count."""

ReasoningBasis = Literal["counted", "split", "estimated"]
"""How a turn's reasoning was measured: the host's own reasoning-token count; its completion
tokens split by the estimate (the host reported completion but not reasoning tokens: the turn
as a whole is then counted, so "all of it kept" is exact); or estimated alone."""

ESCAPABLE = '<>&"' + "'"
"""Characters an HTML-escaping template expands (`<` -> `&lt;`, `"` -> `&#34;`)."""

MIN_RATIO, MAX_RATIO = 0.6, 1.8
"""Host tokens per estimated token a tokenizer can explain (BPE merging words and
punctuation, or splitting digits and identifiers); a run's ratio beyond it is counts of other
text than the one recorded, and the estimate is used as it is."""

_TOOL_ROLES = frozenset({"tool", "function"})
_SYSTEM_ROLES = frozenset({"system", "developer"})


@dataclass(frozen=True, slots=True)
class Added:
    """What one request added to the previous one, in the host's tokens (estimated ones
    scaled by the run's ratio)."""

    reasoning: float
    """Reasoning sent back with the new assistant turn."""
    basis: ReasoningBasis
    """How `reasoning` was measured."""
    content: float
    tool_calls: float
    output: float
    """The turn's content and calls as the host counts them: its completion tokens minus its
    reasoning tokens when reported, else `content + tool_calls`."""
    output_counted: bool
    """Whether `output` is the host's own count (else an estimate)."""
    tool_results: float
    """Estimated, on the estimate's own scale (no ratio learned from reasoning applies)."""
    results: tuple[float, ...]
    """Each tool result's size, in order."""
    user: float
    system: float
    messages: int
    escapable: int
    argument_quotes: int
    """Quotes of the turn's string arguments, plus two per such call: what a template that
    JSON-encodes them again adds a backslash to, and wraps."""
    demoted: float
    """Reasoning of the turn that was the newest one in the previous request."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One step of the ledger."""

    step: int
    kind: EntryKind
    prompt_tokens: int | None
    growth: int | None
    """`prompt_tokens` minus the previous step's, for a continuation."""
    added: Added | None
    cached_tokens: int | None = None
    previous_prompt: int | None = None
    reasoning_newest: float = 0.0
    """Reasoning of the newest assistant turn in this request (tool chains only)."""
    reasoning_older: float = 0.0
    """Reasoning of the chain's earlier turns in this request."""
    tool_results_total: float = 0.0
    """Tool results anywhere in this request."""
    sent_estimate: float | None = None
    """For the first request: everything sent (messages and tool declarations), estimated."""


# -- reading what each request added ---------------------------------------------------------


def text_of(content: Any) -> str:
    """Text of a message content: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text") or "") for part in content if isinstance(part, dict))
    return ""


def size(text: str) -> int:
    """Estimated tokens of `text`; words miss CJK (a sentence is one run of word characters),
    so never fewer than a quarter of its bytes when it is not ASCII."""
    if not text:
        return 0
    if text.isascii():
        return estimate_tokens(text)
    return max(estimate_tokens(text), len(text.encode()) // 4)


_ESCAPABLE_BYTES = ESCAPABLE.encode()


def _escapable(text: str) -> int:
    if not text:
        return 0
    # One pass in C: the bytes that remain once the escapable ones are deleted. Non-ASCII
    # text encodes every such character to the same single byte.
    data = text.encode("utf-8", "surrogatepass")
    return len(data) - len(data.translate(None, _ESCAPABLE_BYTES))


def _argument_quotes(calls: Sequence[Any]) -> int:
    """Quotes inside the calls' string arguments, and two for each of those calls."""
    total = 0
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        arguments = function.get("arguments") if isinstance(function, dict) else None
        if isinstance(arguments, str) and arguments:
            total += arguments.count('"') + 2
    return total


def _arguments_text(call: Mapping[str, Any]) -> str:
    function = call.get("function")
    if not isinstance(function, dict):
        return ""
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, ensure_ascii=False) if arguments is not None else ""
    return f"{function.get('name') or ''} {arguments}"


@dataclass(slots=True)
class _Raw:
    """What a request added, in estimated tokens, before the run's ratio is known."""

    reasoning: int = 0
    reasoning_from: Step | None = None
    """The step whose response the added assistant turn is, when its reasoning went back."""
    content: int = 0
    tool_calls: int = 0
    calls: int = 0
    output_from: Step | None = None
    results: list[int] = field(default_factory=list)
    user: int = 0
    system: int = 0
    messages: int = 0
    escapable: int = 0
    argument_quotes: int = 0
    chain: bool = False


def _read_added(
    messages: Sequence[dict[str, Any]], answered: Step | None, visible: Mapping[int, int]
) -> _Raw:
    """Sizes of `messages` by part type; `answered` is the step whose response the first of
    them is expected to be (the previous step), `visible` the estimate of each step's
    reasoning (the reasoning sent back is usually that text: it is not estimated twice)."""
    raw = _Raw(messages=len(messages))
    roles = [m.get("role") for m in messages]
    raw.chain = (
        len(messages) >= 2
        and roles[0] == "assistant"
        and bool(messages[0].get("tool_calls"))
        and all(role in _TOOL_ROLES for role in roles[1:])
    )
    # Locals, not attribute updates: this runs for every step of every run.
    escapable = 0
    results = raw.results
    for position, message in enumerate(messages):
        role = roles[position]
        if role in _TOOL_ROLES:
            text = text_of(message.get("content"))
            results.append(size(text))
            escapable += _escapable(text)
        elif role == "assistant":
            reasoning, _, content = read_reasoning(message)
            calls = message.get("tool_calls")
            calls = calls if isinstance(calls, list) else []
            calls_text = " ".join(_arguments_text(c) for c in calls if isinstance(c, dict))
            if answered is not None and reasoning and reasoning == answered.reasoning:
                raw.reasoning += visible.get(answered.index, 0)
            elif reasoning:
                raw.reasoning += size(reasoning)
            if content:
                raw.content += size(content)
                escapable += _escapable(content)
            raw.tool_calls += size(calls_text)
            raw.calls += len(calls)
            escapable += _escapable(reasoning or "") + _escapable(calls_text)
            raw.argument_quotes += _argument_quotes(calls)
            if position == 0 and answered is not None and len(answered.calls) == len(calls):
                raw.output_from = answered
                if reasoning:
                    raw.reasoning_from = answered
        else:
            text = text_of(message.get("content"))
            if role in _SYSTEM_ROLES:
                raw.system += size(text)
            else:
                raw.user += size(text)
            escapable += _escapable(text)
    raw.escapable = escapable
    return raw


def _reasoning_count(step: Step, visible: int) -> int | None:
    """The host's count of the reasoning `step` showed, when it reported one that matches
    what was visible: a count far above it is hidden reasoning the client never had, one far
    below it counts other text than what was recorded (a stream read twice, a leak)."""
    reported = step.reasoning_tokens
    if reported is None or step.reasoning_tokens_source != "reported":
        return None
    return reported if visible <= 2 * reported and reported <= 2 * visible else None


def plausible_output(counted: float, estimated: float, calls: int) -> bool:
    """Whether `counted` (completion minus reasoning tokens) can be the host's count of a
    turn whose content and calls are estimated at `estimated`: a template wraps each call in
    some markup, but a count far above that is a usage the turn does not match (completion
    tokens reported for a longer turn, or a spent budget reported whatever was generated),
    and one far below it leaves text uncounted (reasoning that arrived in the content)."""
    return 0.6 * estimated - 4.0 <= counted <= 3.0 * estimated + 20.0 * calls + 32.0


def _run_ratio(steps: Sequence[Step], visible: Mapping[int, int]) -> float:
    """Host tokens per estimated token of reasoning: the run's reported reasoning counts
    against the estimate of the reasoning text; else its completion tokens against the
    estimate of the responses (markup included, so a little high); else 1."""
    counted = estimated = 0
    for step in steps:
        seen = visible.get(step.index, 0)
        reported = _reasoning_count(step, seen) if seen else None
        if reported:
            counted += reported
            estimated += seen
    if counted and estimated >= 32:
        return _plausible_ratio(counted / estimated)
    counted = estimated = 0
    for step in steps:
        # Steps whose reasoning was reported but does not match the text (a summary of
        # hidden reasoning) say nothing about the ratio.
        unreported = step.reasoning_tokens_source != "reported"
        if step.completion_tokens and not step.failed and unreported:
            calls = " ".join(f"{c.name} {c.arguments_raw}" for c in step.calls)
            counted += step.completion_tokens
            estimated += visible.get(step.index, 0) + size(step.content or "") + size(calls)
    return _plausible_ratio(counted / estimated) if counted and estimated >= 32 else 1.0


def _plausible_ratio(ratio: float) -> float:
    """`ratio` when a tokenizer can explain it; else 1 (the counts are of other text)."""
    return ratio if MIN_RATIO <= ratio <= MAX_RATIO else 1.0


def _extends(previous: Sequence[Any], current: Sequence[Any]) -> bool:
    n = len(previous)
    # Consecutive requests share their message objects, so this is a pointer comparison.
    return 0 < n <= len(current) and tuple(current[:n]) == tuple(previous)


def _first_estimate(step: Step) -> float:
    """Everything the first request sent, estimated: messages and tool declarations."""
    total = 0
    for message in step.request_messages:
        total += size(text_of(message.get("content")))
        if message.get("role") == "assistant":
            reasoning, _, _ = read_reasoning(message)
            total += size(reasoning or "")
            calls = message.get("tool_calls")
            if isinstance(calls, list):
                total += size(" ".join(_arguments_text(c) for c in calls if isinstance(c, dict)))
    tools = step.request_params.get("tools")
    if tools:
        total += size(json.dumps(tools, ensure_ascii=False))
    return float(total)


def build_entries(run: Run) -> tuple[list[Entry], float]:
    """The run's ledger entries and its token ratio, in one pass over its steps."""
    steps = run.steps
    raws: list[_Raw | None] = []
    kinds: list[EntryKind] = []
    visible: dict[int, int] = {}
    previous: Step | None = None
    seen_first = False
    for step in steps:
        if step.reasoning:
            visible[step.index] = size(step.reasoning)
        if step.failed or step.prompt_tokens is None:
            raws.append(None)
            kinds.append("skipped")
            previous = None
            continue
        if previous is None or not _extends(previous.request_messages, step.request_messages):
            raws.append(None)
            kinds.append("restart" if seen_first else "first")
            seen_first = True
        else:
            tail = step.request_messages[len(previous.request_messages) :]
            raw = _read_added(tail, previous, visible)
            raws.append(raw)
            kinds.append("chain" if raw.chain else "turn")
        previous = step
    ratio = _run_ratio(steps, visible)
    return _scale(steps, raws, kinds, visible, ratio), ratio


def _scale(
    steps: Sequence[Step],
    raws: Sequence[_Raw | None],
    kinds: Sequence[EntryKind],
    visible: Mapping[int, int],
    ratio: float,
) -> list[Entry]:
    """Entries in host tokens: reported counts where the host gave them, else estimates
    times the run's ratio; with each request's running reasoning and tool-result totals."""
    entries: list[Entry] = []
    newest = older = tools = 0.0
    prompt_before: int | None = None
    for step, raw, kind in zip(steps, raws, kinds, strict=True):
        if kind in ("first", "restart"):
            newest = older = 0.0
            tools = 0.0
            for message in step.request_messages:
                if message.get("role") in _TOOL_ROLES:
                    tools += size(text_of(message.get("content")))
            entries.append(
                Entry(
                    step.index,
                    kind,
                    step.prompt_tokens,
                    None,
                    None,
                    cached_tokens=step.cached_tokens,
                    tool_results_total=tools,
                    # No messages recorded (a log that kept no requests): what was sent is
                    # unknown, not nothing.
                    sent_estimate=(
                        _first_estimate(step) * ratio
                        if kind == "first" and step.request_messages
                        else None
                    ),
                )
            )
            prompt_before = step.prompt_tokens
            continue
        if raw is None or step.prompt_tokens is None or prompt_before is None:
            entries.append(Entry(step.index, "skipped", step.prompt_tokens, None, None))
            prompt_before = None
            continue
        added = _added(raw, ratio, visible, newest if kind == "chain" else 0.0)
        tools += added.tool_results
        if kind == "chain":
            older += newest
            newest = added.reasoning
        else:
            # A new user turn starts another chain: templates drop reasoning before it.
            newest = older = 0.0
        entries.append(
            Entry(
                step.index,
                kind,
                step.prompt_tokens,
                step.prompt_tokens - prompt_before,
                added,
                cached_tokens=step.cached_tokens,
                previous_prompt=prompt_before,
                reasoning_newest=newest,
                reasoning_older=older,
                tool_results_total=tools,
            )
        )
        prompt_before = step.prompt_tokens
    return entries


def _added(raw: _Raw, ratio: float, visible: Mapping[int, int], demoted: float) -> Added:
    """`raw` in host tokens: the answered step's own counts where it reported them."""
    reasoning = raw.reasoning * ratio
    basis: ReasoningBasis = "estimated"
    content, calls = raw.content * ratio, raw.tool_calls * ratio
    output, counted = content + calls, False
    answered = raw.output_from
    if answered is not None and (answered.request_params.get("n") or 1) != 1:
        answered = None  # completion tokens of several choices; one came back
    if answered is not None and answered.completion_tokens is not None:
        billed_reasoning = answered.reasoning_tokens or 0
        if not plausible_output(
            answered.completion_tokens - billed_reasoning, raw.content + raw.tool_calls, raw.calls
        ):
            answered = None  # usage of another turn than the one that came back
    if answered is not None and answered.completion_tokens is not None:
        completion = answered.completion_tokens
        seen = visible.get(answered.index, 0)
        billed = answered.reasoning_tokens
        if not seen and not billed:
            # No reasoning: the completion is exactly the content and calls coming back.
            output, counted = float(completion), True
        elif billed is not None and answered.reasoning_tokens_source == "reported":
            # What the host billed as reasoning, hidden reasoning included, is not the turn's
            # content; the reasoning sent back is what the host counted of it, when that
            # count matches the text (a summary of hidden reasoning is estimated instead).
            output, counted = float(max(0, completion - billed)), True
            matching = _reasoning_count(answered, seen) if seen else None
            if matching is not None and raw.reasoning_from is not None:
                reasoning, basis = float(matching), "counted"
        elif raw.reasoning_from is not None:
            # Reasoning not reported: split the completion by the estimate. Whatever the
            # split, a host keeping the turn counts all of it: output + reasoning exactly.
            output = float(max(0.0, completion - seen * ratio))
            counted, basis = True, "split"
    return Added(
        reasoning=reasoning,
        basis=basis,
        content=content,
        tool_calls=calls,
        output=output,
        output_counted=counted,
        # Tool output is code, JSON, listings: no ratio learned from reasoning applies to it,
        # so it stays on the estimate's scale and the fit learns its ratio.
        tool_results=float(sum(raw.results)),
        results=tuple(float(r) for r in raw.results),
        user=raw.user * ratio,
        system=raw.system * ratio,
        messages=raw.messages,
        escapable=raw.escapable,
        argument_quotes=raw.argument_quotes,
        demoted=demoted if raw.chain else 0.0,
    )
