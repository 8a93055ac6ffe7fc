"""Streaming irregularities the assembler noted (`steps.anomalies`), one finding each.

The assembler already rebuilt the intended message; most of these findings say the host's
stream would break a naive client (name concatenated, index missing, arguments doubled, the
stream cut before `[DONE]`). The delivery ones (`traces/stream_quality.py`) are what
MiniMax's provider verifier tests: usage before the last chunk, content and reasoning in one
delta, U+FFFD from a split character, a stream buffered into one chunk. They are noted while
the stream is read, so checking them costs nothing per step; steps recorded before they
were noted simply carry none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from analyzer.checks.records import Finding, Run, Severity, Step
from traces.responses import SAMPLING_ANOMALIES
from traces.sse import STREAM_CUT
from traces.stream_quality import REPLACEMENT

ANOMALIES = (
    "finish_reason_changed",
    "tool_call_id_changed",
    "tool_call_id_repeated",
    "tool_call_name_changed",
    "tool_call_name_repeated",
    "tool_call_arguments_object_in_stream",
    "tool_call_arguments_cumulative",
    "tool_call_index_missing",
    "tool_call_index_not_zero_based",
    "tool_call_index_split",
    "unparsable_chunk",
    "stream_without_done",
    "usage_before_last_chunk",
    "content_and_reasoning_in_one_delta",
    "replacement_char",
    "single_chunk",
)
"""Anomaly kinds the stream assembler and the client note (traces/stream.py,
traces/stream_quality.py, traces/client.py)."""

OTHER = "stream_other"
"""The finding for an anomaly kind this module does not know yet (a newer recorder's)."""


def finding_kind(anomaly: str) -> str:
    """The finding kind of one anomaly kind: `stream_` + its name, said once."""
    if anomaly not in ANOMALIES:
        return OTHER
    return f"stream_{anomaly.removeprefix('stream_')}"


KINDS = frozenset({*(finding_kind(a) for a in ANOMALIES), OTHER})
"""Finding kinds this module emits (the catalogue describes each)."""

ONE_DELTA_TOKEN_CHARS = 30
"""`stream_single_chunk` (one delta) is as sure as the delta is long: about 1 - 30/chars,
i.e. how unlikely a real token stream would put that many characters (a token is about four)
in one chunk: 0.75 at 120 characters, 0.9 at 300, 0.97 at 1,000."""

REPLACEMENT_CONFIDENCE = {"split": 0.95, "edge": 0.85, "inside": 0.6}
"""`stream_replacement_char`: U+FFFD ending one piece and starting the next is a character
cut in two; at a piece's edge, most likely one; inside a piece, a host that batched tokens
or, rarely, a model that writes U+FFFD itself."""


def cut_attempt(error: Mapping[str, Any]) -> bool:
    """Whether a failed attempt (an `ExchangeError` as a dict) is a stream that ended cleanly
    with neither a finish_reason nor `[DONE]`: the host stopped sending, the connection was
    fine. The client records it as a `connection` error so that it is retried like one; what
    happened is the stream's, `stream_without_done`, not a lost connection (`http`)."""
    return error.get("kind") == "connection" and error.get("message") == STREAM_CUT


def _evidence(items: list[dict[str, Any]]) -> dict[str, Any]:
    detail = {k: v for k, v in items[0].items() if k != "kind"}
    return {"count": len(items), "first": detail}


def _asked_continuous_usage(step: Step) -> bool:
    options = step.request_params.get("stream_options")
    return isinstance(options, Mapping) and options.get("continuous_usage_stats") is True


def _usage(step: Step, items: list[dict[str, Any]]) -> Finding | None:
    # vLLM's documented `stream_options.continuous_usage_stats` asks for usage in every
    # chunk: what was asked for is not a fault. Unasked, clients that add up usage chunks
    # count tokens many times over, and those that take the first read a running count.
    if _asked_continuous_usage(step):
        return None
    return Finding(
        "stream_usage_before_last_chunk", "warning", "provider", step.index, _evidence(items)
    )


def _mixed(step: Step, items: list[dict[str, Any]]) -> Finding | None:
    return Finding(
        "stream_content_and_reasoning_in_one_delta",
        "warning",
        "provider",
        step.index,
        _evidence(items),
    )


def _mentions(value: Any, needle: str) -> bool:
    """Whether any string inside `value` (nested dicts and lists) contains `needle`."""
    if isinstance(value, str):
        return needle in value
    if isinstance(value, Mapping):
        return any(_mentions(v, needle) for v in value.values())
    if isinstance(value, list):
        return any(_mentions(v, needle) for v in value)
    return False


def _replacement(step: Step, items: list[dict[str, Any]]) -> Finding | None:
    first = items[0]
    where = "split" if first.get("split") else "edge" if first.get("at_edge") else "inside"
    confidence = REPLACEMENT_CONFIDENCE[where]
    evidence = _evidence(items)
    # A request that already holds U+FFFD (a tool read a file that was not UTF-8) gives the
    # model one to quote: then the character may be the model's own text, not the host's cut.
    quoted = any(_mentions(message, REPLACEMENT) for message in step.request_messages)
    evidence["request_has_replacement_char"] = quoted
    severity: Severity = "warning"
    if quoted:
        confidence, severity = round(confidence / 2, 2), "info"
    return Finding(
        "stream_replacement_char", severity, "provider", step.index, evidence, confidence
    )


def _single_chunk(step: Step, items: list[dict[str, Any]]) -> Finding | None:
    chars = items[0].get("chars")
    if not isinstance(chars, int) or chars <= ONE_DELTA_TOKEN_CHARS:
        return None  # a newer recorder's form this version cannot grade
    confidence = round(min(0.99, 1 - ONE_DELTA_TOKEN_CHARS / chars), 2)
    return Finding(
        "stream_single_chunk", "warning", "provider", step.index, _evidence(items), confidence
    )


def _without_done(step: Step, items: list[dict[str, Any]]) -> Finding | None:
    # Attempts cut before their end were retried: only the last attempt's stream is kept, so
    # the earlier cuts are known from their recorded errors alone.
    cut = sum(map(cut_attempt, step.retry_errors))
    failed = step.error_kind is not None and cut_attempt(
        {"kind": step.error_kind, "message": step.error_message}
    )
    if not items and not cut:
        return None
    evidence: dict[str, Any] = {
        "count": len(items),
        "first": {k: v for k, v in items[0].items() if k != "kind"} if items else {},
        "cut_attempts": cut + failed,
        "step_failed": failed,
    }
    severity: Severity = "error" if failed else "warning"
    return Finding("stream_without_done", severity, "provider", step.index, evidence)


_GRADED: dict[str, Callable[[Step, list[dict[str, Any]]], Finding | None]] = {
    "usage_before_last_chunk": _usage,
    "content_and_reasoning_in_one_delta": _mixed,
    "replacement_char": _replacement,
    "single_chunk": _single_chunk,
    "stream_without_done": _without_done,
}
"""Anomalies whose finding depends on the request or carries a confidence."""


def stream_anomalies(step: Step, run: Run) -> list[Finding]:
    """`stream_<anomaly>` per anomaly kind on the step, with how often it occurred; a stream
    cut short on an attempt that was then retried counts as `stream_without_done` too."""
    findings: list[Finding] = []
    grouped: dict[str, list[dict[str, Any]]] = {}
    for anomaly in step.anomalies:
        kind = str(anomaly.get("kind", "unknown"))
        if kind not in SAMPLING_ANOMALIES:  # the answer against its request: `sampling`'s
            grouped.setdefault(kind, []).append(anomaly)
    if (step.retry_errors or step.failed) and "stream_without_done" not in grouped:
        grouped["stream_without_done"] = []  # only the recorded errors may show the cut
    for anomaly_kind, items in grouped.items():
        graded = _GRADED.get(anomaly_kind)
        if graded is not None:
            finding = graded(step, items)
            if finding is not None:
                findings.append(finding)
            continue
        kind = finding_kind(anomaly_kind)
        evidence = _evidence(items)
        if kind == OTHER:
            evidence["anomaly"] = anomaly_kind
        findings.append(Finding(kind, "warning", "provider", step.index, evidence))
    return findings
