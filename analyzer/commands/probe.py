"""`traces probe`: send the probe set to each provider, then report what sets them apart."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from analyzer.checks.live import LiveChecks
from analyzer.checks.persist import analyze_recorded
from analyzer.options import (
    ApiKeyEnvOption,
    BaseUrlOption,
    DataPathOption,
    DbOption,
    FaultOption,
    FormatOption,
    ProfileModelOption,
    ProvidersFileOption,
    TimeoutOption,
)
from analyzer.output import OutputFormat, emit_rows, printable, stderr_console, to_json
from analyzer.probes import ProviderVerdict, probe_report
from analyzer.progress import stderr_progress
from traces.client import EndpointConfig
from traces.errors import TracesError
from traces.probes.catalogue import PROBE_SET_VERSION
from traces.probes.raw import load_renderer
from traces.probes.runner import NOT_SERVED, ProbePlan, ProbeRun, ProbeTarget, probe_targets
from traces.running import serving
from traces.store.database import Store, open_for_reading, resolve_db_path
from traces.store.recorder import Recorder
from traces.targets import Target, resolve_targets

_TABLE_COLUMNS = [
    "provider",
    "model",
    "fingerprint",
    "prompt tokens",
    "reasoning counted",
    "secret recalled",
    "ids",
    "object args",
    "raw /completions",
    "parameters",
    "rejects",
]


def register(app: typer.Typer) -> None:
    """Add the command to the CLI."""
    app.command("probe")(probe)


def probe(
    provider: Annotated[
        list[str] | None,
        typer.Option(
            "--provider",
            help="Provider profile to probe, NAME or NAME:MODEL (repeatable; `sim` is the embedded "
            "simulator); with --report-only, the providers to report.",
        ),
    ] = None,
    base_url: BaseUrlOption = None,
    model: ProfileModelOption = None,
    api_key_env: ApiKeyEnvOption = None,
    providers: ProvidersFileOption = None,
    dialect: Annotated[
        list[str] | None,
        typer.Option(
            "--dialect",
            help="Probe the embedded simulator emulating this dialect, with its own faults as "
            "DIALECT[:FAULT[=RATE],…] (repeatable).",
        ),
    ] = None,
    fault: FaultOption = None,
    template: Annotated[
        Path | None,
        typer.Option(
            help="The model's official chat template (.jinja, tokenizer_config.json or model "
            "folder): also send each probe rendered client-side to /v1/completions."
        ),
    ] = None,
    report_only: Annotated[
        bool, typer.Option("--report-only", help="Send nothing; report the stored probings.")
    ] = False,
    concurrency: Annotated[int, typer.Option(min=1, help="Probe requests in flight.")] = 4,
    max_tokens: Annotated[
        int, typer.Option(min=1, help="Completion token cap of each probe.")
    ] = 2048,
    seed: Annotated[int, typer.Option(help="Request seed (and the simulator's).")] = 0,
    timeout: TimeoutOption = 600.0,
    db: DbOption = None,
    data_path: DataPathOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Probe each provider's template and parser with a fixed conversation set, then report
    fingerprints and what sets each provider apart (progress on stderr)."""
    db_path = resolve_db_path(db, data_path)
    if report_only:
        if base_url or dialect or fault or template:
            raise TracesError("--report-only takes only --provider, --db and --format")
        _report(db_path, provider or None, fmt)
        return
    targets = resolve_targets(
        providers=provider or [],
        # Nothing named: the embedded simulator.
        dialects=dialect or ([] if provider or base_url else ["openai"]),
        faults=fault or [],
        providers_file=providers,
        model=model,
        timeout=timeout,
        seed=seed,
        base_url=base_url,
        api_key_env=api_key_env,
    )
    probe_into(
        db_path, targets, template=template, max_tokens=max_tokens, seed=seed,
        concurrency=concurrency, timeout=timeout,
    )  # fmt: skip
    _report(db_path, [t.provider for t in targets], fmt)


def probe_into(
    db_path: Store,
    targets: list[Target],
    *,
    template: Path | None = None,
    max_tokens: int = 2048,
    seed: int = 0,
    concurrency: int = 4,
    timeout: float = 600.0,
) -> None:
    """Send the probe set to every target (progress on stderr), store and check the runs
    (`verify --suite` probes its targets this way too)."""
    renderer = load_renderer(template) if template is not None else None
    with serving(targets, timeout) as endpoints:
        plan = ProbePlan(
            targets=[_probe_target(t, e) for t, e in zip(targets, endpoints, strict=True)],
            renderer=renderer,
            template_origin=str(template) if template is not None else None,
            max_tokens=max_tokens,
            seed=seed,
            concurrency=concurrency,
        )
        _probe_with_progress(plan, db_path)


def _probe_target(target: Target, endpoint: EndpointConfig) -> ProbeTarget:
    """What the probe runner needs of a resolved target, at the endpoint it is served on."""
    return ProbeTarget(
        provider=target.provider,
        model=target.model,
        endpoint=endpoint,
        dialect=target.dialect,
        extra_body=target.extra_body,
    )


def _probe_with_progress(plan: ProbePlan, db_path: Store) -> None:
    per_target = plan.runs_per_target()
    recorder = Recorder(db_path)
    try:
        # The running probes' findings so far, once the probing lasts (`traces runs`).
        with LiveChecks(db_path) as live, stderr_progress(notes=True) as progress:
            live.watch()
            bar = progress.add_task(
                f"probe set v{PROBE_SET_VERSION}", total=per_target * len(plan.targets), last=""
            )

            def done(run: ProbeRun) -> None:
                last = f"{run.provider} {run.probe} ({run.variant}) {run.note or run.status.value}"
                progress.update(bar, advance=1, last=last)
                live.tick()
                if run.note == NOT_SERVED:  # the other raw probes of this target are not sent
                    total = progress.tasks[0].total or 0
                    progress.update(bar, total=total - (len(plan.raw_probes()) - 1))

            runs = asyncio.run(probe_targets(plan, recorder, done))
    finally:
        recorder.close()
    # Checked like any recorded run, so `runs`, `failures` and `report` show the findings.
    analyze_recorded(db_path, [run.run_id for run in runs])


def _report(db_path: Store, providers: list[str] | None, fmt: OutputFormat) -> None:
    with open_for_reading(db_path) as conn:
        verdicts, apart = probe_report(conn, providers)
    missing = sorted(set(providers or []) - {v.provider for v in verdicts})
    if missing:
        raise TracesError(
            f"{db_path}: no probe runs of probe set v{PROBE_SET_VERSION} for "
            f"{', '.join(missing)} (run `traces probe --provider NAME` first)"
        )
    if fmt is OutputFormat.json:
        document = {
            "probe_set_version": PROBE_SET_VERSION,
            "providers": [v.as_row() for v in verdicts],
            "sets_apart": apart,
        }
        sys.stdout.write(to_json(document) + "\n")
        return
    if fmt is OutputFormat.csv:
        emit_rows([v.as_row() for v in verdicts], fmt)
        return
    err = stderr_console()
    if not verdicts:
        err.print(printable(f"no probe runs of probe set v{PROBE_SET_VERSION} in {db_path}"))
        return
    emit_rows(
        [_table_row(v) for v in verdicts],
        fmt,
        columns=_TABLE_COLUMNS,
        title=f"probe set v{PROBE_SET_VERSION}",
    )
    details = [
        {"provider": v.provider, **p.as_row()} for v in verdicts for p in v.parameters.values()
    ]
    if details:
        emit_rows(
            details,
            fmt,
            columns=["provider", "probe", "verdict", "confidence", "finding", "detail"],
            title="parameters: honoured, refused, or silently ignored",
        )
    if apart:
        emit_rows(
            apart,
            fmt,
            columns=["provider", "feature", "value", "others", "probes"],
            title="sets apart",
        )
    elif len(verdicts) > 1:
        err.print("no probe sets one provider apart from the others")


def _table_row(verdict: ProviderVerdict) -> dict[str, Any]:
    reasoning = verdict.reasoning_counted
    delta = verdict.vector.get("reasoning")
    if reasoning in ("yes", "no") and isinstance(delta, int):
        reasoning += f" ({delta:+d})"
    ids = verdict.ids_emitted
    if verdict.ids_rewritten.startswith("yes"):
        ids += " — rewritten" + verdict.ids_rewritten[3:]
    return {
        "provider": verdict.provider,
        "model": verdict.model,
        "fingerprint": verdict.fingerprint,
        "prompt tokens": verdict.vector_text(),
        "reasoning counted": reasoning,
        "secret recalled": verdict.secret_recalled,
        "ids": ids,
        "object args": verdict.object_args,
        "raw /completions": verdict.raw,
        "parameters": "\n".join(v.short() for v in verdict.parameters.values()),
        "rejects": "\n".join(verdict.rejects),
    }
