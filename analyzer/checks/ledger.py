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
legitimately drop the reasoning before a new user turn.
"""

from __future__ import annotations

from dataclasses import dataclass

from analyzer.checks.ledger_entries import Entry, build_entries
from analyzer.checks.ledger_fit import Fit, fit_chain
from analyzer.checks.records import Run


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

    @property
    def chain(self) -> list[Entry]:
        """The entries the fit explains, in order."""
        return [e for e in self.entries if e.kind == "chain" and e.added is not None]

    @property
    def reasoning_retention(self) -> float | None:
        """Share of the reasoning sent back that the host counted, under the most probable
        behaviour (None: no reasoning went back, or too few chain steps to fit)."""
        if self.fit is None or self.fit.reasoning is None:
            return None
        return self.fit.reasoning.best.retention

    @property
    def reasoning_kept(self) -> float | None:
        """Of `reasoning_sent`, the tokens the host counted."""
        retention = self.reasoning_retention
        return None if retention is None else retention * self.reasoning_sent

    @property
    def tool_result_retention(self) -> float | None:
        """Share of the tool-result tokens sent that the host counted, under the most probable
        behaviour (None: no tool results, or too few chain steps to fit)."""
        if self.fit is None or self.fit.tool_results is None:
            return None
        return self.fit.tool_results.best.retention

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
    chain = [e for e in entries if e.kind == "chain" and e.added is not None]
    sent = [(e.reasoning_newest, e.reasoning_older) for e in chain]
    return Ledger(
        run_id=run.id,
        entries=tuple(entries),
        ratio=ratio,
        fit=fit_chain(chain, sent),
        reasoning_sent=sum(n + o for n, o in sent),
        tool_results_sent=sum(e.tool_results_total for e in chain),
    )
