"""Reading stored probe runs: the latest probing of each provider, one row per probe."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb

from analyzer.cursor_rows import dict_rows
from traces.probes.catalogue import PROBE_SET_VERSION
from traces.probes.runner import NOT_SERVED

# One probing (`batch`) per provider: its most recent one of the current probe set version.
_QUERY = """
WITH probes AS (
    SELECT r.*,
           json_extract_string(r.settings, '$.batch') AS batch,
           max(r.started_at) OVER (
               PARTITION BY r.provider, json_extract_string(r.settings, '$.batch')
           ) AS batch_at
    FROM runs r
    WHERE r.origin = 'probe'
      AND json_extract_string(r.settings, '$.probe_set_version') = $version
      AND ($providers IS NULL OR list_contains($providers, r.provider))
),
latest AS (
    SELECT * FROM probes
    QUALIFY batch_at = max(batch_at) OVER (PARTITION BY provider)
)
SELECT l.id, l.provider, l.model, l.settings, l.status, l.error, l.success,
       l.success_detail, l.final_answer, l.started_at,
       s.http_status, s.prompt_tokens, s.error_kind, s.error_message,
       (SELECT list(t.id_format ORDER BY t.call_idx) FROM tool_calls t
        WHERE t.run_id = l.id AND t.step_idx = 0) AS id_formats,
       (SELECT list(t.name ORDER BY t.call_idx) FROM tool_calls t
        WHERE t.run_id = l.id AND t.step_idx = 0) AS tool_names
FROM latest l
LEFT JOIN step_rows s ON s.run_id = l.id AND s.idx = 0
ORDER BY l.provider, l.started_at, l.id
"""


@dataclass(frozen=True)
class ProbeResult:
    """One stored probe run, as the report needs it."""

    run_id: str
    provider: str
    model: str
    probe: str
    variant: str
    """`chat` or `raw`."""
    dialect: str | None
    ids_expected: str | None
    status: str
    error: str | None
    """The run's one-line error (HTTP status and message), when it failed."""
    success: bool | None
    success_detail: str | None
    final_answer: str | None
    started_at: datetime
    http_status: int | None
    prompt_tokens: int | None
    id_formats: list[str]
    tool_names: list[str]

    @property
    def ok(self) -> bool:
        """The host answered the probe (whatever it answered)."""
        return self.status == "completed" and not self.not_served

    @property
    def not_served(self) -> bool:
        """A raw probe whose host has no `/completions` route."""
        return (self.success_detail or "").startswith(NOT_SERVED)


def load_probe_results(
    conn: duckdb.DuckDBPyConnection, providers: list[str] | None = None
) -> list[ProbeResult]:
    """The latest probing of each provider (of `providers`, or all) in the current probe set
    version; older versions are left out, since their conversations differ."""
    cursor = conn.execute(_QUERY, {"version": PROBE_SET_VERSION, "providers": providers})
    return [_result(row) for row in dict_rows(cursor)]


def _result(row: dict[str, Any]) -> ProbeResult:
    settings = json.loads(row["settings"]) if isinstance(row["settings"], str) else row["settings"]
    error = row["error"] or (row["error_message"] if row["error_kind"] else None)
    return ProbeResult(
        run_id=row["id"],
        provider=row["provider"],
        model=row["model"],
        probe=str(settings.get("probe")),
        variant=str(settings.get("variant", "chat")),
        dialect=settings.get("dialect"),
        ids_expected=settings.get("ids_expected"),
        status=row["status"],
        error=error,
        success=row["success"],
        success_detail=row["success_detail"],
        final_answer=row["final_answer"],
        started_at=row["started_at"],
        http_status=row["http_status"],
        prompt_tokens=row["prompt_tokens"],
        id_formats=list(row["id_formats"] or []),
        tool_names=list(row["tool_names"] or []),
    )
