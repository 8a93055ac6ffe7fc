"""The simulator half of the findings corpus: runs recorded against the embedded simulator with
seeded faults, every model call labelled with the faults the simulator injected into it.

Ground truth is what the simulator says it did, not what the checks find: each chat response
names the faults it carries in `x-sim-faults`. The recorder keeps only a few response headers
(and rightly not that one), so the benchmark reads it on the server side instead. One uvicorn
server hosts every run's simulator under its own path prefix (`/r/KEY/v1`); a thin ASGI layer
in front of each notes the faults of every chat completion in the order the requests arrived.
A run sends one request at a time, so its k-th request is its k-th attempt, and a step of
`retries` failed attempts takes `retries + 1` of them. Nothing in the product changes.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_checks_faults import _recording

from analyzer.checks.loader import load_runs
from analyzer.checks.records import Run
from traces.client import EndpointConfig
from traces.dialects import DIALECTS
from traces.harness import HarnessSettings
from traces.replay import ReplayPolicy
from traces.retry import RetryPolicy
from traces.runner import RunPlan, record_runs
from traces.sample_files import tasks_dir
from traces.sim.app import Message, Receive, Scope, Send, SimApp
from traces.sim.config import SimConfig
from traces.sim.faults import FAULTS, StreamFault
from traces.store.database import open_for_reading
from traces.store.recorder import Recorder
from traces.tasks import load_task

UNANSWERED = "timeout"
"""The label of an attempt the simulator never answered. Only a stall (the `timeout` fault)
holds a response back, and when the client gives up first nobody is left to read the
`x-sim-faults` header: the stall is then the one fault the client saw."""

CRASHED = "(simulator error)"
"""The label of an attempt the simulator failed on with an exception of its own (uvicorn
answers 500): a simulator bug, not a fault. Runs with one are left out and listed."""

CLIENT_TIMEOUT_S = 2.0
"""Request deadline of runs whose faults need one (`timeout`, `endless_response`). Long
enough that a busy shared machine does not time out ordinary answers, short enough to keep
runs quick (the fault tests use 0.2 s)."""

_DEFAULT_TIMEOUT_S = 600.0
"""The request deadline of a run whose faults ask for none (tests/recording.py's)."""

MAX_RETRIES = 2
"""Retries of a transient failure, without backoff: enough for most steps to get through."""

_CHAT = "/v1/chat/completions"
_KEY_PARTS = 4
"""Path segments of a run's key (`RunSpec.key`: dialect/task/mode/seed)."""


def stream_only(name: str) -> bool:
    """Whether fault `name` can only fire on a streamed response."""
    return isinstance(FAULTS[name], StreamFault) or name.startswith("stream_")


@dataclass(frozen=True)
class RunSpec:
    """One run of the corpus: a task on one dialect, streamed or not, with its fault rates."""

    dialect: str
    task: str
    stream: bool
    seed: int
    faults: dict[str, float]

    @property
    def key(self) -> str:
        """`dialect/task/stream|plain/seed`: unique within a corpus, safe in a URL path."""
        return f"{self.dialect}/{self.task}/{'stream' if self.stream else 'plain'}/{self.seed}"


def eligible(name: str, dialect: str, stream: bool) -> bool:
    """Whether fault `name` belongs in a run of `dialect`, streamed or not.

    `reasoning_required_400` needs a client that drops reasoning (see `run_settings`); a
    dialect that itself requires reasoning back would then answer every later request with
    the same 400 of its own, which no fault label explains.
    """
    if stream_only(name) and not stream:
        return False
    return not (name == "reasoning_required_400" and DIALECTS[dialect].requires_reasoning_back)


def plan_corpus(
    *,
    dialects: Sequence[str],
    tasks: Sequence[str],
    seeds: int,
    rates: Sequence[float],
    faults_per_run: int,
    clean_share: float,
    base_seed: int,
    faults: Sequence[str] | None = None,
) -> list[RunSpec]:
    """Every dialect x task x stream-or-not x seed, each run with `faults_per_run` faults at
    rates drawn from `rates` (a `clean_share` of runs with none).

    Faults are dealt from a shuffled deck per stream mode, refilled when empty, so every fault
    meets about the same number of runs whatever the corpus size; the deal depends only on
    `base_seed`. `faults` limits the deck to those names (None: every fault), so a fault the
    whole deck meets too rarely to judge meets every few runs (the same seeds then deal other
    faults).
    """
    deck_of = sorted(FAULTS) if faults is None else sorted(set(faults))
    rng = random.Random(base_seed)
    decks: dict[bool, list[str]] = {False: [], True: []}
    specs = []
    for seed in range(base_seed, base_seed + seeds):
        for dialect in dialects:
            for task in tasks:
                for stream in (False, True):
                    rated: dict[str, float] = {}
                    if rng.random() >= clean_share:
                        dealt = _deal(rng, decks[stream], deck_of, dialect, stream, faults_per_run)
                        for name in dealt:
                            rated[name] = rng.choice(list(rates))
                    specs.append(RunSpec(dialect, task, stream, seed, rated))
    return specs


def _deal(
    rng: random.Random,
    deck: list[str],
    names: Sequence[str],
    dialect: str,
    stream: bool,
    count: int,
) -> list[str]:
    """`count` different faults off the top of `deck` (refilled from `names`) that fit the
    run; one that does not fit this dialect goes back to the bottom for the next run."""
    dealt: list[str] = []
    passed: list[str] = []
    while len(dealt) < count:
        if not deck:
            fits = [name for name in names if not stream_only(name) or stream]
            if not fits:
                break  # no fault of the deck fits this mode
            deck.extend(rng.sample(fits, len(fits)))
        name = deck.pop()
        if name in dealt or not eligible(name, dialect, stream):
            passed.append(name)
            if len(passed) > 2 * len(names):
                break  # nothing left that fits this run
            continue
        dealt.append(name)
    deck[:0] = passed
    return dealt


def sim_config(spec: RunSpec) -> SimConfig:
    """The simulator of one run: its dialect and faults, seeded by the run."""
    # The stall outlasts the client's deadline, so a `timeout` is a timeout.
    return SimConfig(
        seed=spec.seed, dialect=spec.dialect, faults=spec.faults, timeout_s=4 * CLIENT_TIMEOUT_S
    )


def run_settings(spec: RunSpec, max_steps: int) -> tuple[dict[str, Any], float]:
    """Harness settings and request deadline of one run: the dialect's, with what its faults
    need from the client. The fault tests say what that is (tests/test_checks_faults.py
    `_recording`: reasoning dropped for `reasoning_required_400`, `max_tokens` for
    `finish_length_hidden`, `tool_choice` for `tool_choice_ignored`, a short deadline for
    stalls), so a fault added there with its needs is recorded here as it should be."""
    dialect = DIALECTS[spec.dialect]
    needs = _recording("+".join(spec.faults)) if spec.faults else None
    replay = ReplayPolicy.for_dialect(dialect)
    extra_body = dict(dialect.extra_body)
    settings: dict[str, Any] = {
        "model": "sim-reasoner-1",
        "max_steps": max_steps,
        "stream": spec.stream,
        # Every failed attempt is kept in `retry_errors`, so retrying loses no evidence.
        "retry": RetryPolicy(base_s=0.0, max_retries=MAX_RETRIES),
    }
    for key, value in (needs.settings if needs else {}).items():
        if key == "replay":
            # Only what the fault needs changes; the rest stays the dialect's. A fault the
            # tests record on another dialect (Kimi's ids) takes that dialect's ids, never its
            # reasoning field: reasoning sent where this dialect's host does not read it is a
            # real drop, rightly reported, that no label would account for.
            changed = {
                name: getattr(value, name)
                for name in value.model_fields_set
                if name != "reasoning" or value.reasoning == "drop"
            }
            replay = replay.model_copy(update=changed)
        elif key == "extra_body":
            extra_body.update(value)
        elif key != "retry":
            settings[key] = value
    settings["replay"], settings["extra_body"] = replay, extra_body
    deadline = needs is not None and needs.timeout_s < _DEFAULT_TIMEOUT_S
    return settings, CLIENT_TIMEOUT_S if deadline else _DEFAULT_TIMEOUT_S


# -- serving every run's simulator, with its faults noted ----------------------------------


@dataclass
class _Labelled:
    """One run's simulator and the faults of each chat completion it was asked for."""

    app: SimApp
    attempts: list[list[str] | None] = field(default_factory=list)


class CorpusHost:
    """An ASGI app hosting one simulator per run under `/r/KEY/v1`, noting faults."""

    def __init__(self) -> None:
        """No run yet; `add` one per run before it starts."""
        self._runs: dict[str, _Labelled] = {}
        self.port = 0

    def add(self, key: str, config: SimConfig) -> str:
        """Serve `config` for run `key`; its base URL."""
        self._runs[key] = _Labelled(SimApp(config))
        return f"http://127.0.0.1:{self.port}/r/{key}/v1"

    def attempts(self, key: str) -> list[list[str] | None]:
        """Faults of each chat completion run `key` asked for, in order; None when the
        simulator never answered that request."""
        return self._runs[key].attempts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route `/r/KEY/...` to run KEY's simulator, noting the faults of chat responses."""
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        labelled, rest = None, path
        parts = path.split("/")
        if path.startswith("/r/") and len(parts) > _KEY_PARTS + 2:
            # Looked up, never iterated: runs are added from the recording thread while this
            # one serves, and iterating the dict as it grew failed the odd request with a 500
            # no attempt noted (the run then left out, its requests not lined up).
            key = "/".join(parts[2 : 2 + _KEY_PARTS])
            labelled = self._runs.get(key)
            rest = "/" + "/".join(parts[2 + _KEY_PARTS :])
        if labelled is None:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        inner = {**scope, "path": rest, "raw_path": rest.encode()}
        if rest.rstrip("/") != _CHAT:
            await labelled.app(inner, receive, send)
            return
        attempts = labelled.attempts
        slot = len(attempts)
        attempts.append(None)

        async def noting(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", []))
                named = headers.get(b"x-sim-faults", b"").decode()
                attempts[slot] = [n for n in named.split(",") if n]
            await send(message)

        try:
            await labelled.app(inner, receive, noting)
        except Exception:
            attempts[slot] = [CRASHED]
            raise


@contextmanager
def serving(host: CorpusHost) -> Iterator[CorpusHost]:
    """Serve `host` on an ephemeral loopback port in a background thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # As the simulator's own server does: no Nagle delay on small responses.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    sock.setblocking(False)
    host.port = sock.getsockname()[1]
    config = uvicorn.Config(
        host,
        host="127.0.0.1",
        port=host.port,
        lifespan="off",
        log_level="critical",  # a fault cuts responses on purpose; crashes are noted above
        access_log=False,
        ws="none",
        timeout_keep_alive=30,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10.0
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the corpus simulator did not start")
        time.sleep(0.01)
    try:
        yield host
    finally:
        server.should_exit = True
        thread.join(timeout=10.0)
        sock.close()


# -- recording and labelling -----------------------------------------------------------------


@dataclass(frozen=True)
class LabelledRun:
    """A recorded run as the checks read it, with the faults injected into each step."""

    spec: RunSpec
    run: Run
    step_faults: dict[int, frozenset[str]]
    """Step index -> faults of all its attempts (an attempt never answered counts as
    `UNANSWERED`)."""


@dataclass
class Corpus:
    """Every labelled run, and those left out: requests not lined up with steps, or the
    simulator failing."""

    runs: list[LabelledRun] = field(default_factory=list)
    unaligned: list[str] = field(default_factory=list)
    crashed: list[str] = field(default_factory=list)
    """Runs on which the simulator itself failed (see `CRASHED`)."""


async def _record_one(
    spec: RunSpec, base_url: str, recorder: Recorder, max_steps: int
) -> tuple[RunSpec, str]:
    settings, timeout_s = run_settings(spec, max_steps)
    task = load_task(tasks_dir() / f"{spec.task}.toml")
    plan = RunPlan(
        task=task,
        provider=f"sim-{spec.dialect}",
        endpoint=EndpointConfig(
            base_url=base_url, api_key_env=None, api_key="bench-key", timeout_s=timeout_s
        ),
        settings=HarnessSettings(**{**settings, "max_steps": min(max_steps, task.max_steps)}),
        seed=spec.seed,
        dialect=spec.dialect,
    )
    [summary] = await record_runs(plan, recorder)
    return spec, summary.id


async def _record_all(
    specs: Sequence[RunSpec],
    host: CorpusHost,
    recorder: Recorder,
    max_steps: int,
    concurrency: int,
) -> list[tuple[RunSpec, str]]:
    gate = asyncio.Semaphore(concurrency)

    async def one(spec: RunSpec) -> tuple[RunSpec, str]:
        async with gate:
            return await _record_one(
                spec, host.add(spec.key, sim_config(spec)), recorder, max_steps
            )

    return list(await asyncio.gather(*(one(spec) for spec in specs)))


def align(run: Run, attempts: Sequence[list[str] | None]) -> dict[int, frozenset[str]] | None:
    """Step index -> faults of its attempts, or None when the requests the simulator saw do
    not add up to the run's steps and retries (then no label can be trusted)."""
    labels: dict[int, frozenset[str]] = {}
    position = 0
    for step in run.steps:
        count = len(step.retry_errors) + 1
        taken = attempts[position : position + count]
        if len(taken) < count:
            return None
        labels[step.index] = frozenset(
            name for faults in taken for name in (faults if faults is not None else [UNANSWERED])
        )
        position += count
    return labels if position == len(attempts) else None


def build_corpus(
    specs: Sequence[RunSpec], db_path: Path, *, max_steps: int, concurrency: int
) -> Corpus:
    """Record every run of `specs` into `db_path`, label its steps, and keep the labels
    beside it (`labels_path`): `rescore_corpus` scores the same runs again with other checks."""
    host = CorpusHost()
    with serving(host):
        recorder = Recorder(db_path)
        try:
            recorded = asyncio.run(_record_all(specs, host, recorder, max_steps, concurrency))
        finally:
            recorder.close()
    attempts = {spec.key: host.attempts(spec.key) for spec, _ in recorded}
    labels_path(db_path).write_text(
        json.dumps(
            [
                {"spec": asdict(spec), "run_id": run_id, "attempts": attempts[spec.key]}
                for spec, run_id in recorded
            ]
        ),
        encoding="utf-8",
    )
    return _labelled(db_path, recorded, attempts)


def labels_path(db_path: Path) -> Path:
    """Where a recorded corpus keeps what the simulator injected into each attempt."""
    return db_path.with_name(db_path.name + ".labels.json")


def rescore_corpus(db_path: Path) -> Corpus:
    """A corpus `build_corpus` recorded into `db_path`, read back with its labels: the same
    runs, scored by the checks of this checkout (the runs do not depend on the checks)."""
    saved = json.loads(labels_path(db_path).read_text(encoding="utf-8"))
    recorded = [(RunSpec(**entry["spec"]), str(entry["run_id"])) for entry in saved]
    attempts = {RunSpec(**e["spec"]).key: e["attempts"] for e in saved}
    return _labelled(db_path, recorded, attempts)


def _labelled(
    db_path: Path,
    recorded: Sequence[tuple[RunSpec, str]],
    attempts: dict[str, list[list[str] | None]],
) -> Corpus:
    conn = open_for_reading(db_path)
    try:
        runs = {run.id: run for run in load_runs(conn, [run_id for _, run_id in recorded])}
    finally:
        conn.close()
    corpus = Corpus()
    for spec, run_id in recorded:
        labels = align(runs[run_id], attempts[spec.key])
        if labels is None:
            run = runs[run_id]
            retries = sum(len(step.retry_errors) for step in run.steps)
            seen = len(attempts[spec.key])
            corpus.unaligned.append(
                f"{spec.key} ({run_id}: {seen} requests, {len(run.steps)} steps, {retries} retries)"
            )
        elif any(CRASHED in faults for faults in labels.values()):
            corpus.crashed.append(f"{spec.key} ({run_id})")
        else:
            corpus.runs.append(LabelledRun(spec, runs[run_id], labels))
    return corpus
