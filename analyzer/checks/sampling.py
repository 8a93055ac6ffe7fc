"""Sampling parameters a host silently ignored: the answer shows the request's `max_tokens`,
`stop`, `n`, `logprobs`, `response_format`, `seed`/`temperature` 0 had no effect.

A host may refuse a parameter it does not support (an HTTP 400 naming it is an answer, see
`http`); accepting it and doing nothing breaks every client that relies on it: a budget that
does not bound cost, a stop sequence that does not stop, JSON mode that returns prose. This is
how Moonshot's Kimi Vendor Verifier judges hosts; `traces probe` sends one request per
parameter so each has a verdict, and these checks also read every recorded step that set one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from analyzer.checks.finish import END_TOKENS
from analyzer.checks.parser_lost import lost_to_parser
from analyzer.checks.records import Finding, Run, Step
from traces.normalize import estimate_tokens
from traces.responses import CHOICES_MISSING, LOGPROBS_MISSING
from traces.tools.schema_check import schema_error

KINDS = frozenset(
    {
        "max_tokens_ignored",
        "stop_ignored",
        "n_ignored",
        "logprobs_ignored",
        "response_format_ignored",
        "nondeterministic_output",
    }
)
"""Finding kinds this module emits (the catalogue describes each)."""

_EXCERPT = 160


def _excerpt(text: str, at: int = 0) -> str:
    start = max(0, at - _EXCERPT // 2)
    return text[start : start + _EXCERPT]


def _budget_exceeded(step: Step, limit: int) -> Finding | None:
    evidence: dict[str, Any] = {
        "max_tokens": limit,
        "finish_reason": step.finish_reason_raw,
        "completion_tokens": step.completion_tokens,
    }
    used = step.completion_tokens
    if used is not None:
        # The budget bounds each choice; usage adds up every choice of `n`.
        choices = step.choices_counted
        allowed = choices * (limit + END_TOKENS)
        if used <= allowed:
            return None
        reasoning = step.reasoning_tokens if step.reasoning_tokens_source == "reported" else None
        answer = used - reasoning if reasoning is not None else used
        evidence["reasoning_tokens"] = reasoning
        if choices > 1:
            evidence["choices"] = choices
        # Some hosts apply the budget to the answer alone (DeepSeek's first R1 API did): the
        # reasoning then runs past it by design, a deviation less certain to be an oversight.
        confidence = 1.0 if answer > allowed else 0.6
        return Finding(
            "max_tokens_ignored", "warning", "provider", step.index, evidence, confidence
        )
    # No usage: only the text tells, and a word count is a rough token count.
    estimated = estimate_tokens(step.content or "") + estimate_tokens(step.reasoning or "")
    if estimated <= 2 * limit + 8:
        return None
    evidence["estimated_tokens"] = estimated
    return Finding("max_tokens_ignored", "warning", "provider", step.index, evidence, 0.7)


def _stop_passed(step: Step, stop: list[str]) -> Finding | None:
    content = step.content or ""
    found = [(content.find(s), s) for s in stop if s in content]
    if not found:
        return None
    at, sequence = min(found)
    evidence = {
        "stop": stop,
        "found": sequence,
        "at": at,
        "excerpt": _excerpt(content, at),
        "finish_reason": step.finish_reason_raw,
    }
    return Finding("stop_ignored", "warning", "provider", step.index, evidence)


def _format_problem(response_format: dict[str, Any], content: str) -> str | None:
    """Why `content` does not satisfy the requested format (None: it does)."""
    try:
        value = json.loads(content)
    except ValueError as exc:
        return f"not JSON: {exc}"
    if not isinstance(value, dict):
        return f"JSON {type(value).__name__}, not an object"
    spec = response_format.get("json_schema")
    if response_format.get("type") != "json_schema" or not isinstance(spec, dict):
        return None
    schema = spec.get("schema")
    # strict false promises valid JSON only, not the schema's structure.
    if not isinstance(schema, dict) or spec.get("strict") is False:
        return None
    problem = schema_error(schema, value)
    return f"schema: {problem}" if problem is not None else None


def _format_ignored(step: Step, run: Run) -> Finding | None:
    response_format = step.request_params.get("response_format")
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") not in ("json_object", "json_schema"):
        return None
    # A turn cut at the budget cannot close its JSON; a tool turn has no answer to format.
    if step.calls or step.finish_reason == "length" or not (step.content or "").strip():
        return None
    content = step.content or ""
    problem = _format_problem(response_format, content)
    if problem is None or lost_to_parser(step, run):
        return None  # (a call the parser left in content is no answer to hold to a format)
    evidence = {
        "type": response_format.get("type"),
        "problem": problem[:300],
        "excerpt": _excerpt(content),
    }
    return Finding("response_format_ignored", "error", "provider", step.index, evidence)


def _anomaly_findings(step: Step) -> Iterator[Finding]:
    for anomaly in step.anomalies:
        kind = anomaly.get("kind")
        detail = {k: v for k, v in anomaly.items() if k != "kind"}
        if kind == CHOICES_MISSING:
            yield Finding("n_ignored", "warning", "provider", step.index, detail)
        elif kind == LOGPROBS_MISSING:
            yield Finding("logprobs_ignored", "warning", "provider", step.index, detail)


def sampling_parameters(step: Step, run: Run) -> list[Finding]:
    """One finding per parameter the step's request set and its answer shows ignored."""
    findings: list[Finding] = []
    if step.failed:
        return findings
    limit = step.max_tokens
    if limit is not None and (found := _budget_exceeded(step, limit)) is not None:
        findings.append(found)
    stop = step.stop_sequences
    if stop and (found := _stop_passed(step, stop)) is not None:
        findings.append(found)
    if (found := _format_ignored(step, run)) is not None:
        findings.append(found)
    if step.anomalies:  # most steps have none: no generator to start
        findings.extend(_anomaly_findings(step))
    return findings


def wants_determinism(step: Step) -> bool:
    """Whether the request asked for a reproducible answer: temperature 0 or a seed."""
    params = step.request_params
    return params.get("temperature") == 0 or params.get("seed") is not None


def answer_text(step: Step) -> str:
    """Everything the step generated, as one text to compare: reasoning, answer, calls."""
    calls = [f"{call.name}({call.arguments_raw})" for call in step.calls]
    return "\n".join(part for part in (step.reasoning, step.content, *calls) if part)


def _sampled_alike(one: dict[str, Any], other: dict[str, Any]) -> bool:
    """Whether two requests ask the sampler for the same thing: the same parameters, where a
    greedy decode (temperature 0) makes the seed irrelevant."""
    if one.get("temperature") == 0 == other.get("temperature"):
        return {k: v for k, v in one.items() if k != "seed"} == {
            k: v for k, v in other.items() if k != "seed"
        }
    return one == other


def _common_prefix(texts: list[str]) -> int:
    shortest = min(texts, key=len)
    for index, char in enumerate(shortest):
        if any(text[index] != char for text in texts):
            return index
    return len(shortest)


def nondeterministic_output(run: Run) -> Iterator[Finding]:
    """Equal requests asking for determinism (temperature 0 or a seed) that got different
    answers, one finding per group, on its first step.

    Real hosts are rarely bit-exact: batching changes the order of floating-point sums, so two
    greedy decodes can part where two tokens are nearly tied (the batch-invariance problem),
    late in a long answer. Answers that part at once mean the seed and temperature were not
    applied at all; the confidence says which it looks like.
    """
    # Equal requests have equal message counts: most runs (a growing conversation) have no
    # two steps alike and cost no comparison at all.
    by_count: dict[int, list[Step]] = {}
    for step in run.steps:
        if not step.failed and wants_determinism(step):
            by_count.setdefault(len(step.request_messages), []).append(step)
    for steps in by_count.values():
        if len(steps) < 2:
            continue
        groups: list[list[Step]] = []
        for step in steps:
            for group in groups:
                first = group[0]
                same = _sampled_alike(first.request_params, step.request_params)
                if same and first.request_messages == step.request_messages:
                    group.append(step)
                    break
            else:
                groups.append([step])
        for group in groups:
            found = _compare(group) if len(group) > 1 else None
            if found is not None:
                yield found


def _compare(group: list[Step]) -> Finding | None:
    texts = [answer_text(step) for step in group]
    distinct = len(set(texts))
    if distinct == 1:
        return None
    shared = _common_prefix(texts)
    shortest = min(len(text) for text in texts)
    parted = shared / shortest if shortest else 0.0
    # Parting in the first words: the sampler ignored the request. Parting late, after a
    # long identical stretch: more likely numerical noise of a batched greedy decode.
    confidence = round(0.95 - 0.45 * parted, 2)
    params = group[0].request_params
    evidence = {
        "steps": [step.index for step in group],
        "distinct_answers": distinct,
        "temperature": params.get("temperature"),
        "seeds": sorted(
            {seed for step in group if (seed := step.request_params.get("seed")) is not None},
            key=str,
        ),
        "identical_prefix_chars": shared,
        "answers": [_excerpt(text, shared) for text in texts],
    }
    return Finding(
        "nondeterministic_output", "warning", "provider", group[0].index, evidence, confidence
    )
