"""Provider profiles: loading, one-line errors, `traces providers`, `record --provider`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from traces.dialects import DIALECTS
from traces.errors import TracesError
from traces.profiles import load_profiles
from traces.replay import ReplayPolicy
from traces.sample_files import providers_file
from traces.sim.config import SimConfig
from traces.sim.server import SimServer

from conftest import TASKS, CliRun, run_cli

REQUIRED = {
    "moonshot",
    "deepseek",
    "minimax",
    "zai",
    "openrouter",
    "together",
    "fireworks",
    "groq",
    "novita",
    "chutes",
    "vllm",
    "sglang",
    "llamacpp",
}


def test_shipped_profiles_cover_the_hosts_people_use() -> None:
    profiles = load_profiles(providers_file())
    assert set(profiles) >= REQUIRED
    for profile in profiles.values():
        assert profile.dialect in DIALECTS and profile.models
        # Env var names only: nothing that looks like a key.
        assert profile.api_key_env is None or profile.api_key_env.isupper()
    assert profiles["openrouter"].extra_body["provider"] == {"allow_fallbacks": False}
    # Kimi's ids go back in its own form: the family decides, on Moonshot as on any host.
    for name in ("moonshot", "together", "vllm"):
        dialect = profiles[name].resolved_dialect()
        assert ReplayPolicy.for_dialect(dialect, "moonshotai/Kimi-K2-Thinking").ids == "kimi"
    moonshot = profiles["moonshot"]
    assert ReplayPolicy.for_dialect(moonshot.resolved_dialect(), moonshot.models[0]).ids == "kimi"
    assert profiles["vllm"].resolved_dialect().reasoning_back == "reasoning"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            '[x]\nbase_url = "http://h/v1"\nmodels = ["m"]\ndialect = "openai"\ncolour = 1\n',
            "x.colour: unknown field",
        ),
        (
            '[x]\nbase_url = "http://h/v1"\nmodels = ["m"]\ndialect = "klingon"\n',
            "x.dialect: unknown dialect 'klingon'",
        ),
        ('[x]\nbase_url = "ftp://h"\nmodels = ["m"]\ndialect = "openai"\n', "x.base_url"),
        ('[x]\nbase_url = "http://h/v1"\nmodels = []\ndialect = "openai"\n', "x.models"),
        ('[x]\nmodels = ["m"]\ndialect = "openai"\n', "x.base_url: Field required"),
        (
            '[x]\nbase_url = "http://h/v1"\nmodels = ["m"]\ndialect = "openai"\n'
            "[x.prices.m]\ninput = -1\noutput = 1\n",
            "x.prices.m.input",
        ),
        (
            '[x]\nbase_url = "http://h/v1"\nmodels = ["m"]\ndialect = "openai"\n'
            '[x.overrides]\nids_back = "sideways"\n',
            "x.overrides.ids_back: Input should be 'as_received' or 'kimi'",
        ),
        (
            '[x]\nbase_url = "http://h/v1"\nmodels = ["m"]\ndialect = "openai"\n'
            '[x.overrides]\narguments_back = "yaml"\n',
            "x.overrides.arguments_back: Input should be 'string' or 'object'",
        ),
        (
            '[x]\nbase_url = "http://h/v1"\nmodels = ["m"]\ndialect = "openai"\n'
            'upstream_field = "provider"\n',  # removed: every response's `provider` is read
            "x.upstream_field: unknown field",
        ),
        ("[x\n", "invalid TOML"),
        ("x = 1\n", "x: must be a table"),
    ],
)
def test_bad_profiles_are_one_line_errors_naming_file_profile_field(
    tmp_path: Path, text: str, fragment: str
) -> None:
    path = tmp_path / "providers.toml"
    path.write_text(text)
    with pytest.raises(TracesError) as err:
        load_profiles(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and fragment in message


def test_providers_command_reports_whether_keys_are_set(tmp_path: Path, cli: CliRun) -> None:
    done = cli("providers", "-f", "json", env={"MOONSHOT_API_KEY": "sk-x"})
    assert done.returncode == 0, done.stderr
    rows = {r["provider"]: r for r in json.loads(done.stdout)}
    assert rows["moonshot"]["key_set"] is True
    assert rows["vllm"]["key_set"] is True  # a local server needs none
    assert "sk-x" not in done.stdout
    broken = tmp_path / "p.toml"
    broken.write_text('[x]\nbase_url = "http://h/v1"\nmodels = ["m"]\ndialect = "nope"\n')
    bad = cli("providers", "--providers", str(broken))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "x.dialect" in bad.stderr


@pytest.mark.slow  # several seconds: worker processes / a served simulator
def test_record_with_a_profile_pointed_at_your_own_server(tmp_path: Path) -> None:
    """The `vllm` profile with --base-url overridden: its dialect decides the replay field."""
    db = tmp_path / "t.duckdb"
    with SimServer(SimConfig(dialect="vllm")) as server:
        done = run_cli(
            "record",
            "--task",
            str(TASKS / "chain_short.toml"),
            "--provider",
            "vllm",
            "--base-url",
            server.base_url,
            "--db",
            str(db),
            "-f",
            "json",
        )
    assert done.returncode == 0, done.stderr
    [run] = json.loads(done.stdout)
    assert run["success"] is True
    runs = json.loads(run_cli("runs", "--db", str(db), "-f", "json").stdout)
    assert runs[0]["provider"] == "vllm" and runs[0]["model"] == "Qwen/Qwen3-8B"
    sent = json.loads(
        run_cli(
            "sql",
            f"select body from request_messages('{run['id']}', 2) where role = 'assistant'",
            "--db",
            str(db),
            "-f",
            "json",
        ).stdout
    )
    assert all("reasoning" in json.loads(r["body"]) for r in sent)
    assert not any("reasoning_content" in json.loads(r["body"]) for r in sent)


def test_record_with_unknown_provider_or_missing_key(tmp_path: Path, cli: CliRun) -> None:
    db = tmp_path / "t.duckdb"
    task = str(TASKS / "chain_short.toml")
    done = cli("record", "--task", task, "--provider", "nobody", "--db", str(db))
    assert done.returncode == 2 and "no provider 'nobody'" in done.stderr
    done = cli(
        "record",
        "--task",
        task,
        "--provider",
        "moonshot",
        "--db",
        str(db),
        env={"MOONSHOT_API_KEY": ""},
    )
    assert done.returncode == 2 and "MOONSHOT_API_KEY" in done.stderr
    assert not db.exists()


@pytest.mark.slow
def test_reasoning_replay_override_and_sim_options(tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    task = str(TASKS / "chain_short.toml")
    done = run_cli(
        "record",
        "--task",
        task,
        "--dialect",
        "deepseek",
        "--reasoning-replay",
        "drop",
        "--db",
        str(db),
        "-f",
        "json",
    )
    assert done.returncode == 0, done.stderr
    [run] = json.loads(done.stdout)
    assert run["termination"] == "provider_error" and "reasoning_content" in run["error"]
    bad = run_cli("record", "--task", task, "--reasoning-replay", "sideways", "--db", str(db))
    assert bad.returncode == 2 and "--reasoning-replay" in bad.stderr
    bad = run_cli("record", "--task", task, "--fault", "gremlins=0.5", "--db", str(db))
    assert bad.returncode == 2 and "gremlins" in bad.stderr
