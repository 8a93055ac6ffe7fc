"""Pairing requests across groups by what was asked, and K2-Vendor-Verifier's tool_call_f1.

Two steps answer the same request when their `request_hash` is equal: the same messages (by
content hash), tools and tool_choice; position in the run or recording order plays no part.
Steps that failed (no response) and steps recorded before the hash existed do not pair.

tool_call_f1 (K2VV's "ToolCall-Trigger Similarity") scores whether a group's responses
finished with `tool_calls` exactly when the reference's did on the same request: TP both did,
FP only the group, FN only the reference; F1 = 2·TP / (2·TP + FP + FN). K2VV sends each
request once; here a request may have been answered several times (repeated runs of one seed),
so each side's label is the share of its answers that finished with tool_calls and each
distinct request weighs one in total (TP += g·r, FP += g·(1−r), FN += (1−g)·r). With one answer
per side this is K2VV's count exactly. Each group step carries its share of its request's
weight, so the counts sum per run and the bootstrap can resample runs.
"""

from __future__ import annotations

import duckdb

from analyzer.compare.selection import SELECTED

_PAIRS = f"""
WITH ref AS (
    -- The reference's answers first: only the requests it answered can pair, and holding
    -- every selected step's hash at once (a million steps) cost hundreds of MiB.
    SELECT s.request_hash,
           avg(CASE WHEN s.finish_reason = 'tool_calls' THEN 1.0 ELSE 0.0 END) AS r
    FROM step_rows s JOIN {SELECTED} sel ON sel.run_id = s.run_id
    WHERE sel.grp = $ref AND s.error_kind IS NULL AND s.request_hash IS NOT NULL
    GROUP BY s.request_hash
),
st AS (
    SELECT s.run_id, sel.grp, s.request_hash,
           CASE WHEN s.finish_reason = 'tool_calls' THEN 1.0 ELSE 0.0 END AS tc
    FROM step_rows s JOIN {SELECTED} sel ON sel.run_id = s.run_id
    SEMI JOIN ref ON ref.request_hash = s.request_hash
    WHERE s.error_kind IS NULL AND s.request_hash IS NOT NULL
),
answers AS (SELECT grp, request_hash, count(*) AS n FROM st GROUP BY grp, request_hash)
SELECT st.run_id,
       sum(st.tc * ref.r / a.n) AS tp,
       sum(st.tc * (1 - ref.r) / a.n) AS fp,
       sum((1 - st.tc) * ref.r / a.n) AS fn,
       count(*) AS paired_steps
FROM st
JOIN ref ON ref.request_hash = st.request_hash
JOIN answers a ON a.grp = st.grp AND a.request_hash = st.request_hash
WHERE st.grp <> $ref
GROUP BY st.run_id
"""


class PairCounts:
    """Per-run TP, FP, FN shares and paired-step counts against one reference group."""

    def __init__(self, rows: dict[str, tuple[float, float, float, int]]) -> None:
        """`rows`: run id -> (tp, fp, fn, paired steps) for runs with at least one pair."""
        self._rows = rows

    def column(self, run_ids: list[str], which: int) -> list[float]:
        """One of tp (0), fp (1), fn (2), paired steps (3) for each of `run_ids` (0 if none)."""
        return [float(self._rows[r][which]) if r in self._rows else 0.0 for r in run_ids]


def pair_counts(conn: duckdb.DuckDBPyConnection, reference: str) -> PairCounts:
    """TP/FP/FN of "finished with tool_calls" for every selected run outside `reference`,
    against the reference group's answers to the same requests."""
    rows = conn.execute(_PAIRS, {"ref": reference}).fetchall()
    return PairCounts({str(r[0]): (r[1], r[2], r[3], int(r[4])) for r in rows})
