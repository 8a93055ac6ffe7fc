"""`traces verify` without recording: policy files (the samples, every kind of bad one), the
judging rules on comparisons built by hand, and the JUnit XML and Markdown written from them.
The scenario over the simulator is in test_verify_e2e.py."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

import pytest

from analyzer.compare.definitions import METRICS
from analyzer.compare.model import Comparison, Estimate, Group, Metric
from analyzer.compare.selection import Selection
from analyzer.verify.judge import runs_needed, verify
from analyzer.verify.junit import junit_xml
from analyzer.verify.markdown import markdown_summary
from analyzer.verify.model import EXIT_INCONCLUSIVE, Verification
from analyzer.verify.policy import Criterion, Policy, PolicyFileError, load_policy
from traces.sample_files import sample_policies

from conftest import CliRun


def write(tmp_path: Path, text: str, name: str = "policy.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path | str) -> str:
    with pytest.raises(PolicyFileError) as info:
        load_policy(str(path))
    message = str(info.value)
    assert "\n" not in message, message
    return message


# -- policy files -------------------------------------------------------------------------------


def test_sample_policies_load_by_name() -> None:
    assert set(sample_policies()) >= {"faithful", "k2vv"}
    faithful = load_policy("faithful")
    assert faithful.name == "faithful" and faithful.source.endswith("faithful.toml")
    assert [c.metric for c in faithful.criteria] == [
        "reasoning_retention",
        "provider_errors_per_100_steps",
        "schema_accuracy",
        "template_fingerprint",
    ]
    assert faithful.needs_reference and faithful.needs_fingerprints
    k2vv = load_policy("k2vv")
    [f1] = [c for c in k2vv.criteria if c.metric == "tool_call_f1"]
    # K2-Vendor-Verifier's published mark.
    assert (f1.comparator, f1.threshold) == (">=", 0.73)
    assert k2vv.needs_reference and not k2vv.needs_fingerprints


ONE = '\n[[criteria]]\nmetric = "schema_accuracy"\ncomparator = ">="\n'


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ('name = "p"\ncriteria = []\n', ["criteria:", "at least 1"]),
        ('description = "x"' + ONE + "threshold = 0.9\n", ["name:", "missing"]),
        ('name = "p"' + ONE + "threshold = 0.9\nthreshhold = 1\n", ["criteria[0].threshhold:"]),
        ('name = "p"' + ONE, ["criteria[0].threshold:", "either threshold or relative_to"]),
        (
            'name = "p"' + ONE + 'threshold = 0.9\nrelative_to = "reference"\n',
            ["criteria[0].threshold:", "not both"],
        ),
        ('name = "p"' + ONE + "threshold = 73\n", ["criteria[0].threshold:", "0.73 for 73%"]),
        (
            'name = "p"' + ONE + "threshold = 0.9\nallowed_drop = 0.1\n",
            ["criteria[0].allowed_drop:", "only with relative_to"],
        ),
        (
            'name = "p"\n[[criteria]]\nmetric = "schema_acuracy"\ncomparator = ">="\n'
            "threshold = 0.9\n",
            ["criteria[0].metric:", "unknown metric 'schema_acuracy'", "schema_accuracy"],
        ),
        (
            'name = "p"\n[[criteria]]\nmetric = "finding.kind.no_such_kind.runs_share"\n'
            'comparator = "<="\nthreshold = 0.0\n',
            ["criteria[0].metric:", "unknown metric"],
        ),
        (
            'name = "p"\n[[criteria]]\nmetric = "schema_accuracy"\ncomparator = "=="\n'
            "threshold = 1.0\n",
            ["criteria[0].comparator:", "template_fingerprint only"],
        ),
        (
            'name = "p"\n[[criteria]]\nmetric = "template_fingerprint"\ncomparator = ">="\n'
            'relative_to = "reference"\n',
            ["criteria[0].comparator:", "== only"],
        ),
        (
            'name = "p"\n[[criteria]]\nmetric = "tool_call_f1"\ncomparator = ">="\n'
            'relative_to = "reference"\n',
            ["criteria[0].relative_to:", "give a threshold"],
        ),
        (
            'name = "p"' + ONE + 'threshold = "high"\n',
            ["criteria[0].threshold:", "must be a valid number"],
        ),
        ('name = "p"' + ONE + "threshold = 0.9\ncomparator = \n", ["line", "invalid TOML"]),
    ],
    ids=[
        "no-criteria",
        "no-name",
        "misspelt-key",
        "no-bound",
        "two-bounds",
        "percent-not-fraction",
        "drop-without-reference",
        "unknown-metric",
        "unknown-finding-kind",
        "equals-on-a-number",
        "fingerprint-ordered",
        "f1-relative",
        "wrong-type",
        "toml-syntax",
    ],
)
def test_bad_policies_are_one_line_naming_file_and_field(
    tmp_path: Path, text: str, fragments: list[str]
) -> None:
    path = write(tmp_path, text)
    message = load_error(path)
    assert message.startswith(f"{path}: "), message
    for fragment in fragments:
        assert fragment in message, message


def test_an_unknown_policy_name_lists_the_samples(tmp_path: Path) -> None:
    message = load_error("faithfull")
    assert "no sample policy 'faithfull'" in message and "faithful, k2vv" in message
    assert "cannot read policy file" in load_error(tmp_path / "nope.toml")


def test_integer_thresholds_and_finding_metrics_are_accepted(tmp_path: Path) -> None:
    policy = load_policy(
        str(
            write(
                tmp_path,
                'name = "p"\n[[criteria]]\nmetric = "finding.layer.provider.per_100_steps"\n'
                'comparator = "<="\nthreshold = 0\n'
                '[[criteria]]\nmetric = "finding.kind.invalid_json_arguments.runs_share"\n'
                'comparator = "<"\nthreshold = 0.5\n',
            )
        )
    )
    assert [c.threshold for c in policy.criteria] == [0, 0.5]
    assert not policy.needs_reference


@pytest.mark.slow  # the command's first import in this process costs seconds on a busy machine
def test_cli_refuses_a_bad_policy_before_anything_is_written(tmp_path: Path, cli: CliRun) -> None:
    bad = write(tmp_path, 'name = "p"' + ONE + "threshold = 73\n")
    db, junit = tmp_path / "t.duckdb", tmp_path / "out.xml"
    for extra in ([], ["--suite", "quick", "--dialect", "openai"]):
        done = cli("verify", "--policy", str(bad), "--db", str(db), "--junit", str(junit), *extra)
        assert done.returncode == 2, (done.stdout, done.stderr)
        [line] = done.stderr.strip().splitlines()
        assert line.startswith(f"error: {bad}: criteria[0].threshold: "), line
        assert done.stdout == "" and not db.exists() and not junit.exists()
    # A relative policy without any reference group names the file.
    done = cli("verify", "--policy", "faithful", "--db", str(db))
    assert done.returncode == 2 and "give --reference NAME" in done.stderr
    assert "faithful.toml" in done.stderr and not db.exists()
    done = cli("verify", "--policy", "k2vv", "--reference", "sim", "--markdown", "/no/such/x.md")
    assert done.returncode == 2 and "folder /no/such does not exist" in done.stderr


# -- judging ------------------------------------------------------------------------------------


def _metric(key: str, values: dict[str, Estimate]) -> Metric:
    spec = next(s for s in METRICS if s.key == key)
    return Metric(
        key=key,
        label=spec.label,
        section=spec.section,
        unit=spec.unit,
        better=spec.better,
        description=spec.description,
        values=values,
    )


def _comparison(
    metrics: list[Metric],
    groups: dict[str, int],
    *,
    reference: str | None = None,
    like_with_like: bool = True,
) -> Comparison:
    return Comparison(
        generated_at=datetime(2026, 1, 1),
        by=Selection().by,
        reference=reference,
        selection=Selection(),
        confidence=0.95,
        resamples=1000,
        seed=0,
        groups=[
            Group(name=g, runs=n, tasks={"t": n}, providers=[g], models=["m"], upstreams=[])
            for g, n in groups.items()
        ],
        metrics=metrics,
        steps_histogram=[],
        comparisons=0,
        significant=[],
        notes=["a note | with a pipe"],
        shared_tasks=["t"],
        like_with_like=like_with_like,
    )


def _policy(*criteria: Criterion) -> Policy:
    return Policy(name="p", criteria=list(criteria), source="p.toml")


AT_LEAST_90 = Criterion(metric="schema_accuracy", comparator=">=", threshold=0.9)


@pytest.mark.parametrize(
    ("lo", "hi", "status"),
    [(0.9, 1.0, "pass"), (0.5, 0.89, "fail"), (0.85, 0.95, "inconclusive")],
)
def test_an_absolute_criterion_is_judged_on_the_whole_interval(
    lo: float, hi: float, status: str
) -> None:
    point = (lo + hi) / 2
    comparison = _comparison(
        [_metric("schema_accuracy", {"h": Estimate(value=point, lo=lo, hi=hi, runs=10)})],
        {"h": 10},
    )
    [judgement] = verify(_policy(AT_LEAST_90), comparison).judgements
    assert judgement.status == status, judgement.reason
    assert (judgement.lo, judgement.hi, judgement.estimate) == (lo, hi, point)
    assert (judgement.runs_needed is None) == (status != "inconclusive")


def test_lower_is_better_comparators_and_strict_bounds() -> None:
    rate = {"h": Estimate(value=0.0, lo=0.0, hi=0.0, runs=8)}
    comparison = _comparison([_metric("invalid_json_rate", rate)], {"h": 8})
    at_most = Criterion(metric="invalid_json_rate", comparator="<=", threshold=0.0)
    below = Criterion(metric="invalid_json_rate", comparator="<", threshold=0.0)
    first, second = verify(_policy(at_most, below), comparison).judgements
    assert (first.status, second.status) == ("pass", "fail")


def test_runs_needed_follows_the_interval_narrowing_as_one_over_root_n() -> None:
    # Estimate 0.95 with a half-width of 0.10 below it, bound 0.90: the half-width must
    # shrink to 0.05, a factor of 2, so four times the runs.
    assert runs_needed(0.95, 0.85, 1.0, 0.90, 10) == 40
    # On the failing side the upper half-width counts: 0.85 + 0.10 straddles 0.90.
    assert runs_needed(0.85, 0.80, 0.95, 0.90, 10) == 40
    # An estimate on the bound can never be settled; a tiny margin needs at least one more run.
    assert runs_needed(0.90, 0.85, 0.95, 0.90, 10) is None
    assert runs_needed(0.99, 0.985, 1.0, 0.90, 10) == 11


def test_a_relative_criterion_reads_the_interval_of_the_difference() -> None:
    ref = Estimate(value=0.95, lo=0.90, hi=0.98, runs=20)
    near = Estimate(value=0.94, lo=0.90, hi=0.97, runs=20)
    far = Estimate(value=0.70, lo=0.60, hi=0.78, runs=20)
    comparison = _comparison(
        [_metric("schema_accuracy", {"ref": ref, "near": near, "far": far})],
        {"ref": 20, "near": 20, "far": 20},
        reference="ref",
    )
    relative = Criterion(
        metric="schema_accuracy", comparator=">=", relative_to="reference", allowed_drop=0.02
    )
    by_group = {j.group: j for j in verify(_policy(relative), comparison).judgements}
    # The reference against itself: exactly 0, which clears −0.02.
    assert by_group["ref"].status == "pass" and by_group["ref"].estimate == 0.0
    # MOVER: lower side sqrt((0.94−0.90)² + (0.98−0.95)²) = 0.05 below −0.01.
    near_j = by_group["near"]
    assert near_j.estimate == pytest.approx(-0.01)
    assert near_j.lo == pytest.approx(-0.01 - math.hypot(0.04, 0.03))
    assert near_j.hi == pytest.approx(-0.01 + math.hypot(0.03, 0.05))
    assert near_j.status == "inconclusive" and near_j.bound == -0.02
    assert near_j.reference_value == 0.95 and near_j.runs_needed is not None
    assert by_group["far"].status == "fail" and "misses >= −2.0 pts" in by_group["far"].reason


def test_groups_that_are_not_like_with_like_are_never_judged() -> None:
    estimate = Estimate(value=1.0, lo=1.0, hi=1.0, runs=10)
    comparison = _comparison(
        [_metric("schema_accuracy", {"a": estimate, "b": estimate})],
        {"a": 10, "b": 10},
        like_with_like=False,
    )
    verification = verify(_policy(AT_LEAST_90), comparison)
    assert {j.status for j in verification.judgements} == {"inconclusive"}
    assert all("not like with like" in j.reason for j in verification.judgements)
    assert verification.exit_code == EXIT_INCONCLUSIVE


def test_unknown_success_and_missing_values_are_not_failures() -> None:
    comparison = _comparison(
        [
            _metric("success_rate", {"known": Estimate(value=1.0, lo=0.7, hi=1.0, runs=8)}),
            _metric("schema_accuracy", {}),
        ],
        {"known": 8, "imported": 3},
    )
    success = Criterion(metric="success_rate", comparator=">=", threshold=0.5)
    skip = Criterion(metric="schema_accuracy", comparator=">=", threshold=0.9, when_missing="skip")
    verification = verify(_policy(success, skip), comparison)
    by_key = {(j.group, j.metric): j for j in verification.judgements}
    imported = by_key[("imported", "success_rate")]
    assert imported.status == "inconclusive" and "success of every run is unknown" in (
        imported.reason
    )
    assert imported.value is None
    assert by_key[("known", "success_rate")].status == "pass"
    assert by_key[("known", "schema_accuracy")].status == "skipped"
    assert verification.status == "inconclusive"


def test_one_run_has_no_interval_and_is_not_judged() -> None:
    comparison = _comparison(
        [_metric("schema_accuracy", {"h": Estimate(value=1.0, lo=None, hi=None, runs=1)})],
        {"h": 1},
    )
    [judgement] = verify(_policy(AT_LEAST_90), comparison).judgements
    assert judgement.status == "inconclusive" and "too few for an interval" in judgement.reason


def test_fingerprints_pass_fail_or_are_not_judged_without_a_probe() -> None:
    comparison = _comparison([], {"ref": 5, "same": 5, "other": 5, "unprobed": 5}, reference="ref")
    criterion = Criterion(metric="template_fingerprint", comparator="==", relative_to="reference")
    prints = {"ref": "aaa", "same": "aaa", "other": "bbb"}
    by_group = {j.group: j for j in verify(_policy(criterion), comparison, prints).judgements}
    assert [by_group[g].status for g in ("ref", "same", "other", "unprobed")] == [
        "pass",
        "pass",
        "fail",
        "inconclusive",
    ]
    assert "traces probe --provider unprobed" in by_group["unprobed"].reason


# -- outputs ------------------------------------------------------------------------------------


def _mixed() -> Verification:
    comparison = _comparison(
        [
            _metric(
                "schema_accuracy",
                {
                    "good": Estimate(value=1.0, lo=0.95, hi=1.0, runs=10),
                    "bad": Estimate(value=0.5, lo=0.4, hi=0.6, runs=10),
                    "unsure <b>|": Estimate(value=0.92, lo=0.8, hi=0.97, runs=4),
                },
            )
        ],
        {"good": 10, "bad": 10, "unsure <b>|": 4},
    )
    return verify(_policy(AT_LEAST_90), comparison)


def test_junit_xml_has_one_case_per_group_and_criterion() -> None:
    verification = _mixed()
    root = ET.fromstring(junit_xml(verification))
    [suite] = root.findall("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    cases = {case.get("classname"): case for case in suite.findall("testcase")}
    assert set(cases) == {"p.good", "p.bad", "p.unsure <b>|"}
    assert cases["p.good"].find("failure") is None and cases["p.good"].find("skipped") is None
    failure = cases["p.bad"].find("failure")
    assert failure is not None and "misses >= 90.0%" in (failure.get("message") or "")
    skipped = cases["p.unsure <b>|"].find("skipped")
    assert skipped is not None and "INCONCLUSIVE" in (skipped.get("message") or "")
    assert "runs per group" in (skipped.get("message") or "")
    verdict = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert verdict["verdict"] == "fail" and verdict["policy"] == "p"


def test_markdown_summary_reads_as_a_table_and_escapes_labels() -> None:
    text = markdown_summary(_mixed())
    lines = text.splitlines()
    assert lines[0] == "### traces verify `p`: ❌ FAIL"
    rows = [line for line in lines if line.startswith("| ") and "schema" in line]
    assert len(rows) == 3
    assert all(row.count(" | ") == 5 for row in rows), rows  # pipes in labels are escaped
    assert "unsure &lt;b>\\|" in text and "❌ FAIL" in text and "⚠️ INCONCLUSIVE" in text
    assert "- a note \\| with a pipe" in text


def test_the_reference_is_not_judged_on_tool_call_f1_against_itself() -> None:
    f1 = {"host": Estimate(value=0.8, lo=0.75, hi=0.85, runs=10)}
    comparison = _comparison(
        [_metric("tool_call_f1", f1)], {"official": 10, "host": 10}, reference="official"
    )
    mark = Criterion(metric="tool_call_f1", comparator=">=", threshold=0.73)
    verification = verify(_policy(mark), comparison)
    assert [j.status for j in verification.judgements] == ["skipped", "pass"]
    assert verification.exit_code == 0 and verification.status == "pass"
