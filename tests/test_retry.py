"""The retry policy: Retry-After honoured, full jitter (no lockstep), deterministic failures
retried at most once, transient ones up to the limit; and over HTTP, the wait a host asked."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from traces.client import EndpointConfig
from traces.http_errors import http_error
from traces.model import ErrorKind, ExchangeError
from traces.probes.catalogue import PROBES
from traces.probes.runner import ProbePlan, ProbeTarget, probe_targets
from traces.retry import RetryPolicy, is_deterministic, retry_after_s, retry_delay
from traces.sim.config import SimConfig
from traces.sim.server import SimServer
from traces.store.database import open_for_reading
from traces.store.recorder import Recorder

from recording import record
from scripted_endpoint import ScriptedEndpoint, error

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
RATE_LIMIT = http_error(429, '{"error": {"message": "Rate limit reached"}}')
OVERLOADED = http_error(503, '{"error": {"message": "The engine is currently overloaded"}}')
TEMPLATE_500 = http_error(
    500, '{"error": {"message": "jinja2.exceptions.TemplateSyntaxError: expected token"}}'
)
ARGUMENT_500 = http_error(
    500,
    '{"error": {"code": 500, "message": "Invalid tool call arguments passed: {} at row 76"}}',
)


def _failure(kind: ErrorKind, status: int | None) -> ExchangeError:
    return ExchangeError(kind=kind, status=status, message=f"{kind} {status}")


def _attempts(policy: RetryPolicy, error: ExchangeError) -> int:
    """How many times `error`, met on every attempt, is sent again."""
    earlier: list[ExchangeError] = []
    rng = random.Random(0)
    while retry_delay(policy, error, {}, earlier, rng) is not None:
        earlier.append(error)
    return len(earlier)


# -- Retry-After -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": " 1.5 "}, 1.5),
        ({"retry-after": format_datetime(NOW + timedelta(seconds=20), usegmt=True)}, 20.0),
        ({"retry-after": format_datetime(NOW - timedelta(seconds=20), usegmt=True)}, 0.0),
        ({"retry-after": "Wed, 01 Jan 2025 12:00:30 -0000"}, 30.0),
        # OpenAI's SDK reads the milliseconds first; so do we.
        ({"retry-after-ms": "250", "retry-after": "1"}, 0.25),
        ({"retry-after-ms": "soon", "retry-after": "2"}, 2.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "-3"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after": "nan"}, None),
        ({}, None),
    ],
)
def test_retry_after_reads_seconds_milliseconds_and_dates(
    headers: dict[str, str], seconds: float | None
) -> None:
    assert retry_after_s(headers, NOW) == seconds


def test_retry_after_is_a_floor_capped_at_the_maximum_wait() -> None:
    policy = RetryPolicy(base_s=0.5, max_wait_s=10.0)
    rng = random.Random(1)
    told = retry_delay(policy, RATE_LIMIT, {"retry-after": "3"}, [], rng, NOW)
    assert told is not None and 3.0 <= told <= 3.5
    greedy = retry_delay(policy, RATE_LIMIT, {"retry-after": "3600"}, [], rng, NOW)
    assert greedy is not None and 10.0 <= greedy <= 10.5
    dated = {"retry-after": format_datetime(NOW + timedelta(seconds=4), usegmt=True)}
    at_date = retry_delay(policy, RATE_LIMIT, dated, [], rng, NOW)
    assert at_date is not None and 4.0 <= at_date <= 4.5


# -- full jitter -------------------------------------------------------------------------------


def test_backoff_stays_under_an_exponential_ceiling_capped() -> None:
    policy = RetryPolicy(base_s=0.5, cap_s=3.0, max_retries=10)
    rng = random.Random(2)
    for attempt, ceiling in enumerate([0.5, 1.0, 2.0, 3.0, 3.0, 3.0]):
        earlier = [OVERLOADED] * attempt
        waits = [retry_delay(policy, OVERLOADED, {}, earlier, rng) for _ in range(200)]
        assert all(w is not None and 0.0 <= w <= ceiling for w in waits)
        # Full jitter: the whole range is used, not a fixed wait with a little noise.
        assert min(w for w in waits if w is not None) < ceiling / 4
        assert max(w for w in waits if w is not None) > ceiling * 3 / 4


def test_64_runs_meeting_one_429_do_not_retry_in_lockstep() -> None:
    policy = RetryPolicy(base_s=1.0)
    headers = {"retry-after": "1"}
    waits = [
        retry_delay(policy, RATE_LIMIT, headers, [], random.Random(run), NOW) for run in range(64)
    ]
    assert all(w is not None and 1.0 <= w <= 2.0 for w in waits)
    spread = sorted(w for w in waits if w is not None)
    assert len(set(spread)) == 64
    # Spread over the whole second: no 100 ms window holds more than a quarter of the runs.
    assert spread[-1] - spread[0] > 0.8
    assert max(sum(1 for w in spread if s <= w < s + 0.1) for s in spread) <= 16


def test_a_seeded_random_source_gives_the_same_waits() -> None:
    policy = RetryPolicy()

    def waits(seed: int) -> list[float | None]:
        rng = random.Random(seed)
        return [retry_delay(policy, OVERLOADED, {}, [OVERLOADED] * n, rng) for n in range(3)]

    assert waits(5) == waits(5) != waits(6)


# -- what is retried, how often ----------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        RATE_LIMIT,
        OVERLOADED,
        _failure("timeout", None),
        _failure("timeout", 408),
        _failure("connection", None),
        _failure("other", 409),
    ],
    ids=["429", "503", "deadline", "408", "connection", "409"],
)
def test_transient_failures_are_retried_up_to_the_limit(error: ExchangeError) -> None:
    assert not is_deterministic(error)
    assert _attempts(RetryPolicy(max_retries=3), error) == 3
    assert _attempts(RetryPolicy(max_retries=0), error) == 0


@pytest.mark.parametrize(
    "status", [400, 401, 402, 403, 404, 413, 422], ids=lambda status: str(status)
)
def test_a_4xx_is_never_retried(status: int) -> None:
    failure = http_error(status, '{"error": {"message": "no"}}')
    assert is_deterministic(failure)
    assert _attempts(RetryPolicy(max_retries=5), failure) == 0


@pytest.mark.parametrize("error", [TEMPLATE_500, ARGUMENT_500], ids=["template", "arguments"])
def test_a_500_repeating_a_validation_error_is_retried_once(error: ExchangeError) -> None:
    assert error.kind == "server_error" and is_deterministic(error)
    assert _attempts(RetryPolicy(max_retries=5), error) == 1
    assert _attempts(RetryPolicy(max_retries=5, deterministic_retries=0), error) == 0


def test_a_validation_500_after_transient_failures_still_gets_its_one_retry() -> None:
    policy = RetryPolicy(max_retries=5)
    rng = random.Random(3)
    earlier = [RATE_LIMIT, OVERLOADED]
    assert retry_delay(policy, TEMPLATE_500, {}, earlier, rng) is not None
    assert retry_delay(policy, TEMPLATE_500, {}, [*earlier, TEMPLATE_500], rng) is None


def test_invalid_responses_are_not_retried() -> None:
    garbled = _failure("invalid_response", 200)
    assert _attempts(RetryPolicy(max_retries=5), garbled) == 0


# -- over HTTP ---------------------------------------------------------------------------------


def _one_step(db_path: Path) -> tuple[float, list[int], str | None]:
    """Of the one stored step: seconds from the run's start to the attempt kept (the last),
    the statuses of the attempts that failed before it, and its error class."""
    conn = open_for_reading(db_path)
    try:
        row = conn.execute(
            "SELECT r.started_at, s.started_at, s.retry_errors, s.error_kind "
            "FROM runs r JOIN steps s ON s.run_id = r.id"
        ).fetchone()
    finally:
        conn.close()
    assert row is not None
    earlier = [e["status"] for e in json.loads(row[2] or "[]")]
    return (row[1] - row[0]).total_seconds(), earlier, row[3]


@pytest.mark.slow
def test_the_harness_waits_as_long_as_the_host_asks(db_path: Path) -> None:
    # No backoff of its own: any wait between the two attempts is the host's `retry-after: 1`.
    with SimServer(SimConfig(faults={"rate_limit_429": 1.0})) as sim:
        [summary] = record(
            db_path, sim.base_url, max_steps=1, retry=RetryPolicy(base_s=0.0, max_retries=1)
        )
    assert summary.outcome.termination == "provider_error"
    waited, earlier, kind = _one_step(db_path)
    assert (earlier, kind) == ([429], "rate_limit")
    # The kept attempt left at least the asked second after the run began (the first attempt
    # left after that), and nowhere near the policy's 60 s cap.
    assert 1.0 <= waited < 10.0


def test_the_probes_wait_as_long_as_the_host_asks(db_path: Path) -> None:
    with SimServer(SimConfig(faults={"rate_limit_429": 1.0})) as sim:
        endpoint = EndpointConfig(base_url=sim.base_url, api_key_env=None, api_key="test-key")
        plan = ProbePlan(
            targets=[ProbeTarget(provider="sim", model="sim-reasoner-1", endpoint=endpoint)],
            probes=PROBES[:1],
            retry=RetryPolicy(base_s=0.0, max_retries=1),
        )
        recorder = Recorder(db_path)
        try:
            [probe] = asyncio.run(probe_targets(plan, recorder))
        finally:
            recorder.close()
    assert probe.status == "failed"
    waited, earlier, kind = _one_step(db_path)
    assert (earlier, kind) == ([429], "rate_limit")
    assert 1.0 <= waited < 10.0


def test_the_harness_sends_a_template_500_twice_and_a_400_once(db_path: Path) -> None:
    template = ScriptedEndpoint([error(500, "jinja2.exceptions.UndefinedError: 'x' is undefined")])
    with template.serving():
        record(db_path, template.base_url, max_steps=1, retry=RetryPolicy(base_s=0.0))
    assert len(template.requests) == 2
    refused = ScriptedEndpoint([error(400, "Unrecognized request argument supplied: tools")])
    with refused.serving():
        record(db_path, refused.base_url, max_steps=1, retry=RetryPolicy(base_s=0.0))
    assert len(refused.requests) == 1
