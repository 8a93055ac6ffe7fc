"""Elapsed times as the store keeps them: milliseconds, to the microsecond."""

from __future__ import annotations

import time


def elapsed_ms(start: float) -> float:
    """Milliseconds since `start` (a `time.perf_counter()` reading), rounded to the microsecond.

    The clock reads to the nanosecond, but what it times here (a network read, a tool call
    scheduled on an event loop) varies by far more than a microsecond: the digits past it are
    noise. Stored, they were most of the bytes of a stream's arrival times (16 digits a time,
    in `steps.stream_events`, where `12.345` carries the same measurement), and a column of
    such doubles compresses to a fraction of what full-precision ones take.
    """
    return round((time.perf_counter() - start) * 1000, 3)
