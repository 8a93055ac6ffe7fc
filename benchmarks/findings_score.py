"""Scoring the checks against the labelled simulator corpus: per finding kind, true and false
positives and misses on (run, step, kind), and whether each hit blames the expected layer.

What each fault must produce comes from the fault tests (`FAULT_FINDINGS` and
`WITHOUT_FINDING` of tests/test_checks_faults.py, where every entry is proven over HTTP), so
a fault added there is scored here without an edit; a fault in the simulator's catalogue that
neither names is listed as unmapped and never scored.

The rules (benchmarks/README.md gives the reasons):

- Where. A fault injected into step k expects its kind on step k or k + 1 (`TOLERANCE`):
  some effects show on the next request. A finding without a step matches on the run. Kinds
  a check reports once per run (`RUN_SCOPED`) match anywhere in the run.
- Loops. `repeated_call` needs `LOOP_MIN` identical steps: the fault must fire on
  `LOOP_MIN - 1` consecutive steps; fired once, it makes a single repeat (`repeated_call_once`).
  The simulated model also resends a call that failed: a streak (a loop, or a single
  repeat) after faulted steps only is real, and true. A step that repeats the previous
  turn's calls (`REPEATS_PREVIOUS`) repeats what was wrong with them: the previous step's
  kinds are true there.
- Combinations. A key `a+b` of FAULT_FINDINGS expects its kind on a step carrying a and b.
- Recall counts the mapped kind, or a `FORM_ALTERNATIVES` kind where the response's form
  (streamed or not) decides which kind sees the fault.
- Precision. A finding is true when an expectation in its window accepts it: its own kind, an
  alternative, a kind that covers the same failure class in the catalogue (`covers`: the
  same real failure seen from another side, e.g. object arguments in the stream and in the
  assembled call), or a kind `ALSO_TRUE` of that fault (also of a fault that expects no
  finding). A consequence (`CONSEQUENCES`) is true beside its recognised cause on the same
  step, and must blame the cause's layer.
- Interacting faults. Steps carrying several faults (one can hide or reshape another) are
  scored apart, in both directions: `support` and recall count single-fault steps, and so
  does precision; the `mixed` columns count the rest.
- False positives are `clean` (no fault on the step or the one before; for a run-scoped kind,
  in the run) or `other` (faults there, none expecting that kind). A finding explained only
  by an unmapped fault is left out and listed.
- Unmeasurable. A finding the ledger reads off the growth of the prompt is owed only where the
  run can show it (`unmeasurable`): `LEDGER_STEPS` tool-chain steps, `ESCAPING_STEPS` for
  escaping. Otherwise the expectation is left out of recall both ways (found or not) and
  listed; a finding it explains stays true.
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from findings_sim import Corpus, LabelledRun
from test_checks_faults import FAULT_FINDINGS, WITHOUT_FINDING

from analyzer.checks.catalogue import KINDS
from analyzer.checks.ledger_entries import build_entries
from analyzer.checks.loops import LOOP_MIN
from analyzer.checks.records import Finding
from traces.sim.faults import FAULTS

TOLERANCE = 1
"""Steps after the faulted one where its finding may still legitimately appear."""

RUN_SCOPED = frozenset(
    {
        "reasoning_dropped_in_chain",
        "tool_results_dropped",
        "tool_results_truncated",
        "history_lost",
        "history_rewritten",
        "hidden_system_prompt",
        "reasoning_tokens_missing",
    }
)
"""Kinds whose check reports one finding per run, pooled over its steps: they match on the
run, not the step."""

LEDGER_STEPS = 2
"""Tool-chain steps a run needs for the ledger to read anything off it: a fit of the growth of
the prompt needs two (`ledger_fit.fit_chain`), and so do cached tokens falling
(`ledger.cache_falls`). A run that ended sooner (a failure, a refusal) shows no host
behaviour, whatever the host did."""

ESCAPING_STEPS = 3
"""Tool-chain steps below which escaping cannot show: the tokens it adds per escapable
character, the tokens the host counts per estimated token of tool output and the template's
overhead per step are three unknowns, and two steps are two equations (a result of 236
tokens escaped reads as a tokenizer counting tool output twice)."""

GROWTH_FAULTS = frozenset(
    {
        "reasoning_dropped_from_history",
        "reasoning_kept_last_only",
        "tool_results_dropped",
        "tool_results_truncated",
        "history_html_escaped",
    }
)
"""Faults whose finding the ledger reads off the growth of the prompt (or, for the reasoning,
off cached tokens, which need as many steps)."""

LOOP_KINDS = {"repeated_call": LOOP_MIN, "repeated_call_once": 2}
"""Kinds that report a streak of identical steps -> its length (analyzer.checks.loops)."""

CONSEQUENCES = frozenset({"tool_error"})
"""Kinds that report what another failure caused: a call the host garbled (or the model got
wrong) fails its tool. Beside its recognised cause on the same step such a finding is right,
and must blame the cause's layer; anywhere else it is a false positive."""

FORM_ALTERNATIVES: dict[str, frozenset[str]] = {
    # Streamed, the broken usage is one chunk no parser takes inside an otherwise good
    # stream: the stream check names it. Unstreamed, the whole body is invalid (the mapping).
    "non_json_numbers": frozenset({"stream_unparsable_chunk"}),
    "deeply_nested_json": frozenset({"stream_unparsable_chunk"}),
    # Inside a longer streak (the model also resent a call that failed) the repeat is part
    # of a loop, and the loop is reported instead: never both for one streak.
    "repeated_call_once": frozenset({"repeated_call"}),
    # On a gpt-oss (harmony) host the raw tokens are harmony channels, which that check names.
    "leaked_tokens_content": frozenset({"harmony_unparsed"}),
    "leaked_tokens_reasoning": frozenset({"harmony_unparsed"}),
    "reasoning_in_content": frozenset({"harmony_unparsed"}),
}
"""Fault -> kinds that recognise it instead, depending on the response's form or context."""

ALSO_TRUE: dict[str, frozenset[str]] = {
    # Fired on one step only, the loop fault repeats the calls once: a single repeat.
    "repeated_call": frozenset({"repeated_call_once"}),
    # Repeating id, type and name in every delta repeats the id too.
    "stream_fields_repeated": frozenset({"stream_tool_call_id_repeated"}),
    # The id changes once, after the opening delta, then the new id repeats in every delta;
    # the new one is in OpenAI's form, the wrong one for a family that numbers its ids.
    "stream_id_changed": frozenset({"stream_tool_call_id_repeated", "tool_call_id_format"}),
    # A character split across chunks inside a harmony marker breaks the marker: the
    # channels stay in content.
    "stream_split_utf8": frozenset({"harmony_unparsed"}),
    # The reused id is the history's, in the form the client sent it back in (a replay
    # policy may renumber ids `functions.NAME:IDX`), not always the host's own form.
    "duplicated_ids": frozenset({"tool_call_id_format"}),
    # A connection dropped mid-stream also ends the stream without [DONE].
    "connection_reset": frozenset({"stream_without_done"}),
    # Two calls of one name under one index: the second's opening delta repeats the name.
    "stream_index_collision": frozenset({"stream_tool_call_name_repeated"}),
    # The echo is appended to the answer: JSON asked for no longer parses.
    "auth_echoed": frozenset({"response_format_ignored"}),
    # The lost piece may hold the opening of inline reasoning markup (harmony's channel
    # header): the rest of the reasoning then stays in content, its markup with it.
    "stream_broken_chunk": frozenset(
        {"reasoning_in_content", "leaked_special_tokens", "harmony_unparsed"}
    ),
    # Reasoning that came in content has no field to go back in: a host that requires it
    # back (DeepSeek) refuses the next request.
    "reasoning_in_content": frozenset({"http_reasoning_required"}),
    # The misnamed argument leaves a required one missing: the arguments fail the schema.
    "misnamed_argument": frozenset({"schema_violation"}),
    # An invented id outside the pattern the tool declares for its ids fails the schema too.
    "invented_id": frozenset({"schema_violation"}),
    # On a gpt-oss (harmony) host the spilled reasoning carries its channels with it.
    "reasoning_close_tag_only": frozenset({"harmony_unparsed"}),
    # A usage chunk no parser takes reports no reasoning tokens: they are estimated, as this
    # info finding says.
    "non_json_numbers": frozenset({"reasoning_tokens_missing"}),
    "deeply_nested_json": frozenset({"reasoning_tokens_missing"}),
}
"""Fault -> other kinds that state something true of its effect (precision only)."""


REPEATS_PREVIOUS = frozenset({"repeated_call", "repeated_call_once"})
"""Faults that make the model send the previous turn's calls again: whatever was wrong with
those calls (a schema violation, a failing tool) is wrong again, and true again."""


def _class_mates(kind: str) -> frozenset[str]:
    """Kinds that cover a failure class `kind` covers (itself included)."""
    info = KINDS.get(kind)
    if info is None:
        return frozenset({kind})
    return frozenset({kind}) | {
        other for other, o in KINDS.items() if set(o.covers) & set(info.covers)
    }


@dataclass(frozen=True)
class Expectation:
    """One finding a labelled corpus says the checks owe."""

    step: int
    kind: str
    layer: str
    source: str
    """The fault (or `a+b` combination) that makes it."""
    single: bool
    """Whether its step carries no other fault."""
    recognised_by: frozenset[str]
    """Kinds that count for recall: `kind` and its form alternatives."""
    true_for: frozenset[str]
    """Kinds that are true beside it: those, class mates and `ALSO_TRUE`."""

    def window(self, step: int | None) -> bool:
        """Whether a finding on `step` is where this expectation may show."""
        if step is None or self.kind in RUN_SCOPED:
            return True
        return self.step <= step <= self.step + TOLERANCE


def mapped_faults() -> dict[str, tuple[str, str]]:
    """Fault or `a+b` combination -> (finding kind, layer) it must produce."""
    return {fault: (kind, layer) for fault, (kind, layer, _) in FAULT_FINDINGS.items()}


def known_faults() -> set[str]:
    """Faults some mapping names (with a kind, or with a reason for none)."""
    return {part for key in FAULT_FINDINGS for part in key.split("+")} | set(WITHOUT_FINDING)


def unmapped_faults() -> list[str]:
    """Faults of the simulator's catalogue that no mapping names, in catalogue order."""
    named = known_faults()
    return [name for name in FAULTS if name not in named]


def _expectation(step: int, key: str, kind: str, layer: str, single: bool) -> Expectation:
    recognised = frozenset({kind}) | FORM_ALTERNATIVES.get(key, frozenset())
    true_for = frozenset().union(*(_class_mates(k) for k in recognised))
    return Expectation(
        step, kind, layer, key, single, recognised, true_for | ALSO_TRUE.get(key, frozenset())
    )


def _loop_expectations(run: LabelledRun, fault: str, kind: str, layer: str) -> list[Expectation]:
    """Where `fault` fired on LOOP_MIN - 1 consecutive steps, the loop's last step."""
    found = []
    streak = 0
    previous: int | None = None
    for index in sorted(run.step_faults):
        if fault not in run.step_faults[index]:
            streak = 0
        elif previous is not None and index == previous + 1 and streak:
            streak += 1
        else:
            streak = 1
        previous = index
        if streak == LOOP_MIN - 1:
            steps = range(index - streak + 1, index + 1)
            single = all(run.step_faults[i] == {fault} for i in steps)
            found.append(_expectation(index, fault, kind, layer, single))
    return found


def unmeasurable(run: LabelledRun, exp: Expectation) -> str | None:
    """Why the run cannot show the ledger finding `exp` owes, whatever the host did (None:
    it can)."""
    if exp.source not in GROWTH_FAULTS:
        return None
    steps = sum(1 for e in build_entries(run.run)[0] if e.kind == "chain")
    if steps < LEDGER_STEPS:
        return f"{steps} tool-chain steps in the run"
    if exp.source == "history_html_escaped" and steps < ESCAPING_STEPS:
        return f"{steps} tool-chain steps in the run, for three unknowns"
    return None


def expectations(run: LabelledRun) -> list[Expectation]:
    """Every finding the faults of `run` call for."""
    found: list[Expectation] = []
    for key, (kind, layer) in mapped_faults().items():
        parts = frozenset(key.split("+"))
        if LOOP_KINDS.get(kind, 2) > 2 and len(parts) == 1:
            found.extend(_loop_expectations(run, key, kind, layer))
            continue
        for index, faults in sorted(run.step_faults.items()):
            if parts <= faults:
                found.append(_expectation(index, key, kind, layer, faults == parts))
    return found


@dataclass
class KindScore:
    """Tallies of one finding kind."""

    support: int = 0
    hits: int = 0
    mixed_support: int = 0
    mixed_hits: int = 0
    true_positives: int = 0
    false_clean: int = 0
    false_other: int = 0
    mixed_fired: int = 0
    mixed_false: int = 0
    layer_checked: int = 0
    layer_agreed: int = 0
    unexplained: int = 0
    """Findings near an unmapped fault only: not counted either way."""
    by_rate: dict[float, list[int]] = field(default_factory=dict)
    """Fault rate -> [single-fault support, hits] at that rate."""

    @property
    def false_positives(self) -> int:
        """False positives on steps with at most one fault."""
        return self.false_clean + self.false_other

    @property
    def recall(self) -> float | None:
        """Hits over single-fault support (None: no support)."""
        return self.hits / self.support if self.support else None

    @property
    def precision(self) -> float | None:
        """True over all findings on steps with at most one fault (None: none fired)."""
        fired = self.true_positives + self.false_positives
        return self.true_positives / fired if fired else None

    @property
    def layer_agreement(self) -> float | None:
        """Hits whose finding blames the expected layer, over hits."""
        return self.layer_agreed / self.layer_checked if self.layer_checked else None


@dataclass
class Example:
    """One miss or false positive, enough to find it again."""

    kind: str
    run: str
    step: int | None
    faults: list[str]
    note: str

    def as_dict(self) -> dict[str, Any]:
        """As JSON."""
        return {
            "kind": self.kind,
            "run": self.run,
            "step": self.step,
            "faults": self.faults,
            "note": self.note,
        }


@dataclass
class Scores:
    """Everything the corpus measured."""

    kinds: dict[str, KindScore] = field(default_factory=lambda: defaultdict(KindScore))
    misses: list[Example] = field(default_factory=list)
    unmeasurable: list[Example] = field(default_factory=list)
    """Expectations the run's counts cannot show (`unmeasurable`), found or not: left out of
    recall."""
    false_positives: list[Example] = field(default_factory=list)
    layer_mismatches: list[Example] = field(default_factory=list)
    fired: Counter[str] = field(default_factory=Counter)
    """Fault -> steps it was injected into."""
    unmapped: dict[str, int] = field(default_factory=dict)
    unaligned: list[str] = field(default_factory=list)
    crashed: list[str] = field(default_factory=list)
    never_injected: dict[str, int] = field(default_factory=dict)
    """Faults dealt to runs that never fired -> how many runs had them (a fault that needs
    a client setting, a task or a turn the corpus does not give it)."""
    runs: int = 0
    steps: int = 0
    faulted_steps: int = 0
    multi_fault_steps: int = 0
    confusion: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(fault, kind) of every `other` false positive beside a single fault."""


def _dedup(findings: Iterable[Finding]) -> list[Finding]:
    """One finding per (step, kind, layer): a check may report several calls of one step."""
    seen: dict[tuple[int | None, str, str], Finding] = {}
    for finding in findings:
        seen.setdefault((finding.step, finding.kind, finding.layer), finding)
    return list(seen.values())


def _faults_near(run: LabelledRun, finding: Finding) -> set[str]:
    """Faults that could have caused `finding`: on its step or the ones before it within the
    tolerance; anywhere in the run for a run-level or run-scoped finding."""
    if finding.step is None or finding.kind in RUN_SCOPED:
        return {name for faults in run.step_faults.values() for name in faults}
    near: set[str] = set()
    for back in range(TOLERANCE + 1):
        near |= run.step_faults.get(finding.step - back, frozenset())
    return near


def _mixed(run: LabelledRun, step: int | None) -> bool:
    return step is not None and len(run.step_faults.get(step, ())) > 1


def _label(run: LabelledRun) -> str:
    return f"{run.spec.key} ({run.run.id})"


class _RunScorer:
    """Scores one labelled run into a shared `Scores`."""

    def __init__(self, run: LabelledRun, findings: Sequence[Finding], scores: Scores) -> None:
        self.run = run
        self.findings = _dedup(findings)
        self.expected = expectations(run)
        self.scores = scores

    def example(self, kind: str, step: int | None, faults: Iterable[str], note: str) -> Example:
        return Example(kind, _label(self.run), step, sorted(faults), note)

    def rate(self, source: str) -> float:
        """The rate its fault was injected at (the lowest, for a combination)."""
        return min(self.run.spec.faults.get(part, 0.0) for part in source.split("+"))

    def recall(self) -> None:
        """Each expectation met or not (once per run for run-scoped kinds)."""
        seen_scoped: set[tuple[str, bool]] = set()
        for exp in self.expected:
            if exp.kind in RUN_SCOPED:
                if (exp.kind, exp.single) in seen_scoped:
                    continue
                seen_scoped.add((exp.kind, exp.single))
            tally = self.scores.kinds[exp.kind]
            matches = [
                f for f in self.findings if f.kind in exp.recognised_by and exp.window(f.step)
            ]
            reason = unmeasurable(self.run, exp)
            if reason is not None:
                found = "found" if matches else "not found"
                self.scores.unmeasurable.append(
                    self.example(exp.kind, exp.step, [exp.source], f"{reason} ({found})")
                )
                continue
            if not exp.single:
                tally.mixed_support += 1
                tally.mixed_hits += bool(matches)
                continue
            tally.support += 1
            tally.hits += bool(matches)
            by_rate = tally.by_rate.setdefault(self.rate(exp.source), [0, 0])
            by_rate[0] += 1
            by_rate[1] += bool(matches)
            if matches:
                tally.layer_checked += 1
                if any(f.layer == exp.layer for f in matches):
                    tally.layer_agreed += 1
                else:
                    layers = sorted({f.layer for f in matches})
                    self.scores.layer_mismatches.append(
                        self.example(
                            exp.kind,
                            exp.step,
                            self.run.step_faults.get(exp.step, ()),
                            f"expected layer {exp.layer}, found {layers}",
                        )
                    )
            else:
                here = (exp.step, exp.step + TOLERANCE)
                instead = sorted({f.kind for f in self.findings if f.step in here})
                self.scores.misses.append(
                    self.example(
                        exp.kind,
                        exp.step,
                        [exp.source],
                        f"found instead: {', '.join(instead) or 'nothing'}",
                    )
                )

    def _consequence(self, finding: Finding, tally: KindScore) -> bool:
        """Score a consequence beside a recognised cause; False when there is none."""
        causes = {
            exp.layer
            for exp in self.expected
            if exp.step == finding.step
            and any(
                f.kind in exp.recognised_by and f.kind not in CONSEQUENCES and exp.window(f.step)
                for f in self.findings
            )
        }
        if not causes:
            return False
        if _mixed(self.run, finding.step):
            return True
        tally.layer_checked += 1
        if finding.layer in causes:
            tally.layer_agreed += 1
        else:
            self.scores.layer_mismatches.append(
                self.example(
                    finding.kind,
                    finding.step,
                    self.run.step_faults.get(finding.step or 0, ()),
                    f"beside a cause of layer {sorted(causes)}, blames {finding.layer}",
                )
            )
        return True

    def _retry_streak(self, finding: Finding) -> bool:
        """Whether every repeat of the streak has a cause: a fault that repeats the previous
        turn's calls, or a retry. The simulated model sends a call that failed again (up to
        three times); when a fault broke it both times, the two calls are the same."""
        if finding.step is None:
            return False
        faults = self.run.step_faults
        repeats = range(finding.step - LOOP_KINDS[finding.kind] + 2, finding.step + 1)
        return all(
            faults.get(i, frozenset()) & REPEATS_PREVIOUS or (faults.get(i - 1) and faults.get(i))
            for i in repeats
        )

    def _also_true(self, finding: Finding) -> bool:
        """Whether a fault near the finding, one that expects no finding of its own included
        (`WITHOUT_FINDING`), lists its kind in `ALSO_TRUE`."""
        near = _faults_near(self.run, finding)
        return any(finding.kind in ALSO_TRUE.get(fault, frozenset()) for fault in near)

    def _repeated(self, finding: Finding) -> bool:
        """Whether the step repeats the previous turn's calls and the previous step had the
        same finding."""
        step = finding.step
        if step is None or not self.run.step_faults.get(step, frozenset()) & REPEATS_PREVIOUS:
            return False
        return any(f.kind == finding.kind and f.step == step - 1 for f in self.findings)

    def precision(self, known: set[str]) -> None:
        """Each finding explained by an expectation or not."""
        for finding in self.findings:
            tally = self.scores.kinds[finding.kind]
            mixed = _mixed(self.run, finding.step)
            true = any(
                finding.kind in exp.true_for and exp.window(finding.step) for exp in self.expected
            )
            if not true:
                true = self._repeated(finding) or self._also_true(finding)
            if not true and finding.kind in CONSEQUENCES:
                true = self._consequence(finding, tally)
            if not true and finding.kind in LOOP_KINDS:
                true = self._retry_streak(finding)
            if mixed:
                tally.mixed_fired += 1
                tally.mixed_false += not true
                continue
            if true:
                tally.true_positives += 1
                continue
            near = _faults_near(self.run, finding)
            if near and not near & known:
                tally.unexplained += 1
                continue
            if near:
                tally.false_other += 1
                if len(near) == 1:
                    self.scores.confusion[(next(iter(near)), finding.kind)] += 1
                note = "beside faults that expect other kinds"
            else:
                tally.false_clean += 1
                note = "no fault on this step or the one before"
            self.scores.false_positives.append(self.example(finding.kind, finding.step, near, note))


def score_corpus(corpus: Corpus, found: dict[str, list[Finding]]) -> Scores:
    """Score every labelled run of `corpus` against its findings (run id -> findings)."""
    scores = Scores(unaligned=list(corpus.unaligned), crashed=list(corpus.crashed))
    known = known_faults()
    for run in corpus.runs:
        scores.runs += 1
        scores.steps += len(run.run.steps)
        for faults in run.step_faults.values():
            scores.fired.update(faults)
            scores.faulted_steps += bool(faults)
            scores.multi_fault_steps += len(faults) > 1
        scorer = _RunScorer(run, found.get(run.run.id, []), scores)
        scorer.recall()
        scorer.precision(known)
    scores.unmapped = {name: scores.fired[name] for name in unmapped_faults()}
    dealt = Counter(name for run in corpus.runs for name in run.spec.faults)
    scores.never_injected = {name: n for name, n in sorted(dealt.items()) if not scores.fired[name]}
    for kind in KINDS:
        scores.kinds.setdefault(kind, KindScore())
    return scores
