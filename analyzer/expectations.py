"""Template-aware expectations: the prompt tokens a host should have reported for each step.

Each recorded request is rendered with a chat template and counted with a tokenizer, as the
host would have done, once as sent and, when that does not match the recorded
`prompt_tokens`, under each variant of what the host may really have rendered (reasoning
dropped from history, ids rewritten, arguments re-encoded; see `traces.chat_template`). The
variant that matches exactly, or else the nearest one, explains the number; per provider and
model, the share of steps each variant explains says what that host does.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb

from analyzer.checks.loader import load_runs
from analyzer.checks.records import Run, Step
from traces.chat_template import ChatTemplate, TemplateRenderError, TokenCounter, iter_variants


@dataclass(frozen=True)
class VariantCount:
    """One variant of a step's request: its prompt tokens, or why it did not render."""

    variant: str
    tokens: int | None
    error: str | None = None


@dataclass(frozen=True)
class StepExpectation:
    """A recorded step against the template's expectation."""

    run_id: str
    provider: str
    model: str
    step: int
    recorded: int | None
    """`prompt_tokens` the host reported (None when it reported none)."""
    expected: int | None
    """Tokens of the request rendered as sent (None when the template refused it)."""
    best: str | None
    """The variant that explains `recorded`: the first exact match, else the nearest."""
    best_expected: int | None
    error: str | None = None
    """Why the request as sent did not render, when it did not."""
    counts: tuple[VariantCount, ...] = field(default=())
    """Every variant tried, in order (only up to the first exact match)."""

    @property
    def deviation(self) -> int | None:
        """Recorded minus expected-as-sent: what the host added (+) or left out (-)."""
        if self.recorded is None or self.expected is None:
            return None
        return self.recorded - self.expected

    @property
    def gap(self) -> int | None:
        """Recorded minus the best variant's tokens (0 when it explains the step exactly)."""
        if self.recorded is None or self.best_expected is None:
            return None
        return self.recorded - self.best_expected

    @property
    def rendered(self) -> bool:
        """Whether any variant of the request rendered at all."""
        return any(c.tokens is not None for c in self.counts)

    @property
    def exact(self) -> bool:
        """Whether the best variant matches the recorded number exactly."""
        return self.gap == 0

    def row(self) -> dict[str, Any]:
        """The step as an output row (`variants`: tokens, or the error, of each tried)."""
        return {
            "run": self.run_id,
            "step": self.step,
            "provider": self.provider,
            "model": self.model,
            "recorded": self.recorded,
            "expected": self.expected,
            "deviation": self.deviation,
            "best": self.best,
            "gap": self.gap,
            "error": self.error,
            "variants": {c.variant: c.tokens if c.error is None else c.error for c in self.counts},
        }


@dataclass(frozen=True)
class Expectation:
    """How to compute expectations: the template, the counter and extra template keywords."""

    template: ChatTemplate
    counter: TokenCounter
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Defaults for every render (`enable_thinking`, ...); a request's own
    `chat_template_kwargs` override them, as vLLM and SGLang merge them."""

    def render_kwargs(self, step: Step) -> dict[str, Any]:
        """Keywords the host passed to its template for `step`."""
        params = step.request_params
        own = params.get("chat_template_kwargs")
        merged = {**self.kwargs, **(own if isinstance(own, dict) else {})}
        merged.setdefault("add_generation_prompt", params.get("add_generation_prompt", True))
        return merged

    def render(self, messages: Sequence[Mapping[str, Any]], step: Step) -> str:
        """`messages` rendered with `step`'s tools; raises TemplateRenderError."""
        tools = step.request_params.get("tools")
        kwargs = self.render_kwargs(step)
        return self.template.render(messages, tools if isinstance(tools, list) else None, **kwargs)

    def count(self, messages: Sequence[Mapping[str, Any]], step: Step) -> int:
        """Tokens of `messages` rendered with `step`'s tools; raises TemplateRenderError."""
        return self.counter.count(self.render(messages, step))


def expect_step(run: Run, step: Step, expectation: Expectation) -> StepExpectation:
    """The expectation of one step: as sent, then variants until one matches exactly."""
    counts: list[VariantCount] = []
    recorded = step.prompt_tokens
    inert: set[str] = set()
    sent_text: str | None = None
    for variant in iter_variants(step.request_messages, inert):
        try:
            text = expectation.render(variant.messages, step)
        except TemplateRenderError as err:
            counts.append(VariantCount(variant.name, None, str(err)))
            continue
        if not variant.rewrites:
            sent_text = text
        elif len(variant.rewrites) == 1 and text == sent_text:
            # The template never shows what this rewrite changes (ids, for most families):
            # combinations with it would only repeat the ones without it.
            inert.add(variant.name)
        tokens = expectation.counter.count(text)
        counts.append(VariantCount(variant.name, tokens))
        if recorded is None or tokens == recorded:
            break  # nothing to explain, or explained: simpler variants came first
    as_sent = counts[0]
    rendered = [c for c in counts if c.tokens is not None]
    best: VariantCount | None = None
    if rendered and recorded is not None:
        # min keeps the first of equals: the simplest explanation wins a tie.
        best = min(rendered, key=lambda c: abs(recorded - (c.tokens or 0)))
    return StepExpectation(
        run_id=run.id,
        provider=run.provider,
        model=run.model,
        step=step.index,
        recorded=recorded,
        expected=as_sent.tokens,
        best=best.variant if best is not None else None,
        best_expected=best.tokens if best is not None else None,
        error=as_sent.error,
        counts=tuple(counts),
    )


def expect_runs(runs: Iterable[Run], expectation: Expectation) -> list[StepExpectation]:
    """Expectations of every step of `runs`, in run then step order."""
    return [expect_step(run, step, expectation) for run in runs for step in run.steps]


_BATCH = 20
"""Runs loaded at a time: whole runs with every request, so memory stays bounded."""


def expect_stored(
    conn: duckdb.DuckDBPyConnection,
    run_ids: Sequence[str],
    expectation: Expectation,
    on_run: Callable[[int], None] | None = None,
) -> list[StepExpectation]:
    """Expectations of the stored runs `run_ids`, loaded a batch at a time."""
    found: list[StepExpectation] = []
    for start in range(0, len(run_ids), _BATCH):
        runs = load_runs(conn, run_ids[start : start + _BATCH])
        found.extend(expect_runs(runs, expectation))
        if on_run is not None:
            on_run(len(runs))
    return found


def select_runs(
    conn: duckdb.DuckDBPyConnection, provider: str | None = None, model: str | None = None
) -> list[str]:
    """Ids of the runs of `provider` and `model` (either may be None: any)."""
    rows = conn.execute(
        "SELECT id FROM runs WHERE (? IS NULL OR provider = ?) AND (? IS NULL OR model = ?) "
        "ORDER BY started_at, id",
        [provider, provider, model, model],
    ).fetchall()
    return [str(row[0]) for row in rows]


def _median(values: list[int]) -> float | None:
    return float(statistics.median(values)) if values else None


def summarize(expectations: Iterable[StepExpectation]) -> list[dict[str, Any]]:
    """Per provider and model: steps, median deviation (as sent) and gap (best variant), the
    share of measured steps each variant explains exactly, and the unexplained share."""
    groups: dict[tuple[str, str], list[StepExpectation]] = {}
    for item in expectations:
        groups.setdefault((item.provider, item.model), []).append(item)
    rows = []
    for (provider, model), items in sorted(groups.items()):
        measured = [i for i in items if i.gap is not None]
        deviations = [i.deviation for i in items if i.deviation is not None]
        explained = Counter(i.best for i in measured if i.exact)
        share = {name: round(n / len(measured), 4) for name, n in explained.most_common() if name}
        rows.append(
            {
                "provider": provider,
                "model": model,
                "runs": len({i.run_id for i in items}),
                "steps": len(items),
                "measured": len(measured),
                "median_deviation": _median(deviations),
                "median_gap": _median([i.gap for i in measured if i.gap is not None]),
                "as_sent_exact": (
                    round(sum(d == 0 for d in deviations) / len(measured), 4) if measured else None
                ),
                "explained": share,
                "unexplained": (
                    round(1 - sum(explained.values()) / len(measured), 4) if measured else None
                ),
                "unrendered": sum(not i.rendered for i in items),
            }
        )
    return rows


def explained_text(share: Mapping[str, float]) -> str:
    """`as sent 80%, reasoning dropped 20%`: a summary's `explained` for a table cell."""
    return ", ".join(f"{name} {value:.0%}" for name, value in share.items())


__all__ = [
    "Expectation",
    "StepExpectation",
    "VariantCount",
    "expect_runs",
    "expect_step",
    "expect_stored",
    "explained_text",
    "select_runs",
    "summarize",
]
