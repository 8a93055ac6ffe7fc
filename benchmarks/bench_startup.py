"""Start-up cost: CPU time of short `traces` commands against `python -c "import duckdb"`.

Run by hand (it is not a test and asserts nothing about time):

    .venv/bin/python benchmarks/bench_startup.py [--rounds 20] [--db PATH] [--json PATH]

A command that reads a small database does almost no work of its own, so what it costs is
start-up: the interpreter, the imports and opening the file. The baseline is what any
Python tool over DuckDB pays, `python -c "import duckdb"`; each command's cost is reported
as a ratio to it. Measured, in interleaved rounds (each command once per round, in the order
below), as the CPU time (user + sys, from the children's rusage) of a fresh process:

- `import duckdb`: the baseline, `python -c "import duckdb"`.
- `floor`: `python -c` importing what every reading command needs before it does anything:
  DuckDB, typer and rich's character widths (`rich.cells`; not pydantic, which typer 0.29
  imports to convert option values and `analyzer.option_values` spares when no value needs
  converting). No command can cost less than this plus opening the database.
- `--help`: `traces --help`.
- `runs`, `sql`, `show`, `steps`: `traces runs`, `traces sql "select 1"`, `traces show last`,
  `traces steps` on a small database (one run of the sample research task, 11 steps,
  recorded with `traces demo` unless `--db` names one).
- `writer process`: the CPU of the recorder's writer process alone, from its start to its
  exit, when a `Recorder` (`traces.store.recorder`) is opened on the database and closed at
  once: what every `traces record` and `traces demo` pays for it. The script that opens it
  imports `analyzer.cli` as the `traces` console script does, because a child started with
  multiprocessing's spawn re-runs the parent's main module (it did until the writer became
  a fresh `python -m` process). Its ratio is to the baseline too.

`traces` is the console script next to this interpreter (else `python -m analyzer.cli`), so
`PYTHONPATH=/path/to/other/checkout` measures another version of the code with the same
interpreter and packages. CPU time rather than wall time: the machine is shared, and CPU
time moves less with the load than wall time does (it is reported too).

Every process uses a bytecode cache in the temporary directory (`PYTHONPYCACHEPREFIX`, filled
by a first untimed round), as an installed package has one: with `PYTHONDONTWRITEBYTECODE`
set and no `__pycache__` in the checkout, each process would compile every module of ours it
imports, which costs more than importing it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASELINE = "import duckdb"
FLOOR = (
    # typer's pydantic is not imported: values that need no converting skip it
    # (analyzer.option_values); tables need only rich's character widths.
    "import duckdb, rich.cells, typer"
)
WRITER = "writer process"
WRITER_SCRIPT = """\
import resource
import sys
from pathlib import Path

from analyzer.cli import main  # as the `traces` console script does
from traces.store.recorder import Recorder

if __name__ == "__main__":
    Recorder(Path(sys.argv[1])).close()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the writer, and only it
    print(usage.ru_utime + usage.ru_stime)
"""


def traces_command() -> list[str]:
    """How to run `traces` with this interpreter: its console script, else `-m`."""
    script = Path(sys.executable).with_name("traces")
    return [str(script)] if script.exists() else [sys.executable, "-m", "analyzer.cli"]


def commands(db: Path, writer_script: Path) -> dict[str, list[str]]:
    """Each measured command by name, the baseline first."""
    traces = traces_command()
    at = ["--db", str(db)]
    return {
        BASELINE: [sys.executable, "-c", "import duckdb"],
        "floor": [sys.executable, "-c", FLOOR],
        "--help": [*traces, "--help"],
        "runs": [*traces, "runs", *at],
        "sql": [*traces, "sql", "select 1", *at],
        "show": [*traces, "show", "last", *at],
        "steps": [*traces, "steps", *at],
        WRITER: [sys.executable, str(writer_script), str(db)],
    }


def children_cpu_s() -> float:
    """User + system CPU seconds of every child process waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(name: str, argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run one command to its end; its (CPU, wall) seconds. Exits if the command fails."""
    cpu0, wall0 = children_cpu_s(), time.perf_counter()
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=env, check=False)
    wall, cpu = time.perf_counter() - wall0, children_cpu_s() - cpu0
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.decode().strip()}")
    if name == WRITER:  # the script prints its writer's CPU
        cpu = float(done.stdout.decode().split()[-1])
    return cpu, wall


def record_small_database(db: Path, env: dict[str, str]) -> None:
    """One run of the sample research task against the embedded simulator."""
    measure("demo", [*traces_command(), "demo", "--db", str(db)], env)


def main() -> None:
    """Measure, then print a Markdown table of medians and ratios to the baseline."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="interleaved rounds")
    parser.add_argument("--db", type=Path, help="database to read [default: a fresh demo run]")
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        env = {**os.environ, "PYTHONPYCACHEPREFIX": str(Path(tmp) / "pycache")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        db = args.db
        if db is None:
            db = Path(tmp) / "traces.duckdb"
            record_small_database(db, env)
        writer_script = Path(tmp) / "open_recorder.py"
        writer_script.write_text(WRITER_SCRIPT)
        argvs = commands(db, writer_script)
        for name, argv in argvs.items():  # fill the bytecode cache, warm the file cache
            measure(name, argv, env)
        cpu: dict[str, list[float]] = {name: [] for name in argvs}
        wall: dict[str, list[float]] = {name: [] for name in argvs}
        for round_no in range(args.rounds):
            for name, argv in argvs.items():
                cpu_s, wall_s = measure(name, argv, env)
                cpu[name].append(cpu_s)
                wall[name].append(wall_s)
            print(
                f"round {round_no + 1}: "
                + "  ".join(f"{name} {cpu[name][-1] * 1000:.0f}" for name in argvs)
                + " (CPU ms)",
                file=sys.stderr,
            )

    cpu_median = {name: statistics.median(values) for name, values in cpu.items()}
    wall_median = {name: statistics.median(values) for name, values in wall.items()}
    ratios = {name: cpu_median[name] / cpu_median[BASELINE] for name in argvs}
    print(
        f"\n{args.rounds} rounds; {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"`traces` is {' '.join(traces_command())}\n"
    )
    print("| command | CPU ms (median) | CPU ms (min-max) | wall ms (median) | CPU / baseline |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in argvs:
        low, high = min(cpu[name]) * 1000, max(cpu[name]) * 1000
        print(
            f"| {name} | {cpu_median[name] * 1000:.0f} | {low:.0f}-{high:.0f} "
            f"| {wall_median[name] * 1000:.0f} | {ratios[name]:.2f} |"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "rounds": args.rounds,
                    "traces": traces_command(),
                    "pythonpath": os.environ.get("PYTHONPATH"),
                    "machine": {
                        "cpus": os.cpu_count(),
                        "python": platform.python_version(),
                        "platform": platform.platform(),
                    },
                    "cpu_s": cpu,
                    "wall_s": wall,
                    "cpu_median_s": cpu_median,
                    "wall_median_s": wall_median,
                    "ratios": ratios,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
