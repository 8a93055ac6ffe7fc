"""What a task's own tool costs per call: MCP (stdio, streamable HTTP) and Python tools against
calling the same function in process.

Run by hand (it is not a test and asserts nothing about time):

    nice .venv/bin/python benchmarks/bench_mcp.py [--calls 300] [--rounds 3] [--json PATH]

Every arm calls `word_stats` from `samples/byo/sample_tools.py` with the same arguments:

- `in process`: the function called directly (the baseline);
- `python tool`: through the `tools` world's Python tool (`traces.tools.python_tools`):
  arguments checked against the schema and validated by the signature's model, the function
  run in a worker thread, the result turned into JSON text;
- `mcp stdio`: through `traces.tools.mcp_servers.McpConnection` to
  `samples/byo/sample_mcp_server.py` started as a subprocess (one JSON-RPC round trip over
  pipes per call);
- `mcp http`: the same server over streamable HTTP on loopback.

Rounds are interleaved (each arm once per round, `--calls` calls one after another, as a run
makes them); each arm's median per-call wall time over the rounds is reported with its ratio
to the baseline of the same run. Servers are started once per round, outside the timing; their
start-up (to the tools listed) is reported separately, since a run pays it once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BYO = REPO / "samples" / "byo"
sys.path.insert(0, str(BYO))

import sample_tools  # noqa: E402

from traces.tools.mcp_servers import McpConnection  # noqa: E402
from traces.tools.python_tools import load_python_tool  # noqa: E402

ARGUMENTS = {"text": "the cat saw the other cat on the mat", "top": 2}
ARMS = ("in process", "python tool", "mcp stdio", "mcp http")


async def _time_calls(call: Callable[[], Awaitable[Any]], calls: int) -> float:
    """Mean seconds per call over `calls` sequential calls (after one untimed call)."""
    await call()  # warm: the first call pays imports and connection set-up
    started = time.perf_counter()
    for _ in range(calls):
        await call()
    return (time.perf_counter() - started) / calls


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        if process.poll() is not None:
            raise SystemExit("the sample HTTP server exited")
        time.sleep(0.05)
    raise SystemExit("the sample HTTP server did not listen within 60 s")


async def _round(calls: int) -> tuple[dict[str, float], dict[str, float]]:
    per_call: dict[str, float] = {}
    startup: dict[str, float] = {}

    async def direct() -> Any:
        return sample_tools.word_stats(**ARGUMENTS)

    per_call["in process"] = await _time_calls(direct, calls)

    tool = load_python_tool("sample_tools:word_stats", BYO)

    async def python_tool() -> Any:
        outcome = await tool.call(ARGUMENTS, 30)
        assert outcome.error is None, outcome.error
        return outcome

    per_call["python tool"] = await _time_calls(python_tool, calls)

    stdio = McpConnection("sample", command=[sys.executable, str(BYO / "sample_mcp_server.py")])
    started = time.perf_counter()
    await stdio.start(60)
    startup["mcp stdio"] = time.perf_counter() - started
    try:
        per_call["mcp stdio"] = await _time_calls(_mcp_call(stdio), calls)
    finally:
        await stdio.close()

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, str(BYO / "sample_mcp_server.py"), "--http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port, server)
        http = McpConnection("sample", url=f"http://127.0.0.1:{port}/mcp")
        started = time.perf_counter()
        await http.start(60)
        startup["mcp http"] = time.perf_counter() - started
        try:
            per_call["mcp http"] = await _time_calls(_mcp_call(http), calls)
        finally:
            await http.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    return per_call, startup


def _mcp_call(connection: McpConnection) -> Callable[[], Awaitable[Any]]:
    async def call() -> Any:
        outcome = await connection.call("word_stats", ARGUMENTS, 30)
        assert outcome.error is None, outcome.error
        return outcome

    return call


def main() -> None:
    """Parse the options, run the rounds, print the table (and write JSON if asked)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per arm per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    options = parser.parse_args()
    rounds = [asyncio.run(_round(options.calls)) for _ in range(options.rounds)]
    median = {arm: statistics.median(r[0][arm] for r in rounds) for arm in ARMS}
    boot = {arm: statistics.median(r[1][arm] for r in rounds) for arm in ("mcp stdio", "mcp http")}
    base = median["in process"]
    print(f"{'arm':<12} {'per call':>12} {'ratio':>10} {'start-up':>10}")
    for arm in ARMS:
        start = f"{boot[arm] * 1000:.0f} ms" if arm in boot else ""
        print(f"{arm:<12} {median[arm] * 1e6:>9.1f} µs {median[arm] / base:>9.0f}× {start:>10}")
    if options.json is not None:
        options.json.write_text(
            json.dumps(
                {
                    "config": {"calls": options.calls, "rounds": options.rounds},
                    "machine": {
                        "python": platform.python_version(),
                        "cpus": os.cpu_count(),
                        "platform": platform.platform(),
                    },
                    "per_call_s": median,
                    "ratio_to_in_process": {arm: median[arm] / base for arm in ARMS},
                    "startup_s": boot,
                    "rounds": [{"per_call_s": r[0], "startup_s": r[1]} for r in rounds],
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
