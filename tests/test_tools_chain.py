"""The chain world: a full walk, refusals, idempotence, schema errors and determinism."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from traces.model import ToolErrorKind
from traces.sample_files import samples_dir
from traces.tasks import build_environment, load_task
from traces.tools.base import ToolOutcome
from traces.tools.chain import OPEN_BOX_SPEC, ChainEnvironment

SAMPLES = samples_dir()


def open_box(env: ChainEnvironment, box_id: str) -> ToolOutcome:
    return asyncio.run(env.call("open_box", {"box_id": box_id}))


async def walk(env: ChainEnvironment) -> list[dict[str, Any]]:
    """Follow the chain exactly as a model would, from the prompt's start box."""
    results = []
    box_id: str | None = env.prompt_variables()["start_box"]
    while box_id is not None:
        outcome = await env.call("open_box", {"box_id": box_id})
        assert outcome.error is None, outcome
        body = json.loads(outcome.output)
        results.append(body)
        box_id = body.get("next_box_id")
    return results


def test_walk_the_whole_sample_chain(tmp_path: Path) -> None:
    task = load_task(SAMPLES / "tasks" / "chain.toml")
    env = build_environment(task, seed=42, sandbox_dir=tmp_path)
    assert isinstance(env, ChainEnvironment)
    assert not env.check_success("no idea").passed
    results = asyncio.run(walk(env))
    assert len(results) == 300
    assert results[0]["box_id"] == env.prompt_variables()["start_box"]
    assert results[6] == {
        "box_id": results[6]["box_id"],
        "opened": 7,
        "remaining": 293,
        "next_box_id": results[7]["box_id"],
    }
    last = results[-1]
    assert set(last) == {"box_id", "opened", "remaining", "treasure"}
    assert (last["opened"], last["remaining"]) == (300, 0)
    assert re.fullmatch(r"[a-z]+-[a-z]+-\d{3}", last["treasure"])
    assert all(re.fullmatch(r"box-[0-9a-f]{6}", r["box_id"]) for r in results)
    assert len({r["box_id"] for r in results}) == 300
    verdict = env.check_success(f"The treasure is {last['treasure']}.")
    assert verdict.passed, verdict.detail
    assert not env.check_success("The treasure is gold.").passed


def test_output_is_the_exact_json_shape() -> None:
    env = ChainEnvironment(length=2, seed=1)
    first, second = env.box_ids
    assert open_box(env, first).output == json.dumps(
        {"box_id": first, "opened": 1, "remaining": 1, "next_box_id": second}
    )
    assert open_box(env, second).output == json.dumps(
        {"box_id": second, "opened": 2, "remaining": 0, "treasure": env.treasure}
    )


def test_success_needs_every_box_opened() -> None:
    env = ChainEnvironment(length=3, seed=5)
    open_box(env, env.box_ids[0])
    verdict = env.check_success(env.treasure)
    assert not verdict.passed
    assert "1 of 3" in verdict.detail


def test_wrong_or_unreachable_box_is_an_error_outcome() -> None:
    env = ChainEnvironment(length=5, seed=9)
    ids = env.box_ids
    unknown = next(f"box-{n:06x}" for n in range(16**6) if f"box-{n:06x}" not in ids)
    outcome = open_box(env, unknown)
    assert outcome.error == f"{unknown} is locked or does not exist"
    assert unknown in outcome.output
    # Skipping ahead is refused exactly like an unknown id, and does not advance the chain.
    skipped = open_box(env, ids[2])
    assert skipped.error == f"{ids[2]} is locked or does not exist"
    assert env.opened == 0
    # The tool served a well-formed call and said no: its own answer, not a broken call.
    # The model reads the same words either way; the trace keeps that one id exists nowhere
    # (made up) and the other is a real box not reached yet.
    assert outcome.error_kind == ToolErrorKind.MISSING
    assert skipped.error_kind == ToolErrorKind.REJECTED
    assert outcome.output.replace(unknown, "") == skipped.output.replace(ids[2], "")


def test_reopening_is_idempotent() -> None:
    env = ChainEnvironment(length=4, seed=2)
    ids = env.box_ids
    first = open_box(env, ids[0])
    open_box(env, ids[1])
    again = open_box(env, ids[0])
    assert again == first and again.error is None and again.error_kind is None
    assert env.opened == 2


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"box_id": "box-XYZ"}, "box_id"),
        ({"box_id": 12}, "box_id"),
        ({}, "box_id"),
        ({"box_id": "box-000000", "force": True}, "force"),
    ],
)
def test_schema_violations_name_the_field(arguments: dict[str, Any], field: str) -> None:
    env = ChainEnvironment(length=2, seed=0)
    outcome = asyncio.run(env.call("open_box", arguments))
    assert outcome.error is not None
    assert outcome.error.startswith(f"invalid arguments for open_box: {field}: "), outcome.error
    assert outcome.error_kind == ToolErrorKind.INVALID_ARGUMENTS
    assert env.opened == 0


def test_unknown_tool_is_an_error_outcome() -> None:
    env = ChainEnvironment(length=2, seed=0)
    outcome = asyncio.run(env.call("open_door", {"box_id": env.box_ids[0]}))
    assert outcome.error is not None and "unknown tool 'open_door'" in outcome.error
    assert outcome.error_kind == ToolErrorKind.NOT_FOUND


def test_same_seed_same_world_different_seed_different_ids() -> None:
    a, b, c = (ChainEnvironment(length=50, seed=s) for s in (7, 7, 8))
    assert a.box_ids == b.box_ids and a.treasure == b.treasure
    assert (
        a.prompt_variables() == b.prompt_variables() == {"start_box": a.box_ids[0], "length": "50"}
    )
    assert a.box_ids != c.box_ids
    assert a.box_ids[0] != c.box_ids[0]


def test_tool_spec_is_the_contract_shape() -> None:
    env = ChainEnvironment(length=1, seed=0)
    assert env.tool_specs() == [OPEN_BOX_SPEC]
    parameters = OPEN_BOX_SPEC["function"]["parameters"]
    assert parameters["properties"]["box_id"]["pattern"] == "^box-[0-9a-f]{6}$"
    assert parameters["required"] == ["box_id"]
    assert parameters["additionalProperties"] is False


def test_length_is_validated() -> None:
    with pytest.raises(ValueError):
        ChainEnvironment(length=0, seed=0)
