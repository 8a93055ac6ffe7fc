"""`traces import`: exchange logs recorded elsewhere, stored as runs the checks can read.

Two line formats, detected per file: exchange logs (`{"request": …, "response" | "chunks" |
"error": …}`) and K2-Vendor-Verifier result files. Lines are read (`lines`), validated into
typed exchanges (`formats`, secrets stripped by `traces.redaction`), turned into runs, steps, tool
calls and results through the same normalization as live recording (`builder`, tool
schemas compiled once per distinct tool in `toolsets`), line by line (`reading`), file by
file (`files`), and written in one transaction per command (`writer`, driven by `importer`).
A large file is read by worker processes split by conversation (`ownership` says which
builds which line) while the importing process inserts (`parallel`; the workers run
`worker`), into the very rows one process writes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from traces.importing.importer import FileReport, ImportOptions, SkippedLine, import_files

__all__ = ["FileReport", "ImportOptions", "SkippedLine", "import_files"]


def __getattr__(name: str) -> Any:
    """The importer's names, imported when first asked for: a worker process imports its
    own modules of this package without the importer's (DuckDB among them)."""
    if name in __all__:
        from traces.importing import importer

        return getattr(importer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
