"""Chain strategy: follow `next_box_id` from box to box until one holds the treasure."""

from __future__ import annotations

import re
from typing import Any

from traces.sim.strategies.base import Plan, looks_like_error
from traces.sim.transcript import Call, Transcript
from traces.sim.voice import Voice, excerpt, sentences

_BOX_ID = re.compile(r"\bbox-[0-9a-f]{6}\b")
_TOOL = "open_box"

_START = (
    "The task starts at {box}. I need to open boxes one at a time and follow the ids.",
    "I'm told to begin with {box}; each box should name the next one.",
    "First box is {box}. Let me open it and see where it points.",
    "Starting point: {box}. The chain only reveals one id at a time, so I'll go step by step.",
)
_LEARNED = (
    "Box {box} held a card pointing to {next}.",
    "{box} is open and its card names {next} as the next box.",
    "The result for {box} gives next_box_id = {next}.",
    "Opening {box} revealed the next id: {next}.",
)
_PROGRESS = (
    "That makes {opened} opened, {remaining} to go.",
    "Progress: {opened} done, {remaining} remaining.",
    "{remaining} boxes left after this one.",
    "",
)
_NEXT = (
    "Opening it next.",
    "I'll open {next} now.",
    "Next step: open_box on {next}.",
    "Continuing with {next}.",
)
_ASIDE = (
    "The id has the box- prefix and six hex digits, so it should be accepted.",
    "Nothing else in the result needs attention.",
    "No treasure yet, so the chain goes on.",
)
_TREASURE = (
    "Box {box} was the last one ({opened} opened, none remaining) and it holds the treasure "
    "{treasure}. Time to answer.",
    "{box} has no next id; instead it contains the treasure: {treasure}. I can give the "
    "final answer now.",
    "The chain ends at {box} with treasure {treasure} after {opened} boxes. Reporting it.",
)
_FAILED = (
    "Opening {box} failed: {error}.",
    "The call for {box} came back with an error ({error}).",
    "That did not work for {box}: {error}.",
)
_RETRY = (
    "The last card I trust points to {target}, so I'll try opening {target} again.",
    "I'll go back to {target}, the id the chain actually gave me.",
    "Retrying with {target}, which is where the chain left off.",
)


def _box_data(call: Call) -> dict[str, Any] | None:
    # A result that names neither a next box nor a treasure cannot move the chain on, so it
    # counts as a failure (otherwise a malformed world would loop until max_steps).
    data = call.result_json()
    if not isinstance(data, dict) or "box_id" not in data:
        return None
    following = data.get("next_box_id")
    if "treasure" in data or (isinstance(following, str) and following):
        return data
    return None


class ChainStrategy:
    """Strictly sequential: one `open_box` per turn, driven by the last result."""

    name = "chain"

    def failed(self, call: Call) -> bool:
        """A chain result is good only if it is a JSON object naming its box."""
        if call.name != _TOOL:
            return looks_like_error(call.result)
        return _box_data(call) is None

    def next_plan(self, transcript: Transcript, voice: Voice) -> Plan:
        """Open the start box, then whatever the last card names; answer at the treasure."""
        if not transcript.turns:
            match = _BOX_ID.search(transcript.user_text)
            if match is None:
                return Plan(
                    reasoning="The request mentions no box id of the form box-xxxxxx, so there "
                    "is nothing to open.",
                    content="I could not find a starting box id (box-xxxxxx) in the request.",
                )
            box = match.group(0)
            return Plan(reasoning=voice.pick(_START, box=box), calls=((_TOOL, {"box_id": box}),))

        last = transcript.turns[-1]
        good = [data for call in last.calls if call.name == _TOOL if (data := _box_data(call))]
        for data in good:
            if "treasure" in data:
                reasoning = voice.pick(
                    _TREASURE,
                    box=data.get("box_id"),
                    opened=data.get("opened", "all"),
                    treasure=data["treasure"],
                )
                return Plan(reasoning=reasoning, content=f"The treasure is {data['treasure']}.")
        for data in reversed(good):
            following = data.get("next_box_id")
            if isinstance(following, str) and following:
                values = {
                    "box": data.get("box_id"),
                    "next": following,
                    "opened": data.get("opened", "?"),
                    "remaining": data.get("remaining", "?"),
                }
                reasoning = sentences(
                    voice.pick(_LEARNED, **values),
                    voice.pick(_PROGRESS, **values),
                    voice.pick(_NEXT, **values),
                    voice.maybe(0.3, _ASIDE, **values),
                )
                return Plan(reasoning=reasoning, calls=((_TOOL, {"box_id": following}),))
        return self._recover(transcript, voice)

    def _recover(self, transcript: Transcript, voice: Voice) -> Plan:
        # Retry from the last id the world itself gave us; the caller caps repeated failures.
        failed = transcript.turns[-1].calls[-1]
        target = self._resume_point(transcript)
        attempted = failed.arguments().get("box_id") or "the box"
        reasoning = sentences(
            voice.pick(_FAILED, box=attempted, error=excerpt(failed.result or "no result", 100)),
            voice.pick(_RETRY, target=target),
        )
        return Plan(reasoning=reasoning, calls=((_TOOL, {"box_id": target}),))

    def _resume_point(self, transcript: Transcript) -> str:
        for turn in reversed(transcript.turns):
            for call in reversed(turn.calls):
                data = _box_data(call) if call.name == _TOOL else None
                if data and isinstance(data.get("next_box_id"), str):
                    return str(data["next_box_id"])
        match = _BOX_ID.search(transcript.user_text)
        return match.group(0) if match else "box-000000"
