"""Per-run numbers of the selected runs, aggregated in DuckDB.

Millions of steps stay in the database: one query folds steps and tool calls into one row
per run, and only those rows (a few dozen numbers each) come to Python, where the bootstrap
resamples them. Every rate of the comparison is a ratio of two of these columns summed over
runs, so it can be recomputed on any resample of runs.

Per-call error classes follow the ones OpenRouter publishes for its Tool Call Error Rate
(InvalidJson, UnknownName, SchemaMismatch), checked in that order so each call has at most
one: `invalid_json` (the arguments do not parse as a JSON object), `unknown_name` (the name
is not among the request's `tools`), `schema_mismatch` (valid JSON, known tool, arguments
violate its schema). A call whose schema was not checked counts as valid, as OpenRouter
counts a tool without a usable schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb

from analyzer.checks.version import CHECK_VERSION
from analyzer.compare.numeric import np, npt
from analyzer.compare.selection import SELECTED
from analyzer.cursor_rows import column_names
from analyzer.run_end import ended_by
from traces.store.database import is_served

_STEPS = f"""
st AS (
    -- Runs are keyed by their row in the selection table from here on: joining and
    -- grouping a million steps and calls by an integer instead of the run id's text
    -- is most of this query's cost saved.
    SELECT sel.rowid AS rn, /*request*/ s.idx,
           s.finish_reason = 'tool_calls' AS finished_with_calls,
           s.error_kind IS NULL AS ok, s.latency_ms,
           s.streamed, s.completion_tokens, s.cached_tokens,
           least(s.ttft_reasoning_ms, s.ttft_content_ms, s.ttft_tool_call_ms) AS ttft,
           s.reasoning_source <> 'none' AS has_reasoning
    FROM step_rows s JOIN {SELECTED} sel ON sel.run_id = s.run_id
    /*steps*/
),
calls AS (
    SELECT sel.rowid AS rn, c.step_idx, c.call_idx, c.json_valid,
           CASE WHEN NOT c.json_valid THEN 'invalid_json'
                WHEN c.schema_valid IS FALSE THEN 'schema_mismatch'
           END AS known_class
    FROM tool_calls c JOIN {SELECTED} sel ON sel.run_id = c.run_id
    /*calls*/
),
unchecked AS (
    -- The recorder validates arguments against the declared tool of that name, so a
    -- validated call names a declared tool; only the others need the request's list.
    SELECT c.run_id, sel.rowid AS rn, c.step_idx, c.call_idx, c.name
    FROM tool_calls c JOIN {SELECTED} sel ON sel.run_id = c.run_id
    /*calls*/
    WHERE c.json_valid AND c.schema_valid IS NULL
),
declared AS (
    -- The tool names of only the steps with an unchecked call, extracted while scanning
    -- steps: joining the calls to whole request_params would hold every step's tools
    -- (kilobytes each) in the join's hash table, gigabytes over a million steps.
    SELECT u.rn, s.idx,
           coalesce(json_extract_string(s.request_params, '$.tools[*].function.name'),
                    []::VARCHAR[]) AS names
    FROM step_rows s
    JOIN (SELECT DISTINCT run_id, rn, step_idx FROM unchecked) u
        ON u.run_id = s.run_id AND u.step_idx = s.idx
),
undeclared AS (
    SELECT c.rn, c.step_idx, c.call_idx
    FROM unchecked c JOIN declared d ON d.rn = c.rn AND d.idx = c.step_idx
    WHERE NOT list_contains(d.names, c.name)
),
classified AS (
    SELECT c.rn, c.step_idx, c.json_valid,
           coalesce(c.known_class, CASE WHEN u.rn IS NOT NULL THEN 'unknown_name' END)
               AS error_class
    FROM calls c LEFT JOIN undeclared u
        ON u.rn = c.rn AND u.step_idx = c.step_idx AND u.call_idx = c.call_idx
),
step_calls AS (
    SELECT rn, step_idx, count(*) AS calls,
           count(*) FILTER (WHERE json_valid) AS json_valid_calls,
           count(*) FILTER (WHERE error_class = 'invalid_json') AS invalid_json,
           count(*) FILTER (WHERE error_class = 'unknown_name') AS unknown_name,
           count(*) FILTER (WHERE error_class = 'schema_mismatch') AS schema_mismatch,
           bool_or(error_class IS NOT NULL) AS errored
    FROM classified GROUP BY rn, step_idx
),
steps_full AS (
    SELECT st.*, coalesce(sc.calls, 0) AS calls,
           coalesce(sc.json_valid_calls, 0) AS json_valid_calls,
           coalesce(sc.invalid_json, 0) AS invalid_json,
           coalesce(sc.unknown_name, 0) AS unknown_name,
           coalesce(sc.schema_mismatch, 0) AS schema_mismatch,
           coalesce(sc.errored, false) AS errored
    FROM st LEFT JOIN step_calls sc ON sc.rn = st.rn AND sc.step_idx = st.idx
)"""
"""Every selected step with its calls classified (`steps_full`), for folding per run or per
request (the comments /*steps*/ and /*calls*/ are where a narrower read filters them, and
/*request*/ where a read by request adds the group and request hash: a read per run leaves
those strings out of the million rows it holds)."""

STEP_SUMS = """
           sum(calls) AS calls,
           sum(json_valid_calls) AS json_valid_calls,
           sum(invalid_json) AS invalid_json,
           sum(unknown_name) AS unknown_name,
           sum(schema_mismatch) AS schema_mismatch,
           count(*) FILTER (WHERE calls > 0) AS call_steps,
           count(*) FILTER (WHERE errored) AS errored_call_steps,
           count(*) FILTER (WHERE finished_with_calls) AS tool_calls_responses,
           count(*) FILTER (WHERE finished_with_calls AND calls > 0 AND NOT errored)
               AS tool_calls_responses_valid,
           count(*) FILTER (WHERE ok) AS ok_steps,
           count(*) FILTER (WHERE ok AND has_reasoning) AS reasoning_steps"""
"""Sums over steps that are as meaningful per request as per run (the per-response and
per-call rates are ratios of two of them)."""

STEP_SUM_COLUMNS = (
    "calls",
    "json_valid_calls",
    "invalid_json",
    "unknown_name",
    "schema_mismatch",
    "call_steps",
    "errored_call_steps",
    "tool_calls_responses",
    "tool_calls_responses_valid",
    "ok_steps",
    "reasoning_steps",
)
"""The columns `STEP_SUMS` gives, in its order."""

_PER_RUN = f"""
WITH {_STEPS},
kept AS (
    -- What the host kept of the history, from each run's ledger (`traces analyze` fills
    -- it): token sums over the requests of the run's tool chain, null when unknown.
    SELECT l.run_id, l.reasoning_sent_tokens, l.reasoning_kept_tokens,
           l.tool_results_sent_tokens, l.tool_results_kept_tokens,
           -- Fitted, yet no behaviour held the probability a retention needs: undecided.
           l.reasoning_behaviour IS NOT NULL AND l.reasoning_kept_tokens IS NULL
               AS reasoning_undecided,
           l.tool_results_behaviour IS NOT NULL AND l.tool_results_kept_tokens IS NULL
               AS tool_results_undecided
    FROM ledgers l JOIN {SELECTED} sel ON sel.run_id = l.run_id
),
step_run AS (
    -- What needs only the steps, folded straight from them: the step × calls join is
    -- made for the runs' call columns only (below).
    SELECT rn,
           count(*) AS steps_recorded,
           count(*) FILTER (WHERE finished_with_calls) AS tool_calls_responses,
           count(*) FILTER (WHERE ok) AS ok_steps,
           count(*) FILTER (WHERE ok AND has_reasoning) AS reasoning_steps,
           median(ttft) FILTER (WHERE ok AND streamed AND ttft IS NOT NULL) AS ttft_ms,
           median(latency_ms) FILTER (WHERE ok) AS latency_ms,
           sum(completion_tokens) FILTER (WHERE ok AND completion_tokens IS NOT NULL
                                          AND latency_ms > 0) AS output_tokens,
           -- Summed exactly (to 1e-12 ms, about a double's precision) and rounded once: a
           -- sum of doubles would depend on the order the rows arrive in, which moves
           -- with the plan and the number of threads.
           sum(latency_ms::DECIMAL(38, 12)) FILTER (WHERE ok AND completion_tokens IS NOT NULL
                                                    AND latency_ms > 0)::DOUBLE / 1000.0
               AS output_seconds,
           sum(coalesce(cached_tokens, 0)) AS cached_tokens
    FROM st GROUP BY rn
),
call_run AS (
    -- The call columns of `STEP_SUMS`, from the steps that have calls.
    SELECT sc.rn,
           sum(sc.calls) AS calls,
           sum(sc.json_valid_calls) AS json_valid_calls,
           sum(sc.invalid_json) AS invalid_json,
           sum(sc.unknown_name) AS unknown_name,
           sum(sc.schema_mismatch) AS schema_mismatch,
           count(*) AS call_steps,
           count(*) FILTER (WHERE sc.errored) AS errored_call_steps,
           count(*) FILTER (WHERE st.finished_with_calls AND NOT sc.errored)
               AS tool_calls_responses_valid
    FROM step_calls sc JOIN st ON st.rn = sc.rn AND st.idx = sc.step_idx
    GROUP BY sc.rn
),
checked AS (
    -- Runs whose findings are so far (checked while the run was recorded, through a step
    -- before its last; an interrupted run keeps them until `traces analyze`): finding rates
    -- divide what was found by the steps checked, not by the steps recorded since.
    SELECT st.rn, count(*) AS steps_checked
    FROM st JOIN {SELECTED} sel ON sel.rowid = st.rn
    JOIN findings_so_far sf ON sf.run_id = sel.run_id
    WHERE sf.through_step IS NULL OR st.idx <= sf.through_step
    GROUP BY st.rn
),
per_run AS (
    SELECT s.rn, s.steps_recorded,
           c.calls, c.json_valid_calls, c.invalid_json, c.unknown_name, c.schema_mismatch,
           c.call_steps, c.errored_call_steps, s.tool_calls_responses,
           c.tool_calls_responses_valid, s.ok_steps, s.reasoning_steps,
           s.ttft_ms, s.latency_ms, s.output_tokens, s.output_seconds, s.cached_tokens
    FROM step_run s LEFT JOIN call_run c ON c.rn = s.rn
)
SELECT sel.run_id, sel.grp, sel.task, r.provider, r.model,
       -- Unknown (NULL) where no answer was judged (the endpoint failed, an imported log):
       -- never a failure. A run the model ended without an answer is a failure (FALSE).
       r.success,
       -- An interrupted run (stopped by its recorder, not by the host or the model) has no
       -- outcome: its steps count, the outcome rates leave it out.
       r.status <> 'interrupted' AS finished,
       r.termination = 'completed' AS completed,
       -- Laid on the host by the evidence (`analyzer.run_end`), not by the termination
       -- alone: an empty turn the host's template caused ends `model_error`, a 400 for
       -- reasoning the client dropped `provider_error`.
       coalesce(e.ended_by = 'provider', false) AS provider_error,
       CASE WHEN r.termination = 'completed' THEN r.steps END AS steps_to_finish,
       -- Unknown (NULL) where an answered step reported no usage, never counted as 0.
       r.prompt_tokens, r.completion_tokens, r.reasoning_tokens,
       k.reasoning_sent_tokens, k.reasoning_kept_tokens,
       k.tool_results_sent_tokens, k.tool_results_kept_tokens,
       k.reasoning_undecided, k.tool_results_undecided,
       p.* EXCLUDE (rn),
       CASE WHEN sf.run_id IS NULL THEN p.steps_recorded ELSE coalesce(ch.steps_checked, 0)
       END AS steps_checked,
       sf.run_id IS NOT NULL AS findings_so_far
FROM {SELECTED} sel
JOIN runs r ON r.id = sel.run_id
LEFT JOIN per_run p ON p.rn = sel.rowid
LEFT JOIN findings_so_far sf ON sf.run_id = sel.run_id
LEFT JOIN checked ch ON ch.rn = sel.rowid
LEFT JOIN kept k ON k.run_id = sel.run_id
LEFT JOIN ({ended_by(f"SELECT run_id FROM {SELECTED}")}) e ON e.run_id = sel.run_id
ORDER BY sel.grp, sel.task, sel.run_id
"""

_SHARED = f"""
shared AS (
    -- Requests answered by more than one group: the only ones a paired comparison reads.
    SELECT s.request_hash
    FROM step_rows s JOIN {SELECTED} sel ON sel.run_id = s.run_id
    WHERE s.error_kind IS NULL AND s.request_hash IS NOT NULL
    GROUP BY s.request_hash
    HAVING count(DISTINCT sel.grp) > 1
)"""

PER_REQUEST = f"""
WITH {_SHARED},
{
    _STEPS.replace("/*steps*/", "WHERE s.request_hash IN (SELECT request_hash FROM shared)")
    .replace("/*request*/", "sel.grp, s.request_hash,")
    .replace("/*calls*/", "SEMI JOIN st ON st.rn = sel.rowid AND st.idx = c.step_idx")
}
SELECT grp, request_hash,{STEP_SUMS}
FROM steps_full
WHERE ok
GROUP BY grp, request_hash
"""
"""The step sums of each group's answers to each request (by request hash) that more than
one group answered: what a paired comparison resamples. Only those requests' steps and calls
are read."""

_FINDINGS = f"""
-- Each run by its position in the run table (`_PER_RUN`'s order), so that the counts are
-- spread over the runs as arrays, without a lookup per finding row.
SELECT p.pos, f.kind, f.layer,
       coalesce(f.layer = 'provider' AND f.severity = 'error', false) AS host_error, count(*) AS n
FROM findings f
JOIN (SELECT run_id, row_number() OVER (ORDER BY grp, task, run_id) - 1 AS pos
      FROM {SELECTED}) p ON p.run_id = f.run_id
GROUP BY ALL
"""

_UPSTREAMS = f"""
SELECT sel.grp, list(DISTINCT s.upstream_provider ORDER BY s.upstream_provider)
FROM step_rows s JOIN {SELECTED} sel ON sel.run_id = s.run_id
WHERE s.upstream_provider IS NOT NULL
GROUP BY sel.grp
"""

_STALE = f"""
SELECT count(DISTINCT f.run_id)
FROM findings f JOIN {SELECTED} sel ON sel.run_id = f.run_id
WHERE coalesce(TRY_CAST(json_extract_string(f.evidence, '$.check_version') AS INTEGER), 0) < ?
"""

_LABELS = ("run_id", "grp", "task", "provider", "model")


@dataclass
class RunTable:
    """The selected runs, one entry per run in every list, sorted by group, task and id."""

    run_ids: list[str]
    groups: list[str]
    tasks: list[str]
    providers: list[str]
    models: list[str]
    columns: dict[str, list[float | None]]
    """Numeric per-run values by name (booleans as 0/1; None where a run has no value)."""
    findings: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    """Finding counts per run: {"kind": {kind: [...]}, "layer": {layer: [...]}}."""
    upstreams: dict[str, list[str]] = field(default_factory=dict)
    """Upstream hosts named by the steps of each group."""
    stale_runs: int = 0
    """Runs whose findings came from an older version of the checks."""

    def rows_of(self, group: str) -> list[int]:
        """Indices of the runs in `group`."""
        return [i for i, g in enumerate(self.groups) if g == group]


def _fetch_arrays(conn: duckdb.DuckDBPyConnection, query: str) -> dict[str, npt.NDArray[Any]]:
    """A result as one array per column, in order, masked where NULL: DuckDB's own
    conversion, or built from the rows on a session on the store's server (which offers
    rows only; the same arrays, as that conversion makes each value what `float()` makes)."""
    cursor = conn.execute(query)
    if not is_served(conn):
        fetched: dict[str, npt.NDArray[Any]] = cursor.fetchnumpy()
        return fetched
    names = column_names(cursor)
    columns = list(zip(*cursor.fetchall(), strict=True)) or [() for _ in names]
    return {name: _array(values) for name, values in zip(names, columns, strict=True)}


def _array(values: tuple[Any, ...]) -> npt.NDArray[Any]:
    if any(isinstance(v, str) for v in values):
        return np.array(values, dtype=object)
    return np.ma.masked_array(
        [0.0 if v is None else float(v) for v in values],
        mask=[v is None for v in values],
        dtype=np.float64,
    )


def _floats(values: npt.NDArray[Any]) -> list[float | None]:
    """A fetched column as floats, None where NULL (DuckDB gives a masked array where there
    are NULLs). The columns are booleans, integers and doubles, so each value is the float
    `float()` made of the fetched Python value, to the bit."""
    column: list[float | None] = np.ma.masked_array(values, dtype=np.float64).tolist()
    return column


def load_run_table(conn: duckdb.DuckDBPyConnection) -> RunTable:
    """Per-run values and finding counts of the runs in the selection table."""
    # As arrays, column by column (50,000 runs × 35 columns at a million steps), made lists
    # in C: building a Python object per value first took a second.
    fetched = _fetch_arrays(conn, _PER_RUN)
    names = list(fetched)
    labels = [[str(v) for v in fetched[name].tolist()] for name in _LABELS]
    table = RunTable(
        run_ids=labels[0],
        groups=labels[1],
        tasks=labels[2],
        providers=labels[3],
        models=labels[4],
        columns={},
    )
    size = len(table.run_ids)
    for name in names:
        if name not in _LABELS:
            table.columns[name] = _floats(fetched[name])
    # Runs without any step have no per-run row: their counts are zero, not unknown.
    for name in _ZERO_WHEN_MISSING:
        table.columns[name] = [v or 0.0 for v in table.columns[name]]
    # Counts spread per name with array operations: the work is findings + names × runs,
    # never findings × runs, and no Python call per finding row.
    found = _fetch_arrays(conn, _FINDINGS)
    positions = np.asarray(found["pos"], dtype=np.int64)
    counts = np.asarray(found["n"], dtype=np.float64)

    def spread(rows: npt.NDArray[np.bool_]) -> list[float]:
        column = np.zeros(size)
        np.add.at(column, positions[rows], counts[rows])  # whole counts: exact in any order
        values: list[float] = column.tolist()
        return values

    by_dimension = {dimension: found[dimension] for dimension in ("kind", "layer")}
    table.findings = {
        dimension: {str(name): spread(values == name) for name in sorted(set(values.tolist()))}
        for dimension, values in by_dimension.items()
    }
    # Always a column (zero without any): "no host error" is a claim a policy can check.
    host_errors: list[float | None] = list(spread(np.asarray(found["host_error"], dtype=bool)))
    table.columns["provider_error_findings"] = host_errors
    table.upstreams = {str(g): list(hosts) for g, hosts in conn.execute(_UPSTREAMS).fetchall()}
    stale = conn.execute(_STALE, [CHECK_VERSION]).fetchone()
    table.stale_runs = int(stale[0]) if stale else 0
    return table


_ZERO_WHEN_MISSING = (
    "steps_recorded",
    "steps_checked",
    *STEP_SUM_COLUMNS,
    "output_tokens",
    "output_seconds",
    "cached_tokens",
)
