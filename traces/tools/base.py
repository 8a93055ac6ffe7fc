"""The contract between the harness and a tool environment."""

from __future__ import annotations

from typing import Any, Protocol, Self

from pydantic import BaseModel, Field, model_validator

from traces.model import ToolErrorKind
from traces.tools.schema_check import ArgumentChecker


class ToolOutcome(BaseModel):
    """What one tool execution returned to the model."""

    output: str = Field(description="Text sent back to the model as the tool message content.")
    error: str | None = Field(
        default=None,
        description="Set when the call failed (bad arguments, refused path, unknown box...); "
        "the model still receives `output`, which then explains the error.",
    )
    error_kind: ToolErrorKind | None = Field(
        default=None, description="Why the call failed; set exactly when `error` is."
    )
    structured: Any = Field(
        default=None,
        description="An MCP tool's `structuredContent` as the server sent it (stored beside "
        "the text; the model reads `output`).",
    )

    @model_validator(mode="after")
    def _kind_goes_with_error(self) -> Self:
        # A failure without its kind could not be counted, a kind without text not explained.
        if (self.error is None) != (self.error_kind is None):
            raise ValueError("error and error_kind are set together or not at all")
        return self

    @classmethod
    def failure(cls, kind: ToolErrorKind, message: str) -> ToolOutcome:
        """A failed call: the model reads `Error: <message>`, the trace keeps the kind."""
        return cls(output=f"Error: {message}", error=message, error_kind=kind)


def argument_failure(checker: ArgumentChecker, name: str, arguments: Any) -> ToolOutcome | None:
    """The failure a tool set answers a call it cannot take with, or None when it fits.

    A name the set does not know is `not_found`; arguments off its schema are
    `invalid_arguments`.
    """
    problem = checker.check(name, arguments)
    if problem is None:
        return None
    kind = ToolErrorKind.INVALID_ARGUMENTS if checker.knows(name) else ToolErrorKind.NOT_FOUND
    return ToolOutcome.failure(kind, f"invalid arguments for {name}: {problem}")


class SuccessResult(BaseModel):
    """Verdict of a task's success check on a finished run."""

    passed: bool | None = Field(
        description="Whether the run achieved the task's goal; None when it cannot be told "
        "(a dataset's scorer that failed)."
    )
    detail: str = Field(description="One human-readable sentence explaining the verdict.")


class ToolEnvironment(Protocol):
    """One run's private world of tools. Built fresh per run, so runs never share state."""

    replayable: bool
    """Whether a fresh world of the same task and seed, given the same calls in the same
    order, returns the same results: what lets `traces record --resume` restore the world an
    interrupted run left by replaying its recorded calls. A world that reaches outside
    itself (a network, a clock, a shell) must say False, and its runs are not resumed."""

    def tool_specs(self) -> list[dict[str, Any]]:
        """The `tools` request parameter: OpenAI function-tool definitions with JSON Schemas."""
        ...

    def prompt_variables(self) -> dict[str, str]:
        """Values substituted into the task's prompts (`{start_box}` and the like)."""
        ...

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        """Execute one tool call whose arguments already parsed as a JSON object.

        Never raises for bad input from the model: unknown names, schema violations,
        refused paths and the like come back as a `ToolOutcome.failure` of their kind.
        """
        ...

    def check_success(self, final_answer: str) -> SuccessResult:
        """Judge the run from its final answer and the environment's end state."""
        ...


def verdict_of(value: Any, reference: str) -> SuccessResult:
    """The verdict a user's judging function (`reference`) returned: a bool, a `(bool,
    explanation)` pair or a dict with `passed` and `explanation`; unknown (None) for
    anything else, since then it is the function that failed, not the run."""
    passed: Any = value
    explanation = f"{reference} returned {value!r}."
    if isinstance(value, tuple) and len(value) == 2:
        passed, explanation = value[0], str(value[1])
    elif isinstance(value, dict) and "passed" in value:
        passed = value["passed"]
        explanation = str(value.get("explanation", explanation))
    if not isinstance(passed, bool):
        shown = " ".join(repr(value).split())[:80]
        return SuccessResult(
            passed=None,
            detail=f"{reference} answered neither a bool, (bool, explanation) nor "
            f"{{passed, explanation}}: {shown}",
        )
    return SuccessResult(passed=passed, detail=explanation)
