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


def _limit(store) -> str:
    return store.con.execute("SELECT current_setting('memory_limit')").fetchone()[0]


def _limits_seen_by_the_groups(monkeypatch) -> list[str]:
    """memory_limit as each group statement of a run finds it."""
    seen, run = [], engine._run

    def spy(con, statement, params):
        if statement in engine.GROUP_STATEMENTS:
            seen.append(con.execute("SELECT current_setting('memory_limit')").fetchone()[0])
        return run(con, statement, params)
    monkeypatch.setattr(engine, "_run", spy)
    return seen


def test_the_groups_run_under_the_cap_in_a_file_store_then_the_limit_is_put_back(
        world, tmp_path, monkeypatch):
    store = _world(world).store(db=str(tmp_path / "s.duckdb"))
    before = _limit(store)
    seen = _limits_seen_by_the_groups(monkeypatch)
    correlate(store)
    capped = duckdb.connect()
    capped.execute(f"SET memory_limit = '{engine.GROUPS_MEMORY_LIMIT}'")
    cap = capped.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    assert seen and set(seen) == {cap} != {before}
    assert _limit(store) == before
    store.close()


def test_a_limit_the_user_set_is_never_changed_and_memory_stores_are_not_capped(
        world, tmp_path, monkeypatch):
    monkeypatch.setenv("PAMCORR_MEMORY_LIMIT", "3GB")
    store = _world(world).store(db=str(tmp_path / "s.duckdb"))
    mine = _limit(store)
    seen = _limits_seen_by_the_groups(monkeypatch)
    correlate(store)
    assert seen and set(seen) == {mine} and _limit(store) == mine
    store.close()
    monkeypatch.delenv("PAMCORR_MEMORY_LIMIT")
    memory = world.store()
    before = _limit(memory)
    seen.clear()
    correlate(memory)
    assert seen and set(seen) == {before}
