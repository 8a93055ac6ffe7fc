"""The third half of the findings corpus: `history_lost`, built the way its definition says.

No simulator fault produces `history_lost` on purpose: it is the finding for a host that lost
the reasoning or the tool results where the prompt counts cannot say which, and each sample
task's reasoning and results differ enough from step to step to say it (tests/
test_checks_faults.py `NOT_FROM_FAULTS`). So its cases are tool chains as a client records
them against a host (tests/test_checks_kept.py `host_run`, the same builder its unit tests
use), in the one shape that makes the two losses alike: every turn's reasoning and results of
one size. Positives: a host dropping the reasoning, and one dropping the results, on such
chains (4 sizes x 3 lengths x growth exact or off by a token). Negatives: a faithful host on
the same chains (nothing may fire), and each drop on chains whose reasoning varies (the part
lost must be named: `reasoning_dropped_in_chain` or `tool_results_dropped`, never
`history_lost`), which also scores those two kinds here.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_checks_kept import REASONING, host_run

from analyzer.checks.kept import what_the_host_kept

SIZES = (20, 33, 45, 60)
"""Tokens of every turn's reasoning and of every result (33: the sample `chain_short`'s)."""
LENGTHS = (5, 6, 8)
"""Requests per chain."""
_EXPECTED = {"drop": "reasoning_dropped_in_chain", "tools_dropped": "tool_results_dropped"}
_KINDS = ("history_lost", *_EXPECTED.values())


@dataclass
class LostTally:
    """One kind on the constructed chains: cases it must fire on, found; fired, rightly."""

    support: int = 0
    hits: int = 0
    fired: int = 0
    true_positives: int = 0

    @property
    def recall(self) -> float | None:
        """hits / support; None without support."""
        return self.hits / self.support if self.support else None

    @property
    def precision(self) -> float | None:
        """true positives / fired; None when it never fired."""
        return self.true_positives / self.fired if self.fired else None


@dataclass
class LostScores:
    """Every kind's tally, and the cases misread (described)."""

    cases: int = 0
    kinds: dict[str, LostTally] = field(default_factory=lambda: {k: LostTally() for k in _KINDS})
    wrong: list[str] = field(default_factory=list)


def _score(scores: LostScores, label: str, want: str | None, fired: set[str]) -> None:
    scores.cases += 1
    for kind in _KINDS:
        tally = scores.kinds[kind]
        if kind == want:
            tally.support += 1
            tally.hits += kind in fired
        if kind in fired:
            tally.fired += 1
            tally.true_positives += kind == want
    if fired & set(_KINDS) != ({want} if want else set()):
        scores.wrong.append(f"{label}: wanted {want or 'nothing'}, got {sorted(fired) or '-'}")


def score_lost(seed: int = 0) -> LostScores:
    """Every constructed chain checked and scored (growth jittered by `seed`)."""
    rng = random.Random(seed)
    scores = LostScores()
    for size in SIZES:
        for length in LENGTHS:
            for jittered in (False, True):
                jitter = [rng.choice((-1, 0, 1)) for _ in range(length)] if jittered else None
                alike = {"reasoning": [size] * length, "tools": [size] * length}
                # The loss of either part reads alike: `history_lost`; the faithful host, none.
                varied = {"reasoning": [r * size // 33 for r in REASONING[:length]]}
                varied["tools"] = [size] * length
                for host, shape, want in (
                    ("drop", alike, "history_lost"),
                    ("tools_dropped", alike, "history_lost"),
                    ("keep", alike, None),
                    ("drop", varied, _EXPECTED["drop"]),
                    ("tools_dropped", varied, _EXPECTED["tools_dropped"]),
                    ("keep", varied, None),
                ):
                    run = host_run(host, **shape, cached=False, jitter=jitter)
                    fired = {f.kind for f in what_the_host_kept(run)}
                    label = f"{host} size {size} x{length}{' jittered' if jittered else ''}"
                    kind = "alike" if shape is alike else "varied"
                    _score(scores, f"{label} ({kind})", want, fired)
    return scores
