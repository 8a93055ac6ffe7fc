"""Python tools: `module:function` references become schema'd tools, run with a timeout,
and an exception becomes a `crashed` result naming its line."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path

import pytest

from traces.environments import open_environment
from traces.errors import TaskFileError
from traces.model import ToolErrorKind
from traces.tasks import Task, load_task
from traces.tools.python_tools import PythonToolError, load_python_tool

from conftest import query_rows, run_cli
from resume_helpers import cut

BYO = Path(__file__).resolve().parents[1] / "samples" / "byo"


def test_a_signature_and_docstring_become_the_schema() -> None:
    tool = load_python_tool("sample_tools:convert_length", BYO)
    function = tool.spec["function"]
    assert function["name"] == "convert_length"
    assert function["description"] == "Convert a length between metres, kilometres, miles and feet."
    parameters = function["parameters"]
    assert parameters["required"] == ["value", "from_unit", "to_unit"]
    assert parameters["additionalProperties"] is False
    assert parameters["properties"]["from_unit"]["enum"] == ["m", "km", "mi", "ft"]
    assert parameters["properties"]["value"] == {
        "type": "number",
        "description": "The length to convert.",
    }
    # A default makes the field optional and shows in the schema.
    stats = load_python_tool("sample_tools:word_stats", BYO).spec["function"]["parameters"]
    assert stats["required"] == ["text"] and stats["properties"]["top"]["default"] == 3


def test_calls_return_text_json_or_a_crash_with_its_line() -> None:
    async def go() -> None:
        convert = load_python_tool("sample_tools:convert_length", BYO)
        done = await convert.call({"value": 3, "from_unit": "km", "to_unit": "ft"}, 5)
        assert done.error is None and done.output == "9842.519685"
        stats = load_python_tool("sample_tools:word_stats", BYO)
        done = await stats.call({"text": "the cat saw the other cat", "top": 2}, 5)
        assert json.loads(done.output) == {"words": 6, "distinct": 4, "top": ["cat", "the"]}
        divide = load_python_tool("sample_tools:checked_divide", BYO)
        failed = await divide.call({"numerator": 1, "denominator": 0}, 5)
        assert failed.error_kind is ToolErrorKind.CRASHED
        assert failed.error is not None
        assert failed.error.startswith("ZeroDivisionError: denominator must not be zero")
        assert "(sample_tools.py:" in failed.error
        bad = await convert.call({"value": 1, "from_unit": "yard", "to_unit": "m"}, 5)
        assert bad.error_kind is ToolErrorKind.INVALID_ARGUMENTS
        assert bad.error is not None and "from_unit" in bad.error

    asyncio.run(go())


def test_a_slow_function_times_out(tmp_path: Path) -> None:
    (tmp_path / "slow_tools.py").write_text(
        textwrap.dedent(
            '''
            import asyncio

            async def nap(seconds: float) -> str:
                """Sleep, then say so."""
                await asyncio.sleep(seconds)
                return "awake"
            '''
        )
    )
    tool = load_python_tool("slow_tools:nap", tmp_path)
    outcome = asyncio.run(tool.call({"seconds": 5}, 0.2))
    assert outcome.error_kind is ToolErrorKind.TIMEOUT
    assert outcome.error == "nap did not finish within 0.2 s"


@pytest.mark.parametrize(
    ("source", "reference", "problem"),
    [
        ("", "no_such_module_here:f", "cannot import no_such_module_here"),
        ("raise RuntimeError('broken')\n", "mod:f", "RuntimeError: broken (mod.py:1)"),
        ("x = 1\n", "mod:f", "mod has no f"),
        ("x = 1\n", "mod:x", "is not a function"),
        ("def f(a):\n    '''Doc.'''\n", "mod:f", "parameter a has no type annotation"),
        ("def f(*a: int):\n    '''Doc.'''\n", "mod:f", "*a cannot become a schema field"),
        (
            "import threading\ndef f(a: threading.Lock):\n    '''Doc.'''\n",
            "mod:f",
            "signature has no JSON Schema",
        ),
        ("def f(a: int):\n    pass\n", "mod:f", "has no docstring"),
        ("", "not a reference", "is not of the form module:function"),
    ],
)
def test_a_reference_that_cannot_become_a_tool_is_one_line(
    tmp_path: Path, source: str, reference: str, problem: str
) -> None:
    # A module name of its own per case: an imported module stays in sys.modules.
    unique = f"mod_{abs(hash((source, reference))):x}"
    reference = reference.replace("mod", unique)
    problem = problem.replace("mod", unique) if "module:function" not in problem else problem
    (tmp_path / f"{unique}.py").write_text(source)
    with pytest.raises(PythonToolError) as caught:
        load_python_tool(reference, tmp_path)
    assert problem in str(caught.value)
    assert "\n" not in str(caught.value)
    # The same reference in a task file: the file and the field, one line.
    task = tmp_path / "t.toml"
    task.write_text(
        'name = "t"\ndescription = "d"\nmax_steps = 3\nsystem_prompt = "s"\nuser_prompt = "u"\n'
        f'[environment]\ntype = "tools"\npython = ["{reference}"]\n'
        '[success]\nanswer_contains = ["x"]\n'
    )
    with pytest.raises(TaskFileError) as loading:
        load_task(task)
    assert str(loading.value).startswith(f"{task}: environment.python: ")
    assert problem in str(loading.value)


def test_the_sample_task_opens_a_world_of_its_three_tools(tmp_path: Path) -> None:
    task = load_task(BYO / "python_tools.toml")
    assert task.environment.tool_names() == ["convert_length", "word_stats", "checked_divide"]

    async def go() -> None:
        async with open_environment(task, seed=0, sandbox_dir=tmp_path / "box") as env:
            offered = [t["function"]["name"] for t in env.tool_specs()]
            assert offered == task.environment.tool_names()
            assert env.replayable is False
            outcome = await env.call("checked_divide", {"numerator": 7, "denominator": 2})
            assert outcome.output == "3.5"
            unknown = await env.call("nope", {})
            assert unknown.error_kind is ToolErrorKind.NOT_FOUND
            assert env.check_success("convert_length word_stats checked_divide").passed
            assert not env.check_success("convert_length").passed

    asyncio.run(go())


@pytest.mark.slow
def test_an_interrupted_run_of_own_tools_is_refused_resumption(tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    done = run_cli("record", "--task", str(BYO / "python_tools.toml"), "--db", str(db))
    assert done.returncode == 0, done.stderr
    [run] = query_rows(db, "SELECT id FROM runs")
    cut(db, run["id"], steps=2)
    done = run_cli("record", "--resume", run["id"], "--db", str(db))
    assert done.returncode != 0
    assert (
        f"run {run['id']}: its tools (MCP servers, Python functions) cannot be replayed, so "
        "the world it left cannot be restored; record it again"
    ) in done.stderr


def test_a_module_shadowed_by_one_imported_before_is_refused(tmp_path: Path) -> None:
    # Two task folders each with their own `shadow_tools.py`: the second cannot be imported
    # under the same name in one process, and silently using the first's would be wrong.
    first, second = tmp_path / "one", tmp_path / "two"
    for folder in (first, second):
        folder.mkdir()
        (folder / "shadow_tools.py").write_text(
            'def tool(x: int) -> int:\n    """Echo."""\n    return x\n'
        )
    load_python_tool("shadow_tools:tool", first)
    with pytest.raises(PythonToolError) as caught:
        load_python_tool("shadow_tools:tool", second)
    assert "was already imported from" in str(caught.value)
    assert "give the module beside the task another name" in str(caught.value)


def test_a_tools_task_survives_a_json_round_trip() -> None:
    task = load_task(BYO / "python_tools.toml")
    again = Task.model_validate_json(task.model_dump_json())
    assert again == task and type(again.environment) is type(task.environment)


@pytest.mark.parametrize(
    ("success", "problem"),
    [
        ("", "success: give answer_contains, file (with file_contains), check, or several of them"),
        ('file = "r.md"\n', "success: file needs file_contains"),
        ('file_contains = ["x"]\n', "success.file_contains: needs `file`"),
        ('file = "../r.md"\nfile_contains = ["x"]\n', "success.file: must be a file path"),
    ],
)
def test_a_tools_task_must_check_something(tmp_path: Path, success: str, problem: str) -> None:
    task = tmp_path / "t.toml"
    task.write_text(
        'name = "t"\ndescription = "d"\nmax_steps = 3\nsystem_prompt = "s"\nuser_prompt = "u"\n'
        '[environment]\ntype = "tools"\n'
        '[[environment.mcp]]\nname = "x"\nurl = "http://127.0.0.1:9/mcp"\n'  # not reached
        f"[success]\n{success}"
    )
    with pytest.raises(TaskFileError) as caught:
        load_task(task)
    assert str(caught.value).startswith(f"{task}: {problem}")


def test_a_tools_world_without_tools_is_refused(tmp_path: Path) -> None:
    task = tmp_path / "t.toml"
    task.write_text(
        'name = "t"\ndescription = "d"\nmax_steps = 3\nsystem_prompt = "s"\nuser_prompt = "u"\n'
        '[environment]\ntype = "tools"\n[success]\nanswer_contains = ["x"]\n'
    )
    with pytest.raises(TaskFileError) as caught:
        load_task(task)
    assert str(caught.value) == (
        f"{task}: environment: a tools world needs [[environment.mcp]] servers, python tools, "
        "or both"
    )
