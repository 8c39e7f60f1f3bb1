"""Schema migrations (correlate/store.py migrate): all pending files in one transaction."""

from __future__ import annotations

import pytest

from correlate import store as store_mod
from correlate.errors import StoreError
from correlate.store import Store


def test_a_new_store_has_every_schema_file_applied_once(tmp_path):
    with Store(tmp_path / "s.duckdb") as s:
        versions = [v for (v,) in s.query("SELECT version FROM schema_version ORDER BY version")]
    assert versions == [v for v, _, _ in store_mod.schema_files()]
    with Store(tmp_path / "s.duckdb") as s:          # reopening applies nothing again
        assert s.migrate() == []


def _with_new_files(tmp_path, monkeypatch, *sqls: str) -> tuple:
    """A store at today's version, then schema_files() offering `sqls` as the next versions.
    Returns (the store's path, today's last version)."""
    db = tmp_path / "s.duckdb"
    Store(db).close()
    files = store_mod.schema_files()
    last = files[-1][0]
    extra = [(last + i, f"{last + i}_new.sql", sql) for i, sql in enumerate(sqls, 1)]
    monkeypatch.setattr(store_mod, "schema_files", lambda: files + extra)
    return db, last


def test_a_failing_migration_leaves_the_store_at_its_old_version(tmp_path, monkeypatch):
    db, last = _with_new_files(tmp_path, monkeypatch, "CREATE TABLE migrated_ok (x INTEGER);",
                               "CREATE TABLE broken (x NOT_A_TYPE);")
    with pytest.raises(StoreError):
        Store(db)
    monkeypatch.undo()
    with Store(db) as s:
        assert s.scalar("SELECT max(version) FROM schema_version") == last
        assert s.scalar("SELECT count(*) FROM duckdb_tables() "
                        "WHERE table_name = 'migrated_ok'") == 0


def test_pending_migrations_are_applied_in_order_and_reported(tmp_path, monkeypatch):
    db, last = _with_new_files(tmp_path, monkeypatch, "CREATE TABLE mig_a (x INTEGER);",
                               "INSERT INTO mig_a VALUES (1);")
    with Store(db) as s:
        assert s.scalar("SELECT count(*) FROM mig_a") == 1
        assert s.migrate() == []
        assert [v for (v,) in s.query("SELECT version FROM schema_version "
                                      "WHERE version > ? ORDER BY version", [last])] \
            == [last + 1, last + 2]
