"""The optional C parts the proxy runs on when they are installed (the `fast` extra): uvloop's
event loop and httptools' HTTP parser for the server side of uvicorn. Without them the proxy
runs on asyncio's own loop and uvicorn's pure-Python `h11`, as before; the bytes relayed and
what is recorded are the same either way.

`TRACES_PROXY_SPEEDUPS=0` leaves them unused even when installed (to compare, or to rule them
out when something misbehaves).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import os
from collections.abc import Callable

_SWITCH = "TRACES_PROXY_SPEEDUPS"


def _switched_off() -> bool:
    return os.environ.get(_SWITCH, "1").strip() in ("0", "false", "no", "off")


def _wanted(module: str) -> bool:
    return not _switched_off() and importlib.util.find_spec(module) is not None


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory when it is installed and wanted, else None (asyncio's loop)."""
    if not _wanted("uvloop"):
        return None
    # Imported by name: an optional package, absent where the `fast` extra is not installed.
    factory: Callable[[], asyncio.AbstractEventLoop] = importlib.import_module(
        "uvloop"
    ).new_event_loop
    return factory


def http_parser() -> str:
    """uvicorn's `http` setting: `httptools` when installed and wanted, else `h11`."""
    return "httptools" if _wanted("httptools") else "h11"


def described() -> str:
    """What the proxy runs on, for its start-up line: `uvloop+httptools`, or what is missing
    and how to get it (a slower proxy should say why)."""
    loop = "uvloop" if _wanted("uvloop") else "asyncio"
    parser = http_parser()
    if (loop, parser) == ("uvloop", "httptools"):
        return "uvloop+httptools"
    if _switched_off():
        return f"{loop}+{parser}, ${_SWITCH} is off"
    return f"{loop}+{parser}; pip install 'agent-traces[fast]' for uvloop+httptools"
