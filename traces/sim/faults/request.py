"""Faults that answer before the model runs: refusals, rate limits, server errors, stalls."""

from __future__ import annotations

from traces.sim.faults.base import FaultContext, Rejection, Stall
from traces.sim.interleaved import missing_reasoning_index, reasoning_required_error
from traces.sim.wire import dumps, error


def reasoning_required_400(ctx: FaultContext) -> Rejection | None:
    """DeepSeek's 400 when a tool-call turn of the current chain lacks its reasoning."""
    index = missing_reasoning_index(ctx.messages, ctx.dialect.reasoning_in)
    if index is None:
        return None
    return Rejection(400, dumps(reasoning_required_error(index, ctx.dialect.reasoning_back)))


def rate_limit_429(ctx: FaultContext) -> Rejection:
    """OpenAI's rate-limit answer, with `retry-after`."""
    body = error(
        "Rate limit reached for requests per min (RPM). Please try again in 1s.",
        kind="requests",
        code="rate_limit_exceeded",
    )
    headers = (("retry-after", "1"), ("x-ratelimit-remaining-requests", "0"))
    return Rejection(429, dumps(body), headers=headers)


_BAD_GATEWAY = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


def server_error_5xx(ctx: FaultContext) -> Rejection:
    """A 500 or 503 JSON error, or a proxy's 502 HTML page (chosen per request)."""
    pick = int(ctx.roll("server_error_5xx.status") * 3)
    if pick == 0:
        message = "The server had an error while processing your request. Sorry about that!"
        return Rejection(500, dumps(error(message, kind="server_error")))
    if pick == 1:
        return Rejection(502, _BAD_GATEWAY, content_type="text/html")
    message = "The engine is currently overloaded, please try again later."
    return Rejection(503, dumps(error(message, kind="server_error")))


def timeout(ctx: FaultContext) -> Stall:
    """Hold the response for `timeout_s` before answering."""
    return Stall(ctx.timeout_s)
