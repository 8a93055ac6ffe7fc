"""What `traces proxy` adds: time to first byte and throughput through the proxy against the
same client talking to the simulator directly, in the same run, in interleaved rounds.

Usage:
    .venv/bin/python benchmarks/bench_proxy.py [--rounds 3] [--sequential 200]
        [--streams 64] [--per-stream 10] [--latency-ms 0] [--json out.json]

The simulator and the proxy (`traces proxy`, the real command, recording into a fresh store
through its store server) each run in a process of their own; the client is an
`httpx2.AsyncClient` streaming chat-completions requests (`stream: true`) and timing the
first body byte. Two workloads per arm and round:

- sequential: one request at a time, so the time to first byte is the proxy's added latency
  and nothing else (no queueing);
- concurrent: `--streams` clients each sending `--per-stream` requests back to back: the
  requests per second and the time to first byte under that load.

Every request is a new conversation (a distinct prompt), so the proxy begins a run for each:
the costliest case for it. Once the last round is over the proxy is stopped (SIGINT) and the
steps it recorded are counted against the requests sent through it.

On a machine shared with other work the wall-clock figures move with the load; the CPU time
the proxy process and the simulator spent per request (read from /proc, Linux) moves much
less, and is printed beside them: what the proxy costs, against what the simulator behind it
costs to answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb
import httpx2

_SIM_CODE = """
import sys
from traces.sim.config import SimConfig
from traces.sim.server import serve_forever

serve_forever(SimConfig(latency_ms=float(sys.argv[1])), "127.0.0.1", 0,
              on_ready=lambda url: print(url, flush=True))
"""


def _start(
    command: list[str], env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    if not url.startswith("http"):
        process.kill()
        raise SystemExit(f"{command[:4]} failed to start (got {url!r})")
    return process, url


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _one(client: httpx2.AsyncClient, url: str, prompt: str) -> float:
    """Send one streamed request; milliseconds to its first body byte (read to the end)."""
    body = {
        "model": "sim-reasoner-1",
        "stream": True,
        "messages": [{"role": "user", "content": prompt}],
    }
    t0 = time.perf_counter()
    first: float | None = None
    async with client.stream("POST", f"{url}/chat/completions", json=body) as response:
        async for _ in response.aiter_raw():
            if first is None:
                first = (time.perf_counter() - t0) * 1000
    if response.status_code != 200 or first is None:
        raise SystemExit(f"{url}: HTTP {response.status_code}, {'a body' if first else 'no body'}")
    return first


@dataclass
class Result:
    """One workload of one arm in one round."""

    arm: str
    workload: str
    round: int
    requests: int
    seconds: float
    ttfb_p50_ms: float
    ttfb_p99_ms: float
    proxy_cpu_ms: float | None = None
    """CPU time of the proxy process per request (None: the direct arm, or no /proc)."""
    sim_cpu_ms: float | None = None
    """CPU time of the simulator per request."""

    @property
    def per_s(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds


async def _sequential(url: str, count: int, tag: str) -> list[float]:
    async with httpx2.AsyncClient(timeout=60) as client:
        await _one(client, url, f"warm {tag}")
        return [await _one(client, url, f"Question {tag}-{i}?") for i in range(count)]


async def _concurrent(url: str, streams: int, per_stream: int, tag: str) -> list[float]:
    limits = httpx2.Limits(max_connections=None, max_keepalive_connections=streams)
    async with httpx2.AsyncClient(timeout=120, limits=limits) as client:

        async def stream(number: int) -> list[float]:
            return [await _one(client, url, f"Task {tag}-{number}-{i}.") for i in range(per_stream)]

        results = await asyncio.gather(*(stream(n) for n in range(streams)))
    return [t for times in results for t in times]


def _cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (None where /proc cannot tell)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _per_request_ms(before: float | None, after: float | None, requests: int) -> float | None:
    return None if before is None or after is None else (after - before) * 1000 / requests


def _measure(
    arm: str,
    url: str,
    workload: str,
    round_: int,
    args: argparse.Namespace,
    pids: dict[str, int],
) -> Result:
    cpu_before = {name: _cpu_s(pid) for name, pid in pids.items()}
    t0 = time.perf_counter()
    tag = f"{arm}{round_}"
    if workload == "sequential":
        times = asyncio.run(_sequential(url, args.sequential, tag))
    else:
        times = asyncio.run(_concurrent(url, args.streams, args.per_stream, tag))
    seconds = time.perf_counter() - t0
    cpu = {
        name: _per_request_ms(cpu_before[name], _cpu_s(pid), len(times))
        for name, pid in pids.items()
    }
    return Result(
        arm,
        workload,
        round_,
        len(times),
        seconds,
        _percentile(times, 0.5),
        _percentile(times, 0.99),
        proxy_cpu_ms=cpu["proxy"] if arm == "proxy" else None,
        sim_cpu_ms=cpu["sim"],
    )


def _cpu_text(proxy_ms: float | None, sim_ms: float | None) -> str:
    parts = [] if proxy_ms is None else [f"proxy {proxy_ms:.2f}"]
    parts += [] if sim_ms is None else [f"simulator {sim_ms:.2f}"]
    return f"  CPU ms/request: {', '.join(parts)}" if parts else ""


def _load() -> str:
    if not hasattr(os, "getloadavg"):
        return "unknown"
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def main() -> None:
    """Run the rounds and print (and optionally write) the medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sequential", type=int, default=200)
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--per-stream", type=int, default=10)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    db = workdir / "proxy.duckdb"
    sim, sim_url = _start([sys.executable, "-c", _SIM_CODE, str(args.latency_ms)])
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("TRACES_DB", None)
    # Runs end (and are checked) when the proxy stops: what is timed is the relay and the
    # recording, not the checks, which run once a conversation has gone quiet.
    command = ["proxy", "--upstream", sim_url, "--port", "0", "--db", str(db), "--idle", "600"]
    proxy, proxy_url = _start([sys.executable, "-m", "analyzer", *command], env)
    pids = {"proxy": proxy.pid, "sim": sim.pid}
    results: list[Result] = []
    through_proxy = 0
    print(f"load average at the start: {_load()}", flush=True)
    try:
        for round_ in range(args.rounds):
            arms = [("direct", sim_url), ("proxy", proxy_url)]
            if round_ % 2:
                arms.reverse()
            for workload in ("sequential", "concurrent"):
                for arm, url in arms:
                    result = _measure(arm, url, workload, round_, args, pids)
                    results.append(result)
                    if arm == "proxy":
                        through_proxy += result.requests + (workload == "sequential")
                    print(
                        f"round {round_} {workload:10} {arm:6} {result.per_s:8.1f} req/s  "
                        f"ttfb p50 {result.ttfb_p50_ms:6.2f} ms  p99 {result.ttfb_p99_ms:6.2f} ms"
                        f"{_cpu_text(result.proxy_cpu_ms, result.sim_cpu_ms)}",
                        flush=True,
                    )
    finally:
        proxy.send_signal(signal.SIGINT)
        proxy.wait(300)
        sim.terminate()
        sim.wait(30)
    with duckdb.connect(str(db), read_only=True) as conn:
        row = conn.execute("SELECT count(*) FROM steps").fetchone()
    recorded = int(row[0]) if row else 0
    summary: dict[str, dict[str, float]] = {}
    for workload in ("sequential", "concurrent"):
        for arm in ("direct", "proxy"):
            mine = [r for r in results if r.arm == arm and r.workload == workload]
            summary[f"{workload}/{arm}"] = {
                "req_per_s": statistics.median(r.per_s for r in mine),
                "ttfb_p50_ms": statistics.median(r.ttfb_p50_ms for r in mine),
                "ttfb_p99_ms": statistics.median(r.ttfb_p99_ms for r in mine),
            }
            cpu = {
                "proxy_cpu_ms": _median([r.proxy_cpu_ms for r in mine]),
                "sim_cpu_ms": _median([r.sim_cpu_ms for r in mine]),
            }
            summary[f"{workload}/{arm}"] |= {k: v for k, v in cpu.items() if v is not None}
    print(f"load average at the end: {_load()}")
    print("\nmedian over rounds:")
    for workload in ("sequential", "concurrent"):
        direct, proxied = summary[f"{workload}/direct"], summary[f"{workload}/proxy"]
        print(
            f"  {workload:10} ttfb p50 +{proxied['ttfb_p50_ms'] - direct['ttfb_p50_ms']:.2f} ms "
            f"(direct {direct['ttfb_p50_ms']:.2f}, proxy {proxied['ttfb_p50_ms']:.2f}), "
            f"p99 +{proxied['ttfb_p99_ms'] - direct['ttfb_p99_ms']:.2f} ms; throughput "
            f"{proxied['req_per_s']:.0f} vs {direct['req_per_s']:.0f} req/s "
            f"(x{proxied['req_per_s'] / direct['req_per_s']:.2f})"
            f"{_cpu_text(proxied.get('proxy_cpu_ms'), proxied.get('sim_cpu_ms'))}"
        )
    print(f"  recorded steps {recorded} of {through_proxy} requests sent through the proxy")
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "config": vars(args) | {"json": str(args.json)},
                    "machine": {
                        "cpus": os.cpu_count(),
                        "python": platform.python_version(),
                        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
                    },
                    "summary": summary,
                    "recorded_steps": recorded,
                    "proxied_requests": through_proxy,
                    "rounds": [asdict(r) for r in results],
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
