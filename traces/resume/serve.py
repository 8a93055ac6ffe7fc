"""Reaching the endpoints of stored runs again: one simulator per distinct configuration
(started for as long as the block runs), each remote endpoint checked once to answer."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from traces.client import EndpointConfig
from traces.running import serving
from traces.targets import Target


@contextlib.contextmanager
def serving_each(targets: list[tuple[Target, float]]) -> Iterator[list[EndpointConfig]]:
    """The endpoint of each (target, request deadline), in order; targets described alike
    share one (one simulator serves every run recorded against the same configuration)."""
    with contextlib.ExitStack() as stack:
        served: dict[str, EndpointConfig] = {}
        endpoints: list[EndpointConfig] = []
        for target, timeout in targets:
            key = f"{timeout!r} {target.model_dump_json()}"
            if key not in served:
                [served[key]] = stack.enter_context(serving([target], timeout))
            endpoints.append(served[key])
        yield endpoints
