"""The `traces` command line: one module per command under `analyzer.commands`.

Exit codes: 0 success; 1 the command ran but what it checked failed; 2 bad input (task file,
options, SQL); 3 endpoint unreachable or misbehaving; 4 database missing or locked;
130 interrupted.
"""

from __future__ import annotations

import sys
from typing import Annotated, NoReturn

import typer

from analyzer.commands import (
    analyze,
    compare,
    demo,
    expect,
    failures,
    import_,
    probe,
    providers,
    record,
    report,
    runs,
    schema,
    show,
    sim,
    sql,
    steps,
    tasks,
)
from analyzer.output import one_line
from traces import interrupts
from traces.errors import Interrupted, TracesError

app = typer.Typer(
    name="traces",
    help="Record interleaved-thinking tool-calling agents into DuckDB and inspect the traces.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # `--install-completion` / `--show-completion`: the shell asks `traces` itself, through
    # $_TRACES_COMPLETE, and that answer never runs a command or opens the database.
    add_completion=True,
    # Help texts are plain text: `[default: …]` in them must print, not vanish as markup.
    rich_markup_mode=None,
)


def _print_version(requested: bool) -> None:
    if requested:
        # From the installed distribution's metadata: no package of ours is imported for it.
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("agent-traces")
        except PackageNotFoundError:
            number = "unknown (not installed)"
        sys.stdout.write(f"traces {number}\n")
        raise typer.Exit()


@app.callback()
def _options(
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the installed version and exit.",
        ),
    ] = False,
) -> None:
    """Record interleaved-thinking tool-calling agents into DuckDB and inspect the traces."""


for module in (record, demo, runs, show, steps, failures, analyze, sql, schema, providers, sim):
    module.register(app)
compare.register(app)
expect.register(app)
import_.register(app)
probe.register(app)
report.register(app)
tasks.register(app)


def main() -> None:
    """Entry point of the `traces` console script: errors become one line on stderr."""
    interrupts.install()  # already done by `analyzer.__main__`; here for `-m analyzer.cli`
    args = sys.argv[1:] or ["--help"]
    try:
        # Not standalone: usage errors reach us, to be printed as one line like all others.
        # Named, whichever way it was started (`python -m analyzer.cli`): hints say `traces`,
        # and the shell's completion variable is always $_TRACES_COMPLETE.
        result = app(args, prog_name="traces", standalone_mode=False)
    except Interrupted as stop:
        interrupts.exit_interrupted(str(stop))
    except TracesError as err:
        _fail(str(err), err.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        interrupts.exit_interrupted()
    except typer.Exit as done:
        interrupts.exit_with(done.exit_code)
    except typer.TyperException as err:  # bad options or arguments (click's UsageError family)
        ctx = getattr(err, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        message = err.format_message() if hasattr(err, "format_message") else str(err)
        _fail(message + hint, int(getattr(err, "exit_code", 2)))
    if result == interrupts.EXIT_CODE:  # typer turns a KeyboardInterrupt into a bare 130
        interrupts.exit_interrupted()
    interrupts.exit_with(result if isinstance(result, int) else 0)


def _fail(message: str, code: int) -> NoReturn:
    # Messages quote what the user, a host or a log gave (labels, lines, ids): one line, no
    # control character reaches the terminal raw, and no credential a host echoed.
    from traces.redaction import redact_tokens  # here: most commands never fail

    interrupts.exit_with(code, f"error: {one_line(redact_tokens(message))}")


if __name__ == "__main__":
    main()
