"""The `traces` command line: one module per command under `analyzer.commands`.

Exit codes: 0 success; 1 the command ran but what it checked failed; 2 bad input (task file,
options, SQL); 3 endpoint unreachable or misbehaving; 4 database missing or locked;
5 `verify`: nothing failed, but some criteria are inconclusive; 130 interrupted.

Start-up imports only the command being run. `record` needs the openai client, Jinja and
the tokenizers, and importing all of them costs ten times what `traces runs` itself does, so
`COMMANDS` names each command's module and one-line summary as data: `traces --help` and the
completion of command names are printed from it, and `traces CMD` imports the one module
(`tests/test_cli_startup.py` keeps the summaries equal to the commands' own help and checks
that every module is listed).
"""

from __future__ import annotations

import functools
import gc
import importlib
import sys
from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer.core import TyperCommand, TyperGroup

from analyzer.option_values import FastCommand, fast_coercion
from traces import interrupts
from traces.errors import Interrupted, TracesError

if TYPE_CHECKING:
    from typer import _click
    from typer._click.shell_completion import CompletionItem

COMMANDS: dict[str, tuple[str, str]] = {
    "record": ("record", "Record runs of a task; prints the run ids (progress on stderr)."),
    "demo": (
        "demo",
        "Record one sample task offline against the simulator, then print its timeline.",
    ),
    "runs": (
        "runs",
        "List runs, newest first: status, termination reason, totals and failure summary.",
    ),
    "show": ("show", "Each step's reasoning, tool calls and results, with latency and tokens."),
    "steps": (
        "steps",
        "Step-count distribution of finished runs (min, median, p90, max) by task/provider/model.",
    ),
    "failures": (
        "failures",
        "Count findings by kind, provider and model; --kind or --run lists the steps; "
        "--kinds describes every kind.",
    ),
    "analyze": (
        "analyze",
        "Check runs for failures and store the findings; prints counts per run.",
    ),
    "sql": ("sql", "Run one query against the trace database opened read-only."),
    "schema": (
        "schema",
        "Describe the schema (from the database file, or a fresh in-memory one if none exists).",
    ),
    "providers": (
        "providers",
        "List provider profiles: URL, dialect, models, key variable and whether it is set.",
    ),
    "sim": (
        "sim",
        "Serve /v1/chat/completions (streaming and not) and /v1/models until Ctrl-C.",
    ),
    "proxy": (
        "proxy",
        "Serve an OpenAI-compatible endpoint that forwards to each --upstream and records "
        "every chat-completions, completions and Responses API exchange as runs, until Ctrl-C.",
    ),
    "compare": (
        "compare",
        "Compare providers: success, steps, tool-call validity, findings, latency, cost, with "
        "95% intervals and the significant differences.",
    ),
    "verify": (
        "verify",
        "Judge a policy's criteria on the comparison's 95% intervals: pass, fail or "
        "inconclusive (with the runs needed) for every group; exit 0 pass, 1 fail, 5 "
        "inconclusive.",
    ),
    "expect": (
        "expect",
        "Compare recorded prompt tokens with a chat template's rendering of each request.",
    ),
    "import": (
        "import_",
        "Import exchange logs as runs, then check them; prints one row per file.",
    ),
    "merge": (
        "merge",
        "Copy the runs of other stores that the destination lacks; prints one row per source.",
    ),
    "compact": (
        "compact",
        "Give a store's unused space back to the disk: a file rewritten without its free "
        "blocks, a lake's small files merged and its expired snapshots and files removed.",
    ),
    "probe": (
        "probe",
        "Probe each provider's template and parser with a fixed conversation set, then report "
        "fingerprints and what sets each provider apart (progress on stderr).",
    ),
    "replay": (
        "replay",
        "Send each request of a suite to each provider and record every answer as a one-step "
        "run; requests already answered are skipped.",
    ),
    "report": (
        "report",
        "Write an HTML report: a policy's verdict (with --policy), comparison table, "
        "significant differences, charts and run timelines with findings marked.",
    ),
    "view": (
        "view",
        "Serve a read-only web viewer of the store until Ctrl-C: runs, steps, findings, side "
        "by side, SQL.",
    ),
    "tasks": (
        "tasks",
        "List the sample tasks: name, tool world, tools, step limit and what each exercises "
        "(--suites: the sample suites); --copy NAME [DEST] copies one out to edit.",
    ),
}
"""Every command, in `--help` order: name -> (module under `analyzer.commands`, the first
sentence of its help, which is all `traces --help` shows of it)."""


def load_command(name: str) -> _click.Command:
    """Import the module of command `name` and build its click command, as `traces` runs it."""
    module = importlib.import_module(f"analyzer.commands.{COMMANDS[name][0]}")
    single = typer.Typer(add_completion=False, rich_markup_mode=app.rich_markup_mode)
    module.register(single)
    for info in single.registered_commands:
        if info.cls in (None, TyperCommand):  # most values need no pydantic (see the class)
            info.cls = FastCommand
    command = typer.main.get_command(single)
    if command.name != name:  # a module registers exactly its own command
        raise RuntimeError(f"analyzer.commands.{COMMANDS[name][0]} registers {command.name!r}")
    body = command.callback
    if body is not None:

        def run(*args: Any, **kwargs: Any) -> Any:
            _start_up_done()
            return body(*args, **kwargs)

        command.callback = functools.update_wrapper(run, body)
    return command


def _start_up_done() -> None:
    """The command's own work begins: collect garbage again, but never the start-up's objects.

    `main` turns the cyclic collector off: start-up creates only objects that live until the
    process exits (modules, classes, the option parsers typer builds), and the
    collector's passes over them, during start-up and once more at exit, cost `traces runs`
    about 40 ms of CPU (an eighth of it) to find nothing. Frozen, they are skipped by every
    later collection. (Run other than by `main`, with the collector on, nothing changes.)
    """
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


class _Commands(MutableMapping[str, "_click.Command"]):
    """The group's commands: every name in `COMMANDS`, each built when first looked up."""

    def __init__(self) -> None:
        self._loaded: dict[str, _click.Command] = {}

    def __getitem__(self, name: str) -> _click.Command:
        if name not in self._loaded:
            if name not in COMMANDS:
                raise KeyError(name)
            self._loaded[name] = load_command(name)
        return self._loaded[name]

    def __setitem__(self, name: str, command: _click.Command) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        del self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        yield from COMMANDS
        yield from (name for name in self._loaded if name not in COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS) + sum(name not in COMMANDS for name in self._loaded)


class LazyGroup(TyperGroup):
    """The `traces` group: names, help and completion from `COMMANDS`; a command's module is
    imported only when that command runs (or prints its own help)."""

    def __init__(self, **attrs: Any) -> None:
        """As a TyperGroup; the commands come from `COMMANDS`."""
        super().__init__(**attrs)
        self.commands = _Commands()

    def list_commands(self, ctx: _click.Context) -> list[str]:
        """Command names in `--help` order, without importing any command."""
        return list(self.commands)

    def get_params(self, ctx: _click.Context) -> list[_click.Parameter]:
        """The group's options, converting values as `FastCommand` does."""
        params = super().get_params(ctx)
        fast_coercion(params)
        return params

    def format_commands(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        """The `Commands:` section of `traces --help`, as TyperGroup prints it, from the
        summaries (the same words: click shortens the first sentence of the help)."""
        from typer._click.utils import make_default_short_help

        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [(name, make_default_short_help(s, limit)) for name, (_, s) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def shell_complete(self, ctx: _click.Context, incomplete: str) -> list[CompletionItem]:
        """Command names (with their summaries) and the group's options, as TyperGroup
        completes them, without importing any command."""
        from typer._click.core import Command
        from typer._click.shell_completion import CompletionItem
        from typer._click.utils import make_default_short_help

        results = [
            CompletionItem(name, help=make_default_short_help(summary))
            for name, (_, summary) in COMMANDS.items()
            if name.startswith(incomplete)
        ]
        results.extend(Command.shell_complete(self, ctx, incomplete))
        return results


app = typer.Typer(
    name="traces",
    help="Record interleaved-thinking tool-calling agents into DuckDB and inspect the traces.",
    no_args_is_help=True,
    cls=LazyGroup,
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


def main() -> None:
    """Entry point of the `traces` console script: errors become one line on stderr."""
    interrupts.install()  # already done by `analyzer.__main__`; here for `-m analyzer.cli`
    interrupts.begin_command()
    args = sys.argv[1:] or ["--help"]
    gc.disable()  # until the command starts (see _start_up_done)
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
    except Exception:  # last: the clauses above are Exceptions too
        # A signal raises KeyboardInterrupt wherever the main thread is; inside a C
        # extension's initialisation (a command importing duckdb) it comes out as that
        # extension's ImportError. Whatever failed after a signal failed because of it.
        if interrupts.interrupted():
            interrupts.exit_interrupted()
        raise
    if result == interrupts.EXIT_CODE:  # typer turns a KeyboardInterrupt into a bare 130
        interrupts.exit_interrupted()
    interrupts.exit_with(result if isinstance(result, int) else 0)


def _fail(message: str, code: int) -> NoReturn:
    # Messages quote what the user, a host or a log gave (labels, lines, ids): one line, no
    # control character reaches the terminal raw, and no credential a host echoed.
    from analyzer.output import one_line  # here: most commands never fail
    from traces.redaction import redact_tokens

    interrupts.exit_with(code, f"error: {one_line(redact_tokens(message))}")


if __name__ == "__main__":
    main()
