"""The `traces` command line: one module per command under `analyzer.commands`.

Exit codes: 0 success; 1 the command ran but what it checked failed; 2 bad input (task file,
options, SQL); 3 endpoint unreachable or misbehaving; 4 database missing or locked;
130 interrupted.
"""

from __future__ import annotations

import sys
from typing import NoReturn

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
)
from traces import interrupts
from traces.errors import Interrupted, TracesError

app = typer.Typer(
    name="traces",
    help="Record interleaved-thinking tool-calling agents into DuckDB and inspect the traces.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Help texts are plain text: `[default: …]` in them must print, not vanish as markup.
    rich_markup_mode=None,
)

for module in (record, demo, runs, show, steps, failures, analyze, sql, schema, providers, sim):
    module.register(app)
compare.register(app)
expect.register(app)
import_.register(app)
probe.register(app)
report.register(app)


def main() -> None:
    """Entry point of the `traces` console script: errors become one line on stderr."""
    interrupts.install()  # already done by `analyzer.__main__`; here for `-m analyzer.cli`
    args = sys.argv[1:] or ["--help"]
    try:
        # Not standalone: usage errors reach us, to be printed as one line like all others.
        result = app(args, standalone_mode=False)
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
    interrupts.exit_with(code, f"error: {' '.join(message.split())}")


if __name__ == "__main__":
    main()
