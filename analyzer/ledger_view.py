"""A run's ledger as a person reads it: one row per step, and what the fit says.

`traces show RUN --ledger` prints it: for each step, the prompt the host counted, how much it
grew, what the request added by part type, the growth the fit expects and the difference;
then the verdicts (which behaviour, how probable, the share retained) and the template
overhead learned from the run. JSON carries the same as one document.
"""

from __future__ import annotations

from typing import Any

from analyzer.checks.ledger import DECIDED, Ledger, decided
from analyzer.checks.ledger_fit import Verdict

LEDGER_COLUMNS = [
    "step",
    "kind",
    "prompt",
    "growth",
    "expected",
    "residual",
    "reasoning",
    "reasoning_lost",
    "content_calls",
    "tool_results",
    "results",
    "user",
    "system",
    "cached",
]
"""Columns of the per-step rows, in order (`reasoning_lost`: the previous newest turn's
reasoning, which a host keeping only the newest turn's loses at this step)."""


def _round(value: float | None, digits: int = 1) -> float | None:
    if value is None:
        return None
    rounded = round(value, digits)
    return rounded if rounded else 0.0  # never -0.0


def ledger_rows(ledger: Ledger) -> list[dict[str, Any]]:
    """One row per step: the counts the host reported beside what the request added (in the
    host's tokens where it reported them, else estimated) and the fit's expectation."""
    fit = ledger.fit
    expected: dict[int, tuple[float, float]] = {}
    if fit is not None:
        expected = {
            step: (e, r) for step, e, r in zip(fit.steps, fit.expected, fit.residuals, strict=True)
        }
    rows = []
    for entry in ledger.entries:
        added = entry.added
        fitted = expected.get(entry.step)
        rows.append(
            {
                "step": entry.step,
                "kind": entry.kind,
                "prompt": entry.prompt_tokens,
                "growth": entry.growth,
                "expected": _round(fitted[0]) if fitted else None,
                "residual": _round(fitted[1]) if fitted else None,
                "reasoning": _round(added.reasoning) if added else None,
                "reasoning_lost": _round(added.demoted) if added else None,
                "content_calls": _round(added.output) if added else None,
                "tool_results": _round(added.tool_results) if added else None,
                "results": len(added.results) if added else None,
                "user": _round(added.user) if added else None,
                "system": _round(added.system) if added else None,
                "cached": entry.cached_tokens,
            }
        )
    return rows


def _verdict(verdict: Verdict | None, sent: float, retention: float | None) -> dict[str, Any]:
    if verdict is None:
        return {"behaviour": None, "retention": None, "sent_tokens": None, "posterior": {}}
    best = decided(verdict)
    return {
        # No retention holding `DECIDED` (`decided`): the posteriors say which behaviours were
        # tried, the retention is unknown (None), not the most probable one's.
        "behaviour": best.name if best is not None else "undecided",
        "retention": _round(retention, 3),
        "sent_tokens": round(sent),
        "posterior": {b.name: round(b.posterior, 3) for b in verdict.behaviours},
    }


def ledger_summary(ledger: Ledger) -> dict[str, Any]:
    """What the fit says about the run: the verdicts and the coefficients behind them."""
    fit = ledger.fit
    first = next((e for e in ledger.entries if e.kind == "first"), None)
    return {
        "run": ledger.run_id,
        "chain_steps": len(ledger.chain),
        "token_ratio": round(ledger.ratio, 3),
        "reasoning": _verdict(
            fit.reasoning if fit else None, ledger.reasoning_sent, ledger.reasoning_retention
        ),
        "tool_results": _verdict(
            fit.tool_results if fit else None,
            ledger.tool_results_sent,
            ledger.tool_result_retention,
        ),
        "coefficients": (
            {k: round(v, 3) for k, v in fit.final.values.items()} if fit is not None else {}
        ),
        "noise_scale": _round(fit.scale, 3) if fit is not None else None,
        "set_aside": list(fit.set_aside) if fit is not None else [],
        "miscounted": sorted(ledger.miscounted),
        "first_prompt_tokens": first.prompt_tokens if first else None,
        "first_sent_tokens": _round(first.sent_estimate) if first else None,
        "cache_falls": list(ledger.cache.steps) if ledger.cache is not None else [],
    }


def ledger_document(ledger: Ledger) -> dict[str, Any]:
    """The whole ledger as one JSON document: the summary and the per-step rows."""
    return {**ledger_summary(ledger), "steps": ledger_rows(ledger)}


def _percent(value: Any) -> str:
    return "unknown" if value is None else f"{100 * value:.1f}%"


def summary_lines(ledger: Ledger) -> list[str]:
    """The summary in a few plain lines, for the table output."""
    summary = ledger_summary(ledger)
    lines = [
        f"ledger of run {summary['run']}: {summary['chain_steps']} tool-chain steps fitted, "
        f"{summary['token_ratio']} host tokens per estimated token"
    ]
    for part in ("reasoning", "tool_results"):
        verdict = summary[part]
        if verdict["behaviour"] is None:
            lines.append(f"{part.replace('_', ' ')}: nothing to measure")
            continue
        odds = ", ".join(f"{name} {p:.2f}" for name, p in verdict["posterior"].items())
        if verdict["behaviour"] == "undecided":
            odds += f": no share kept holds {DECIDED}"
        lines.append(
            f"{part.replace('_', ' ')}: {verdict['behaviour']} ({odds}); retained "
            f"{_percent(verdict['retention'])} of {verdict['sent_tokens']} tokens sent"
        )
    coefficients = summary["coefficients"]
    if coefficients:
        shown = ", ".join(f"{k} {v}" for k, v in coefficients.items())
        lines.append(f"fit: {shown}; noise scale {summary['noise_scale']}")
    if summary["first_prompt_tokens"] is not None and summary["first_sent_tokens"] is not None:
        lines.append(
            f"first request: {summary['first_prompt_tokens']} tokens counted, about "
            f"{summary['first_sent_tokens']:.0f} sent"
        )
    if summary["miscounted"]:
        steps = ", ".join(str(step) for step in summary["miscounted"])
        lines.append(f"left out (a turn sent back without the arguments counted): steps {steps}")
    return lines
