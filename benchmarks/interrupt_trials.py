"""Ctrl-C at random moments: does every interrupted command end with one line and exit 130?

Run by hand (a trial, not a test: it takes minutes and its outcome is a count):

    .venv/bin/python benchmarks/interrupt_trials.py [--trials 10] [--max-delay 5]
        [--command record|import|analyze|both|all] [--signal INT|TERM] [--seed S]
        [--keep DIR]

Each trial starts the `traces` console script of this virtualenv in a process group of its
own, as a shell starts a command, waits a random delay in [0, --max-delay] seconds and sends
the signal to the whole group, as a terminal does on Ctrl-C (children included). It then
checks what the issue asks of an interrupted command:

- exit code 130 (or 0 when the command finished before the signal);
- exactly one line on stderr, `error: interrupted` or `interrupted: run(s) … left
  interrupted` for `record`, and no `Traceback`;
- no process of the group left alive (writer process, import workers);
- `record`: no run left `running` in the database;
- `import`: the database as it was, a file the import created removed (with its `.wal`);
- `analyze`: the findings and run summaries as they were, no worker file left behind.

`record` records `samples/tasks/chain.toml` against the embedded simulator. `import` reads a
generated agent log of 60,000 exchanges (`bench_import.write_conversations`, about 200 MB)
with `TRACES_IMPORT_WORKERS=2`, alternately into a fresh path and into an existing database.
`analyze` checks every run of that log imported once (60,000 steps) with
`TRACES_ANALYZE_WORKERS=2`. `both` is record and import, `all` adds analyze. Prints one line
per trial and a count per outcome at the end; exits 1 if any trial broke
the contract.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_import import write_conversations

REPO = Path(__file__).resolve().parents[1]
TRACES = Path(sys.executable).parent / "traces"
TABLES = ("runs", "steps", "messages", "step_messages", "tool_calls", "tool_results", "imports")


def _group(pgid: int) -> set[int]:
    """Live (not zombie) processes of process group `pgid`."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == pgid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def _counts(db: Path) -> dict[str, int] | str:
    """Row counts of every table, or why the file cannot be read."""
    if not db.exists():
        return "absent"
    try:
        conn = duckdb.connect(str(db), read_only=True)
    except duckdb.Error as exc:
        return f"unreadable: {str(exc).splitlines()[0]}"
    try:
        counts = {}
        for table in TABLES:
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            counts[table] = int(row[0]) if row else 0
        return counts
    except duckdb.Error as exc:
        return f"unreadable: {str(exc).splitlines()[0]}"
    finally:
        conn.close()


def _findings(db: Path) -> str:
    """A fingerprint of the stored findings and run summaries."""
    conn = duckdb.connect(str(db), read_only=True)
    try:
        row = conn.execute(
            "SELECT (SELECT count(*) || ':' || coalesce(sum(hash(run_id, step_idx, kind, "
            "evidence)), 0) FROM findings) || '/' || (SELECT coalesce(sum(hash(id, "
            "failure_summary)), 0) FROM runs)"
        ).fetchone()
        return str(row[0]) if row else ""
    finally:
        conn.close()


def _running_runs(db: Path) -> int:
    if not db.exists():
        return 0
    conn = duckdb.connect(str(db), read_only=True)
    try:
        row = conn.execute("SELECT count(*) FROM runs WHERE status = 'running'").fetchone()
        return int(row[0]) if row else 0
    finally:
        conn.close()


def _trial(args: list[str], env: dict[str, str], delay: float, sig: int) -> tuple[int, str, int]:
    """Run `traces ARGS`, signal its group after `delay` s; (exit code, stderr, survivors)."""
    proc = subprocess.Popen(
        [str(TRACES), *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        time.sleep(delay)
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
        _, err = proc.communicate(timeout=120)
        time.sleep(0.2)  # children stopped by the parent get a moment to be reaped
        survivors = len(_group(proc.pid))
    finally:
        if proc.poll() is None or _group(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, err, survivors


def _verdict(code: int, err: str, survivors: int, command: str) -> list[str]:
    """What broke the contract in one trial (empty: nothing)."""
    problems = []
    lines = err.strip().splitlines()
    if "Traceback" in err:
        problems.append("traceback")
    if code == 130:
        if len(lines) != 1:
            problems.append(f"{len(lines)} stderr lines")
        elif lines[0] != "error: interrupted" and not (
            command == "record" and lines[0].startswith("interrupted: run")
        ):
            problems.append(f"line {lines[0]!r}")
    elif code != 0:
        problems.append(f"exit {code}")
    if survivors:
        problems.append(f"{survivors} processes left")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10, help="trials per command")
    parser.add_argument("--max-delay", type=float, default=5.0)
    parser.add_argument(
        "--command", choices=("record", "import", "analyze", "both", "all"), default="both"
    )
    parser.add_argument("--signal", choices=("INT", "TERM"), default="INT")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", type=Path, help="keep the temporary files here")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    sig = signal.Signals[f"SIG{args.signal}"]
    work = Path(args.keep or tempfile.mkdtemp(prefix="interrupt-trials-"))
    work.mkdir(parents=True, exist_ok=True)
    scratch = work / "tmp"  # the commands' temporary files (analysis workers' databases)
    scratch.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "NO_COLOR": "1",
        "TRACES_IMPORT_WORKERS": "2",
        "TRACES_ANALYZE_WORKERS": "2",
        "TMPDIR": str(scratch),
    }
    env.pop("TRACES_DB", None)
    commands = {
        "both": ["record", "import"],
        "all": ["record", "import", "analyze"],
    }.get(args.command, [args.command])
    log = work / "agents.jsonl"
    if {"import", "analyze"} & set(commands) and not log.exists():
        print(f"writing {log} …", file=sys.stderr)
        write_conversations(log, 60_000, 20)
    existing = work / "existing.duckdb"
    if "import" in commands and not existing.exists():
        subprocess.run(
            [
                str(TRACES),
                "record",
                "--task",
                "samples/tasks/chain_short.toml",
                "--db",
                str(existing),
            ],
            cwd=REPO,
            env=env,
            check=True,
            capture_output=True,
        )
    analyzed = work / "analyze.duckdb"
    if "analyze" in commands and not analyzed.exists():
        subprocess.run(
            [str(TRACES), "import", str(log), "--db", str(analyzed)],
            cwd=REPO,
            env=env,
            check=True,
            capture_output=True,
        )
    trials = broken = 0
    for trial in range(args.trials):
        for command in commands:
            delay = rng.uniform(0, args.max_delay)
            if command == "record":
                db = work / f"record-{trial}.duckdb"
                argv = ["record", "--task", "samples/tasks/chain.toml", "--db", str(db)]
                before: dict[str, int] | str = "absent"
            elif command == "analyze":
                db = analyzed
                argv = ["analyze", "--db", str(db), "--format", "json"]
                before = _findings(db)
            else:
                db = existing if trial % 2 else work / f"import-{trial}.duckdb"
                argv = ["import", str(log), "--db", str(db), "--again"]
                before = _counts(db)
            code, err, survivors = _trial(argv, env, delay, sig)
            problems = _verdict(code, err, survivors, command)
            if command == "import" and code != 0:
                after = _counts(db)
                if after != before:
                    problems.append(f"database changed: {before} -> {after}")
            if command == "analyze" and code != 0 and (after := _findings(db)) != before:
                problems.append(f"findings changed: {before} -> {after}")
            if leftovers := list(scratch.iterdir()):
                problems.append(f"{len(leftovers)} temporary files left")
                for leftover in leftovers:
                    shutil.rmtree(leftover, ignore_errors=True)
            if command == "record" and code == 130 and (running := _running_runs(db)):
                problems.append(f"{running} runs left running")
            outcome = "; ".join(problems) or "ok"
            broken += bool(problems)
            trials += 1
            last = err.strip().splitlines()[-1] if err.strip() else ""
            print(f"{command:6} delay {delay:4.2f}s exit {code:3}  {outcome}  | {last[:100]}")
            if problems:  # the end of what it printed: enough to see where it broke
                print("    " + "\n    ".join(err.strip().splitlines()[-12:]))
    print(f"{broken} of {trials} trials broke the contract")
    sys.exit(1 if broken else 0)


if __name__ == "__main__":
    main()
