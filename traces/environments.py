"""Open a run's tool world, whatever its type, and close it after the run.

The built-in worlds are plain objects (`traces.tasks.build_environment`); a `tools` world
starts MCP servers, so it is opened and closed around the run. `discover_tools` starts each
of a task's MCP servers once before a recording writes anything, so a server that cannot
start or be reached is bad input (one line, exit 2) rather than a recording of failed runs,
and so every run offers the same tools even when its own server then fails.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from jsonschema.exceptions import SchemaError

from traces.datasets import Sample
from traces.errors import TaskFileError
from traces.tasks import McpServerSpec, Task, ToolsSpec, build_environment, for_sample
from traces.tools.base import ToolEnvironment
from traces.tools.custom import CustomEnvironment, seed_git, start_all
from traces.tools.mcp_servers import McpConnection, McpError
from traces.tools.python_tools import PythonTool, PythonToolError, load_python_tool
from traces.tools.sandbox import Sandbox
from traces.tools.schema_check import ArgumentChecker


@asynccontextmanager
async def open_environment(
    task: Task, *, seed: int, sandbox_dir: Path, sample: Sample | None = None
) -> AsyncIterator[ToolEnvironment]:
    """The run's fresh world (answering `sample`, for a task with a dataset); a `tools`
    world's servers are stopped on the way out."""
    spec = task.environment
    if not isinstance(spec, ToolsSpec):
        yield build_environment(task, seed=seed, sandbox_dir=sandbox_dir, sample=sample)
        return
    environment = await _open_tools(task, spec, sandbox_dir)
    try:
        yield environment if sample is None else for_sample(task, environment, sample)
    finally:
        await environment.aclose()


def prepare_task(task: Task) -> Task:
    """`task` ready to record: its MCP servers' tools discovered (see `discover_tools`), from
    synchronous code, before the store is opened; any other task as it is."""
    if isinstance(task.environment, ToolsSpec) and task.environment.mcp:
        return asyncio.run(discover_tools(task))
    return task


async def discover_tools(task: Task) -> Task:
    """`task` with each MCP server's tools listed (in `environment.discovered`), each server
    started once in a scratch sandbox; raise TaskFileError naming the server's field when one
    cannot start, be reached or list its tools, or when two tools share a name."""
    spec = task.environment
    if not isinstance(spec, ToolsSpec) or not spec.mcp:
        return task
    with tempfile.TemporaryDirectory(prefix="agent-traces-discover-") as scratch:
        sandbox = _sandbox(task, spec, Path(scratch))
        connections = [_connection(server, sandbox) for server in spec.mcp]
        try:
            listed = await start_all(connections, spec.start_timeout_s)
        finally:
            for connection in connections:
                await connection.close()
    discovered: dict[str, list[dict[str, Any]]] = {}
    for index, (server, tools) in enumerate(zip(spec.mcp, listed, strict=True)):
        if isinstance(tools, McpError):
            field = "url" if server.url is not None else "command"
            raise TaskFileError(f"{task.source_path}: environment.mcp[{index}].{field}: {tools}")
        offered = _offered(server, tools)
        if isinstance(offered, str):
            raise TaskFileError(f"{task.source_path}: environment.mcp[{index}].tools: {offered}")
        for tool in offered:
            problem = _schema_problem(tool)
            if problem is not None:
                raise TaskFileError(f"{task.source_path}: environment.mcp[{index}]: {problem}")
        discovered[server.name] = offered
    names = [ref.rsplit(":", 1)[-1] for ref in spec.python]
    for index, server in enumerate(spec.mcp):
        for tool in discovered[server.name]:
            name = tool["function"]["name"]
            if name in names:
                raise TaskFileError(
                    f"{task.source_path}: environment.mcp[{index}]: tool {name!r} is "
                    "offered twice (by another server or a Python tool)"
                )
            names.append(name)
    prepared = spec.model_copy(update={"discovered": discovered})
    return task.model_copy(update={"environment": prepared})


async def _open_tools(task: Task, spec: ToolsSpec, sandbox_dir: Path) -> CustomEnvironment:
    sandbox = _sandbox(task, spec, sandbox_dir)
    connections = [_connection(server, sandbox) for server in spec.mcp]
    try:
        started = await start_all(connections, spec.start_timeout_s)
    except BaseException:  # cancelled while starting (Ctrl-C): no server outlives the run
        await asyncio.shield(asyncio.gather(*(c.close() for c in connections)))
        raise
    routes: dict[str, McpConnection | PythonTool | McpError] = {}
    specs: list[dict[str, Any]] = []
    for server, connection, tools in zip(spec.mcp, connections, started, strict=True):
        # The tools listed before the recording are what every run offers; a server that
        # failed this run answers each of its calls with its failure (a tool-layer fault).
        offered = spec.discovered.get(server.name)
        if offered is None:
            listed = [] if isinstance(tools, McpError) else _offered(server, tools)
            offered = [] if isinstance(listed, str) else listed
            # Not discovered beforehand (a suite entry, say): a tool whose schema is broken
            # is left out rather than failing the run's tool checker.
            offered = [tool for tool in offered if _schema_problem(tool) is None]
        route: McpConnection | McpError = tools if isinstance(tools, McpError) else connection
        for tool in offered:
            routes[tool["function"]["name"]] = route
            specs.append(tool)
    for reference in spec.python:
        try:
            function = load_python_tool(reference, task.source_path.parent)
        except PythonToolError as exc:
            raise TaskFileError(f"{task.source_path}: environment.python: {exc}") from None
        routes[function.name] = function
        specs.append(function.spec)
    return CustomEnvironment(
        sandbox=sandbox,
        connections=connections,
        routes=routes,
        specs=specs,
        call_timeout_s=spec.call_timeout_s,
        success=task.success,
        task_dir=task.source_path.parent,
    )


def _schema_problem(tool: dict[str, Any]) -> str | None:
    """Why a listed tool's input schema cannot check arguments, or None when it can."""
    try:
        ArgumentChecker([tool])
    except SchemaError as exc:
        name = tool["function"]["name"]
        return f"tool {name!r} has an input schema that is not valid JSON Schema ({exc.message})"
    return None


def _offered(server: McpServerSpec, tools: list[dict[str, Any]]) -> list[dict[str, Any]] | str:
    """The server's tools the task offers (its `tools` list, in that order), or the problem."""
    if server.tools is None:
        return tools
    by_name = {tool["function"]["name"]: tool for tool in tools}
    unknown = [name for name in server.tools if name not in by_name]
    if unknown:
        return f"the server has no tool {unknown[0]!r} (it has: {', '.join(by_name)})"
    return [by_name[name] for name in server.tools]


def _sandbox(task: Task, spec: ToolsSpec, root: Path) -> Sandbox:
    try:
        sandbox = Sandbox.seeded(root, spec.seed_dir)
        if spec.git:
            seed_git(sandbox.root)
    except OSError as exc:
        raise TaskFileError(
            f"{task.source_path}: environment.seed_dir: cannot seed the sandbox "
            f"({exc.strerror or exc})"
        ) from None
    return sandbox


def _connection(server: McpServerSpec, sandbox: Sandbox) -> McpConnection:
    root = str(sandbox.root)
    if server.command is not None:
        return McpConnection(
            server.name,
            command=[arg.replace("{sandbox}", root) for arg in server.command],
            cwd=sandbox.root,
            env={key: value.replace("{sandbox}", root) for key, value in server.env.items()},
        )
    return McpConnection(server.name, url=server.url)
