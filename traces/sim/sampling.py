"""The sampling parameters a request sets, read and checked the way OpenAI does, and honoured
on the simulated model's reply the way a faithful host honours them.

`max_tokens` cuts the turn at the budget (`finish_reason` length), `stop` ends it before the
first stop sequence (the sequence itself is not returned), `response_format` makes an answer
a JSON object (schema-valid for `json_schema`), `logprobs` attaches a log probability to
every answer token, `n` asks for several choices, and `seed` or `temperature` 0 make equal
requests get equal answers. The sampling faults drop a parameter before this stage, as a host
that silently ignores it does.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from traces.sim.reply import Reply, history_calls
from traces.sim.schema_values import example_arguments
from traces.sim.templates import ChatTemplate
from traces.sim.tokenizer import count_tokens, cut_tokens

MAX_CHOICES = 128
"""OpenAI's upper bound for `n`."""
MAX_TOP_LOGPROBS = 20
"""OpenAI's upper bound for `top_logprobs`."""
_FORMATS = ("text", "json_object", "json_schema")


class ParameterError(ValueError):
    """A sampling parameter OpenAI would refuse with HTTP 400, naming it."""

    def __init__(self, message: str, param: str, code: str = "invalid_value") -> None:
        """`param` is the offending request field."""
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


@dataclass(frozen=True, slots=True)
class Sampling:
    """What a request asks of the sampler (the defaults ask nothing)."""

    max_tokens: int | None = None
    """`max_completion_tokens` or `max_tokens`."""
    stop: tuple[str, ...] = ()
    n: int = 1
    logprobs: bool = False
    top_logprobs: int = 0
    response_format: Mapping[str, Any] | None = None
    """`json_object` or `json_schema` (with its `json_schema` object); None for text."""
    seeded: bool = False
    """The request set a `seed`."""
    greedy: bool = False
    """The request set `temperature` 0: every choice is the same, most likely answer."""
    fresh: bool = False
    """The host ignores `seed` and `temperature`: each request is sampled anew (a fault)."""

    @property
    def deterministic(self) -> bool:
        """Whether the request asked for reproducible answers."""
        return self.seeded or self.greedy


def _integer(data: Mapping[str, Any], key: str, low: int, high: int | None = None) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ParameterError(f"Invalid type for '{key}': expected an integer.", key, "invalid_type")
    if value < low or (high is not None and value > high):
        bound = f"at least {low}" if high is None else f"between {low} and {high}"
        raise ParameterError(f"Invalid '{key}': {value} (must be {bound}).", key)
    return value


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise ParameterError(
            "Invalid type for 'stop': expected a string or an array of strings.",
            "stop",
            "invalid_type",
        )
    return tuple(s for s in value if s)


def _response_format(value: Any) -> Mapping[str, Any] | None:
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind not in _FORMATS:
        raise ParameterError(
            "Invalid 'response_format.type': expected 'text', 'json_object' or 'json_schema'.",
            "response_format.type",
        )
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise ParameterError(
                "Missing required parameter: 'response_format.json_schema.name'.",
                "response_format.json_schema.name",
                "missing_required_parameter",
            )
        if not isinstance(spec.get("schema", {}), dict):
            raise ParameterError(
                "Invalid type for 'response_format.json_schema.schema': expected an object.",
                "response_format.json_schema.schema",
                "invalid_type",
            )
    return None if kind == "text" else value


def parse_sampling(data: Mapping[str, Any]) -> Sampling:
    """The sampling parameters of a request body; raises `ParameterError` for the first one
    OpenAI would refuse."""
    max_tokens = next(
        (
            value
            for key in ("max_completion_tokens", "max_tokens")
            if (value := _integer(data, key, 1)) is not None
        ),
        None,
    )
    temperature = data.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not 0 <= temperature <= 2
    ):
        raise ParameterError(
            "Invalid 'temperature': expected a number between 0 and 2.", "temperature"
        )
    logprobs = data.get("logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise ParameterError(
            "Invalid type for 'logprobs': expected a boolean.", "logprobs", "invalid_type"
        )
    top = _integer(data, "top_logprobs", 0, MAX_TOP_LOGPROBS) or 0
    if top and not logprobs:
        raise ParameterError("'top_logprobs' requires 'logprobs' to be true.", "top_logprobs")
    return Sampling(
        max_tokens=max_tokens,
        stop=_stop(data.get("stop")),
        n=_integer(data, "n", 1, MAX_CHOICES) or 1,
        logprobs=bool(logprobs),
        top_logprobs=top,
        response_format=_response_format(data.get("response_format")),
        seeded=data.get("seed") is not None,
        greedy=temperature == 0,
    )


def completion_tokens(template: ChatTemplate, reply: Reply) -> int:
    """Tokens of the turn as the family's template renders it (what usage counts)."""
    calls = history_calls(reply.calls)
    return count_tokens(template.completion(reply.reasoning, reply.content, calls))


def _with_completion(usage: dict[str, Any], completion: int, reasoning: int) -> dict[str, Any]:
    counted = {**usage, "completion_tokens": completion}
    if isinstance(usage.get("prompt_tokens"), int):
        counted["total_tokens"] = usage["prompt_tokens"] + completion
    details = usage.get("completion_tokens_details")
    if isinstance(details, dict):
        counted["completion_tokens_details"] = {**details, "reasoning_tokens": reasoning}
    return counted


def _recounted(reply: Reply, template: ChatTemplate) -> Reply:
    usage = _with_completion(
        reply.usage, completion_tokens(template, reply), count_tokens(reply.reasoning)
    )
    return replace(reply, usage=usage)


def _formatted(reply: Reply, response_format: Mapping[str, Any], rng: random.Random) -> Reply:
    """An answer turn as the JSON the format asks for: the answer under `answer` for
    `json_object`, a value valid against the schema for `json_schema`."""
    if response_format.get("type") == "json_schema":
        schema = response_format["json_schema"].get("schema") or {}
        value: Any = example_arguments(schema, rng, full=True)
    else:
        value = {"answer": reply.content}
    return replace(reply, content=json.dumps(value, ensure_ascii=False))


def _stopped(reply: Reply, stop: tuple[str, ...]) -> Reply | None:
    """The turn ended before the first stop sequence it generates (reasoning comes first,
    then the answer; calls after either are never generated); None when none occurs."""
    for field in ("reasoning", "content"):
        text: str = getattr(reply, field)
        found = [i for i in (text.find(s) for s in stop) if i >= 0]
        if found:
            cut = text[: min(found)]
            stopped = (
                replace(reply, reasoning=cut, content="")
                if field == "reasoning"
                else replace(reply, content=cut)
            )
            return replace(stopped, calls=(), finish_reason="stop")
    return None


def _capped(reply: Reply, budget: int) -> Reply:
    """The turn cut after `budget` tokens: reasoning first, then the answer; calls that did
    not fit are never completed. The host spent the whole budget, so usage says so."""
    spent = count_tokens(reply.reasoning)
    if spent >= budget:
        reasoning, content = cut_tokens(reply.reasoning, budget), ""
    else:
        reasoning, content = reply.reasoning, cut_tokens(reply.content, budget - spent)
    usage = _with_completion(reply.usage, budget, count_tokens(reasoning))
    return replace(
        reply, reasoning=reasoning, content=content, calls=(), finish_reason="length", usage=usage
    )


def honour(
    reply: Reply, sampling: Sampling, template: ChatTemplate, rng: random.Random
) -> tuple[Reply, frozenset[str]]:
    """`reply` as a faithful host returns it under `sampling`, and the parameters that
    changed it (`response_format`, `stop`, `max_tokens`, `logprobs`)."""
    acted: set[str] = set()
    if reply.unforced is not None:
        # What a host ignoring `tool_choice` sends is sampled under the same parameters.
        reply = replace(reply, unforced=honour(reply.unforced, sampling, template, rng)[0])
    if sampling.response_format is not None and not reply.calls and reply.content:
        reply = _recounted(_formatted(reply, sampling.response_format, rng), template)
        acted.add("response_format")
    if sampling.stop:
        stopped = _stopped(reply, sampling.stop)
        if stopped is not None:
            reply = _recounted(stopped, template)
            acted.add("stop")
    if sampling.max_tokens is not None:
        spent = reply.usage.get("completion_tokens")
        if isinstance(spent, int) and spent > sampling.max_tokens:
            reply = _capped(reply, sampling.max_tokens)
            acted.add("max_tokens")
    if sampling.logprobs:
        reply = replace(reply, logprobs_top=sampling.top_logprobs)
        acted.add("logprobs")
    return reply, frozenset(acted)


def choice_seed(seed: int, index: int) -> int:
    """The seed of choice `index` of `n`: each choice is its own sample."""
    return seed if index == 0 else seed * MAX_CHOICES + index


def combined_usage(replies: list[Reply]) -> dict[str, Any]:
    """The usage of all choices together: one prompt, every choice's completion (OpenAI)."""
    first = replies[0].usage
    if len(replies) == 1:
        return first
    if "completion_tokens" not in first:
        return first
    completion = sum(int(r.usage.get("completion_tokens") or 0) for r in replies)
    reasoning = sum(
        int((r.usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)
        for r in replies
    )
    # A host that leaves out the reasoning count leaves it out of the sum too.
    return _with_completion(first, completion, reasoning)
