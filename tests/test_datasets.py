"""Datasets and scorers: a task's samples (inline, JSONL, CSV) each become a run whose success
is its scorer's verdict, explained; bad datasets and scorers are one line, exit 2, nothing
written; `compare` gives success per task with Wilson intervals."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from traces.datasets import Sample
from traces.errors import TaskFileError
from traces.scorers import (
    ExactScorer,
    IncludesScorer,
    JsonPathScorer,
    NumericScorer,
    PythonScorer,
    RegexScorer,
    parse_path,
)
from traces.tasks import load_task

from conftest import query_rows, run_cli, run_cli_in_process, table_counts

BYO = Path(__file__).resolve().parents[1] / "samples" / "byo"


def _sample(*targets: str) -> Sample:
    return Sample(id="s1", input="q", target=targets, metadata={"level": 2})


def _task(tmp_path: Path, body: str, name: str = "ds") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(
        textwrap.dedent(
            f"""\
            name = "{name}"
            description = "a dataset task"
            max_steps = 2
            system_prompt = "Answer."
            user_prompt = "{{input}}"
            """
        )
        + textwrap.dedent(body),
        encoding="utf-8",
    )
    return path


_INLINE = """
[environment]
type = "none"

[[dataset.samples]]
input = "Say yes"
target = "yes"

[[dataset.samples]]
id = "two"
input = "Say no"
target = ["no", "nope"]
topic = "negation"

[scorer]
type = "includes"
"""


# -- scorers -----------------------------------------------------------------------------------


def test_includes_and_exact_compare_without_case_by_default() -> None:
    assert IncludesScorer().score("The answer is PARIS.", _sample("Paris")).passed is True
    assert IncludesScorer(ignore_case=False).score("PARIS", _sample("Paris")).passed is False
    lacking = IncludesScorer().score("London", _sample("Paris", "Lutetia"))
    assert lacking.passed is False and lacking.detail == "the answer lacks 'Paris' or 'Lutetia'."
    assert ExactScorer().score("  paris \n", _sample("Paris")).passed is True
    assert ExactScorer().score("Paris, France", _sample("Paris")).passed is False
    assert ExactScorer().score("New   York", _sample("new york")).passed is True


def test_regex_extracts_a_group_or_takes_the_target_as_a_pattern() -> None:
    extract = RegexScorer(pattern=r"ANSWER:\s*(\w+)")
    found = extract.score("thinking… ANSWER: b", _sample("B"))
    assert found.passed is True and "found 'b'" in found.detail
    assert extract.score("ANSWER: c", _sample("B")).passed is False
    assert extract.score("no marker", _sample("B")).detail.startswith("the pattern")
    as_pattern = RegexScorer()
    assert as_pattern.score("order #4471 shipped", _sample(r"#\d{4}\b")).passed is True
    assert as_pattern.score("order shipped", _sample(r"#\d{4}\b")).passed is False
    # A target that is not a regular expression cannot be judged: unknown, not failed.
    assert as_pattern.score("x", _sample("(")).passed is None
    with pytest.raises(ValueError, match="not a regular expression"):
        RegexScorer(pattern="(")


def test_json_path_reads_the_answer_or_a_fenced_block() -> None:
    scorer = JsonPathScorer(path="$.result.items[1]['unit name']")
    answer = 'Here:\n```json\n{"result": {"items": [{}, {"unit name": 42}]}}\n```'
    assert scorer.score(answer, _sample("42")).passed is True
    assert scorer.score(answer, _sample('"42"')).passed is False  # the string, not the number
    assert scorer.score("no json here", _sample("42")).detail == "the answer holds no JSON value."
    missing = scorer.score('{"result": {}}', _sample("42"))
    assert missing.passed is False and "has no $.result" in missing.detail
    flag = JsonPathScorer(path="$.ok")
    assert flag.score('{"ok": true}', _sample("true")).passed is True
    assert flag.score('{"ok": 1}', _sample("true")).passed is False  # JSON's true is not 1
    assert JsonPathScorer(path="$.name").score('{"name": "Ada"}', _sample("Ada")).passed is True
    assert parse_path("$.a[0]['b c'].d") == ["a", 0, "b c", "d"]
    with pytest.raises(ValueError, match="must start with"):
        parse_path("a.b")
    with pytest.raises(ValueError, match="cannot read"):
        JsonPathScorer(path="$.a[x]")


def test_numeric_takes_the_last_number_within_its_tolerances() -> None:
    scorer = NumericScorer(relative=0.01)
    passed = scorer.score("3 km is about 9,842.5 feet.", _sample("9842.52"))
    assert passed.passed is True and "9842.5" in passed.detail
    assert scorer.score("It is 9000 feet.", _sample("9842.52")).passed is False
    assert scorer.score("no number", _sample("1")).detail.endswith("no number found.")
    assert NumericScorer().score("x = 0.1", _sample("0.1000001")).passed is True
    assert NumericScorer(tolerance=0).score("x = 0.1", _sample("0.1000001")).passed is False
    first = NumericScorer(pattern=r"total:\s*(\S+)")
    assert first.score("total: $12.50, then 99 more", _sample("12.5")).passed is True
    # A target that is no number cannot be judged numerically: unknown.
    assert NumericScorer().score("7", _sample("seven")).passed is None


def test_a_python_scorer_judges_and_its_failure_is_unknown(tmp_path: Path) -> None:
    (tmp_path / "judge.py").write_text(
        textwrap.dedent(
            """\
            def pair(answer, sample):
                return sample["target"][0] in answer, f"level {sample['metadata']['level']}"

            def table(answer, sample):
                return {"passed": answer == "ok", "explanation": "compared whole"}

            def broken(answer, sample):
                raise KeyError("missing")

            def vague(answer, sample):
                return "yes"
            """
        ),
        encoding="utf-8",
    )
    context = {"base_dir": tmp_path}

    def scorer(name: str) -> PythonScorer:
        return PythonScorer.model_validate({"type": "python", "function": name}, context=context)

    verdict = scorer("judge:pair").score("it is x", _sample("x"), tmp_path)
    assert (verdict.passed, verdict.detail) == (True, "level 2")
    assert scorer("judge:table").score("ok", _sample("x"), tmp_path).passed is True
    broken = scorer("judge:broken").score("ok", _sample("x"), tmp_path)
    assert broken.passed is None and broken.detail.startswith("the scorer failed: KeyError")
    assert scorer("judge:vague").score("ok", _sample("x"), tmp_path).passed is None


# -- task files ----------------------------------------------------------------------------------


def test_inline_samples_load_with_ids_targets_and_metadata(tmp_path: Path) -> None:
    task = load_task(_task(tmp_path, _INLINE))
    assert [s.id for s in task.dataset] == ["1", "two"]
    assert task.dataset[1].target == ("no", "nope")
    assert task.dataset[1].metadata == {"topic": "negation"}
    assert isinstance(task.scorer, IncludesScorer)


def test_jsonl_and_csv_files_with_named_fields(tmp_path: Path) -> None:
    (tmp_path / "qa.jsonl").write_text(
        '{"qid": 7, "question": "2+2?", "answer": 4}\n\n{"qid": "b", "question": "3+3?", '
        '"answer": [6, "six"]}\n',
        encoding="utf-8",
    )
    body = """
    [environment]
    type = "none"
    [dataset]
    file = "qa.jsonl"
    input_field = "question"
    target_field = "answer"
    id_field = "qid"
    [scorer]
    type = "numeric"
    """
    task = load_task(_task(tmp_path, body))
    assert [(s.id, s.input, s.target) for s in task.dataset] == [
        ("7", "2+2?", ("4",)),
        ("b", "3+3?", ("6", "six")),
    ]
    before = task.sha256
    (tmp_path / "qa.jsonl").write_text(
        '{"qid": 7, "question": "2+2?", "answer": 5}\n', encoding="utf-8"
    )
    # The dataset is part of the task: changing it changes the task's digest.
    assert load_task(_task(tmp_path, body)).sha256 != before
    units = load_task(BYO / "dataset_units.toml")
    assert [s.id for s in units.dataset] == ["km-ft", "mi-m", "ft-m"]
    assert units.dataset[2].target == ("30.48",)


@pytest.mark.parametrize(
    ("body", "files", "expected"),
    [
        (
            '[environment]\ntype = "none"\n[dataset]\nfile = "d.jsonl"\n[scorer]\ntype = "exact"\n',
            {"d.jsonl": '{"input": "a", "target": "b"}\n{"input": "c"}\n'},
            "d.jsonl: line 2: target: required field is missing",
        ),
        (
            '[environment]\ntype = "none"\n[dataset]\nfile = "d.jsonl"\n[scorer]\ntype = "exact"\n',
            {"d.jsonl": '{"input": "a", "target": "b"}\nnot json\n'},
            "d.jsonl: line 2: not JSON",
        ),
        (
            '[environment]\ntype = "none"\n[dataset]\nfile = "d.jsonl"\n[scorer]\ntype = "exact"\n',
            {
                "d.jsonl": '{"id": 1, "input": "a", "target": "b"}\n{"id": 1, "input": "c", '
                '"target": "d"}\n'
            },
            "d.jsonl: line 2: id: '1' is used twice",
        ),
        (
            '[environment]\ntype = "none"\n[dataset]\nfile = "d.csv"\n[scorer]\ntype = "exact"\n',
            {"d.csv": "input,target\na,b\nc,\n"},
            "d.csv: line 3: target: must not be empty",
        ),
        (
            '[environment]\ntype = "none"\n[dataset]\nfile = "d.jsonl"\n[scorer]\ntype = "exact"\n',
            {"d.jsonl": "\n"},
            "d.jsonl: the dataset has no sample",
        ),
        (
            '[environment]\ntype = "none"\n[dataset]\nfile = "gone.jsonl"\n'
            '[scorer]\ntype = "exact"\n',
            {},
            "dataset.file: cannot read gone.jsonl",
        ),
        (
            '[environment]\ntype = "none"\n[dataset]\nfile = "d.txt"\n[scorer]\ntype = "exact"\n',
            {"d.txt": ""},
            "dataset: file 'd.txt' must be .jsonl or .csv",
        ),
        (
            '[environment]\ntype = "chain"\nlength = 3\n[[dataset.samples]]\ninput = "a"\n'
            'target = "b"\n'
            '[scorer]\ntype = "exact"\n',
            {},
            "dataset: a dataset goes with environment type tools or none",
        ),
        (
            '[environment]\ntype = "none"\n[[dataset.samples]]\ninput = "a"\ntarget = "b"\n',
            {},
            "scorer: required with a dataset",
        ),
        (
            '[environment]\ntype = "none"\n[[dataset.samples]]\ninput = "a"\ntarget = "b"\n'
            '[scorer]\ntype = "fuzzy"\n',
            {},
            "scorer.type: must be one of includes, exact, regex, json_path, numeric, python",
        ),
        (
            '[environment]\ntype = "none"\n[[dataset.samples]]\ninput = "a"\ntarget = "b"\n'
            '[scorer]\ntype = "regex"\npattern = "("\n',
            {},
            "scorer.pattern: '(' is not a regular expression",
        ),
        (
            '[environment]\ntype = "none"\n[[dataset.samples]]\ninput = "a"\ntarget = "b"\n'
            '[scorer]\ntype = "python"\nfunction = "nowhere_module:judge"\n',
            {},
            "scorer.function: nowhere_module:judge: cannot import nowhere_module",
        ),
        (
            '[environment]\ntype = "none"\n[[dataset.samples]]\ninput = "a"\ntarget = "b"\n'
            '[scorer]\ntype = "exact"\n[success]\nanswer_contains = ["b"]\n',
            {},
            "success: a task with a dataset is judged by its [scorer]",
        ),
        ('[environment]\ntype = "none"\n', {}, "environment.type: a world without tools needs"),
        (
            '[environment]\ntype = "none"\n[[dataset.samples]]\ntarget = "b"\n[scorer]\n'
            'type = "exact"\n',
            {},
            "dataset.samples[0]: input: required field is missing",
        ),
    ],
)
def test_a_bad_dataset_or_scorer_is_one_line_naming_it(
    tmp_path: Path, body: str, files: dict[str, str], expected: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(TaskFileError) as raised:
        load_task(_task(tmp_path, body))
    message = str(raised.value)
    assert expected in message and "\n" not in message


def test_a_dataset_task_must_use_its_input(tmp_path: Path) -> None:
    path = _task(tmp_path, _INLINE)
    path.write_text(path.read_text().replace('user_prompt = "{input}"', 'user_prompt = "Hi"'))
    with pytest.raises(TaskFileError, match=r"user_prompt: a task with a dataset must use"):
        load_task(path)


# -- recording -------------------------------------------------------------------------------------


def test_each_sample_is_a_run_judged_by_its_scorer(tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    done = run_cli("record", "-t", str(BYO / "dataset_questions.toml"), "--db", str(db))
    assert done.returncode == 0, done.stderr
    assert "sample echo-word" in done.stderr
    runs = query_rows(db, "SELECT sample, success, success_detail FROM runs ORDER BY sample")
    assert [r["sample"] for r in runs] == ["capital-fr", "echo-word", "planets", "water"]
    echoed = next(r for r in runs if r["sample"] == "echo-word")
    # The simulator repeats the question, which holds this sample's target.
    assert echoed["success"] is True
    assert echoed["success_detail"] == "the answer contains 'lighthouse'."
    planets = next(r for r in runs if r["sample"] == "planets")
    assert planets["success"] is False
    assert planets["success_detail"] == "the answer lacks 'Mars' or 'the fourth planet'."
    request = query_rows(
        db,
        "SELECT m.body->>'content' AS content FROM step_messages sm "
        "JOIN messages m ON m.hash = sm.hash JOIN runs r ON r.id = sm.run_id "
        "WHERE r.sample = 'water' AND m.role = 'user'",
    )
    assert request[0]["content"] == "What is the chemical formula of water?"


def test_sample_and_limit_choose_samples_and_repeat_runs_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "t.duckdb"
    task = str(BYO / "dataset_questions.toml")
    done = run_cli_in_process(
        capsys, monkeypatch, "record", "-t", task, "--db", str(db), "--sample", "water",
        "--sample", "echo-word", "--repeat", "2", "--format", "json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    # The dataset's order, each sample's runs with the same seeds.
    assert [(r["sample"], r["seed"]) for r in rows] == [
        ("echo-word", 0),
        ("echo-word", 1),
        ("water", 0),
        ("water", 1),
    ]
    done = run_cli_in_process(
        capsys, monkeypatch, "record", "-t", task, "--db", str(db), "--limit", "1"
    )
    assert done.returncode == 0, done.stderr
    assert query_rows(db, "SELECT count(*) AS n FROM runs WHERE sample = 'capital-fr'")[0]["n"] == 1
    counts = table_counts(db)
    for args, expected in (
        (("--sample", "nope"), "--sample 'nope': no sample has that id"),
        (("--limit", "0"), "--limit"),
    ):
        refused = run_cli_in_process(
            capsys, monkeypatch, "record", "-t", task, "--db", str(db), *args
        )
        assert refused.returncode == 2 and expected in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
    refused = run_cli_in_process(
        capsys, monkeypatch, "record", "-t", "chain_short", "--db", str(db), "--limit", "1"
    )
    assert refused.returncode == 2
    assert "--limit: task chain_short has no dataset" in refused.stderr
    assert table_counts(db) == counts


def test_a_retry_answers_the_same_sample_and_compare_gives_success_per_task(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "t.duckdb"
    task = str(BYO / "dataset_questions.toml")
    for provider_args in ((), ("--fault", "server_error_5xx=1", "--dialect", "deepseek")):
        done = run_cli_in_process(
            capsys, monkeypatch, "record", "-t", task, "--db", str(db), *provider_args
        )
        assert done.returncode in (0, 3), done.stderr
    failed = query_rows(db, "SELECT id, sample FROM runs WHERE termination = 'provider_error'")
    assert len(failed) == 4
    done = run_cli_in_process(
        capsys, monkeypatch, "record", "--retry-failed", failed[0]["id"], "--db", str(db)
    )
    assert done.returncode in (0, 3), done.stderr
    retry = query_rows(db, "SELECT sample FROM runs WHERE retry_of = ?", [failed[0]["id"]])
    assert retry == [{"sample": failed[0]["sample"]}]

    done = run_cli_in_process(
        capsys, monkeypatch, "compare", "--db", str(db), "--by", "model", "--format", "json"
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)["task_success"]
    assert [r["task"] for r in rows] == ["dataset_questions"]
    (row,) = rows
    assert row["samples"] == 4
    (estimate,) = row["values"].values()
    # One of the four judged runs passed (the echo); 5 provider errors were not judged.
    assert estimate["value"] == 0.25 and estimate["runs"] == 4
    assert 0.0 < estimate["lo"] < 0.25 < estimate["hi"] < 1.0
    assert sum(row["unjudged"].values()) == 5
    table = run_cli_in_process(capsys, monkeypatch, "compare", "--db", str(db), "--by", "model")
    assert "dataset_questions (4 samples)" in table.stdout
    assert "(+5 not judged)" in table.stdout
