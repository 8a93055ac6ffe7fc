"""Parameter probe verdicts: was each sampling parameter honoured, refused, or ignored?

A host may support a parameter (honoured), refuse it with an error naming it (refused: a fair
answer, the client knows), or accept it and do nothing (ignored: the finding the checks
report, with its evidence). Where the answer cannot tell (no usage, no text, cut short) the
verdict stays unknown and says why. The findings come from the checks themselves, run over
the stored probe runs, so a probe and a recorded run that set the same parameter are judged
alike.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import duckdb

from analyzer.checks.finish import END_TOKENS
from analyzer.checks.loader import load_runs
from analyzer.checks.records import Finding, Run, Step
from analyzer.checks.registry import run_checks
from analyzer.probes.load import ProbeResult
from traces.normalize import estimate_tokens
from traces.probes.catalogue import PROBES_BY_NAME, Probe

Verdict = Literal["honoured", "refused", "ignored", "unknown"]

IGNORED_KINDS: dict[str, str] = {
    "max_tokens": "max_tokens_ignored",
    "stop": "stop_ignored",
    "n": "n_ignored",
    "logprobs": "logprobs_ignored",
    "response_format": "response_format_ignored",
    "seed": "nondeterministic_output",
}
"""The finding that says a parameter was silently ignored, by parameter."""

_NAMES: dict[str, tuple[str, ...]] = {"seed": ("seed", "temperature")}
"""Words an error names a parameter by, where they are more than the parameter itself."""

_REFUSALS = frozenset({400, 422})
"""Statuses of a request refused for what it asked (not a host failure)."""


@dataclass(frozen=True)
class ParameterVerdict:
    """One parameter probe's verdict, with what shows it."""

    probe: str
    parameter: str
    verdict: Verdict
    detail: str
    confidence: float | None = None
    """How sure an inferred verdict is (None: seen directly)."""
    finding: str | None = None
    """The finding kind behind an `ignored` verdict."""
    evidence: dict[str, Any] = field(default_factory=dict)

    def short(self) -> str:
        """`seed ignored (0.95)`: the verdict in a word, with its confidence when inferred."""
        sure = f" ({self.confidence:.2f})" if self.confidence is not None else ""
        return f"{self.probe} {self.verdict}{sure}"

    def as_row(self) -> dict[str, Any]:
        """Plain fields for JSON output."""
        return {
            "probe": self.probe,
            "parameter": self.parameter,
            "verdict": self.verdict,
            "detail": self.detail,
            "confidence": self.confidence,
            "finding": self.finding,
            "evidence": self.evidence,
        }


def parameter_verdicts(
    conn: duckdb.DuckDBPyConnection, results: list[ProbeResult]
) -> dict[str, dict[str, ParameterVerdict]]:
    """provider -> probe -> verdict, for the parameter probes among `results`."""
    probed = [
        (r, probe)
        for r in results
        if r.variant == "chat"
        and (probe := PROBES_BY_NAME.get(r.probe)) is not None
        and probe.parameter is not None
    ]
    runs = {run.id: run for run in load_runs(conn, [r.run_id for r, _ in probed])}
    verdicts: dict[str, dict[str, ParameterVerdict]] = {}
    for result, probe in probed:
        run = runs.get(result.run_id)
        if run is not None:
            verdicts.setdefault(result.provider, {})[probe.name] = judge(probe, result, run)
    return verdicts


def judge(probe: Probe, result: ProbeResult, run: Run) -> ParameterVerdict:
    """The verdict of one parameter probe run."""
    parameter = probe.parameter or ""
    if not result.ok:
        return _failed(probe, parameter, result)
    kind = IGNORED_KINDS[parameter]
    found = [f for f in run_checks(run) if f.kind == kind]
    if found:
        return _ignored(probe, parameter, found[0])
    if not run.steps:
        return ParameterVerdict(probe.name, parameter, "unknown", "no answer recorded")
    honoured = _HONOURED[parameter](probe, run.steps)
    verdict: Verdict = "honoured" if honoured.sure is not False else "unknown"
    return ParameterVerdict(
        probe.name, parameter, verdict, honoured.detail, confidence=honoured.confidence
    )


def _failed(probe: Probe, parameter: str, result: ProbeResult) -> ParameterVerdict:
    error = result.error or "failed"
    if result.http_status not in _REFUSALS:
        # A 5xx or a timeout says nothing about the parameter.
        return ParameterVerdict(probe.name, parameter, "unknown", error)
    names = _NAMES.get(parameter, (parameter,))
    named = any(re.search(rf"\b{re.escape(n)}\b", error, re.IGNORECASE) for n in names)
    detail = error if named else f"{error} (the error does not name {parameter})"
    return ParameterVerdict(probe.name, parameter, "refused", detail)


def _ignored(probe: Probe, parameter: str, finding: Finding) -> ParameterVerdict:
    evidence = finding.evidence
    details: dict[str, Callable[[], str]] = {
        "max_tokens_ignored": lambda: (
            f"{evidence.get('completion_tokens') or evidence.get('estimated_tokens')} tokens "
            f"for a cap of {evidence.get('max_tokens')}"
        ),
        "stop_ignored": lambda: f"the answer runs through {evidence.get('found')!r}",
        "n_ignored": lambda: (
            f"{evidence.get('received')} choice(s) for n {evidence.get('requested')}"
        ),
        "logprobs_ignored": lambda: "no log probabilities came back",
        "response_format_ignored": lambda: str(evidence.get("problem")),
        "nondeterministic_output": lambda: (
            f"{evidence.get('distinct_answers')} different answers to "
            f"{len(evidence.get('steps') or [])} equal requests, identical for the first "
            f"{evidence.get('identical_prefix_chars')} characters"
        ),
    }
    return ParameterVerdict(
        probe.name,
        parameter,
        "ignored",
        details[finding.kind](),
        confidence=finding.confidence,
        finding=finding.kind,
        evidence=evidence,
    )


@dataclass(frozen=True)
class _Honoured:
    detail: str
    sure: bool | None = True
    """False: the answer cannot tell (the verdict stays unknown)."""
    confidence: float | None = None


def _max_tokens(probe: Probe, steps: tuple[Step, ...]) -> _Honoured:
    step = steps[0]
    cap = int((probe.params or {})["max_tokens"])
    finish = step.finish_reason_raw
    if step.completion_tokens is not None:
        note = "" if step.finish_reason == "length" else ", ended before the cap"
        over = step.completion_tokens - cap
        counted = f", {over} end token(s) counted past it" if 0 < over <= END_TOKENS else ""
        return _Honoured(
            f"{step.completion_tokens} tokens for a cap of {cap}, finish_reason {finish}"
            f"{note}{counted}"
        )
    estimated = estimate_tokens(step.content or "") + estimate_tokens(step.reasoning or "")
    if step.finish_reason == "length":
        # No usage: a word count is all there is, and the host said it hit the limit.
        return _Honoured(
            f"no usage; ~{estimated} tokens by a word count, finish_reason {finish}",
            confidence=0.7,
        )
    return _Honoured(f"no usage and finish_reason {finish}: the cap cannot be checked", False)


def _answer(step: Step) -> str | None:
    """Why the step's answer text cannot show a verdict (None: it can)."""
    if step.finish_reason == "length":
        return f"the answer was cut at the token budget ({step.completion_tokens} tokens)"
    if step.calls:
        return "the model called a tool instead of answering"
    if not (step.content or "").strip():
        return "no answer text"
    return None


def _stop(probe: Probe, steps: tuple[Step, ...]) -> _Honoured:
    why = _answer(steps[0])
    if why is not None:
        return _Honoured(why, False)
    stop = str((probe.params or {})["stop"][0])
    # The probe asks for a line holding the stop sequence: an answer that never reached it
    # would look the same whether the host honoured stop or not.
    line = probe.conversation.user
    before = line[: line.index(stop)].split()[-1] if stop in line else None
    words = (steps[0].content or "").split()
    if before is None or not words or words[-1] != before:
        return _Honoured(f"the answer never got as far as {stop!r}", False)
    return _Honoured(f"the answer ends right before {stop!r}, finish_reason stop")


def _n(probe: Probe, steps: tuple[Step, ...]) -> _Honoured:
    return _Honoured(f"{(probe.params or {})['n']} choices")


def _logprobs(probe: Probe, steps: tuple[Step, ...]) -> _Honoured:
    if not (steps[0].content or "").strip():
        return _Honoured("no answer text to carry log probabilities", False)
    top = (probe.params or {}).get("top_logprobs", 0)
    return _Honoured(f"log probabilities with {top} alternatives per token")


def _response_format(probe: Probe, steps: tuple[Step, ...]) -> _Honoured:
    why = _answer(steps[0])
    if why is not None:
        return _Honoured(why, False)
    kind = ((probe.params or {}).get("response_format") or {}).get("type")
    try:
        value = json.loads(steps[0].content or "")
    except ValueError:
        value = None
    keys = sorted(value) if isinstance(value, dict) else []
    return _Honoured(f"a JSON object ({kind}) with keys {', '.join(keys) or 'none'}")


def _seed(probe: Probe, steps: tuple[Step, ...]) -> _Honoured:
    if len(steps) < 2:
        return _Honoured("only one answer to compare", False)
    return _Honoured(f"{len(steps)} identical answers to the same request")


_HONOURED = {
    "max_tokens": _max_tokens,
    "stop": _stop,
    "n": _n,
    "logprobs": _logprobs,
    "response_format": _response_format,
    "seed": _seed,
}
"""Per parameter: what shows it honoured once no finding says it was ignored."""
