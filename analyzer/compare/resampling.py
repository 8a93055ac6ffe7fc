"""Bootstrapping a comparison's groups, split between this process and worker processes.

The resampling is numpy on one thread (a GIL-bound loop of array operations: threads gain
nothing), and over a million steps it is most of a comparison's time, in five groups of
10,000 runs. Groups are independent: each draws from its own seeded stream (`GroupJob.seed`,
`"{seed}:{group}"`), so a group's draws, replicates and intervals are the same numbers in
whichever process computes them, and splitting the groups between processes changes nothing
in the output (`tests/test_compare_resampling.py` compares both ways).

Workers are fresh interpreters (`python -m analyzer.compare.worker`, as `traces.processes`
asks: no fork of a process that runs DuckDB's threads, none of the command line's imports),
started only when there is enough to resample to pay for their start (about 0.2 s of CPU
each). This process works on its own share meanwhile, then collects theirs.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Any

from analyzer.compare.stats import Bootstrapped, Column, Sample, Statistic, bootstrap
from traces.piped_child import start_piped_child
from traces.processes import cores

MIN_SPLIT_DRAWS = 20_000_000
"""Run draws (runs × resamples, over all groups) from which the groups are split between
processes: about 1.5 s of resampling, where a worker's start is a small part."""


@dataclass(frozen=True)
class GroupJob:
    """One group to bootstrap: its runs' columns (only those the statistics read, as arrays),
    their tasks (the strata), and the statistics by metric key."""

    group: str
    columns: dict[str, Column]
    strata: list[str]
    resamples: int
    seed: str
    statistics: list[tuple[str, Statistic]]

    @property
    def draws(self) -> int:
        """Run draws of its resampling (its share of the work)."""
        return len(self.strata) * self.resamples


def needed_columns(statistics: list[Statistic]) -> set[str]:
    """The columns these statistics read (sums, counts and order statistics alike)."""
    names: set[str] = set()
    for stat in statistics:
        sums, quantiles = stat.needs()
        names.update(name for name, _ in sums)
        names.update(name for name, _ in quantiles)
    return names


def bootstrap_job(job: GroupJob) -> dict[str, Bootstrapped]:
    """Every statistic of one group, from one pass over its draws."""
    sample = Sample(job.columns, job.strata, job.resamples, job.seed)
    sample.prepare([stat for _, stat in job.statistics])
    return {key: bootstrap(stat, sample) for key, stat in job.statistics}


def bootstrap_groups(
    jobs: list[GroupJob], processes: int | None = None
) -> dict[str, dict[str, Bootstrapped]]:
    """Each job's statistics by group. `processes`: how many processes share the groups
    (this one included); by default the cores, once the draws reach `MIN_SPLIT_DRAWS`."""
    if processes is None:
        processes = cores() if sum(job.draws for job in jobs) >= MIN_SPLIT_DRAWS else 1
    shares = split(jobs, max(1, min(processes, len(jobs))))
    results: dict[str, dict[str, Bootstrapped]] = {}
    workers: list[_Worker] = []
    finished = False
    try:
        for share in shares[1:]:
            if share:
                workers.append(_Worker(share))
        for job in shares[0]:
            results[job.group] = bootstrap_job(job)
        for worker in workers:
            results.update(worker.collect())
        finished = True
    finally:
        for worker in workers:
            worker.stop(wait_s=1.0 if finished else 0.0)
    return {job.group: results[job.group] for job in jobs}


def split(jobs: list[GroupJob], processes: int) -> list[list[GroupJob]]:
    """The jobs in `processes` shares of about equal draws, largest job first to the least
    loaded share (this process's share, the first, wins ties: it starts at once, a worker
    only once its interpreter is up). Each share keeps the jobs' order."""
    loads = [0] * processes
    owner: dict[int, int] = {}
    for index in sorted(range(len(jobs)), key=lambda i: -jobs[i].draws):
        share = min(range(processes), key=lambda s: (loads[s], s))
        owner[index] = share
        loads[share] += jobs[index].draws
    return [[job for i, job in enumerate(jobs) if owner[i] == s] for s in range(processes)]


class _Worker:
    """A worker process given a share of the jobs. They go as one message, from a thread:
    a pipe holds 64 KiB, so this process would otherwise wait for the worker to start and
    read them before it could work on its own share. The results come back as one message
    too, read once this process is done with its share (a worker sending group by group
    would wait on a full pipe meanwhile)."""

    def __init__(self, share: list[GroupJob]) -> None:
        self.share = share
        self.child = start_piped_child("analyzer.compare.worker")
        self.sender = threading.Thread(target=self._send, name="resampling-jobs", daemon=True)
        self.sender.start()

    def _send(self) -> None:
        with contextlib.suppress(OSError):  # a worker gone already: `collect` redoes its jobs
            self.child.jobs.send(self.share)
        with contextlib.suppress(OSError):
            self.child.jobs.close()  # the worker ends after this share

    def collect(self) -> dict[str, dict[str, Bootstrapped]]:
        """The share's results; those of a worker that vanished (killed, out of memory) are
        computed here instead: the same numbers, later."""
        self.sender.join()
        message: tuple[Any, ...] = ("gone",)
        with contextlib.suppress(EOFError, OSError):
            message = self.child.results.recv()
        if message[0] == "failed":
            raise RuntimeError(f"a resampling worker failed:\n{message[1]}")
        results: dict[str, dict[str, Bootstrapped]] = message[1] if message[0] == "done" else {}
        for job in self.share:
            if job.group not in results:
                results[job.group] = bootstrap_job(job)
        return results

    def stop(self, wait_s: float) -> None:
        """Let the worker end (`wait_s` seconds at most), else end it. Its pipes are closed
        only once the sender is done with them: ended first, the worker makes a send still
        under way fail at once (a broken pipe)."""
        if wait_s <= 0 and self.child.process.poll() is None:
            self.child.process.kill()
        self.sender.join()
        self.child.stop(wait_s)
