"""Lake store names: how `--db ducklake:…` is read, and that a password never stays in it."""

from __future__ import annotations

import os

import pytest

from traces.errors import DatabaseError
from traces.redaction import REDACTED, redact_connection_secrets
from traces.store.database import resolve_db_path
from traces.store.lake import LakeStore, parse


@pytest.fixture(autouse=True)
def _no_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.delenv("TRACES_DATA_PATH", raising=False)


@pytest.mark.parametrize(
    ("name", "catalog", "password"),
    [
        (
            "ducklake:postgres:dbname=traces host=db.lan user=rec password=s3cr3t-pw port=5433",
            "postgres:dbname=traces host=db.lan user=rec port=5433",
            "s3cr3t-pw",
        ),
        (
            "ducklake:postgres:dbname=traces password = 'a b\\'c' user=rec",
            "postgres:dbname=traces user=rec",
            "a b'c",
        ),
        (
            "ducklake:postgres:postgresql://rec:p%40ss@db.lan:5433/traces",
            "postgres:postgresql://rec@db.lan:5433/traces",
            "p@ss",
        ),
        (
            "ducklake:postgres:dbname=traces host=/run/pg",
            "postgres:dbname=traces host=/run/pg",
            None,
        ),
    ],
)
def test_password_moves_out_of_the_name(name: str, catalog: str, password: str | None) -> None:
    store = parse(name)
    assert store.catalog == catalog
    assert str(store) == "ducklake:" + catalog
    assert os.environ.get("PGPASSWORD") == password
    if password:
        assert password not in repr(store)


def test_kinds_and_data_path(tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    sqlite = resolve_db_path("ducklake:sqlite:cat.sqlite", "data")
    assert isinstance(sqlite, LakeStore)
    assert (sqlite.kind, str(sqlite.catalog_file)) == ("sqlite", "cat.sqlite")
    # Made absolute, so that every writer (wherever started) writes to the same place.
    assert sqlite.data_path == os.path.join(os.fspath(tmp_path), "data") + os.sep
    duck = resolve_db_path("ducklake:meta.ducklake")
    assert isinstance(duck, LakeStore)
    assert (duck.kind, duck.data_path) == ("duckdb", None)
    monkeypatch.setenv("TRACES_DATA_PATH", "s3://bucket/traces")
    monkeypatch.setenv("TRACES_DB", "ducklake:postgres:dbname=t")
    from_env = resolve_db_path(None)
    assert isinstance(from_env, LakeStore)
    assert (from_env.kind, from_env.data_path) == ("postgres", "s3://bucket/traces/")
    assert not isinstance(resolve_db_path("plain.duckdb"), LakeStore)


@pytest.mark.parametrize("name", ["ducklake:", "ducklake:postgres:", "ducklake:sqlite:"])
def test_a_name_without_catalog_is_refused(name: str) -> None:
    with pytest.raises(DatabaseError, match="name the catalog"):
        parse(name)


@pytest.mark.parametrize(
    "name", ["ducklake:postgre:dbname=t", "ducklake:sqlite3:cat.sqlite", "ducklake:nope:x"]
)
def test_an_unknown_catalog_type_is_refused(name: str) -> None:
    # DuckDB would take the type for an extension to load: refused by name instead.
    with pytest.raises(DatabaseError, match="unknown catalog type"):
        parse(name)


def test_connection_passwords_are_redacted() -> None:
    text = (
        'Unable to connect to Postgres at "dbname=t user=u password=hunter2secret": failed; '
        "also postgresql://u:hunter2secret@h/t"
    )
    out = redact_connection_secrets(text)
    assert "hunter2secret" not in out
    assert out.count(REDACTED) == 2
    assert redact_connection_secrets("no secret, host=/tmp") == "no secret, host=/tmp"
