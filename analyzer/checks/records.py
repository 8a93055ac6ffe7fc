"""Plain, immutable views of a recorded run that checks read, and the findings they emit.

Checks get these instead of database rows or pydantic records so they stay pure functions of
data that a test can build by hand in a line or two.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from traces.responses import CHOICES_MISSING

Severity = Literal["info", "warning", "error"]
"""How bad a finding is: `error` broke the step, `warning` is wrong but survivable."""

Layer = Literal["model", "tool", "provider", "client"]
"""Who is at fault: the model's output, the tool, the host's serving stack, or our client."""


@dataclass(frozen=True, init=False)
class Finding:
    """One thing a check noticed on a step (or on the run, when `step` is None)."""

    kind: str
    severity: Severity
    layer: Layer
    step: int | None
    evidence: dict[str, Any]
    confidence: float | None = None
    """How likely the finding is right, 0..1, for kinds the catalogue marks `inferred` (the
    check reads it off indirect evidence, e.g. token counts); None when it saw it directly."""

    def __init__(
        self,
        kind: str,
        severity: Severity,
        layer: Layer,
        step: int | None,
        evidence: dict[str, Any],
        confidence: float | None = None,
    ) -> None:
        # The fields in one dict, as the frozen dataclass's own `__init__` sets them one
        # `object.__setattr__` at a time: a third of the cost, and most steps make a finding.
        object.__setattr__(
            self,
            "__dict__",
            {
                "kind": kind,
                "severity": severity,
                "layer": layer,
                "step": step,
                "evidence": evidence,
                "confidence": confidence,
            },
        )


@dataclass(frozen=True)
class Call:
    """One tool call as recorded (`tool_calls` row)."""

    index: int
    id: str | None
    id_format: str
    name: str
    arguments_raw: str
    arguments_type: str
    arguments: Any
    json_valid: bool
    schema_valid: bool | None
    schema_error: str | None


@dataclass(frozen=True)
class Result:
    """What the harness executed for one call (`tool_results` row)."""

    index: int
    tool_call_id: str | None
    name: str
    output: str
    error: str | None
    error_kind: str | None = None
    """Why it failed (`traces.model.ToolErrorKind`); None when it did not, or is unknown."""


@dataclass(frozen=True)
class OtherChoice:
    """A choice of `n` other than choice 0, as the raw response holds it (`checks.choices`):
    what it generated, for the checks that weigh a usage counting every choice."""

    reasoning: str = ""
    content: str = ""
    calls: tuple[tuple[str, str], ...] = ()
    """Each call's name and arguments text."""


@dataclass(frozen=True)
class Step:
    """One model call with its calls and results (`steps` row, normalized fields)."""

    index: int
    finish_reason: str
    finish_reason_raw: str | None = None
    content: str | None = None
    reasoning: str | None = None
    reasoning_source: str = "none"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    reasoning_tokens_source: str = "missing"
    cached_tokens: int | None = None
    total_tokens: int | None = None
    streamed: bool = False
    http_status: int | None = None
    error_kind: str | None = None
    error_status: int | None = None
    error_message: str | None = None
    error_body: str | None = None
    retry_errors: tuple[dict[str, Any], ...] = ()
    anomalies: tuple[dict[str, Any], ...] = ()
    request_params: dict[str, Any] = field(default_factory=dict)
    calls: tuple[Call, ...] = ()
    results: tuple[Result, ...] = ()
    request_messages: tuple[dict[str, Any], ...] = ()
    """Every message of the request, in order, exactly as sent. Consecutive steps share the
    dict objects of the messages they have in common: read them, never mutate them."""
    other_choices: tuple[OtherChoice, ...] | None = None
    """The choices beyond choice 0 when the usage counts several (`choices_counted` > 1),
    read from the raw response by the loader; None when not read or not readable."""

    @cached_property
    def tools(self) -> dict[str, dict[str, Any]]:
        """Function tools the request declared: name -> parameters schema."""
        declared: dict[str, dict[str, Any]] = {}
        for tool in self.request_params.get("tools") or []:
            function = tool.get("function") if isinstance(tool, dict) else None
            if isinstance(function, dict) and isinstance(function.get("name"), str):
                parameters = function.get("parameters")
                declared[function["name"]] = parameters if isinstance(parameters, dict) else {}
        return declared

    @property
    def forced_tool(self) -> str | None:
        """The function a named `tool_choice` forces, if any: the chat form
        `{"type": "function", "function": {"name": …}}` or the flat `{"type": "function",
        "name": …}` some clients send."""
        choice = self.request_params.get("tool_choice")
        if not isinstance(choice, dict):
            return None
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else choice.get("name")
        return name if isinstance(name, str) else None

    @cached_property
    def max_tokens(self) -> int | None:
        """The completion budget the request asked for (`max_completion_tokens` or
        `max_tokens`), if it set one."""
        for key in ("max_completion_tokens", "max_tokens"):
            value = self.request_params.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
        return None

    @property
    def stop_sequences(self) -> list[str]:
        """The request's stop sequences (none when it set none)."""
        stop = self.request_params.get("stop")
        if isinstance(stop, str):
            stop = [stop]
        return [s for s in stop if isinstance(s, str) and s] if isinstance(stop, list) else []

    @property
    def choices_counted(self) -> int:
        """How many choices the usage counts: OpenAI-compatible hosts add up every choice of
        `n` in one usage, while the step keeps choice 0's text. The request's `n`, or as many
        as came when fewer did (the `choices_missing` anomaly says how many)."""
        asked = self.request_params.get("n")
        if not isinstance(asked, int) or isinstance(asked, bool) or asked <= 1:
            return 1
        for anomaly in self.anomalies:
            if anomaly.get("kind") == CHOICES_MISSING:
                received = anomaly.get("received")
                return received if isinstance(received, int) and received > 0 else 1
        return asked

    @cached_property
    def failed(self) -> bool:
        """Whether the call produced no usable response (an HTTP or transport error).
        (Cached: read a dozen times a step by the checks; the loader fills it in.)"""
        return self.error_kind is not None


@dataclass(frozen=True)
class Run:
    """A run with its steps in order."""

    id: str
    provider: str = "sim"
    model: str = "model"
    dialect: str | None = None
    termination: str | None = None
    steps: tuple[Step, ...] = ()
    raw_text: bool = False
    """The run sent a client-rendered prompt to `/completions` (a raw probe): its steps are
    plain text, not chat messages, so only transport-level checks apply."""
    parameter_probe: bool = False
    """The run is a `traces probe` request that sets a sampling parameter on purpose (`n`,
    `logprobs`, ...): a 400 refusing it is the host's answer to the probe, not a client
    mistake."""

    @cached_property
    def request_starts(self) -> tuple[int, ...]:
        """For each step, the position of the first message its request adds to the previous
        request's; 0 when it does not extend that request (the first step, a new
        conversation, an edited history). Worked out once for every check that follows the
        history (`requests.request_increments`)."""
        starts: list[int] = []
        previous: tuple[dict[str, Any], ...] = ()
        for step in self.steps:
            messages = step.request_messages
            start = len(previous)
            # Shared message objects: the comparison is one identity check per message.
            if not previous or len(messages) < start or messages[:start] != previous:
                start = 0
            starts.append(start)
            previous = messages
        return tuple(starts)
