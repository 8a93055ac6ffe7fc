"""Real agents that no one on this project wrote, for the proxy tests: where
`.ci/install-agents` puts them, how each is pointed at a base URL (its home in a temporary
folder, so nothing of the machine's own configuration or keys is read), and the proxy's own
answers tapped, to compare what the client received with what the simulator sent.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from proxy_setup import Tap, proxy_to

from traces.proxy import server as proxy_server
from traces.proxy.server import ProxyServer

from conftest import REPO

AGENTS_BIN = REPO / ".ci-node" / "node_modules" / ".bin"
"""Where `.ci/install-agents` installs the npm agents (versions pinned in `.ci/agents`)."""

MODEL = "sim-model"
KEY = "sk-agents-0123456789abcdef"
AGENT_TIMEOUT_S = 180.0


def agent_missing(what: str) -> None:
    """Skip a test whose agent is not installed here; under CI, which installs them
    (`.ci/run` calls `.ci/install-agents`), fail it instead: a CI run that skipped every
    real client would pass without having driven one."""
    message = f"real-agent proxy tests need {what}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI must install it: see .ci/install-agents)")
    pytest.skip(message + "; run .ci/install-agents")


def agent_binary(name: str) -> Path:
    """The installed agent `name` (its node_modules/.bin entry) and Node.js to run it."""
    if shutil.which("node") is None:
        agent_missing("Node.js 20 or newer")
    path = AGENTS_BIN / name
    if not os.access(path, os.X_OK):
        agent_missing(f"{name} in {AGENTS_BIN}")
    return path


def _env(home: Path, **extra: str) -> dict[str, str]:
    """A bare environment: the agent sees only its temporary home and what the test sets.
    Its temporary files go there too: OpenCode, a Bun binary, unpacks a 5 MB native library
    into Bun's temporary folder (`BUN_TMPDIR`, else /tmp) on every run and leaves it there."""
    node = shutil.which("node")
    folders = [str(Path(node).parent)] if node else []
    path = os.pathsep.join(dict.fromkeys([*folders, "/usr/bin", "/bin"]))
    scratch = home / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": path,
        "HOME": str(home),
        "TMPDIR": str(scratch),
        "BUN_TMPDIR": str(scratch),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "NO_COLOR": "1",
        **extra,
    }


def run_qwen(
    prompt: str, base_url: str, workdir: Path, home: Path
) -> subprocess.CompletedProcess[str]:
    """Qwen Code headless, as its README says for an OpenAI-compatible endpoint:
    `qwen -p PROMPT --yolo` with OPENAI_BASE_URL, OPENAI_API_KEY and OPENAI_MODEL. Its
    settings turn usage statistics off (it would send them to its vendor) and pick the
    OpenAI auth type, so it never asks how to log in."""
    binary = agent_binary("qwen")
    settings = home / ".qwen" / "settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(
        json.dumps(
            {
                "privacy": {"usageStatisticsEnabled": False},
                "telemetry": {"enabled": False},
                "security": {"auth": {"selectedType": "openai"}},
            }
        )
    )
    env = _env(home, OPENAI_BASE_URL=base_url, OPENAI_API_KEY=KEY, OPENAI_MODEL=MODEL)
    return subprocess.run(
        [str(binary), "-p", prompt, "--yolo"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=AGENT_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def opencode_config(base_url: str) -> dict[str, Any]:
    """OpenCode's configuration for one OpenAI-compatible provider at `base_url` (its
    `@ai-sdk/openai-compatible` provider ships inside OpenCode), used for the title model
    too."""
    return {
        "provider": {
            "sim": {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Simulator",
                "options": {"baseURL": base_url, "apiKey": KEY},
                "models": {MODEL: {"name": "Simulated model", "tool_call": True}},
            }
        },
        "model": f"sim/{MODEL}",
        "small_model": f"sim/{MODEL}",
        "autoupdate": False,
        "share": "disabled",
    }


def run_opencode(
    prompt: str, base_url: str, workdir: Path, home: Path
) -> subprocess.CompletedProcess[str]:
    """`opencode run PROMPT` with the provider given in OPENCODE_CONFIG_CONTENT, and what it
    would otherwise fetch at start (the models.dev catalogue, default plugins, language
    servers, updates) turned off by its own variables."""
    binary = agent_binary("opencode")
    env = _env(
        home,
        OPENCODE_CONFIG_CONTENT=json.dumps(opencode_config(base_url)),
        OPENCODE_DISABLE_MODELS_FETCH="1",
        OPENCODE_DISABLE_DEFAULT_PLUGINS="1",
        OPENCODE_DISABLE_AUTOUPDATE="1",
        OPENCODE_DISABLE_SHARE="1",
        OPENCODE_DISABLE_LSP_DOWNLOAD="1",
        OPENCODE_DISABLE_CLAUDE_CODE="1",
    )
    return subprocess.run(
        [str(binary), "run", prompt],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=AGENT_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
        check=False,
    )


class _TappedProxyApp(Tap):
    """The proxy's application with what it sends its client kept (as the simulator's tap
    keeps what the simulator sent the proxy)."""

    async def aclose(self) -> None:
        await self.app.aclose()


@contextlib.contextmanager
def tapped_proxy(
    monkeypatch: pytest.MonkeyPatch, upstream: str, db: Path
) -> Iterator[tuple[ProxyServer, Tap]]:
    """`proxy_to(upstream, db)` with its answers to the client tapped."""
    taps: list[Tap] = []
    real = proxy_server.ProxyApp

    def create(*args: Any, **kwargs: Any) -> Any:
        taps.append(_TappedProxyApp(real(*args, **kwargs)))
        return taps[-1]

    with monkeypatch.context() as patch:
        patch.setattr(proxy_server, "ProxyApp", create)
        with proxy_to(upstream, db) as proxy:
            yield proxy, taps[0]
