"""The built wheel stands alone: installed outside the checkout, it lists and runs its samples."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO

# What the wheel is built from; everything else in the checkout (tests, benchmarks, caches,
# an old build/ folder) must not matter.
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "traces", "analyzer", "samples")


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_the_installed_wheel_runs_its_samples_from_an_empty_directory(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(
                REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(REPO / name, source / name)
    env = {k: v for k, v in os.environ.items() if k not in ("TRACES_DB", "TRACES_PROVIDERS")}
    env.update(NO_COLOR="1", COLUMNS="200")
    # No build isolation and no dependencies: nothing is downloaded.
    dist = tmp_path / "dist"
    pip = [sys.executable, "-m", "pip"]
    built = _run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(source)],
        cwd=tmp_path,
        env=env,
    )
    assert built.returncode == 0, built.stderr
    # The SPDX license expression leaves setuptools nothing to deprecate.
    assert "deprecat" not in (built.stdout + built.stderr).lower()
    (wheel,) = dist.glob("agent_traces-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {
        "traces/samples/providers.toml",
        "traces/samples/tasks/chain.toml",
        "traces/samples/suites/quick.toml",
        "traces/samples/policies/faithful.toml",
        "traces/samples/policies/k2vv.toml",
        "traces/samples/corpus/research/kestrel-observatory.md",
        "traces/samples/tasks/files_seed/src/inventory/reader.py",
    } <= names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)

    site = tmp_path / "site"
    installed = _run(
        [*pip, "install", "--no-deps", "--target", str(site), str(wheel)],
        cwd=tmp_path,
        env=env,
    )
    assert installed.returncode == 0, installed.stderr

    empty = tmp_path / "elsewhere"
    empty.mkdir()
    env["PYTHONPATH"] = str(site)
    probe = (
        "import traces, traces.sample_files as s; "
        "print(traces.__file__, s.samples_dir(), sep=chr(10))"
    )
    where = _run(
        [sys.executable, "-c", probe],
        cwd=empty,
        env=env,
    )
    assert where.returncode == 0, where.stderr
    module, samples = (Path(line) for line in where.stdout.splitlines())
    # The installed copy is what runs, not the checkout's editable install.
    assert module.is_relative_to(site) and samples == site / "traces" / "samples"

    traces = [sys.executable, str(site / "bin" / "traces")]
    listed = _run([*traces, "tasks", "--format", "json"], cwd=empty, env=env)
    assert listed.returncode == 0, listed.stderr
    names = [row["name"] for row in json.loads(listed.stdout)]
    assert names == ["chain", "chain_short", "files", "research"]

    providers = _run([*traces, "providers", "--format", "json"], cwd=empty, env=env)
    assert providers.returncode == 0, providers.stderr
    assert "moonshot" in {row["provider"] for row in json.loads(providers.stdout)}

    demo = _run([*traces, "demo"], cwd=empty, env=env)
    assert demo.returncode == 0, demo.stderr
    assert (empty / "traces.duckdb").is_file()
    runs = _run([*traces, "runs", "--format", "json"], cwd=empty, env=env)
    (run,) = json.loads(runs.stdout)
    assert (run["task"], run["status"], run["success"]) == ("research", "completed", True)
    # A policy file, and a shipped policy by name, on what demo stored (its one group is the
    # reference: tool_call_f1 is skipped for it, schema_accuracy equals its own).
    policy = empty / "success.toml"
    policy.write_text(
        'name = "s"\n[[criteria]]\nmetric = "success_rate"\ncomparator = ">="\nthreshold = 0.1\n'
    )
    verified = _run([*traces, "verify", "--policy", "success.toml"], cwd=empty, env=env)
    assert verified.returncode == 0, verified.stderr
    named = _run([*traces, "verify", "--policy", "k2vv", "--reference", "sim"], cwd=empty, env=env)
    assert named.returncode == 0 and "verify k2vv: PASS" in named.stdout, named.stderr
