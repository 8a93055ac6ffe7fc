"""A small MCP server serving sample_tools.py's functions, over stdio or streamable HTTP.

    python sample_mcp_server.py                 # stdio (a task's `command`)
    python sample_mcp_server.py --http 8765     # http://127.0.0.1:8765/mcp (a task's `url`)

Besides the sample tools it has `fail` (answers `isError`), `nap` (answers late) and `die`
(exits mid-call), which the tests use to check how a tool's error and a crashed server are recorded.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sample_tools
from mcp.server.mcpserver import MCPServer

server = MCPServer("agent-traces sample tools")
server.tool()(sample_tools.convert_length)
server.tool()(sample_tools.word_stats)
server.tool()(sample_tools.checked_divide)


@server.tool()
def fail(reason: str) -> str:
    """Always fail, with the given reason (the server answers with isError)."""
    raise ValueError(reason)


@server.tool()
async def nap(seconds: float) -> str:
    """Sleep for the given seconds, then answer (a tool slower than its time limit)."""
    await asyncio.sleep(seconds)
    return f"slept {seconds} s"


@server.tool()
def die(code: int = 3) -> str:
    """Exit the server process at once, as a crashing server does."""
    sys.stderr.write(f"sample server: dying with exit code {code}\n")
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
