"""MCP servers a task declares: started per run, their tools listed, called, then stopped.

Through the official `mcp` SDK. Each connection lives in one asyncio task of its own that
enters the SDK's transport and session contexts and leaves them when told to stop: anyio
contexts must be left by the task that entered them, while the run's tool calls come from the
harness's task. A server that does not start, dies, or does not answer in time is a tool-layer
failure whose evidence is the tail of what it wrote to stderr, never a hang: every wait here
is bounded.

`mcp` is imported inside the functions that connect, so only a task with MCP servers pays for
it, never the CLI's start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from traces.model import ToolErrorKind
from traces.tools.base import ToolOutcome

if TYPE_CHECKING:
    from mcp import ClientSession

#: Characters of a server's stderr kept as the evidence of its failure.
STDERR_TAIL_CHARS = 600
#: How long a stopping server may take before its task is cancelled.
STOP_TIMEOUT_S = 10.0


class McpError(RuntimeError):
    """A server that failed (to start, to list its tools): the message carries its stderr tail."""


class McpConnection:
    """One running MCP server (a stdio subprocess or a streamable-HTTP endpoint) and its session."""

    def __init__(
        self,
        name: str,
        *,
        command: list[str] | None = None,
        url: str | None = None,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """Describe the server; nothing starts until `start`."""
        if (command is None) == (url is None):
            raise ValueError("an MCP server is a command or a URL")
        self.name = name
        self.command = command
        self.url = url
        self.cwd = cwd
        self.env = dict(env or {})
        # Closed in `close`; a file, not a pipe, so a chatty server can never block on it.
        self._stderr: TextIO = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115
        self._session: ClientSession | None = None
        self._ready: asyncio.Future[list[dict[str, Any]]] | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._died: str | None = None

    async def start(self, timeout_s: float) -> list[dict[str, Any]]:
        """Start the server, initialize the session and list its tools as OpenAI function
        tools; raise McpError (with the stderr tail) when it fails or takes over `timeout_s`."""
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._task = asyncio.create_task(self._serve(), name=f"mcp server {self.name}")
        try:
            return await asyncio.wait_for(asyncio.shield(self._ready), timeout_s)
        except TimeoutError:
            await self.close()
            raise McpError(self._evidence(f"did not start within {timeout_s:g} s")) from None
        except (McpError, asyncio.CancelledError):
            await asyncio.shield(self.close())
            raise

    async def call(self, name: str, arguments: dict[str, Any], timeout_s: float) -> ToolOutcome:
        """Call tool `name`: its text content (or structured content, as JSON, when it sent
        no text) as the output; `isError` as a `rejected` failure; a dead or silent server
        as `crashed` or `timeout` with the stderr tail."""
        import mcp_types

        session = self._session
        if session is None or self._died is not None:
            reason = self._died or "is not running"
            return ToolOutcome.failure(ToolErrorKind.CRASHED, self._evidence(reason))
        try:
            async with asyncio.timeout(timeout_s):
                result = await session.call_tool(name, arguments)
        except TimeoutError:
            return ToolOutcome.failure(
                ToolErrorKind.TIMEOUT,
                self._evidence(f"{name} did not answer within {timeout_s:g} s"),
            )
        except Exception as exc:  # the connection broke, or the server answered a JSON-RPC error
            from mcp.shared.exceptions import MCPError

            if isinstance(exc, MCPError) and exc.code != mcp_types.CONNECTION_CLOSED:
                # The server is alive and refused the request (unknown tool, bad params).
                return ToolOutcome.failure(ToolErrorKind.REJECTED, f"{name}: {exc.error.message}")
            # The connection is gone: the server died (or the transport broke). Every later
            # call fails at once with the same evidence instead of waiting on a dead pipe.
            await asyncio.sleep(0.05)  # let the dying process's last stderr lines land
            self._died = f"died during {name} ({_one_line(exc)})"
            return ToolOutcome.failure(ToolErrorKind.CRASHED, self._evidence(self._died))
        texts = [block.text for block in result.content if isinstance(block, mcp_types.TextContent)]
        others = [
            block.type for block in result.content if not isinstance(block, mcp_types.TextContent)
        ]
        output = "\n".join(texts)
        if not texts and result.structured_content is not None:
            output = _json(result.structured_content)
        if others:
            output += (
                "\n" if output else ""
            ) + f"[{len(others)} non-text block(s): {', '.join(others)}]"
        if result.is_error:
            failed = ToolOutcome.failure(
                ToolErrorKind.REJECTED, output or f"{name} reported an error"
            )
            return failed.model_copy(update={"structured": result.structured_content})
        return ToolOutcome(output=output, structured=result.structured_content)

    async def close(self) -> None:
        """Stop the server (stdin closed, then terminated, by the SDK) and wait, bounded."""
        self._stop.set()
        task = self._task
        if task is not None and not task.done():
            # A server still starting is not listening for the stop: cancel it at once (the
            # SDK's shutdown runs shielded and bounded); a running one leaves on its own.
            if self._ready is not None and not self._ready.done():
                task.cancel()
            try:
                await asyncio.wait_for(asyncio.shield(task), STOP_TIMEOUT_S)
            except BaseException:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        ready = self._ready
        if ready is not None and ready.done() and not ready.cancelled():
            ready.exception()  # retrieved: a failure nobody awaited is not logged as lost
        self._session = None
        self._stderr.close()

    def stderr_tail(self) -> str:
        """The last `STDERR_TAIL_CHARS` characters the server wrote to stderr, on one line."""
        if self._stderr.closed:
            return ""
        self._stderr.flush()
        self._stderr.seek(0, os.SEEK_END)
        size = self._stderr.tell()
        self._stderr.seek(max(0, size - STDERR_TAIL_CHARS * 4))
        text = self._stderr.read()[-STDERR_TAIL_CHARS:]
        return " | ".join(line.strip() for line in text.splitlines() if line.strip())

    def _evidence(self, reason: str) -> str:
        where = " ".join(self.command) if self.command else self.url
        tail = self.stderr_tail()
        return f"MCP server {self.name} ({where}) {reason}" + (f"; stderr: {tail}" if tail else "")

    async def _serve(self) -> None:
        ready = self._ready
        assert ready is not None
        try:
            async with self._transport() as (read, write):
                from mcp import ClientSession

                async with ClientSession(read, write) as session:
                    await session.initialize()
                    tools = await _list_tools(session)
                    self._session = session
                    if not ready.done():
                        ready.set_result(tools)
                    await self._stop.wait()
        except BaseException as exc:
            self._died = _died(exc)
            if not ready.done():
                ready.set_exception(McpError(self._evidence(self._died)))
            if isinstance(exc, asyncio.CancelledError):
                raise
        else:
            if not ready.done():  # only when stopped before it was ready
                ready.set_exception(McpError(self._evidence("was stopped before it started")))
        finally:
            self._session = None
            if self._died is None:
                self._died = "has stopped"

    def _transport(self) -> contextlib.AbstractAsyncContextManager[Any]:
        if self.command is not None:
            from mcp.client.stdio import StdioServerParameters, stdio_client

            parameters = StdioServerParameters(
                command=self.command[0],
                args=self.command[1:],
                env=self.env or None,
                cwd=self.cwd,
            )
            return stdio_client(parameters, errlog=self._stderr)
        from mcp.client.streamable_http import streamable_http_client

        assert self.url is not None
        return streamable_http_client(self.url)


async def _list_tools(session: ClientSession) -> list[dict[str, Any]]:
    import mcp_types

    specs: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None
        listing = await session.list_tools(params=params)
        for tool in listing.tools:
            specs.append(
                {
                    "type": "function",
                    "function": {
                        "name": tool.name,
                        "description": tool.description or tool.title or tool.name,
                        "parameters": tool.input_schema,
                    },
                }
            )
        cursor = listing.next_cursor
        if not cursor:
            return specs


def _died(exc: BaseException) -> str:
    if isinstance(exc, asyncio.CancelledError):
        return "was cancelled"
    # anyio wraps a failure inside the transport's task group in an ExceptionGroup: the
    # interesting one is the innermost.
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"failed: {_one_line(exc)}"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _json(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, default=str)
