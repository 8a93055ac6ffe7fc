"""The chain world: a strictly sequential treasure hunt through `length` locked boxes.

Each box reveals the id of the next one, so the model cannot parallelise or skip ahead:
a run needs exactly `length` tool calls, which makes it the long-horizon stress test.
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any

from traces.model import ToolErrorKind
from traces.tools.base import SuccessResult, ToolOutcome, argument_failure
from traces.tools.schema_check import ArgumentChecker

#: Upper bound on `length`; ids are 6 hex digits and runs beyond this are never useful.
MAX_LENGTH = 100_000

#: Names the task prompts may use as `{placeholders}`.
PROMPT_VARIABLES = frozenset({"start_box", "length"})

OPEN_BOX_SPEC: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "open_box",
        "description": (
            "Open a box by its id. An opened box tells you the id of the next box to open, "
            "or, if it is the last box, reveals the treasure."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "box_id": {
                    "type": "string",
                    "pattern": "^box-[0-9a-f]{6}$",
                    "description": "The id of the box to open, e.g. box-1a2b3c.",
                }
            },
            "required": ["box_id"],
            "additionalProperties": False,
        },
    },
}

_CHECKER = ArgumentChecker([OPEN_BOX_SPEC])

_ADJECTIVES = (
    "amber", "azure", "crimson", "golden", "hidden", "ivory", "jade", "lunar",
    "misty", "quiet", "rusty", "silver", "scarlet", "velvet", "wild", "frosty",
)  # fmt: skip
_NOUNS = (
    "falcon", "otter", "lantern", "compass", "harbor", "meadow", "comet", "willow",
    "badger", "anchor", "cedar", "heron", "marble", "thistle", "raven", "beacon",
)  # fmt: skip


class ChainEnvironment:
    """One run's chain of boxes; the same `(length, seed)` always builds the same world."""

    replayable = True
    """Deterministic: the same calls on a fresh world return the same results."""

    def __init__(self, *, length: int, seed: int) -> None:
        """Generate `length` distinct box ids and a treasure word from `seed`."""
        if not 1 <= length <= MAX_LENGTH:
            raise ValueError(f"length must be between 1 and {MAX_LENGTH}, got {length}")
        # A string seed is hashed deterministically (unlike hash()), so worlds are stable
        # across processes; the prefix keeps this world independent of other seeded worlds.
        rng = random.Random(f"chain:{seed}")
        numbers = rng.sample(range(16**6), length)
        self._ids = [f"box-{n:06x}" for n in numbers]
        self._index = {box_id: i for i, box_id in enumerate(self._ids)}
        self.treasure = f"{rng.choice(_ADJECTIVES)}-{rng.choice(_NOUNS)}-{rng.randrange(100, 1000)}"
        self._opened = 0

    @property
    def box_ids(self) -> list[str]:
        """All box ids in the order they must be opened."""
        return list(self._ids)

    @property
    def opened(self) -> int:
        """How many boxes have been opened so far."""
        return self._opened

    def tool_specs(self) -> list[dict[str, Any]]:
        """The single `open_box` tool."""
        # A copy: callers (dialects, recorders) may edit it; the module's specs are shared.
        return [copy.deepcopy(OPEN_BOX_SPEC)]

    def prompt_variables(self) -> dict[str, str]:
        """`start_box` (the first id) and `length` (number of boxes)."""
        return {"start_box": self._ids[0], "length": str(len(self._ids))}

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        """Open a box if it is already opened or the next one due; otherwise refuse."""
        refused = argument_failure(_CHECKER, name, arguments)
        if refused is not None:
            return refused
        box_id: str = arguments["box_id"]
        index = self._index.get(box_id)
        # Boxes beyond the next one are "locked", indistinguishable from unknown ids, so the
        # model cannot probe its way forward without following the chain. The trace keeps
        # which it was: an id that exists nowhere is one the model made up.
        if index is None or index > self._opened:
            kind = ToolErrorKind.MISSING if index is None else ToolErrorKind.REJECTED
            return ToolOutcome.failure(kind, f"{box_id} is locked or does not exist")
        if index == self._opened:
            self._opened += 1
        return ToolOutcome(output=self._describe(index))

    def _describe(self, index: int) -> str:
        body: dict[str, Any] = {
            "box_id": self._ids[index],
            "opened": index + 1,
            "remaining": len(self._ids) - index - 1,
        }
        if index + 1 < len(self._ids):
            body["next_box_id"] = self._ids[index + 1]
        else:
            body["treasure"] = self.treasure
        return json.dumps(body)

    def check_success(self, final_answer: str) -> SuccessResult:
        """Passed when every box was opened and the final answer names the treasure."""
        total = len(self._ids)
        if self._opened < total:
            return SuccessResult(
                passed=False, detail=f"Only {self._opened} of {total} boxes were opened."
            )
        if self.treasure.lower() not in final_answer.lower():
            return SuccessResult(
                passed=False,
                detail=f"All {total} boxes were opened but the answer lacks {self.treasure!r}.",
            )
        return SuccessResult(
            passed=True, detail=f"All {total} boxes opened and the treasure was named."
        )
