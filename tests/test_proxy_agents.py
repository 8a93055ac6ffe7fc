"""Real agents no one on this project wrote, driven through `traces proxy` to the simulator:
Qwen Code and OpenCode (npm, installed by `.ci/install-agents`) and an app built on the
`openai-agents` Python SDK (the dev extra). For each, every request the simulator served is
a recorded step (the same request ids), each conversation the client held is one run (a
side call such as OpenCode's title is a run of its own, parallel sessions stay apart), and
what the client received through the proxy is byte for byte what the simulator sent.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from agent_clients import KEY, MODEL, run_opencode, run_qwen, tapped_proxy
from proxy_setup import Tap, tapped_sim

from analyzer.checks.persist import analyze_recorded
from traces.proxy.capture import Capture
from traces.proxy.recording import _LABEL_CHARS
from traces.redaction import Redactor
from traces.sim.config import SimConfig
from traces.store.database import resolve_db_path

from conftest import query_rows

NOTES = "the meeting is at noon"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The agent's project: a file the task names and one it does not."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "notes.txt").write_text(NOTES + "\n")
    (root / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    return root


def _chat(tap: Tap) -> list[Any]:
    return [sent for sent in tap.sent if sent.path.endswith("/chat/completions")]


def _conversation(body: bytes) -> str:
    """What makes a request part of one conversation, read from the request alone: the
    messages up to the first user message (system prompt and task)."""
    messages = json.loads(body)["messages"]
    first = next(i for i, m in enumerate(messages) if m["role"] == "user")
    return json.dumps(messages[: first + 1], sort_keys=True)


def check_proxied(
    db: Path, sim: Tap, proxy: Tap, *, blamed: frozenset[tuple[str, str]] = frozenset()
) -> dict[str, dict[str, Any]]:
    """Every request the simulator served recorded (an answered one as a step, a failed
    attempt the client retried in its step's retries), the bytes relayed unchanged, runs
    grouped as the client's conversations, and each run checked: findings only of the
    (kind, layer) pairs in `blamed`, and those only where an attempt failed. Returns the
    runs by id."""
    served = _chat(sim)
    assert served, "the agent sent no chat completion"
    by_id = {sent.headers["x-request-id"]: sent for sent in served}
    assert len(by_id) == len(served)
    answered = {request_id for request_id, sent in by_id.items() if sent.status == 200}
    failed = len(served) - len(answered)
    relayed = {
        sent.headers["x-request-id"]: sent
        for sent in _chat(proxy)
        if "x-request-id" in sent.headers
    }
    assert relayed.keys() == by_id.keys()
    for request_id, answer in relayed.items():
        upstream = by_id[request_id]
        assert answer.status == upstream.status
        # Byte for byte; only an error body may be cut short, by a client that hung up on
        # its status line (Qwen Code retrying a 429 does, now and then).
        assert answer.body == upstream.body or (
            answer.status >= 400 and upstream.body.startswith(answer.body)
        )

    steps = query_rows(db, "SELECT run_id, idx, request_id, retries, retry_errors FROM steps")
    assert sorted(step["request_id"] for step in steps) == sorted(answered)
    assert sum(step["retries"] for step in steps) == failed
    retried = [json.loads(s["retry_errors"]) for s in steps if s["retry_errors"] is not None]
    # Each failed attempt recorded with the body the client got of it.
    assert sorted(error["body"] or "" for errors in retried for error in errors) == sorted(
        relayed[request_id].body.decode() for request_id in by_id.keys() - answered
    )

    recorded: dict[str, set[str]] = defaultdict(set)
    for step in steps:
        recorded[step["run_id"]].add(step["request_id"])
    expected: dict[str, set[str]] = defaultdict(set)
    for request_id in answered:
        expected[_conversation(by_id[request_id].request)].add(request_id)
    assert sorted(map(sorted, recorded.values())) == sorted(map(sorted, expected.values()))

    # Checked as `traces proxy` checks the runs it ended. A clean simulator seen through a
    # real client blames no one: what clients rewrite in the history they send back is not
    # taken for a host's fault.
    found = analyze_recorded(resolve_db_path(str(db), None), sorted(recorded))
    assert set(found) == set(recorded)
    assert {(f.kind, f.layer) for findings in found.values() for f in findings} <= blamed
    assert any(found.values()) == (failed > 0)
    runs = query_rows(db, "SELECT * FROM runs WHERE origin = 'proxy'")
    assert {run["id"] for run in runs} == set(recorded)
    assert all(run["findings_by_kind"] is not None for run in runs)
    return {run["id"]: run for run in runs}


def _client(run: dict[str, Any]) -> str:
    return str(json.loads(run["settings"])["proxy"]["client"])


def _tool_names(db: Path, run_id: str) -> list[str]:
    rows = query_rows(
        db, "SELECT name FROM tool_calls WHERE run_id = ? ORDER BY step_idx, call_idx", [run_id]
    )
    return [row["name"] for row in rows]


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_hanging_up_on_an_error_status_keeps_the_hosts_error(stream: bool) -> None:
    """Found with Qwen Code: retrying a 429, it sometimes hangs up once the status line is
    in, before the error body. The step is the host's refusal (a rate limit, status 429,
    what came of the body), not a cancellation by the client; a hang-up on a 200 is one."""
    request = {"model": MODEL, "messages": [{"role": "user", "content": "Hi."}], "stream": stream}
    refused = Capture(request, Redactor())
    refused.answered(429, {"content-type": "application/json", "retry-after": "1"})
    refused.data(b'{"error": {"message": "Rate limit')
    error = refused.cancelled().error
    assert error is not None
    assert (error.kind, error.status, error.body) == (
        "rate_limit",
        429,
        '{"error": {"message": "Rate limit',
    )
    assert "hung up before the error body ended" in error.message
    answering = Capture(request, Redactor())
    answering.answered(200, {"content-type": "text/event-stream" if stream else "application/json"})
    left = answering.cancelled().error
    assert left is not None and (left.kind, left.status) == ("cancelled", 200)


@pytest.mark.slow
def test_qwen_code_through_the_proxy(
    monkeypatch: pytest.MonkeyPatch, db_path: Path, workdir: Path, tmp_path: Path
) -> None:
    """Qwen Code reads the file it is asked about with its own `read_file` (the simulator
    makes the path absolute, as Qwen's prompt asks) and searches with its `grep_search`,
    answers, and stops: one run, the conversation Qwen held, under Qwen's User-Agent. The
    host answers 429 to some attempts: Qwen's own retries (up to 7 attempts) are folded into
    their steps, and only the provider is blamed, for rate limiting. (Which attempts fail
    depends on the request, so on the temporary path Qwen reports: at 0.3 some do in about
    two runs of three; that Qwen gives up, about one run in 1,500.)"""
    faults = {"rate_limit_429": 0.3}
    with (
        tapped_sim(monkeypatch, SimConfig(seed=0, faults=faults)) as (sim, sim_tap),
        tapped_proxy(monkeypatch, sim.base_url, db_path) as (proxy, proxy_tap),
    ):
        done = run_qwen(
            'Read notes.txt, and where else is "noon" mentioned?',
            proxy.base_url,
            workdir,
            tmp_path / "home",
        )
    assert done.returncode == 0, done.stderr[-2000:]
    assert NOTES in done.stdout, done.stdout
    runs = check_proxied(
        db_path, sim_tap, proxy_tap, blamed=frozenset({("http_rate_limit", "provider")})
    )
    assert len(runs) == 1, [(run["conversation"], run["steps"]) for run in runs.values()]
    (run,) = runs.values()
    assert _client(run).startswith("QwenCode/")
    assert run["model"] == MODEL
    assert run["steps"] == 3, done.stdout
    assert _tool_names(db_path, run["id"]) == ["read_file", "grep_search"]
    # What Qwen's own tools returned, recorded as the results the next request carried.
    outputs = query_rows(
        db_path,
        "SELECT name, output FROM tool_results WHERE run_id = ? ORDER BY step_idx",
        [run["id"]],
    )
    assert [row["name"] for row in outputs] == ["read_file", "grep_search"]
    assert NOTES in outputs[0]["output"], outputs
    assert "notes.txt" in outputs[1]["output"] and NOTES in outputs[1]["output"], outputs


@pytest.mark.slow
def test_opencode_through_the_proxy(
    monkeypatch: pytest.MonkeyPatch, db_path: Path, workdir: Path, tmp_path: Path
) -> None:
    """OpenCode's session reads the file with its `read` tool and answers; the title it
    asks its small model for at the same time is a run of its own."""
    with (
        tapped_sim(monkeypatch, SimConfig(seed=0)) as (sim, sim_tap),
        tapped_proxy(monkeypatch, sim.base_url, db_path) as (proxy, proxy_tap),
    ):
        done = run_opencode(
            "Read notes.txt and tell me what it says.", proxy.base_url, workdir, tmp_path / "home"
        )
    assert done.returncode == 0, done.stderr[-2000:]
    assert NOTES in done.stdout
    runs = check_proxied(db_path, sim_tap, proxy_tap)
    assert all(_client(run).startswith("opencode/") for run in runs.values())
    by_label = {str(run["conversation"]): run for run in runs.values()}
    assert len(by_label) == 2
    title = next(run for label, run in by_label.items() if label.startswith("Generate a title"))
    session = next(run for run in runs.values() if run is not title)
    assert "Read notes.txt" in session["conversation"]
    assert title["steps"] == 1 and _tool_names(db_path, title["id"]) == []
    assert session["steps"] == 2 and _tool_names(db_path, session["id"]) == ["read"]


@pytest.mark.slow
def test_openai_agents_sdk_parallel_sessions_through_the_proxy(
    monkeypatch: pytest.MonkeyPatch, db_path: Path, workdir: Path
) -> None:
    """An app on the `openai-agents` SDK with two function tools runs two sessions at once
    on one agent (same instructions, same tools): two runs, each its own conversation."""
    try:
        from agents import (
            Agent,
            OpenAIChatCompletionsModel,
            Runner,
            function_tool,
            set_tracing_disabled,
        )
        from openai import AsyncOpenAI
    except ImportError as missing:  # the dev extra pins it: CI always has it
        pytest.fail(f"openai-agents is part of the dev extra: {missing}")

    set_tracing_disabled(True)  # its traces would go to the vendor's servers

    @function_tool
    def list_directory(path: str) -> str:
        """List the files of a directory."""
        return "\n".join(sorted(entry.name for entry in Path(path).iterdir()))

    @function_tool
    def read_file(path: str) -> str:
        """Read a text file."""
        return Path(path).read_text()

    async def both(base_url: str) -> list[str]:
        client = AsyncOpenAI(base_url=base_url, api_key=KEY, max_retries=0)
        agent = Agent(
            name="files",
            instructions=f"You answer questions about files. Working directory: {workdir}",
            tools=[list_directory, read_file],
            model=OpenAIChatCompletionsModel(model=MODEL, openai_client=client),
        )
        results = await asyncio.gather(
            Runner.run(agent, "What does notes.txt say?"),
            Runner.run(agent, "Which files are in this folder?"),
        )
        await client.close()
        return [str(result.final_output) for result in results]

    with (
        tapped_sim(monkeypatch, SimConfig(seed=0)) as (sim, sim_tap),
        tapped_proxy(monkeypatch, sim.base_url, db_path) as (proxy, proxy_tap),
    ):
        read, listed = asyncio.run(both(proxy.base_url))
    assert NOTES in read
    assert "calc.py" in listed and "notes.txt" in listed
    runs = check_proxied(db_path, sim_tap, proxy_tap)
    by_label = {run["conversation"]: run for run in runs.values()}
    assert set(by_label) == {"What does notes.txt say?", "Which files are in this folder?"}
    assert _tool_names(db_path, by_label["What does notes.txt say?"]["id"]) == ["read_file"]
    # No file named: the folder is listed, then the file that listing shows first is read.
    assert _tool_names(db_path, by_label["Which files are in this folder?"]["id"]) == [
        "list_directory",
        "read_file",
    ]


@pytest.mark.slow
def test_openai_agents_sdk_subagent_is_a_run_of_its_own(
    monkeypatch: pytest.MonkeyPatch, db_path: Path, workdir: Path
) -> None:
    """An SDK app whose `read_file` tool hands the reading to a second agent (its own
    instructions, its own `cat` tool): the subagent's conversation, held while the main one
    waits for its tool result, is a run of its own."""
    try:
        from agents import (
            Agent,
            OpenAIChatCompletionsModel,
            Runner,
            function_tool,
            set_tracing_disabled,
        )
        from openai import AsyncOpenAI
    except ImportError as missing:
        pytest.fail(f"openai-agents is part of the dev extra: {missing}")

    set_tracing_disabled(True)

    async def main(base_url: str) -> str:
        client = AsyncOpenAI(base_url=base_url, api_key=KEY, max_retries=0)
        model = OpenAIChatCompletionsModel(model=MODEL, openai_client=client)

        @function_tool
        def cat(path: str) -> str:
            """Print a file."""
            return Path(path).read_text()

        reader = Agent(name="reader", instructions="You quote files.", tools=[cat], model=model)

        @function_tool
        async def read_file(path: str) -> str:
            """Read a file (a reader agent does it)."""
            result = await Runner.run(reader, f"Quote {path} for me.")
            return str(result.final_output)

        lead = Agent(
            name="lead",
            instructions=f"You answer questions about files. Working directory: {workdir}",
            tools=[read_file],
            model=model,
        )
        result = await Runner.run(lead, "What does notes.txt say?")
        await client.close()
        return str(result.final_output)

    with (
        tapped_sim(monkeypatch, SimConfig(seed=0)) as (sim, sim_tap),
        tapped_proxy(monkeypatch, sim.base_url, db_path) as (proxy, proxy_tap),
    ):
        answer = asyncio.run(main(proxy.base_url))
    assert NOTES in answer
    runs = check_proxied(db_path, sim_tap, proxy_tap)
    by_label = {run["conversation"]: run for run in runs.values()}
    # A label is the message's first _LABEL_CHARS characters: a long temporary path cuts it.
    quote = f"Quote {workdir}/notes.txt for me."[:_LABEL_CHARS]
    assert set(by_label) == {"What does notes.txt say?", quote}
    lead = by_label["What does notes.txt say?"]
    sub = by_label[quote]
    assert _tool_names(db_path, lead["id"]) == ["read_file"]
    assert _tool_names(db_path, sub["id"]) == ["cat"]
    assert lead["steps"] == sub["steps"] == 2
    assert sub["started_at"] > lead["started_at"] and sub["ended_at"] < lead["ended_at"]
