"""Where runs go: turning endpoint options into targets (a profile, a custom URL, or the
embedded simulator in a dialect with faults), each under the label its runs are stored with.

Labels: a profile's name (or `--provider`'s label for a custom URL), `sim` or `sim-DIALECT`
for the simulator, plus `+FAULT=RATE,…` when a target of several (`compare`, `probe`) has
faults injected (`record` records one target and keeps `sim`/`sim-DIALECT`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from traces.client import EndpointConfig
from traces.dialects import DIALECTS
from traces.errors import TracesError
from traces.profiles import SIM_PROVIDER, base_url_problem, load_profiles, profiles_path
from traces.replay import ReplayPolicy, parse_replay_option
from traces.sim.config import SimConfig
from traces.sim.faults.spec import fault_label, parse_faults, split_fault_list

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
"""The key a custom `--base-url` is sent when no variable is named, if it is set."""
NO_KEY = "no-key-needed"
"""Sent to a server that needs no key: the SDK insists on one, such a server ignores it.
Never stored (runs store the variable's name, and there is none)."""


class Target(BaseModel):
    """Where runs go and how to talk to it."""

    provider: str = Field(description="Label stored with the runs.")
    model: str
    endpoint: EndpointConfig | None = Field(
        description="None for the embedded simulator (its URL is known once it starts)."
    )
    sim: SimConfig | None = None
    dialect: str | None = Field(default=None, description="Dialect name, when one applies.")
    profile: str | None = Field(
        default=None, description="The provider profile the endpoint came from, if any."
    )
    replay: ReplayPolicy = Field(default_factory=ReplayPolicy)
    extra_body: dict[str, Any] = Field(default_factory=dict)


def resolve_target(
    *,
    provider: str | None,
    providers_file: Path | None,
    base_url: str | None,
    model: str | None,
    api_key_env: str | None,
    timeout: float,
    reasoning_replay: str,
    sim_dialect: str,
    sim_faults: dict[str, float],
    seed: int,
) -> Target:
    """The target the options describe; one-line errors for contradictions."""
    try:
        replay_field = parse_replay_option(reasoning_replay)
    except ValueError as exc:
        raise TracesError(f"--reasoning-replay {reasoning_replay!r}: {exc}") from None
    target = _base_target(
        provider,
        providers_file,
        base_url,
        model,
        api_key_env,
        timeout,
        sim_dialect,
        sim_faults,
        seed,
    )
    if replay_field is not None:
        target.replay = target.replay.model_copy(update={"reasoning": replay_field})
    return target


def _base_target(
    provider: str | None,
    providers_file: Path | None,
    base_url: str | None,
    model: str | None,
    api_key_env: str | None,
    timeout: float,
    sim_dialect: str,
    sim_faults: dict[str, float],
    seed: int,
) -> Target:
    if sim_dialect not in DIALECTS:
        raise TracesError(f"--dialect {sim_dialect!r}: unknown (known: {', '.join(DIALECTS)})")
    uses_sim = provider in (None, SIM_PROVIDER) and base_url is None
    problem = None if base_url is None else base_url_problem(base_url)
    if base_url is not None and problem:
        shown = base_url.rpartition("@")[2]  # never echo credentials written into the URL
        raise TracesError(f"--base-url {shown!r}: {problem}")
    if (sim_dialect != "openai" or sim_faults) and not uses_sim:
        raise TracesError("--dialect and --fault apply to the embedded simulator only")
    if uses_sim:
        config = SimConfig(seed=seed, dialect=sim_dialect, faults=sim_faults)
        dialect = DIALECTS[sim_dialect]
        label = SIM_PROVIDER if sim_dialect == "openai" else f"{SIM_PROVIDER}-{sim_dialect}"
        return Target(
            provider=label,
            model=model or config.model,
            endpoint=None,
            sim=config,
            dialect=sim_dialect,
            replay=ReplayPolicy.for_dialect(dialect, model or config.model),
            extra_body=dict(dialect.extra_body),
        )
    path = profiles_path(providers_file)
    profiles = load_profiles(path) if provider is not None and path.exists() else {}
    if provider is not None and provider in profiles:
        profile = profiles[provider]
        dialect = profile.resolved_dialect()
        return Target(
            provider=provider,
            profile=provider,
            model=model or profile.models[0],
            endpoint=EndpointConfig(
                base_url=base_url or profile.base_url,
                api_key_env=api_key_env or profile.api_key_env,
                api_key=None if (api_key_env or profile.api_key_env) else NO_KEY,
                extra_headers=profile.extra_headers,
                timeout_s=timeout,
            ),
            dialect=dialect.name,
            replay=ReplayPolicy.for_dialect(dialect, model or profile.models[0]),
            extra_body={**dialect.extra_body, **profile.extra_body},
        )
    if base_url is None:
        known = ", ".join([SIM_PROVIDER, *profiles]) if profiles else SIM_PROVIDER
        raise TracesError(f"{path}: no provider {provider!r} (known: {known})")
    if not model:
        raise TracesError("--model is required with --base-url")
    # A custom endpoint: `--provider` is only a label, reasoning goes back where it came, and
    # ids in the form the model family's template renders.
    return Target(
        provider=provider or "custom",
        model=model,
        endpoint=_custom_endpoint(base_url, api_key_env, timeout),
        replay=ReplayPolicy.for_dialect(None, model),
    )


def _custom_endpoint(base_url: str, api_key_env: str | None, timeout: float) -> EndpointConfig:
    """A `--base-url` without a profile: the named variable's key (unset: exit 2 naming it),
    else $OPENAI_API_KEY when set, else no key at all (a local server needs none)."""
    if api_key_env is None and os.environ.get(DEFAULT_KEY_ENV):
        api_key_env = DEFAULT_KEY_ENV
    return EndpointConfig(
        base_url=base_url,
        api_key_env=api_key_env,
        api_key=None if api_key_env else NO_KEY,
        timeout_s=timeout,
    )


def resolve_targets(
    *,
    providers: list[str],
    dialects: list[str],
    faults: list[str],
    providers_file: Path | None,
    model: str | None,
    timeout: float,
    seed: int,
    base_url: str | None = None,
    api_key_env: str | None = None,
) -> list[Target]:
    """The targets of a command that runs several side by side (`compare`, `probe`).

    One per `--provider NAME[:MODEL]` (a profile, or `sim`; with `base_url`, at most one,
    naming its profile or label), one for a `base_url` given alone, then one per `--dialect
    D[:FAULT[=RATE],…]`: the embedded simulator with that dialect's faults on top of the
    `faults` every simulated target gets. One-line errors for unknown names, bad specs,
    faults no target can take and two targets that would share a label.
    """
    common = parse_faults(faults)
    if base_url is not None and len(providers) > 1:
        raise TracesError("--base-url takes at most one --provider (its profile or label)")
    targets: list[Target] = []
    for spec in providers:
        name, _, spec_model = spec.partition(":")
        if not name:
            raise TracesError(f"--provider {spec!r}: expected NAME or NAME:MODEL")
        if name == SIM_PROVIDER and base_url is None:
            targets.append(_sim_target("openai", common, spec_model or model, seed))
            continue
        targets.append(
            _endpoint_target(
                name, providers_file, base_url, spec_model or model, api_key_env, timeout, seed
            )
        )
    if base_url is not None and not providers:
        targets.append(
            _endpoint_target(None, providers_file, base_url, model, api_key_env, timeout, seed)
        )
    for spec in dialects:
        name, _, own = spec.partition(":")
        faults_here = {**common, **parse_faults(split_fault_list(own))}
        targets.append(_sim_target(name, faults_here, model, seed))
    if common and targets and all(t.sim is None for t in targets):
        raise TracesError("--fault applies to the embedded simulator only (add --dialect)")
    labels = [t.provider for t in targets]
    for label in labels:
        if labels.count(label) > 1:
            raise TracesError(
                f"{label!r} is given twice: each provider or dialect (with its faults) is "
                "one target"
            )
    return targets


def _endpoint_target(
    provider: str | None,
    providers_file: Path | None,
    base_url: str | None,
    model: str | None,
    api_key_env: str | None,
    timeout: float,
    seed: int,
) -> Target:
    return resolve_target(
        provider=provider,
        providers_file=providers_file,
        base_url=base_url,
        model=model,
        api_key_env=api_key_env,
        timeout=timeout,
        reasoning_replay="keep",
        sim_dialect="openai",
        sim_faults={},
        seed=seed,
    )


def _sim_target(dialect: str, faults: dict[str, float], model: str | None, seed: int) -> Target:
    """The simulator in `dialect`; its faults are part of what is run, so of its label."""
    target = resolve_target(
        provider=None,
        providers_file=None,
        base_url=None,
        model=model,
        api_key_env=None,
        timeout=1.0,  # unused: the simulator's endpoint is made when it starts
        reasoning_replay="keep",
        sim_dialect=dialect,
        sim_faults=faults,
        seed=seed,
    )
    if faults:
        target.provider = f"{target.provider}+{fault_label(faults)}"
    return target
