"""Which requests of a suite a provider has answered already: what a replay skips.

A replayed request is one run (origin `replay`, task = the suite's name) whose settings name
the request (`replay.request_hash`, `replay.copy`), the repeat and the streaming mode. It
counts as answered once its run completed (the host sent a response); a failed run is sent
again by the next replay, and kept.
"""

from __future__ import annotations

from pathlib import Path

from traces.errors import DatabaseError
from traces.store.database import Store, open_for_reading

AnswerKey = tuple[str, int, int, bool]
"""(request_hash, copy, repeat index, streamed): one answer a replay asks for."""

_ANSWERED = """
SELECT json_extract_string(settings, '$.replay.request_hash'),
       CAST(json_extract(settings, '$.replay.copy') AS INTEGER),
       CAST(json_extract(settings, '$.replay.repeat_index') AS INTEGER),
       CAST(json_extract(settings, '$.stream') AS BOOLEAN)
FROM runs
WHERE origin = 'replay' AND status = 'completed' AND provider = ? AND model = ? AND task = ?
"""


def answered(db_path: Store, provider: str, model: str, suite: str) -> set[AnswerKey]:
    """The answers of `provider`'s `model` to suite `suite` stored in `db_path` (none when
    there is no database yet)."""
    if isinstance(db_path, Path) and not db_path.exists():
        return set()
    try:
        conn = open_for_reading(db_path)
    except DatabaseError:
        if isinstance(db_path, Path):
            raise  # a file that is there but not ours, or locked: the user must hear it
        return set()  # a lake store not created yet
    with conn:
        rows = conn.execute(_ANSWERED, [provider, model, suite]).fetchall()
    return {(str(h), int(c), int(i), bool(s)) for h, c, i, s in rows if h is not None}
