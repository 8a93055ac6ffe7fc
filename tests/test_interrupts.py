"""Ctrl-C and SIGTERM at any moment: one stderr line, exit 130, no traceback, no process left.

Real processes and real signals: the command runs as `traces` does (`python -m analyzer`) in
a process group of its own, and the signal goes to the whole group, as a terminal's Ctrl-C
does (the writer process and import workers receive it too).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from traces.importing.parallel import WorkerPool
from traces.store.recorder import Recorder

from conftest import REPO, TASKS, group_processes, run_cli

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="signals and /proc")

_INTERRUPTED = re.compile(r"error: interrupted|interrupted: runs? \S+(, \S+)* left interrupted")


def _signal_group_after(args: list[str], delay: float, sig: int) -> tuple[int, str, int]:
    """Run `traces ARGS` in its own group, signal the group after `delay` seconds; returns
    the exit code, stderr and the pid (the group id)."""
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("TRACES_DB", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "analyzer", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        time.sleep(delay)
        os.killpg(proc.pid, sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, err, proc.pid


def _blocked_or_ignored(pid: int) -> set[int]:
    """Which of SIGINT and SIGTERM process `pid` blocks or ignores right now."""
    masks = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("SigBlk", "SigIgn"):
            masks[key] = int(value.strip(), 16)
    either = masks["SigBlk"] | masks["SigIgn"]
    return {sig for sig in (signal.SIGINT, signal.SIGTERM) if either & (1 << (sig - 1))}


def _ignored(pid: int) -> set[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            mask = int(line.split(":")[1].strip(), 16)
            return {s for s in (signal.SIGINT, signal.SIGTERM) if mask & (1 << (s - 1))}
    return set()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("delay", "sig"),
    [
        (0.15, signal.SIGINT),  # the interpreter is importing the command line
        (0.6, signal.SIGINT),  # start-up: task, simulator, writer process
        (1.2, signal.SIGTERM),
        (2.5, signal.SIGINT),  # recording
    ],
)
def test_a_recording_stopped_at_any_moment_ends_with_one_line(
    tmp_path: Path, delay: float, sig: int
) -> None:
    db = tmp_path / "t.duckdb"
    code, err, pgid = _signal_group_after(
        ["record", "--task", str(TASKS / "chain.toml"), "--db", str(db)], delay, sig
    )
    assert code == 130, err
    assert len(err.splitlines()) == 1 and _INTERRUPTED.fullmatch(err.strip()), err
    time.sleep(0.2)  # the writer exits once its parent closed the pipe
    assert group_processes(pgid) == set()
    if db.exists():  # readable by every later command, no run left `running`
        conn = duckdb.connect(str(db), read_only=True)
        rows = conn.execute("SELECT id, status FROM runs ORDER BY id").fetchall()
        conn.close()
        assert all(status != "running" for _, status in rows), rows
        named = re.findall(r"\d{8}-\d{6}-[0-9a-f]{8}", err)
        assert set(named) == {run for run, status in rows if status == "interrupted"}


def test_the_writer_process_never_sees_ctrl_c(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "t.duckdb")
    try:
        pid = recorder.writer_pid
        assert pid is not None
        # Ignored for good once it is ready: it must commit what it receives until its
        # parent closes the pipe, whatever the terminal sends the group.
        assert _ignored(pid) == {signal.SIGINT, signal.SIGTERM}
    finally:
        recorder.close()


def test_import_workers_never_see_ctrl_c() -> None:
    with WorkerPool(2) as pool:
        pids = [worker.process.pid for worker in pool.workers]
        deadline = time.monotonic() + 30
        # From their first instant: blocked while they import, then ignored.
        for pid in pids:
            while _ignored(pid) != {signal.SIGINT, signal.SIGTERM}:
                assert _blocked_or_ignored(pid) == {signal.SIGINT, signal.SIGTERM}
                assert time.monotonic() < deadline, "the worker never got going"
                time.sleep(0.01)


def test_an_interrupt_during_shutdown_changes_nothing(tmp_path: Path) -> None:
    """A command that has said how it ended ignores later signals: no second line."""
    script = (
        "import os, signal, sys\n"
        "from traces import interrupts\n"
        "interrupts.install()\n"
        "try:\n"
        "    interrupts.exit_with(4, 'error: the first and only line')\n"
        "finally:\n"
        "    os.kill(os.getpid(), signal.SIGINT)  # as if Ctrl-C came during shutdown\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 4
    assert done.stderr.splitlines() == ["error: the first and only line"]


def test_ctrl_c_before_the_command_runs_is_one_line(tmp_path: Path) -> None:
    """A KeyboardInterrupt raised while the command line is imported ends as one line."""
    script = (
        "import os, signal, sys\n"
        "sys.argv = ['traces', 'runs']\n"
        "import builtins\n"
        "real_import = builtins.__import__\n"
        "def slow(name, *args, **kwargs):\n"
        "    if name == 'analyzer.cli':\n"  # the entry point has installed its handlers
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    return real_import(name, *args, **kwargs)\n"
        "builtins.__import__ = slow\n"
        "from analyzer.__main__ import main\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 130, done.stderr
    assert done.stderr.splitlines() == ["error: interrupted"]


def test_interrupted_names_the_runs_left_interrupted() -> None:
    from traces.running import left_interrupted

    assert left_interrupted(["a"]) == "interrupted: run a left interrupted"
    assert left_interrupted(["a", "b"]) == "interrupted: runs a, b left interrupted"
    assert _INTERRUPTED.fullmatch(left_interrupted(["20260101-000000-0a1b2c3d"]))


def test_a_finished_command_exits_with_its_own_code(tmp_path: Path) -> None:
    done = run_cli("runs", "--db", str(tmp_path / "missing.duckdb"))
    assert done.returncode == 4
    assert len(done.stderr.splitlines()) == 1
