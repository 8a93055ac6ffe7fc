"""Repository-edit strategy: a rename across a git repository through MCP file and git tools.

Offered the MCP filesystem server's tree, read and write tools and the MCP git server's add,
commit and status tools, and asked to rename `OLD` to `NEW` (and commit, with a message in
backticks or quotes), it works as a careful model would, one call per turn with its
reasoning between: the tree of the project (without `.git`), every file read, each file that
mentions `OLD` (as a whole word) written back with `NEW`, the changed files staged, the commit,
a status to check the tree is clean, and an answer naming the files. Asked anything else
with those tools, it works as the generic strategy does.
"""

from __future__ import annotations

import re
from typing import Any

from traces.sim.strategies.base import Plan, ToolSchemas, looks_like_error
from traces.sim.strategies.generic import GenericStrategy
from traces.sim.transcript import Call, Transcript
from traces.sim.voice import Voice, excerpt

_TREE = "directory_tree"
_READ = "read_text_file"
_WRITE = "write_file"
_ADD = "git_add"
_COMMIT = "git_commit"
_STATUS = "git_status"
REQUIRED_TOOLS = frozenset({_TREE, _READ, _WRITE, _ADD, _COMMIT, _STATUS})
"""The MCP filesystem and git servers' tools the plan needs."""

_RENAME = re.compile(
    r"\brename\b[^`]{0,40}`(?P<old>[A-Za-z_]\w*)`\s+to\s+`(?P<new>[A-Za-z_]\w*)`", re.I
)
_MESSAGE = re.compile(r"\bmessage\s*[:=]?\s*(?:`([^`\n]{1,120})`|\"([^\"\n]{1,120})\")", re.I)
_MAX_READ_ATTEMPTS = 2

_START = (
    "I need to rename `{old}` to `{new}` everywhere and commit. First, the project's layout.",
    "Task: every `{old}` becomes `{new}`, then a commit. Let me see which files exist.",
)
_READING = (
    "{count} files in the project. Reading {path} to see whether it mentions `{old}`.",
    "Next file: {path}. I read each one instead of guessing where `{old}` is used.",
)
_WRITING = (
    "{path} uses `{old}` {uses} time(s). Writing it back with `{new}` instead.",
    "Rewriting {path}: {uses} occurrence(s) of `{old}` become `{new}`.",
)
_STAGING = (
    "Every mention is renamed ({files}). Staging those files.",
    "The edits are done in {count} file(s); staging them for the commit.",
)
_COMMITTING = (
    "Staged. Committing with the message asked for: {message}.",
    "Now the commit: {message}.",
)
_CHECKING = (
    "Committed ({result}). A last status to be sure nothing is left unstaged.",
    "The commit went through: {result}. Checking the working tree is clean.",
)
_DONE = (
    "The tree is clean and the rename is committed; time to report.",
    "Status confirms the commit. Summarising the change.",
)
_FAILED = (
    "{tool} failed ({error}). I can't finish the change this way, so I'll report it.",
    "The {tool} call returned an error: {error}. Reporting what happened instead.",
)


class RepoEditStrategy:
    """Renames an identifier across a repository through MCP file and git tools."""

    name = "repo_edit"

    def __init__(self, tools: ToolSchemas) -> None:
        """Keep the declared tools (for the generic fallback)."""
        self.tools = tools

    @staticmethod
    def recognises(tools: ToolSchemas) -> bool:
        """Whether the MCP filesystem and git servers' tools are all declared."""
        return tools.keys() >= REQUIRED_TOOLS

    def failed(self, call: Call) -> bool:
        """MCP servers report failures as text: an error prefix."""
        return looks_like_error(call.result)

    def next_plan(self, transcript: Transcript, voice: Voice) -> Plan:
        """The next call of the rename, or the answer once it is committed."""
        asked = _RENAME.search(transcript.user_text)
        if asked is None:
            return GenericStrategy(self.tools).next_plan(transcript, voice)
        old, new = asked["old"], asked["new"]
        calls = [call for turn in transcript.turns for call in turn.calls]
        if calls and self.failed(calls[-1]) and calls[-1].name != _READ:
            last = calls[-1]
            reasoning = voice.pick(_FAILED, tool=last.name, error=excerpt(last.result, 100))
            content = (
                f"I could not finish renaming `{old}` to `{new}`: {last.name} failed "
                f"({excerpt(last.result, 160)})."
            )
            return Plan(reasoning=reasoning, content=content)
        tree = next((c for c in calls if c.name == _TREE), None)
        if tree is None:
            arguments = {"path": ".", "excludePatterns": [".git"]}
            return Plan(voice.pick(_START, old=old, new=new), calls=((_TREE, arguments),))
        files = _files(tree.result_json())
        read: dict[str, str] = {}
        attempts: dict[str, int] = {}
        for call in calls:
            if call.name == _READ:
                path = str(call.arguments().get("path", ""))
                attempts[path] = attempts.get(path, 0) + 1
                if not self.failed(call) and call.result is not None:
                    read[path] = call.result
        for path in files:
            if path not in read and attempts.get(path, 0) < _MAX_READ_ATTEMPTS:
                reasoning = voice.pick(_READING, count=len(files), path=path, old=old)
                return Plan(reasoning, calls=((_READ, {"path": path}),))
        word = re.compile(rf"\b{re.escape(old)}\b")
        written = {str(c.arguments().get("path", "")) for c in calls if c.name == _WRITE}
        changed = [path for path in files if path in read and word.search(read[path])]
        for path in changed:
            if path not in written:
                uses = len(word.findall(read[path]))
                arguments = {"path": path, "content": word.sub(new, read[path])}
                reasoning = voice.pick(_WRITING, path=path, uses=uses, old=old, new=new)
                return Plan(reasoning, calls=((_WRITE, arguments),))
        message = _message(transcript.user_text) or f"Rename {old} to {new}"
        done = {call.name: call for call in calls}
        if not changed:
            content = f"Nothing mentions `{old}` in the {len(files)} files: nothing to rename."
            return Plan(voice.pick(_DONE), content=content)
        if _ADD not in done:
            reasoning = voice.pick(_STAGING, files=", ".join(changed), count=len(changed))
            return Plan(reasoning, calls=((_ADD, {"repo_path": ".", "files": changed}),))
        if _COMMIT not in done:
            reasoning = voice.pick(_COMMITTING, message=message)
            arguments = {"repo_path": ".", "message": message}
            return Plan(reasoning, calls=((_COMMIT, arguments),))
        if _STATUS not in done:
            result = excerpt(done[_COMMIT].result, 80)
            return Plan(
                voice.pick(_CHECKING, result=result), calls=((_STATUS, {"repo_path": "."}),)
            )
        content = (
            f"Renamed `{old}` to `{new}` in {len(changed)} files ({', '.join(changed)}) and "
            f"committed them as “{message}”. The working tree is clean."
        )
        return Plan(voice.pick(_DONE), content=content)


def _files(tree: Any, prefix: str = "") -> list[str]:
    """Paths of the files of a `directory_tree` result, depth first, in its order."""
    paths: list[str] = []
    for entry in tree if isinstance(tree, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        path = f"{prefix}{entry['name']}"
        if entry.get("type") == "directory":
            paths += _files(entry.get("children"), f"{path}/")
        else:
            paths.append(path)
    return paths


def _message(text: str) -> str | None:
    found = _MESSAGE.search(text)
    return (found.group(1) or found.group(2)) if found else None
