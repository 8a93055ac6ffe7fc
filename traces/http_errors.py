"""The error of a failed or malformed chat-completions response: its class (rate limit,
context overflow, …), the human message inside its body, one line to show."""

from __future__ import annotations

from traces import strict_json
from traces.model import ErrorKind, ExchangeError
from traces.one_line import one_line

_CONTEXT_MARKERS = (
    "context length",
    "context_length",
    "context window",
    "maximum context",
    "too many tokens",
    "prompt is too long",
    "exceeds the model",
)


def error_message(text: str) -> str:
    """The human message inside an error body (`{"error": {"message": …}}` and kin)."""
    try:
        parsed = strict_json.loads(text)
    except ValueError:
        return text or "(empty body)"
    if isinstance(parsed, dict):
        err = parsed.get("error", parsed)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
    return text


def classify_status(status: int, body: str) -> ErrorKind:
    """Error class of an HTTP failure, from its status and body."""
    lowered = body.lower()
    if status == 429:
        return "rate_limit"
    if status in (408, 504):
        return "timeout"
    if status >= 500:
        return "server_error"
    if status in (400, 413, 422) and any(m in lowered for m in _CONTEXT_MARKERS):
        return "context_overflow"
    if status in (401, 403):
        return "auth"
    if status == 404:
        return "not_found"
    if status in (400, 422):
        return "bad_request"
    return "other"


def http_error(status: int, text: str) -> ExchangeError:
    """The error of a call answered with HTTP `status` and body `text`."""
    return ExchangeError(
        kind=classify_status(status, text),
        status=status,
        message=one_line(f"HTTP {status}: {error_message(text)}"),
        body=text,
    )


def invalid_response(status: int | None, raw: str, exc: BaseException) -> ExchangeError:
    """The error of a response body that is not a chat completion (or not even JSON)."""
    if isinstance(exc, strict_json.StrictJSONError):
        message = f"response is not JSON: {exc}"
    else:
        message = f"response is not a chat completion: {exc!r}"
    return ExchangeError(
        kind="invalid_response", status=status, message=one_line(message), body=raw
    )


def empty_response(status: int | None, raw: str, what: str) -> ExchangeError:
    """The error of a 200 that carried nothing generated (`what` says how it looked): a
    stream of no choice but `[DONE]`, an empty body, `choices: []`. The host failed before
    the first token; there is no turn to read, so the call failed."""
    return ExchangeError(
        kind="empty_response",
        status=status,
        message=one_line(f"nothing was generated: {what}"),
        body=raw or None,
    )
