"""Recognise a coding agent's own workspace tools and fill their arguments sensibly.

Agents name the same few tools differently (Qwen Code's `read_file` with `file_path`,
OpenCode's `read` with `filePath`, `run_shell_command` or `bash` with `command`…). A tool is
used for a job only when its name says the job and every argument its schema requires can be
given a meaningful value: a path, a pattern, a command, a short description, `false` for a
flag, or the schema's own default. Anything else (a subagent's prompt, an id, a count
without a default) cannot be filled honestly, so the tool is left alone.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from traces.sim.strategies.base import ToolSchemas

Job = Literal["read", "list", "glob", "search", "shell"]

_NAMES: dict[Job, frozenset[str]] = {
    "read": frozenset(
        {"readfile", "read", "view", "cat", "openfile", "readtextfile", "viewfile", "fileread"}
    ),
    "list": frozenset(
        {"listdirectory", "ls", "list", "listdir", "listfiles", "listfolder", "readdirectory"}
    ),
    "glob": frozenset({"glob", "findfiles", "globfiles", "filesearchglob"}),
    "search": frozenset(
        {
            "grep",
            "grepsearch",
            "search",
            "searchfiles",
            "searchfilecontent",
            "rg",
            "ripgrep",
            "codesearch",
            "searchcode",
            "findinfiles",
        }
    ),
    "shell": frozenset(
        {
            "runshellcommand",
            "bash",
            "shell",
            "executecommand",
            "runcommand",
            "exec",
            "terminal",
            "runterminalcmd",
            "execute",
            "sh",
            "runbash",
        }
    ),
}

SPAWNING = frozenset({"agent", "task", "subagent", "spawnagent", "delegate", "dispatchagent"})
"""Tools that start another agent: a simulated model never calls them (a subagent of a
subagent of … is how a client loops for hundreds of requests)."""

Role = Literal["path", "pattern", "command", "description"]

_ROLES: dict[Role, frozenset[str]] = {
    "path": frozenset(
        {
            "filepath",
            "path",
            "file",
            "filename",
            "targetfile",
            "absolutepath",
            "relativepath",
            "dirpath",
            "directory",
            "dir",
            "folder",
            "root",
            "targetdirectory",
            "relativeworkspacepath",
            "cwd",
        }
    ),
    "pattern": frozenset({"pattern", "query", "regex", "search", "searchterm", "term", "q"}),
    "command": frozenset({"command", "cmd", "script", "commandline"}),
    "description": frozenset({"description", "explanation", "reason", "summary", "purpose"}),
}


def normalized(name: str) -> str:
    """`name` lower-cased without `_`, `-`, `.` or spaces: how names are compared here."""
    return "".join(ch for ch in name.lower() if ch.isalnum())


def job_of(name: str) -> Job | None:
    """The job a tool's name says it does, None for any other tool."""
    key = normalized(name)
    for job, names in _NAMES.items():
        if key in names:
            return job
    return None


def role_of(name: str) -> Role | None:
    """What an argument named `name` holds, None when it is none of the fillable kinds."""
    key = normalized(name)
    for role, names in _ROLES.items():
        if key in names:
            return role
    return None


@dataclass(frozen=True, slots=True)
class Values:
    """What the model means to pass: each argument role's value (None: it has none)."""

    path: str | None = None
    pattern: str | None = None
    command: str | None = None
    description: str | None = None

    def of(self, role: Role) -> str | None:
        """The value for arguments of `role`."""
        value: str | None = getattr(self, role)
        return value


def _filler(schema: Any) -> tuple[bool, Any]:
    """(True, value) for a required argument that has an obvious value whatever the job:
    the schema's default, its only allowed value, `false` for a flag."""
    if not isinstance(schema, Mapping):
        return False, None
    if "default" in schema:
        return True, schema["default"]
    if "const" in schema:
        return True, schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and len(enum) == 1:
        return True, enum[0]
    if schema.get("type") == "boolean":
        return True, False
    return False, None


def arguments(parameters: Mapping[str, Any], values: Values) -> dict[str, Any] | None:
    """Arguments for a tool with schema `parameters`: every required one filled, the
    optional ones given only when the model has a value of their role; None when some
    required argument cannot be filled."""
    properties = parameters.get("properties")
    properties = properties if isinstance(properties, Mapping) else {}
    required = parameters.get("required")
    required_names = (
        [name for name in required if isinstance(name, str)] if isinstance(required, list) else []
    )
    filled: dict[str, Any] = {}
    for name, schema in properties.items():
        role = role_of(name)
        value = values.of(role) if role is not None else None
        if value is not None and _accepts_string(schema):
            filled[name] = value
    for name in required_names:
        if name in filled:
            continue
        ok, value = _filler(properties.get(name))
        if not ok:
            return None
        filled[name] = value
    return filled


def _accepts_string(schema: Any) -> bool:
    if not isinstance(schema, Mapping):
        return True
    kind = schema.get("type")
    if kind is None:
        return True
    return kind == "string" or (isinstance(kind, list) and "string" in kind)


def tools_for(tools: ToolSchemas) -> dict[Job, str]:
    """The first declared tool doing each job (declaration order, as a model reads them)."""
    found: dict[Job, str] = {}
    for name in tools:
        job = job_of(name)
        if job is not None and job not in found:
            found[job] = name
    return found


def joined(root: str | None, path: str) -> str:
    """`path` under the working directory `root` when it is relative and `root` known."""
    if root is None or path.startswith("/"):
        return path
    return posixpath.normpath(posixpath.join(root, path))
