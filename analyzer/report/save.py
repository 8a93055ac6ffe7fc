"""Writing the report so a reader never sees half a file, nor an old one half-overwritten."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from traces.errors import TracesError


def check_writable(path: Path) -> None:
    """Fail early, before any work, when `path` cannot be written (one-line TracesError)."""
    parent = path.parent
    if path.is_dir():
        raise TracesError(f"{path}: is a directory, not a file to write the report to")
    if not parent.is_dir():
        raise TracesError(f"{path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise TracesError(f"{path}: directory {parent} is not writable")


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it over `path`."""
    check_writable(path)
    try:
        handle, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
    except OSError as err:
        raise TracesError(f"{path}: cannot write the report: {err.strerror or err}") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        # mkstemp creates the file private (0600); a report is as readable as any new file.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise TracesError(f"{path}: cannot write the report: {err.strerror or err}") from None
