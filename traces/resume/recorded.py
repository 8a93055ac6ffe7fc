"""How a stored run was recorded, rebuilt from its `runs` row: its task, its endpoint (the
embedded simulator with the same configuration, the same provider profile, or the same URL)
and its harness settings, so a resumption continues it, and a retry repeats it, the way it
was recorded.

Whatever cannot be rebuilt as it was is refused with one line naming the run and the
reason: a task file edited or gone, a profile removed or edited (its `extra_body` digest or
extra header names differ), an API key variable unset, a URL stored without its credentials
or query, a run recorded before runs stored their endpoint (`settings.endpoint`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from traces.client import EndpointConfig, resolve_api_key
from traces.datasets import Sample
from traces.dialects import DIALECTS
from traces.errors import TracesError
from traces.harness import HarnessSettings
from traces.profiles import load_profiles, profiles_path
from traces.replay import ReplayPolicy
from traces.resume.stored import StoredRun
from traces.runner import extra_body_digest
from traces.sim.config import SimConfig
from traces.targets import NO_KEY, Target
from traces.tasks import Task, load_task, sample_named

_T = TypeVar("_T")


class NotReproducible(TracesError):
    """A stored run that cannot be taken up or repeated as it was recorded (exit 2)."""


def refuse(run: StoredRun, why: str) -> NotReproducible:
    """The one-line refusal for `run`."""
    return NotReproducible(f"run {run.id}: {why}")


def recorded_task(run: StoredRun) -> Task:
    """The run's task file, loaded again; refused when it is gone or has changed."""
    stored = run.settings.get("task_file") or run.task_path
    path = Path(stored)
    if not path.is_file():
        raise refuse(run, f"its task file {stored} is gone")
    try:
        task = load_task(path)
    except TracesError as exc:
        raise refuse(run, f"its task file no longer loads: {exc}") from None
    if task.sha256 != run.task_sha256:
        raise refuse(run, f"its task file {stored} has changed since it was recorded")
    return task


def recorded_sample(run: StoredRun, task: Task) -> Sample | None:
    """The dataset sample the run answered (None for a task without a dataset); refused
    when the task's dataset no longer has it."""
    if run.sample is None:
        if task.dataset:
            raise refuse(run, "it was recorded without its dataset sample; record it anew")
        return None
    sample = sample_named(task, run.sample)
    if sample is None:
        raise refuse(run, f"its task's dataset no longer has sample {run.sample!r}")
    return sample


def recorded_target(run: StoredRun, providers_file: Path | None) -> Target:
    """Where the run's requests went, and how, as it was recorded."""
    endpoint = run.settings.get("endpoint")
    if not isinstance(endpoint, dict):
        raise refuse(
            run,
            "recorded before runs stored how to reach their endpoint again "
            "(settings.endpoint); record it anew",
        )
    kind = endpoint.get("kind")
    replay = _stored(run, "replay", lambda: ReplayPolicy.model_validate(run.settings["replay"]))
    dialect = run.settings.get("dialect")
    if kind == "simulator":
        config = _stored(run, "endpoint.sim", lambda: SimConfig.model_validate(endpoint["sim"]))
        target = Target(
            provider=run.provider,
            model=run.model,
            endpoint=None,
            sim=config,
            dialect=config.dialect,
            replay=replay,
            extra_body=dict(DIALECTS[config.dialect].extra_body),
        )
    elif kind in ("profile", "custom"):
        target = _remote_target(run, endpoint, providers_file, replay, dialect)
    else:
        raise refuse(run, f"unknown endpoint kind {kind!r} in its settings")
    digest = endpoint.get("extra_body_sha256")
    if digest != extra_body_digest(target.extra_body):
        where = f"provider profile {target.profile}'s" if target.profile else "the"
        raise refuse(run, f"{where} extra_body is not what the run was recorded with")
    return target


def recorded_timeout(run: StoredRun) -> float:
    """The request deadline the run was recorded with, seconds."""
    endpoint = run.settings.get("endpoint")
    value = endpoint.get("timeout_s") if isinstance(endpoint, dict) else None
    return float(value) if isinstance(value, int | float) else 600.0


def recorded_settings(run: StoredRun, target: Target) -> HarnessSettings:
    """The harness settings the run was recorded with (its seed included), sending the
    target's `extra_body` (checked against the stored digest by `recorded_target`)."""
    fields = {
        name: run.settings[name]
        for name in HarnessSettings.model_fields
        if name in run.settings and name != "extra_body"
    }
    try:
        return HarnessSettings.model_validate({**fields, "extra_body": target.extra_body})
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise refuse(run, f"its stored settings do not load ({where}: {first['msg']})") from None


def _remote_target(
    run: StoredRun,
    endpoint: dict[str, Any],
    providers_file: Path | None,
    replay: ReplayPolicy,
    dialect: str | None,
) -> Target:
    if not endpoint.get("base_url_exact"):
        raise refuse(
            run,
            f"its endpoint URL was stored without its credentials or query ({run.base_url}), "
            "so it cannot be reached the same way again",
        )
    key_env = run.settings.get("api_key_env")
    headers: dict[str, str] = {}
    extra_body: dict[str, Any] = {}
    profile_name = endpoint.get("profile") if endpoint.get("kind") == "profile" else None
    if profile_name is not None:
        path = profiles_path(providers_file)
        profiles = load_profiles(path) if path.exists() else {}
        if profile_name not in profiles:
            raise refuse(
                run, f"it was recorded with provider profile {profile_name!r}, not in {path}"
            )
        profile = profiles[profile_name]
        headers = dict(profile.extra_headers)
        extra_body = {**profile.resolved_dialect().extra_body, **profile.extra_body}
        if sorted(headers) != sorted(endpoint.get("extra_headers") or []):
            raise refuse(
                run, f"provider profile {profile_name!r}'s extra headers have changed since"
            )
    config = EndpointConfig(
        base_url=run.base_url,
        api_key_env=key_env,
        api_key=None if key_env else NO_KEY,
        extra_headers=headers,
        timeout_s=recorded_timeout(run),
    )
    try:
        resolve_api_key(config)
    except TracesError as exc:
        raise refuse(run, str(exc)) from None
    return Target(
        provider=run.provider,
        model=run.model,
        endpoint=config,
        dialect=dialect,
        profile=profile_name,
        replay=replay,
        extra_body=extra_body,
    )


def _stored(run: StoredRun, name: str, build: Callable[[], _T]) -> _T:
    """`build()`, which reads the stored setting `name`; refused in one line when that
    does not load."""
    try:
        return build()
    except (ValidationError, KeyError, TypeError) as exc:
        raise refuse(
            run, f"its stored settings.{name} does not load ({type(exc).__name__})"
        ) from None
