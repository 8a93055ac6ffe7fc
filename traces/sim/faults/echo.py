"""Hosts that send the client's credentials back: a gateway's debug output, an upstream error
quoting the request headers. A client that stores responses faithfully stores the key too,
unless it redacts it (`traces.redaction`)."""

from __future__ import annotations

from dataclasses import replace

from traces.sim.faults.base import FaultContext, Rejection
from traces.sim.reply import Reply
from traces.sim.wire import dumps


def auth_echoed(reply: Reply, ctx: FaultContext) -> Reply | None:
    """The Authorization header comes back in the `x-request-id` header, in the reasoning
    and, on an answer turn, in the content. Requests that carry one."""
    if not ctx.authorization:
        return None
    quoted = f"(request received with Authorization: {ctx.authorization})"
    reasoning = f"{reply.reasoning} {quoted}" if reply.reasoning else quoted
    content = f"{reply.content} {quoted}" if reply.content and not reply.calls else reply.content
    headers = (*reply.headers, ("x-request-id", f"req_{ctx.authorization}"))
    return replace(reply, reasoning=reasoning, content=content, headers=headers)


def auth_echoed_in_error(ctx: FaultContext) -> Rejection | None:
    """HTTP 401 from a gateway that quotes the key it refused, whole, in its message, its body
    and its `x-request-id` (OpenAI masks it; proxies often do not). Requests that carry an
    Authorization header."""
    if not ctx.authorization:
        return None
    body = {
        "error": {
            "message": f"Incorrect API key provided: {ctx.authorization}",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
            "request_headers": {"Authorization": ctx.authorization},
        }
    }
    headers = (("x-request-id", f"req_{ctx.authorization}"),)
    return Rejection(401, dumps(body), headers=headers)
