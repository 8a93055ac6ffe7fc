"""Helper processes are fresh interpreters (`python -m traces.…`), never forks or spawns.

A fork would inherit the parent's threads' locks in any state. multiprocessing's spawn
re-runs the parent's main module in the child, which for the `traces` console script means
importing the whole command line before the child can start its work.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import traces

if TYPE_CHECKING:  # reading commands import this module, and need no multiprocessing
    from multiprocessing.connection import Connection


def child_env() -> dict[str, str]:
    """This environment, with `traces` importable from where this process imports it."""
    env = dict(os.environ)
    root = str(Path(traces.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def cores() -> int:
    """The cores this process may run on (its affinity where the system tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def send_or_exit(results: Connection, message: tuple[Any, ...]) -> None:
    """A worker's answer to the process that started it; when that one is gone, nothing is
    left to do, and the worker ends at once."""
    try:
        results.send(message)
    except OSError:
        os._exit(1)
