"""The `none` world: no tools at all, for tasks the model answers from the prompt alone."""

from __future__ import annotations

from typing import Any

from traces.model import ToolErrorKind
from traces.tools.base import SuccessResult, ToolOutcome


class NoToolsEnvironment:
    """Offers no tool; a call the model makes anyway is answered `not_found`. Its success
    is its dataset's scorer's verdict (`traces.scorers.ScoredEnvironment`), never its own."""

    replayable = True
    """Nothing to restore: the world has no state."""

    def tool_specs(self) -> list[dict[str, Any]]:
        """None: the request carries no `tools`."""
        return []

    def prompt_variables(self) -> dict[str, str]:
        """None of its own."""
        return {}

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        """Every call names a tool that does not exist."""
        return ToolOutcome.failure(ToolErrorKind.NOT_FOUND, f"there is no tool {name!r}")

    def check_success(self, final_answer: str) -> SuccessResult:
        """Unknown: a world without tools has nothing to judge by (a scorer does that)."""
        return SuccessResult(passed=None, detail="no scorer judged this answer.")
