"""Helper processes are fresh interpreters (`python -m traces.…`), never forks or spawns.

A fork would inherit the parent's threads' locks in any state. multiprocessing's spawn
re-runs the parent's main module in the child, which for the `traces` console script means
importing the whole command line before the child can start its work.
"""

from __future__ import annotations

import os
from pathlib import Path

import traces


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
