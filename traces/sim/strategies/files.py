"""Files strategy: list, grep the marker, read every hit in parallel, write the report."""

from __future__ import annotations

from typing import Any

from traces.sim.strategies.base import (
    Plan,
    ToolSchemas,
    backticked,
    looks_like_error,
    quoted_phrase,
)
from traces.sim.transcript import Call, Transcript, Turn
from traces.sim.voice import Voice, excerpt

_LIST = "list_files"
_GREP = "grep"
_READ = "read_file"
_WRITE = "write_file"
REQUIRED_TOOLS = frozenset({_GREP, _READ, _WRITE})
"""Without these the files plan cannot run; the generic strategy takes over instead."""

_START = (
    'I have to collect every line containing "{marker}" into `{out}`. First, a look at what '
    "files exist.",
    'Task: gather the "{marker}" lines and write them to `{out}`. Listing the project first.',
)
_LISTED = (
    'There are {count} files ({sample}). Rather than open them all, I\'ll grep for "{marker}".',
    '{count} files in the sandbox. A grep for "{marker}" will tell me which ones matter.',
)
_GREPPED = (
    '"{marker}" appears {hits} times in {count} files: {sample}. I\'ll read those files '
    "together to get the exact lines.",
    "The grep found {hits} matching lines across {count} files. Reading all of them in one go.",
)
_READ_DONE = (
    'I have the contents of {count} files and {lines} lines mention "{marker}". Writing them '
    "to `{out}`, one per line.",
    'Collected {lines} "{marker}" lines from {count} files; now writing `{out}`.',
)
_WRITTEN = (
    "`{out}` is written ({size} bytes). The task is done.",
    "The report `{out}` exists now with {lines} lines. Summarising.",
)
_RETRY = (
    "{tool} failed: {error}. Trying it again.",
    "The {tool} call returned an error ({error}); one more attempt.",
)


def _json_list(call: Call) -> list[Any] | None:
    data = call.result_json()
    return data if isinstance(data, list) else None


def _latest(turns: list[Turn], name: str) -> list[Call]:
    """Calls of `name` in the most recent turn that made any."""
    for turn in reversed(turns):
        calls = [call for call in turn.calls if call.name == name]
        if calls:
            return calls
    return []


class FilesStrategy:
    """Confined file work in four turns plus the answer."""

    name = "files"

    def __init__(self, tools: ToolSchemas) -> None:
        """Remember whether `list_files` is declared (it is an optional first look)."""
        self.can_list = _LIST in tools

    def failed(self, call: Call) -> bool:
        """JSON-returning tools must return their JSON; read_file text is checked heuristically."""
        if call.name in (_LIST, _GREP):
            return _json_list(call) is None
        if call.name == _WRITE:
            data = call.result_json()
            return not (isinstance(data, dict) and "bytes" in data)
        return looks_like_error(call.result)

    def next_plan(self, transcript: Transcript, voice: Voice) -> Plan:
        """Pick the phase from the last turn's tools; a failed phase is simply repeated."""
        marker = quoted_phrase(transcript.user_text) or "TODO"
        out = backticked(transcript.user_text) or "report.md"
        values = {"marker": marker, "out": out}
        if not transcript.turns:
            if self.can_list:
                return Plan(voice.pick(_START, **values), calls=((_LIST, {"path": "."}),))
            return self._grep(voice.pick(_START, **values), marker)
        last = transcript.turns[-1]
        names = last.names()
        if _WRITE in names:
            return self._after_write(transcript, voice, marker, out)
        if _READ in names:
            lines, count = self._lines(transcript, marker, out)
            reasoning = voice.pick(_READ_DONE, count=count, lines=len(lines), **values)
            return self._write(reasoning, out, lines)
        if _GREP in names:
            return self._after_grep(transcript, voice, marker, out)
        if _LIST in names:
            call = _latest(transcript.turns, _LIST)[-1]
            listing = _json_list(call)
            if listing is None:
                lead = f"Listing failed ({excerpt(call.result, 80)}), but grep does not need it."
            else:
                sample = ", ".join(str(p) for p in listing[:3]) + ("…" if len(listing) > 3 else "")
                lead = voice.pick(_LISTED, count=len(listing), sample=sample or "none", **values)
            return self._grep(lead, marker)
        return self._grep(voice.pick(_START, **values), marker)

    @staticmethod
    def _grep(reasoning: str, marker: str) -> Plan:
        return Plan(reasoning=reasoning, calls=((_GREP, {"pattern": marker, "path": "."}),))

    @staticmethod
    def _write(reasoning: str, out: str, lines: list[str]) -> Plan:
        return Plan(
            reasoning=reasoning, calls=((_WRITE, {"path": out, "content": "\n".join(lines)}),)
        )

    def _after_grep(self, transcript: Transcript, voice: Voice, marker: str, out: str) -> Plan:
        call = _latest(transcript.turns, _GREP)[-1]
        matches = _json_list(call)
        if matches is None:
            error = excerpt(call.result, 100)
            return self._grep(voice.pick(_RETRY, tool=_GREP, error=error), marker)
        paths = self._paths(matches, out)
        if not paths:
            reasoning = f'No file contains "{marker}". I will still write an empty `{out}`.'
            return self._write(reasoning, out, [])
        sample = ", ".join(paths[:4]) + ("…" if len(paths) > 4 else "")
        reasoning = voice.pick(
            _GREPPED, marker=marker, hits=len(matches), count=len(paths), sample=sample
        )
        # All reads go out in ONE turn: they are independent, and parallel calls are part of
        # what the traces must exercise.
        return Plan(reasoning=reasoning, calls=tuple((_READ, {"path": p}) for p in paths))

    def _after_write(self, transcript: Transcript, voice: Voice, marker: str, out: str) -> Plan:
        call = _latest(transcript.turns, _WRITE)[-1]
        if self.failed(call):
            lines, _ = self._lines(transcript, marker, out)
            error = excerpt(call.result, 100)
            return self._write(voice.pick(_RETRY, tool=_WRITE, error=error), out, lines)
        content = str(call.arguments().get("content", ""))
        count = len(content.splitlines())
        data = call.result_json()
        reasoning = voice.pick(_WRITTEN, out=out, size=data.get("bytes"), lines=count)
        answer = f'Wrote {count} line{"s" if count != 1 else ""} containing "{marker}" to `{out}`.'
        return Plan(reasoning=reasoning, content=answer)

    @staticmethod
    def _paths(matches: list[Any], out: str) -> list[str]:
        # The report itself may already match on a retry; never read it back as a source.
        paths = [str(m["path"]) for m in matches if isinstance(m, dict) and m.get("path")]
        return [p for p in dict.fromkeys(paths) if p != out]

    def _lines(self, transcript: Transcript, marker: str, out: str) -> tuple[list[str], int]:
        """Matching lines in grep's file order; grep's own text stands in for failed reads."""
        grep_calls = _latest(transcript.turns, _GREP)
        matches = (_json_list(grep_calls[-1]) if grep_calls else None) or []
        texts = {
            str(c.arguments().get("path")): c.result or ""
            for c in _latest(transcript.turns, _READ)
            if not self.failed(c)
        }
        paths = self._paths(matches, out) or list(texts)
        lines: list[str] = []
        for path in paths:
            if path in texts:
                lines += [line for line in texts[path].splitlines() if marker in line]
            else:
                lines += [
                    str(m.get("text", ""))
                    for m in matches
                    if isinstance(m, dict) and str(m.get("path")) == path
                ]
        return lines, len(paths)
