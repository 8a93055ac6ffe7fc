"""What a column of a comparison stands for: apart from `selection`, so that the options
declaring `--group-by` do not import the comparison engine (and pydantic) into every command."""

from __future__ import annotations

from enum import StrEnum


class GroupBy(StrEnum):
    """What a column of the comparison stands for."""

    provider = "provider"
    """The provider label a run was recorded with (`together`, `sim-moonshot`...)."""
    upstream = "upstream"
    """The host that served the run: behind a router, `router/upstream` (OpenRouter's
    `provider` response field, the one most of the run's steps named); else the provider."""
    model = "model"
    """The model id sent in requests."""
    day = "day"
    """The provider and the UTC day a run started (`together 2026-12-05`): one host over
    time, to see when it changed its serving stack."""
    week = "week"
    """The provider and the ISO week a run started (`together 2026-W49`)."""
