"""Like with like: groups are compared on the tasks they all ran, in the same proportions.

A rate pooled over a group's runs mixes its tasks: a host that ran only the easy task looks
better than one that ran both. So before anything is computed, the selection keeps only
the tasks every group ran (the runs of the others are left out, and listed), and when the
groups ran those tasks in different proportions no difference between them is judged: the
numbers are still shown, but they are not like with like. (Resampling is within each task
already, see `stats`, so the intervals keep each group's mix.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

from analyzer.compare.selection import SELECTED


@dataclass
class TaskMix:
    """What the selection kept and left out for the groups to be comparable."""

    shared: list[str]
    """Tasks every group ran (every task, with one group)."""
    left_out: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    """Group -> task -> ids of the runs left out (their task is not shared by every group)."""
    same_proportions: bool = True
    """Whether every group ran the shared tasks in the same proportions."""

    @property
    def comparable(self) -> bool:
        """Whether differences between the groups may be judged."""
        return bool(self.shared) and self.same_proportions


def keep_shared_tasks(conn: duckdb.DuckDBPyConnection) -> TaskMix:
    """Leave out of the selection table the runs of tasks some group did not run (unless no
    task is shared by all, when nothing can be compared and everything is kept)."""
    counts: dict[str, dict[str, int]] = {}
    for group, task, n in conn.execute(
        f"SELECT grp, task, count(*) FROM {SELECTED} GROUP BY ALL ORDER BY ALL"
    ).fetchall():
        counts.setdefault(str(group), {})[str(task)] = int(n)
    task_sets = [set(tasks) for tasks in counts.values()]
    shared = set.intersection(*task_sets) if task_sets else set()
    if not shared:
        return TaskMix(shared=[], same_proportions=False)
    mix = TaskMix(shared=sorted(shared))
    if len(shared) < len(set.union(*task_sets)):
        for group, task, run_id in conn.execute(
            f"SELECT grp, task, run_id FROM {SELECTED} "
            "WHERE task NOT IN (SELECT unnest(?::VARCHAR[])) ORDER BY ALL",
            [mix.shared],
        ).fetchall():
            mix.left_out.setdefault(str(group), {}).setdefault(str(task), []).append(str(run_id))
        conn.execute(
            f"DELETE FROM {SELECTED} WHERE task NOT IN (SELECT unnest(?::VARCHAR[]))",
            [mix.shared],
        )
    mix.same_proportions = _same_proportions(
        [{t: n for t, n in tasks.items() if t in shared} for tasks in counts.values()]
    )
    return mix


def _same_proportions(mixes: list[dict[str, int]]) -> bool:
    """Whether every mix gives each task the same share of its runs (exactly: in integers)."""
    first, first_total = mixes[0], sum(mixes[0].values())
    for other in mixes[1:]:
        total = sum(other.values())
        if any(first[t] * total != other[t] * first_total for t in first):
            return False
    return True


def notes(mix: TaskMix, groups: int) -> list[str]:
    """What a reader must know of the task mix, in words."""
    if groups < 2:
        return []
    out = []
    if not mix.shared:
        out.append(
            "No task was run by every group: the groups are not like with like, so no "
            "difference between them is judged (filter with --task, or record the same suite)."
        )
        return out
    if mix.left_out:
        parts = [
            f"{group}: {sum(len(ids) for ids in tasks.values())} run(s) of "
            + ", ".join(sorted(tasks))
            for group, tasks in sorted(mix.left_out.items())
        ]
        out.append(
            f"Compared on the tasks every group ran ({', '.join(mix.shared)}); left out, "
            f"their task not run by every group: {'; '.join(parts)} (the JSON lists the runs)."
        )
    if not mix.same_proportions:
        out.append(
            "The groups ran the shared tasks in different proportions: rates pool each "
            "group's tasks, so no difference between them is judged (filter with --task, or "
            "record as many runs of each task for each group)."
        )
    return out
