"""Paired comparisons on a real store: probes (one request each, the same requests for every
host) compared with the shared requests resampled, and the output saying so."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from analyzer.compare.paired import MIN_PAIRED_REQUESTS, load_request_table, paired_difference
from analyzer.compare.selection import Selection, select_runs
from analyzer.compare.stats import Ratio
from traces.store.database import open_for_reading

from conftest import run_cli

pytestmark = pytest.mark.slow  # probes two simulated hosts

CLEAN = "sim"
BROKEN = "sim+invalid_json_arguments=1"


@pytest.fixture(scope="module")
def probed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("paired") / "t.duckdb"
    done = run_cli(
        "probe",
        "--dialect",
        "openai",
        "--dialect",
        "openai:invalid_json_arguments=1",
        "--db",
        str(db),
    )
    assert done.returncode == 0, done.stderr
    return db


def _compare(db: Path, *extra: str) -> dict[str, Any]:
    done = run_cli("compare", "--origin", "probe", "--db", str(db), "--format", "json", *extra)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_per_request_rates_of_probes_are_compared_paired(probed: Path) -> None:
    comparison = _compare(probed)
    paired = {t["metric"]: t for t in comparison["paired_tests"]}
    # Every rate defined per call or per response is paired; run-level ones never are.
    assert {"invalid_json_rate", "tool_call_json_validity", "reasoning_returned"} <= set(paired)
    assert not {"success_rate", "steps_median", "findings_per_100_steps"} & set(paired)
    calls = paired["invalid_json_rate"]
    assert {calls["a"], calls["b"]} == {CLEAN, BROKEN}
    assert calls["requests"] >= MIN_PAIRED_REQUESTS
    tested = comparison["comparisons"]
    assert comparison["significance"] == (
        f"Holm-corrected across {tested} tests, family-wise α=0.05"
    )
    # Every first call of the broken host is invalid JSON, none of the clean one's: a
    # difference on every shared request, which the paired bootstrap resolves past Holm.
    found = {d["metric"]: d for d in comparison["significant"]}
    invalid = found["invalid_json_rate"]
    assert invalid["paired"] is True and invalid["requests"] == calls["requests"]
    assert (invalid["higher"], invalid["better"]) == (BROKEN, CLEAN)
    assert invalid["p_adjusted"] <= 0.05 and invalid["resamples"] >= comparison["resamples"]
    assert f"on {calls['requests']} requests both answered" in invalid["text"]
    # Each probe is its own task, run once: runs cannot be resampled, so nothing run-level
    # (latency, findings) is judged, and a note says why.
    assert all(d["paired"] for d in comparison["significant"])
    assert any("runs cannot be resampled within tasks" in n for n in comparison["notes"])


def test_the_table_says_how_significance_was_judged_and_what_was_paired(probed: Path) -> None:
    done = run_cli("compare", "--origin", "probe", "--db", str(probed))
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "Holm-corrected across" in text and "family-wise α=0.05" in text
    assert "Paired by request hash" in text
    assert f"invalid_json per call: {CLEAN} vs {BROKEN}" in text


def test_the_paired_point_is_the_rate_on_the_shared_requests(probed: Path) -> None:
    conn = open_for_reading(probed)
    try:
        select_runs(conn, Selection(origins=["probe"]))
        table = load_request_table(conn, {})
        rows = conn.execute(
            "SELECT sel.grp, s.request_hash, count(*) FILTER (WHERE NOT c.json_valid), count(*) "
            "FROM tool_calls c JOIN steps s ON s.run_id = c.run_id AND s.idx = c.step_idx "
            "JOIN compare_runs sel ON sel.run_id = c.run_id "
            "WHERE s.error_kind IS NULL GROUP BY ALL"
        ).fetchall()
    finally:
        conn.close()
    paired = paired_difference(table, Ratio("invalid_json", "calls"), BROKEN, CLEAN, 500, "t")
    assert paired is not None
    per_group: dict[str, dict[str, tuple[int, int]]] = {}
    for group, request, bad, calls in rows:
        per_group.setdefault(group, {})[request] = (bad, calls)
    shared = per_group[BROKEN].keys() & per_group[CLEAN].keys()
    assert paired.requests == len(shared)
    bad = sum(per_group[BROKEN][h][0] for h in shared)
    total = sum(per_group[BROKEN][h][1] for h in shared)
    assert paired.value_a == pytest.approx(bad / total) and paired.value_b == 0.0
    # Resampling requests, the same draw for both: the broken host's rate is 1 in every draw.
    assert paired.value_a == 1.0 and bool((paired.replicates == 1.0).all())
