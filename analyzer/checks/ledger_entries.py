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
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

from analyzer.checks.leaks import holds_leak
from analyzer.checks.records import Run, Step
from traces.normalize import ascii_byte_classes, estimate_tokens, read_reasoning

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


class Added(NamedTuple):
    """What one request added to the previous one, in the host's tokens (estimated ones
    scaled by the run's ratio). A named tuple, as `Entry`: one is made for every step of
    every run analyzed, and a frozen dataclass costs a call per field to build."""

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


class Entry(NamedTuple):
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


def _measure_classes() -> bytes:
    """`estimate_ascii_tokens`' byte classes (`a` word, space, `.` a token of its own), with
    the escapable characters a class of their own (`<`): one translation then gives both
    the estimate and their count. Bytes of non-ASCII characters are never escapable."""
    table = bytearray(ascii_byte_classes())
    for char in ESCAPABLE:
        table[ord(char)] = ord("<")
    return bytes(table)


_MEASURE_CLASSES = _measure_classes()
_WORDS_APART = bytes.maketrans(b".<", b"  ")
"""The classes with every non-word byte a space: what is left is words between spaces."""


def _measure(text: str) -> tuple[int, int]:
    """`size(text)` and how many of its characters an HTML-escaping template expands."""
    if not text:
        return 0, 0
    data = text.encode("utf-8", "surrogatepass")
    classes = data.translate(_MEASURE_CLASSES)
    escapable = classes.count(b"<")
    if len(data) == len(text):  # ASCII: one byte a character, counted from the bytes
        # `estimate_ascii_tokens` with its `.` class split in two: a word starts at each
        # word byte not preceded by one, every other non-space byte is a token. (Counting
        # ` a` once in the classes with `.` and `<` made spaces costs less than counting
        # ` a`, `.a` and `<a` apart: a two-byte count is the slowest pass.)
        words = classes.translate(_WORDS_APART)
        starts = words.count(b" a") + words.startswith(b"a")
        return starts + classes.count(b".") + escapable, escapable
    return max(estimate_tokens(text), len(data) // 4), escapable


Measure = Callable[[str], tuple[int, int]]


class _Remembered:
    """Measures kept by text, in the runs where texts recur, for the whole process.

    Runs of one task replayed against several hosts, or at temperature 0, send the same
    system prompts, answers and tool outputs again (in the million-step benchmark store, each
    text ten times): a lookup saves the measure. Where texts are distinct, a lookup is a hash
    and an insert for nothing, so it is tried `PROBE_RUNS` runs at a time: when less than half
    of the characters looked up were found (counted in characters: the short texts that recur
    everywhere, empty answers and system prompts, save little, a long distinct one costs its
    hash), the next `PAUSE_RUNS` runs measure plainly, with no cost at all (`for_run` hands
    them `_measure` itself). Exact either way: a measure is a function of the text alone."""

    PROBE_RUNS = 64
    PAUSE_RUNS = 1024
    LIMIT = 1 << 16
    """Texts kept at most (then forgotten at once): a few MB."""

    def __init__(self) -> None:
        self.known: dict[str, tuple[int, int]] = {}
        self.looked_up = self.found = 0
        """Characters of the texts looked up while probing, and of those found."""
        self.probing = self.PROBE_RUNS
        self.paused = 0

    def measure(self, text: str) -> tuple[int, int]:
        """`_measure(text)`, looked up first."""
        characters = len(text)
        self.looked_up += characters
        known = self.known.get(text)
        if known is not None:
            self.found += characters
            return known
        known = _measure(text)
        if len(self.known) >= self.LIMIT:
            self.known.clear()
        self.known[text] = known
        return known

    def for_run(self) -> Measure:
        """The measure the next run's entries use: remembering, or plain while paused."""
        if self.paused:
            self.paused -= 1
            return _measure
        self.probing -= 1
        if self.probing >= 0:
            return self.measure
        pause = self.found * 2 < self.looked_up
        self.probing, self.looked_up, self.found = self.PROBE_RUNS - 1, 0, 0
        if not pause:
            return self.measure
        self.paused = self.PAUSE_RUNS - 1
        self.known.clear()
        return _measure


_REMEMBERED = _Remembered()


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


class _Turn(NamedTuple):
    """A response as the next request sends it back, estimated once: its content, the text
    of its calls, the escapable characters of all three parts and its arguments' quotes."""

    content: int
    calls: int
    escapable: int
    argument_quotes: int


class _Estimates:
    """The estimates of a run's responses, each made once: the reasoning each step showed
    (`visible`), and the rest of its turn when a request sends it back or the run's ratio is
    learned from it."""

    __slots__ = ("_reasoning_escapable", "_turns", "copied", "leaked", "measure", "visible")

    def __init__(self, run: Run) -> None:
        self.measure = measure = _REMEMBERED.for_run()
        self.visible: dict[int, int] = {}
        self._reasoning_escapable: dict[int, int] = {}
        self._turns: dict[int, _Turn] = {}
        self.leaked: set[int] = set()
        """Steps whose reasoning holds call markup a parser copied there (`leaks.holds_leak`):
        generated and billed once, as calls; the copy is unbilled."""
        self.copied: set[int] = set()
        """The same in the content (a harmony parser moved the copy there)."""
        for step in run.steps:
            if step.reasoning:
                tokens, escapable = measure(step.reasoning)
                self.visible[step.index] = tokens
                self._reasoning_escapable[step.index] = escapable
            if holds_leak(step.reasoning, step, run):
                self.leaked.add(step.index)
            if holds_leak(step.content, step, run):
                self.copied.add(step.index)

    def turn(self, step: Step) -> _Turn:
        """The estimates of `step`'s content and calls."""
        turn = self._turns.get(step.index)
        if turn is None:
            content, content_escapable = self.measure(step.content or "")
            made = step.calls
            if len(made) == 1:  # most turns: no generators to make (once per step)
                (call,) = made
                raw = call.arguments_raw
                text, quotes = f"{call.name} {raw}", raw.count('"') + 2 if raw else 0
            else:
                text = " ".join(f"{c.name} {c.arguments_raw}" for c in made)
                quotes = sum(c.arguments_raw.count('"') + 2 for c in made if c.arguments_raw)
            calls, calls_escapable = self.measure(text)
            turn = self._turns[step.index] = _Turn(
                content,
                calls,
                self._reasoning_escapable.get(step.index, 0) + content_escapable + calls_escapable,
                quotes,
            )
        return turn


def _sent_back(
    message: dict[str, Any], reasoning: str | None, content: str | None, step: Step
) -> bool:
    """Whether assistant `message` is `step`'s response exactly as it came: the same
    reasoning, content and calls (names and argument text)."""
    if (reasoning or "") != (step.reasoning or "") or (content or "") != (step.content or ""):
        return False
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list) or len(calls) != len(step.calls):
        return False
    for sent, call in zip(calls, step.calls, strict=True):
        function = sent.get("function") if isinstance(sent, dict) else None
        if (
            not isinstance(function, dict)
            or function.get("name") != call.name
            or function.get("arguments") != call.arguments_raw
        ):
            return False
    return True


def _read(
    messages: Sequence[dict[str, Any]],
    answered: Step,
    estimates: _Estimates,
    ratio: float,
    newest: float,
) -> tuple[Added, bool]:
    """What `messages` added, by part type, in host tokens; and whether they are a tool-chain
    step (one assistant turn with calls, then only tool results). `answered` is the step whose
    response the first of them is expected to be (the previous step): its own counts are used
    where it reported them, and a response sent back as it came is not estimated again.
    `newest` is the reasoning of the newest turn in the previous request (demoted now)."""
    roles = [m.get("role") for m in messages]
    chain = (
        len(messages) >= 2
        and roles[0] == "assistant"
        and bool(messages[0].get("tool_calls"))
        and _TOOL_ROLES.issuperset(roles[1:])
    )
    # Locals, not attribute updates: this runs for every step of every run.
    reasoning = content = tool_calls = calls = user = system = escapable = quotes = 0
    output_from: Step | None = None
    reasoning_from: Step | None = None
    results: list[int] = []
    visible, measure = estimates.visible, estimates.measure
    for position, message in enumerate(messages):
        role = roles[position]
        if role in _TOOL_ROLES:
            tokens, characters = measure(text_of(message.get("content")))
            results.append(tokens)
            escapable += characters
        elif role == "assistant":
            text, _, said = read_reasoning(message)
            sent = message.get("tool_calls")
            sent = sent if isinstance(sent, list) else []
            if text and text == answered.reasoning:
                reasoning += visible.get(answered.index, 0)
            elif text:
                reasoning += size(text)
            if _sent_back(message, text, said, answered):
                turn = estimates.turn(answered)
                content += turn.content
                tool_calls += turn.calls
                escapable += turn.escapable
                quotes += turn.argument_quotes
            else:
                if said:
                    tokens, characters = measure(said)
                    content += tokens
                    escapable += characters
                tokens, characters = measure(
                    " ".join(_arguments_text(c) for c in sent if isinstance(c, dict))
                )
                tool_calls += tokens
                escapable += measure(text or "")[1] + characters
                quotes += _argument_quotes(sent)
            calls += len(sent)
            if position == 0 and len(answered.calls) == len(sent):
                output_from = answered
                if text:
                    reasoning_from = answered
        else:
            tokens, characters = measure(text_of(message.get("content")))
            if role in _SYSTEM_ROLES:
                system += tokens
            else:
                user += tokens
            escapable += characters
    added = _in_host_tokens(
        reasoning,
        content,
        tool_calls,
        calls,
        output_from,
        reasoning_from,
        estimates,
        ratio,
    )
    # Positional, in the fields' order (reasoning, basis, content, tool_calls, output,
    # output_counted, tool_results, results, user, system, messages, escapable,
    # argument_quotes, demoted): a named tuple builds fastest so. Tool output is code, JSON,
    # listings: no ratio learned from reasoning applies to it, so it stays on the
    # estimate's scale and the fit learns its.
    return (
        Added(
            *added,
            float(sum(results)),
            tuple(map(float, results)),
            user * ratio,
            system * ratio,
            len(messages),
            escapable,
            quotes,
            newest if chain else 0.0,
        ),
        chain,
    )


def _reasoning_count(step: Step, visible: int, leaked: set[int]) -> int | None:
    """The host's count of the reasoning `step` showed, when it reported one that matches
    what was visible: a count far above it is hidden reasoning the client never had, one far
    below it counts other text than what was recorded (a stream read twice, a leak). Nor is
    it one when the usage adds up several choices (`n`; the step keeps choice 0's text), or
    when the reasoning holds a family's call markup (`leaked`): a parser that ran past the
    calls copied their tokens into it, generated and billed once, as calls, so the count is
    of the reasoning without the copy while all of it goes back."""
    reported = step.reasoning_tokens
    if reported is None or step.reasoning_tokens_source != "reported":
        return None
    if not (visible <= 2 * reported and reported <= 2 * visible) or step.choices_counted != 1:
        return None
    return None if step.index in leaked else reported


def plausible_output(counted: float, estimated: float, calls: int) -> bool:
    """Whether `counted` (completion minus reasoning tokens) can be the host's count of a
    turn whose content and calls are estimated at `estimated`: a template wraps each call in
    some markup, but a count far above that is a usage the turn does not match (completion
    tokens reported for a longer turn, or a spent budget reported whatever was generated),
    and one far below it leaves text uncounted (reasoning that arrived in the content)."""
    return 0.6 * estimated - 4.0 <= counted <= 3.0 * estimated + 20.0 * calls + 32.0


def _run_ratio(steps: Sequence[Step], estimates: _Estimates) -> float:
    """Host tokens per estimated token of reasoning: the run's reported reasoning counts
    against the estimate of the reasoning text; else its completion tokens against the
    estimate of the responses (markup included, so a little high); else 1."""
    visible = estimates.visible
    counted = estimated = 0
    for step in steps:
        seen = visible.get(step.index, 0)
        reported = _reasoning_count(step, seen, estimates.leaked) if seen else None
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
        single = step.choices_counted == 1  # else the count adds up several choices' turns
        if step.completion_tokens and not step.failed and unreported and single:
            turn = estimates.turn(step)
            counted += step.completion_tokens
            estimated += visible.get(step.index, 0) + turn.content + turn.calls
    return _plausible_ratio(counted / estimated) if counted and estimated >= 32 else 1.0


def _plausible_ratio(ratio: float) -> float:
    """`ratio` when a tokenizer can explain it; else 1 (the counts are of other text)."""
    return ratio if MIN_RATIO <= ratio <= MAX_RATIO else 1.0


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
        total += _declarations_size(tools)
    return float(total)


_DECLARATIONS: dict[int, tuple[object, int]] = {}
"""Size of each tool declarations list seen, by identity (the object is held, so its id is
not reused): the loader decodes a request's parameters once per distinct text, so every run
of a task shares one list, and its JSON is the largest text a first request sends."""
_MAX_DECLARATIONS = 256


def _declarations_size(tools: object) -> int:
    cached = _DECLARATIONS.get(id(tools))
    if cached is not None and cached[0] is tools:
        return cached[1]
    if len(_DECLARATIONS) >= _MAX_DECLARATIONS:
        _DECLARATIONS.clear()
    tokens = size(json.dumps(tools, ensure_ascii=False))
    _DECLARATIONS[id(tools)] = (tools, tokens)
    return tokens


def build_entries(run: Run) -> tuple[list[Entry], float]:
    """The run's ledger entries and its token ratio, in one pass over its steps (the ratio,
    learned from the responses alone, first)."""
    steps = run.steps
    estimates = _Estimates(run)
    ratio = _run_ratio(steps, estimates)
    entries: list[Entry] = []
    newest = older = tools = 0.0
    previous: Step | None = None
    before = 0  # the previous step's prompt tokens, when there is one
    seen_first = False
    # Where each request stops repeating the one before it, worked out once per run for
    # every check that follows the history.
    for step, start in zip(steps, run.request_starts, strict=True):
        prompt = step.prompt_tokens
        if step.failed or prompt is None:
            entries.append(Entry(step.index, "skipped", prompt, None, None))
            previous = None
            continue
        if previous is None or not start:
            kind: EntryKind = "restart" if seen_first else "first"
            seen_first = True
            tools = 0.0
            for message in step.request_messages:
                if message.get("role") in _TOOL_ROLES:
                    tools += size(text_of(message.get("content")))
            # A request after a step with no count (a failure, usage left out) still carries
            # the chain's earlier turns: their reasoning is in it, and the next chain step
            # demotes its newest turn's.
            newest, older = _chain_reasoning(step.request_messages, ratio)
            # Positional (step, kind, prompt_tokens, growth, added, cached_tokens,
            # previous_prompt, reasoning_newest, reasoning_older, tool_results_total,
            # sent_estimate): a named tuple builds fastest so, and one is built per step.
            entries.append(
                Entry(
                    step.index,
                    kind,
                    prompt,
                    None,
                    None,
                    step.cached_tokens,
                    None,
                    0.0,
                    0.0,
                    tools,
                    # No messages recorded (a log that kept no requests): what was sent is
                    # unknown, not nothing.
                    _first_estimate(step) * ratio
                    if kind == "first" and step.request_messages
                    else None,
                )
            )
        else:
            added, chain = _read(step.request_messages[start:], previous, estimates, ratio, newest)
            tools += added.tool_results
            if chain:
                older += newest
                newest = added.reasoning
            else:
                # A new user turn starts another chain: templates drop reasoning before it.
                newest = older = 0.0
            entries.append(
                Entry(
                    step.index,
                    "chain" if chain else "turn",
                    prompt,
                    prompt - before,
                    added,
                    step.cached_tokens,
                    before,
                    newest,
                    older,
                    tools,
                )
            )
        previous, before = step, prompt
    return entries, ratio


def _chain_reasoning(messages: Sequence[dict[str, Any]], ratio: float) -> tuple[float, float]:
    """Reasoning of the newest assistant turn of the chain `messages` end with (since their
    last user turn: templates drop the reasoning before it) and of its earlier turns,
    estimated in host tokens: what a request read whole, not as an extension of the one
    before it, sends back."""
    turns: list[int] = []
    for message in messages:
        role = message.get("role")
        if role == "assistant":
            text, _, _ = read_reasoning(message)
            turns.append(size(text or ""))
        elif role not in _TOOL_ROLES and role not in _SYSTEM_ROLES:
            turns = []  # a user turn starts another chain
    if not turns:
        return 0.0, 0.0
    return turns[-1] * ratio, sum(turns[:-1]) * ratio


def _in_host_tokens(
    reasoning_estimate: int,
    content_estimate: int,
    calls_estimate: int,
    calls: int,
    answered: Step | None,
    reasoning_from: Step | None,
    estimates: _Estimates,
    ratio: float,
) -> tuple[float, ReasoningBasis, float, float, float, bool]:
    """A turn's reasoning, its basis, content, calls, output and whether the output is the
    host's count, in host tokens: the answered step's own counts where it reported them,
    else the estimates times `ratio`."""
    reasoning = reasoning_estimate * ratio
    basis: ReasoningBasis = "estimated"
    content, tool_calls = content_estimate * ratio, calls_estimate * ratio
    output, counted = content + tool_calls, False
    if answered is not None and (answered.request_params.get("n") or 1) != 1:
        # Completion tokens of several choices, one came back; estimated, as every turn
        # of the run is (its turns alone, where `n` was ignored, too: the fit learns one
        # scale for the estimates, which a few counted turns would set apart).
        answered = None
    if answered is not None and answered.completion_tokens is not None:
        billed_reasoning = answered.reasoning_tokens or 0
        if not plausible_output(
            answered.completion_tokens - billed_reasoning,
            content_estimate + calls_estimate,
            calls,
        ):
            answered = None  # usage of another turn than the one that came back
    if answered is not None and answered.index in estimates.copied:
        # The content holds a copy of the calls the host did not bill: its count of the
        # turn is of less than came back. (A copy in the reasoning: `_reasoning_count`.)
        answered = None
    if answered is not None and answered.completion_tokens is not None:
        completion = answered.completion_tokens
        seen = estimates.visible.get(answered.index, 0)
        billed = answered.reasoning_tokens
        if not seen and not billed:
            # No reasoning: the completion is exactly the content and calls coming back.
            output, counted = float(completion), True
        elif billed is not None and answered.reasoning_tokens_source == "reported":
            # What the host billed as reasoning, hidden reasoning included, is not the turn's
            # content; the reasoning sent back is what the host counted of it, when that
            # count matches the text (a summary of hidden reasoning is estimated instead).
            output, counted = float(max(0, completion - billed)), True
            matching = _reasoning_count(answered, seen, estimates.leaked) if seen else None
            if matching is not None and reasoning_from is not None:
                reasoning, basis = float(matching), "counted"
        elif reasoning_from is not None:
            # Reasoning not reported: split the completion by the estimate. Whatever the
            # split, a host keeping the turn counts all of it: output + reasoning exactly.
            output = float(max(0.0, completion - seen * ratio))
            counted, basis = True, "split"
    return reasoning, basis, content, tool_calls, output, counted
