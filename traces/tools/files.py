"""The files world: list, read, write and grep files inside a per-run sandbox.

File work is small and local, so the tools do plain blocking I/O: handing each call to a
thread would cost more than the read itself.
"""

from __future__ import annotations

import copy
import errno
import json
from pathlib import Path
from typing import Any

from traces.model import ToolErrorKind
from traces.tools.base import SuccessResult, ToolOutcome, argument_failure
from traces.tools.sandbox import MAX_FILE_BYTES, Sandbox, SandboxError
from traces.tools.schema_check import ArgumentChecker

#: Names the task prompts may use as `{placeholders}`.
PROMPT_VARIABLES = frozenset({"output_file", "file_count"})


def _tool(
    name: str, description: str, properties: dict[str, Any], required: list[str]
) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": False,
            },
        },
    }


_PATH = {"type": "string", "description": "A path relative to the project root."}
_DIR = {"type": "string", "default": ".", "description": "Directory or file; default '.'."}

TOOL_SPECS: list[dict[str, Any]] = [
    _tool(
        "list_files",
        "List every file (recursively, sorted) under a directory of the project.",
        {"path": _DIR},
        [],
    ),
    _tool("read_file", "Return the text of one file.", {"path": _PATH}, ["path"]),
    _tool(
        "write_file",
        "Create or overwrite a file with the given text (parent directories are created).",
        {"path": _PATH, "content": {"type": "string", "description": "The full file text."}},
        ["path", "content"],
    ),
    _tool(
        "grep",
        "Find lines containing a plain substring (not a regex) in the files under a path.",
        {
            "pattern": {"type": "string", "minLength": 1, "description": "Text to find."},
            "path": _DIR,
        },
        ["pattern"],
    ),
]

_CHECKER = ArgumentChecker(TOOL_SPECS)


class FilesEnvironment:
    """One run's sandboxed project; success means a file with the expected lines was written."""

    replayable = True
    """Deterministic: the same calls on a fresh sandbox seeded from the same folder return
    the same results (the tools read and write only inside it)."""

    def __init__(self, *, sandbox: Sandbox, output_file: str, file_contains: list[str]) -> None:
        """Serve `sandbox`; success needs `output_file` to contain every `file_contains` item."""
        self.sandbox = sandbox
        self.output_file = output_file
        self.file_contains = list(file_contains)
        self._file_count = len(sandbox.files_under(sandbox.root))

    def tool_specs(self) -> list[dict[str, Any]]:
        """The `list_files`, `read_file`, `write_file` and `grep` tools."""
        # A copy: callers (dialects, recorders) may edit it; the module's specs are shared.
        return copy.deepcopy(TOOL_SPECS)

    def prompt_variables(self) -> dict[str, str]:
        """`output_file` (from the success check) and `file_count` (files in the seed)."""
        return {"output_file": self.output_file, "file_count": str(self._file_count)}

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        """Run one file tool; refused paths, missing files and bad arguments are error outcomes."""
        refused = argument_failure(_CHECKER, name, arguments)
        if refused is not None:
            return refused
        path: str = arguments.get("path", ".")
        try:
            real = self.sandbox.resolve(path)
            if name == "list_files":
                return self._list(path, real)
            if name == "read_file":
                return ToolOutcome(output=_read_text(path, real))
            if name == "write_file":
                return self._write(path, real, arguments["content"])
            return self._grep(path, real, arguments["pattern"])
        except SandboxError as exc:
            return ToolOutcome.failure(ToolErrorKind.SANDBOX, str(exc))
        except _Missing as exc:
            return _missing(str(exc))
        except _NotReadable as exc:
            return _rejected(str(exc))
        except OSError as exc:
            # strerror, not str(exc): the latter embeds the host's absolute path.
            message = f"{path}: {exc.strerror or type(exc).__name__}"
            return ToolOutcome.failure(_os_error_kind(exc), message)

    def _list(self, path: str, real: Path) -> ToolOutcome:
        if not real.exists():
            return _missing(f"{path}: no such file or directory")
        files = [self.sandbox.relative(p) for p in self.sandbox.files_under(real)]
        return ToolOutcome(output=json.dumps(files))

    def _write(self, path: str, real: Path, content: str) -> ToolOutcome:
        data = content.encode("utf-8")
        if len(data) > MAX_FILE_BYTES:
            return _rejected(f"{path}: content is {len(data)} bytes; the limit is {MAX_FILE_BYTES}")
        if real == self.sandbox.root or real.is_dir():
            return _rejected(f"{path}: is a directory")
        real.parent.mkdir(parents=True, exist_ok=True)
        real.write_bytes(data)
        return ToolOutcome(
            output=json.dumps({"path": self.sandbox.relative(real), "bytes": len(data)})
        )

    def _grep(self, path: str, real: Path, pattern: str) -> ToolOutcome:
        if not real.exists():
            return _missing(f"{path}: no such file or directory")
        matches = []
        for file in self.sandbox.files_under(real):
            if file.stat().st_size > MAX_FILE_BYTES:
                continue
            text = file.read_text(encoding="utf-8", errors="replace")
            for number, line in enumerate(text.split("\n"), start=1):
                if pattern in line:
                    matches.append(
                        {
                            "path": self.sandbox.relative(file),
                            "line": number,
                            "text": line.rstrip("\r"),
                        }
                    )
        return ToolOutcome(output=json.dumps(matches))

    def check_success(self, final_answer: str) -> SuccessResult:
        """Passed when the output file exists and contains every expected line."""
        try:
            text = _read_text(self.output_file, self.sandbox.resolve(self.output_file))
        except (SandboxError, OSError, _NotReadable):
            return SuccessResult(passed=False, detail=f"{self.output_file} was not written.")
        missing = [line for line in self.file_contains if line not in text]
        if missing:
            return SuccessResult(
                passed=False,
                detail=f"{self.output_file} lacks {len(missing)} expected line(s), "
                f"e.g. {missing[0]!r}.",
            )
        return SuccessResult(
            passed=True, detail=f"{self.output_file} contains every expected line."
        )


class _NotReadable(ValueError):
    """A path that is not a readable text file of acceptable size; the message names it."""


class _Missing(_NotReadable):
    """A path that does not exist."""


def _read_text(path: str, real: Path) -> str:
    if real.is_dir():
        raise _NotReadable(f"{path}: is a directory")
    if not real.exists():
        raise _Missing(f"{path}: no such file")
    size = real.stat().st_size
    if size > MAX_FILE_BYTES:
        raise _NotReadable(f"{path}: file is {size} bytes; the limit is {MAX_FILE_BYTES}")
    return real.read_text(encoding="utf-8", errors="replace")


def _rejected(message: str) -> ToolOutcome:
    return ToolOutcome.failure(ToolErrorKind.REJECTED, message)


def _missing(message: str) -> ToolOutcome:
    return ToolOutcome.failure(ToolErrorKind.MISSING, message)


# OS errors that say the request named the wrong thing (a file where a directory is needed,
# a name too long); any other one means the host failed the tool (permissions, disk full).
_REQUEST_ERRNOS = frozenset({errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG})


def _os_error_kind(exc: OSError) -> ToolErrorKind:
    if exc.errno == errno.ENOENT:
        return ToolErrorKind.MISSING
    return ToolErrorKind.REJECTED if exc.errno in _REQUEST_ERRNOS else ToolErrorKind.CRASHED
