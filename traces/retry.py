"""When a failed model call is sent again, and after how long: one policy for every caller.

The harness and the probes send through `send_with_retries`, which asks `retry_delay` after
each failed attempt:

- **Transient failures** (429, 5xx, timeouts, dropped connections, a 200 with nothing
  generated, 408, 409) are retried up to `max_retries` times after a full-jitter backoff,
  `uniform(0, min(cap_s, base_s * 2**n))` before retry n+1. Without the jitter, 64 runs that
  meet the same 429 come back in the same instant and meet it again.
- **`Retry-After` is a floor.** A host's `retry-after-ms` (read first, as OpenAI's SDK does)
  or `Retry-After` (seconds or an HTTP date) is waited in full, capped at `max_wait_s` so a
  host asking for an hour does not stall a run; the jittered backoff comes on top, so the runs
  it was sent to still spread out.
- **Deterministic failures are not repeated.** A 4xx other than 408/409/429 says the request
  is wrong and is not retried at all. A 5xx whose body repeats a validation error (a chat
  template that raised, tool-call arguments of the wrong type, a prompt over the context) is
  retried `deterministic_retries` times (once), in case it was a flake, and no more.

Every failed attempt is returned with the exchange that ended the loop, so the step records
them (`retries`, `retry_errors`).
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from traces.error_markers import names_validation_error
from traces.exchange import Exchange
from traces.model import ErrorKind, ExchangeError

_TRANSIENT_4XX = (408, 409, 429)
"""Client-error statuses that say "not now" rather than "not this": timeout, conflict, rate."""


class RetryPolicy(BaseModel):
    """How often and how patiently a failed model call is sent again."""

    model_config = ConfigDict(frozen=True)

    max_retries: int = Field(default=3, ge=0, description="Retries of a transient failure.")
    base_s: float = Field(default=0.5, ge=0, description="Backoff ceiling of the first retry.")
    cap_s: float = Field(default=30.0, ge=0, description="Largest backoff ceiling.")
    max_wait_s: float = Field(
        default=60.0, ge=0, description="Longest `Retry-After` honoured; longer asks are cut."
    )
    transient_kinds: tuple[ErrorKind, ...] = Field(
        # A 200 with nothing generated is a host that failed before its first token, as
        # transient as a dropped connection: sent again like one.
        default=("rate_limit", "server_error", "timeout", "connection", "empty_response"),
        description="Error classes worth sending again.",
    )
    transient_statuses: tuple[int, ...] = Field(
        default=_TRANSIENT_4XX,
        description="HTTP statuses worth sending again whatever their class.",
    )
    deterministic_retries: int = Field(
        default=1,
        ge=0,
        description="Retries of a transient-class failure whose body names a validation error.",
    )


_JITTER = random.Random()
"""Jitter of callers that bring no random source: seeded from the OS, one per process."""


def is_deterministic(error: ExchangeError) -> bool:
    """Whether the same request would fail the same way: a 4xx other than 408/409/429, or a
    5xx whose body repeats a validation error."""
    status = error.status
    if status is None:
        return False
    if 400 <= status < 500:
        return status not in _TRANSIENT_4XX
    return status >= 500 and names_validation_error(f"{error.message} {error.body or ''}")


def retry_after_s(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds the host asked the client to wait (`retry-after-ms`, else `Retry-After` as
    seconds or an HTTP date), or None when it asked nothing readable. Keys are lower case."""
    millis = _seconds(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC with no claim about local time
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def retry_delay(
    policy: RetryPolicy,
    error: ExchangeError,
    headers: Mapping[str, str],
    earlier: Sequence[ExchangeError],
    rng: random.Random,
    now: datetime | None = None,
) -> float | None:
    """Seconds to wait before sending a failed call again, or None to give up.

    `error` is the attempt that just failed (its response `headers`), `earlier` the failed
    attempts before it; `rng` draws the jitter (seed it for a reproducible wait).
    """
    attempt = len(earlier)
    transient = error.kind in policy.transient_kinds or error.status in policy.transient_statuses
    if not transient or attempt >= policy.max_retries:
        return None
    if is_deterministic(error) and (
        sum(map(is_deterministic, earlier)) >= policy.deterministic_retries
    ):
        return None
    ceiling = min(policy.cap_s, policy.base_s * 2**attempt)
    asked = retry_after_s(headers, now)
    floor = min(asked, policy.max_wait_s) if asked is not None else 0.0
    return floor + rng.uniform(0.0, ceiling)


async def send_with_retries(
    send: Callable[[dict[str, Any]], Awaitable[Exchange]],
    body: dict[str, Any],
    policy: RetryPolicy,
    rng: random.Random | None = None,
) -> tuple[Exchange, list[ExchangeError]]:
    """Send `body` until it succeeds or `policy` gives up: the last exchange, and the errors
    of the attempts that failed before it (oldest first)."""
    jitter = rng if rng is not None else _JITTER
    errors: list[ExchangeError] = []
    while True:
        exchange = await send(body)
        err = exchange.error
        if err is None:
            return exchange, errors
        delay = retry_delay(policy, err, exchange.headers, errors, jitter)
        if delay is None:
            return exchange, errors
        errors.append(err)
        await asyncio.sleep(delay)
