"""Unknown is not failure: imported runs nothing judged compare without a fake 0% success."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import REPO, run_cli

LOG = REPO / "tests" / "fixtures" / "import" / "exchanges.jsonl"


@pytest.mark.slow
def test_imported_runs_of_unknown_success_are_left_out_of_task_success(tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    assert run_cli("demo", "--db", str(db)).returncode == 0
    done = run_cli("import", str(LOG), "--provider", "fireworks", "--db", str(db))
    assert done.returncode == 0, done.stderr
    done = run_cli("compare", "--db", str(db), "--format", "json")
    assert done.returncode == 0, done.stderr
    comparison = json.loads(done.stdout)
    success = next(m for m in comparison["metrics"] if m["key"] == "success_rate")
    assert success["values"]["sim"]["value"] == 1.0
    # The imported runs (their log names the providers acme and fireworks) have no known
    # success at all: no rate, never 0.0, and so nothing to judge against sim.
    for group in ("acme", "fireworks"):
        assert success["values"].get(group, {}).get("value") is None
        assert f"{group}: the success of 1 of 1 runs is unknown" in " ".join(comparison["notes"])
    assert not any(s.get("metric") == "success_rate" for s in comparison["significant"])
    # Nor are they like with like: the demo's task is not the imported runs' task.
    assert comparison["shared_tasks"] == [] and comparison["comparisons"] == 0
    assert any("No task was run by every group" in n for n in comparison["notes"])
    table = run_cli("compare", "--db", str(db)).stdout
    row = next(line for line in table.splitlines() if "task success" in line)
    assert row.count("—") == 2 and " 0.0%" not in row
