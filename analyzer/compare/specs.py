"""Turning `compare`'s `--provider` and `--dialect` options into targets with distinct labels.

`--provider NAME[:MODEL]` names a profile (or `sim`); `--dialect NAME[:FAULT=RATE,…]` an
embedded-simulator dialect with its own faults, on top of the `--fault`s every simulator
gets. Each target's label is what its runs are stored (and compared) under: a profile's name,
`sim`/`sim-DIALECT` as `record` labels them, plus `+FAULT=RATE,…` when faults are injected.
"""

from __future__ import annotations

from pathlib import Path

from analyzer.commands.sim import parse_faults
from analyzer.targets import SIM_PROVIDER, Target, resolve_target
from traces.errors import TracesError


def _fault_label(faults: dict[str, float]) -> str:
    return ",".join(f"{name}={rate:g}" for name, rate in sorted(faults.items()))


def resolve_targets(
    *,
    providers: list[str],
    dialects: list[str],
    faults: list[str],
    providers_file: Path | None,
    model: str | None,
    timeout: float,
    seed: int,
) -> list[Target]:
    """One target per `--provider` and `--dialect`, in the order given; one-line errors for
    unknown names, bad specs and two targets that would share a label."""
    common = parse_faults(faults)
    targets: list[Target] = []
    for spec in providers:
        name, _, spec_model = spec.partition(":")
        if not name:
            raise TracesError(f"--provider {spec!r}: expected NAME or NAME:MODEL")
        if name == SIM_PROVIDER:
            targets.append(_sim_target("openai", common, model or spec_model or None, seed))
            continue
        targets.append(
            resolve_target(
                provider=name,
                providers_file=providers_file,
                base_url=None,
                model=spec_model or model,
                api_key_env=None,
                timeout=timeout,
                reasoning_replay="keep",
                sim_dialect="openai",
                sim_faults={},
                seed=seed,
            )
        )
    for spec in dialects:
        name, _, fault_specs = spec.partition(":")
        own = parse_faults([f for f in fault_specs.split(",") if f.strip()])
        targets.append(_sim_target(name, {**common, **own}, model, seed))
    seen: dict[str, int] = {}
    for i, target in enumerate(targets):
        if target.provider in seen:
            raise TracesError(
                f"{target.provider!r} is given twice: each provider or dialect (with its "
                "faults) is compared once"
            )
        seen[target.provider] = i
    return targets


def _sim_target(dialect: str, faults: dict[str, float], model: str | None, seed: int) -> Target:
    target = resolve_target(
        provider=None,
        providers_file=None,
        base_url=None,
        model=model,
        api_key_env=None,
        timeout=1.0,
        reasoning_replay="keep",
        sim_dialect=dialect,
        sim_faults=faults,
        seed=seed,
    )
    if faults:
        target.provider = f"{target.provider}+{_fault_label(faults)}"
    return target
