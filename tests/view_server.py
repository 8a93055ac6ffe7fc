"""`traces view` as a user starts it, for tests: the real command in a subprocess on an
ephemeral loopback port, its address read from its first stdout line, stopped by Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from traces.client import EndpointConfig
from traces.harness import HarnessSettings
from traces.runner import RunPlan, record_runs
from traces.sample_files import tasks_dir
from traces.store.recorder import Recorder
from traces.tasks import load_task

from conftest import REPO
from scripted_endpoint import ScriptedEndpoint, answer, tool_turn

EVIL_PROVIDER = "evil<b>\"&'"
"""A provider label that is markup."""
EVIL_ANSWER = "<script>alert(1)</script> <img src=x onerror=alert(2)>"
"""A final answer that is markup."""
EVIL_BOX = "<script>alert(3)</script>"
"""Tool-call arguments and a tool result that are markup."""


@dataclass
class Viewer:
    """A running `traces view`: its address and process."""

    url: str
    process: subprocess.Popen[str]


@contextmanager
def viewing(db: Path | str, *args: str) -> Iterator[Viewer]:
    """Serve `db` (a file, or a lake store's name) with `traces view --port 0 ARGS` until
    the block ends; Ctrl-C must then end it as it ends every command: exit 130, one line."""
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("TRACES_DB", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "analyzer", "view", "--db", str(db), "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline().strip()
        if not first.startswith("http://"):
            process.kill()
            _, err = process.communicate(timeout=30)
            raise AssertionError(f"traces view did not start: {first!r} {err!r}")
        yield Viewer(first, process)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    err = process.stderr.read() if process.stderr else ""
    assert process.returncode == 130, err
    assert err.splitlines()[-1] == "error: interrupted", err


def record_markup(db: Path) -> str:
    """Record one run whose provider label, tool-call arguments, tool result and final
    answer are markup, from a scripted endpoint over HTTP; its run id."""
    script = ScriptedEndpoint(
        [tool_turn(("open_box", json.dumps({"box_id": EVIL_BOX}))), answer(EVIL_ANSWER)]
    )
    with script.serving():
        plan = RunPlan(
            task=load_task(tasks_dir() / "chain_short.toml"),
            provider=EVIL_PROVIDER,
            endpoint=EndpointConfig(base_url=script.base_url, api_key_env=None, api_key="test-key"),
            settings=HarnessSettings(model="scripted", max_steps=4, stream=False),
        )
        recorder = Recorder(db)
        try:
            [summary] = asyncio.run(record_runs(plan, recorder))
        finally:
            recorder.close()
    return summary.id
