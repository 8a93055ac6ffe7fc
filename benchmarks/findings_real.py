"""The real half of the findings corpus: failures quoted from real hosts, served over loopback
HTTP, read with the real `openai` client and checked.

Three sources, all turned into runs by tests/test_checks_real.py (the one place that knows
how a quoted excerpt becomes a wire response):

- `../shared/external/dialects/raw_outputs/observed_failures.jsonl`: each row has a failure
  class (`failure_kind`). The catalogue's `covers` says which finding kinds recognise that
  class; a row is detected when any of them fires. A class no kind covers is listed.
- `parser_fixtures.jsonl` of the same folder: model output with calls, (a) raw in content, as
  a host without the family's parser returns it, which is a `special_tokens_in_content`
  failure (`harmony_channels_in_content` for gpt-oss), and (b) as the reference parser says
  it should arrive: a clean negative, where any finding above `info` is a false positive.
- `tests/fixtures/real_excerpts.json`: cases quoted from public threads, each labelled with
  its kind and layer, and its repaired twin (the same excerpt fixed): a negative for that kind.

Precision counts only negatives (a clean parse, a repaired twin) as false positives: a real
excerpt often shows more than one failure, and a kind firing on a positive of another class is
listed as `also`, not scored. The shared folder is optional: without it only the fixture
cases are scored.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_checks_real as real

from analyzer.checks.catalogue import KINDS
from analyzer.checks.records import Finding
from analyzer.checks.registry import run_checks

SHARED_ROWS = real.DIALECT_DATA / "raw_outputs"


def covering(failure_class: str) -> set[str]:
    """Finding kinds whose catalogue entry covers `failure_class`."""
    return {kind for kind, info in KINDS.items() if failure_class in info.covers}


@dataclass
class RealKind:
    """Tallies of one finding kind over the real excerpts."""

    support: int = 0
    hits: int = 0
    negatives: int = 0
    false_positives: int = 0
    layer_checked: int = 0
    layer_agreed: int = 0

    @property
    def recall(self) -> float | None:
        """Positives it recognised, over positives labelled with it."""
        return self.hits / self.support if self.support else None

    @property
    def precision(self) -> float | None:
        """Recognised positives over those plus negatives it fired on."""
        fired = self.hits + self.false_positives
        return self.hits / fired if fired else None

    @property
    def layer_agreement(self) -> float | None:
        """Recognised positives blaming the labelled layer."""
        return self.layer_agreed / self.layer_checked if self.layer_checked else None


@dataclass
class RealScores:
    """Everything measured on the real excerpts."""

    kinds: dict[str, RealKind] = field(default_factory=lambda: defaultdict(RealKind))
    classes: dict[str, list[int]] = field(default_factory=dict)
    """Failure class of observed_failures.jsonl -> [rows, detected]."""
    uncovered: dict[str, int] = field(default_factory=dict)
    """Failure classes no catalogue kind covers -> rows."""
    unbuildable: list[str] = field(default_factory=list)
    misses: list[dict[str, Any]] = field(default_factory=list)
    false_positives: list[dict[str, Any]] = field(default_factory=list)
    also: list[dict[str, Any]] = field(default_factory=list)
    shared_present: bool = False
    negatives: dict[str, int] = field(default_factory=dict)
    """Source of negatives (clean parses, repaired twins) -> how many were checked."""


@contextmanager
def _endpoint() -> Iterator[real.WireEndpoint]:
    with real.WireEndpoint().serving() as served:
        yield served


def _checked(endpoint: real.WireEndpoint, case: dict[str, Any], steps: Any) -> list[Finding]:
    return run_checks(real.run_of(endpoint, case, steps))


def _positive(
    scores: RealScores,
    source: str,
    kinds: set[str],
    layer: str | None,
    found: list[Finding],
    allowed: set[str],
) -> bool:
    """Score one positive labelled with any of `kinds`; True when one of them fired."""
    hit = [f for f in found if f.kind in kinds]
    # A class several kinds cover is recognised by whichever fits the excerpt: the row counts
    # for the kinds that fired, or as a miss of every covering kind when none did.
    for kind in {f.kind for f in hit} or kinds:
        tally = scores.kinds[kind]
        tally.support += 1
        fired = [f for f in hit if f.kind == kind]
        tally.hits += bool(fired)
        if fired and layer is not None:
            tally.layer_checked += 1
            tally.layer_agreed += any(f.layer == layer for f in fired)
    if not hit:
        scores.misses.append(
            {"case": source, "expected": sorted(kinds), "found": sorted({f.kind for f in found})}
        )
    extra = sorted({f.kind for f in found if f.severity != "info"} - kinds - allowed)
    if extra:
        scores.also.append({"case": source, "expected": sorted(kinds), "also": extra})
    return bool(hit)


def _negative(
    scores: RealScores, source: str, watched: set[str] | None, found: list[Finding]
) -> None:
    """Score one negative: `watched` kinds (None: every kind above info) must stay quiet."""
    origin = source.split(":", 1)[0]
    scores.negatives[origin] = scores.negatives.get(origin, 0) + 1
    relevant = {f.kind for f in found if watched is None and f.severity != "info"}
    if watched is not None:
        relevant = {f.kind for f in found if f.kind in watched}
        for kind in watched:
            scores.kinds[kind].negatives += 1
    for kind in relevant:
        scores.kinds[kind].false_positives += 1
    if relevant:
        scores.false_positives.append({"case": source, "fired": sorted(relevant)})


def _observed(scores: RealScores, endpoint: real.WireEndpoint) -> None:
    for row in real.OBSERVED:
        failure = row["failure_kind"]
        kinds = covering(failure)
        if not kinds:
            scores.uncovered[failure] = scores.uncovered.get(failure, 0) + 1
            continue
        try:
            case = real.observed_case(row)
        except (KeyError, AssertionError):
            scores.unbuildable.append(f"{row['id']} ({failure}): no wire form in test_checks_real")
            continue
        found = _checked(endpoint, case, case["steps"])
        hit = _positive(scores, f"observed:{row['id']}", kinds, None, found, set())
        tally = scores.classes.setdefault(failure, [0, 0])
        tally[0] += 1
        tally[1] += hit


def _parser(scores: RealScores, endpoint: real.WireEndpoint) -> None:
    for case in real.PARSER_CASES:
        # gpt-oss's markup is a whole response format left unparsed, a class of its own (as
        # test_checks_real reads these rows).
        gpt_oss = case["id"].startswith("gpt_oss.")
        kinds = covering("harmony_channels_in_content" if gpt_oss else "special_tokens_in_content")
        raw = _checked(endpoint, case, [case["raw"]])
        _positive(scores, f"parser-raw:{case['id']}", kinds, "provider", raw, {"dropped_call"})
        if case["has_calls"]:
            parsed = _checked(endpoint, case, [case["parsed"]])
            _negative(scores, f"parser-parsed:{case['id']}", None, parsed)


def _fixtures(scores: RealScores, endpoint: real.WireEndpoint) -> None:
    for case in real.CASES:
        kind = case["kind"]
        if real.pending(kind):
            continue
        found = _checked(endpoint, case, case["steps"])
        allowed = {a["kind"] for a in case.get("also", [])}
        _positive(scores, f"fixture:{case['id']}", {kind}, case["layer"], found, allowed)
        repaired = _checked(endpoint, case, real.repaired_steps(case))
        _negative(scores, f"fixture-repaired:{case['id']}", {kind}, repaired)


def score_real() -> RealScores:
    """Score the checks on every real excerpt available."""
    scores = RealScores(shared_present=(SHARED_ROWS / "observed_failures.jsonl").exists())
    with _endpoint() as endpoint:
        if scores.shared_present:
            _observed(scores, endpoint)
            _parser(scores, endpoint)
        _fixtures(scores, endpoint)
    return scores
