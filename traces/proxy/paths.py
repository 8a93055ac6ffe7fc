"""What the proxy does with each path: which requests become steps, and how they are read.

| path                         | recorded as                                              |
| `POST /v1/chat/completions`  | a step, in full (`chat`)                                 |
| `POST /v1/completions`       | a step, in full: the prompt, the text as the content     |
| `POST /v1/responses`         | a step: raw request and answer, output text and usage    |
| `GET /v1/models[/ID]`        | nothing (relayed)                                        |
| anything else                | nothing (relayed, one log line)                          |
"""

from __future__ import annotations

from typing import Literal

Kind = Literal["chat", "completion", "responses", "models", "other"]
"""What a request is, by its method and path."""

RECORDED: frozenset[Kind] = frozenset({"chat", "completion", "responses"})
"""The kinds that become steps."""

_POSTS: dict[str, Kind] = {
    "/chat/completions": "chat",
    "/completions": "completion",
    "/responses": "responses",
}


def kind_of(method: str, path: str) -> Kind:
    """The kind of a request to `path` (without any `/p/NAME` prefix); a client's `/v1/X`
    and a bare `/X` (a base URL given without `/v1`) are the same."""
    bare = path.rstrip("/")
    if bare.startswith("/v1/"):
        bare = bare[3:]
    if method == "POST" and bare in _POSTS:
        return _POSTS[bare]
    if method == "GET" and (bare == "/models" or bare.startswith("/models/")):
        return "models"
    return "other"
