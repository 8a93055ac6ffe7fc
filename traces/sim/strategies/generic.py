"""Generic strategy: call each declared tool once with schema-valid arguments, then answer.

Tools that start another agent are never called: a subagent offered the same tools would
call them again, and so on down.
"""

from __future__ import annotations

from collections import Counter

from traces.sim.schema_values import example_arguments
from traces.sim.strategies.base import Plan, ToolSchemas, looks_like_error
from traces.sim.strategies.workspace_tools import SPAWNING, normalized
from traces.sim.transcript import Call, Transcript
from traces.sim.voice import Voice, excerpt, sentences

_FIRST = (
    "I don't know these tools yet. I'll try each one once, starting with {tool}.",
    "Several tools are available; calling {tool} first to see what it returns.",
)
_NEXT = (
    "{previous} returned: {result}. Next I'll try {tool}.",
    "Got a result from {previous} ({result}). Moving on to {tool}.",
)
_RETRY = (
    "{tool} rejected the call ({error}). I'll retry it with every optional field filled in.",
    "That {tool} call failed: {error}. One more try with fuller arguments.",
)
_DONE = (
    "Every tool has been called once; time to summarise what came back.",
    "I've seen the output of all {count} tools, so I can answer now.",
)
_MAX_ATTEMPTS = 2


class GenericStrategy:
    """Works with any tools: exercise each declared tool, then report what they returned."""

    name = "generic"

    def __init__(self, tools: ToolSchemas) -> None:
        """Keep the declared tools in declaration order."""
        self.tools = tools

    def failed(self, call: Call) -> bool:
        """Unknown tools only fail recognisably: by an error prefix or an `error` object."""
        return looks_like_error(call.result)

    def next_plan(self, transcript: Transcript, voice: Voice) -> Plan:
        """Retry the last tool once if it failed, else call the next untried tool, else answer."""
        attempts = Counter(call.name for turn in transcript.turns for call in turn.calls)
        if transcript.turns:
            last = transcript.turns[-1].calls[-1]
            if (
                self.failed(last)
                and last.name in self.tools
                and attempts[last.name] < _MAX_ATTEMPTS
            ):
                error = excerpt(last.result or "no result", 100)
                return self._call(
                    voice.pick(_RETRY, tool=last.name, error=error), last.name, voice, True
                )
        untried = [
            name for name in self.tools if attempts[name] == 0 and normalized(name) not in SPAWNING
        ]
        if untried:
            tool = untried[0]
            if not transcript.turns:
                return self._call(voice.pick(_FIRST, tool=tool), tool, voice, False)
            last = transcript.turns[-1].calls[-1]
            result = excerpt(last.result, 80)
            reasoning = voice.pick(_NEXT, previous=last.name, result=result, tool=tool)
            return self._call(reasoning, tool, voice, False)
        return self._answer(transcript, voice)

    def _call(self, reasoning: str, tool: str, voice: Voice, full: bool) -> Plan:
        arguments = example_arguments(self.tools.get(tool), voice.rng, full=full)
        return Plan(reasoning=reasoning, calls=((tool, arguments),))

    def _answer(self, transcript: Transcript, voice: Voice) -> Plan:
        lines = []
        for turn in transcript.turns:
            for call in turn.calls:
                status = "failed" if self.failed(call) else "ok"
                lines.append(f"- {call.name} ({status}): {excerpt(call.result, 100)}")
        content = "I called each available tool once. Results:\n" + "\n".join(lines)
        return Plan(reasoning=voice.pick(_DONE, count=len(self.tools)), content=content)


_PLAIN = (
    "No tools are available, so I will answer directly from the message.",
    "This needs no tool calls; I can reply right away.",
    "Nothing to look up here without tools. Answering from what was asked.",
)


def answer_without_tools(transcript: Transcript, voice: Voice) -> Plan:
    """A direct reply when no tools are declared (or tool_choice is "none")."""
    asked = excerpt(transcript.user_text, 160) or "(an empty message)"
    content = sentences(
        f"You asked: “{asked}”.",
        voice.pick(
            (
                "I am a simulated model without tools, so this is my direct answer.",
                "Here is my reply, based only on your message.",
                "I can only answer from the text itself, which I have done.",
            )
        ),
    )
    return Plan(reasoning=voice.pick(_PLAIN), content=content)
