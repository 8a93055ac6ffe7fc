"""`traces replay`: send a request suite (verifier style) to each provider, one run per answer.

Each line of the suite is one chat-completions request (K2-Vendor-Verifier's test-set form
or OpenAI batch input); each answer is a one-step run (origin `replay`, task = the suite's
name) paired across providers and repeats by its request hash, checked like any recorded
run, so `traces compare --task SUITE --reference P` gives schema_accuracy and tool_call_f1
with intervals. Answers already stored are not asked for again. Exit codes: 2 bad input
(a line that is not a request: file and line named, nothing written), 3 no endpoint answered
at all, 4 database missing or locked.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from analyzer.checks.persist import analyze_recorded, finding_counts
from analyzer.checks.stored import FindingCounts
from analyzer.fail_on import check_fail_on_counts
from analyzer.options import (
    ApiKeyEnvOption,
    BaseUrlOption,
    DataPathOption,
    DbOption,
    FailOnOption,
    FaultOption,
    FormatOption,
    ProfileModelOption,
    ProvidersFileOption,
    TimeoutOption,
)
from analyzer.output import OutputFormat, emit_rows, printable, stderr_console, to_json
from analyzer.progress import stderr_progress
from traces.client import EndpointConfig
from traces.errors import EndpointError, TracesError
from traces.model import RunStatus
from traces.request_suites.answered import answered
from traces.request_suites.reading import Suite, read_suite
from traces.request_suites.sending import (
    ReplayedRun,
    ReplayItem,
    ReplayTarget,
    TargetTally,
    replay_items,
    replay_suite,
)
from traces.running import recording, serving
from traces.sample_files import resolve_request_suite
from traces.store.database import Store, resolve_db_path
from traces.store.recorder import Recorder
from traces.targets import Target, resolve_targets


def register(app: typer.Typer) -> None:
    """Add the command to the CLI."""
    app.command("replay")(replay)


def replay(
    suite_file: Annotated[
        str | None,
        typer.Argument(
            metavar="[SUITE.jsonl]",
            help="Request suite: one chat-completions request body per line "
            "(K2-Vendor-Verifier's form) or OpenAI batch-input lines.",
            show_default=False,
        ),
    ] = None,
    suite: Annotated[
        str | None,
        typer.Option(
            "--suite",
            help="A shipped request suite by name (`schemas`), or a suite file.",
            show_default=False,
        ),
    ] = None,
    provider: Annotated[
        list[str] | None,
        typer.Option(
            "--provider",
            help="Provider profile to replay against, NAME or NAME:MODEL (repeatable; `sim` is "
            "the embedded simulator) [default: the embedded simulator].",
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
            help="Replay against the embedded simulator emulating this dialect, with its own "
            "faults as DIALECT[:FAULT[=RATE],…] (repeatable).",
        ),
    ] = None,
    fault: FaultOption = None,
    repeat: Annotated[int, typer.Option(min=1, help="Answers asked of each request.")] = 1,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight per provider.")] = 5,
    stream: Annotated[
        bool | None,
        typer.Option(
            "--stream/--no-stream",
            help="Stream every request, or none [default: as each line says, else not].",
            show_default=False,
        ),
    ] = None,
    both: Annotated[
        bool, typer.Option("--both", help="Send every request both streamed and not.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the embedded simulator.")] = 0,
    timeout: TimeoutOption = 600.0,
    db: DbOption = None,
    data_path: DataPathOption = None,
    fmt: FormatOption = OutputFormat.table,
    fail_on: FailOnOption = None,
) -> None:
    """Send each request of a suite to each provider and record every answer as a one-step
    run; requests already answered are skipped. Prints one row per provider."""
    if (suite_file is None) == (suite is None):
        raise TracesError("give a suite: a SUITE.jsonl file or --suite NAME (one of them)")
    if both and stream is not None:
        raise TracesError(
            "--both sends each request streamed and not: not with --stream/--no-stream"
        )
    streams = (False, True) if both else None if stream is None else (stream,)
    path = (
        resolve_request_suite(suite)
        if suite is not None
        else resolve_request_suite(suite_file or "")
    )
    loaded = read_suite(path)  # before anything is sent or written: a bad line is bad input
    targets = resolve_targets(
        providers=provider or [],
        dialects=dialect or ([] if provider or base_url else ["openai"]),
        faults=fault or [],
        providers_file=providers,
        model=model,
        timeout=timeout,
        seed=seed,
        base_url=base_url,
        api_key_env=api_key_env,
    )
    db_path = resolve_db_path(db, data_path)
    items = replay_items(loaded, repeat, streams)
    tallies, pending = _pending(db_path, loaded, targets, items)
    with serving(targets, timeout) as endpoints:
        replay_targets = [_replay_target(t, e) for t, e in zip(targets, endpoints, strict=True)]
        runs = _replay_with_progress(loaded, replay_targets, pending, db_path, concurrency)
    for label, recorded in runs.items():
        tallies[label].run_ids = [r.run_id for r in recorded]
        tallies[label].failed = sum(r.status is not RunStatus.COMPLETED for r in recorded)
    # Checked like any recorded run, so `runs`, `failures`, `compare` and `report` see the
    # findings (every check applies to a one-step run).
    checked = analyze_recorded(db_path, [r.run_id for rs in runs.values() for r in rs])
    counts = {run: finding_counts(found) for run, found in checked.items()}
    _report(loaded, list(tallies.values()), counts, fmt)
    _fail_when_dead(runs)
    check_fail_on_counts(counts, fail_on)


def _pending(
    db_path: Store, suite: Suite, targets: list[Target], items: list[ReplayItem]
) -> tuple[dict[str, TargetTally], dict[str, list[ReplayItem]]]:
    """Each target's tally and the items it has not answered yet (the store says which)."""
    tallies: dict[str, TargetTally] = {}
    pending: dict[str, list[ReplayItem]] = {}
    for target in targets:
        done = answered(db_path, target.provider, target.model, suite.name)
        left = [item for item in items if item.key not in done]
        tallies[target.provider] = TargetTally(
            target.provider, target.model, asked=len(items), skipped=len(items) - len(left)
        )
        pending[target.provider] = left
    return tallies, pending


def _replay_target(target: Target, endpoint: EndpointConfig) -> ReplayTarget:
    """What the replay needs of a resolved target, at the endpoint it is served on."""
    return ReplayTarget(
        provider=target.provider,
        model=target.model,
        endpoint=endpoint,
        dialect=target.dialect,
        profile=target.profile,
        sim=target.sim,
        extra_body=target.extra_body,
    )


def _replay_with_progress(
    suite: Suite,
    targets: list[ReplayTarget],
    pending: dict[str, list[ReplayItem]],
    db_path: Store,
    concurrency: int,
) -> dict[str, list[ReplayedRun]]:
    total = sum(len(items) for items in pending.values())
    if total == 0:
        return {t.provider: [] for t in targets}
    with stderr_progress(notes=True) as progress:
        bar = progress.add_task(f"{suite.name} replay", total=total, last="")

        def done(run: ReplayedRun) -> None:
            note = run.error or run.status.value
            progress.update(bar, advance=1, last=f"{run.provider} {run.request} {note}")

        async def work(
            recorder: Recorder, on_interrupted: Callable[[str], None]
        ) -> dict[str, list[ReplayedRun]]:
            return await replay_suite(
                suite,
                targets,
                pending,
                recorder,
                concurrency=concurrency,
                on_done=done,
                on_interrupted=on_interrupted,
            )

        # Ctrl-C and SIGTERM end the requests under way as interrupted runs, durably.
        return recording(db_path, work)


def _report(
    suite: Suite,
    tallies: list[TargetTally],
    counts: dict[str, FindingCounts],
    fmt: OutputFormat,
) -> None:
    rows: list[dict[str, Any]] = [
        {
            "provider": t.provider,
            "model": t.model,
            "requests": len(suite.requests),
            "asked": t.asked,
            "skipped": t.skipped,
            "sent": len(t.run_ids),
            "failed": t.failed,
            "findings": sum(sum(counts.get(r, {}).values()) for r in t.run_ids),
        }
        for t in tallies
    ]
    if fmt is OutputFormat.json:
        document = {
            "suite": suite.name,
            "path": str(suite.path),
            "requests": len(suite.requests),
            "providers": [
                {**row, "run_ids": t.run_ids} for row, t in zip(rows, tallies, strict=True)
            ],
        }
        sys.stdout.write(to_json(document) + "\n")
        return
    emit_rows(rows, fmt, title=f"{suite.name}: {len(suite.requests)} requests")
    if fmt is OutputFormat.table:
        err = stderr_console()
        for t in tallies:
            if t.skipped:
                err.print(
                    printable(f"{t.provider}: {t.skipped} of {t.asked} already answered, skipped")
                )
        reference = tallies[0].provider
        err.print(
            printable(
                f"compare: traces compare --task {suite.name} --reference {reference}", keep=""
            )
        )


def _fail_when_dead(runs: dict[str, list[ReplayedRun]]) -> None:
    """Exit 3 when requests were sent and not one got an answer."""
    sent = [r for rs in runs.values() for r in rs]
    if sent and all(r.status is not RunStatus.COMPLETED for r in sent):
        raise EndpointError(
            f"no request got an answer ({len(sent)} stored as failed): {sent[0].error}"
        )
