"""The catalogue of finding kinds is complete and readable: every kind a registered check can
emit is in it (and nothing else), each has a real excerpt among the fixtures, each simulator
fault's finding is described, and the streaming anomalies the recorder notes all have a name."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from types import ModuleType

from analyzer.checks import streaming
from analyzer.checks.catalogue import KINDS, catalogue_rows, describe
from analyzer.checks.registry import RUN_CHECKS, STEP_CHECKS

from conftest import REPO

FIXTURE = Path(__file__).parent / "fixtures" / "real_excerpts.json"
_LITERAL_KIND = re.compile(r"Finding\(\s*(?:kind=)?\"([a-z_]+)\"")
_ANOMALY = (
    re.compile(r"\._note(?:_once)?\(\s*(?:call,\s*)?\"(\w+)\""),
    re.compile(r"anomalies\.append\(\s*\{\s*\"kind\":\s*\"(\w+)\""),
)


GRADED = {"finish_length_with_calls"}
"""Kinds whose layer follows the evidence and whose real excerpt shows the other layer
(a call truncated at `length` is the model's; the default, complete calls, the host's)."""


def _check_modules() -> dict[str, ModuleType]:
    checks = [*STEP_CHECKS.values(), *RUN_CHECKS.values()]
    return {c.__module__.rsplit(".", 1)[-1]: importlib.import_module(c.__module__) for c in checks}


def _literal_kinds(module: ModuleType) -> set[str]:
    """Kinds a module passes to `Finding(...)` as string literals, read from its source."""
    return set(_LITERAL_KIND.findall(Path(str(module.__file__)).read_text(encoding="utf-8")))


def _declared(module: ModuleType) -> set[str]:
    """The kinds a check module declares, which must be the ones its source emits."""
    declared = set(module.KINDS)
    literal = _literal_kinds(module)
    assert literal <= declared, (module.__name__, sorted(literal - declared))
    return declared


def test_catalogue_lists_exactly_the_kinds_the_checks_emit() -> None:
    modules = _check_modules()
    declared = {kind: name for name, module in modules.items() for kind in _declared(module)}
    assert set(KINDS) == set(declared)
    for kind, info in KINDS.items():
        assert info.check == declared[kind], kind


def test_declared_kinds_cover_every_literal_finding() -> None:
    for name, module in _check_modules().items():
        assert _literal_kinds(module) <= _declared(module), name


def test_every_kind_has_a_real_excerpt() -> None:
    cases = json.loads(FIXTURE.read_text(encoding="utf-8"))["cases"]
    covered = {case["kind"] for case in cases}
    assert set(KINDS) <= covered, sorted(set(KINDS) - covered)
    for kind in set(KINDS) - GRADED:
        layers = {case["layer"] for case in cases if case["kind"] == kind}
        # The default layer is what a real excerpt of that kind was blamed on.
        assert KINDS[kind].layer in layers, kind


def test_every_simulator_fault_finding_is_described() -> None:
    from test_checks_faults import FAULT_FINDINGS

    for fault, (kind, _, _) in FAULT_FINDINGS.items():
        assert kind in KINDS, fault


def test_every_anomaly_the_recorder_notes_has_a_finding_kind() -> None:
    noted: set[str] = set()
    for path in (REPO / "traces").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for pattern in _ANOMALY:
            noted.update(pattern.findall(text))
    assert noted, "no anomaly found in traces/: the patterns above are out of date"
    assert noted <= set(streaming.ANOMALIES), sorted(noted - set(streaming.ANOMALIES))
    assert all(streaming.finding_kind(a) in KINDS for a in noted)
    assert streaming.finding_kind("stream_without_done") == "stream_without_done"
    assert streaming.finding_kind("a_future_quirk") == streaming.OTHER


def test_descriptions_read_as_one_or_two_sentences() -> None:
    for kind, info in KINDS.items():
        text = info.description
        assert text[0].isupper(), kind
        assert text.endswith("."), kind
        assert 40 <= len(text) <= 400, (kind, len(text))
        assert "  " not in text and "\n" not in text, kind
        sentences = [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", text) if s]
        assert len(sentences) <= 3, (kind, sentences)


def test_rows_and_describe() -> None:
    rows = catalogue_rows()
    assert [r["kind"] for r in rows] == list(KINDS)
    assert set(rows[0]) == {
        "kind",
        "layer",
        "severity",
        "inferred",
        "check",
        "description",
        "covers",
    }
    assert describe("leaked_special_tokens") == KINDS["leaked_special_tokens"].description
    assert describe("no_such_kind") is None
