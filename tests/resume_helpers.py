"""Helpers for the resume and retry tests: a run's exchanges as stored, and interrupting a
recorded run the way a kill at a given moment leaves it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb


def exchanges(db: Path, run_id: str) -> list[dict[str, Any]]:
    """Each step of a run as it was exchanged: the request's messages (rebuilt with
    `request_messages`) and parameters, the answer, and the tool calls and results."""
    with duckdb.connect(str(db), read_only=True) as conn:
        steps = conn.execute(
            "SELECT idx, request_params, finish_reason, content, reasoning FROM steps "
            "WHERE run_id = ? ORDER BY idx",
            [run_id],
        ).fetchall()
        out = []
        for idx, params, finish, content, reasoning in steps:
            messages = conn.execute(
                "SELECT body FROM request_messages(?, ?)", [run_id, idx]
            ).fetchall()
            calls = conn.execute(
                "SELECT call_idx, id, name, arguments_raw FROM tool_calls "
                "WHERE run_id = ? AND step_idx = ? ORDER BY call_idx",
                [run_id, idx],
            ).fetchall()
            results = conn.execute(
                "SELECT call_idx, tool_call_id, name, output, error, error_kind "
                "FROM tool_results WHERE run_id = ? AND step_idx = ? ORDER BY call_idx",
                [run_id, idx],
            ).fetchall()
            out.append(
                {
                    "idx": idx,
                    "messages": [json.loads(body) for (body,) in messages],
                    "params": json.loads(params),
                    "finish_reason": finish,
                    "content": content,
                    "reasoning": reasoning,
                    "calls": calls,
                    "results": results,
                }
            )
        return out


def ending(db: Path, run_id: str) -> dict[str, Any]:
    """How a run ended, with its totals."""
    with duckdb.connect(str(db), read_only=True) as conn:
        cursor = conn.execute(
            "SELECT status, termination, success, success_detail, final_answer, error, steps, "
            "tool_calls, tool_errors, prompt_tokens IS NULL AS tokens_unknown "
            "FROM runs WHERE id = ?",
            [run_id],
        )
        names = [d[0] for d in cursor.description or []]
        row = cursor.fetchone()
        assert row is not None, run_id
        return dict(zip(names, row, strict=True))


def dead_pid() -> int:
    """The id of a process that has exited (a recorder that was killed)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def cut(db: Path, run_id: str, *, steps: int, results: bool = True) -> None:
    """Leave the run as a kill -9 leaves it once `steps` steps are committed (with or
    without the last one's tool results): later rows gone, its end not written, its
    recorder a process that no longer exists."""
    with duckdb.connect(str(db)) as conn:
        # The last kept step as its own commit left it: the recorders' writer stores a step's
        # reasoning, replayed hash and tools' outputs once only in the next step's
        # transaction, cut here.
        conn.execute(
            "UPDATE step_rows SET reasoning = v.reasoning, "
            "replay_message_hash = v.replay_message_hash, replayed = false, "
            "reasoning_replayed = false FROM steps v WHERE v.run_id = step_rows.run_id "
            "AND v.idx = step_rows.idx AND step_rows.run_id = ? AND step_rows.idx = ?",
            [run_id, steps - 1],
        )
        conn.execute(
            "UPDATE tool_result_rows SET output = v.output, output_position = NULL "
            "FROM tool_results v WHERE v.run_id = tool_result_rows.run_id "
            "AND v.step_idx = tool_result_rows.step_idx AND v.call_idx = tool_result_rows.call_idx "
            "AND tool_result_rows.run_id = ? AND tool_result_rows.step_idx = ?",
            [run_id, steps - 1],
        )
        for table, column in (
            ("step_rows", "idx"),  # the base table of the view `steps` (migration 17)
            ("tool_call_rows", "step_idx"),  # of the view `tool_calls` (migration 21)
            ("step_message_keys", "step_idx"),
        ):
            conn.execute(f"DELETE FROM {table} WHERE run_id = ? AND {column} >= ?", [run_id, steps])
        kept_results = steps if results else steps - 1
        # The base table of the view `tool_results` (migration 16).
        conn.execute(
            "DELETE FROM tool_result_rows WHERE run_id = ? AND step_idx >= ?",
            [run_id, kept_results],
        )
        conn.execute("DELETE FROM findings WHERE run_id = ?", [run_id])
        conn.execute(
            "UPDATE runs SET status = 'running', termination = NULL, success = NULL, "
            "success_detail = NULL, final_answer = NULL, error = NULL, ended_at = NULL, "
            "steps = 0, tool_calls = 0, tool_errors = 0, prompt_tokens = NULL, "
            "completion_tokens = NULL, reasoning_tokens = NULL, recorder_pid = ? WHERE id = ?",
            [dead_pid(), run_id],
        )
