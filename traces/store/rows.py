"""Row builders shared by the live recorder and the importer: tuples in the column order of
`writer_process.TABLES`, so a recorded run and an imported one are stored identically.

JSON is encoded here, not in the writer process, so a row is a snapshot of plain immutable
values taken when it is queued (the dicts it came from may live on in the conversation); it
costs ~15 us a step.
"""

from __future__ import annotations

import json
from typing import Any

from traces.model import RunOutcome, RunRecord, RunStatus, StepRecord


def json_text(value: Any) -> str | None:
    """JSON text of a value for a JSON column (None stays NULL)."""
    return None if value is None else json.dumps(value, ensure_ascii=False)


def run_row(run: RunRecord) -> tuple[Any, ...]:
    """The `runs` row of a run as it starts (status running)."""
    return (
        run.id,
        run.task,
        run.task_path,
        run.task_sha256,
        run.provider,
        run.model,
        run.base_url,
        json_text(run.settings),
        run.seed,
        RunStatus.RUNNING.value,
        run.started_at,
        run.recorder_pid,
        run.recorder_host,
        run.origin,
        run.import_id,
        run.conversation,
    )


def step_row(step: StepRecord) -> tuple[Any, ...]:
    """The `steps` row of a step."""
    usage = step.usage
    err = step.error
    return (
        step.run_id,
        step.index,
        step.started_at,
        step.latency_ms,
        step.ttft_reasoning_ms,
        step.ttft_content_ms,
        step.ttft_tool_call_ms,
        step.streamed,
        step.http_status,
        step.request_id,
        json_text(step.response_headers),
        json_text(step.request_params),
        step.request_message_count,
        step.request_prefix,
        step.response_body,
        json_text([[e.t_ms, e.line] for e in step.stream_events])
        if step.stream_events is not None
        else None,
        step.finish_reason_raw,
        step.finish_reason,
        step.reasoning,
        step.reasoning_source,
        step.content,
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.reasoning_tokens,
        usage.reasoning_tokens_source,
        usage.cached_tokens,
        usage.total_tokens,
        json_text(step.usage_raw),
        step.replay_message_hash,
        err.kind if err else None,
        err.status if err else None,
        err.message if err else None,
        err.body if err else None,
        step.retries,
        json_text([e.model_dump() for e in step.retry_errors]) if step.retry_errors else None,
        json_text(step.anomalies) if step.anomalies else None,
        step.request_hash,
        step.upstream_provider,
    )


def outcome_row(run_id: str, outcome: RunOutcome) -> tuple[Any, ...]:
    """The values of `UPDATE_RUN_COLUMNS` for a run that ended, then its id."""
    return (
        outcome.status.value,
        outcome.termination.value,
        outcome.success,
        outcome.success_detail,
        outcome.final_answer,
        outcome.error,
        outcome.ended_at,
        outcome.steps,
        outcome.tool_calls,
        outcome.tool_errors,
        outcome.prompt_tokens,
        outcome.completion_tokens,
        outcome.reasoning_tokens,
        run_id,
    )
