"""The recorders' writer's message numbers (`traces.store.numbers`): what it stored is skipped
and named by the number it drew, what another writer stored is looked up, and its counter is
read again once another session may have drawn numbers."""

from __future__ import annotations

from pathlib import Path

from traces.store.database import open_for_writing
from traces.store.inserts import insert_rows
from traces.store.numbers import MessageNumbers
from traces.store.tables import MessageRow


def _message(text: str) -> MessageRow:
    return MessageRow(hash=f"h-{text}", role="user", body=f'{{"content": "{text}"}}')


def test_the_writer_skips_what_it_stored_and_looks_up_what_others_stored(tmp_path: Path) -> None:
    conn = open_for_writing(tmp_path / "t.duckdb")
    try:
        # Another writer (an import) stored one message first, under number 1.
        insert_rows(conn, "messages", [_message("imported")])
        numbers = MessageNumbers()
        a, b = _message("a"), _message("b")
        # A commit of two new messages, one of them sent twice (two recorders' steps).
        plan = numbers.plan(conn, [a, b, a], ["h-a", "h-b", "h-imported", "h-missing"])
        assert plan.messages == [a, b]
        assert plan.drawn == [2, 3]  # after the greatest stored
        assert plan.step_numbers == [2, 3, 1, None]  # the imported one looked up
        insert_rows(conn, "messages", plan.messages, check_stored=False, numbers=list(plan.drawn))
        numbers.remember(plan)
        # The next commit: what it stored is skipped and named without a look-up, even
        # where the store no longer holds it (nothing deletes a message: it proves no
        # look-up was made).
        conn.execute("DELETE FROM messages WHERE hash = 'h-a'")
        again = numbers.plan(conn, [a, _message("c")], ["h-a", "h-c"])
        assert again.messages == [_message("c")]
        assert again.drawn == [4]
        assert again.step_numbers == [2, 4]
        numbers.remember(again)
        # Another session stored messages meanwhile: the counter is read again.
        conn.execute(
            "INSERT INTO messages VALUES ('h-x', 'user', '{}', md5_number_lower('h-x'), 40)"
        )
        numbers.mark_stale()
        assert numbers.plan(conn, [_message("d")], []).drawn == [41]
    finally:
        conn.close()


def test_a_failed_transaction_leaves_nothing_remembered(tmp_path: Path) -> None:
    conn = open_for_writing(tmp_path / "t.duckdb")
    try:
        numbers = MessageNumbers()
        first = numbers.plan(conn, [_message("a")], ["h-a"])
        # Not remembered (rolled back): the same message is stored again, under the same
        # number, by the next try.
        second = numbers.plan(conn, [_message("a")], ["h-a"])
        assert second.messages == first.messages and second.drawn == first.drawn == [1]
    finally:
        conn.close()


def test_only_a_statement_naming_messages_makes_the_counter_stale() -> None:
    # The server reads the writer's counter again after a session's commit that may have
    # stored messages; a commit of findings (each step of a recording's live checks) or of
    # `step_message_keys` rows alone leaves it.
    from traces.store.server import _MESSAGES

    stores = ["INSERT INTO messages (hash) SELECT 1", "insert into lake.main.MESSAGES values (1)"]
    others = ["INSERT INTO findings VALUES (1)", "INSERT INTO step_message_keys VALUES (1)"]
    assert all(_MESSAGES.search(sql) for sql in stores)
    assert not any(_MESSAGES.search(sql) for sql in [*others, "SELECT * FROM request_messages(1)"])
