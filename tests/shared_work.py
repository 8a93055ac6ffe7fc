"""Work done once per test run instead of once per pytest-xdist worker: a folder every worker
of the run reaches, and a lock for the worker that does the work while the others wait."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import pytest


def session_shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder every xdist worker of this run reaches: their base temporary folders' parent,
    which is this run's alone (without xdist, the session's own base folder)."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on file `path` (created if missing) for the block: the workers
    of one session take turns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
