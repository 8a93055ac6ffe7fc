"""The contract between the harness and a tool environment."""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import BaseModel, Field


class ToolOutcome(BaseModel):
    """What one tool execution returned to the model."""

    output: str = Field(description="Text sent back to the model as the tool message content.")
    error: str | None = Field(
        default=None,
        description="Set when the call failed (bad arguments, refused path, unknown box...); "
        "the model still receives `output`, which then explains the error.",
    )


class SuccessResult(BaseModel):
    """Verdict of a task's success check on a finished run."""

    passed: bool = Field(description="Whether the run achieved the task's goal.")
    detail: str = Field(description="One human-readable sentence explaining the verdict.")


class ToolEnvironment(Protocol):
    """One run's private world of tools. Built fresh per run, so runs never share state."""

    def tool_specs(self) -> list[dict[str, Any]]:
        """The `tools` request parameter: OpenAI function-tool definitions with JSON Schemas."""
        ...

    def prompt_variables(self) -> dict[str, str]:
        """Values substituted into the task's prompts (`{start_box}` and the like)."""
        ...

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        """Execute one tool call whose arguments already parsed as a JSON object.

        Never raises for bad input from the model: unknown names, schema violations,
        refused paths and the like come back as a `ToolOutcome` with `error` set.
        """
        ...

    def check_success(self, final_answer: str) -> SuccessResult:
        """Judge the run from its final answer and the environment's end state."""
        ...
