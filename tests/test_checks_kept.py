"""The ledger and what it says the host kept: hand-built runs of a host that keeps, drops or
rewrites parts of the history, each counted as that host would count it.

`host_run` builds a tool chain as a client records it; its `prompt_tokens` follow a template
(40 tokens of header, 3 around each tool result, 2 for the generation prompt, 10 of call
markup per turn) applied to what the host keeps, with the host's tokenizer counting tool
output `tool_ratio` times the estimate. Every behaviour must be found, with its numbers, and
every look-alike (a client that sent nothing back, a tokenizer off by a third, tiny reasoning
that varies, a big template preamble, cache misses) must stay silent.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

import pytest

from analyzer.checks.kept import (
    ledger_findings,
    results_truncated,
    rewrite_confidence,
    told_from_overhead,
    what_the_host_kept,
)
from analyzer.checks.ledger import DECIDED, Ledger, cache_held, measure
from analyzer.checks.ledger_entries import (
    Added,
    Entry,
    _measure,
    _Remembered,
    build_entries,
    size,
)
from analyzer.checks.ledger_fit import Behaviour, Verdict, fit_chain
from analyzer.checks.ledger_turns import leaked_markup, put_right
from analyzer.checks.lsq import Coefficient, bounded, chi2_survival, normal_equations, solve
from analyzer.checks.persist import ledger_row
from analyzer.checks.records import Call, Finding, Run, Step
from analyzer.checks.registry import CHECK_VERSION
from analyzer.ledger_view import ledger_summary, summary_lines
from traces.chat_template import SimTokenCounter, load_template, render
from traces.normalize import estimate_tokens
from traces.responses import CHOICES_MISSING

from conftest import EXTERNAL, query_rows, reference_missing, run_cli

Host = Literal["keep", "drop", "last_only", "tools_dropped", "truncated", "escaped", "reencoded"]

REASONING = [40, 18, 65, 30, 52, 24, 47, 35]
"""Reasoning tokens of each turn: varied, as a real model's are."""
TOOLS = [30, 34, 28, 31, 36, 29, 33, 30]
"""Tool-result tokens of each turn: about the same, as a chain's are."""
HEADER, PER_RESULT, GENERATION, CALL_MARKUP, TAGS = 40, 3, 2, 10, 2


def _words(n: int, word: str = "w") -> str:
    return " ".join(f"{word}{i}" for i in range(n))


def _tool_text(n: int, quotes: int) -> str:
    """n tokens of tool output, `quotes` of them a double quote (one token each)."""
    return " ".join(['"'] * quotes + [f"t{i}" for i in range(n - quotes)])


def host_run(
    host: Host = "keep",
    *,
    reasoning: list[int] = REASONING,
    tools: list[int] = TOOLS,
    send_back: bool = True,
    usage: bool = True,
    cached: bool = True,
    tool_ratio: float = 1.0,
    preamble: int = 0,
    quotes: int | list[int] = 0,
    user_turns: bool = False,
    cap: int = 20,
    jitter: list[int] | None = None,
    keys: list[int] | None = None,
    leaked: bool = False,
) -> Run:
    """A tool chain as a client records it against `host`; `preamble` tokens of the host's
    own come before everything, `quotes` of each result are `"` (an escaping host counts
    four for each). `leaked`: a reasoning parser ran past each turn's call, so its markup
    is in the reasoning too, billed once (as the call) and sent back with the reasoning."""
    per_turn = quotes if isinstance(quotes, list) else [quotes] * len(reasoning)
    # Each turn's arguments: `keys[i]` keys (two quotes each), else one.
    arguments = [json.dumps({f"k{k}": k for k in range(n)}) for n in (keys or [1] * len(reasoning))]
    leaks = [
        f' <tool_call>{{"name": "open_box", "arguments": {a}}}</tool_call>' if leaked else ""
        for a in arguments
    ]
    conversation: list[dict[str, Any]] = [
        {"role": "system", "content": "You open boxes."},
        {"role": "user", "content": "Open every box."},
    ]
    first = HEADER + preamble + 3 + 3  # the system and user text: three words each
    steps: list[Step] = []
    rendered: list[int] = []  # each turn's tokens in the history, as the host renders them

    def turn_tokens(j: int, i: int) -> int:
        """Turn j (assistant and result) as the host renders it in request i."""
        kept_reasoning = host != "drop" and send_back and (host != "last_only" or j == i - 1)
        call_quotes = arguments[j].count('"') if host == "escaped" else 0
        # Encoded again: a backslash before each quote, two quotes around.
        reencoded = arguments[j].count('"') + 2 if host == "reencoded" else 0
        result = round(tool_ratio * tools[j])
        if host == "tools_dropped":
            result_tokens = 0
        else:
            if host == "truncated":
                result = min(result, cap)
            if host == "escaped":
                result += 3 * per_turn[j]
            result_tokens = PER_RESULT + result
        return (
            (reasoning[j] + estimate_tokens(leaks[j]) + TAGS if kept_reasoning else 0)
            + CALL_MARKUP
            + estimate_tokens(arguments[j])
            + 3 * call_quotes
            + reencoded
            + result_tokens
            + (4 if user_turns else 0)
        )

    for i, r in enumerate(reasoning):
        history = [turn_tokens(j, i) for j in range(i)]
        prompt = first + sum(history) + GENERATION + (jitter[i] if jitter else 0)
        cache: int | None = None
        if cached and i > 0:
            # A warm cache holds the previous prompt up to where this one renders it anew.
            same = 0
            for j, tokens in enumerate(rendered):
                if j < len(history) and history[j] == tokens:
                    same += tokens
                else:
                    break
            cache = first + same
        rendered = history
        steps.append(
            Step(
                index=i,
                finish_reason="tool_calls",
                reasoning=_words(r, "r") + leaks[i],
                reasoning_source="reasoning_content",
                prompt_tokens=prompt if usage else None,
                completion_tokens=(r + TAGS + CALL_MARKUP + estimate_tokens(arguments[i]))
                if usage
                else None,
                reasoning_tokens=r if usage else None,
                reasoning_tokens_source="reported" if usage else "estimated",
                cached_tokens=cache if usage else None,
                request_messages=tuple(conversation),
            )
        )
        turn: dict[str, Any] = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": f"call_{i}",
                    "type": "function",
                    "function": {"name": "open_box", "arguments": arguments[i]},
                }
            ],
        }
        if send_back:
            turn["reasoning_content"] = _words(r, "r") + leaks[i]
        conversation.append(turn)
        conversation.append(
            {
                "role": "tool",
                "tool_call_id": f"call_{i}",
                "content": _tool_text(tools[i], per_turn[i]),
            }
        )
        if user_turns:
            conversation.append({"role": "user", "content": f"Go on ({i})."})
    # Each step answered with one call: the ledger ties the turn sent back to its response.
    steps = [replace(s, calls=(_call(s.index, arguments[s.index]),)) for s in steps]
    return Run(id="chain", dialect="openai", steps=tuple(steps))


def _call(index: int, arguments: str) -> Call:
    return Call(
        index=0,
        id=f"call_{index}",
        id_format="openai",
        name="open_box",
        arguments_raw=arguments,
        arguments_type="string",
        arguments=json.loads(arguments),
        json_valid=True,
        schema_valid=True,
        schema_error=None,
    )


def _kinds(run: Run) -> dict[str, Finding]:
    found = list(what_the_host_kept(run))
    kinds = {f.kind: f for f in found}
    assert len(kinds) == len(found)  # one finding per kind and run
    return kinds


# -- the ledger: what each request added -------------------------------------------------------


def test_each_step_lists_what_its_request_added() -> None:
    entries, ratio = build_entries(host_run("keep"))
    assert ratio == pytest.approx(1.0)
    assert [e.kind for e in entries] == ["first"] + ["chain"] * (len(REASONING) - 1)
    second = entries[2]
    assert second.added is not None and second.growth is not None
    # The reasoning and the turn come back as the host counted them in its usage.
    assert second.added.reasoning == REASONING[1] and second.added.basis == "counted"
    call = TAGS + CALL_MARKUP + estimate_tokens('{"k0": 0}')
    assert second.added.output == call and second.added.output_counted
    assert second.added.tool_results == TOOLS[1] and second.added.results == (TOOLS[1],)
    assert second.added.demoted == REASONING[0]
    # Each request's reasoning: the newest turn's, and the chain's older ones.
    assert (second.reasoning_newest, second.reasoning_older) == (REASONING[1], REASONING[0])
    assert second.growth == REASONING[1] + call + PER_RESULT + TOOLS[1]


def test_a_kept_history_is_fully_retained() -> None:
    ledger = measure(host_run("keep"))
    assert ledger.reasoning_retention == 1.0 and ledger.tool_result_retention == 1.0
    assert ledger.fit is not None and ledger.fit.reasoning is not None
    assert ledger.fit.reasoning.best.name == "kept"
    # The overhead learned from the run: a few tokens around each result (three here; the
    # results being all about the same size, some of it may be read as their ratio).
    # One result a step: the two overheads are one coefficient.
    assert ledger.fit.value("per_result") is None
    per_turn = ledger.fit.value("per_turn")
    assert per_turn is not None and 0 <= per_turn <= 10
    assert max(abs(r) for r in ledger.fit.residuals) < 1.0
    assert _kinds(host_run("keep")) == {}


# -- reasoning -----------------------------------------------------------------------------------


def test_a_host_dropping_every_turns_reasoning() -> None:
    run = host_run("drop")
    finding = _kinds(run)["reasoning_dropped_in_chain"]
    assert (finding.severity, finding.layer, finding.step) == ("warning", "provider", 1)
    assert finding.confidence is not None and finding.confidence >= 0.9
    evidence = finding.evidence
    assert evidence["behaviour"] == "none" and evidence["retention"] == 0.0
    assert evidence["signal"] == "prompt_growth"  # the cache stays warm: same rendering
    assert evidence["steps"] == [1, len(REASONING) - 1]
    assert evidence["reasoning_kept_tokens"] == 0
    # Every request carried all the turns before it: the sums over requests.
    assert evidence["reasoning_sent_tokens"] == sum(
        sum(REASONING[:i]) for i in range(1, len(REASONING))
    )
    assert evidence["example"]["added"]["reasoning"] == max(REASONING[:-1])
    assert set(evidence["posterior"]) >= {"kept", "none"}
    assert measure(run).reasoning_retention == 0.0


def test_a_host_keeping_only_the_newest_turns_reasoning() -> None:
    run = host_run("last_only")
    finding = _kinds(run)["reasoning_dropped_in_chain"]
    assert finding.step == 2  # the third request is the first to lose an older turn
    assert finding.evidence["behaviour"] == "newest_only"
    assert finding.evidence["signal"] == "prompt_growth+cached_tokens"
    cache = finding.evidence["cached_tokens"]
    # Every chain step with a cache hit but the second (nothing older to lose yet) fell.
    assert cache["affected_steps"] == cache["evaluated_steps"] - 1 == len(REASONING) - 2
    newest = sum(REASONING[: len(REASONING) - 1])
    sent = sum(sum(REASONING[:i]) for i in range(1, len(REASONING)))
    assert measure(run).reasoning_retention == pytest.approx(newest / sent)


def _with_reasoning(ledger: Ledger, behaviours: dict[str, tuple[float, float]]) -> Ledger:
    """`ledger` with its reasoning verdict replaced by `behaviours` (name: posterior and
    retention, most probable first)."""
    assert ledger.fit is not None and ledger.fit.reasoning is not None
    solution = ledger.fit.reasoning.best.solution
    verdict = Verdict(
        tuple(Behaviour(name, solution, r, posterior=p) for name, (p, r) in behaviours.items())
    )
    return replace(ledger, fit=replace(ledger.fit, reasoning=verdict))


def test_retention_is_unknown_when_the_behaviours_do_not_decide_it() -> None:
    # A `files` run whose host kept all the reasoning but cut the tool results
    # (bench_retention, tools_truncated), as its ledger read it: "newest turn's only" at 0.50
    # against "kept" at 0.43. Its 37.7% retention (truth 100) was no measurement.
    real = {
        "newest_only": (0.500, 0.377),
        "kept": (0.435, 1.0),
        "partial": (0.057, 0.514),
        "none": (0.007, 0.0),
    }
    ledger = _with_reasoning(measure(host_run("keep")), real)
    assert ledger.reasoning_retention is None and ledger.reasoning_kept is None
    assert ledger.tool_result_retention == 1.0  # the other part is decided: still reported
    row = ledger_row(ledger, datetime.now(UTC))
    assert row is not None
    # Sent and kept unknown together: `compare` sums both over runs and leaves this one out.
    assert row.reasoning_sent_tokens is None and row.reasoning_kept_tokens is None
    assert (row.reasoning_behaviour, row.reasoning_probability) == ("newest_only", 0.5)
    assert row.tool_results_sent_tokens == row.tool_results_kept_tokens > 0
    verdict = ledger_summary(ledger)["reasoning"]
    assert verdict["behaviour"] == "undecided" and verdict["retention"] is None
    assert verdict["posterior"] == {
        "newest_only": 0.5,
        "kept": 0.435,
        "partial": 0.057,
        "none": 0.007,
    }
    line = next(line for line in summary_lines(ledger) if line.startswith("reasoning:"))
    assert line.startswith("reasoning: undecided (newest_only 0.50, kept 0.43, partial 0.06")
    assert "retained unknown of" in line
    assert not list(ledger_findings(ledger))


def test_behaviours_agreeing_on_the_retention_decide_it_together() -> None:
    # "none" alone at 0.64 (posteriors of a run in bench_analyze's store, its finding
    # reasoning_dropped_in_chain at 0.714), a share of 5% beside it (made up): 0.72 of the
    # probability says about nothing was kept.
    ledger = measure(host_run("keep"))
    agree = {"none": (0.641, 0.0), "kept": (0.286, 1.0), "partial": (0.074, 0.05)}
    decided = _with_reasoning(ledger, agree)
    assert decided.reasoning_retention == 0.0 and decided.reasoning_kept == 0.0
    assert ledger_summary(decided)["reasoning"]["behaviour"] == "none"
    # The same share kept further from nothing: no retention holds 0.7.
    apart = {**agree, "partial": (0.074, 0.5)}
    assert _with_reasoning(ledger, apart).reasoning_retention is None
    # One behaviour at the probability a finding needs decides alone.
    alone = {"newest_only": (DECIDED, 0.377), "kept": (1 - DECIDED, 1.0)}
    assert _with_reasoning(ledger, alone).reasoning_retention == 0.377


def test_cached_tokens_tell_the_newest_turn_apart_when_growth_cannot() -> None:
    # Constant reasoning: keeping the newest turn's grows the prompt exactly as keeping
    # none does; the cache, rendered anew from the turn before, tells them apart.
    run = host_run("last_only", reasoning=[40] * 8)
    finding = _kinds(run)["reasoning_dropped_in_chain"]
    assert finding.step == 2 and "cached_tokens" in finding.evidence["signal"]


def test_small_reasoning_dropped_is_found_by_pooling_the_steps() -> None:
    # Six to eleven tokens a turn, each within a template's jitter; forty turns together
    # are not.
    small = [6 + (i * 7) % 6 for i in range(40)]
    run = host_run("drop", reasoning=small, tools=[30] * 40, cached=False)
    finding = _kinds(run)["reasoning_dropped_in_chain"]
    assert finding.confidence is not None and finding.confidence >= 0.9
    kept = host_run("keep", reasoning=small, tools=[30] * 40, cached=False)
    assert "reasoning_dropped_in_chain" not in _kinds(kept)


def test_a_few_small_turns_with_jitter_are_not_evidence() -> None:
    jitter = [0, 3, -2, 2, -3, 1, -1, 2]
    run = host_run("drop", reasoning=[3, 5, 2, 6, 4, 7, 3, 5], jitter=jitter, cached=False)
    assert "reasoning_dropped_in_chain" not in _kinds(run)


@pytest.mark.parametrize("host", ["drop", "last_only"])
def test_a_client_that_sent_no_reasoning_back_is_not_the_hosts_fault(host: Host) -> None:
    run = host_run(host, send_back=False)
    assert _kinds(run) == {}
    assert measure(run).reasoning_retention is None  # nothing sent, nothing to retain


def test_a_summary_of_hidden_reasoning_is_not_the_reasoning() -> None:
    # The host billed 4x the reasoning it showed: the client could only send the summary
    # back, so a prompt that grows by the summary alone is no drop.
    run = host_run("keep", reasoning=[r * 4 for r in REASONING])
    summarized = tuple(
        replace(
            step,
            reasoning=_words((step.reasoning_tokens or 0) // 4, "s"),
            request_messages=tuple(
                {**m, "reasoning_content": _words(len(m["reasoning_content"].split()) // 4, "s")}
                if m.get("reasoning_content")
                else m
                for m in step.request_messages
            ),
            prompt_tokens=(step.prompt_tokens or 0)
            - sum(3 * REASONING[j] for j in range(step.index)),
        )
        for step in run.steps
    )
    assert "reasoning_dropped_in_chain" not in _kinds(replace(run, steps=summarized))


def test_missing_usage_is_silent() -> None:
    run = host_run("drop", usage=False)
    assert _kinds(run) == {} and measure(run).fit is None


def test_a_new_user_turn_is_not_a_chain_step() -> None:
    # Templates legitimately drop the reasoning before the last user message.
    run = host_run("drop", user_turns=True)
    assert {e.kind for e in measure(run).entries} == {"first", "turn"}
    assert _kinds(run) == {}


def test_cache_misses_are_not_a_fall() -> None:
    # Zeros (eviction, another replica) on most steps of a faithful host: no evidence.
    run = host_run("keep")
    missed = tuple(replace(s, cached_tokens=0) if s.index % 3 else s for s in run.steps)
    assert _kinds(replace(run, steps=missed)) == {}


def test_a_cache_covering_the_turn_before_rules_out_its_reasoning_dropped() -> None:
    # Two chain steps whose growth fits the newest turn's reasoning kept alone about as well
    # as all of it (a simulated MiniMax run: 0.71 for the newest turn's alone): the cache hit
    # covering each previous prompt says no earlier turn was rendered anew, so the newest
    # turn's alone is no loss this host can have had.
    shape = {"reasoning": [23, 19, 30], "tools": [61, 182, 50], "tool_ratio": 1.19}
    held = measure(host_run("keep", **shape))
    assert cache_held(held.entries)
    assert not cache_held(measure(host_run("last_only", **shape)).entries)
    assert not cache_held(measure(host_run("keep", **shape, cached=False)).entries)
    # A hit beyond the previous prompt: another conversation warmed the cache (a run repeated
    # with the same task sends the same history), so a hit says nothing of this one's.
    kept = host_run("keep", **shape)
    warm = replace(kept.steps[1], cached_tokens=kept.steps[1].prompt_tokens)
    assert not cache_held(
        measure(replace(kept, steps=(kept.steps[0], warm, *kept.steps[2:]))).entries
    )
    # A host keeping the newest turn's alone: its cache falls, and that is the verdict.
    last_only = host_run("last_only")
    ledger = measure(last_only)
    assert ledger.ruled_out == frozenset() and ledger.fit is not None
    assert ledger.fit.reasoning is not None and ledger.fit.reasoning.best.name == "newest_only"
    # The same growth beside a cache covering every previous prompt: the behaviour is not
    # tried (what the growth lacks is then read as a share of the reasoning lost).
    steps = last_only.steps
    covered = [steps[0], *(replace(s, cached_tokens=p.prompt_tokens) for p, s in pairwise(steps))]
    ledger = measure(replace(last_only, steps=tuple(covered)))
    assert ledger.ruled_out == frozenset({"newest_only"}) and ledger.fit is not None
    assert ledger.fit.reasoning is not None
    assert ledger.fit.reasoning.probability("newest_only") == 0.0


def test_a_single_cache_fall_is_not_systematic() -> None:
    run = host_run("keep")
    steps = list(run.steps)
    steps[3] = replace(steps[3], cached_tokens=150)  # one partial hit, far short
    assert _kinds(replace(run, steps=tuple(steps))) == {}


def test_a_step_without_counts_does_not_restart_the_chains_reasoning() -> None:
    # Usage left out on some steps: the request after each is read whole, not as an
    # extension, but it still carries the chain's earlier turns and their reasoning. Left
    # at none, the next step demoted nothing, and the newest turn's drop showed only in
    # cached tokens (read as a rewrite of the history where no older turn was counted).
    run = host_run("last_only", reasoning=REASONING * 2, tools=TOOLS * 2)
    steps = list(run.steps)
    for i in (3, 8, 12):
        steps[i] = replace(
            steps[i],
            prompt_tokens=None,
            completion_tokens=None,
            reasoning_tokens=None,
            reasoning_tokens_source="estimated",
            cached_tokens=None,
        )
    run = replace(run, steps=tuple(steps))
    entries = {e.step: e for e in measure(run).entries}
    assert (entries[3].kind, entries[4].kind, entries[5].kind) == ("skipped", "restart", "chain")
    after = entries[5]
    assert after.added is not None and after.added.demoted == REASONING[3]
    assert (after.reasoning_newest, after.reasoning_older) == (REASONING[4], sum(REASONING[:4]))
    finding = _kinds(run)["reasoning_dropped_in_chain"]
    assert finding.evidence["behaviour"] == "newest_only"
    assert finding.evidence["signal"] == "prompt_growth+cached_tokens"


def test_reasoning_holding_leaked_call_markup_is_not_the_hosts_count_of_it() -> None:
    # The reasoning parser ran past each call: its markup is in the reasoning too, billed
    # once (as the call) but sent back with the reasoning. The host's reasoning count is of
    # less text than went back: read as the count, the run's token ratio fell to 0.6 (every
    # estimate, the first request's too, scaled down) and the markup's quotes and brackets
    # read as the history escaped.
    run = host_run("keep", leaked=True)
    ledger = measure(run)
    assert ledger.ratio == 1.0
    second = ledger.entries[2].added
    assert second is not None and second.basis == "estimated"
    assert second.reasoning == size(run.steps[1].reasoning or "")  # the markup included
    assert _kinds(run) == {}
    assert "reasoning_dropped_in_chain" in _kinds(host_run("drop", leaked=True))


def test_reasoning_holding_a_familys_special_tokens_leaves_its_step_out() -> None:
    # DeepSeek's call markup copied into the reasoning: each delimiter is one token to the
    # host's tokenizer and about ten to the estimate, so the steps sending it back grew by
    # about 0.6 of the reasoning estimated, and a held-out run read as the reasoning partly
    # dropped (0.9). Hermes' `<tool_call>` is text to both: its steps stay, counted in full.
    hermes = host_run("keep", leaked=True)
    markup = "<｜tool▁call▁begin｜>function<｜tool▁sep｜>open_box<｜tool▁call▁end｜>"
    steps = tuple(
        replace(step, reasoning=_words(REASONING[step.index], "r") + " " + markup)
        for step in hermes.steps
    )
    deepseek = replace(hermes, steps=steps)
    assert not any(leaked_markup(step, hermes) for step in hermes.steps)
    assert all(leaked_markup(step, deepseek) for step in deepseek.steps)
    entries, _ = build_entries(deepseek)
    _, left = put_right(deepseek, entries)
    assert left == frozenset(range(1, len(REASONING)))  # every step sending a leaked turn back
    _, kept_in = put_right(hermes, build_entries(hermes)[0])
    assert kept_in == frozenset()


def test_usage_of_several_choices_teaches_no_token_ratio() -> None:
    # `n` = 2: the usage adds up both choices' turns while the step keeps choice 0's, except
    # where the host ignored `n` and one came (`choices_missing`). Read as the count of the
    # reasoning shown, the second choice inflated the run's ratio by as much as it added.
    run = host_run("keep")
    steps = []
    for step in run.steps:
        alone = step.index % 3 == 1
        more = 0.0 if alone else 0.7
        steps.append(
            replace(
                step,
                request_params={"n": 2},
                completion_tokens=round((1 + more) * (step.completion_tokens or 0)),
                reasoning_tokens=round((1 + more) * (step.reasoning_tokens or 0)),
                anomalies=(
                    ({"kind": CHOICES_MISSING, "requested": 2, "received": 1},) if alone else ()
                ),
            )
        )
    several = replace(run, steps=tuple(steps))
    assert measure(several).ratio == pytest.approx(1.0)
    assert _kinds(several) == {}


# -- tool results --------------------------------------------------------------------------------


def test_a_host_dropping_every_tool_result() -> None:
    run = host_run("tools_dropped")
    kinds = _kinds(run)
    finding = kinds["tool_results_dropped"]
    assert (finding.severity, finding.layer, finding.step) == ("error", "provider", 1)
    assert finding.confidence is not None and finding.confidence >= 0.7
    assert finding.evidence["behaviour"] in ("dropped", "partial")
    assert finding.evidence["retention"] <= 0.3
    assert "reasoning_dropped_in_chain" not in kinds  # the reasoning still counted
    assert measure(run).tool_result_retention == pytest.approx(0.0, abs=0.3)


def test_dropping_the_results_starts_as_probable_as_dropping_the_reasoning() -> None:
    # A chain whose reasoning and results are the same 33 tokens on every step (the sample
    # `chain_short` task's): the growth says one of the two went missing, never which. The
    # tool-result share's prior (the tokenizer's ratio when they count) was charged to the
    # behaviour holding it at none, so every such run read as the reasoning dropped.
    same = {"reasoning": [33] * 5, "tools": [33] * 5, "cached": False}
    for host in ("tools_dropped", "drop"):
        fit = measure(host_run(host, **same)).fit
        assert fit is not None and fit.reasoning is not None and fit.tool_results is not None
        lost, dropped = fit.reasoning.probability("none"), fit.tool_results.probability("dropped")
        assert lost == pytest.approx(dropped, abs=0.15), host
        assert lost + dropped > 0.9  # one of them went, the steps cannot say which
        kinds = _kinds(host_run(host, **same))
        assert "reasoning_dropped_in_chain" not in kinds and "tool_results_dropped" not in kinds
        # ... but that one of them went, with both hypotheses' posteriors.
        either = kinds["history_lost"]
        assert either.layer == "provider" and either.confidence is not None
        assert either.confidence >= 0.9
        assert either.evidence["reasoning_lost"] == pytest.approx(lost, abs=0.01)
        assert either.evidence["tool_results_dropped"] == pytest.approx(dropped, abs=0.01)
    assert _kinds(host_run("keep", **same)) == {}
    # Reasoning that varies from step to step tells them apart, now with more confidence.
    kinds = _kinds(host_run("tools_dropped", tools=[33] * 8))
    finding = kinds["tool_results_dropped"]
    assert finding.confidence is not None and finding.confidence >= 0.9
    assert "history_lost" not in kinds  # the part is named: never again vaguely


def test_tool_results_cut_at_a_length() -> None:
    varied = [8, 90, 12, 140, 15, 60, 10, 200]
    run = host_run("truncated", tools=varied, cap=40)
    finding = _kinds(run)["tool_results_truncated"]
    assert finding.evidence["cap_tokens"] in (32, 64)
    # The steps whose results were longer than the cap (the last result is never sent).
    assert finding.step == 2 and finding.evidence["affected_steps"] == 3
    kept = sum(min(t, 40) * (len(varied) - 1 - i) for i, t in enumerate(varied[:-1]))
    sent = sum(t * (len(varied) - 1 - i) for i, t in enumerate(varied[:-1]))
    assert measure(run).tool_result_retention == pytest.approx(kept / sent, abs=0.1)


def test_a_cut_on_two_steps_stands_though_either_left_out_undoes_it() -> None:
    # The sample `files` task: four chain steps, results longer than the cap on two of them
    # (the second and the third). With either of those left out one cut step is left, and
    # with the first left out nothing shows that short results count whole: the verdict
    # never held with any one step left out, and 174 of 376 such runs went unreported.
    shape = {"reasoning": [23, 38, 18, 18, 20], "tools": [61, 182, 100, 17, 20], "cap": 64}
    run = host_run("truncated", **shape, cached=False)
    ledger = measure(run)
    assert ledger.fit is not None and ledger.fit.tool_results is not None
    assert ledger.fit.tool_results.best.name == "truncated"
    assert min(results_truncated(fit) for fit in ledger.left_out_fits()) < 0.5
    finding = _kinds(run)["tool_results_truncated"]
    assert finding.evidence["affected_steps"] == 2 and finding.confidence is not None
    assert finding.confidence >= 0.7
    # One step cut is one step deciding: not enough without holding with it left out.
    one = host_run("truncated", **{**shape, "tools": [61, 182, 30, 17, 20]}, cached=False)
    assert "tool_results_truncated" not in _kinds(one)
    assert _kinds(host_run("keep", **shape, cached=False)) == {}


@pytest.mark.parametrize("ratio", [0.7, 1.3])
def test_a_tokenizer_off_by_a_third_on_tool_output_is_no_loss(ratio: float) -> None:
    varied = [40, 400, 90, 700, 150, 300, 60, 500]
    for host in ("keep", "drop"):
        run = host_run(host, tools=varied, tool_ratio=ratio, cached=False)
        kinds = _kinds(run)
        assert "tool_results_dropped" not in kinds and "tool_results_truncated" not in kinds
        assert measure(run).tool_result_retention == 1.0
        # ... and it hides no reasoning drop either, nor invents one.
        assert ("reasoning_dropped_in_chain" in kinds) is (host == "drop"), (host, kinds)


# -- rewrites and hidden prompts -------------------------------------------------------------------


QUOTES = [2, 10, 4, 12, 0, 8, 6, 14]


def test_a_host_escaping_the_history() -> None:
    varied_quotes = host_run("escaped", quotes=QUOTES)
    finding = _kinds(varied_quotes)["history_rewritten"]
    assert finding.layer == "provider" and finding.evidence["rewrite"] == "escaping"
    assert finding.evidence["extra_tokens_per_character"] == pytest.approx(3.0, abs=0.5)
    assert finding.confidence is not None and finding.confidence > 0.99


def test_escaping_mostly_in_the_tool_results_is_not_a_tokenizer_counting_them_twice() -> None:
    # A `research` run: most escapable characters are the results' quotes, about a quarter
    # of each. Escaped, they add three tokens each beside a tokenizer counting tool output
    # 1.3 times: a free share of 2.2, which the tool results' coefficient took in when it
    # went up to 3 (no tokenizer counts more than `RESULTS_KEPT`'s 1.8).
    tools = [236, 91, 158, 95, 248, 86, 250, 81]
    shape = {"tools": tools, "quotes": [round(0.28 * t) for t in tools], "tool_ratio": 1.3}
    shape["reasoning"] = [14, 22, 55, 20, 48, 20, 59, 20]
    finding = _kinds(host_run("escaped", **shape))["history_rewritten"]
    assert finding.evidence["rewrite"] == "escaping"
    # Three a quote, less what the share at its bound still takes of them.
    assert 1.5 <= finding.evidence["extra_tokens_per_character"] <= 3.5
    # A faithful host whose tokenizer counts the same output up to twice: nothing.
    for ratio in (1.3, 2.0):
        assert _kinds(host_run("keep", **{**shape, "tool_ratio": ratio})) == {}


def test_a_host_encoding_string_arguments_twice() -> None:
    # llama.cpp's old Kimi K2 template: `arguments|tojson` on a string argument. Sixteen
    # turns whose arguments differ in size: the extra quotes are told from overhead.
    keys = [1, 6, 2, 9, 3, 12, 1, 7, 4, 10, 2, 8, 5, 11, 3, 6]
    shape = {"reasoning": REASONING * 2, "tools": TOOLS * 2, "keys": keys}
    finding = _kinds(host_run("reencoded", **shape))["history_rewritten"]
    assert finding.evidence["rewrite"] == "arguments re-encoded"
    assert finding.evidence["extra_tokens_per_character"] == pytest.approx(1.0, abs=0.3)
    assert "history_rewritten" not in _kinds(host_run("keep", **shape))


def test_quotes_counted_as_sent_are_no_rewrite() -> None:
    assert _kinds(host_run("keep", quotes=QUOTES)) == {}


def test_constant_quotes_cannot_tell_escaping_from_template_overhead() -> None:
    # The same characters on every step: their extra tokens read as overhead, not evidence.
    assert "history_rewritten" not in _kinds(host_run("escaped", quotes=8))


def test_the_same_quotes_on_every_step_are_no_evidence_of_a_rewrite() -> None:
    # A Kimi chain recorded against the simulator, with no rewrite: every call carries the
    # same six quotes, so a second encoding of them is a multiple of the per-turn overhead.
    # Fitted beside it, it took 11 of the ~18 tokens of overhead a turn, and the prior on
    # the overhead alone made that evidence (13.5 against 10.8): `history_rewritten`.
    # (growth, the turn as counted, its estimated calls, tool output, escapable characters)
    rows = [(95, 31, 14.9, 33, 16), (96, 32, 14.9, 33, 16), (93, 31, 14.9, 33, 16)]
    rows += [(66, 30, 21.1, 13, 6), (66, 30, 21.1, 13, 6), (92, 30, 14.9, 33, 16)]
    rows += [(92, 31, 14.9, 33, 16), (89, 29, 14.9, 33, 16), (92, 30, 14.9, 33, 16)]
    rows += [(67, 31, 21.1, 13, 6), (67, 31, 21.1, 13, 6), (93, 31, 14.9, 33, 16)]
    chain = [
        Entry(
            step + 1,
            "chain",
            None,
            growth,
            Added(
                0.0, "estimated", 0.0, calls, out, True, tools, (tools,), 0.0, 0.0, 2, esc, 6, 0.0
            ),
        )
        for step, (growth, out, calls, tools, esc) in enumerate(rows)
    ]
    fit = fit_chain(chain, [(0.0, 0.0)] * len(chain))
    assert fit is not None and "reencoding" not in fit.extras
    assert fit.extras.get("escaping_evidence", 0.0) < 10.8  # escaping counts vary: tried


# A held-out MiniMax `research` run, faithful host: (growth, reasoning, calls estimated, the
# turn as counted (else estimated), counted?, tool output, escapable characters, argument
# quotes, demoted reasoning, older turns' reasoning). Its calls carry 6 quotes, 7 on the steps
# after a malformed call: a second encoding of them is all but 1.8 tokens a multiple of the
# per-turn overhead.
SEVEN_QUOTES = [
    (305, 14.0, 11.5, 30.0, True, 236, 66, 6, 0.0, 0.0),
    (85, 18.0, 15.7, 35.0, True, 13, 10, 7, 14.0, 14.0),
    (181, 39.0, 12.6, 35.0, True, 91, 16, 6, 18.0, 32.0),
    (267, 55.0, 11.5, 30.0, True, 158, 47, 6, 39.0, 71.0),
    (89, 22.0, 15.7, 35.0, True, 13, 10, 7, 55.0, 126.0),
    (186, 39.0, 12.6, 35.0, True, 95, 16, 6, 22.0, 148.0),
    (354, 48.0, 11.5, 30.0, True, 248, 70, 6, 39.0, 187.0),
    (160, 22.0, 12.6, 35.0, True, 86, 20, 6, 48.0, 235.0),
    (365, 59.8, 11.5, 11.5, False, 250, 71, 6, 22.0, 257.0),
    (149, 18.0, 12.6, 35.0, True, 81, 20, 6, 59.8, 316.8),
    (338, 54.5, 12.6, 12.6, False, 231, 71, 6, 18.0, 334.8),
    (91, 22.0, 17.8, 37.0, True, 13, 10, 7, 54.5, 389.3),
    (110, 41.0, 17.8, 37.0, True, 13, 6, 7, 22.0, 411.3),
    (110, 41.0, 17.8, 37.0, True, 13, 6, 7, 41.0, 452.3),
]


def _ledger_of(rows: list[tuple[Any, ...]]) -> Ledger:
    chain = []
    for step, (growth, r, calls, out, counted, tools, esc, quotes, demoted, older) in enumerate(
        rows, start=1
    ):
        basis = "counted" if counted else "estimated"
        results = tuple(tools) if isinstance(tools, tuple) else (tools,)
        added = Added(
            r,
            basis,
            0.0,
            calls,
            out,
            counted,
            float(sum(results)),
            results,
            0.0,
            0.0,
            1 + len(results),
            esc,
            quotes,
            demoted,
        )
        chain.append(
            Entry(step, "chain", None, growth, added, reasoning_newest=r, reasoning_older=older)
        )
    sent = [(e.reasoning_newest, e.reasoning_older) for e in chain]
    fit = fit_chain(chain, sent)
    return Ledger("held-out", tuple(chain), 1.0, fit, 0.0, 0.0, _chain=chain)


def test_a_rewrite_resting_on_the_overheads_prior_is_no_rewrite() -> None:
    ledger = _ledger_of(SEVEN_QUOTES)
    fit = ledger.fit
    assert fit is not None
    # The fit weighs it as a rewrite: the run fits four times better than assumed, which
    # multiplies the per-turn overhead's prior into evidence beyond the 10.8 needed.
    assert fit.extras["reencoding_evidence"] >= 10.8 and fit.extras["reencoding"] >= 0.6
    assert fit.extras["reencoding"] < 2.0  # 1.8 tokens between the steps, 16 of overhead
    assert not told_from_overhead(ledger, fit, "reencoding")
    assert "history_rewritten" not in {f.kind for f in ledger_findings(ledger)}
    # 3.5 tokens a quote: it still varies by less than 4 tokens between the steps, but without
    # it the overhead would be 26 tokens a turn, beyond what templates add.
    final = replace(fit.final, values={**fit.final.values, "reencoding": 3.5})
    steeper = replace(fit, extras={"reencoding": 3.5}, final=final)
    assert told_from_overhead(ledger, steeper, "reencoding")


def test_escaping_whose_level_tells_it_needs_no_step_that_varies() -> None:
    # A `chain_short` run escaping 17 characters on its first chain step and 16 on the rest:
    # 3.1 tokens a character, a per-turn overhead of 56 without it. With the first step left
    # out the characters are the same on every step and escaping is not even tried: that fit
    # no longer counts against it, the level alone telling it from overhead.
    rows: list[tuple[Any, ...]] = [
        (154, 20.0, 14.8, 35.0, True, 33, 17, 6, 0.0, 0.0),
        (168, 33.0, 14.8, 37.0, True, 33, 16, 6, 20.0, 20.0),
        (161, 27.0, 14.8, 37.0, True, 33, 16, 6, 33.0, 53.0),
        (167, 34.0, 14.8, 36.0, True, 33, 16, 6, 27.0, 80.0),
        (170, 40.0, 14.8, 37.0, True, 35, 16, 6, 34.0, 114.0),
    ]
    ledger = _ledger_of(rows)
    assert ledger.fit is not None and ledger.fit.extras["escaping"] >= 2.5
    assert rewrite_confidence(ledger, "escaping") >= 0.99
    finding = {f.kind: f for f in ledger_findings(ledger)}["history_rewritten"]
    assert finding.evidence["rewrite"] == "escaping"


# bench_findings' `chain_short` seed 0, its host escaping 16 characters on every chain step
# (rows as in SEVEN_QUOTES): the steps cannot tell escaping from overhead by how it varies.
SIXTEEN_EVERY_STEP = [
    (151, 19.0, 14.7, 36.0, True, 33.0, 16, 6, 0.0, 0.0),
    (175, 42.0, 14.7, 36.0, True, 33.0, 16, 6, 19.0, 19.0),
    (161, 27.0, 14.7, 37.0, True, 33.0, 16, 6, 42.0, 61.0),
    (166, 33.0, 14.7, 36.0, True, 33.0, 16, 6, 27.0, 88.0),
    (188, 58.0, 14.7, 37.0, True, 35.0, 16, 6, 33.0, 121.0),
]


def test_a_constant_rewrite_is_tried_when_the_overhead_without_it_is_implausible() -> None:
    # Not tried, the 16 characters' 50 tokens went to a per-turn overhead of 24 and the tool
    # results counted at 1.8 (the most a tokenizer counts): no template adds that much a turn,
    # so the level tells the rewrite from the overhead, as the findings then require.
    ledger = _ledger_of(SIXTEEN_EVERY_STEP)
    fit = ledger.fit
    assert fit is not None and fit.extras["escaping"] >= 2.5
    assert fit.extras["escaping_evidence"] >= 10.8
    assert told_from_overhead(ledger, fit, "escaping")
    finding = {f.kind: f for f in ledger_findings(ledger)}["history_rewritten"]
    assert finding.evidence["rewrite"] == "escaping" and (finding.confidence or 0) >= 0.9
    # The same characters on a host that adds a plausible overhead (8 tokens a turn) and
    # nothing per character: not tried, no rewrite.
    faithful = [(g - 50 + 8, *rest) for g, *rest in SIXTEEN_EVERY_STEP]
    plain = _ledger_of(faithful)
    assert plain.fit is not None and "escaping" not in plain.fit.extras
    assert "history_rewritten" not in {f.kind for f in ledger_findings(plain)}


def test_a_rewrite_the_verdicts_fit_does_not_need_has_no_level() -> None:
    # A held-out `research` run cut at a length, its steps with emptied arguments left out:
    # the last step's two calls carry 12 quotes, the others 6, and that step's two results
    # straddle the cut. Re-encoding fitted alone took 4 tokens a quote (its bound), but the
    # verdict's fit (the cut) holds it at none: no overhead of 27 a turn to tell it by, and
    # it must hold with its one varying step left out, which it does not.
    rows: list[tuple[Any, ...]] = [
        (130, 16.0, 11.1, 29.0, True, (236.0,), 66, 6, 0.0, 0.0),
        (145, 43.0, 12.2, 34.0, True, (91.0,), 22, 6, 22.0, 38.0),
        (149, 35.0, 11.1, 29.0, True, (236.0,), 72, 6, 42.0, 123.0),
        (226, 27.0, 22.3, 63.0, True, (62.0, 76.0), 38, 12, 35.0, 158.0),
    ]
    ledger = _ledger_of(rows)
    fit = ledger.fit
    assert fit is not None and fit.tool_results is not None
    assert fit.tool_results.best.name == "truncated"
    assert fit.extras.get("reencoding", 0.0) >= 3.0
    assert fit.final.values.get("reencoding", 0.0) < 0.6
    assert rewrite_confidence(ledger, "reencoding") == 0.0
    kinds = {f.kind for f in ledger_findings(ledger)}
    assert "history_rewritten" not in kinds and "tool_results_truncated" in kinds


def test_a_hidden_system_prompt() -> None:
    finding = _kinds(host_run("keep", preamble=450))["hidden_system_prompt"]
    assert (finding.step, finding.layer, finding.severity) == (0, "provider", "warning")
    assert finding.evidence["unexplained_tokens"] >= 400
    assert finding.confidence is not None and finding.confidence > 0.99


@pytest.mark.parametrize("preamble", [0, 40, 80])
def test_a_templates_own_preamble_is_no_hidden_prompt(preamble: int) -> None:
    assert "hidden_system_prompt" not in _kinds(host_run("keep", preamble=preamble))


# -- the solver --------------------------------------------------------------------------------


def test_bounded_least_squares_matches_the_closed_form() -> None:
    xs = [1.0, 2.0, 3.0, 4.0, 5.0]
    ys = [2 * x + 1 for x in xs]
    normal = normal_equations({"slope": xs, "one": [1.0] * 5}, ys, [1.0] * 5)
    loose = [Coefficient("slope", 0.0, 1e6, -10, 10), Coefficient("one", 0.0, 1e6, -10, 10)]
    values = solve(normal, loose).values
    assert values["slope"] == pytest.approx(2.0) and values["one"] == pytest.approx(1.0)
    # Held at a bound, the other coefficient takes up what it can.
    held = solve(normal, bounded(loose, {"slope": (0.0, 1.5)}))
    assert held.values["slope"] == pytest.approx(1.5)
    assert held.values["one"] == pytest.approx(
        sum(y - 1.5 * x for x, y in zip(xs, ys, strict=True)) / 5
    )
    assert held.misfit > 0 and held.objective >= solve(normal, loose).objective
    # A prior decides what the data cannot: a column of zeros leaves its coefficient there.
    idle = normal_equations({"idle": [0.0] * 5}, ys, [1.0] * 5)
    assert solve(idle, [Coefficient("idle", 4.0, 2.0, -9, 9)]).values["idle"] == 4.0


def test_chi2_survival() -> None:
    assert chi2_survival(0.0, 1) == 1.0
    assert chi2_survival(3.841, 1) == pytest.approx(0.05, abs=1e-3)
    assert chi2_survival(5.991, 2) == pytest.approx(0.05, abs=1e-3)


@pytest.mark.parametrize(
    ("text", "tokens"),
    [("", 0), ("one two, three", 4), ("数据" * 40, 60), ("<a>", 3)],
)
def test_sizes_count_words_and_punctuation_never_under_a_quarter_of_the_bytes(
    text: str, tokens: int
) -> None:
    assert size(text) == tokens
    assert math.isfinite(size(text))


def test_measures_are_remembered_only_while_texts_recur() -> None:
    """Looked-up measures equal measured ones; after each probe of `PROBE_RUNS` runs, texts
    that recur keep the remembering, distinct ones pause it for `PAUSE_RUNS` runs (they then
    get `_measure` itself)."""

    class Quick(_Remembered):
        PROBE_RUNS, PAUSE_RUNS = 2, 3

    remembered = Quick()
    texts = ["one two, three", "数据" * 40, "<a> & 'b'", ""]
    for _ in range(2):  # a probe: every text found the second time
        measure = remembered.for_run()
        assert measure == remembered.measure
        assert [measure(t) for t in texts] == [_measure(t) for t in texts]
    for run in range(2):  # kept for the next probe, of distinct texts
        assert remembered.for_run() == remembered.measure and not remembered.paused
        for n in range(10):
            text = f"a distinct tool output {run} {n} " * 20
            assert remembered.measure(text) == _measure(text)
    assert remembered.known
    assert [remembered.for_run() for _ in range(3)] == [_measure] * 3
    assert not remembered.known and not remembered.paused
    assert remembered.for_run() == remembered.measure  # probing again


# -- the ledger in the store and on the command line -------------------------------------------


@pytest.fixture(scope="module")
def forgetful_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One run of chain_short against a host that drops the reasoning sent back."""
    db = tmp_path_factory.mktemp("ledger") / "t.duckdb"
    done = run_cli(
        "record",
        "--task",
        "chain_short",
        "--fault",
        "reasoning_dropped_from_history",
        "--no-stream",
        "--db",
        str(db),
        "--format",
        "json",
    )
    assert done.returncode == 0, done.stderr
    [row] = json.loads(done.stdout)
    return db, row["id"]


@pytest.mark.slow
def test_recording_stores_the_ledger(forgetful_db: tuple[Path, str]) -> None:
    db, run_id = forgetful_db
    [row] = query_rows(db, "SELECT * FROM ledgers WHERE run_id = ?", [run_id])
    assert row["chain_steps"] == 5 and row["reasoning_behaviour"] == "none"
    assert row["reasoning_kept_tokens"] == 0 and row["reasoning_sent_tokens"] > 0
    assert row["tool_results_behaviour"] == "kept"
    assert row["tool_results_kept_tokens"] == row["tool_results_sent_tokens"] > 0
    assert row["first_prompt_tokens"] > 0 and row["check_version"] == CHECK_VERSION
    # Analyzing again replaces the row rather than adding one.
    assert run_cli("analyze", run_id, "--db", str(db)).returncode == 0
    assert len(query_rows(db, "SELECT * FROM ledgers WHERE run_id = ?", [run_id])) == 1


@pytest.mark.slow
def test_show_ledger_in_every_format(forgetful_db: tuple[Path, str]) -> None:
    db, run_id = forgetful_db
    done = run_cli("show", run_id, "--ledger", "--db", str(db), "--format", "json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["run"] == run_id and document["chain_steps"] == 5
    assert document["reasoning"]["behaviour"] == "none"
    assert document["reasoning"]["retention"] == 0.0
    steps = document["steps"]
    assert [s["kind"] for s in steps] == ["first"] + ["chain"] * 5
    assert all(abs(s["residual"]) < 10 for s in steps[1:])
    table = run_cli("show", run_id, "--ledger", "--db", str(db))
    assert table.returncode == 0, table.stderr
    assert "reasoning: none" in table.stdout and "retained 0.0%" in table.stdout
    assert table.stdout.splitlines()[5].split()[:3] == ["step", "kind", "prompt"]
    csv_out = run_cli("show", run_id, "--ledger", "--db", str(db), "--format", "csv")
    assert csv_out.stdout.splitlines()[0].startswith("step,kind,prompt,growth,expected")
    assert len(csv_out.stdout.splitlines()) == 1 + 6


# -- a real template: llama.cpp's Kimi K2 (0711) encodes string arguments twice ---------------

KIMI_K2 = EXTERNAL / "dialects" / "templates" / "llamacpp-moonshotai-Kimi-K2.jinja"
"""Byte-exact copy of llama.cpp's models/templates/moonshotai-Kimi-K2.jinja (see the
shared README.txt): `arguments|tojson` on string arguments double-encodes them, as
rendered/llamacpp-moonshotai-Kimi-K2__A_reasoning_kept_args_string.txt shows."""

WRITES = [1, 6, 2, 9, 3, 12, 1, 7, 4, 10, 2, 8, 5, 11, 3, 6]
"""Keys of each turn's `write` call: calls of varied size, as an agent's are."""


def _kimi_chain(arguments: Literal["string", "object"]) -> Run:
    """A chain rendered by the real template, prompt_tokens counted as the simulator counts
    them; the model generated each call's JSON once (its completion tokens)."""
    template = load_template(KIMI_K2)
    counter = SimTokenCounter()
    tools = [{"type": "function", "function": {"name": "write", "parameters": {}}}]
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a coding agent."},
        {"role": "user", "content": "Write the notes, one file per topic."},
    ]
    steps = []
    for i, keys in enumerate(WRITES):
        prompt = counter.count(render(template, messages, tools, add_generation_prompt=True))
        payload = {f"field_{k}": f"value {k}" for k in range(keys)}
        text = json.dumps(payload)
        generated = (
            f"<|tool_calls_section_begin|><|tool_call_begin|>functions.write:{i}"
            f"<|tool_call_argument_begin|>{text}<|tool_call_end|><|tool_calls_section_end|>"
            "<|im_end|>"
        )
        call = {
            "id": f"functions.write:{i}",
            "type": "function",
            "function": {"name": "write", "arguments": text if arguments == "string" else payload},
        }
        steps.append(
            Step(
                index=i,
                finish_reason="tool_calls",
                prompt_tokens=prompt,
                completion_tokens=counter.count(generated),
                request_messages=tuple(messages),
                request_params={"tools": tools},
                calls=(_call(i, text),),
            )
        )
        messages = [
            *messages,
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": f"wrote {keys} fields"},
        ]
    return Run(id=f"kimi-k2-{arguments}", model="moonshotai/Kimi-K2-Instruct", steps=tuple(steps))


def test_a_real_template_encoding_string_arguments_twice() -> None:
    if not KIMI_K2.exists():
        reference_missing(KIMI_K2)
    finding = _kinds(_kimi_chain("string"))["history_rewritten"]
    assert finding.evidence["rewrite"] == "arguments re-encoded"
    assert finding.evidence["extra_tokens_per_character"] == pytest.approx(1.0, abs=0.3)
    # The same chain with object arguments: the template dumps them once, as generated.
    assert _kinds(_kimi_chain("object")) == {}
