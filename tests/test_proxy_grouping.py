"""Which run a proxied request belongs to (`traces.proxy.conversations`), on plain messages."""

from __future__ import annotations

from typing import Any

from traces.proxy.conversations import Conversations, canon, canon_all, tool_names

from conftest import python_calls

SYSTEM = {"role": "system", "content": "You help."}
USER = {"role": "user", "content": "Find the file."}
ANSWER: dict[str, Any] = {
    "role": "assistant",
    "content": "Looking.",
    "reasoning_content": "I should list files.",
    "tool_calls": [
        {
            "id": "call_abc",
            "type": "function",
            "function": {"name": "ls", "arguments": '{"path": "."}'},
        }
    ],
}
RESULT = {"role": "tool", "tool_call_id": "call_abc", "content": "a.txt"}
TOOLS = frozenset({"ls"})


def test_canon_forgets_what_clients_rewrite() -> None:
    """Reasoning dropped, content as parts, ids of the client's own, arguments re-spaced,
    a think block left out: the same message."""
    rewritten = {
        "role": "assistant",
        "content": [{"type": "text", "text": "Looking. "}],
        "tool_calls": [
            {
                "id": "toolu_1",
                "type": "function",
                "function": {"name": "ls", "arguments": '{"path":"."}'},
            }
        ],
    }
    assert canon(rewritten) == canon(ANSWER)
    think = {**ANSWER, "content": "<think>I should list files.</think>Looking."}
    think.pop("reasoning_content")
    assert canon(think) == canon(ANSWER)
    assert canon({**RESULT, "tool_call_id": "toolu_1"}) == canon(RESULT)
    other = {**ANSWER, "tool_calls": [{**ANSWER["tool_calls"][0], "function": {"name": "cat"}}]}
    assert canon(other) != canon(ANSWER)
    assert canon({"role": "user", "content": "Find the file!"}) != canon(USER)


def _first(conversations: Conversations, messages: list[Any], now: float = 0.0) -> str:
    thread, retry = conversations.place(canon_all(messages), TOOLS, None, now)
    assert thread is None and not retry
    opened = conversations.open(f"run{len(conversations.threads)}", TOOLS, None, now)
    conversations.sending(opened, canon_all(messages), now)
    return opened.run_id


def test_an_extension_of_the_answered_request_continues_its_run() -> None:
    """The next turn continues; a second session of the same prompt, a request with other
    tools, and one sent while the run's request is still in flight do not."""
    conversations = Conversations()
    first = [SYSTEM, USER]
    run = _first(conversations, first)
    again, _ = conversations.place(canon_all(first), TOOLS, None, 1.0)
    assert again is None  # the run's request is still in flight: another session
    thread = conversations.threads[run]
    conversations.answered(thread, ANSWER, 1.0)
    follow = canon_all([*first, ANSWER, RESULT])
    found, retry = conversations.place(follow, TOOLS, None, 2.0)
    assert found is thread and not retry
    assert conversations.place(follow, frozenset(), None, 2.0) == (None, False)
    assert conversations.place(canon_all(first), TOOLS, None, 2.0) == (None, False)
    assert tool_names({"tools": [{"type": "function", "function": {"name": "ls"}}]}) == TOOLS


def test_the_same_request_after_a_failure_is_a_retry() -> None:
    """A failed request sent again is a retry of the run's step; a longer one continues."""
    conversations = Conversations()
    run = _first(conversations, [USER])
    thread = conversations.threads[run]
    conversations.answered(thread, None, 1.0)
    assert conversations.place(canon_all([USER]), TOOLS, None, 2.0) == (thread, True)
    more = canon_all([USER, {"role": "user", "content": "Please."}])
    assert conversations.place(more, TOOLS, None, 2.0) == (thread, False)


def test_longest_match_wins_and_names_group() -> None:
    """Of two runs a request extends, the one it extends furthest; a named run takes every
    request naming it; quiet runs are closed by `idle`."""
    conversations = Conversations()
    short = conversations.threads[_first(conversations, [USER])]
    conversations.answered(short, ANSWER, 1.0)
    # A fork of the same start that went further (as a client resuming a saved session).
    long_run = conversations.open("fork", TOOLS, None, 1.0)
    conversations.sending(long_run, canon_all([USER, ANSWER, RESULT]), 1.0)
    conversations.answered(long_run, {"role": "assistant", "content": "Done."}, 2.0)
    later = canon_all([USER, ANSWER, RESULT, {"role": "assistant", "content": "Done."}, USER])
    assert conversations.place(later, TOOLS, None, 3.0)[0] is long_run
    named = conversations.open("named", TOOLS, "session-1", 3.0)
    assert conversations.place(canon_all([SYSTEM]), TOOLS, "session-1", 4.0)[0] is named
    assert conversations.place(canon_all([SYSTEM]), TOOLS, "session-2", 4.0) == (None, False)
    closed = conversations.idle(now=2.5 + 10, idle_s=10)
    assert {t.run_id for t in closed} == {short.run_id, long_run.run_id}
    assert list(conversations.threads) == ["named"]


def test_placing_costs_the_same_however_many_runs_are_open() -> None:
    """A request is placed by lookups, not by a scan of the open runs: 1000 open runs cost
    what 10 do (Python calls counted, not timed)."""

    def cost(open_runs: int) -> int:
        conversations = Conversations()
        for number in range(open_runs):
            thread = conversations.open(f"run{number}", TOOLS, None, 0.0)
            prompt = canon_all([{"role": "user", "content": f"Task {number}."}])
            conversations.sending(thread, prompt, 0.0)
            conversations.answered(thread, ANSWER, 0.0)
        request = canon_all([{"role": "user", "content": "Task 5."}, ANSWER, RESULT])
        found: list[Any] = []
        calls = python_calls(lambda: found.append(conversations.place(request, TOOLS, None, 1.0)))
        assert found[0][0] is conversations.threads["run5"]
        return calls

    assert cost(1000) == cost(10)
