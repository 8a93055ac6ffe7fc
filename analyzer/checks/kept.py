"""What the host kept of the history, read off the run's ledger (`ledger`).

A host can lose what a client sends without any error: a proxy strips the reasoning sent back
(or keeps only the newest turn's), a template has no branch for the `tool` role and drops every
tool result, a gateway cuts tool output short, a Jinja environment with autoescape on rewrites
every `<` and `"`, a platform puts a hidden system prompt first. Only `prompt_tokens` shows
it. The ledger fits, over the run's tool-chain steps, how many of each added part's tokens the
host counted and which behaviour explains the steps best; each finding here is one of those
behaviours, with its posterior probability as `confidence` and the numbers behind it.

- `reasoning_dropped_in_chain`: the reasoning sent back was not counted (all of it, or all but
  the newest turn's); also when cached tokens keep falling short of the previous prompt where
  earlier turns carried reasoning (they were rendered anew).
- `tool_results_dropped`: tool results were not counted at all.
- `tool_results_truncated`: each result counted up to some length and not beyond.
- `history_lost`: the reasoning or the tool results were not counted, and the steps cannot
  say which (only when neither finding of its own is reported).
- `history_rewritten`: the prompt grew by a few tokens more for each character an
  HTML-escaping template expands (`<>&"'`), or for each quote of string arguments a template
  encodes a second time, than the parts sent explain; or cached tokens keep falling with no
  reasoning to explain it.
- `hidden_system_prompt`: the first request counted far more tokens than everything sent
  (messages and tool declarations), beyond any template's own and the tokenizer's margin.

One finding of each kind per run, on the first step it shows, all blamed on the provider. On a
run of few chain steps a verdict must also hold with any one step left out (`robust`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterator
from typing import Any

from analyzer.checks.ledger import DECIDED, CacheFalls, Ledger, measure
from analyzer.checks.ledger_entries import Added, Entry
from analyzer.checks.ledger_fit import (
    NOISE_FLOOR,
    OVERHEAD_PLAUSIBLE,
    REWRITE_EVIDENCE,
    REWRITES,
    Fit,
    Verdict,
)
from analyzer.checks.lsq import chi2_survival
from analyzer.checks.records import Finding, Run

KINDS = frozenset(
    {
        "reasoning_dropped_in_chain",
        "tool_results_dropped",
        "tool_results_truncated",
        "history_lost",
        "history_rewritten",
        "hidden_system_prompt",
    }
)

MIN_CONFIDENCE = DECIDED
"""Posterior probability of a losing behaviour below which nothing is reported: the steps
could as well be a host that kept everything."""
KEPT_CERTAIN = 0.9
"""Posterior of "kept every turn's reasoning" above which cached tokens falling are blamed on
another rewrite of the history, not on the reasoning."""
MAX_SCALE = 3.0
"""Noise scale (misfit of the best behaviours per degree of freedom, against the assumed
noise) above which the steps support no verdict from their growth."""
LEFT_OUT_FLOOR = 0.5
"""The probability a behaviour must keep with any one chain step left out (even odds)."""
LOST_SHARE = 0.5
"""A fitted share at or below which a "partial" behaviour counts as losing that part."""
PREAMBLE_TOKENS = 64.0
"""Tokens a chat template adds to the first request by itself (turn markers, a default
system line, the tool-calling instructions around the declarations)."""
PREAMBLE_SPREAD = 40.0
"""How much templates differ in that, as one standard deviation."""
TOKENIZER_SPREAD = 0.15
"""Share of the first request's estimate a host's tokenizer may differ by (one standard
deviation: ±30% at two)."""
MIN_CUT_STEPS = 2
"""Chain steps with a result longer than the cap that let a truncation stand without holding
with any one step left out: a cut shows only on such steps, and a task whose long results come
on two steps (`files`) loses the cut with either left out, by construction. Two steps cut at
one length are no single odd step."""
REWRITE_VARIATION = 2 * NOISE_FLOOR
"""Tokens by which a rewrite's extra tokens must vary from chain step to step to be told from
the template's per-turn overhead by the steps themselves (twice the jitter of a rendering)."""
MIN_HIDDEN_Z = 2.0
"""Standard deviations above the expected first prompt before a hidden prompt is reported."""


def what_the_host_kept(run: Run) -> Iterator[Finding]:
    """Findings of every behaviour of the host that lost or added tokens, from the ledger."""
    return ledger_findings(measure(run))


def ledger_findings(ledger: Ledger) -> Iterator[Finding]:
    """The findings of a run's ledger (`what_the_host_kept`, once it is measured)."""
    fit = ledger.fit
    lost = list(_reasoning(ledger))
    if fit is not None:
        lost += _tool_results(ledger, fit)
        if not lost:
            lost += _either_lost(ledger, fit)
    yield from lost
    yield from _rewritten(ledger)
    yield from _hidden_prompt(ledger)


# -- evidence shared by the findings ---------------------------------------------------------


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _posterior(verdict: Verdict) -> dict[str, float]:
    return {b.name: round(b.posterior, 3) for b in verdict.behaviours}


def fit_summary(fit: Fit) -> dict[str, Any]:
    """The fit in numbers a person can check: coefficients, steps, residuals."""
    residuals = [abs(r) for r in fit.residuals]
    return {
        "coefficients": {k: round(v, 3) for k, v in fit.final.values.items()},
        "chain_steps": len(fit.steps),
        "set_aside": list(fit.set_aside),
        "median_abs_residual_tokens": round(statistics.median(residuals), 1),
        "max_abs_residual_tokens": round(max(residuals), 1),
        "noise_scale": round(fit.scale, 3),
    }


def added_summary(added: Added) -> dict[str, float]:
    """The parts a request added, in the host's tokens, rounded for reading."""
    return {
        "reasoning": round(added.reasoning, 1),
        "demoted_reasoning": round(added.demoted, 1),
        "content_and_calls": round(added.output, 1),
        "tool_results": round(added.tool_results, 1),
        "results": len(added.results),
        "user": round(added.user, 1),
        "system": round(added.system, 1),
    }


def _example(ledger: Ledger, fit: Fit, entry: Entry) -> dict[str, Any]:
    """One chain step as the ledger sees it: the growth reported, what was added, and the
    growth the fit expects of it."""
    index = fit.steps.index(entry.step)
    return {
        "step": entry.step,
        "prompt_tokens": entry.prompt_tokens,
        "previous_prompt_tokens": entry.previous_prompt,
        "growth": entry.growth,
        "added": added_summary(entry.added) if entry.added is not None else None,
        "expected_growth": round(fit.expected[index], 1),
    }


def _confidence(verdict: Verdict, losing: tuple[str, ...]) -> float:
    """Posterior probability of the behaviours that lose the part (a partial share counts
    when it keeps at most LOST_SHARE)."""
    total = 0.0
    for b in verdict.behaviours:
        if b.name in losing or (b.name == "partial" and b.retention <= LOST_SHARE):
            total += b.posterior
    return min(1.0, total)


def reasoning_lost(fit: Fit) -> float:
    """Probability that the host lost the reasoning: all of it, or all but the newest
    turn's (or kept at most LOST_SHARE of it)."""
    verdict = fit.reasoning
    return 0.0 if verdict is None else _confidence(verdict, ("none", "newest_only"))


def results_dropped(fit: Fit) -> float:
    """Probability that the host dropped the tool results (or kept at most LOST_SHARE)."""
    verdict = fit.tool_results
    return 0.0 if verdict is None else _confidence(verdict, ("dropped",))


def results_truncated(fit: Fit) -> float:
    """Probability that the host cut the tool results at a length."""
    verdict = fit.tool_results
    return 0.0 if verdict is None else verdict.probability("truncated")


def rewritten(name: str) -> Callable[[Fit], float]:
    """Confidence that the history grew by rewrite `name` (none below the extra tokens per
    character that rewrite adds)."""

    def score(fit: Fit) -> float:
        per_character = fit.extras.get(name)
        evidence = fit.extras.get(f"{name}_evidence", 0.0)
        if per_character is None or per_character < REWRITES[name]:
            return 0.0
        return 1.0 - chi2_survival(evidence, 1)

    return score


def _kept_like(verdict: Verdict) -> bool:
    best = verdict.best
    return best.name == "kept" or (best.name == "partial" and best.retention > LOST_SHARE)


def robust(ledger: Ledger, score: Callable[[Fit], float], verdict: str | None = None) -> float:
    """`score` of the run's fit when its most probable behaviour is `verdict` (any, when
    None), or 0 when the score falls below even odds with some chain step left out: on a
    short run, a verdict one odd step decides is no verdict."""
    fit = ledger.fit
    if fit is None or fit.scale > MAX_SCALE:
        # Not even the best behaviour follows the steps (usage that does not match the turns,
        # a host that changes between requests): no verdict about any one part.
        return 0.0
    confidence = score(fit)
    if confidence < MIN_CONFIDENCE or (verdict is not None and verdict != _best(fit, verdict)):
        return 0.0
    if any(score(other) < LEFT_OUT_FLOOR for other in ledger.left_out_fits()):
        return 0.0
    return confidence


def _best(fit: Fit, verdict: str) -> str | None:
    """`verdict` when the fit's most probable behaviour of that part loses it, else None."""
    part = fit.reasoning if verdict == "reasoning lost" else fit.tool_results
    if part is None:
        return None
    best = part.best
    if verdict == "results truncated":
        return verdict if best.name == "truncated" else None
    if best.name == "truncated" or _kept_like(part):
        return None
    return verdict


# -- the findings ------------------------------------------------------------------------------


def _cache_evidence(cache: CacheFalls) -> dict[str, Any]:
    example = cache.example
    return {
        "affected_steps": len(cache.steps),
        "evaluated_steps": cache.evaluated,
        "steps": [cache.steps[0], cache.steps[-1]],
        "median_shortfall_tokens": cache.median_shortfall,
        "cache_block": cache.block,
        "example": {
            "step": example.step,
            "cached_tokens": example.cached_tokens,
            "previous_prompt_tokens": example.previous_prompt,
        },
    }


def _reasoning_by_cache(ledger: Ledger) -> bool:
    """Whether the cache falls are the reasoning's: reasoning went back into earlier turns
    (a host keeping only the newest turn's renders them anew) and the growth does not say
    the host kept every turn's."""
    cache, fit = ledger.cache, ledger.fit
    if cache is None:
        return False
    # Only a request with an older turn's reasoning has any to lose.
    older = [e.step for e in ledger.chain if e.reasoning_older > 0]
    if cache.confidence_among(older) < MIN_CONFIDENCE:
        return False
    kept = fit.reasoning.probability("kept") if fit and fit.reasoning else 0.0
    return kept < KEPT_CERTAIN


def _reasoning(ledger: Ledger) -> Iterator[Finding]:
    fit = ledger.fit
    verdict = fit.reasoning if fit is not None else None
    lost = robust(ledger, reasoning_lost, "reasoning lost")
    by_growth = lost >= MIN_CONFIDENCE
    by_cache = _reasoning_by_cache(ledger)
    if not by_growth and not by_cache:
        return
    chain = ledger.chain
    evidence: dict[str, Any] = {}
    confidence = 0.0
    first = last = None
    signals = []
    if by_growth and verdict is not None and fit is not None:
        best = verdict.best
        if best.name == "newest_only":
            # The turn before the newest loses its reasoning from the request after it on.
            affected = [e for e in chain if e.added is not None and e.added.demoted > 0]
        else:
            affected = [e for e in chain if e.reasoning_newest + e.reasoning_older > 0]
        if affected:
            signals.append("prompt_growth")
            example = max(affected, key=lambda e: e.added.reasoning if e.added else 0.0)
            # The finding decided the reasoning was lost (its behaviours' posteriors added):
            # what the most probable of them kept, though alone it may be undecided.
            kept = best.retention * ledger.reasoning_sent
            confidence = lost
            first, last = affected[0].step, affected[-1].step
            evidence.update(
                {
                    "behaviour": best.name,
                    "retention": _round(best.retention),
                    "affected_steps": len(affected),
                    "reasoning_sent_tokens": round(ledger.reasoning_sent),
                    "reasoning_kept_tokens": round(kept),
                    "posterior": _posterior(verdict),
                    "fit": fit_summary(fit),
                    "example": _example(ledger, fit, example),
                }
            )
    if ledger.cache is not None and (by_cache or by_growth):
        cache = ledger.cache
        signals.append("cached_tokens")
        evidence["cached_tokens"] = _cache_evidence(cache)
        if not evidence.get("behaviour"):
            evidence["behaviour"] = "newest_only"
            evidence["affected_steps"] = len(cache.steps)
        older = [e.step for e in chain if e.reasoning_older > 0]
        confidence = max(confidence, cache.confidence_among(older) if by_cache else 0.0)
        first = cache.steps[0] if first is None else min(first, cache.steps[0])
        last = cache.steps[-1] if last is None else max(last, cache.steps[-1])
    if first is None or last is None:
        return
    yield Finding(
        "reasoning_dropped_in_chain",
        "warning",
        "provider",
        first,
        {"signal": "+".join(signals), "steps": [first, last], **evidence},
        confidence=round(confidence, 3),
    )


def _tool_results(ledger: Ledger, fit: Fit) -> Iterator[Finding]:
    verdict = fit.tool_results
    if verdict is None:
        return
    best = verdict.best
    chain = ledger.chain
    with_results = [e for e in chain if e.added is not None and e.added.results]
    if not with_results:
        return

    def common() -> dict[str, Any]:
        # Built only for a finding: most runs have none, and every run comes here.
        example = max(with_results, key=lambda e: e.added.tool_results if e.added else 0.0)
        return {
            "signal": "prompt_growth",
            "behaviour": best.name,
            "retention": _round(best.retention),
            "tool_results_sent_tokens": round(ledger.tool_results_sent),
            "posterior": _posterior(verdict),
            "fit": fit_summary(fit),
            "example": _example(ledger, fit, example),
        }

    if best.name == "truncated":
        cap = best.solution.values["cap"]
        cut = [e for e in with_results if e.added is not None and max(e.added.results) > cap]
        confidence = truncation_confidence(ledger, len(cut))
        if confidence < MIN_CONFIDENCE:
            return
        yield Finding(
            "tool_results_truncated",
            "warning",
            "provider",
            (cut or with_results)[0].step,
            {
                **common(),
                "cap_tokens": round(cap),
                "affected_steps": len(cut),
                "steps": [(cut or with_results)[0].step, (cut or with_results)[-1].step],
            },
            confidence=round(confidence, 3),
        )
        return
    confidence = robust(ledger, results_dropped, "results dropped")
    if confidence < MIN_CONFIDENCE:
        return
    yield Finding(
        "tool_results_dropped",
        "error",
        "provider",
        with_results[0].step,
        {
            **common(),
            "affected_steps": len(with_results),
            "steps": [with_results[0].step, with_results[-1].step],
        },
        confidence=round(confidence, 3),
    )


def truncation_confidence(ledger: Ledger, cut_steps: int) -> float:
    """Confidence that the host cut the tool results at a length: the fit's, when it holds
    with any one chain step left out (`robust`), or when `cut_steps` (chain steps with a result
    longer than the cap) are at least `MIN_CUT_STEPS`; 0 otherwise."""
    held = robust(ledger, results_truncated, "results truncated")
    if held >= MIN_CONFIDENCE or cut_steps < MIN_CUT_STEPS:
        return held
    fit = ledger.fit
    if fit is None or fit.scale > MAX_SCALE or _best(fit, "results truncated") is None:
        return 0.0
    confidence = results_truncated(fit)
    return confidence if confidence >= MIN_CONFIDENCE else 0.0


def either_lost(fit: Fit) -> float:
    """Probability that the host lost the reasoning or dropped the tool results, one or the
    other (their posteriors added: a host losing both is one behaviour of each)."""
    return min(1.0, reasoning_lost(fit) + results_dropped(fit))


def _either_lost(ledger: Ledger, fit: Fit) -> Iterator[Finding]:
    """`history_lost`: the steps say part of the history went missing, the reasoning or the
    tool results, but neither alone holds with every step (the two add about the same tokens
    on every step, so either explains the growth). Reported only where neither finding of its
    own is: a run naming one part is never named again vaguely."""
    confidence = robust(ledger, either_lost)
    if confidence < MIN_CONFIDENCE or fit.reasoning is None or fit.tool_results is None:
        return
    chain = [e for e in ledger.chain if e.added is not None]
    example = max(chain, key=lambda e: (e.added.reasoning + e.added.tool_results) if e.added else 0)
    yield Finding(
        "history_lost",
        "warning",
        "provider",
        chain[0].step,
        {
            "signal": "prompt_growth",
            "reasoning_lost": round(reasoning_lost(fit), 3),
            "tool_results_dropped": round(results_dropped(fit), 3),
            "reasoning_sent_tokens": round(ledger.reasoning_sent),
            "tool_results_sent_tokens": round(ledger.tool_results_sent),
            "posterior": {
                "reasoning": _posterior(fit.reasoning),
                "tool_results": _posterior(fit.tool_results),
            },
            "affected_steps": len(chain),
            "steps": [chain[0].step, chain[-1].step],
            "fit": fit_summary(fit),
            "example": _example(ledger, fit, example),
        },
        confidence=round(confidence, 3),
    )


def _rewritten(ledger: Ledger) -> Iterator[Finding]:
    fit = ledger.fit
    growth = _rewrite_evidence(ledger, fit) if fit is not None else None
    cache = ledger.cache
    by_cache = (
        cache is not None and cache.confidence >= MIN_CONFIDENCE and not _reasoning_by_cache(ledger)
    )
    if growth is None and not by_cache:
        return
    evidence: dict[str, Any] = {}
    signals = []
    confidence = 0.0
    first = last = None
    if growth is not None:
        signals.append("prompt_growth")
        confidence = growth.pop("confidence")
        evidence.update(growth)
        first, last = growth["steps"]
    if by_cache and cache is not None:
        signals.append("cached_tokens")
        evidence["cached_tokens"] = _cache_evidence(cache)
        evidence.setdefault("rewrite", "rendered anew")
        confidence = max(confidence, cache.confidence)
        first = cache.steps[0] if first is None else min(first, cache.steps[0])
        last = cache.steps[-1] if last is None else max(last, cache.steps[-1])
    yield Finding(
        "history_rewritten",
        "warning",
        "provider",
        first,
        {"signal": "+".join(signals), **evidence, "steps": [first, last]},
        confidence=round(confidence, 4),
    )


REWRITE_NAMES = {"escaping": "escaping", "reencoding": "arguments re-encoded"}
"""How each rewrite reads in the evidence."""
REWRITE_CHARACTERS = {"escaping": "<>&\"'", "reencoding": '"'}


def _characters(name: str, added: Added) -> int:
    """The characters rewrite `name` expands in what a request added."""
    return added.escapable if name == "escaping" else added.argument_quotes


def told_from_overhead(ledger: Ledger, fit: Fit, name: str) -> bool:
    """Whether the steps themselves tell rewrite `name` from the template's per-turn
    overhead: its extra tokens vary from step to step by `REWRITE_VARIATION` or more, or
    without it the overhead would exceed `OVERHEAD_PLAUSIBLE`. Otherwise its evidence rests
    on the overhead's prior (a run fitting far better than assumed multiplies that prior's
    weight): a held-out run whose calls carried 6 or 7 quotes read as arguments re-encoded
    at 1.8 tokens a quote, all but 1.8 tokens of it a per-turn overhead of 16."""
    per_character = fit.extras.get(name, 0.0)
    counts = [_characters(name, e.added) for e in ledger.chain if e.added is not None]
    if not counts or per_character <= 0.0:
        return False
    if per_character * (max(counts) - min(counts)) >= REWRITE_VARIATION:
        return True
    return beyond_overhead(ledger, fit, name)


def beyond_overhead(ledger: Ledger, fit: Fit, name: str) -> bool:
    """Whether, without rewrite `name`, the template's per-turn overhead would have to exceed
    `OVERHEAD_PLAUSIBLE` on every chain step: the rewrite's level alone tells it. Both read
    off the verdict's fit: a rewrite its own fit took up beside a behaviour the verdict then
    explained otherwise (a cut on the results) adds nothing to that fit's overhead."""
    values = fit.final.values
    per_character = values.get(name, 0.0)
    counts = [_characters(name, e.added) for e in ledger.chain if e.added is not None]
    if not counts or per_character <= 0.0:
        return False
    overhead = values.get("per_turn", 0.0) + per_character * min(counts)
    return overhead > OVERHEAD_PLAUSIBLE


def rewrite_confidence(ledger: Ledger, name: str) -> float:
    """`robust` confidence in rewrite `name`: it must hold with any one chain step left out.
    A fit whose steps all carry the same characters tries a rewrite too when its level alone
    tells it (`ledger_fit.OVERHEAD_PLAUSIBLE`), so such a fit counts like any other: a
    `chain_short` run escaping 17 characters on one step and 16 on the four others holds with
    the odd one out, and a three-step `chain` run whose reasoning tokens were billed outside
    the completion, read as arguments re-encoded at the bound, 4 tokens a quote, with an
    overhead of 35 a turn, does not hold with either end left out."""
    return robust(ledger, rewritten(name))


def _rewrite_evidence(ledger: Ledger, fit: Fit) -> dict[str, Any] | None:
    """The prompt growing by a few tokens per character a rewrite expands, when the fit says
    so (and says so with any one step left out), for the clearest such rewrite."""
    best: tuple[float, str] | None = None
    for name in REWRITES:
        evidence = fit.extras.get(f"{name}_evidence", 0.0)
        confidence = rewrite_confidence(ledger, name)
        clear = confidence >= MIN_CONFIDENCE and evidence >= REWRITE_EVIDENCE
        clear = clear and told_from_overhead(ledger, fit, name)
        if clear and (best is None or confidence > best[0]):
            best = (confidence, name)
    if best is None:
        return None
    confidence, name = best
    per_character = fit.extras[name]
    evidence = fit.extras[f"{name}_evidence"]

    def count(added: Added) -> int:
        return _characters(name, added)

    chain = [e for e in ledger.chain if e.added is not None and count(e.added)]
    if not chain:
        return None
    example = max(chain, key=lambda e: count(e.added) if e.added else 0)
    extra = sum(per_character * count(e.added) for e in chain if e.added is not None)
    growth = sum(e.growth or 0 for e in chain)
    return {
        "confidence": confidence,
        "rewrite": REWRITE_NAMES[name],
        "extra_tokens_per_character": round(per_character, 2),
        "characters": REWRITE_CHARACTERS[name],
        "estimated_extra_tokens": round(extra),
        "share_of_growth": round(extra / growth, 3) if growth > 0 else None,
        "evidence_chi2": round(evidence, 1),
        "affected_steps": len(chain),
        "steps": [chain[0].step, chain[-1].step],
        "fit": fit_summary(fit),
        "example": {
            **_example(ledger, fit, example),
            "characters_counted": count(example.added) if example.added else 0,
        },
    }


def _hidden_prompt(ledger: Ledger) -> Iterator[Finding]:
    first = next((e for e in ledger.entries if e.kind == "first"), None)
    if first is None or first.prompt_tokens is None or first.sent_estimate is None:
        return
    offset = first.prompt_tokens - first.sent_estimate
    spread = PREAMBLE_SPREAD + TOKENIZER_SPREAD * first.sent_estimate
    z = (offset - PREAMBLE_TOKENS) / spread
    if z < MIN_HIDDEN_Z:
        return
    fit = ledger.fit
    # A stable offset: the chain steps after it grow as what they add explains, so the extra
    # tokens are in every request, not a one-off of the first.
    if fit is not None and fit.residuals and fit.residuals[0] < -offset / 2:
        return
    yield Finding(
        "hidden_system_prompt",
        "warning",
        "provider",
        first.step,
        {
            "signal": "first_prompt",
            "prompt_tokens": first.prompt_tokens,
            "sent_tokens_estimate": round(first.sent_estimate),
            "unexplained_tokens": round(offset - PREAMBLE_TOKENS),
            "template_allowance_tokens": PREAMBLE_TOKENS,
            "expected_spread_tokens": round(spread, 1),
            "token_ratio": round(ledger.ratio, 3),
            "chain_steps_consistent": len(fit.steps) if fit is not None else 0,
        },
        confidence=round(_normal_cdf(z), 4),
    )


def _normal_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))
