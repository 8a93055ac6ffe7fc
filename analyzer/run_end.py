"""Whose fault a run's end was: the layer the evidence lays it on, beside the termination the
recorder observed.

The recorder names what it saw (`termination`): a second turn that came back empty is a
`model_error` to it, a 400 refusing a request without its reasoning a `provider_error`. The
checks then say why: `empty_turn_after_reasoning` lays the empty turn on the host's template
(the provider), `http_reasoning_required` the 400 on the client that dropped the reasoning.
So a failed run's end is attributed to the layer of the error finding on its last step (the
step that ended it; the most confident one when several are), and to the termination's own
layer when nothing was found there. The termination stays as observed; every reader that
says who ended a run (`runs`, `show`, `compare`, the report, the viewer) reads this one query.
"""

from __future__ import annotations

FAILED_ENDS: dict[str, str] = {
    "model_error": "model",
    "provider_error": "provider",
    "context_overflow": "client",
    "client_error": "client",
}
"""Terminations of a run that failed -> the layer that termination names by itself (a context
overflow is the client's unless the host's own overflow finding says otherwise; a
`client_error` is agent-traces' own failure, on the client side)."""

_TERMINATIONS = ", ".join(f"'{t}'" for t in FAILED_ENDS)
_OWN_LAYER = " ".join(f"WHEN '{t}' THEN '{layer}'" for t, layer in FAILED_ENDS.items())
# The most confident error on the ending step explains it (an observed finding has no
# confidence: certain); the kind breaks ties, so the answer never depends on row order.
_ORDER = "ORDER BY coalesce(f.confidence, 1.0) DESC, f.kind"


def ended_by(run_ids: str) -> str:
    """SQL subquery: `run_id`, `ended_by` (the layer) and `ended_by_kind` (the finding that
    explains the end, NULL when none did) of each failed run among `run_ids` (a SQL query
    of run ids). Runs that completed, hit their step limit, are running or were interrupted
    have no row: nobody is at fault for their end."""
    return f"""
        SELECT r.id AS run_id,
               coalesce(e.layer, CASE r.termination {_OWN_LAYER} END) AS ended_by,
               e.kind AS ended_by_kind
        FROM runs r
        LEFT JOIN (
            SELECT f.run_id, first(f.layer {_ORDER}) AS layer, first(f.kind {_ORDER}) AS kind
            FROM findings f JOIN runs fr ON fr.id = f.run_id
            WHERE f.run_id IN ({run_ids}) AND f.severity = 'error'
              AND f.step_idx = fr.steps - 1 AND fr.termination IN ({_TERMINATIONS})
            GROUP BY f.run_id
        ) e ON e.run_id = r.id
        WHERE r.id IN ({run_ids}) AND r.termination IN ({_TERMINATIONS})
          AND r.status <> 'running'
    """
