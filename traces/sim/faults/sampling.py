"""Faults on the sampling parameters: the host silently drops one before the model runs, so
the request is answered as if it had never set it (no error, nothing in the response says)."""

from __future__ import annotations

from dataclasses import replace

from traces.sim.sampling import Sampling


def max_tokens_ignored(sampling: Sampling) -> Sampling | None:
    """The budget is not enforced: the turn runs past it and ends on its own."""
    return replace(sampling, max_tokens=None) if sampling.max_tokens is not None else None


def stop_ignored(sampling: Sampling) -> Sampling | None:
    """Stop sequences are not enforced: the text runs on through them."""
    return replace(sampling, stop=()) if sampling.stop else None


def n_ignored(sampling: Sampling) -> Sampling | None:
    """One choice comes back whatever `n` asked for."""
    return replace(sampling, n=1) if sampling.n > 1 else None


def logprobs_ignored(sampling: Sampling) -> Sampling | None:
    """No log probabilities come back (`logprobs` null)."""
    return replace(sampling, logprobs=False, top_logprobs=0) if sampling.logprobs else None


def response_format_ignored(sampling: Sampling) -> Sampling | None:
    """The answer is plain text whatever format was asked for."""
    return replace(sampling, response_format=None) if sampling.response_format else None


def seed_ignored(sampling: Sampling) -> Sampling | None:
    """`seed` and `temperature` 0 are not honoured: each request is sampled anew, so the same
    request twice gets different answers."""
    if not sampling.deterministic:
        return None
    return replace(sampling, seeded=False, greedy=False, fresh=True)
