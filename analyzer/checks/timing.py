"""Where the time of an analysis goes: loading, each check by name, storing the findings.

`benchmarks/bench_analyze.py` passes a `Timings` to `persist.analyze_runs`; without one
(every command) nothing is timed and the checks run unwrapped.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from analyzer.checks.records import Finding

_Check = TypeVar("_Check", bound=Callable[..., Iterable[Finding]])


class Timings:
    """CPU seconds accumulated per part of an analysis (this process's, all threads)."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        """Time the body under `name`."""
        start = time.process_time()
        try:
            yield
        finally:
            self.seconds[name] += time.process_time() - start

    def checks(self, checks: dict[str, _Check]) -> dict[str, _Check]:
        """`checks`, each wrapped to add the time it takes (its findings drawn) under its
        name. The wrapper's own cost, about a microsecond a call, is counted in."""
        return {name: self._timed(name, check) for name, check in checks.items()}

    def _timed(self, name: str, check: _Check) -> _Check:
        seconds = self.seconds
        clock = time.process_time

        def timed(*args: object) -> list[Finding]:
            start = clock()
            found = list(check(*args))
            seconds[name] += clock() - start
            return found

        return timed  # type: ignore[return-value]
