"""The choices of `n` beyond choice 0, read back from the raw response.

A request with `n` above 1 gets several choices. The step keeps choice 0's text, while
OpenAI-compatible hosts add up every choice's completion in one usage: the step's own tokens
are then unknown, unless the other choices' text is taken out of the count. The recorder keeps
them whole in the raw response (`steps.response_body`, or the stream's events, where they come
interleaved), and they are read here, only for the steps whose usage counts several choices:
a handful of rows, whatever the size of the store.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from typing import Any

import duckdb

from analyzer.checks.records import OtherChoice, Step
from analyzer.stream_shape import sse_chunk, stored_events
from traces import strict_json
from traces.normalize import read_reasoning
from traces.store.run_batch import BATCH_IDS, RunBatch, of_batch
from traces.stream import StreamAssembler

# The steps wanted are named `run_id/idx`: one list whatever their number, and the batch's own
# filter (`of_batch`: the runs holding such steps) lets the scan skip every other row group.
_RAW_SQL = f"""
    SELECT run_id, idx, response_body, stream_events FROM step_rows
    WHERE {of_batch()} AND concat(run_id, '/', idx) IN ({BATCH_IDS.replace("$1", "$2")})
"""


_ONE = (None, 1)
"""Values of `n` that ask for one choice (absent, or 1)."""


def _choice(message: Any) -> OtherChoice | None:
    """A choice's message as the normalizer reads choice 0's (reasoning in any of the hosts'
    fields or tags, the rest content), with its calls' names and arguments text."""
    if not isinstance(message, dict):
        return None
    reasoning, _, content = read_reasoning(message)
    calls = []
    for call in message.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            arguments = "" if arguments is None else json.dumps(arguments, ensure_ascii=False)
        calls.append((str(function.get("name") or ""), arguments))
    return OtherChoice(reasoning or "", content if isinstance(content, str) else "", tuple(calls))


def _all(read: Iterable[OtherChoice | None]) -> tuple[OtherChoice, ...] | None:
    """Every choice read, or None when one is unreadable (its tokens would be unknown)."""
    choices = []
    for choice in read:
        if choice is None:
            return None
        choices.append(choice)
    return tuple(choices)


def _from_body(body: str) -> tuple[OtherChoice, ...] | None:
    """Every choice after the first of a whole `chat.completion` body (the recorder's step is
    `choices[0]`, `traces.responses.read_completion`)."""
    try:
        parsed = strict_json.loads(body)
    except ValueError:
        return None
    choices = parsed.get("choices") if isinstance(parsed, dict) else None
    if not isinstance(choices, list) or not choices:
        return None
    return _all(_choice(c.get("message") if isinstance(c, dict) else None) for c in choices[1:])


def _from_events(stored: str) -> tuple[OtherChoice, ...] | None:
    """Every choice with an index above 0 of a stored stream, each assembled on its own by
    the recorder's assembler as if it were choice 0 (a delta without an index is choice 0's,
    as the assembler takes it)."""
    events = stored_events(stored)
    if events is None:
        return None
    assemblers: dict[int, StreamAssembler] = {}
    for _, line in events:
        chunk = sse_chunk(line)
        choices = chunk.get("choices") if chunk is not None else None
        if not isinstance(choices, list):
            continue
        for choice in choices:
            index = choice.get("index") if isinstance(choice, dict) else None
            if not isinstance(index, int) or isinstance(index, bool) or index < 1:
                continue
            assembler = assemblers.setdefault(index, StreamAssembler())
            assembler.feed({"choices": [{**choice, "index": 0}]}, 0.0)
    return _all(_choice(assemblers[index].message()) for index in sorted(assemblers))


def other_choices(
    response_body: str | None, stream_events: str | None
) -> tuple[OtherChoice, ...] | None:
    """The choices after choice 0 that a step's raw response holds (a stream's events, or
    the whole body); None when neither is stored or readable."""
    if stream_events is not None:
        return _from_events(stream_events)
    if response_body is not None:
        return _from_body(response_body)
    return None


def with_other_choices(
    conn: duckdb.DuckDBPyConnection, steps: dict[str, list[Step]]
) -> dict[str, list[Step]]:
    """`steps` (run id -> its steps, replaced in place), each step whose usage counts several
    choices given the other choices its raw response holds (`Step.other_choices`). Steps of
    `n` are rare: the raw rows of those alone are read, in one query."""
    wanted = sorted(
        (run_id, step.index)
        for run_id, run_steps in steps.items()
        for step in run_steps
        # `n` first: a dictionary lookup per step, a third of the property's cost (0.07
        # against 0.21 µs a step, measured on 100,000 steps; every step of a store passes here).
        if step.request_params.get("n") not in _ONE and step.choices_counted > 1 and not step.failed
    )
    if not wanted:
        return steps
    batch = RunBatch(conn, sorted({run_id for run_id, _ in wanted}))
    keys = json.dumps([f"{run_id}/{index}" for run_id, index in wanted])
    found: dict[str, dict[int, tuple[OtherChoice, ...]]] = {}
    for run_id, index, body, events in batch.execute(conn, _RAW_SQL, keys).fetchall():
        others = other_choices(body, events)
        if others is not None:
            found.setdefault(run_id, {})[index] = others
    for run_id, given in found.items():
        steps[run_id] = [
            dataclasses.replace(step, other_choices=given[step.index])
            if step.index in given
            else step
            for step in steps[run_id]
        ]
    return steps
