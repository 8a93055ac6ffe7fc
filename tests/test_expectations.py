"""`traces expect` end to end: runs recorded against the simulator over HTTP for several
dialects, then each step's request rendered with a chat template and counted like the
simulator. With the family's template the expectation is the simulator's own number, token
for token; a host fault (reasoning dropped, ids renumbered) is named by the variant that
explains it.

The project's templates (tests/fixtures/templates) are the simulator's families in Jinja,
so those tests run everywhere. The real templates of shared/external are used where they
exist: Kimi K2 Thinking's matches the simulator exactly; Qwen3's, GLM-4.6's and MiniMax M2's
differ from it only in the tool-instruction prose of the system turn (the simulator words
its own), so there the deviation is that constant and nothing else. DeepSeek has no real
template the simulator follows (V3.1's drops all reasoning, V3.2's uses DSML tags).
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from analyzer.checks.loader import load_runs
from analyzer.checks.records import Run, Step
from analyzer.expectations import (
    Expectation,
    StepExpectation,
    expect_runs,
    expect_stored,
    explained_text,
    summarize,
)
from traces.chat_template import (
    ChatTemplate,
    SimTokenCounter,
    TokenCounter,
    load_template,
    variants_of,
)
from traces.chat_template.variants import drop_reasoning
from traces.dialects import DIALECTS
from traces.replay import ReplayPolicy
from traces.sim.config import SimConfig
from traces.sim.faults import FAULTS
from traces.sim.server import SimServer
from traces.sim.templates import template_for
from traces.store.database import open_for_reading

from conftest import EXTERNAL, reference_missing, run_cli
from recording import Recording, record, record_many

# Slow as a whole, outside the fast path `pytest -m "not slow"`: recordings rendered with every
# template.
pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parent / "fixtures" / "templates"
REAL = EXTERNAL / "dialects" / "templates"
SIM = SimTokenCounter()

TWIN = {
    "openai": "chatml.jinja",
    "moonshot": "kimi.jinja",
    "deepseek": "deepseek.jinja",
    "sglang": "qwen.jinja",
    "zai": "glm.jinja",
    "minimax": "minimax.jinja",
}
"""The project's template for each dialect's family (each reads what its dialect sends)."""


def _recording(dialect: str, **faults: float) -> Recording:
    spec = DIALECTS[dialect]
    return Recording(
        sim=SimConfig(dialect=dialect, faults=faults),
        dialect=dialect,
        settings={"replay": ReplayPolicy.for_dialect(spec), "extra_body": dict(spec.extra_body)},
    )


RECORDINGS = {
    **{dialect: _recording(dialect) for dialect in TWIN},
    "openai dropped": _recording("openai", reasoning_dropped_from_history=1.0),
    "moonshot dropped": _recording("moonshot", reasoning_dropped_from_history=1.0),
    "moonshot call ids": Recording(
        # The model answers with call_ ids and they go back as received: the host renders
        # exactly what it was sent, so nothing about ids needs explaining.
        sim=SimConfig(dialect="moonshot", faults={"rewritten_ids": 1.0}),
        dialect="moonshot",
        settings={"replay": ReplayPolicy(reasoning="reasoning_content")},
    ),
}
if "reasoning_kept_last_only" in FAULTS:
    RECORDINGS["openai last only"] = _recording("openai", reasoning_kept_last_only=1.0)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Every recording of RECORDINGS in one database: (path, run id by recording)."""
    db = tmp_path_factory.mktemp("expect") / "t.duckdb"
    summaries = record_many(db, RECORDINGS)
    for name, summary in summaries.items():
        assert summary.outcome.success, (name, summary.outcome)
    return db, {name: summary.id for name, summary in summaries.items()}


def _expect(
    db: Path, run_id: str, template: ChatTemplate, counter: TokenCounter = SIM
) -> list[StepExpectation]:
    conn = open_for_reading(db)
    try:
        return expect_stored(conn, [run_id], Expectation(template, counter))
    finally:
        conn.close()


def _real(stem: str) -> ChatTemplate:
    path = REAL / f"{stem}.jinja"
    if not path.is_file():
        reference_missing(path)
    return load_template(path)


# --- the family's template reproduces the simulator's prompt_tokens ---------------------


@pytest.mark.parametrize("dialect", list(TWIN))
def test_project_template_expects_exactly_what_the_simulator_reports(
    recorded: tuple[Path, dict[str, str]], dialect: str
) -> None:
    db, ids = recorded
    template = load_template(FIXTURES / TWIN[dialect])
    steps = _expect(db, ids[dialect], template)
    assert len(steps) >= 5
    for step in steps:
        assert step.recorded == step.expected, (dialect, step)
        assert (step.deviation, step.best, step.gap) == (0, "as sent", 0)
    # Not vacuous: history reasoning reached the prompt, and counting it mattered.
    last = steps[-1]
    assert last.expected is not None and last.recorded is not None
    run = _run(db, ids[dialect])
    bare = Expectation(template, SIM).count(
        drop_reasoning(run.steps[-1].request_messages), run.steps[-1]
    )
    assert bare < last.recorded


def _run(db: Path, run_id: str) -> Run:
    conn = open_for_reading(db)
    try:
        [run] = load_runs(conn, [run_id])
    finally:
        conn.close()
    return run


def test_real_kimi_template_expects_exactly_what_the_simulator_reports(
    recorded: tuple[Path, dict[str, str]],
) -> None:
    db, ids = recorded
    steps = _expect(db, ids["moonshot"], _real("llamacpp-moonshotai-Kimi-K2-Thinking"))
    assert [(s.deviation, s.best) for s in steps] == [(0, "as sent")] * len(steps)


@pytest.mark.parametrize(
    ("dialect", "stem", "best", "refusal"),
    [
        ("sglang", "llamacpp-Qwen-Qwen3-0.6B", "as sent", None),
        # GLM-4.6 and MiniMax M2 refuse string arguments; every server parses them first.
        ("zai", "llamacpp-GLM-4.6", "arguments as objects", "template raised: Invalid tool"),
        ("minimax", "llamacpp-MiniMax-M2", "arguments as objects", "UndefinedError: 'str obj"),
    ],
)
def test_real_templates_differ_from_the_simulator_only_in_its_tool_prose(
    recorded: tuple[Path, dict[str, str]],
    dialect: str,
    stem: str,
    best: str,
    refusal: str | None,
) -> None:
    db, ids = recorded
    real = _real(stem)
    steps = _expect(db, ids[dialect], real)
    run = _run(db, ids[dialect])
    # The system turn with the tools, alone: the difference of the two wordings.
    first = run.steps[0]
    system = list(first.request_messages[:1])
    tools = first.request_params["tools"]
    family = template_for(DIALECTS[dialect].family)
    reads = DIALECTS[dialect].reasoning_in
    prose = SIM.count(real.render(system, tools)) - SIM.count(
        family.render(system, tools, reads).text
    )
    assert prose != 0
    for step in steps[1:]:  # step 0 has no arguments to parse yet
        rendered = (
            step.expected
            if best == "as sent"
            else _variant_tokens(real, run.steps[step.step], best)
        )
        assert rendered is not None and step.recorded is not None
        assert step.recorded - rendered == -prose, (dialect, step.step)
        if refusal is not None:
            assert step.expected is None and step.error is not None and refusal in step.error


def _variant_tokens(template: ChatTemplate, step: Step, name: str) -> int:
    [variant] = [v for v in variants_of(step.request_messages) if v.name == name]
    return Expectation(template, SIM).count(variant.messages, step)


# --- host faults are named by the variant that explains them ----------------------------


@pytest.mark.parametrize("template", ["kimi.jinja", "real"])
def test_reasoning_dropped_by_the_host_is_explained(
    recorded: tuple[Path, dict[str, str]], template: str
) -> None:
    db, ids = recorded
    loaded = (
        load_template(FIXTURES / template)
        if template != "real"
        else _real("llamacpp-moonshotai-Kimi-K2-Thinking")
    )
    steps = _expect(db, ids["moonshot dropped"], loaded)
    assert steps[0].best == "as sent"  # nothing to drop yet
    for step in steps[1:]:
        assert step.deviation is not None and step.deviation < 0
        assert (step.best, step.gap) == ("reasoning dropped", 0)


def test_reasoning_dropped_explained_for_chatml(recorded: tuple[Path, dict[str, str]]) -> None:
    db, ids = recorded
    steps = _expect(db, ids["openai dropped"], load_template(FIXTURES / "chatml.jinja"))
    assert [s.best for s in steps] == ["as sent"] + ["reasoning dropped"] * (len(steps) - 1)
    assert all(s.exact for s in steps)


@pytest.mark.skipif("reasoning_kept_last_only" not in FAULTS, reason="fault not in this build")
def test_only_the_latest_reasoning_kept_is_explained(
    recorded: tuple[Path, dict[str, str]],
) -> None:
    db, ids = recorded
    steps = _expect(db, ids["openai last only"], load_template(FIXTURES / "chatml.jinja"))
    # Steps 0 and 1 have at most one assistant turn: keeping the latest is keeping all.
    assert [s.best for s in steps[:2]] == ["as sent", "as sent"]
    assert {s.best for s in steps[2:]} == {"last reasoning only"}
    assert all(s.exact for s in steps)


def test_call_ids_sent_back_as_received_need_no_explaining(
    recorded: tuple[Path, dict[str, str]],
) -> None:
    db, ids = recorded
    steps = _expect(db, ids["moonshot call ids"], load_template(FIXTURES / "kimi.jinja"))
    assert all((s.best, s.gap) == ("as sent", 0) for s in steps)


def _kimi_numbered(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What llama.cpp's Kimi templates do to ids: `functions.NAME:N`, N counting every call
    of the conversation; results take the id of the call they answer."""
    renamed: dict[str, str] = {}
    counter = 0
    out = []
    for message in messages:
        message = dict(message)
        if message.get("role") == "assistant" and message.get("tool_calls"):
            calls = []
            for call in message["tool_calls"]:
                new = f"functions.{call['function']['name']}:{counter}"
                renamed[call["id"]] = new
                calls.append({**call, "id": new})
                counter += 1
            message["tool_calls"] = calls
        elif message.get("role") == "tool":
            message["tool_call_id"] = renamed.get(message["tool_call_id"], "?")
        out.append(message)
    return out


@contextmanager
def renumbering_host(upstream: str) -> Iterator[str]:
    """A host in front of the simulator that renumbers tool-call ids before its template
    runs, as llama.cpp does for Kimi; yields its base URL."""
    root = upstream.removesuffix("/v1")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            body["messages"] = _kimi_numbered(body["messages"])
            request = urllib.request.Request(
                root + self.path,
                data=json.dumps(body).encode(),
                headers={"content-type": "application/json", "authorization": "Bearer x"},
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:
                    status, data = answer.status, answer.read()
            except urllib.error.HTTPError as refused:
                status, data = refused.code, refused.read()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1"
    finally:
        server.shutdown()
        server.server_close()


def test_ids_renumbered_by_the_host_are_explained(tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    config = SimConfig(dialect="moonshot", faults={"rewritten_ids": 1.0})
    with SimServer(config) as sim, renumbering_host(sim.base_url) as host:
        [summary] = record(db, host, replay=ReplayPolicy(reasoning="reasoning_content"))
    assert summary.outcome.success, summary.outcome
    templates = [load_template(FIXTURES / "kimi.jinja")]
    real = REAL / "llamacpp-moonshotai-Kimi-K2-Thinking.jinja"
    if real.is_file():
        templates.append(load_template(real))
    for template in templates:
        steps = _expect(db, summary.id, template)
        assert steps[0].best == "as sent"  # no ids in the prompt yet
        for step in steps[1:]:
            assert (step.best, step.gap) == ("ids rewritten", 0), (template.origin, step)
            assert step.deviation is not None and step.deviation < 0  # call_<hex> is longer


# --- choosing the explanation, and the summary ------------------------------------------

_COUNT = ChatTemplate(
    "{% for m in messages %}{{ m.role }} {{ m.content }} {{ m.reasoning_content or '' }}"
    "{% if m.tool_calls %}{{ m.tool_calls[0].function.arguments }}{% endif %}\n"
    "{% endfor %}{% if extra %}{{ extra }}{% endif %}",
    origin="count.jinja",
)


def _step(index: int, prompt_tokens: int | None, **params: Any) -> Step:
    messages = (
        {"role": "user", "content": "go"},
        {
            "role": "assistant",
            "content": "",
            "reasoning_content": "three more words",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
    )
    return Step(
        index=index,
        finish_reason="stop",
        prompt_tokens=prompt_tokens,
        request_params=params,
        request_messages=messages,
    )


def test_exact_match_first_else_nearest_with_the_gap() -> None:
    # as sent: user go / assistant three more words { } / tool ok = 10 tokens
    expectation = Expectation(_COUNT, SIM)
    run = Run(
        id="r",
        provider="p",
        model="m",
        steps=(_step(0, 10), _step(1, 7), _step(2, 6), _step(3, None), _step(4, 30)),
    )
    exact, dropped, near, unknown, far = expect_runs([run], expectation)
    assert (exact.expected, exact.best, exact.gap, len(exact.counts)) == (10, "as sent", 0, 1)
    assert (dropped.deviation, dropped.best, dropped.gap) == (-3, "reasoning dropped", 0)
    assert (near.best, near.gap) == ("reasoning dropped", -1)  # nearest, with its gap
    # Every variant was tried, but none combined with a rewrite the template does not show
    # (it prints no ids, and `{}` reads the same as text and as an object).
    assert not near.exact
    assert [c.variant for c in near.counts] == [
        "as sent",
        "reasoning dropped",
        "ids rewritten",
        "arguments as objects",
    ]
    assert (unknown.expected, unknown.best, unknown.deviation) == (10, None, None)
    assert (far.best, far.gap, far.deviation) == ("as sent", 20, 20)  # ties go to as sent


def test_request_template_kwargs_override_the_defaults() -> None:
    expectation = Expectation(_COUNT, SIM, {"extra": "one two"})
    plain, own = expect_runs(
        [
            Run(
                id="r",
                steps=(_step(0, None), _step(1, None, chat_template_kwargs={"extra": "x"})),
            )
        ],
        expectation,
    )
    assert (plain.expected, own.expected) == (12, 11)


def test_summary_per_provider_and_model() -> None:
    expectation = Expectation(_COUNT, SIM)
    runs = [
        Run(id="a", provider="p", model="m", steps=(_step(0, 10), _step(1, 7))),
        Run(id="b", provider="p", model="m", steps=(_step(0, 10), _step(1, 6), _step(2, None))),
        Run(id="c", provider="q", model="m", steps=(_step(0, 10),)),
    ]
    [p, q] = summarize(expect_runs(runs, expectation))
    assert (p["provider"], p["runs"], p["steps"], p["measured"]) == ("p", 2, 5, 4)
    assert p["median_deviation"] == -1.5  # 0, -3, 0, -4
    assert p["median_gap"] == 0.0  # 0, 0, 0, -1
    assert p["as_sent_exact"] == 0.5
    assert p["explained"] == {"as sent": 0.5, "reasoning dropped": 0.25}
    assert p["unexplained"] == 0.25 and p["unrendered"] == 0
    assert explained_text(p["explained"]) == "as sent 50%, reasoning dropped 25%"
    assert q["explained"] == {"as sent": 1.0}


def test_steps_no_variant_renders_carry_the_templates_error() -> None:
    refusing = ChatTemplate(
        "{% if messages | length > 1 %}{{ raise_exception('too long') }}{% endif %}ok",
        origin="refuse.jinja",
    )
    [step] = expect_runs([Run(id="r", steps=(_step(0, 5),))], Expectation(refusing, SIM))
    assert not step.rendered and step.best is None
    assert step.error == "refuse.jinja, line 1: template raised: too long"
    assert summarize([step])[0]["unrendered"] == 1


# --- the command ------------------------------------------------------------------------


def _cli(*args: str) -> Any:
    done = run_cli("expect", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_expect_command_formats(recorded: tuple[Path, dict[str, str]]) -> None:
    db, ids = recorded
    common = ("--template", str(FIXTURES / "kimi.jinja"), "--sim-tokenizer", "--db", str(db))
    rows = json.loads(_cli(*common, ids["moonshot dropped"][:-3], "-f", "json"))
    assert [r["best"] for r in rows][:2] == ["as sent", "reasoning dropped"]
    assert rows[1]["variants"]["reasoning dropped"] == rows[1]["recorded"]
    assert set(rows[0]) >= {"run", "step", "recorded", "expected", "deviation", "gap", "error"}
    [summary] = json.loads(
        _cli(
            *common,
            "--provider",
            "sim-moonshot",
            "--by",
            "provider",
            "--model",
            "sim-reasoner-1",
            "-f",
            "json",
        )
    )
    assert summary["runs"] == 3 and summary["unrendered"] == 0
    assert set(summary["explained"]) == {"as sent", "reasoning dropped"}
    table = _cli(*common, "--provider", "sim-moonshot")
    assert "reasoning dropped" in table and "median_deviation" in table
    csv = _cli(*common, ids["moonshot"], "-f", "csv").splitlines()
    assert csv[0] == "run,step,provider,model,recorded,expected,deviation,best,gap,error"
    assert all(line.split(",")[6:9] == ["0", "as sent", "0"] for line in csv[1:])


def test_expect_command_counts_with_a_model_folder(
    recorded: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """--template on a folder: its template and the tokenizer.json beside it."""
    db, ids = recorded
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "chat_template.jinja").write_text((FIXTURES / "chatml.jinja").read_text())
    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(folder / "tokenizer.json"))
    rows = json.loads(_cli("--template", str(folder), "--db", str(db), ids["openai"], "-f", "json"))
    # Every whitespace-separated word is one (unknown) token: a real count, not the sim's.
    first = rows[0]
    assert first["expected"] is not None and first["expected"] != first["recorded"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--template", "nowhere.jinja", "--sim-tokenizer"), "nowhere.jinja: no such file or"),
        (("--template", str(FIXTURES / "chatml.jinja")), "no tokenizer: "),
        (
            ("--template", str(FIXTURES / "chatml.jinja"), "--sim-tokenizer", "--kwarg", "x"),
            "--kwarg 'x': expected KEY=VALUE",
        ),
        (
            ("--template", str(FIXTURES / "chatml.jinja"), "--sim-tokenizer", "--provider", "no"),
            "no runs match",
        ),
    ],
)
def test_expect_command_bad_input(
    recorded: tuple[Path, dict[str, str]], args: tuple[str, ...], message: str
) -> None:
    db, _ = recorded
    done = run_cli("expect", *args, "--db", str(db))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and message in done.stderr
    assert done.stderr.count("\n") == 1 and not done.stdout


def test_expect_command_names_the_template_line_that_refused(
    recorded: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    db, ids = recorded
    template = tmp_path / "strict.jinja"
    template.write_text(
        "{% for m in messages %}\n"
        "{% if m.role == 'system' %}{{ raise_exception('System role not supported') }}"
        "{% endif %}\n{% endfor %}"
    )
    done = run_cli(
        "expect", "--template", str(template), "--sim-tokenizer", "--db", str(db), ids["openai"]
    )
    assert done.returncode == 2
    assert done.stderr == f"error: {template}, line 2: template raised: System role not supported\n"
