"""The ledger of a run: what each request added against what the host said it counted, and
what that says the host kept of the history.

`ledger_entries` reads, step by step, the parts each request added and the growth of
`prompt_tokens`; `ledger_fit` fits over the run's tool-chain steps how many of each part's
tokens the host counted (the per-template overhead learned from the run itself) and which
behaviour explains the steps best: reasoning kept, kept for the newest turn only, or dropped;
tool results kept, dropped or truncated. The ledger adds what a person reads off it: the share
of the reasoning and of the tool results sent that the host counted, and the first request
against what was sent (a host injecting a hidden system prompt makes it much longer).

Only tool-chain steps are fitted (an assistant turn with calls and its results): templates
legitimately drop the reasoning before a new user turn. A turn that came back other than the
host counted it is read as it came back (its reasoning in the content), or its step left out
when by how much cannot be told (its arguments emptied): `ledger_turns`. A behaviour the
counts exclude before any fit is not tried (`ruled_out`: a cache covering every earlier turn
says none was rendered anew, so not the newest turn's reasoning only).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from analyzer.checks.ledger_entries import Entry, build_entries
from analyzer.checks.ledger_fit import Behaviour, Fit, Verdict, fit_chain
from analyzer.checks.ledger_turns import put_right
from analyzer.checks.records import Run

MAX_LEFT_OUT = 16
"""Chain steps up to which each verdict must survive leaving any one step out."""
MIN_CACHE_FALL = 32
"""Tokens by which cached tokens must fall short of the previous prompt, beyond the host's
cache granularity, to count as an earlier history rendered anew rather than a rounding."""
MAX_CACHE_BLOCK = 128
"""Largest cache granularity assumed (OpenAI caches in 128-token steps; vLLM 16, DeepSeek 64)."""
DECIDED = 0.7
"""Posterior probability with which the ledger must know a part's retention before it reports
it (the share, the tokens), the same a finding needs: below it the steps could as well be a
host that kept another share, and the retention is unknown, not the most probable one's."""
AGREES = 0.1
"""Share of a part's tokens within which two behaviours say the same retention (the ±10
points `bench_retention` holds the ledger to): "kept" and a fitted share of 0.97 do."""


def decided(verdict: Verdict | None) -> Behaviour | None:
    """The most probable behaviour of `verdict` when the behaviours whose retention is within
    `AGREES` of its own hold `DECIDED` of the probability between them; None when they do not
    (a `files` run whose host kept all the reasoning read "newest turn's only", 37.7%, at 0.50
    against "kept" at 0.43, and reported 37.7% retention for 100)."""
    if verdict is None:
        return None
    best = verdict.best
    agreeing = sum(
        b.posterior for b in verdict.behaviours if abs(b.retention - best.retention) <= AGREES
    )
    return best if agreeing >= DECIDED else None


@dataclass(frozen=True)
class CacheFalls:
    """Chain steps whose cached tokens fell well short of the previous prompt: with prefix
    caching, a request that extends the previous one shares all of its prompt, unless the
    host rendered the earlier history differently this time (it keeps only the newest turn's
    reasoning, or rewrites what came before)."""

    steps: tuple[int, ...]
    evaluated_steps: tuple[int, ...]
    """Chain steps with a partial cache hit (a zero is a plain miss: evicted, another replica)."""
    block: int
    median_shortfall: float
    example: Entry

    @property
    def evaluated(self) -> int:
        """How many chain steps could show a fall."""
        return len(self.evaluated_steps)

    @property
    def confidence(self) -> float:
        """Share of the steps that fell, discounted when they are few."""
        return self.confidence_among(self.evaluated_steps)

    def confidence_among(self, steps: Sequence[int]) -> float:
        """The same among `steps` only (those where one cause could show)."""
        among = set(steps)
        fell = sum(1 for s in self.steps if s in among)
        return fell / len(among) * (1.0 - 0.5**fell) if among else 0.0


def cache_falls(entries: Sequence[Entry]) -> CacheFalls | None:
    """The chain steps whose cached tokens fell, when they are most of those that could."""
    block = cache_block(entries)
    if block == 0:
        return None  # no cache hit at all: caching is off, or unreported
    evaluated = [
        e
        for e in entries
        if e.kind == "chain" and e.cached_tokens and e.previous_prompt is not None
    ]
    fallen = [
        e
        for e in evaluated
        if (e.previous_prompt or 0) - (e.cached_tokens or 0) > block + MIN_CACHE_FALL
    ]
    if len(fallen) < 2 or 2 * len(fallen) < len(evaluated):
        return None
    shortfalls = [(e.previous_prompt or 0) - (e.cached_tokens or 0) for e in fallen]
    return CacheFalls(
        steps=tuple(e.step for e in fallen),
        evaluated_steps=tuple(e.step for e in evaluated),
        block=block,
        median_shortfall=statistics.median(shortfalls),
        example=fallen[0],
    )


def cache_block(entries: Sequence[Entry]) -> int:
    """The host's cache granularity, as the largest common divisor of its cached counts (at
    most `MAX_CACHE_BLOCK`); 0 when no request hit the cache (caching off, or unreported)."""
    block = 0
    for entry in entries:
        if entry.cached_tokens:
            block = math.gcd(block, entry.cached_tokens)
    return min(block, MAX_CACHE_BLOCK)


def cache_held(entries: Sequence[Entry]) -> bool:
    """Whether the cache shows the earlier turns rendered as before: on every chain step that
    demoted a turn's reasoning and hit the cache at all, the hit covered the previous prompt
    (within the granularity and `MIN_CACHE_FALL`). A host keeping only the newest turn's
    reasoning renders that turn anew once it is no longer the newest, so its cache falls
    short by all the turn added (its reasoning, calls and results: the growth of the step
    that sent it); one whose hit covered it did not drop the turn's reasoning."""
    block = cache_block(entries)
    if block == 0 or warmed(entries, block):
        return False
    evaluated = []
    before: Entry | None = None
    for e in entries:
        if (
            e.kind == "chain"
            and e.cached_tokens
            and e.previous_prompt is not None
            and e.added is not None
            and e.added.demoted > 0
            and before is not None
            and (before.growth or 0) > block + MIN_CACHE_FALL
        ):
            evaluated.append(e)
        before = e
    return bool(evaluated) and all(
        (e.previous_prompt or 0) - (e.cached_tokens or 0) <= block + MIN_CACHE_FALL
        for e in evaluated
    )


def warmed(entries: Sequence[Entry], block: int) -> bool:
    """Whether some request hit the cache beyond the previous prompt of its conversation: the
    host's cache is shared with other conversations (a run repeated with the same task and
    seed sends the same history), so a hit may cover a turn another conversation rendered
    anew the same way, and says nothing about how this one was rendered before."""
    return any(
        e.cached_tokens
        and e.previous_prompt is not None
        and e.cached_tokens > e.previous_prompt + block
        for e in entries
    )


def ruled_out(entries: Sequence[Entry]) -> frozenset[str]:
    """Behaviours of the host the counts exclude before any fit: keeping only the newest
    turn's reasoning, when the cache covered every turn after its reasoning was demoted."""
    return frozenset({"newest_only"}) if cache_held(entries) else frozenset()


@dataclass(frozen=True)
class Ledger:
    """A run's ledger: one entry per step, the fit over its chain steps and its verdicts."""

    run_id: str
    entries: tuple[Entry, ...]
    ratio: float
    """Host tokens per estimated token, learned from the run's reported reasoning tokens (else
    its completion tokens); 1 when it reported neither."""
    fit: Fit | None
    reasoning_sent: float
    """Reasoning tokens in the chain steps' requests, summed over requests."""
    tool_results_sent: float
    """Tool-result tokens in the chain steps' requests, summed over requests."""
    cache: CacheFalls | None = None
    miscounted: frozenset[int] = frozenset()
    """Chain steps left out of the fit: the turn they sent back is not the one the host
    counted, and by how much cannot be told (`ledger_turns`)."""
    ruled_out: frozenset[str] = frozenset()
    """Behaviours the fit did not try, other evidence excluding them (`ruled_out`)."""
    _left_out: list[Fit] | None = field(default=None, repr=False, compare=False)
    _chain: list[Entry] | None = field(default=None, repr=False, compare=False)

    def left_out_fits(self) -> list[Fit]:
        """The fit again with each chain step left out in turn, for a run short enough that
        one odd step could decide a verdict (none for longer runs: a step that far off is
        set aside, and no single one of many weighs much). Computed once, when asked."""
        if self._left_out is None:
            chain = self.chain
            fits: list[Fit] = []
            if len(chain) <= MAX_LEFT_OUT:
                sent = [(e.reasoning_newest, e.reasoning_older) for e in chain]
                for position in range(len(chain)):
                    fit = fit_chain(chain, sent, left_out=position, ruled_out=self.ruled_out)
                    if fit is not None:
                        fits.append(fit)
            object.__setattr__(self, "_left_out", fits)
        return self._left_out or []

    @property
    def chain(self) -> list[Entry]:
        """The entries the fit explains, in order (worked out once: every finding asks)."""
        if self._chain is None:
            chain = [
                e
                for e in self.entries
                if e.kind == "chain" and e.added is not None and e.step not in self.miscounted
            ]
            object.__setattr__(self, "_chain", chain)
            return chain
        return self._chain

    @property
    def reasoning_retention(self) -> float | None:
        """Share of the reasoning sent back that the host counted, under its behaviour when
        decided (None: no reasoning went back, too few chain steps to fit, or `decided` none)."""
        best = decided(self.fit.reasoning) if self.fit is not None else None
        return None if best is None else best.retention

    @property
    def reasoning_kept(self) -> float | None:
        """Of `reasoning_sent`, the tokens the host counted."""
        retention = self.reasoning_retention
        return None if retention is None else retention * self.reasoning_sent

    @property
    def tool_result_retention(self) -> float | None:
        """Share of the tool-result tokens sent that the host counted, under their behaviour
        when decided (None: no tool results, too few chain steps to fit, or `decided` none)."""
        best = decided(self.fit.tool_results) if self.fit is not None else None
        return None if best is None else best.retention

    @property
    def tool_results_kept(self) -> float | None:
        """Of `tool_results_sent`, the tokens the host counted."""
        retention = self.tool_result_retention
        return None if retention is None else retention * self.tool_results_sent


_last: tuple[Run, Ledger] | None = None


def measure(run: Run) -> Ledger:
    """The ledger of `run`. The checks and the store ask for it right after each other, so
    the last run's ledger is kept and computed once."""
    global _last
    if _last is not None and _last[0] is run:
        return _last[1]
    ledger = _measure(run)
    _last = (run, ledger)
    return ledger


def _measure(run: Run) -> Ledger:
    entries, ratio = build_entries(run)
    entries, left = put_right(run, entries)
    chain = [e for e in entries if e.kind == "chain" and e.added is not None and e.step not in left]
    sent = [(e.reasoning_newest, e.reasoning_older) for e in chain]
    excluded = ruled_out(entries)
    return Ledger(
        run_id=run.id,
        entries=tuple(entries),
        ratio=ratio,
        fit=fit_chain(chain, sent, ruled_out=excluded),
        reasoning_sent=sum(n + o for n, o in sent),
        tool_results_sent=sum(e.tool_results_total for e in chain),
        cache=cache_falls(entries),
        miscounted=left,
        ruled_out=excluded,
        _chain=chain,
    )
