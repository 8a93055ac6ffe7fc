"""Reading the lines of one import file into rows, one at a time, and what they became.

`LineReader` validates each line (`formats`), hands the exchanges to a `RunBuilder` and the
builder's rows to a sink: the import's DuckDB writer. A whole file is read so in this
process, a large one by worker processes that each read their share (`parallel`); both ways
give the same rows (`files` decides which).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from traces.importing.builder import RunBuilder
from traces.importing.formats import LoggedExchange, read_exchange_line, read_k2vv_line
from traces.importing.lines import (
    ImportFileError,
    LineError,
    LineFormat,
    detect,
    looks_like_json_document,
    parse_object,
)
from traces.importing.toolsets import ToolSets
from traces.importing.writer import RowSink
from traces.processes import cores

InputFormat = Literal["auto", "exchanges", "k2vv"]
OnError = Literal["refuse", "skip"]

PARALLEL_BYTES = 16 << 20
"""Files from this size on are read by worker processes when `workers` is left to choose:
below it, starting them costs about what they save."""
MAX_WORKERS = 4
"""Workers `workers=None` starts at most (one per core); this process inserts meanwhile."""
WORKERS_ENV = "TRACES_IMPORT_WORKERS"
"""Environment variable that sets `ImportOptions.workers` when the caller left it to choose."""

_READERS: dict[LineFormat, Callable[[dict[str, object], int, datetime], LoggedExchange]] = {
    "exchanges": read_exchange_line,
    "k2vv": read_k2vv_line,
}


@dataclass(frozen=True)
class ImportOptions:
    """How to read the files of one `traces import`."""

    provider: str | None = None
    """Provider label of runs whose lines name none."""
    model: str | None = None
    """Model of runs whose lines (request, response) name none."""
    line_format: InputFormat = "auto"
    """Line format of every file, or `auto` to detect it per file."""
    on_error: OnError = "refuse"
    """Malformed lines: refuse the whole import, or skip them and import the rest."""
    again: bool = False
    """Import files whose bytes were imported before."""
    workers: int | None = None
    """Processes that read each file: 1 reads in this process; N > 1 splits every file by
    conversation over N workers; None (the default) takes `TRACES_IMPORT_WORKERS` when set,
    else one worker per core (at most `MAX_WORKERS`) for files of `PARALLEL_BYTES` or more."""

    def workers_for(self, size: int) -> int:
        """How many processes read a file of `size` bytes (1: this one)."""
        workers = self.workers
        if workers is None:
            setting = os.environ.get(WORKERS_ENV, "").strip()
            if setting:
                try:
                    workers = int(setting)
                except ValueError:
                    raise ImportFileError(
                        f"{WORKERS_ENV}={setting!r}: not a number of processes"
                    ) from None
            elif size < PARALLEL_BYTES:
                return 1
            else:
                workers = min(cores(), MAX_WORKERS)
        if os.name != "posix":
            return 1  # the workers inherit their pipes, which only POSIX passes on
        return max(1, workers)


@dataclass(frozen=True)
class SkippedLine:
    """A malformed line left out under `--on-error skip`."""

    line: int
    reason: str


@dataclass
class FileReport:
    """What one file became."""

    path: str
    import_id: str
    format: str
    sha256: str
    lines: int = 0
    exchanges: int = 0
    runs: list[str] = field(default_factory=list)
    skipped: int = 0
    skipped_lines: list[SkippedLine] = field(default_factory=list)
    defaulted: int = 0
    """Runs whose lines name no provider: labelled with `--provider`, else `unknown`."""
    unlabelled: int = 0
    """Runs labelled `unknown` because neither the file nor `--provider` named a provider."""


ProgressCallback = Callable[[int], None]
"""Told how many more bytes were read."""
SkipCallback = Callable[[str, SkippedLine], None]
"""Told of each skipped line, with the file's path."""


class RefusedLine(ImportFileError):
    """A malformed line under `--on-error refuse`: the import stops there."""

    def __init__(self, message: str, line: int) -> None:
        """The one-line error, and the line's number."""
        super().__init__(message)
        self.line = line


@dataclass
class FileShare:
    """What some lines of a file became: the whole file, or one worker's share of it."""

    lines: int = 0
    """Lines that are not blank."""
    exchanges: int = 0
    runs: list[tuple[int, str]] = field(default_factory=list)
    """(first line, id) of each run, in file order."""
    defaulted: int = 0


class LineReader:
    """Lines of one file, one at a time: validated into exchanges for a `RunBuilder`, or
    refused, or skipped. Reads a whole file, or the lines a worker owns (`parallel`)."""

    def __init__(
        self,
        sink: RowSink,
        path: Path,
        digest: str,
        import_id: str,
        options: ImportOptions,
        now: datetime,
        known: set[str],
        tool_sets: ToolSets,
        on_skip: Callable[[SkippedLine], None],
        *,
        line_format: LineFormat | None = None,
        host: str | None = None,
        pid: int | None = None,
        whole_file: bool = True,
    ) -> None:
        """Read into `sink`; `line_format` None detects it from the first line that has one.

        A worker's reader (`whole_file` False) does not see the file's first line: it never
        says the file looks like one JSON document.
        """
        self.sink = sink
        self.path = path
        self.digest = digest
        self.import_id = import_id
        self.options = options
        self.now = now
        self.known = known
        self.tool_sets = tool_sets
        self.on_skip = on_skip
        self.format = line_format
        self.host = host
        self.pid = pid
        self.whole_file = whole_file
        self.lines = 0
        self.builder: RunBuilder | None = None

    def read(self, number: int, raw: bytes) -> LoggedExchange | None:
        """Take a line that is not blank; its exchange, or None when it was skipped."""
        self.lines += 1
        try:
            obj = parse_object(raw)
            line_format = self.format or self._detect(obj)
            logged = _READERS[line_format](obj, number, self.now)
        except LineError as err:
            self.fail(number, raw, err)
            return None
        (self.builder or self._start(line_format)).add(logged)
        return logged

    def find_format(self, number: int, raw: bytes) -> bool:
        """Take a line that is not blank, before the format is known, without building it:
        True when the line is an object (in a format), left to be read; False when it was
        skipped."""
        try:
            obj = parse_object(raw)
            if self.format is None:
                self._detect(obj)
        except LineError as err:
            self.lines += 1
            self.fail(number, raw, err)
            return False
        return True

    def fail(self, number: int, raw: bytes, err: LineError) -> None:
        """A malformed line: refuse the import (RefusedLine), or skip the line."""
        if self.whole_file and self.lines == 1 and looks_like_json_document(raw):
            raise ImportFileError(
                f"{self.path}: not JSON Lines: it looks like one JSON document; "
                "an import file holds one exchange per line"
            )
        if self.options.on_error == "refuse":
            raise RefusedLine(
                f"{self.path}:{number}: {err} (--on-error skip imports the other lines)", number
            )
        self.on_skip(SkippedLine(number, str(err)))

    def finish(self) -> FileShare:
        """End the open runs: what the lines read became."""
        builder = self.builder
        if builder is None:
            return FileShare(lines=self.lines)
        return FileShare(
            lines=self.lines,
            exchanges=builder.exchanges,
            runs=builder.finish(),
            defaulted=builder.defaulted,
        )

    def _detect(self, obj: dict[str, object]) -> LineFormat:
        line_format = detect(obj)
        if line_format is None:
            raise LineError(
                None,
                "neither an exchange (`request` with `response`, `chunks` or `error`) "
                "nor a K2-Vendor-Verifier result (`data_index`, `request`, `status`)",
            )
        self.format = line_format
        return line_format

    def _start(self, line_format: LineFormat) -> RunBuilder:
        self.builder = RunBuilder(
            self.sink,
            import_id=self.import_id,
            path=str(self.path),
            sha256=self.digest,
            file_format=line_format,
            provider=self.options.provider,
            model=self.options.model,
            known_messages=self.known,
            tool_sets=self.tool_sets,
            host=self.host,
            pid=self.pid,
        )
        return self.builder
