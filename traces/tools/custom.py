"""The `tools` world: a task's own tools, from MCP servers and Python functions.

Built per run by `open`: an optional seeded sandbox (the servers' working directory, `{sandbox}`
in their command and env), the MCP servers started inside it, the Python tools loaded at task
load. Always closed by the caller (`traces.environments.open_environment`), which stops the
servers. Not replayable: an MCP server or a user's function may read a clock, a network or any
state outside the sandbox, so `traces record --resume` refuses runs that called them.
"""

from __future__ import annotations

import asyncio
import copy
import os
import subprocess
from pathlib import Path
from typing import Any

from traces.model import ToolErrorKind
from traces.tools.base import SuccessResult, ToolOutcome, argument_failure, verdict_of
from traces.tools.mcp_servers import McpConnection, McpError
from traces.tools.python_tools import PythonTool, exception_line, import_reference
from traces.tools.sandbox import Sandbox, SandboxError
from traces.tools.schema_check import ArgumentChecker

#: Names the task prompts may use as `{placeholders}`.
PROMPT_VARIABLES = frozenset({"tool_count", "tool_names"})

#: The fixed identity and date of a seeded repository's first commit, so every run's
#: repository (and the hashes the model sees) is the same.
_GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "agent-traces",
    "GIT_AUTHOR_EMAIL": "seed@agent-traces.invalid",
    "GIT_COMMITTER_NAME": "agent-traces",
    "GIT_COMMITTER_EMAIL": "seed@agent-traces.invalid",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
}


class CustomEnvironment:
    """One run's MCP servers and Python tools; success is judged on the answer and a file."""

    replayable = False
    """MCP servers and user functions may reach outside the sandbox (a clock, a network), so
    replaying recorded calls would not restore the world a run left."""

    def __init__(
        self,
        *,
        sandbox: Sandbox,
        connections: list[McpConnection],
        routes: dict[str, McpConnection | PythonTool | McpError],
        specs: list[dict[str, Any]],
        call_timeout_s: float,
        success: dict[str, Any],
        task_dir: Path,
    ) -> None:
        """Serve `specs`, each routed by name to its MCP connection or Python tool;
        `task_dir` holds the module of a hidden success check."""
        self.sandbox = sandbox
        self.connections = connections
        self.routes = routes
        self.specs = specs
        self.call_timeout_s = call_timeout_s
        self.success = success
        self.task_dir = task_dir
        self._checker = ArgumentChecker(specs)

    def tool_specs(self) -> list[dict[str, Any]]:
        """Every server's tools, in declaration order, then the Python tools."""
        return copy.deepcopy(self.specs)

    def prompt_variables(self) -> dict[str, str]:
        """`tool_count` and `tool_names` (comma-separated)."""
        names = [spec["function"]["name"] for spec in self.specs]
        return {"tool_count": str(len(names)), "tool_names": ", ".join(names)}

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        """Route one call: schema checked here, then the server or the function answers."""
        refused = argument_failure(self._checker, name, arguments)
        if refused is not None:
            return refused
        route = self.routes[name]
        if isinstance(route, PythonTool):
            return await route.call(arguments, self.call_timeout_s)
        if isinstance(route, McpError):
            return failed_outcome(route)
        return await route.call(name, arguments, self.call_timeout_s)

    def check_success(self, final_answer: str) -> SuccessResult:
        """Passed when the answer holds every `answer_contains` item (case-insensitive),
        `file`, if named, holds every `file_contains` item, and the hidden `check`, if any,
        passes the sandbox (its own verdict and explanation; unknown when it fails)."""
        wanted = [
            item
            for item in self.success.get("answer_contains", [])
            if item.lower() not in final_answer.lower()
        ]
        if wanted:
            return SuccessResult(passed=False, detail=f"the answer lacks {wanted[0]!r}.")
        file = self.success.get("file")
        if file is not None:
            try:
                text = self.sandbox.resolve(file).read_text(encoding="utf-8", errors="replace")
            except (SandboxError, OSError):
                return SuccessResult(passed=False, detail=f"{file} was not written.")
            missing = [line for line in self.success.get("file_contains", []) if line not in text]
            if missing:
                return SuccessResult(passed=False, detail=f"{file} lacks {missing[0]!r}.")
        check = self.success.get("check")
        if check is not None:
            try:
                verdict = import_reference(check, self.task_dir)(final_answer, self.sandbox.root)
            except Exception as exc:  # the check's own bug: success unknown, not failed
                return SuccessResult(passed=None, detail=f"{check} failed: {exception_line(exc)}")
            return verdict_of(verdict, check)
        return SuccessResult(passed=True, detail="every expected item is there.")

    async def aclose(self) -> None:
        """Stop every MCP server (bounded)."""
        await asyncio.gather(*(connection.close() for connection in self.connections))


def seed_git(root: Path) -> None:
    """Make `root` a git repository with its current files as one commit of fixed identity
    and date; raise OSError (with git's message) when git fails."""
    env = {**os.environ, **_GIT_IDENTITY}
    for args in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "-A"],
        ["git", "commit", "-q", "--allow-empty", "-m", "Seed"],
    ):
        done = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise OSError(f"{' '.join(args[:2])} failed: {done.stderr.strip()[:200]}")


async def start_all(
    connections: list[McpConnection], timeout_s: float
) -> list[list[dict[str, Any]] | McpError]:
    """Start every connection at once; each gives its tools or the McpError it failed with."""

    async def one(connection: McpConnection) -> list[dict[str, Any]] | McpError:
        try:
            return await connection.start(timeout_s)
        except McpError as exc:
            return exc

    return list(await asyncio.gather(*(one(c) for c in connections)))


def failed_outcome(error: McpError) -> ToolOutcome:
    """What a call to a server that did not start answers: `crashed`, with its evidence."""
    return ToolOutcome.failure(ToolErrorKind.CRASHED, str(error))
