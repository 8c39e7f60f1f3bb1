"""correlate's scratch tables: never left behind, and the store's checkpoint setting restored
(the engine raises it while it writes only scratch; docs/performance.md, Session 5)."""

from __future__ import annotations

import duckdb
import pytest

import correlate.engine as engine
from correlate.engine import correlate
from correlate.errors import StoreError

S, E = "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z"


def _world(world):
    world.approval("A", S, E)
    world.action("in", "2026-11-16T11:00:00Z")
    world.action("out", "2026-11-16T15:00:00Z")
    return world


def _threshold(store) -> str:
    return store.con.execute("SELECT current_setting('checkpoint_threshold')").fetchone()[0]


def _temp_tables(store) -> list[str]:
    return [t for (t,) in store.con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE temporary").fetchall()]


def test_correlate_leaves_no_scratch_and_the_threshold_as_it_was(world):
    store = _world(world).store()
    store.con.execute("SET checkpoint_threshold = '32MB'")
    before, tables = _threshold(store), _temp_tables(store)     # ingest's own stay
    run = correlate(store)
    assert _threshold(store) == before
    assert _temp_tables(store) == tables
    assert store.scalar("SELECT count(*) FROM findings WHERE run_id = ?", [run]) == 2


def test_the_run_commit_checkpoints_the_store_as_before(world, tmp_path):
    """With every commit checkpointing (threshold 0), the run's own commit leaves no WAL: the
    raised threshold is never in force when the run commits."""
    db = tmp_path / "s.duckdb"
    store = _world(world).store(db=str(db))
    store.con.execute("SET checkpoint_threshold = '0b'")
    correlate(store)
    wal = db.with_name(db.name + ".wal")
    assert not wal.exists() or wal.stat().st_size == 0
    store.close()


@pytest.mark.parametrize("where", ["verdicts", "detections"])
def test_a_failed_run_restores_the_threshold_and_drops_its_scratch(world, monkeypatch, where):
    store = _world(world).store()
    store.con.execute("SET checkpoint_threshold = '32MB'")
    before, tables = _threshold(store), _temp_tables(store)

    def broken(*args, **kwargs):
        raise duckdb.InvalidInputException("detections broke")

    if where == "verdicts":
        monkeypatch.setattr(engine, "VERDICT_STATEMENTS",
                            engine.VERDICT_STATEMENTS + ["SELECT error('verdicts broke')"])
    else:
        monkeypatch.setattr(engine, "run_detections", broken)
    with pytest.raises(StoreError, match=f"{where} broke"):
        correlate(store)
    assert _threshold(store) == before
    assert _temp_tables(store) == tables
    assert store.scalar("SELECT count(*) FROM runs") == 0
