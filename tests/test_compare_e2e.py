"""`traces compare` end to end: a suite recorded over HTTP against simulator dialects with
known fault rates, compared, and the configured rates recovered within their intervals.

The simulator, the worlds and the resampling are all seeded, so each recovered interval
below is one fixed outcome; on fresh seeds a 95% interval misses about one time in twenty.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from analyzer.compare.build import build_comparison
from analyzer.compare.costs import PriceList
from analyzer.compare.render import emit_comparison
from analyzer.compare.selection import GroupBy, Selection
from analyzer.output import OutputFormat
from traces.client import EndpointConfig
from traces.errors import TracesError
from traces.harness import HarnessSettings
from traces.runner import RunPlan, record_runs
from traces.store.database import open_for_reading
from traces.store.recorder import Recorder
from traces.targets import resolve_targets
from traces.tasks import load_task

from conftest import TASKS, query_rows, run_cli
from scripted_endpoint import ScriptedEndpoint, answer, tool_turn

# Slow as a whole, outside the fast path `pytest -m "not slow"`: suites recorded against several
# simulators.
pytestmark = pytest.mark.slow

CLEAN = "sim"
BAD_JSON = "sim+invalid_json_arguments=0.2"
BAD_TYPES = "sim-moonshot+wrong_type_arguments=0.3"
FORGETFUL = "sim+reasoning_dropped_from_history=1"
RUNS = 15
QUICK = TASKS.parent / "suites" / "quick.toml"


def _one_line_error(done: subprocess.CompletedProcess[str], code: int, *fragments: str) -> None:
    assert done.returncode == code, (done.stdout, done.stderr)
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and "Traceback" not in line
    for fragment in fragments:
        assert fragment in line, line


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The short chain, 15 runs per target, against four simulators at once."""
    base = tmp_path_factory.mktemp("compare")
    suite = base / "suite.toml"
    suite.write_text(
        'name = "faults"\ndescription = "Known fault rates."\n'
        "[defaults]\nstream = true\nconcurrency = 4\n"
        f'[[tasks]]\npath = "{TASKS / "chain_short.toml"}"\nrepeats = {RUNS}\n',
        encoding="utf-8",
    )
    db = base / "t.duckdb"
    started = time.monotonic()
    done = run_cli(
        "compare",
        "--suite",
        str(suite),
        "--seed",
        "1",
        "--dialect",
        "openai",
        "--dialect",
        "openai:invalid_json_arguments=0.2",
        "--dialect",
        "moonshot:wrong_type_arguments=0.3",
        "--dialect",
        "openai:reasoning_dropped_from_history=1",
        "--reference",
        CLEAN,
        "--format",
        "json",
        "--db",
        str(db),
    )
    assert done.returncode == 0, done.stderr
    print(f"recorded and compared {4 * RUNS} runs in {time.monotonic() - started:.1f} s")
    return db, json.loads(done.stdout)


def _values(comparison: dict[str, Any], key: str) -> dict[str, dict[str, Any]]:
    [metric] = [m for m in comparison["metrics"] if m["key"] == key]
    values: dict[str, dict[str, Any]] = metric["values"]
    return values


def test_configured_fault_rates_are_recovered_within_their_intervals(
    recorded: tuple[Path, dict[str, Any]],
) -> None:
    _, comparison = recorded
    assert [g["name"] for g in comparison["groups"]] == [CLEAN, BAD_JSON, BAD_TYPES, FORGETFUL]
    assert all(g["runs"] == RUNS for g in comparison["groups"])
    invalid = _values(comparison, "invalid_json_rate")
    mismatch = _values(comparison, "schema_mismatch_rate")
    assert invalid[BAD_JSON]["lo"] <= 0.2 <= invalid[BAD_JSON]["hi"]
    assert mismatch[BAD_TYPES]["lo"] <= 0.3 <= mismatch[BAD_TYPES]["hi"]
    for group, rates in ((CLEAN, (invalid, mismatch)), (BAD_JSON, (mismatch,))):
        for rate in rates:
            assert rate[group]["lo"] <= 0.0 <= rate[group]["hi"], group
    assert invalid[BAD_TYPES]["value"] == 0.0
    # Each bad call makes the response fail K2VV's schema check.
    accuracy = _values(comparison, "schema_accuracy")
    assert accuracy[CLEAN]["value"] == 1.0
    for group in (BAD_JSON, BAD_TYPES):
        assert accuracy[group]["value"] < 1.0 and accuracy[group]["runs"] == RUNS


def test_the_significant_differences_name_the_injected_faults(
    recorded: tuple[Path, dict[str, Any]],
) -> None:
    _, comparison = recorded
    found = {(d["metric"], d["higher"], d["lower"]): d for d in comparison["significant"]}
    bad_json = found[("invalid_json_rate", BAD_JSON, CLEAN)]
    assert bad_json["better"] == CLEAN and bad_json["lo"] > 0
    assert "invalid_json per call" in bad_json["text"] and BAD_JSON in bad_json["text"]
    assert ("schema_mismatch_rate", BAD_TYPES, CLEAN) in found
    # With a reference, each group is tested against it only.
    assert all(CLEAN in (d["higher"], d["lower"]) for d in comparison["significant"])
    assert comparison["comparisons"] >= len(comparison["significant"])


def test_a_host_that_ignores_reasoning_sent_back_retains_none(
    recorded: tuple[Path, dict[str, Any]],
) -> None:
    db, comparison = recorded
    retention = _values(comparison, "reasoning_retention")
    assert retention[CLEAN]["value"] == 1.0 and retention[BAD_JSON]["value"] == 1.0
    # Measured from each run's prompt_tokens: within the ledger's ten points of none. A run
    # whose ledger leaves it undecided (one read "none" at 0.66 against a fitted 24% at 0.34)
    # is left out of the ratio, its `ledgers` row saying so.
    [undecided] = query_rows(
        db,
        "SELECT count(*) AS n FROM ledgers l JOIN runs r ON r.id = l.run_id "
        "WHERE r.provider = ? AND l.reasoning_behaviour IS NOT NULL "
        "AND l.reasoning_sent_tokens IS NULL",
        [FORGETFUL],
    )
    assert retention[FORGETFUL]["value"] <= 0.1
    assert retention[FORGETFUL]["runs"] + undecided["n"] == RUNS and undecided["n"] <= 2
    found = {(d["metric"], d["higher"], d["lower"]) for d in comparison["significant"]}
    assert ("reasoning_retention", CLEAN, FORGETFUL) in found
    # The tool results reached every host whole.
    tools = _values(comparison, "tool_result_retention")
    assert {group: v["value"] for group, v in tools.items()} == dict.fromkeys(tools, 1.0)
    assert set(tools) == {CLEAN, BAD_JSON, BAD_TYPES, FORGETFUL}


def test_every_metric_family_is_filled_from_the_recording(
    recorded: tuple[Path, dict[str, Any]],
) -> None:
    _, comparison = recorded
    assert _values(comparison, "success_rate")[CLEAN]["value"] == 1.0
    assert _values(comparison, "steps_median")[CLEAN]["value"] == 6.0  # 5 boxes + answer
    f1 = _values(comparison, "tool_call_f1")
    assert CLEAN not in f1 and f1[BAD_JSON]["value"] == pytest.approx(1.0)
    assert {g["name"]: g["paired_steps"] for g in comparison["groups"]}[BAD_JSON] > 0
    assert _values(comparison, "ttft_ms")[CLEAN]["value"] > 0  # the suite streams
    assert _values(comparison, "output_tokens_per_s")[CLEAN]["value"] > 0
    assert _values(comparison, "cost_per_run_usd")[CLEAN]["value"] == 0.0
    assert _values(comparison, "reasoning_returned")[CLEAN]["value"] == 1.0
    kinds = _values(comparison, "finding.kind.invalid_json_arguments.per_100_steps")
    assert kinds[BAD_JSON]["value"] > 0 and kinds[CLEAN]["value"] == 0
    buckets = comparison["steps_histogram"]
    assert sum(b["runs"][CLEAN] for b in buckets) == RUNS
    assert comparison["suite"] == "faults" and comparison["resamples"] == 1000


def test_recorded_runs_compare_again_from_the_database_with_filters(
    recorded: tuple[Path, dict[str, Any]],
) -> None:
    db, _ = recorded
    done = run_cli(
        "compare",
        "--db",
        str(db),
        "--provider",
        CLEAN,
        "--provider",
        BAD_JSON,
        "--task",
        "chain_short",
    )
    assert done.returncode == 0, done.stderr
    assert CLEAN in done.stdout and BAD_JSON in done.stdout and BAD_TYPES not in done.stdout
    closing = done.stdout[done.stdout.index("Significant differences") :]
    assert "invalid_json per call" in closing and "sim does better" in closing

    as_csv = run_cli("compare", "--db", str(db), "--by", "model", "--format", "csv")
    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert {r["group"] for r in rows} == {"sim-reasoner-1"}
    [success] = [r for r in rows if r["metric"] == "success_rate"]
    assert int(success["runs"]) == 4 * RUNS

    conn = open_for_reading(db)
    try:
        picked = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM runs WHERE provider = ? ORDER BY id LIMIT 2", [BAD_JSON]
            ).fetchall()
        ]
    finally:
        conn.close()
    by_id = run_cli(
        "compare", "--db", str(db), "--run", picked[0], "--run", picked[1][:-1], "--format", "json"
    )
    assert by_id.returncode == 0, by_id.stderr
    [group] = json.loads(by_id.stdout)["groups"]
    assert group["name"] == BAD_JSON and group["runs"] == 2


def test_no_match_and_bad_options_are_one_line_errors(
    recorded: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    db, _ = recorded
    _one_line_error(
        run_cli("compare", "--db", str(db), "--provider", "together"),
        2,
        "no runs of provider 'together'",
        CLEAN,
    )
    _one_line_error(
        run_cli("compare", "--db", str(db), "--dialect", "openai"), 2, "only with --suite"
    )
    fresh = tmp_path / "fresh.duckdb"
    _one_line_error(
        run_cli("compare", "--suite", str(QUICK), "--provider", "nosuch", "--db", str(fresh)),
        2,
        "no provider 'nosuch'",
    )
    assert not fresh.exists()


def _error(call: Callable[[], object]) -> str:
    with pytest.raises(TracesError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


def test_selections_and_targets_that_cannot_work_say_why(
    recorded: tuple[Path, dict[str, Any]],
) -> None:
    db, _ = recorded
    conn = open_for_reading(db)
    try:
        future = Selection(since=datetime(2999, 1, 1))
        assert "no finished runs match (since=2999-01-01" in _error(
            lambda: build_comparison(conn, future, prices=PriceList({}))
        )
        assert "no runs of task 'research'" in _error(
            lambda: build_comparison(conn, Selection(tasks=["research"]), prices=PriceList({}))
        )
        assert "'nope' is not one of the compared groups" in _error(
            lambda: build_comparison(conn, Selection(), prices=PriceList({}), reference="nope")
        )
    finally:
        conn.close()

    def targets(*, providers: Sequence[str] = (), dialects: Sequence[str] = ()) -> object:
        return resolve_targets(
            providers=list(providers),
            dialects=list(dialects),
            faults=[],
            providers_file=None,
            model=None,
            timeout=1.0,
            seed=0,
        )

    assert "--dialect 'nope': unknown" in _error(lambda: targets(dialects=["nope"]))
    assert "unknown fault 'no_fault'" in _error(lambda: targets(dialects=["openai:no_fault=0.1"]))
    assert "given twice" in _error(lambda: targets(dialects=["openai"], providers=["sim"]))
    assert "no provider 'nosuch'" in _error(lambda: targets(providers=["nosuch"]))


def test_upstream_hosts_behind_a_router_are_columns_of_their_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "t.duckdb"
    task = load_task(TASKS / "chain_short.toml")
    hosts = ("HostA", "HostB")
    endpoints = []
    for host in hosts:
        status, body = answer("no boxes today")
        endpoints.append(ScriptedEndpoint([(status, {**body, "provider": host})]))

    async def record_all(urls: list[str], recorder: Recorder) -> None:
        for url in urls:
            plan = RunPlan(
                task=task,
                provider="openrouter",
                endpoint=EndpointConfig(base_url=url, api_key_env=None, api_key="k"),
                settings=HarnessSettings(model="m", max_steps=3),
                repeat=2,
            )
            await record_runs(plan, recorder)

    with endpoints[0].serving() as a, endpoints[1].serving() as b:
        recorder = Recorder(db)
        try:
            asyncio.run(record_all([a.base_url, b.base_url], recorder))
        finally:
            recorder.close()

    done = run_cli("compare", "--db", str(db), "--by", "upstream", "--format", "json")
    assert done.returncode == 0, done.stderr
    groups = json.loads(done.stdout)["groups"]
    assert [(g["name"], g["runs"], g["upstreams"]) for g in groups] == [
        ("openrouter/HostA", 2, ["HostA"]),
        ("openrouter/HostB", 2, ["HostB"]),
    ]
    conn = open_for_reading(db)
    try:
        by_provider = build_comparison(conn, Selection(), prices=PriceList({}))
        by_upstream = build_comparison(conn, Selection(by=GroupBy.upstream), prices=PriceList({}))
    finally:
        conn.close()
    [group] = by_provider.groups
    assert group.name == "openrouter" and group.upstreams == list(hosts)
    emit_comparison(by_upstream, OutputFormat.table)
    table = capsys.readouterr().out
    assert "upstream hosts" in table and "openrouter/HostB" in table


def test_per_call_error_classes_follow_openrouters_order(tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    endpoint = ScriptedEndpoint(
        [
            tool_turn(("open_box", '{"box_id": "box-')),  # invalid_json
            tool_turn(("teleport", '{"to": "treasure"}')),  # unknown_name
            tool_turn(("open_box", '{"box_id": 7}')),  # schema_mismatch
            # A valid call beside one both unknown and broken: InvalidJson is checked first.
            tool_turn(("open_box", '{"box_id": "box-000000"}'), ("teleport", "{")),
            answer("done"),
        ]
    )
    with endpoint.serving():
        recorder = Recorder(db)
        try:
            plan = RunPlan(
                task=load_task(TASKS / "chain_short.toml"),
                provider="scripted",
                endpoint=EndpointConfig(base_url=endpoint.base_url, api_key_env=None, api_key="k"),
                settings=HarnessSettings(model="m", max_steps=10),
            )
            asyncio.run(record_runs(plan, recorder))
        finally:
            recorder.close()
    conn = open_for_reading(db)
    try:
        comparison = build_comparison(conn, Selection(), prices=PriceList({}))
    finally:
        conn.close()

    def value(key: str) -> float | None:
        estimate = comparison.metric(key).values["scripted"]
        assert estimate.lo is None and estimate.hi is None  # one run: no interval
        return estimate.value

    assert value("invalid_json_rate") == pytest.approx(2 / 5)
    assert value("unknown_name_rate") == pytest.approx(1 / 5)
    assert value("schema_mismatch_rate") == pytest.approx(1 / 5)
    assert value("tool_call_json_validity") == pytest.approx(3 / 5)
    assert value("tool_call_error_rate") == 1.0
    assert value("schema_accuracy") == 0.0
    assert comparison.significant == [] and comparison.comparisons == 0
