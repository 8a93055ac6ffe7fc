"""Provider profiles: where a host lives, which key it takes, and which dialect it speaks.

A new provider is a new TOML table, not new code. Profiles hold the *name* of the
environment variable with the key, never a key.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails

from traces.dialects import DIALECTS, Dialect, known_dialect
from traces.errors import TracesError
from traces.sample_files import providers_file
from traces.wire_forms import ArgumentForm, IdsBack, ReasoningLocation

PROFILES_ENV_VAR = "TRACES_PROVIDERS"
SIM_PROVIDER = "sim"
"""The provider name of the embedded simulator (no profile: it needs none)."""


class ProfileError(TracesError):
    """A providers file that cannot be used; the message names the file, profile and field."""


class Prices(BaseModel):
    """US dollars per million tokens, as the provider lists them."""

    model_config = ConfigDict(extra="forbid")

    input: float = Field(ge=0, description="Uncached prompt tokens.")
    output: float = Field(ge=0, description="Completion tokens (reasoning included).")
    cached_input: float | None = Field(default=None, ge=0, description="Cached prompt tokens.")


class DialectOverrides(BaseModel):
    """Per-profile changes to the dialect's replay rules."""

    model_config = ConfigDict(extra="forbid")

    reasoning_back: ReasoningLocation | None = None
    ids_back: IdsBack | None = None
    arguments_back: ArgumentForm | None = None


class Profile(BaseModel):
    """One provider (or self-hosted server) serving open models."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Profile name, as used by `--provider`.")
    description: str = Field(default="", description="One line about the host.")
    base_url: str = Field(description="OpenAI-compatible base URL.")
    api_key_env: str | None = Field(
        default=None, description="Environment variable holding the key (none for local servers)."
    )
    models: list[str] = Field(min_length=1, description="Model ids; the first is the default.")
    dialect: str = Field(description="Dialect name (see `traces.dialects`).")
    overrides: DialectOverrides = Field(default_factory=DialectOverrides)
    extra_body: dict[str, Any] = Field(
        default_factory=dict, description="Body fields sent with every request (e.g. routing)."
    )
    extra_headers: dict[str, str] = Field(default_factory=dict)
    prices: dict[str, Prices] = Field(
        default_factory=dict, description="Prices per model id, per million tokens."
    )

    @field_validator("dialect")
    @classmethod
    def _known_dialect(cls, value: str) -> str:
        return known_dialect(value)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        problem = base_url_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    def resolved_dialect(self) -> Dialect:
        """The dialect with this profile's overrides applied."""
        changes = {k: v for k, v in self.overrides.model_dump().items() if v is not None}
        dialect = DIALECTS[self.dialect]
        return dialect.model_copy(update=changes) if changes else dialect

    def key_is_set(self) -> bool:
        """Whether the key variable is set (always true for keyless local servers)."""
        return self.api_key_env is None or bool(os.environ.get(self.api_key_env))


def profiles_path(explicit: str | Path | None = None) -> Path:
    """`--providers` if given, else `$TRACES_PROVIDERS`, else the shipped samples file."""
    if explicit:
        return Path(explicit)
    from_env = os.environ.get(PROFILES_ENV_VAR)
    return Path(from_env) if from_env else providers_file()


def _field_path(error: ErrorDetails) -> str:
    return ".".join(str(part) for part in error["loc"]) or "(profile)"


def load_profiles(path: Path) -> dict[str, Profile]:
    """Every profile of a providers file; one-line ProfileError on any problem."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProfileError(f"{path}: providers file not found") from None
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read providers file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: invalid TOML ({exc})") from None
    profiles: dict[str, Profile] = {}
    for name, table in data.items():
        if not isinstance(table, dict):
            raise ProfileError(f"{path}: {name}: must be a table ([{name}])")
        try:
            profiles[name] = Profile.model_validate({"name": name, **table})
        except ValidationError as exc:
            first = exc.errors()[0]
            message = first["msg"].removeprefix("Value error, ")
            if first["type"] == "extra_forbidden":
                message = "unknown field"
            raise ProfileError(f"{path}: {name}.{_field_path(first)}: {message}") from None
    return profiles


def get_profile(name: str, path: Path) -> Profile:
    """The profile called `name`, or a one-line error listing the known ones."""
    profiles = load_profiles(path)
    if name not in profiles:
        raise ProfileError(f"{path}: no provider {name!r} (known: {', '.join(profiles)})")
    return profiles[name]


def base_url_problem(url: str) -> str | None:
    """Why `url` cannot be an endpoint's base URL (a profile's or `--base-url`), else None."""
    if not url.startswith(("http://", "https://")):
        return "must start with http:// or https://"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError as exc:
        return f"not a URL ({exc})"
    if not parts.hostname or any(c.isspace() for c in url):
        return "not a URL (no host, or spaces in it)"
    return None
