"""Recording overhead: steps/s of our harness + recorder against a bare `openai` loop.

Run by hand (it is not a test and asserts nothing about time):

    .venv/bin/python benchmarks/bench_recording.py [--runs 64] [--steps 50]
        [--concurrency 64] [--rounds 3] [--stream] [--arms A,ours,B] [--latency-ms 0]
        [--live-every 5] [--no-verify] [--json PATH]

Three arms make the same calls to the same simulator at the same concurrency:

- `ours`: `traces.runner.record_runs` recording into a fresh DuckDB file (harness, endpoint
  client, normalizer, recorder with its writer process and group commit: everything
  `traces record` does).
- `A`: the loop people usually write, `await client.chat.completions.create(model=...,
  messages=..., tools=...)`, executing the same tool and sending the same conversation back.
- `B`: the same loop, but `messages` and `tools` go in `extra_body`, as `traces/client.py`
  sends them, so the SDK does not deep-transform the whole conversation on every call.
- `live` (not run by default: `--arms ours,live`): `ours` with the live checks `traces
  record` runs beside it, its running runs checked every `--live-every` seconds by the
  checker process (`analyzer.checks.live`), which shares the machine's cores: the ratio
  live / ours is what checking the findings so far costs the recording.

The simulator runs in a separate process, so its CPU does not share the GIL with the client
being measured. Arms are interleaved (A, ours, B, A, ours, B, ...) and each arm's median is
reported, because a small shared machine is noisy; ratios are taken between medians.

Before timing, one run per arm is recorded and the three conversations are compared message
by message, so the arms provably send the same requests (`--no-verify` skips this).
Per arm it also reports CPU per step: of this process (event loop and helper threads), of the
recorder's writer process (inserts and commits; arm `ours` only) and of the simulator process
(the last two on Linux only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import duckdb
import openai

from analyzer.checks.live import EVERY_ENV, LiveChecks
from traces.client import EndpointConfig
from traces.harness import HarnessSettings
from traces.runner import RunPlan, record_runs
from traces.sample_files import resolve_task
from traces.store.recorder import Recorder
from traces.tasks import ChainSpec, Task, build_environment, load_task, render_prompts

ArmName = Literal["A", "ours", "B", "live"]
ARMS: tuple[ArmName, ...] = ("A", "ours", "B", "live")
DEFAULT_ARMS: tuple[ArmName, ...] = ("A", "ours", "B")
ARM_LABELS: dict[ArmName, str] = {
    "A": "A: openai create(messages=, tools=)",
    "ours": "ours: record_runs + DuckDB",
    "B": "B: openai create(extra_body=)",
    "live": "live: ours + live checks",
}

CHAIN_TASK = resolve_task("chain")
MODEL = "sim-reasoner-1"
API_KEY = "sk-bench"  # the simulator accepts any key

# The simulator in its own interpreter: `serve_forever` binds port 0 and reports the URL
# through `on_ready`, which we print so the parent can read it from the pipe.
_SERVER_CODE = """
import sys
from traces.sim.config import SimConfig
from traces.sim.server import serve_forever

serve_forever(
    SimConfig(latency_ms=float(sys.argv[1])),
    "127.0.0.1",
    0,
    on_ready=lambda url: print(url, flush=True),
)
"""


# -- the simulator process -------------------------------------------------------------------


def process_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds process `pid` has used so far (Linux only, else None)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # utime and stime are fields 14 and 15 of stat(5); index 11/12 after the comm field.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class SimProcess:
    """The simulator served by `serve_forever` in a child process."""

    def __init__(self, latency_ms: float) -> None:
        """Start the child and wait for its base URL."""
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER_CODE, str(latency_ms)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("http"):
            self.stop()
            raise SystemExit(f"simulator failed to start (got {line!r})")
        self.base_url = line

    def cpu_s(self) -> float | None:
        """User + system CPU seconds the simulator has used so far (Linux only, else None)."""
        return process_cpu_s(self.proc.pid)

    def stop(self) -> None:
        """SIGTERM (uvicorn shuts down gracefully), then wait for the child."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- one measurement --------------------------------------------------------------------------


@dataclass
class Measurement:
    """One arm in one round."""

    arm: ArmName
    round: int
    runs: int
    steps: int
    succeeded: int
    wall_s: float
    client_cpu_s: float
    server_cpu_s: float | None
    writer_cpu_s: float | None = None
    checker_cpu_s: float | None = None

    @property
    def steps_per_s(self) -> float:
        """Model calls completed per wall-clock second."""
        return self.steps / self.wall_s

    def row(self) -> dict[str, Any]:
        """The measurement with its derived figures, for the JSON report."""
        data = asdict(self)
        data["steps_per_s"] = self.steps_per_s
        data["client_cpu_ms_per_step"] = 1000 * self.client_cpu_s / self.steps
        data["server_cpu_ms_per_step"] = (
            None if self.server_cpu_s is None else 1000 * self.server_cpu_s / self.steps
        )
        data["writer_cpu_ms_per_step"] = (
            None if self.writer_cpu_s is None else 1000 * self.writer_cpu_s / self.steps
        )
        data["checker_cpu_ms_per_step"] = (
            None if self.checker_cpu_s is None else 1000 * self.checker_cpu_s / self.steps
        )
        return data


@dataclass
class Bench:
    """What every arm runs: the task, the load and the endpoint."""

    task: Task
    runs: int
    concurrency: int
    seed: int
    stream: bool
    sim: SimProcess
    workdir: Path
    measurements: list[Measurement] = field(default_factory=list)


def chain_task(boxes: int) -> Task:
    """samples/tasks/chain.toml with `boxes` boxes instead of 300 (each run: boxes + 1 calls)."""
    task = load_task(CHAIN_TASK)
    return task.model_copy(update={"environment": ChainSpec(length=boxes), "max_steps": boxes + 20})


# -- arm "ours" -------------------------------------------------------------------------------


def _plan(bench: Bench, runs: int) -> RunPlan:
    return RunPlan(
        task=bench.task,
        provider="sim",
        endpoint=EndpointConfig(base_url=bench.sim.base_url, api_key_env=None, api_key=API_KEY),
        settings=HarnessSettings(model=MODEL, max_steps=bench.task.max_steps, stream=bench.stream),
        repeat=runs,
        concurrency=bench.concurrency,
        seed=bench.seed,
    )


async def arm_ours(
    bench: Bench, recorder: Recorder, runs: int, live: LiveChecks | None = None
) -> tuple[int, int]:
    """Record `runs` runs through `recorder` (ticking the `live` checks at each step, as
    `traces record` does); return (steps, successful runs)."""
    on_step = None if live is None else live.tick
    summaries = await record_runs(_plan(bench, runs), recorder, on_step=on_step)
    steps = sum(s.outcome.steps for s in summaries)
    return steps, sum(1 for s in summaries if s.outcome.success)


# -- arms A and B -----------------------------------------------------------------------------


async def _ask(
    client: openai.AsyncOpenAI,
    arm: ArmName,
    stream: bool,
    seed: int,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
) -> dict[str, Any]:
    """One model call; the assistant turn to append, built exactly as `traces.replay` does."""
    kwargs: dict[str, Any]
    if arm == "A":
        kwargs = {"model": MODEL, "messages": messages, "tools": tools, "seed": seed}
    else:
        # Fields in extra_body are sent verbatim and override the typed ones, so the SDK
        # transforms an empty list instead of the whole conversation (see traces/client.py).
        kwargs = {
            "model": MODEL,
            "messages": [],
            "seed": seed,
            "extra_body": {"messages": messages, "tools": tools},
        }
    content: str | None
    reasoning: str | None
    calls: list[dict[str, Any]] = []
    if not stream:
        response = await client.chat.completions.create(**kwargs)
        message = response.choices[0].message
        content = message.content
        reasoning = getattr(message, "reasoning_content", None)
        for call in message.tool_calls or []:
            function = call.function
            calls.append(
                {
                    "id": call.id,
                    "type": call.type or "function",
                    "function": {"name": function.name, "arguments": function.arguments},
                }
            )
    else:
        chunks = await client.chat.completions.create(
            **kwargs, stream=True, stream_options={"include_usage": True}
        )
        text: list[str] = []
        thought: list[str] = []
        by_index: dict[int, dict[str, Any]] = {}
        async for chunk in chunks:
            if not chunk.choices:
                continue  # the usage-only chunk
            delta = chunk.choices[0].delta
            if delta.content:
                text.append(delta.content)
            piece = getattr(delta, "reasoning_content", None)
            if piece:
                thought.append(piece)
            for d in delta.tool_calls or []:
                call = by_index.setdefault(
                    d.index,
                    {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
                )
                if d.id:
                    call["id"] = d.id
                if d.function is not None:
                    if d.function.name:
                        call["function"]["name"] = d.function.name
                    if d.function.arguments:
                        call["function"]["arguments"] += d.function.arguments
        content = "".join(text) if text else None
        reasoning = "".join(thought) if thought else None
        calls = [by_index[i] for i in sorted(by_index)]
    # Same keys, same order and same reasoning rule as traces.replay.replay_message("same").
    turn: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        turn["tool_calls"] = calls
    if reasoning:
        turn["reasoning_content"] = reasoning
    return turn


async def baseline_run(
    client: openai.AsyncOpenAI, arm: ArmName, bench: Bench, seed: int, sandbox: Path
) -> tuple[int, bool, list[dict[str, Any]]]:
    """One run of the task; return (model calls, success, final conversation)."""
    env = build_environment(bench.task, seed=seed, sandbox_dir=sandbox)
    system_prompt, user_prompt = render_prompts(bench.task, env)
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": user_prompt},
    ]
    tools = env.tool_specs()
    for step in range(bench.task.max_steps):
        turn = await _ask(client, arm, bench.stream, seed, messages, tools)
        messages.append(turn)
        if "tool_calls" not in turn:
            passed = env.check_success((turn["content"] or "").strip()).passed
            return step + 1, passed, messages
        for call in turn["tool_calls"]:
            outcome = await env.call(
                call["function"]["name"], json.loads(call["function"]["arguments"])
            )
            messages.append(
                {"role": "tool", "tool_call_id": call["id"] or "", "content": outcome.output}
            )
    return bench.task.max_steps, False, messages


async def arm_baseline(
    bench: Bench, arm: ArmName, runs: int
) -> tuple[int, int, list[list[dict[str, Any]]]]:
    """`runs` baseline runs, `bench.concurrency` at a time; return (steps, successes, convs)."""
    client = openai.AsyncOpenAI(base_url=bench.sim.base_url, api_key=API_KEY, max_retries=0)
    limit = asyncio.Semaphore(bench.concurrency)
    with tempfile.TemporaryDirectory(dir=bench.workdir) as sandboxes:

        async def one(i: int) -> tuple[int, bool, list[dict[str, Any]]]:
            sandbox = Path(sandboxes) / str(i)
            sandbox.mkdir()
            async with limit:
                return await baseline_run(client, arm, bench, bench.seed + i, sandbox)

        try:
            results = await asyncio.gather(*(one(i) for i in range(runs)))
        finally:
            await client.close()
    return (
        sum(r[0] for r in results),
        sum(1 for r in results if r[1]),
        [r[2] for r in results],
    )


# -- checks and timing ------------------------------------------------------------------------


def recorded_conversation(db: Path) -> list[dict[str, Any]]:
    """The full conversation of the (only) run in `db`, rebuilt from its last step."""
    with duckdb.connect(str(db), read_only=True) as conn:
        row = conn.execute(
            "SELECT run_id, idx, replay_message_hash FROM steps ORDER BY idx DESC LIMIT 1"
        ).fetchone()
        assert row is not None, "no steps recorded"
        run_id, idx, last = row
        sent = conn.execute("SELECT body FROM request_messages(?, ?)", [run_id, idx]).fetchall()
        final = conn.execute("SELECT body FROM messages WHERE hash = ?", [last]).fetchone()
        assert final is not None
    return [json.loads(body) for (body,) in [*sent, final]]


def verify_same_conversation(bench: Bench) -> None:
    """Run one run per arm and check all three built the same conversation, message by message.

    The sim's completion ids and tool-call ids are deterministic per conversation, so any
    difference in what an arm sends back shows up as a different conversation.
    """
    db = bench.workdir / "verify.duckdb"
    recorder = Recorder(db)
    try:
        asyncio.run(arm_ours(bench, recorder, 1))
    finally:
        recorder.close()
    ours = recorded_conversation(db)
    db.unlink()
    for arm in ("A", "B"):
        _, _, convs = asyncio.run(arm_baseline(bench, arm, 1))
        if convs[0] != ours:
            first = next(
                (i for i, (x, y) in enumerate(zip(convs[0], ours, strict=False)) if x != y),
                min(len(convs[0]), len(ours)),
            )
            raise SystemExit(
                f"arm {arm} built a different conversation than ours "
                f"(first difference at message {first}: {convs[0][first : first + 1]} "
                f"vs {ours[first : first + 1]})"
            )
    print(
        f"verified: A, B and ours send identical conversations ({len(ours)} messages)",
        file=sys.stderr,
    )


def measure(bench: Bench, arm: ArmName, round_no: int) -> Measurement:
    """Run one arm once under its own event loop and time it."""
    db = bench.workdir / f"ours-{round_no}.duckdb"
    # Creating and migrating the database file is one-time setup, like building a client:
    # it stays outside the timed region. Closing it (stopping the writer process, nothing
    # left to flush since every step was awaited durable) does too.
    recorder = Recorder(db) if arm in ("ours", "live") else None
    live = LiveChecks(db) if arm == "live" else None
    writer_pid = recorder.writer_pid if recorder is not None else None
    writer_before = process_cpu_s(writer_pid)
    server_before = bench.sim.cpu_s()
    cpu_before = time.process_time()
    checker = None
    t0 = time.perf_counter()
    try:
        if live is not None:
            live.watch()  # as `traces record`: the checker starts once the recording lasts
        if recorder is not None:
            steps, ok = asyncio.run(arm_ours(bench, recorder, bench.runs, live))
        else:
            steps, ok, _ = asyncio.run(arm_baseline(bench, arm, bench.runs))
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu_before
        server_after = bench.sim.cpu_s()
        writer_after = process_cpu_s(writer_pid)
        if live is not None:
            checker = process_cpu_s(live.child_pid)  # its rounds while the runs recorded
    finally:
        if live is not None:
            live.finish()
        if recorder is not None:
            recorder.close()
    db.unlink(missing_ok=True)
    server = None if server_before is None or server_after is None else server_after - server_before
    writer = None if writer_before is None or writer_after is None else writer_after - writer_before
    return Measurement(arm, round_no, bench.runs, steps, ok, wall, cpu, server, writer, checker)


# -- report -----------------------------------------------------------------------------------


def summarize(bench: Bench) -> dict[str, Any]:
    """Per-arm medians and the two ratios."""
    arms: dict[str, dict[str, Any]] = {}
    for arm in ARMS:
        rows = [m for m in bench.measurements if m.arm == arm]
        if not rows:
            continue
        server = [m.server_cpu_s / m.steps for m in rows if m.server_cpu_s is not None]
        writer = [m.writer_cpu_s / m.steps for m in rows if m.writer_cpu_s is not None]
        checker = [m.checker_cpu_s / m.steps for m in rows if m.checker_cpu_s is not None]
        arms[arm] = {
            "label": ARM_LABELS[arm],
            "steps_per_s_median": statistics.median(m.steps_per_s for m in rows),
            "steps_per_s_all": [round(m.steps_per_s, 1) for m in rows],
            "client_cpu_ms_per_step_median": statistics.median(
                1000 * m.client_cpu_s / m.steps for m in rows
            ),
            "server_cpu_ms_per_step_median": 1000 * statistics.median(server) if server else None,
            "writer_cpu_ms_per_step_median": 1000 * statistics.median(writer) if writer else None,
            "checker_cpu_ms_per_step_median": (
                1000 * statistics.median(checker) if checker else None
            ),
            "steps_per_round": rows[0].steps,
            "successful_runs_per_round": rows[0].succeeded,
        }
    summary: dict[str, Any] = {"arms": arms}
    if "ours" in arms and "live" in arms:
        # Paired by round (the arms alternate), so a round's noise weighs on both.
        by_round = {(m.arm, m.round): m.steps_per_s for m in bench.measurements}
        paired = [
            by_round[("live", r)] / by_round[("ours", r)]
            for (arm, r) in by_round
            if arm == "live" and ("ours", r) in by_round
        ]
        summary["ratio_live_over_ours"] = statistics.median(paired)
        summary["ratio_live_over_ours_all"] = [round(x, 3) for x in paired]
    if "ours" in arms:
        for base in ("A", "B"):
            if base in arms:
                summary[f"ratio_ours_over_{base}"] = (
                    arms["ours"]["steps_per_s_median"] / arms[base]["steps_per_s_median"]
                )
    return summary


def print_table(summary: dict[str, Any], bench: Bench) -> None:
    """A small human-readable table on stdout."""
    mode = "stream" if bench.stream else "non-stream"
    print(
        f"\n{mode}: {bench.runs} runs x {bench.task.environment.length + 1} calls, "  # type: ignore[attr-defined]
        f"concurrency {bench.concurrency}, {os.cpu_count()} CPUs"
    )
    print(
        f"{'arm':38} {'steps/s':>9} {'client ms/step':>15} {'writer ms/step':>15} "
        f"{'sim ms/step':>12}  rounds"
    )

    def ms(value: float | None, width: int) -> str:
        return f"{'-' if value is None else f'{value:.2f}':>{width}}"

    for arm in ARMS:
        if arm not in summary["arms"]:
            continue
        a = summary["arms"][arm]
        print(
            f"{a['label']:38} {a['steps_per_s_median']:9.0f} "
            f"{a['client_cpu_ms_per_step_median']:15.2f} "
            f"{ms(a['writer_cpu_ms_per_step_median'], 15)} "
            f"{ms(a['server_cpu_ms_per_step_median'], 12)}  {a['steps_per_s_all']}"
        )
    for base in ("A", "B"):
        if f"ratio_ours_over_{base}" in summary:
            print(f"ours / {base} = {summary[f'ratio_ours_over_{base}']:.2f}")
    if "ratio_live_over_ours" in summary:
        checker = summary["arms"]["live"]["checker_cpu_ms_per_step_median"]
        print(
            f"live / ours = {summary['ratio_live_over_ours']:.3f} (per round "
            f"{summary['ratio_live_over_ours_all']}); checker CPU {ms(checker, 0).strip()} ms/step"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--runs", type=int, default=64, help="runs per arm per round (default 64)")
    p.add_argument(
        "--steps",
        type=int,
        default=50,
        help="boxes in the chain; each run makes steps + 1 model calls (default 50)",
    )
    p.add_argument("--concurrency", type=int, default=64, help="concurrent runs (default 64)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--stream", action="store_true", help="stream responses (SSE)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first run")
    p.add_argument(
        "--latency-ms", type=float, default=0.0, help="artificial simulator latency per call"
    )
    p.add_argument(
        "--arms",
        default=",".join(DEFAULT_ARMS),
        help="comma-separated arms to run, in round order (default A,ours,B; also: live)",
    )
    p.add_argument(
        "--live-every",
        type=float,
        default=None,
        help=f"arm live: seconds between checks of the running runs (default: {EVERY_ENV}, else 5)",
    )
    p.add_argument("--no-verify", action="store_true", help="skip the same-conversation check")
    p.add_argument("--json", type=Path, help="also write the results as JSON to this path")
    args = p.parse_args(argv)
    args.arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    if not args.arms or any(a not in ARMS for a in args.arms):
        p.error(f"--arms takes a comma-separated subset of {','.join(ARMS)}")
    return args


def main(argv: list[str] | None = None) -> None:
    """Start the simulator, verify the arms agree, measure interleaved rounds, report."""
    args = parse_args(argv)
    if args.live_every is not None:
        os.environ[EVERY_ENV] = str(args.live_every)  # what `LiveChecks.watch` reads
    sim = SimProcess(args.latency_ms)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-recording-") as workdir:
            bench = Bench(
                task=chain_task(args.steps),
                runs=args.runs,
                concurrency=args.concurrency,
                seed=args.seed,
                stream=args.stream,
                sim=sim,
                workdir=Path(workdir),
            )
            if not args.no_verify:
                verify_same_conversation(bench)  # also warms up imports, server and pools
            for round_no in range(args.rounds):
                for arm in args.arms:
                    m = measure(bench, arm, round_no)
                    print(
                        f"round {round_no} {arm:4}: {m.steps} steps in {m.wall_s:.2f} s "
                        f"= {m.steps_per_s:.0f} steps/s ({m.succeeded}/{m.runs} runs succeeded)",
                        file=sys.stderr,
                    )
                    bench.measurements.append(m)
            summary = summarize(bench)
    finally:
        sim.stop()
    print_table(summary, bench)
    if args.json is not None:
        report = {
            "config": {
                "runs": args.runs,
                "steps": args.steps,
                "calls_per_run": args.steps + 1,
                "concurrency": args.concurrency,
                "rounds": args.rounds,
                "stream": args.stream,
                "latency_ms": args.latency_ms,
                "seed": args.seed,
                "arms": args.arms,
                "live_every_s": args.live_every,
            },
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "openai": openai.__version__,
                "duckdb": duckdb.__version__,
            },
            **summary,
            "measurements": [m.row() for m in bench.measurements],
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
