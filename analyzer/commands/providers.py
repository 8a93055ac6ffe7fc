"""`traces providers`: the provider profiles, and whether each one's key is set."""

from __future__ import annotations

import typer

from analyzer.options import FormatOption, ProvidersFileOption
from analyzer.output import OutputFormat, emit_rows
from traces.profiles import load_profiles, profiles_path


def register(app: typer.Typer) -> None:
    """Add the command to the CLI."""
    app.command("providers")(providers)


def providers(
    providers_file: ProvidersFileOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """List provider profiles: URL, dialect, models, key variable and whether it is set."""
    path = profiles_path(providers_file)
    rows = []
    for profile in load_profiles(path).values():
        dialect = profile.resolved_dialect()
        rows.append(
            {
                "provider": profile.name,
                "base_url": profile.base_url,
                "dialect": dialect.name,
                "reasoning_back": dialect.reasoning_back,
                "default_model": profile.models[0],
                "models": profile.models,
                "api_key_env": profile.api_key_env,
                "key_set": profile.key_is_set(),
                "prices": {m: p.model_dump() for m, p in profile.prices.items()},
                "description": profile.description,
            }
        )
    columns = None
    if fmt is OutputFormat.table:
        columns = ["provider", "dialect", "default_model", "api_key_env", "key_set", "base_url"]
    emit_rows(rows, fmt, columns=columns)
