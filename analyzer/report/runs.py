"""The runs a report draws as timelines: the newest few of each group, step by step, with
their findings.

Reads only what a timeline shows (finish reason, latency, errors, call names, a bounded
excerpt of the text) so a report over 300-step runs stays small and quick to build.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb

from analyzer.compare.selection import SELECTED, Selection, select_runs
from analyzer.cursor_rows import dict_rows
from analyzer.findings import stored_evidence
from analyzer.queries import so_far_label
from analyzer.run_end import ended_by
from traces.store.run_tables import of_runs

EXCERPT_CHARS = 240
"""Text kept of content, final answers, errors and evidence: enough to recognise, no more."""


@dataclass(frozen=True)
class FindingMark:
    """One finding, on a step or on the whole run."""

    step: int | None
    kind: str
    severity: str
    layer: str
    evidence: str
    """The evidence as compact JSON, cut to `EXCERPT_CHARS`."""


@dataclass(frozen=True)
class StepCell:
    """One step of a timeline."""

    index: int
    finish_reason: str
    latency_ms: float
    error_kind: str | None
    error_message: str | None
    tools: tuple[str, ...]
    """Names of the tools the step called, in order."""
    content: str | None
    """The start of the step's content."""
    findings: tuple[FindingMark, ...]


@dataclass(frozen=True)
class RunTimeline:
    """One run as a row of steps, with how it ended."""

    id: str
    task: str
    provider: str
    started_at: datetime
    termination: str | None
    success: bool | None
    steps_count: int
    failure_summary: str | None
    error: str | None
    final_answer: str | None
    steps: tuple[StepCell, ...]
    findings: tuple[FindingMark, ...]
    """Findings about the run as a whole (no step)."""
    findings_so_far: str | None = None
    """The label "so far, up to step K" when the findings were checked while the run was recorded
    (`analyzer.queries.so_far_label`), None when they are final."""
    ended_by: str | None = None
    """The layer a failed run's end is laid on (`analyzer.run_end`); None when it did not fail."""
    ended_by_kind: str | None = None
    """The finding on its last step that explains the end; None when none did."""


@dataclass(frozen=True)
class GroupTimelines:
    """The timelines shown for one group, newest first."""

    group: str
    total: int
    """Runs the group has in the comparison."""
    runs: tuple[RunTimeline, ...]

    @property
    def omitted(self) -> int:
        """Runs of the group left out of the report."""
        return self.total - len(self.runs)


def excerpt(text: str | None, limit: int = EXCERPT_CHARS) -> str | None:
    """`text` cut to `limit` characters, with an ellipsis when it was longer."""
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def load_timelines(
    conn: duckdb.DuckDBPyConnection,
    selection: Selection,
    groups: Sequence[str],
    per_group: int,
) -> list[GroupTimelines]:
    """The newest `per_group` runs of each group of the selection (in `groups` order)."""
    select_runs(conn, selection)
    heads = dict_rows(
        conn.execute(
            f"""
            SELECT c.grp, r.id, r.task,
                   r.provider, r.started_at, r.termination, r.success, r.steps,
                   r.failure_summary, left(r.error, {EXCERPT_CHARS + 1}) AS error,
                   left(r.final_answer, {EXCERPT_CHARS + 1}) AS final_answer,
                   sf.run_id IS NOT NULL AS findings_so_far,
                   sf.through_step AS findings_through_step, e.ended_by, e.ended_by_kind
            FROM {SELECTED} c JOIN runs r ON r.id = c.run_id
            LEFT JOIN findings_so_far sf ON sf.run_id = c.run_id
            LEFT JOIN ({ended_by(f"SELECT run_id FROM {SELECTED}")}) e ON e.run_id = c.run_id
            QUALIFY row_number() OVER (PARTITION BY c.grp ORDER BY r.started_at DESC, r.id DESC)
                    <= ?
            ORDER BY r.started_at DESC, r.id DESC
            """,
            [per_group],
        )
    )
    totals = dict(conn.execute(f"SELECT grp, count(*) FROM {SELECTED} GROUP BY grp").fetchall())
    ids = [h["id"] for h in heads]
    steps = _load_steps(conn, ids)
    findings = _load_findings(conn, ids)
    by_group: dict[str, list[RunTimeline]] = {g: [] for g in groups}
    for head in heads:
        run_findings = findings.get(head["id"], [])
        marks: dict[int, list[FindingMark]] = {}
        for mark in run_findings:
            if mark.step is not None:
                marks.setdefault(mark.step, []).append(mark)
        cells = tuple(
            StepCell(**{**row, "findings": tuple(marks.get(row["index"], ()))})
            for row in steps.get(head["id"], [])
        )
        by_group.setdefault(head["grp"], []).append(
            RunTimeline(
                id=head["id"],
                task=head["task"],
                provider=head["provider"],
                started_at=head["started_at"],
                termination=head["termination"],
                success=head["success"],
                steps_count=head["steps"],
                failure_summary=head["failure_summary"],
                error=excerpt(head["error"]),
                final_answer=excerpt(head["final_answer"]),
                steps=cells,
                findings=tuple(m for m in run_findings if m.step is None),
                findings_so_far=so_far_label(head),
                ended_by=head["ended_by"],
                ended_by_kind=head["ended_by_kind"],
            )
        )
    return [
        GroupTimelines(group=g, total=int(totals.get(g, 0)), runs=tuple(runs))
        for g, runs in by_group.items()
    ]


_IDS = "SELECT unnest($1::VARCHAR[])"
"""The runs read, one list parameter (`run_tables.of_runs`)."""


def _load_steps(conn: duckdb.DuckDBPyConnection, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    rows = dict_rows(
        conn.execute(
            f"""
            SELECT s.run_id, s.idx AS index, s.finish_reason, s.latency_ms, s.error_kind,
                   left(s.error_message, {EXCERPT_CHARS + 1}) AS error_message,
                   left(s.content, {EXCERPT_CHARS + 1}) AS content,
                   coalesce(c.tools, []) AS tools
            FROM step_rows s
            LEFT JOIN (SELECT run_id, step_idx, list(name ORDER BY call_idx) AS tools
                       FROM tool_calls WHERE {of_runs(_IDS)}
                       GROUP BY ALL) c
                ON c.run_id = s.run_id AND c.step_idx = s.idx
            WHERE {of_runs(_IDS, "s")}
            ORDER BY s.run_id, s.idx
            """,
            [ids],
        )
    )
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        run_id = row.pop("run_id")
        row["tools"] = tuple(row["tools"])
        row["content"] = excerpt(row["content"])
        row["error_message"] = excerpt(row["error_message"])
        out.setdefault(run_id, []).append(row)
    return out


def _load_findings(conn: duckdb.DuckDBPyConnection, ids: list[str]) -> dict[str, list[FindingMark]]:
    out: dict[str, list[FindingMark]] = {}
    for run_id, step, kind, severity, layer, evidence in conn.execute(
        f"""
        SELECT run_id, step_idx, kind, severity, layer, evidence FROM findings
        WHERE {of_runs(_IDS)}
        ORDER BY run_id, step_idx NULLS FIRST, kind
        """,
        [ids],
    ).fetchall():
        out.setdefault(run_id, []).append(
            FindingMark(
                step=step,
                kind=kind,
                severity=severity,
                layer=layer,
                evidence=excerpt(_compact(evidence)) or "",
            )
        )
    return out


def _compact(evidence: Any) -> str:
    """Evidence JSON on one line, without the check's bookkeeping."""
    return json.dumps(stored_evidence(evidence), ensure_ascii=False, separators=(", ", ": "))
