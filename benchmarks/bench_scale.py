"""Every read command, `compare`, `report`, `analyze RUN` and the viewer's pages on a store of
100,000 steps and on one of a million: what grows with the store.

Run by hand (it is not a test and asserts nothing about time):

    .venv/bin/python benchmarks/bench_scale.py [--store DIR] [--small PATH --large PATH]
        [--long-run] [--rounds 1] [--skip LIST] [--json PATH]

The stores: `bench_analyze.build_store` imports 100,000 generated multi-provider exchanges
(bench_import's generator: conversations of 20 steps whose histories grow, reasoning, every
10th streamed; bench_analyze's five providers with their faults: retries, dropped reasoning,
malformed calls, truncated streams) and analyses them; `bench_compare.scaled_store` copies
that store's runs ten times under new ids for a million steps. With `--store DIR` both are
built there once and reused; `--small`/`--large` name stores built before (a build of the
million-step store takes hours on a loaded 2-core machine). Each store is copied into a
scratch directory before anything runs on it (`analyze` writes findings, a newer code
migrates the file), and the copies are removed at the end.

`--long-run` first imports one more conversation of 300 steps (same generator, one
conversation at a time, provider `alpha`) into each copy: the run `show`, `analyze RUN`,
`failures --run` and the viewer's run pages read is then a 300-step one, as the issue's
target names it. Without it they read the longest run the store holds (20 steps).

Each command runs in a fresh process: wall time, CPU time (its own and its children's: on a
shared machine CPU moves less than wall time) and peak RSS (summed over the command's
process and its workers). The viewer (`traces view --port
0`) is started once per store and each page fetched over HTTP (a page computed in the
background, such as `/comparison`, until it is current); a page's CPU is the server's CPU
time across the fetch (from /proc), its memory the server's peak RSS at the end. Rounds
alternate the stores so that a change in the machine's load hits both. Printed: per arm,
each store's medians and the growth from the small store to the large one (CPU and memory
ratios; the store grows 10×).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_analyze
import bench_compare
import bench_import
import bench_view

from traces.importing import ImportOptions, import_files

SMALL_STEPS = 100_000
LARGE_STEPS = 1_000_000
LONG_RUN_STEPS = 300
REFERENCE = bench_compare.REFERENCE

Measure = dict[str, float]


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a live process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def add_long_run(db: Path, scratch: Path) -> None:
    """Import one generated conversation of `LONG_RUN_STEPS` steps (checked on import)."""
    raw = scratch / "long.raw.jsonl"
    source = scratch / "long.jsonl"
    bench_import.write_conversations(raw, LONG_RUN_STEPS, LONG_RUN_STEPS, seed=7, concurrent=1)
    with raw.open() as lines, source.open("w") as out:
        for text in lines:
            line = json.loads(text)
            line["provider"] = REFERENCE
            line["conversation"] = "bench-scale-long-run"
            bench_analyze._with_usage(line, drops_reasoning=False)
            out.write(json.dumps(line) + "\n")
    import_files(db, [source], ImportOptions())
    raw.unlink()
    source.unlink()


class Store:
    """A scratch copy of one store and what its arms read."""

    def __init__(self, label: str, source: Path, scratch: Path, long_run: bool) -> None:
        self.label = label
        self.db = scratch / f"{label}.duckdb"
        started = time.perf_counter()
        shutil.copyfile(source, self.db)
        if long_run:
            add_long_run(self.db, scratch)
        print(f"{label}: copied {source} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
        conn = duckdb.connect(str(self.db), read_only=True)
        try:
            counted = conn.execute(
                "SELECT (SELECT count(*) FROM steps), (SELECT count(*) FROM runs)"
            ).fetchone()
            self.steps, self.runs = counted if counted else (0, 0)
            found = conn.execute(
                "SELECT id, steps FROM runs ORDER BY steps DESC, id LIMIT 1"
            ).fetchone()
            self.run, self.run_steps = found if found else ("", 0)
        finally:
            conn.close()
        self.pages = bench_view._pages(self.db)
        self.html = scratch / f"{label}.html"

    def commands(self) -> dict[str, list[str]]:
        """Each command's arguments (after `traces`)."""
        db = ["--db", str(self.db)]
        return {
            "runs": ["runs", *db],
            "runs --format json --limit 0": ["runs", *db, "--format", "json", "--limit", "0"],
            "show RUN": ["show", self.run, *db],
            "show RUN --format json": ["show", self.run, *db, "--format", "json"],
            "failures": ["failures", *db],
            "failures --run RUN": ["failures", "--run", self.run, *db],
            "steps": ["steps", *db],
            "sql": ["sql", *db, "SELECT provider, count(*) FROM runs GROUP BY ALL ORDER BY 1"],
            "sql request_messages": [
                "sql",
                *db,
                f"SELECT count(*) FROM request_messages('{self.run}', {self.run_steps - 1})",
            ],
            "analyze RUN": ["analyze", self.run, *db],
            "compare": ["compare", *db, "--reference", REFERENCE, "--format", "json"],
            "report": ["report", *db, "--reference", REFERENCE, "--html", str(self.html)],
        }


def _command(args: list[str]) -> Measure:
    return bench_compare._command(args)


def _view_pages(store: Store, rounds: int) -> dict[str, list[Measure]]:
    """Each page of the viewer over HTTP: wall ms and the server's CPU ms per fetch, and
    the server's peak RSS once every page was served."""
    process = subprocess.Popen(
        [*bench_view._traces(), "view", "--db", str(store.db), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    out: dict[str, list[Measure]] = {f"view {name}": [] for name in store.pages}
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url:
            raise SystemExit(f"traces view did not start on {store.db}")
        for _ in range(rounds):
            for name, path in store.pages.items():
                cpu = _cpu_of(process.pid)
                started = time.perf_counter()
                if name in bench_view.BACKGROUND:
                    # Computed in the background once per store version: until it is current.
                    bench_view._until_current(url + path)
                else:
                    bench_view._fetch(url + path)
                out[f"view {name}"].append(
                    {
                        "wall_s": time.perf_counter() - started,
                        "cpu_s": _cpu_of(process.pid) - cpu,
                    }
                )
        peak = _peak_rss_mb(process.pid)
        for measures in out.values():
            for measure in measures:
                measure["server_peak_rss_mb"] = peak
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(60)
    return out


def _median(measures: list[Measure]) -> Measure:
    return {key: statistics.median(m[key] for m in measures) for key in measures[0]}


def _cell(measure: Measure | None) -> str:
    if measure is None:
        return "-"
    # A command's memory with its workers' (compare's resampling worker) where measured.
    rss = measure.get("peak_tree_mb", measure.get("peak_rss_mb", measure.get("server_peak_rss_mb")))
    memory = f", {rss:.0f} MiB" if rss is not None else ""
    return f"{measure['wall_s']:.2f} s (CPU {measure['cpu_s']:.2f}{memory})"


def _growth(small: Measure | None, large: Measure | None) -> str:
    if small is None or large is None:
        return "-"
    cpu = large["cpu_s"] / small["cpu_s"] if small["cpu_s"] > 0 else float("nan")
    key = next(k for k in ("peak_tree_mb", "peak_rss_mb", "server_peak_rss_mb") if k in small)
    memory = large[key] / small[key] if small.get(key) else float("nan")
    return f"CPU {cpu:.1f}×, memory {memory:.1f}×"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=None, help="build or reuse stores here")
    parser.add_argument("--small", type=Path, default=None, help="a 100k-step store to use")
    parser.add_argument("--large", type=Path, default=None, help="a 1M-step store to use")
    parser.add_argument("--long-run", action="store_true", help="import a 300-step run first")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--skip", default="", help="arms to leave out, comma-separated")
    parser.add_argument("--json", type=Path, default=None)
    options = parser.parse_args()
    skip = {a.strip() for a in options.skip.split(",") if a.strip()}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as scratch_name:
        scratch = Path(scratch_name)
        built = options.store or scratch / "built"
        built.mkdir(parents=True, exist_ok=True)
        small_source = options.small or bench_analyze.build_store(built, SMALL_STEPS)
        large_source = options.large or bench_compare.scaled_store(built, LARGE_STEPS)
        stores = [
            Store("small", small_source, scratch, options.long_run),
            Store("large", large_source, scratch, options.long_run),
        ]
        for store in stores:
            print(
                f"{store.label}: {store.steps:,} steps, {store.runs:,} runs; "
                f"the run read: {store.run} ({store.run_steps} steps)"
            )
        results: dict[str, dict[str, list[Measure]]] = {s.label: {} for s in stores}
        for _ in range(options.rounds):
            for store in stores:
                for arm, args in store.commands().items():
                    if arm not in skip:
                        results[store.label].setdefault(arm, []).append(_command(args))
                if "view" not in skip:
                    for arm, measures in _view_pages(store, 1).items():
                        results[store.label].setdefault(arm, []).extend(measures)
        medians = {
            label: {arm: _median(measures) for arm, measures in arms.items()}
            for label, arms in results.items()
        }
        arms = list(medians["small"]) + [a for a in medians["large"] if a not in medians["small"]]
        small, large = stores
        print(
            f"\n{'arm':<28} {small.steps:>10,} steps{'':>14} {large.steps:>10,} steps"
            f"{'':>14} growth"
        )
        for arm in arms:
            a = medians["small"].get(arm)
            b = medians["large"].get(arm)
            print(f"{arm:<28} {_cell(a):<34} {_cell(b):<34} {_growth(a, b)}")
        if options.json:
            report: dict[str, Any] = {
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "duckdb": duckdb.__version__,
                    "load_average": os.getloadavg(),
                },
                "stores": {
                    s.label: {
                        "steps": s.steps,
                        "runs": s.runs,
                        "run": s.run,
                        "run_steps": s.run_steps,
                    }
                    for s in stores
                },
                "rounds": options.rounds,
                "medians": medians,
            }
            options.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
