"""Failed model calls, classified by cause: rate limit, server error, timeout, context overflow,
reasoning required back (DeepSeek's 400), template or argument-type errors, other 400s.

Retried attempts (`retry_errors`) count too: a step that succeeded on the third try still tells
you the host is rate limiting. One finding per step and class, with the number of attempts.

The recorded error class comes from the HTTP status; the body often knows better. llama.cpp
and older vLLM answer 500 for a chat template that raised, llama.cpp answers 500 for a prompt
over its context, and Cloudflare's 524 is a timeout, not a crash.
"""

from __future__ import annotations

from typing import Any

from analyzer.checks.overflow import blame
from analyzer.checks.records import Finding, Layer, Run, Step
from analyzer.checks.streaming import cut_attempt
from traces.error_markers import ARGUMENT_TYPE_MARKERS, CONTEXT_MARKERS, names_template_error

_REASONING_REQUIRED = ("reasoning_content", "thinking", "reasoning_details", "reasoning")
_PASSED_BACK = ("missing", "must be passed back", "required")
_TIMEOUT = ("timeout", "timed out")
_TIMEOUT_STATUSES = (522, 524)
"""Cloudflare's 'connection timed out' and 'a timeout occurred' in front of a slow origin."""
_READ_BODY = ("bad_request", "server_error", "other")
"""Error classes whose body is worth reading for a more precise cause."""

_BY_KIND: dict[str, tuple[str, Layer]] = {
    "rate_limit": ("http_rate_limit", "provider"),
    "server_error": ("http_server_error", "provider"),
    "timeout": ("http_timeout", "provider"),
    "connection": ("http_connection", "provider"),
    # The agent's history outgrew the window: the client decides what it sends. Unless the
    # request was far smaller than the window (`overflow.blame` decides per finding).
    "context_overflow": ("http_context_overflow", "client"),
    "auth": ("http_auth", "client"),
    "not_found": ("http_not_found", "client"),
    "invalid_response": ("http_invalid_response", "provider"),
    # A 200 with nothing generated: the host failed before its first token.
    "empty_response": ("empty_response", "provider"),
    "other": ("http_other", "provider"),
}

KINDS = frozenset(
    {
        "empty_response",
        "http_reasoning_required",
        "http_template_error",
        "http_argument_type_error",
        "http_bad_request",
        *(kind for kind, _ in _BY_KIND.values()),
    }
)
"""Finding kinds this module emits (the catalogue describes each)."""


def _from_body(kind: str, status: Any, text: str) -> tuple[str, Layer] | None:
    required = any(m in text for m in _REASONING_REQUIRED) and any(m in text for m in _PASSED_BACK)
    if kind == "bad_request" and required:
        # The host needs each turn's reasoning back and the client did not send it.
        return "http_reasoning_required", "client"
    if any(m in text for m in CONTEXT_MARKERS):
        return _BY_KIND["context_overflow"]
    # Arguments the template cannot take are the more precise reading of a template raise.
    if "argument" in text and any(m in text for m in ARGUMENT_TYPE_MARKERS):
        return "http_argument_type_error", "provider"
    if names_template_error(text):
        return "http_template_error", "provider"
    if kind == "server_error" and (status in _TIMEOUT_STATUSES or any(m in text for m in _TIMEOUT)):
        return _BY_KIND["timeout"]
    return None


def classify(error: dict[str, Any]) -> tuple[str, Layer]:
    """Finding kind and layer of one failed attempt (an `ExchangeError` as a dict)."""
    kind = str(error.get("kind") or "other")
    text = f"{error.get('message') or ''} {error.get('body') or ''}".lower()
    if kind in _READ_BODY:
        precise = _from_body(kind, error.get("status"), text)
        if precise is not None:
            return precise
    if kind == "bad_request":
        return "http_bad_request", "client"
    return _BY_KIND.get(kind, ("http_other", "provider"))


def _final_error(step: Step) -> dict[str, Any] | None:
    if step.error_kind is None:
        return None
    return {
        "kind": step.error_kind,
        "status": step.error_status,
        "message": step.error_message,
        "body": step.error_body,
    }


def http_errors(step: Step, run: Run) -> list[Finding]:
    """Every failed attempt of the step, grouped by class; `error` when the step failed.
    A stream cut short is the stream's (`streaming.stream_anomalies`), not a lost connection."""
    findings: list[Finding] = []
    final = _final_error(step)
    if final is not None and cut_attempt(final):
        final = None
    if final is not None and final.get("kind") == "cancelled":
        final = None  # the client hung up (a proxied client): nobody's failure
    attempts = [
        *(error for error in step.retry_errors if not cut_attempt(error)),
        *([final] if final else []),
    ]
    grouped: dict[tuple[str, Layer], list[dict[str, Any]]] = {}
    for attempt in attempts:
        grouped.setdefault(classify(attempt), []).append(attempt)
    final_class = classify(final) if final else None
    for (kind, layer), items in grouped.items():
        if run.parameter_probe and kind == "http_bad_request":
            continue  # the host refused the parameter the probe asked about: a fair answer
        failed = (kind, layer) == final_class
        evidence: dict[str, Any] = {
            "attempts": len(items),
            "statuses": sorted({i.get("status") for i in items if i.get("status")}),
            "message": str(items[-1].get("message") or "")[:300],
            "step_failed": failed,
        }
        confidence = None
        if kind == "http_context_overflow":
            # Whose window it was is inferred from the request's size against the limit.
            judged = blame(step, items[-1])
            layer, confidence = judged.layer, judged.confidence
            evidence.update(judged.evidence)
        findings.append(
            Finding(kind, "error" if failed else "warning", layer, step.index, evidence, confidence)
        )
    return findings


def empty_response(step: Step, run: Run) -> list[Finding]:
    """A step recorded as an answer although nothing came: no text, no reasoning, no call,
    no finish_reason and no completion token. A store from before such 200s were failed
    calls, or an import, holds them; calls that failed this way `http_errors` reports."""
    findings: list[Finding] = []
    if step.failed or step.calls or step.finish_reason_raw is not None or step.completion_tokens:
        return findings
    if (step.content or "").strip() or (step.reasoning or "").strip():
        return findings
    evidence = {
        "finish_reason": None,
        "completion_tokens": step.completion_tokens,
        "streamed": step.streamed,
        "step_failed": False,
    }
    findings.append(Finding("empty_response", "error", "provider", step.index, evidence))
    return findings
