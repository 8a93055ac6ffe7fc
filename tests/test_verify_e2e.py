"""`traces verify` as a user runs it: the quick suite recorded over HTTP against simulated
hosts with known faults, judged by the sample policies, every output read back.

The simulator and the resampling are seeded, so each verdict below is one fixed outcome.
"""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, run_cli

pytestmark = pytest.mark.slow

CLEAN = "sim"
BAD_JSON = "sim+invalid_json_arguments=0.2"
FORGETFUL = "sim+reasoning_dropped_from_history=1"
RARE_BAD_JSON = "sim+invalid_json_arguments=0.01"
LOG = REPO / "tests" / "fixtures" / "import" / "exchanges.jsonl"


@pytest.fixture(scope="module")
def three_hosts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The issue's scenario: a clean host, one with 20% invalid JSON arguments and one that
    drops the reasoning sent back, on the quick suite (eight runs of each task), judged by
    `--policy faithful` against the clean host; every report written."""
    base = tmp_path_factory.mktemp("verify")
    summary = base / "step_summary.md"
    summary.write_text("earlier step\n", encoding="utf-8")
    done = run_cli(
        "verify",
        "--policy",
        "faithful",
        "--suite",
        "quick",
        "--repeat",
        "8",
        "--dialect",
        "openai",
        "--dialect",
        "openai:invalid_json_arguments=0.2",
        "--dialect",
        "openai:reasoning_dropped_from_history=1",
        "--reference",
        CLEAN,
        "--format",
        "json",
        "--junit",
        str(base / "verify.xml"),
        "--markdown",
        str(base / "verify.md"),
        "--db",
        str(base / "t.duckdb"),
        env={"GITHUB_STEP_SUMMARY": str(summary)},
    )
    return {"done": done, "base": base, "db": base / "t.duckdb", "summary": summary}


def _by(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(j["group"], j["metric"]): j for j in document["judgements"]}


def test_faithful_passes_the_clean_host_and_names_what_fails_the_others(
    three_hosts: dict[str, Any],
) -> None:
    done = three_hosts["done"]
    assert done.returncode == 1, done.stderr
    document = json.loads(done.stdout)
    assert document["status"] == "fail" and document["exit_code"] == 1
    judged = _by(document)
    statuses = {
        group: {j["metric"]: j["status"] for j in document["judgements"] if j["group"] == group}
        for group in (CLEAN, BAD_JSON, FORGETFUL)
    }
    assert set(statuses[CLEAN].values()) == {"pass"}
    # Invalid JSON breaks K2VV's schema_accuracy: well below the reference's, beyond doubt.
    assert [m for m, s in statuses[BAD_JSON].items() if s == "fail"] == ["schema_accuracy"]
    bad = judged[(BAD_JSON, "schema_accuracy")]
    assert bad["judged"] == "difference" and bad["hi"] < -0.02 and bad["runs"] == 16
    # A host that ignores the reasoning sent back keeps none of it, and its template renders
    # the probes differently from the reference's.
    assert sorted(m for m, s in statuses[FORGETFUL].items() if s == "fail") == [
        "reasoning_retention",
        "template_fingerprint",
    ]
    assert judged[(FORGETFUL, "reasoning_retention")]["hi"] < 0.9
    assert "differs from the reference's" in judged[(FORGETFUL, "template_fingerprint")]["reason"]
    # The verdict line on stderr names each failing criterion.
    [line] = done.stderr.strip().splitlines()[-1:]
    assert line.startswith("verify faithful: FAIL — 9 passed, 3 failed")
    assert f"{BAD_JSON}: tool calls as valid as the reference's" in line
    assert f"{FORGETFUL}: reasoning kept" in line
    # The comparison judged is the one `traces compare` gives, whole.
    assert [g["name"] for g in document["comparison"]["groups"]] == [CLEAN, BAD_JSON, FORGETFUL]


def test_junit_xml_and_markdown_are_written_and_the_step_summary_appended(
    three_hosts: dict[str, Any],
) -> None:
    base: Path = three_hosts["base"]
    root = ET.parse(base / "verify.xml").getroot()
    [suite] = root.findall("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("12", "3", "0")
    failed = {
        (case.get("classname"), case.get("name"))
        for case in suite.findall("testcase")
        if case.find("failure") is not None
    }
    assert (f"faithful.{FORGETFUL}", "reasoning kept (>= 0.9)") in failed
    rule = "tool calls as valid as the reference's (>= reference − 0.02)"
    assert (f"faithful.{BAD_JSON}", rule) in failed
    markdown = (base / "verify.md").read_text(encoding="utf-8")
    assert markdown.startswith("### traces verify `faithful`: ❌ FAIL")
    assert f"| {FORGETFUL} | reasoning kept | >= 0.9 | 0.0% [0.0%, 0.0%] | ❌ FAIL |" in markdown
    summary = three_hosts["summary"].read_text(encoding="utf-8")
    assert summary.startswith("earlier step\n### traces verify `faithful`") and markdown in summary


def test_stored_runs_verify_again_with_compare_filters(three_hosts: dict[str, Any]) -> None:
    db = str(three_hosts["db"])
    # Only the clean host (the reference itself): every criterion passes, exit 0.
    done = run_cli("verify", "--policy", "faithful", "--reference", CLEAN, "--provider", CLEAN,
                   "--db", db)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "verify faithful: PASS — 4 passed" in done.stdout and "FAIL" not in done.stdout
    done = run_cli("verify", "--policy", "faithful", "--reference", "nosuch", "--db", db)
    assert done.returncode == 2 and "is not one of the compared groups" in done.stderr
    # Drift: the same hosts by day, since a moment before the recording.
    by_day = run_cli("compare", "--db", db, "--by", "day", "--format", "json")
    day_of = {g["providers"][0]: g["name"] for g in json.loads(by_day.stdout)["groups"]}
    done = run_cli("verify", "--policy", "faithful", "--reference", day_of[CLEAN], "--by",
                   "day", "--since", "2000-01-01", "--format", "json", "--db", db)  # fmt: skip
    assert done.returncode == 1, done.stderr
    judged = _by(json.loads(done.stdout))
    assert judged[(day_of[FORGETFUL], "reasoning_retention")]["status"] == "fail"
    # Fingerprints are per provider: by day they are not judged, never passed.
    assert judged[(day_of[CLEAN], "template_fingerprint")]["status"] == "inconclusive"
    # K2-Vendor-Verifier's marks, as CSV: triggering agrees with the reference everywhere
    # (F1 at 100%), schema_accuracy of the invalid-JSON host falls more than 5 points short.
    k2vv = run_cli("verify", "--policy", "k2vv", "--reference", CLEAN, "--format", "csv",
                   "--db", db)  # fmt: skip
    assert k2vv.returncode == 1, k2vv.stderr
    rows = {(r["group"], r["metric"]): r for r in csv.DictReader(io.StringIO(k2vv.stdout))}
    assert rows[(CLEAN, "tool_call_f1")]["status"] == "skipped"  # the reference itself
    assert {rows[(g, "tool_call_f1")]["status"] for g in (BAD_JSON, FORGETFUL)} == {"pass"}
    assert rows[(BAD_JSON, "schema_accuracy")]["status"] == "fail"
    assert rows[(FORGETFUL, "schema_accuracy")]["status"] == "pass"
    assert k2vv.stderr.strip() == (
        "verify k2vv: FAIL — 4 passed, 1 failed, 1 skipped "
        f"(failed: {BAD_JSON}: schema_accuracy near the reference's)"
    )
    future = run_cli("verify", "--policy", "k2vv", "--reference", CLEAN, "--since",
                     "2999-01-01", "--db", db)  # fmt: skip
    assert future.returncode == 2 and "no finished runs match (since=2999-01-01" in future.stderr


def test_a_rare_fault_over_a_few_runs_is_inconclusive_with_a_run_estimate(
    tmp_path: Path,
) -> None:
    done = run_cli(
        "verify", "--policy", "faithful", "--suite", "quick", "--seed", "1",
        "--dialect", "openai", "--dialect", "openai:invalid_json_arguments=0.01",
        "--reference", CLEAN, "--format", "json", "--db", str(tmp_path / "t.duckdb"),
    )  # fmt: skip
    assert done.returncode == 5, done.stderr
    document = json.loads(done.stdout)
    assert document["status"] == "inconclusive"
    judged = _by(document)
    rare = judged[(RARE_BAD_JSON, "schema_accuracy")]
    assert rare["status"] == "inconclusive" and rare["runs"] == 8
    assert rare["lo"] < -0.02 < rare["hi"]
    # Estimated from the half-width facing the bound, shrinking as 1/√runs.
    assert (
        rare["runs_needed"] > 8
        and f"about {rare['runs_needed']} runs per group" in (rare["reason"])
    )
    assert done.stderr.strip().endswith("verify faithful: INCONCLUSIVE — 7 passed, 1 inconclusive")


def test_imported_runs_of_unknown_success_are_never_a_fake_failure(tmp_path: Path) -> None:
    db = str(tmp_path / "t.duckdb")
    assert run_cli("demo", "--db", db).returncode == 0
    assert run_cli("import", str(LOG), "--provider", "fireworks", "--db", db).returncode == 0
    policy = tmp_path / "success.toml"
    policy.write_text(
        'name = "success"\n[[criteria]]\nmetric = "success_rate"\ncomparator = ">="\n'
        "threshold = 0.1\n",
        encoding="utf-8",
    )
    done = run_cli("verify", "--policy", str(policy), "--provider", "fireworks", "--format",
                   "json", "--db", db)  # fmt: skip
    assert done.returncode == 5, done.stderr
    [judgement] = json.loads(done.stdout)["judgements"]
    assert judgement["status"] == "inconclusive" and judgement["value"] is None
    assert "success of every run is unknown" in judgement["reason"]
    # Side by side with the demo, the tasks differ: nothing is judged, nothing passes.
    done = run_cli("verify", "--policy", str(policy), "--format", "json", "--db", db)
    assert done.returncode == 5, done.stderr
    judgements = json.loads(done.stdout)["judgements"]
    assert {j["status"] for j in judgements} == {"inconclusive"}
    assert all("not like with like" in j["reason"] for j in judgements)
    # The demo's one judged run: 1 of 1, Wilson's interval 20.7% to 100%, clears 10%.
    table = run_cli("verify", "--policy", str(policy), "--provider", "sim", "--db", db)
    assert table.returncode == 0 and "100.0% [20.7%, 100.0%]" in table.stdout
    assert "verify success: PASS — 1 passed" in table.stdout
