"""A message's 64-bit key (store migration 20) never picks a wrong message.

Two distinct messages may share a 64-bit `messages.key` (about n²/2^65 for n messages). No
such pair of real hashes can be found here, so the stores are given impostors: messages whose
hash and body differ from a real message's but whose stored key is that message's
(`tables.MESSAGE_KEY`), stored before the real ones (what a dedup by key alone would take for
them) and after them under greater numbers (what a look-up of the greatest number by key alone
would take). Every view, every rebuilt request and the analyzer's loader must then give what
a store without impostors gives, through an import, an import again, a merge and the
recorders' writer's numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from analyzer.checks.loader import Messages, load_runs
from traces.importing import ImportOptions, import_files
from traces.store.database import open_for_reading, open_for_writing
from traces.store.inserts import insert_rows
from traces.store.merge import merge_stores
from traces.store.numbers import MessageNumbers
from traces.store.recorder import Recorder
from traces.store.tables import MessageRow, StepMessageRow

from conftest import query_rows

REPO = Path(__file__).resolve().parent.parent
EXCHANGES = REPO / "tests" / "fixtures" / "import" / "exchanges.jsonl"
IMPOSTOR = '{"role": "user", "content": "an impostor sharing a key"}'

_VIEWS = {
    "steps": "run_id, idx",
    "step_messages": "run_id, step_idx, position",
    "tool_results": "run_id, step_idx, call_idx",
}


class _ByKey(Messages):
    """Every body looked up in the whole table by key (the loader's path outside a window)."""

    windowed = False


def _import(db: Path, *, again: bool = False) -> None:
    import_files(db, [EXCHANGES], ImportOptions(provider="fixture", again=again))


def _hashes(db: Path) -> list[str]:
    with open_for_reading(db) as conn:
        rows = conn.execute("SELECT DISTINCT hash FROM messages ORDER BY 1").fetchall()
    return [h for (h,) in rows]


def _plant_impostors(db: Path, hashes: list[str], tag: str) -> None:
    """For each of `hashes`, a message of another hash and body stored under its key, with
    the next numbers (greater than any stored)."""
    with open_for_writing(db) as conn:
        conn.execute(
            "INSERT INTO messages (hash, role, body, key, seq) "
            "SELECT ? || h, 'user', ?, md5_number_lower(h), "
            "(SELECT coalesce(max(seq), 0) FROM messages) + row_number() OVER (ORDER BY h) "
            "FROM (SELECT unnest(?) AS h)",
            [tag, IMPOSTOR, hashes],
        )


def _snapshot(db: Path, run_ids: list[str] | None = None) -> dict[str, Any]:
    """Every row of the views of the runs `run_ids` (all, in stored order, by default), each
    run named by its place in that list; every request `request_messages` rebuilds; the runs
    as the analyzer's loader reads them (bodies looked up by key)."""
    with open_for_reading(db) as conn:
        ids = run_ids or [r for (r,) in conn.execute("SELECT id FROM runs ORDER BY key").fetchall()]
        name = {run_id: f"run-{i}" for i, run_id in enumerate(ids)}
        out: dict[str, Any] = {}
        for view, order in _VIEWS.items():
            cursor = conn.execute(
                f"SELECT * FROM {view} WHERE run_id IN (SELECT unnest(?)) ORDER BY {order}", [ids]
            )
            columns = [d[0] for d in cursor.description or []]
            out[view] = sorted(
                tuple(
                    name[v] if c == "run_id" else v
                    for c, v in zip(columns, row, strict=True)
                    if c != "run_key"
                )
                for row in cursor.fetchall()
            )
        steps = conn.execute(
            "SELECT run_id, idx FROM steps WHERE run_id IN (SELECT unnest(?))", [ids]
        ).fetchall()
        out["requests"] = sorted(
            (
                name[run_id],
                idx,
                conn.execute("SELECT * FROM request_messages(?, ?)", [run_id, idx]).fetchall(),
            )
            for run_id, idx in steps
        )
        loaded = repr(load_runs(conn, ids, _ByKey()))
        for run_id, named in name.items():
            loaded = loaded.replace(run_id, named)
        out["loaded"] = loaded
    assert out["step_messages"] and all(row[-1] for row in out["step_messages"])
    assert IMPOSTOR not in repr(out)
    return out


def test_messages_sharing_a_key_are_each_stored_and_read_right(tmp_path: Path) -> None:
    plain = tmp_path / "plain.duckdb"
    _import(plain)
    _import(plain, again=True)
    real = _hashes(plain)

    shared = tmp_path / "shared.duckdb"
    open_for_writing(shared).close()
    # Stored first: a dedup by key alone would skip every real message.
    _plant_impostors(shared, real, "before-")
    _import(shared)
    # Stored after, under greater numbers: the import again stores no message (each is
    # there, by hash) and must name each step's message by the real one's number.
    _plant_impostors(shared, real, "after-")
    _import(shared, again=True)

    assert _snapshot(shared) == _snapshot(plain)
    with open_for_reading(shared) as conn:
        # Each real message once, beside its two impostors: three rows a key.
        rows = conn.execute(
            "SELECT count(*), count(DISTINCT key), count(*) FILTER (WHERE body = ?) FROM messages",
            [IMPOSTOR],
        ).fetchone()
        assert rows == (3 * len(real), len(real), 2 * len(real))
        # The recorders' writer looks up the numbers of messages it did not store itself:
        # each real message's own, never its impostor's (greater) one.
        plan = MessageNumbers().plan(conn, [], real)
        expected = dict(
            conn.execute(
                "SELECT hash, seq FROM messages WHERE body <> ? AND hash IN (SELECT unnest(?))",
                [IMPOSTOR, real],
            ).fetchall()
        )
        assert plan.step_numbers == [expected[h] for h in real]
        assert set(plan.learned) == set(real)


def test_a_batch_dedup_keeps_a_message_whose_key_is_taken(tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    real = MessageRow(hash="h-real", role="user", body='{"role": "user", "content": "hi"}')
    open_for_writing(db).close()
    _plant_impostors(db, [real.hash], "x-")
    with open_for_writing(db) as conn:
        insert_rows(conn, "messages", [real])
        insert_rows(conn, "messages", [real])  # stored now: skipped, by its hash
        rows = conn.execute("SELECT hash, body FROM messages ORDER BY seq").fetchall()
    assert rows == [("x-h-real", IMPOSTOR), (real.hash, real.body)]


def test_a_merge_names_the_destination_message_not_one_sharing_its_key(tmp_path: Path) -> None:
    source = tmp_path / "source.duckdb"
    _import(source)
    into = tmp_path / "into.duckdb"
    _import(into)  # the same messages, stored by runs of its own
    # Another writer's messages under the same keys, numbered after the real ones: the
    # merged runs' rows must name the real copies the destination holds.
    _plant_impostors(into, _hashes(source), "other-")
    [report] = merge_stores([source], into, again=True)  # the same file: copied again
    assert report.copied > 0
    with open_for_reading(source) as conn:
        ids = [r for (r,) in conn.execute("SELECT id FROM runs ORDER BY key").fetchall()]
    assert _snapshot(into, ids) == _snapshot(source, ids)


def test_a_lookup_by_key_alone_would_have_picked_the_impostor(tmp_path: Path) -> None:
    """The stores above do bite: by key alone, the greatest number is the impostor's."""
    db = tmp_path / "t.duckdb"
    _import(db)
    real = _hashes(db)
    _plant_impostors(db, real, "after-")
    with duckdb.connect(str(db), read_only=True) as conn:
        picked = conn.execute(
            "SELECT m.hash FROM messages m WHERE m.key = md5_number_lower(?) ORDER BY seq DESC "
            "LIMIT 1",
            [real[0]],
        ).fetchone()
    assert picked == ("after-" + real[0],)


def test_a_served_session_giving_up_a_copy_renumbers_only_that_message(db_path: Path) -> None:
    """Two sessions of a store's server store "shared"; the later to commit gives its copy up
    and points its rows at the committed copy's number (the server's reconciliation). Its
    row naming another message under the same key (an impostor it stored) keeps naming it."""
    Recorder(db_path).close()
    first, second = open_for_writing(db_path), open_for_writing(db_path)
    try:
        for conn, run in ((first, "a"), (second, "b")):
            conn.execute("BEGIN TRANSACTION")
            insert_rows(conn, "messages", [MessageRow(hash="shared", role="user", body=f'"{run}"')])
            conn.execute(
                "INSERT INTO runs (id, task, task_path, task_sha256, provider, model, base_url, "
                "settings, seed, status, started_at, recorder_pid, recorder_host) VALUES "
                "(?, 't', 't', '0', 'p', 'm', 'u', '{}', 0, 'completed', now(), 0, 'h')",
                [run],
            )
            insert_rows(conn, "step_messages", [StepMessageRow(run, 0, 0, "shared")])
        # The second session's impostor: "shared"'s key, a number of its own, named by a row.
        second.execute(
            "INSERT INTO messages (hash, role, body, key, seq) SELECT 'impostor', 'user', ?, "
            "md5_number_lower('shared'), max(seq) + 1 FROM messages",
            [IMPOSTOR],
        )
        second.execute(
            "INSERT INTO step_message_keys (run_id, step_idx, position, key, run_key, seq) "
            "SELECT 'b', 0, 1, key, (SELECT key FROM runs WHERE id = 'b'), seq "
            "FROM messages WHERE hash = 'impostor'"
        )
        first.execute("COMMIT")
        second.execute("COMMIT")  # gives its "shared" up
    finally:
        first.close()
        second.close()
    found = query_rows(
        db_path,
        "SELECT s.run_id, s.position, m.hash, m.body FROM step_message_keys s "
        "LEFT JOIN messages m ON m.seq = s.seq AND m.key = s.key ORDER BY 1, 2",
    )
    assert [(r["run_id"], r["position"], r["hash"], r["body"]) for r in found] == [
        ("a", 0, "shared", '"a"'),
        ("b", 0, "shared", '"a"'),  # the committed copy
        ("b", 1, "impostor", IMPOSTOR),
    ]
