"""Row builders shared by the live recorder and the importer, so a recorded run and an
imported one are stored identically. Every value is given by column name (`traces.store.tables`).

JSON is encoded here, not in the writer process, so a row is a snapshot of plain immutable
values taken when it is queued (the dicts it came from may live on in the conversation); it
costs ~15 us a step.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from traces.model import (
    RunOutcome,
    RunRecord,
    RunStatus,
    StepRecord,
    ToolCallRecord,
    ToolResultRecord,
)
from traces.store.tables import (
    REPLAYED_REASONING,
    USAGE_LINES,
    MessageRow,
    RunRow,
    RunUpdate,
    StepMessageRow,
    StepRow,
    ToolCallRow,
    ToolResultRow,
)

_ENCODER = json.JSONEncoder(ensure_ascii=False)
"""`json.dumps(value, ensure_ascii=False)` builds an encoder per call; this one is reused."""


def to_json(value: Any) -> str:
    """JSON text of a value, as the store keeps it (non-ASCII characters as they are)."""
    return _ENCODER.encode(value)


def json_text(value: Any) -> str | None:
    """JSON text of a value for a JSON column (None stays NULL)."""
    return None if value is None else to_json(value)


def run_row(run: RunRecord, outcome: RunOutcome | None = None) -> RunRow:
    """The `runs` row of a run: as it starts (status running, no ending, zero counts and
    unknown token totals) when `outcome` is None, else as it ended (an imported run is
    stored finished at once)."""
    end = run_update(run.id, outcome) if outcome is not None else _running(run.id)
    return RunRow(
        id=run.id,
        task=run.task,
        task_path=run.task_path,
        task_sha256=run.task_sha256,
        provider=run.provider,
        model=run.model,
        base_url=run.base_url,
        settings=to_json(run.settings),
        seed=run.seed,
        status=end.status,
        termination=end.termination,
        success=end.success,
        success_detail=end.success_detail,
        final_answer=end.final_answer,
        error=end.error,
        started_at=run.started_at,
        ended_at=end.ended_at,
        steps=end.steps,
        tool_calls=end.tool_calls,
        tool_errors=end.tool_errors,
        prompt_tokens=end.prompt_tokens,
        completion_tokens=end.completion_tokens,
        reasoning_tokens=end.reasoning_tokens,
        recorder_pid=run.recorder_pid,
        recorder_host=run.recorder_host,
        origin=run.origin,
        import_id=run.import_id,
        conversation=run.conversation,
        retry_of=run.retry_of,
        sample=run.sample,
    )


def run_update(run_id: str, outcome: RunOutcome) -> RunUpdate:
    """The ending of a run: its status, termination and totals."""
    return RunUpdate(
        status=outcome.status.value,
        termination=outcome.termination.value,
        success=outcome.success,
        success_detail=outcome.success_detail,
        final_answer=outcome.final_answer,
        error=outcome.error,
        ended_at=outcome.ended_at,
        steps=outcome.steps,
        tool_calls=outcome.tool_calls,
        tool_errors=outcome.tool_errors,
        prompt_tokens=outcome.prompt_tokens,
        completion_tokens=outcome.completion_tokens,
        reasoning_tokens=outcome.reasoning_tokens,
        id=run_id,
    )


def _running(run_id: str) -> RunUpdate:
    """A run that has not ended: the columns' defaults in the schema."""
    return RunUpdate(
        status=RunStatus.RUNNING.value,
        termination=None,
        success=None,
        success_detail=None,
        final_answer=None,
        error=None,
        ended_at=None,
        steps=0,
        tool_calls=0,
        tool_errors=0,
        # Nothing answered yet: unknown, as the rule of `traces.token_totals` has it.
        prompt_tokens=None,
        completion_tokens=None,
        reasoning_tokens=None,
        id=run_id,
    )


def message_row(digest: str, message: dict[str, Any]) -> MessageRow:
    """The `messages` row of a message whose hash is `digest`."""
    return MessageRow(hash=digest, role=message.get("role", ""), body=to_json(message))


def step_row(
    step: StepRecord,
    *,
    params_text: str | None = None,
    stream_lines: list[str] | None = None,
    replayed: bool = False,
    reasoning_replayed: bool = False,
) -> StepRow:
    """The `steps` row of a step.

    `params_text` is the JSON text of `step.request_params` when the caller has it already
    (an import reads each distinct value once). `stream_lines` are the lines of a stream
    whose arrival times are unknown (a log keeps the lines, not when each came): stored in
    place of the step's own events, with null times. `replayed` and `reasoning_replayed`
    say what the assistant message the run's next request added holds (`StepRow`): only a
    writer that has that request knows (an import).
    """
    usage = step.usage
    err = step.error
    if stream_lines is not None:
        stream_events = to_json([[None, line] for line in stream_lines])
    elif step.stream_events is not None:
        stream_events = to_json([[e.t_ms, e.line] for e in step.stream_events])
    else:
        stream_events = None
    if step.response_body is not None:
        usage_from: int | None = 1
    else:
        lines = stream_lines or [e.line for e in step.stream_events or ()]
        usage_from = usage_line(lines)
    return StepRow(
        run_id=step.run_id,
        idx=step.index,
        started_at=step.started_at,
        latency_ms=step.latency_ms,
        ttft_reasoning_ms=step.ttft_reasoning_ms,
        ttft_content_ms=step.ttft_content_ms,
        ttft_tool_call_ms=step.ttft_tool_call_ms,
        streamed=step.streamed,
        http_status=step.http_status,
        request_id=step.request_id,
        response_headers=to_json(step.response_headers),
        request_params=to_json(step.request_params) if params_text is None else params_text,
        request_message_count=step.request_message_count,
        request_prefix=step.request_prefix,
        response_body=step.response_body,
        stream_events=stream_events,
        finish_reason_raw=step.finish_reason_raw,
        finish_reason=step.finish_reason,
        reasoning=step.reasoning,
        reasoning_source=step.reasoning_source,
        content=step.content,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        reasoning_tokens_source=usage.reasoning_tokens_source,
        cached_tokens=usage.cached_tokens,
        total_tokens=usage.total_tokens,
        usage_raw=json_text(step.usage_raw),
        replay_message_hash=step.replay_message_hash,
        error_kind=err.kind if err else None,
        error_status=err.status if err else None,
        error_message=err.message if err else None,
        error_body=err.body if err else None,
        retries=step.retries,
        retry_errors=to_json([e.model_dump() for e in step.retry_errors])
        if step.retry_errors
        else None,
        anomalies=to_json(step.anomalies) if step.anomalies else None,
        request_hash=step.request_hash,
        upstream_provider=step.upstream_provider,
        resumption=step.resumption,
        replayed=replayed,
        reasoning_replayed=reasoning_replayed,
        usage_from=usage_from if step.usage_raw is not None else None,
    )


def usage_line(lines: list[str]) -> int | None:
    """How many lines from the end of a stream the chunk carrying its usage is (the last
    three looked at, `tables.USAGE_LINES`), or None: the writer's guess of
    `StepRow.usage_from`, which the insert checks byte for byte."""
    for back, line in enumerate(reversed(lines[-len(USAGE_LINES) :]), 1):
        if '"usage":{' in line or '"usage": {' in line:
            return back
    return None


def holds_reasoning(message: dict[str, Any], reasoning: str | None, source: str) -> bool:
    """Whether the replayed `message` holds a step's `reasoning` byte for byte, as a text
    field named by its `source` (`tables.REPLAYED_REASONING`), so that the view `steps` gives
    it back from the stored message (migration 17). Text a UTF-8 string cannot hold (a lone
    surrogate) or holding NUL is kept in full: the stored body's extraction would differ."""
    if reasoning is None or source not in REPLAYED_REASONING or "\x00" in reasoning:
        return False
    if message.get(source) != reasoning:
        return False
    try:
        reasoning.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def holds_output(message: dict[str, Any], output: str) -> bool:
    """Whether `message` is a tool message whose content is `output` byte for byte, as the
    view `tool_results` extracts it from the stored body (`tables.TOOL_OUTPUT_POSITION`):
    text holding NUL or a lone surrogate is kept in full, as `holds_reasoning` says."""
    if message.get("role") != "tool" or message.get("content") != output or "\x00" in output:
        return False
    try:
        output.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def step_message_rows(step: StepRecord) -> list[StepMessageRow]:
    """The `step_messages` rows of a step: the messages its request added to the previous
    one, at their positions in the request."""
    return [
        StepMessageRow(
            run_id=step.run_id, step_idx=step.index, position=step.request_prefix + offset, hash=h
        )
        for offset, h in enumerate(step.request_new_hashes)
    ]


def tool_call_rows(step: StepRecord) -> list[ToolCallRow]:
    """The `tool_calls` rows of a step: one per call its response asked for."""
    return [_tool_call_row(step.run_id, step.index, call) for call in step.tool_calls]


def _tool_call_row(run_id: str, step_idx: int, call: ToolCallRecord) -> ToolCallRow:
    return ToolCallRow(
        run_id=run_id,
        step_idx=step_idx,
        call_idx=call.index,
        id=call.id,
        id_format=call.id_format,
        name=call.name,
        arguments_raw=call.arguments_raw,
        arguments_type=call.arguments_type,
        arguments=json_text(call.arguments) if call.json_valid else None,
        json_valid=call.json_valid,
        schema_valid=call.schema_valid,
        schema_error=call.schema_error,
    )


def tool_result_rows(
    run_id: str, step_idx: int, results: Iterable[ToolResultRecord]
) -> list[ToolResultRow]:
    """The `tool_results` rows of what the tools of one step returned."""
    return [
        ToolResultRow(
            run_id=run_id,
            step_idx=step_idx,
            call_idx=r.index,
            tool_call_id=r.tool_call_id,
            name=r.name,
            output=r.output,
            error=r.error,
            error_kind=r.error_kind,
            started_at=r.started_at,
            duration_ms=r.duration_ms,
            structured=None if r.structured is None else to_json(r.structured),
        )
        for r in results
    ]
