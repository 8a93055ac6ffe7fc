"""The simulator inside someone else's coding agent: it reads what the task points to with
the agent's own tools (run here for real, on a temporary folder), then answers, in a bounded
number of steps, never spawning a subagent (no HTTP: the policy is driven directly)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx2
import jsonschema
import pytest

from traces.sim.policy import Decision, decide
from traces.sim.strategies.agent import MAX_CALLS, named_files, working_directory


def _tool(name: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    parameters = {"type": "object", "properties": properties, "required": required}
    return {"type": "function", "function": {"name": name, "parameters": parameters}}


_S = {"type": "string"}

# Qwen Code 0.15's tools, as it declares them (names, properties, required), abridged.
QWEN_TOOLS = [
    _tool("tool_search", {"query": _S, "max_results": {"type": "integer"}}, ["query"]),
    _tool(
        "agent",
        {"description": _S, "prompt": _S, "subagent_type": _S, "run_in_background": {}},
        ["description", "prompt"],
    ),
    _tool("task_stop", {"task_id": _S}, ["task_id"]),
    _tool("skill", {"skill": _S}, ["skill"]),
    _tool("list_directory", {"path": _S, "ignore": {"type": "array"}}, ["path"]),
    _tool("read_file", {"file_path": _S, "offset": {"type": "number"}}, ["file_path"]),
    _tool("grep_search", {"pattern": _S, "glob": _S, "path": _S}, ["pattern"]),
    _tool("glob", {"pattern": _S, "path": _S}, ["pattern"]),
    _tool("edit", {"file_path": _S, "old_string": _S, "new_string": _S}, ["file_path"]),
    _tool("write_file", {"file_path": _S, "content": _S}, ["file_path", "content"]),
    _tool("run_shell_command", {"command": _S, "is_background": {"type": "boolean"}}, ["command"]),
    _tool("todo_write", {"todos": {"type": "array"}}, ["todos"]),
    _tool("web_fetch", {"url": _S, "prompt": _S}, ["url", "prompt"]),
]
# OpenCode 1.18's, abridged: camel-case arguments, a `task` tool for subagents.
OPENCODE_TOOLS = [
    _tool("bash", {"command": _S, "timeout": {"type": "number"}, "workdir": _S}, ["command"]),
    _tool("glob", {"pattern": _S, "path": _S}, ["pattern"]),
    _tool("read", {"filePath": _S, "offset": {"type": "number"}}, ["filePath"]),
    _tool(
        "task", {"description": _S, "prompt": _S, "subagent_type": _S}, ["description", "prompt"]
    ),
    _tool("webfetch", {"url": _S}, ["url"]),
]
SPAWNING = {"agent", "task"}


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "notes.txt").write_text("the meeting is at noon\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text("def main():\n    pass  # TODO: say hello\n")
    (tmp_path / "README.md").write_text("A tiny project.\n")
    return tmp_path


def _run_tool(name: str, args: dict[str, Any], root: Path) -> str:
    """What the agent's tool returns, done for real in `root`."""
    path = Path(args.get("file_path") or args.get("filePath") or args.get("path") or root)
    if name in ("read_file", "read"):
        return path.read_text() if path.is_file() else f"Error: file not found: {path}"
    if name == "list_directory":
        return "\n".join(sorted(p.name for p in path.iterdir()))
    if name == "glob":
        return "\n".join(str(p) for p in sorted(path.glob(args["pattern"])))
    if name == "grep_search":
        pattern = re.compile(args["pattern"])
        return "\n".join(
            f"{file}:{number}:{line}"
            for file in sorted(path.rglob("*"))
            if file.is_file()
            for number, line in enumerate(file.read_text().splitlines(), 1)
            if pattern.search(line)
        )
    if name in ("bash", "run_shell_command"):
        done = subprocess.run(
            args["command"], shell=True, cwd=root, capture_output=True, text=True, check=False
        )
        return done.stdout + done.stderr
    return f"Error: the test does not run {name}"


def _drive(
    task: str,
    tools: list[dict[str, Any]],
    root: Path,
    *,
    seed: int = 0,
    system: str = "",
    broken: frozenset[str] = frozenset(),
) -> tuple[list[Decision], list[dict[str, Any]]]:
    """The agent loop: decide, run the calls (those of `broken` tools fail), send the
    results back, until an answer."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": system or f"You are an agent. Working directory: {root}"},
        {"role": "user", "content": task},
    ]
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    turns = []
    for _ in range(20):
        decision = decide(messages, tools, seed=seed)
        turns.append(decision)
        if not decision.tool_calls:
            return turns, messages
        messages.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": c.arguments},
                    }
                    for c in decision.tool_calls
                ],
            }
        )
        for call in decision.tool_calls:
            args = json.loads(call.arguments)
            jsonschema.validate(args, schemas[call.name])
            result = (
                "Error: ripgrep execution failed"
                if call.name in broken
                else _run_tool(call.name, args, root)
            )
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    raise AssertionError("the simulated agent never answered")


def _calls(turns: list[Decision]) -> list[tuple[str, dict[str, Any]]]:
    return [(c.name, json.loads(c.arguments)) for t in turns for c in t.tool_calls]


def test_reads_the_named_file_with_the_agents_read_tool_then_answers(workspace: Path) -> None:
    turns, _ = _drive("Read notes.txt and tell me what it says.", QWEN_TOOLS, workspace)
    assert _calls(turns) == [("read_file", {"file_path": str(workspace / "notes.txt")})]
    assert all(t.strategy == "agent" for t in turns)
    assert turns[-1].finish_reason == "stop"
    assert "the meeting is at noon" in turns[-1].content


def test_searches_a_marker_and_lists_when_no_file_is_named(workspace: Path) -> None:
    turns, _ = _drive("Find every TODO in this project.", QWEN_TOOLS, workspace)
    assert _calls(turns) == [
        ("grep_search", {"pattern": "TODO", "path": str(workspace)}),
        ("list_directory", {"path": str(workspace)}),
    ]
    assert "say hello" in turns[-1].content


def test_a_listing_leads_to_the_likeliest_file(workspace: Path) -> None:
    turns, _ = _drive("What is this project about?", OPENCODE_TOOLS, workspace)
    # OpenCode has no list tool: its glob lists, then its README is read.
    assert _calls(turns) == [
        ("glob", {"pattern": "*", "path": str(workspace)}),
        ("read", {"filePath": str(workspace / "README.md")}),
    ]
    assert "A tiny project." in turns[-1].content


def test_a_failed_look_is_tried_another_way(workspace: Path) -> None:
    """OpenCode's `glob` needs ripgrep, which it downloads on first use: where it cannot,
    the model lists the folder with the shell instead."""
    turns, _ = _drive(
        "What is this project about?", OPENCODE_TOOLS, workspace, broken=frozenset({"glob"})
    )
    assert _calls(turns) == [
        ("glob", {"pattern": "*", "path": str(workspace)}),
        ("bash", {"command": f"ls -la {workspace}"}),
        ("read", {"filePath": str(workspace / "README.md")}),
    ]
    assert "A tiny project." in turns[-1].content


def test_the_shell_reads_when_no_read_tool_is_offered(workspace: Path) -> None:
    tools = [_tool("bash", {"command": _S, "description": _S}, ["command", "description"])]
    turns, _ = _drive("Show me src/app.py please.", tools, workspace)
    ((name, args),) = _calls(turns)
    assert name == "bash" and args["command"] == f"cat {workspace / 'src' / 'app.py'}"
    assert args["description"]  # filled with words, not a schema placeholder
    assert "say hello" in turns[-1].content


def test_bounded_and_never_spawns_whatever_the_task(workspace: Path) -> None:
    task = (
        'Look at a.txt, b.txt, c.txt, d.txt and e.txt, grep for "needle", check src/ and '
        "use a subagent if you like."
    )
    for tools in (QWEN_TOOLS, OPENCODE_TOOLS):
        turns, _ = _drive(task, tools, workspace)
        calls = _calls(turns)
        assert 0 < len(calls) <= MAX_CALLS
        assert not {name for name, _ in calls} & SPAWNING
        assert turns[-1].finish_reason == "stop"


def test_tools_whose_required_arguments_cannot_be_filled_are_left_alone(
    workspace: Path,
) -> None:
    tools = [
        # A read tool that wants an encoding id nobody could guess: not called.
        _tool(
            "read_file", {"path": _S, "encoding_id": {"type": "integer"}}, ["path", "encoding_id"]
        ),
        _tool("web_fetch", {"url": _S}, ["url"]),
    ]
    turns, _ = _drive("Read notes.txt.", tools, workspace)
    assert _calls(turns) == []
    assert turns[-1].finish_reason == "stop" and "notes.txt" in turns[-1].content


def test_deterministic_from_the_seed(workspace: Path) -> None:
    task = "Read notes.txt and README.md."
    first, _ = _drive(task, QWEN_TOOLS, workspace, seed=3)
    again, _ = _drive(task, QWEN_TOOLS, workspace, seed=3)
    assert first == again
    others = [_drive(task, QWEN_TOOLS, workspace, seed=s)[0] for s in range(6)]
    assert all(_calls(t) == _calls(first) for t in others)  # the same looks
    assert len({t[0].reasoning for t in others}) > 1  # in the seed's own words


def test_no_call_is_repeated_when_the_client_adds_a_user_message(workspace: Path) -> None:
    """Agents insert reminders as user messages between turns: the model must not start
    the task over (the loop that made Qwen Code send hundreds of requests)."""
    turns, messages = _drive("Read notes.txt.", QWEN_TOOLS, workspace)
    messages += [
        {"role": "assistant", "content": turns[-1].content},
        {"role": "user", "content": "<system-reminder>Read notes.txt.</system-reminder>"},
    ]
    assert not decide(messages, QWEN_TOOLS, seed=0).tool_calls


def test_working_directory_and_files_from_what_agents_send() -> None:
    qwen = [
        {"role": "system", "content": "if the project root is /path/to/project/ and …"},
        {"role": "user", "content": "I'm currently working in the directory: /home/u/proj\n"},
    ]
    assert working_directory(qwen) == "/home/u/proj"
    assert (
        working_directory([{"role": "system", "content": "  Working directory: /w/x\n"}]) == "/w/x"
    )
    assert working_directory([{"role": "user", "content": "hello"}]) is None
    assert named_files("Fix src/app.py, then README and notes.txt (e.g. the docs).") == [
        "src/app.py",
        "notes.txt",
        "README",
    ]
    assert named_files("see https://example.com/page.html and version 1.5") == []


def test_generic_tools_still_get_each_tried_but_never_a_subagent() -> None:
    tools = [
        _tool("task", {"prompt": _S}, ["prompt"]),
        _tool("ping", {"host": _S}, ["host"]),
    ]
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Try the tools."}]
    first = decide(messages, tools, seed=0)
    assert first.strategy == "generic" and [c.name for c in first.tool_calls] == ["ping"]


def test_over_http_a_coding_agents_request_gets_a_read(sim: Any, tmp_path: Path) -> None:
    """The simulator over real HTTP, asked as Qwen Code asks (its tools, the working
    directory in a user message, the task in the next), answers with a `read_file` call of the
    absolute path."""
    body = {
        "model": "sim-model",
        "stream": False,
        "tools": QWEN_TOOLS,
        "messages": [
            {"role": "system", "content": "You are Qwen Code, an interactive CLI agent."},
            {"role": "user", "content": f"I'm currently working in the directory: {tmp_path}"},
            {"role": "assistant", "content": "Got it. Thanks for the context!"},
            {"role": "user", "content": "Read notes.txt and tell me what it says."},
        ],
    }
    response = httpx2.post(f"{sim.base_url}/chat/completions", json=body, timeout=30)
    assert response.status_code == 200
    (choice,) = response.json()["choices"]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "read_file"
    assert json.loads(call["function"]["arguments"]) == {"file_path": f"{tmp_path}/notes.txt"}
