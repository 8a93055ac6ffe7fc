"""Where `traces proxy` forwards requests: a provider profile, a URL or `NAME=URL`, and the
key it sends (which of several upstreams a request goes to is `routing`'s choice).

The key: a profile whose key variable is set sends that key, replacing whatever the client
put in its `Authorization` header (agents insist on some key; the user configured the real
one in the profile). Otherwise the client's own `Authorization` header goes upstream as it
came. Either way every key seen is a secret the recording redacts, never stored.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from traces.errors import TracesError
from traces.profiles import Profile, base_url_problem, load_profiles, profiles_path
from traces.redaction import redact_url

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class Upstream:
    """The endpoint behind the proxy."""

    label: str
    """Provider label stored with the runs: the profile's name, or the URL's host."""
    base_url: str
    """Base URL the client's `/v1/...` paths are appended to (its own `/v1` stands for it)."""
    key: str | None = field(default=None, repr=False)
    """The profile's key, sent instead of the client's; None: the client's header goes."""
    key_source: str = "the client's Authorization header"
    """Where the key comes from, for the start-up line (never the key itself)."""
    extra_headers: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 600.0
    models: tuple[str, ...] = ()
    """The model ids it serves (a profile's list; none for a URL): requests naming one of
    them are routed to it (`routing`)."""

    @functools.cached_property
    def shown_url(self) -> str:
        """The base URL fit to be printed and stored (no credentials, no query); read once
        (each run stores it)."""
        return redact_url(self.base_url)

    def url_for(self, path: str, query: bytes) -> str:
        """The upstream URL of a client's request path: `/v1/x` becomes `BASE/x`."""
        rest = path[3:] if path == "/v1" or path.startswith("/v1/") else path
        url = self.base_url.rstrip("/") + rest
        return f"{url}?{query.decode('latin-1')}" if query else url


def resolve_upstream(
    spec: str,
    providers_file: Path | None,
    timeout_s: float,
    profiles: dict[str, Profile] | None = None,
) -> Upstream:
    """The upstream `--upstream` names: an http(s) URL, `NAME=URL` (a URL with the name its
    runs and path prefix take), or a profile of the providers file (`profiles`, when the
    caller loaded them already). One-line errors (exit 2) for a malformed URL or an unknown
    profile."""
    name, equals, url = spec.partition("=")
    if equals and "://" not in name:
        if not _NAME.fullmatch(name):
            raise TracesError(
                f"--upstream {name!r}=URL: a name is letters, digits, '.', '_' and '-'"
            )
        return _url_upstream(url, timeout_s, name)
    if "://" in spec:
        return _url_upstream(spec, timeout_s, None)
    path = profiles_path(providers_file)
    if profiles is None:
        profiles = load_profiles(path) if path.exists() else {}
    profile = profiles.get(spec)
    if profile is None:
        known = ", ".join(profiles) or "none"
        raise TracesError(
            f"--upstream {spec!r}: neither an http(s) URL nor a profile of {path} (known: {known})"
        )
    return profile_upstream(profile, timeout_s)


def _url_upstream(spec: str, timeout_s: float, name: str | None) -> Upstream:
    problem = base_url_problem(spec)
    if problem:
        shown = spec.rpartition("@")[2]  # never echo credentials written into the URL
        raise TracesError(f"--upstream {shown!r}: {problem}")
    if name is None:
        parts = urlsplit(spec)
        name = parts.hostname or "upstream"
        if parts.port:
            name = f"{name}:{parts.port}"
    return Upstream(label=name, base_url=spec, timeout_s=timeout_s)


def profile_upstream(profile: Profile, timeout_s: float) -> Upstream:
    """The upstream a provider profile makes: its URL, headers, models and key (read from
    its key variable now)."""
    key = os.environ.get(profile.api_key_env) if profile.api_key_env else None
    if key:
        source = f"${profile.api_key_env}"
    elif profile.api_key_env:
        source = f"the client's Authorization header (${profile.api_key_env} is not set)"
    else:
        source = "the client's Authorization header"
    return Upstream(
        label=profile.name,
        base_url=profile.base_url,
        key=key or None,
        key_source=source,
        extra_headers=dict(profile.extra_headers),
        timeout_s=timeout_s,
        models=tuple(profile.models),
    )
