"""`traces record --resume` and `--retry-failed` over real HTTP against the simulator.

The simulator answers each request from its body and seed alone, so a run resumed from the
store must send, step for step, the requests an uninterrupted run with the same seed sends,
get the same tool results from its restored world, and end the same way. Every test
compares a resumed run with such a reference, exchange by exchange.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from traces.sim.config import SimConfig
from traces.sim.server import SimServer

from conftest import REPO, query_rows, run_cli, run_cli_in_process
from recording import record
from resume_helpers import cut, ending, exchanges

# Slow as a whole, outside the fast path `pytest -m "not slow"`: every test records runs,
# several kill or resume them in subprocesses.
pytestmark = pytest.mark.slow

CHAIN = """\
name = "chain_resume"
description = "A chain long enough to be killed in the middle of."
max_steps = 40
system_prompt = "Open the boxes one after another with the tool, then answer."
user_prompt = "Open box {start_box}; there are {length}. Reply with the treasure."

[environment]
type = "chain"
length = 30
"""


@pytest.fixture(scope="module")
def slow_sim() -> Iterator[SimServer]:
    """A simulator slow enough (40 ms a step) that a 30-step run is still going when killed."""
    with SimServer(SimConfig(latency_ms=40)) as server:
        yield server


def _resume(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, db: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    return run_cli_in_process(capsys, monkeypatch, "record", "--resume", *args, "--db", str(db))


def _recorded(db: Path, sim: SimServer, task: str, *, seed: int = 0, **settings: object) -> str:
    [summary] = record(db, sim.base_url, task, seed=seed, **settings)  # type: ignore[arg-type]
    return summary.id


def _stop_when_the_log_passes(
    proc: subprocess.Popen[str], db: Path, size: int, sig: signal.Signals
) -> None:
    """Send `sig` to `proc`'s process group once the store's write-ahead log passes `size`
    bytes. The writer holds the file, so progress is read from the log's growth: some 98 kB
    for a new store's schema, then about 5 kB a step."""
    wal = Path(f"{db}.wal")
    deadline = time.monotonic() + 60
    while not (wal.exists() and wal.stat().st_size > size):
        assert proc.poll() is None, "the command ended before it could be stopped"
        assert time.monotonic() < deadline, "the command never got going"
        time.sleep(0.02)
    os.killpg(proc.pid, sig)


def _traces(*args: str) -> subprocess.Popen[str]:
    """`traces ARGS` in a process group of its own, as a terminal runs it."""
    return subprocess.Popen(
        [sys.executable, "-m", "analyzer", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        start_new_session=True,
    )


def _killed_mid_recording(sim: SimServer, tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """A store whose one run of a 30-box chain was killed (-9) mid-run: the store, the task
    file and the endpoint options it was recorded with."""
    task = tmp_path / "chain_resume.toml"
    task.write_text(CHAIN, encoding="utf-8")
    db = tmp_path / "killed.duckdb"
    endpoint = ["--base-url", sim.base_url, "--model", "sim-reasoner-1"]
    endpoint += ["--api-key-env", "HOME", "--no-stream", "--seed", "7"]
    proc = _traces("record", "--task", str(task), *endpoint, "--db", str(db))
    # Only the recording process: its writer commits what it was sent, then exits. A new
    # store's schema is some 98 kB of log (since migration 21): a few steps past it.
    _stop_when_the_log_passes(proc, db, 112_000, signal.SIGKILL)
    proc.communicate()
    return db, task, endpoint


def test_a_run_killed_mid_recording_resumes_as_if_never_stopped(
    slow_sim: SimServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db, task, endpoint = _killed_mid_recording(slow_sim, tmp_path)
    reference = tmp_path / "reference.duckdb"

    done = run_cli("record", "--resume", "--db", str(db))
    assert done.returncode == 0, done.stderr
    [run] = query_rows(db, "SELECT id, resumptions FROM runs")
    assert done.stdout.split() == [run["id"]] and run["resumptions"] == 1
    marked = query_rows(db, "SELECT idx FROM steps WHERE resumption IS NOT NULL")
    assert len(marked) == 1 and 1 <= marked[0]["idx"] < 30, marked

    args = ["record", "--task", str(task), *endpoint, "--db", str(reference)]
    done = run_cli_in_process(capsys, monkeypatch, *args)
    assert done.returncode == 0, done.stderr
    [ref] = query_rows(reference, "SELECT id FROM runs")
    resumed, expected = exchanges(db, run["id"]), exchanges(reference, ref["id"])
    assert len(resumed) == len(expected) == 31
    for got, want in zip(resumed, expected, strict=True):
        assert got == want, got["idx"]
    assert ending(db, run["id"]) == ending(reference, ref["id"])
    assert ending(db, run["id"])["success"] is True


def test_a_resumption_stopped_by_ctrl_c_leaves_the_run_to_resume_again(
    slow_sim: SimServer, tmp_path: Path
) -> None:
    db, _, _ = _killed_mid_recording(slow_sim, tmp_path)
    [run] = query_rows(db, "SELECT id FROM runs")

    proc = _traces("record", "--resume", run["id"], "--db", str(db))
    # Opening the store for the resumption checkpoints it: the log restarts near empty.
    _stop_when_the_log_passes(proc, db, 15_000, signal.SIGINT)
    _, err = proc.communicate(timeout=60)

    assert proc.returncode == 130, err
    assert err.splitlines() == [f"interrupted: run {run['id']} left interrupted"]
    [stopped] = query_rows(db, "SELECT status, termination, resumptions, steps FROM runs")
    assert stopped["status"] == "interrupted" and stopped["termination"] == "interrupted"
    assert stopped["resumptions"] == 1 and stopped["steps"] < 31

    done = run_cli("record", "--resume", "--db", str(db))
    assert done.returncode == 0, done.stderr
    [finished] = query_rows(db, "SELECT status, success, resumptions, steps FROM runs")
    assert finished == {"status": "completed", "success": True, "resumptions": 2, "steps": 31}
    marks = query_rows(db, "SELECT resumption FROM steps WHERE resumption > 0 ORDER BY idx")
    assert marks == [{"resumption": 1}, {"resumption": 2}]
    steps = query_rows(db, "SELECT idx FROM steps ORDER BY idx")
    assert [s["idx"] for s in steps] == list(range(31))


CUTS = {
    "before-any-step": (0, True),
    "after-a-step-and-its-results": (2, True),
    "between-a-step-and-its-results": (3, False),
    "after-the-answer": (6, True),
}


@pytest.mark.parametrize("where", list(CUTS))
@pytest.mark.parametrize("task", ["chain_short", "files", "research"])
def test_a_run_stopped_anywhere_resumes_to_the_same_exchanges(
    sim: SimServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    task: str,
    where: str,
) -> None:
    reference = tmp_path / "reference.duckdb"
    run_id = _recorded(reference, sim, task, seed=3, stream=task == "files")
    expected = exchanges(reference, run_id)
    steps, results = CUTS[where]
    steps = min(steps, len(expected))  # "after the answer": the last step, whatever it is
    db = tmp_path / "cut.duckdb"
    shutil.copy(reference, db)
    cut(db, run_id, steps=steps, results=results)

    done = _resume(capsys, monkeypatch, db, run_id)

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [run_id]
    assert exchanges(db, run_id) == expected
    assert ending(db, run_id) == ending(reference, run_id)
    marks = query_rows(db, "SELECT idx, resumption FROM steps WHERE resumption IS NOT NULL")
    # The first step the resumption sent carries its number; none when it had none to send.
    assert marks == ([] if steps == len(expected) else [{"idx": steps, "resumption": 1}])
    assert query_rows(db, "SELECT resumptions FROM runs") == [{"resumptions": 1}]


def test_a_run_resumed_twice_numbers_each_resumption(
    sim: SimServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reference = tmp_path / "reference.duckdb"
    run_id = _recorded(reference, sim, "chain_short")
    db = tmp_path / "cut.duckdb"
    shutil.copy(reference, db)
    cut(db, run_id, steps=1)
    assert _resume(capsys, monkeypatch, db, run_id).returncode == 0
    cut(db, run_id, steps=4, results=False)
    assert _resume(capsys, monkeypatch, db, run_id[:12]).returncode == 0

    assert exchanges(db, run_id) == exchanges(reference, run_id)
    assert query_rows(db, "SELECT idx, resumption FROM steps WHERE resumption > 0") == [
        {"idx": 1, "resumption": 1},
        {"idx": 4, "resumption": 2},
    ]
    listed = json.loads(run_cli("runs", "--db", str(db), "-f", "json").stdout)
    assert [(r["id"], r["resumptions"], r["status"]) for r in listed] == [(run_id, 2, "completed")]
    shown = run_cli("show", run_id, "--db", str(db))
    assert "resumed 2× after an interruption" in shown.stdout
    assert "resumed here (resumption 2)" in shown.stdout


def test_every_interrupted_run_of_the_store_resumes_at_once(
    sim: SimServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reference = tmp_path / "reference.duckdb"
    runs = [s.id for s in record(reference, sim.base_url, "chain_short", repeat=3)]
    finished = _recorded(reference, sim, "chain_short", seed=9)
    db = tmp_path / "cut.duckdb"
    shutil.copy(reference, db)
    for i, run_id in enumerate(runs):
        cut(db, run_id, steps=i + 1, results=i != 1)

    done = _resume(capsys, monkeypatch, db, "--concurrency", "3")

    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.split()) == sorted(runs)
    for run_id in [*runs, finished]:
        assert exchanges(db, run_id) == exchanges(reference, run_id)
        assert ending(db, run_id) == ending(reference, run_id)
    again = _resume(capsys, monkeypatch, db)
    assert again.returncode == 2
    assert again.stderr.strip() == f"error: {db}: no interrupted run to resume"


def test_a_world_that_replays_differently_is_not_resumed(
    sim: SimServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = tmp_path / "t.duckdb"
    run_id = _recorded(db, sim, "chain_short")
    cut(db, run_id, steps=4)
    with duckdb.connect(str(db)) as conn:  # the world is not what the run saw
        # (The output as the view gives it: a recorder stores it once, in the tool message
        # the next request sent back: the recorders' writer's `output_replays`.)
        conn.execute(
            "UPDATE tool_result_rows SET output = replace(v.output, 'box', 'crate'), "
            "output_position = NULL FROM tool_results v WHERE v.run_id = tool_result_rows.run_id "
            "AND v.step_idx = tool_result_rows.step_idx AND v.call_idx = tool_result_rows.call_idx "
            "AND tool_result_rows.run_id = ? AND tool_result_rows.step_idx = 2",
            [run_id],
        )
    before = query_rows(db, "SELECT count(*) AS n FROM steps")

    done = _resume(capsys, monkeypatch, db, run_id)

    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert f"error: run {run_id}: replaying step 2's call 0 (open_box)" in done.stderr
    assert "cannot be restored" in done.stderr
    assert query_rows(db, "SELECT count(*) AS n FROM steps") == before
    assert query_rows(db, "SELECT status, resumptions FROM runs") == [
        {"status": "interrupted", "resumptions": 0}
    ]


def _no_endpoint_settings(db: Path, run_id: str) -> None:
    with duckdb.connect(str(db)) as conn:
        conn.execute(
            "UPDATE runs SET settings = json_object('model', 'sim-reasoner-1') WHERE id = ?",
            [run_id],
        )


def _task_edited(db: Path, run_id: str) -> None:
    with duckdb.connect(str(db)) as conn:
        conn.execute("UPDATE runs SET task_sha256 = repeat('0', 64) WHERE id = ?", [run_id])


def _url_with_query(db: Path, run_id: str) -> None:
    with duckdb.connect(str(db)) as conn:
        conn.execute(
            "UPDATE runs SET settings = json_merge_patch(settings, "
            '\'{"endpoint": {"base_url_exact": false}}\') WHERE id = ?',
            [run_id],
        )


REFUSALS = {
    "recorded-before-endpoints-were-stored": (_no_endpoint_settings, "record it anew"),
    "task-file-changed": (_task_edited, "has changed since it was recorded"),
    "url-stored-without-its-query": (_url_with_query, "stored without its credentials"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_run_that_cannot_be_rebuilt_as_recorded_is_refused_in_one_line(
    sim: SimServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    case: str,
) -> None:
    db = tmp_path / "t.duckdb"
    run_id = _recorded(db, sim, "chain_short")
    cut(db, run_id, steps=2)
    spoil, fragment = REFUSALS[case]
    spoil(db, run_id)

    named = _resume(capsys, monkeypatch, db, run_id)
    every = _resume(capsys, monkeypatch, db)

    assert named.returncode == 2 and len(named.stderr.splitlines()) == 1, named.stderr
    assert named.stderr.startswith(f"error: run {run_id}: ") and fragment in named.stderr
    # Taking every interrupted run, the one left out is named, then nothing is left.
    assert every.returncode == 2, every.stderr
    assert every.stderr.splitlines() == [
        f"skipped: {named.stderr.removeprefix('error: ').strip()}",
        f"error: {db}: no interrupted run can be resumed (see above)",
    ]
    assert query_rows(db, "SELECT status FROM runs") == [{"status": "interrupted"}]


def test_a_missing_key_variable_refuses_before_anything_is_sent(
    sim: SimServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = tmp_path / "t.duckdb"
    monkeypatch.setenv("TRACES_TEST_RESUME_KEY", "sk-test-resume-key")
    done = run_cli_in_process(
        capsys, monkeypatch, "record", "--task", "chain_short", "--base-url", sim.base_url,
        "--model", "sim-reasoner-1", "--api-key-env", "TRACES_TEST_RESUME_KEY",
        "--db", str(db),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    cut(db, run_id, steps=2)
    monkeypatch.delenv("TRACES_TEST_RESUME_KEY")

    refused = _resume(capsys, monkeypatch, db, run_id)

    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        f"error: run {run_id}: environment variable TRACES_TEST_RESUME_KEY is not set "
        f"(it must hold the API key for {sim.base_url})"
    ]
    monkeypatch.setenv("TRACES_TEST_RESUME_KEY", "sk-test-resume-key")
    assert _resume(capsys, monkeypatch, db, run_id).returncode == 0
    assert ending(db, run_id)["status"] == "completed"


def test_a_profile_run_resumes_with_its_profile_and_refuses_an_edited_one(
    sim: SimServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    providers = tmp_path / "providers.toml"
    profile = (
        f'[local]\nbase_url = "{sim.base_url}"\nmodels = ["sim-reasoner-1"]\n'
        'dialect = "openai"\nextra_body = {top_k = 20}\n'
    )
    providers.write_text(profile, encoding="utf-8")
    monkeypatch.setenv("TRACES_PROVIDERS", str(providers))
    db, reference = tmp_path / "t.duckdb", tmp_path / "reference.duckdb"
    args = ["record", "--task", "chain_short", "--provider", "local", "--no-stream"]
    done = run_cli_in_process(capsys, monkeypatch, *args, "--db", str(reference))
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    shutil.copy(reference, db)
    cut(db, run_id, steps=2)

    providers.write_text(profile.replace("top_k = 20", "top_k = 40"), encoding="utf-8")
    edited = _resume(capsys, monkeypatch, db, run_id)
    assert edited.returncode == 2
    assert edited.stderr.splitlines() == [
        f"error: run {run_id}: provider profile local's extra_body is not what the run was "
        "recorded with"
    ]
    providers.write_text(profile, encoding="utf-8")
    assert _resume(capsys, monkeypatch, db, run_id).returncode == 0
    resumed = exchanges(db, run_id)
    assert resumed == exchanges(reference, run_id)
    assert all(step["params"]["top_k"] == 20 for step in resumed)


@pytest.fixture
def flaky_sim() -> Iterator[SimServer]:
    """A host whose 5xx errors come back on half the attempts: some runs meet four in a row
    and end with a provider error; the same server asked again rolls again."""
    with SimServer(SimConfig(faults={"server_error_5xx": 0.5})) as server:
        yield server


def test_runs_that_ended_with_provider_errors_are_recorded_again(
    flaky_sim: SimServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = tmp_path / "t.duckdb"
    args = ["record", "--task", "chain_short", "--base-url", flaky_sim.base_url]
    args += ["--model", "sim-reasoner-1", "--no-stream", "--repeat", "8", "--seed", "11"]
    first = run_cli_in_process(capsys, monkeypatch, *args, "--db", str(db))
    assert first.returncode == 0, first.stderr
    failed = [
        r["id"]
        for r in query_rows(
            db, "SELECT id FROM runs WHERE termination = 'provider_error' ORDER BY id"
        )
    ]
    assert failed, "the fault rate gave no failed run to retry"

    retried = run_cli_in_process(
        capsys, monkeypatch, "record", "--retry-failed", "--db", str(db), "-f", "json"
    )

    assert retried.returncode == 0, retried.stderr
    rows = json.loads(retried.stdout)
    assert sorted(r["retry_of"] for r in rows) == failed
    links = query_rows(
        db,
        # Parenthesized: DuckDB 1.5 (the lake extra's) reads `a->>'$.k' = b->>'$.k'` otherwise.
        "SELECT n.id, n.seed = o.seed AS same_seed, (n.settings->>'$.seed') = "
        "(o.settings->>'$.seed') AS same_request_seed, n.task = o.task AS same_task, "
        "o.status AS old_status FROM runs n JOIN runs o ON n.retry_of = o.id",
    )
    assert len(links) == len(failed)
    assert all(link["same_seed"] and link["same_request_seed"] for link in links)
    assert all(link["same_task"] and link["old_status"] == "failed" for link in links)
    by_id = sorted(rows, key=lambda r: r["id"])
    for link, row in zip(sorted(links, key=lambda r: r["id"]), by_id, strict=True):
        assert link["id"] == row["id"]
        # The same first request: a retry asks what the failed run asked.
        assert (
            exchanges(db, row["id"])[0]["messages"] == exchanges(db, row["retry_of"])[0]["messages"]
        )
    listed = json.loads(run_cli("runs", "--db", str(db), "-f", "json", "--limit", "0").stdout)
    assert {r["id"]: r["retry_of"] for r in listed if r["retry_of"]} == {
        r["id"]: r["retry_of"] for r in rows
    }
    table = run_cli("runs", "--db", str(db), "--limit", "0").stdout
    assert "retry_of" in table.splitlines()[0]

    # Retried runs are not retried twice; a retry that failed in turn is, once asked.
    still_failed = [r["id"] for r in rows if r["termination"] == "provider_error"]
    second = run_cli_in_process(
        capsys, monkeypatch, "record", "--retry-failed", "--db", str(db), "-f", "json"
    )
    if still_failed:
        assert second.returncode == 0, second.stderr
        assert sorted(r["retry_of"] for r in json.loads(second.stdout)) == sorted(still_failed)
    else:
        assert second.returncode == 2
        assert "no run ended with a provider error that no run retries yet" in second.stderr
    named = run_cli_in_process(
        capsys, monkeypatch, "record", "--retry-failed", failed[0], "--db", str(db)
    )
    assert named.returncode == 2
    assert named.stderr.startswith(f"error: run {failed[0]} was retried already (by ")
    forced = run_cli_in_process(
        capsys, monkeypatch, "record", "--retry-failed", failed[0], "--again", "--db", str(db)
    )
    assert forced.returncode == 0, forced.stderr
    assert len(query_rows(db, "SELECT id FROM runs WHERE retry_of = ?", [failed[0]])) == 2
