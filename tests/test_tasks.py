"""Task files: every sample loads, and every kind of bad file is one clear line."""

from __future__ import annotations

import hashlib
import string
from collections.abc import Callable
from pathlib import Path

import pytest

from traces.errors import TaskFileError
from traces.sample_files import samples_dir
from traces.tasks import (
    ChainSpec,
    FilesSpec,
    ResearchSpec,
    Task,
    build_environment,
    load_task,
    render_prompts,
)

SAMPLES = samples_dir()
SAMPLE_TASKS = sorted((SAMPLES / "tasks").glob("*.toml"))

GOOD_CHAIN = """\
name = "tiny"
description = "A tiny chain."
max_steps = 5
system_prompt = "Be careful."
user_prompt = "Open {start_box}; there are {length} boxes."

[environment]
type = "chain"
length = 3
"""


def write(tmp_path: Path, text: str, name: str = "task.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path) -> str:
    with pytest.raises(TaskFileError) as info:
        load_task(path)
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith(f"{path}: "), message
    return message


def test_samples_exist() -> None:
    names = {p.stem for p in SAMPLE_TASKS}
    assert {"chain", "chain_short", "research", "files"} <= names


@pytest.mark.parametrize("path", SAMPLE_TASKS, ids=lambda p: p.stem)
def test_every_sample_task_loads_builds_and_renders(path: Path, tmp_path: Path) -> None:
    task = load_task(path)
    assert task.name == path.stem
    assert task.source_path == path
    assert task.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    env = build_environment(task, seed=7, sandbox_dir=sandbox)
    system, user = render_prompts(task, env)
    assert system.strip() and user.strip()
    # Every placeholder was filled: no format fields remain in the rendered text.
    for text in (system, user):
        assert all(field is None for _, field, _, _ in string.Formatter().parse(text))
    assert env.tool_specs()
    assert not env.check_success("").passed


def test_sample_shapes() -> None:
    chain = load_task(SAMPLES / "tasks" / "chain.toml")
    assert isinstance(chain.environment, ChainSpec)
    assert (chain.environment.length, chain.max_steps) == (300, 320)
    assert chain.success == {}
    short = load_task(SAMPLES / "tasks" / "chain_short.toml")
    assert isinstance(short.environment, ChainSpec)
    assert (short.environment.length, short.max_steps) == (5, 10)
    research = load_task(SAMPLES / "tasks" / "research.toml")
    assert isinstance(research.environment, ResearchSpec)
    assert research.environment.corpus == (SAMPLES / "corpus" / "research").resolve()
    assert research.success == {"answer_contains": ["Marisol Vell"]}
    files = load_task(SAMPLES / "tasks" / "files.toml")
    assert isinstance(files.environment, FilesSpec)
    assert files.environment.seed_dir == (SAMPLES / "tasks" / "files_seed").resolve()
    assert files.success["file"] == "report.md"


def test_sample_prompts_follow_the_simulator_conventions(tmp_path: Path) -> None:
    research = load_task(SAMPLES / "tasks" / "research.toml")
    env = build_environment(research, seed=0, sandbox_dir=tmp_path)
    _, user = render_prompts(research, env)
    assert user.count('"') == 2 and '"Kestrel Observatory"' in user
    files = load_task(SAMPLES / "tasks" / "files.toml")
    env = build_environment(files, seed=0, sandbox_dir=tmp_path / "files")
    _, user = render_prompts(files, env)
    assert '"TODO"' in user and "`report.md`" in user


def test_render_fills_chain_placeholders(tmp_path: Path) -> None:
    task = load_task(write(tmp_path, GOOD_CHAIN))
    env = build_environment(task, seed=3, sandbox_dir=tmp_path)
    start = env.prompt_variables()["start_box"]
    assert render_prompts(task, env) == ("Be careful.", f"Open {start}; there are 3 boxes.")


def test_same_task_and_seed_give_the_same_world(tmp_path: Path) -> None:
    task = load_task(SAMPLES / "tasks" / "chain.toml")
    first = build_environment(task, seed=11, sandbox_dir=tmp_path)
    again = build_environment(task, seed=11, sandbox_dir=tmp_path)
    other = build_environment(task, seed=12, sandbox_dir=tmp_path)
    assert first.prompt_variables() == again.prompt_variables()
    assert first.prompt_variables() != other.prompt_variables()


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'name = "x"\ndescription = "d"\nmax_steps = = 3\n')
    message = load_error(path)
    assert ": line 3: invalid TOML (" in message


def test_unterminated_string_at_end_of_file(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, 'name = "x\n'))
    assert ": line 1: invalid TOML (" in message


def test_missing_file(tmp_path: Path) -> None:
    message = load_error(tmp_path / "absent.toml")
    assert "cannot read task file" in message


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin.toml"
    path.write_bytes(b'name = "x"\ndescription = "caf\xe9"\n')
    assert ": line 2: invalid TOML (not UTF-8)" in load_error(path)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda t: t.replace('description = "A tiny chain."\n', ""), "description: required"),
        (lambda t: t + "lenght = 4\n", "environment.lenght: unknown key (allowed: type, length)"),
        (lambda t: "colour = 1\n" + t, "colour: unknown key"),
        (lambda t: t.replace("max_steps = 5", 'max_steps = "5"'), "max_steps: must be an integer"),
        (lambda t: t.replace("max_steps = 5", "max_steps = 0"), "max_steps: must be greater"),
        (lambda t: t.replace("max_steps = 5", "max_steps = 10001"), "max_steps: must be less"),
        (lambda t: t.replace("length = 3", "length = 0"), "environment.length: must be greater"),
        (lambda t: t.replace("length = 3", "length = 2.5"), "environment.length: must be an int"),
        (lambda t: t.replace("length = 3", 'length = "3"'), "environment.length: must be an int"),
        (lambda t: t.replace("length = 3\n", ""), "environment.length: required field is missing"),
        (lambda t: t.replace('type = "chain"', 'type = "chess"'), "environment.type: must be one"),
        (lambda t: t.replace('type = "chain"\n', ""), "environment.type: required field"),
        (lambda t: t.replace('name = "tiny"', 'name = "Tiny Task"'), "name: must match pattern"),
        (lambda t: t.replace("{start_box}", "{start}"), "user_prompt: unknown placeholder {start}"),
        (lambda t: t.replace("{start_box}", "{start_box"), "user_prompt: bad placeholder syntax"),
        (lambda t: t.replace('"Be careful."', '"{}"'), "system_prompt: unknown placeholder {}"),
        (lambda t: t + '[success]\nanswer_contains = ["x"]\n', "success.answer_contains: unknown"),
        (
            lambda t: t.split("[environment]")[0] + 'environment = "chain"\n',
            "environment: must be a table",
        ),
    ],
)
def test_bad_task_files_give_one_line_naming_the_field(
    tmp_path: Path, edit: Callable[[str], str], expected: str
) -> None:
    message = load_error(write(tmp_path, edit(GOOD_CHAIN)))
    assert f": {expected}" in message, message


RESEARCH = """\
name = "r"
description = "d"
max_steps = 5
system_prompt = "s"
user_prompt = "u"

[environment]
type = "research"
corpus = "{corpus}"

[success]
answer_contains = {answers}
"""


def test_nonexistent_corpus(tmp_path: Path) -> None:
    path = write(tmp_path, RESEARCH.format(corpus="no/such/dir", answers='["x"]'))
    message = load_error(path)
    assert ": environment.corpus: directory no/such/dir does not exist" in message


def test_corpus_path_is_relative_to_the_task_file(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "only.md").write_text("# Only\n\nThe only document.\n")
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    task = load_task(write(tasks, RESEARCH.format(corpus="../corpus", answers='["only"]')))
    assert isinstance(task.environment, ResearchSpec)
    assert task.environment.corpus == corpus.resolve()


def test_broken_corpus_document_is_reported_at_load(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "untitled.md").write_text("no heading here\n")
    message = load_error(write(tmp_path, RESEARCH.format(corpus="corpus", answers='["x"]')))
    assert ": environment.corpus: " in message and "untitled.md: line 1" in message


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ("[]", "success.answer_contains: must have at least 1 item"),
        ('["a", 3]', "success.answer_contains[1]: must be a string"),
        ('["a", " "]', "success.answer_contains: entries must be non-empty"),
        ('"Marisol"', "success.answer_contains: must be a list"),
    ],
)
def test_bad_research_success(tmp_path: Path, answers: str, expected: str) -> None:
    corpus = SAMPLES / "corpus" / "research"
    message = load_error(write(tmp_path, RESEARCH.format(corpus=corpus, answers=answers)))
    assert f": {expected}" in message, message


FILES = """\
name = "f"
description = "d"
max_steps = 5
system_prompt = "s"
user_prompt = "write to `{{output_file}}`"

[environment]
type = "files"
{environment}
[success]
{success}
"""


@pytest.mark.parametrize(
    ("environment", "success", "expected"),
    [
        ('seed_dir = "missing"', 'file = "r.md"\nfile_contains = ["x"]', "environment.seed_dir:"),
        ("", 'file = "../r.md"\nfile_contains = ["x"]', "success.file: must be a file path"),
        ("", 'file = "/tmp/r.md"\nfile_contains = ["x"]', "success.file: must be a file path"),
        ("", 'file = "r.md"', "success.file_contains: required field is missing"),
        ("", 'file_contains = ["x"]', "success.file: required field is missing"),
    ],
)
def test_bad_files_task(tmp_path: Path, environment: str, success: str, expected: str) -> None:
    text = FILES.format(environment=environment, success=success)
    message = load_error(write(tmp_path, text))
    assert f": {expected}" in message, message


def test_files_task_without_seed_starts_empty(tmp_path: Path) -> None:
    text = FILES.format(environment="", success='file = "r.md"\nfile_contains = ["x"]')
    task = load_task(write(tmp_path, text))
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    env = build_environment(task, seed=0, sandbox_dir=sandbox)
    assert env.prompt_variables() == {"output_file": "r.md", "file_count": "0"}
    assert render_prompts(task, env)[1] == "write to `r.md`"


@pytest.mark.parametrize("path", SAMPLE_TASKS, ids=lambda p: p.stem)
def test_task_survives_a_json_round_trip(path: Path) -> None:
    task = load_task(path)
    again = Task.model_validate_json(task.model_dump_json())
    assert again == task
    assert type(again.environment) is type(task.environment)
