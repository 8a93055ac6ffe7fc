"""The shape of the packages, beyond what import-linter's contracts hold (see pyproject.toml)."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO


def _modules_after(statement: str) -> set[str]:
    """Every module a fresh interpreter has loaded after running `statement`."""
    code = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    return set(json.loads(done.stdout))


def test_the_simulator_stands_without_the_read_side_and_the_sdk() -> None:
    """Anyone can serve the simulator (`traces.sim`) for another client: it needs neither the
    analyzer, the recorder's store nor the openai SDK."""
    loaded = _modules_after("from traces.sim.server import SimServer")
    assert not {m for m in loaded if m == "analyzer" or m.startswith("analyzer.")}
    assert "openai" not in loaded
    assert "traces.store" not in loaded and "traces.harness" not in loaded
