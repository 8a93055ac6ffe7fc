"""The `traces` command line: one module per command under `analyzer.commands`.

Exit codes: 0 success; 1 the command ran but what it checked failed; 2 bad input (task file,
options, SQL); 3 endpoint unreachable or misbehaving; 4 database missing or locked;
130 interrupted.
"""

from __future__ import annotations

import sys

import typer

from analyzer.commands import demo, record, runs, schema, show, sim, sql, steps
from traces.errors import TracesError

app = typer.Typer(
    name="traces",
    help="Record interleaved-thinking tool-calling agents into DuckDB and inspect the traces.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

for module in (record, demo, runs, show, steps, sql, schema, sim):
    module.register(app)


def main() -> None:
    """Entry point of the `traces` console script: errors become one line on stderr."""
    try:
        app()
    except TracesError as err:
        sys.stderr.write(f"error: {err}\n")
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        sys.exit(130)


if __name__ == "__main__":
    main()
