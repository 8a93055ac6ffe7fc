"""Which upstream a request goes to, when one proxy fronts several hosts.

In this order:

1. a path prefix: `/p/NAME/v1/...` goes to NAME: one of the `--upstream`s, or any profile of
   the providers file (resolved on first use, its key variable read then);
2. the request's `model`: the one `--upstream` profile listing that model id;
3. otherwise the first `--upstream` (the default).

A prefix naming nothing known, and a model several `--upstream`s list (with no prefix to
choose), are refused with a `RouteError`: the client gets one line saying what to send
instead, and nothing goes upstream.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from traces.errors import TracesError
from traces.profiles import Profile, load_profiles, profiles_path
from traces.proxy.upstream import Upstream, profile_upstream, resolve_upstream

PREFIX = "/p/"
"""Path prefix that names the upstream: `/p/NAME/v1/...`."""

GROUP_PREFIX = "/r/"
"""Path prefix that names the run a request belongs to, as the `X-Traces-Run` header does,
for clients that can set a base URL but no header: `/r/NAME/v1/...`, after any
`/p/PROVIDER`."""


def split_prefixes(path: str) -> tuple[str | None, str | None, str]:
    """The upstream a path names (`/p/NAME`), the run it names (`/r/NAME`), and the path
    without them (`/v1/chat/completions`)."""
    provider = group = None
    if path.startswith(PREFIX):
        provider, _, rest = path[len(PREFIX) :].partition("/")
        path = "/" + rest
    if path.startswith(GROUP_PREFIX):
        group, _, rest = path[len(GROUP_PREFIX) :].partition("/")
        path = "/" + rest
    return provider, group or None, path


class RouteError(Exception):
    """A request no upstream can take; `status` and `message` are what the client gets."""

    def __init__(self, status: int, message: str) -> None:
        """`message` is one line."""
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Route:
    """Where one request goes."""

    upstream: Upstream
    path: str
    """The client's path without the `/p/NAME` and `/r/NAME` prefixes (`/v1/chat/completions`)."""
    prefixed: bool = False
    by_model: bool = False
    group: str | None = None
    """The run named by a `/r/NAME` prefix."""


class Routes:
    """The upstreams of one proxy and the rules choosing among them."""

    def __init__(
        self,
        upstreams: list[Upstream],
        *,
        profiles: dict[str, Profile] | None = None,
        profiles_file: Path | None = None,
        timeout_s: float = 600.0,
    ) -> None:
        """`upstreams`: the `--upstream`s, the first the default (at least one).
        `profiles`: what `/p/NAME` may name beyond them (resolved when first named)."""
        if not upstreams:
            raise TracesError("--upstream: at least one is needed")
        self.default = upstreams[0]
        self.configured = list(upstreams)
        """The `--upstream`s, in order (not the profiles a prefix names later)."""
        self.named: dict[str, Upstream] = {}
        for upstream in upstreams:
            if upstream.label in self.named:
                raise TracesError(f"--upstream {upstream.label!r}: named twice")
            self.named[upstream.label] = upstream
        self.profiles = profiles or {}
        self.profiles_file = profiles_file
        self.timeout_s = timeout_s
        self.by_model: dict[str, list[Upstream]] = {}
        for upstream in upstreams:
            for model in upstream.models:
                self.by_model.setdefault(model, []).append(upstream)
        self.version = 0
        """Bumped whenever an upstream is added (its key then joins `keys`)."""

    @classmethod
    def from_specs(cls, specs: list[str], providers_file: Path | None, timeout_s: float) -> Routes:
        """The routes of `--upstream SPEC...` (see `resolve_upstream`); one-line errors
        (exit 2) for a spec that names nothing, or two that take the same name."""
        path = profiles_path(providers_file)
        profiles = load_profiles(path) if path.exists() else {}
        upstreams = [resolve_upstream(s, providers_file, timeout_s, profiles) for s in specs]
        return cls(upstreams, profiles=profiles, profiles_file=path, timeout_s=timeout_s)

    @staticmethod
    def unprefixed(path: str) -> str:
        """`path` without its `/p/NAME` and `/r/NAME` prefixes (the path the upstream gets)."""
        return split_prefixes(path)[2]

    @property
    def upstreams(self) -> list[Upstream]:
        """Every upstream known so far (the `--upstream`s, then profiles named by prefix)."""
        return list(self.named.values())

    def keys(self) -> list[str]:
        """Every upstream key in use: secrets the recording redacts."""
        return [u.key for u in self.named.values() if u.key]

    def ambiguous(self) -> dict[str, list[str]]:
        """Model ids several upstreams list, with their names (a request for one needs a
        prefix)."""
        return {m: [u.label for u in us] for m, us in self.by_model.items() if len(us) > 1}

    def route(self, path: str, model: str | None) -> Route:
        """The upstream of a request to `path` whose body names `model` (None: none)."""
        provider, group, path = split_prefixes(path)
        if provider is not None:
            return Route(self._named(provider), path, prefixed=True, group=group)
        if model is not None:
            serving = self.by_model.get(model)
            if serving is not None and len(serving) > 1:
                names = [u.label for u in serving]
                prefixes = " or ".join(f"{PREFIX}{n}/v1" for n in names)
                raise RouteError(
                    400,
                    f"traces proxy: model {model!r} is served by {', '.join(names)}; "
                    f"send the request to {prefixes}",
                )
            if serving is not None:
                chosen = serving[0]
                return Route(chosen, path, by_model=chosen is not self.default, group=group)
        return Route(self.default, path, group=group)

    def _named(self, name: str) -> Upstream:
        found = self.named.get(name)
        if found is not None:
            return found
        profile = self.profiles.get(name)
        if profile is None:
            known = sorted({*self.named, *self.profiles})
            raise RouteError(
                404,
                f"traces proxy: unknown provider {name!r} in {PREFIX}{name}/ "
                f"(known: {', '.join(known)})",
            )
        upstream = self.named[name] = profile_upstream(profile, self.timeout_s)
        self.version += 1
        return upstream
