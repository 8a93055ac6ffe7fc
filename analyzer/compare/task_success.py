"""Task success per task: each group's share of judged runs that passed, task by task.

The pooled `success_rate` row mixes tasks; this breaks it down, so a dataset task (one run
per sample) or a suite of several tasks shows where a host gains or loses. A share of a few
runs gets Wilson's score interval (a bootstrap of 5 of 5 would say 100–100%); runs nothing
judged (an imported log, a scorer that failed, a run that ended without an answer) are left
out of the share and counted beside it, never taken as failures.
"""

from __future__ import annotations

import duckdb

from analyzer.compare.model import Estimate, TaskSuccess
from analyzer.compare.selection import SELECTED
from analyzer.compare.stats import wilson_interval

_PER_TASK = f"""
SELECT sel.task, sel.grp,
       count(*) FILTER (WHERE r.success IS NOT NULL) AS judged,
       count(*) FILTER (WHERE r.success) AS passed,
       count(*) FILTER (WHERE r.success IS NULL) AS unjudged,
       count(DISTINCT r.sample) AS samples
FROM {SELECTED} sel JOIN runs r ON r.id = sel.run_id
GROUP BY ALL ORDER BY ALL
"""


def task_success(conn: duckdb.DuckDBPyConnection) -> list[TaskSuccess]:
    """Each selected task's success share per group, with its Wilson interval."""
    by_task: dict[str, TaskSuccess] = {}
    for task, group, judged, passed, unjudged, samples in conn.execute(_PER_TASK).fetchall():
        row = by_task.setdefault(str(task), TaskSuccess(task=str(task)))
        row.unjudged[str(group)] = int(unjudged)
        row.samples = max(row.samples, int(samples))
        if judged:
            lo, hi = wilson_interval(int(passed), int(judged))
            row.values[str(group)] = Estimate(value=passed / judged, lo=lo, hi=hi, runs=judged)
    return list(by_task.values())
