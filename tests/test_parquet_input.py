"""Generic kinds read from Parquet: same columns, counts, quarantine (by row) and idempotence."""

from __future__ import annotations

import json

import duckdb

from connectors.base import Options
from connectors.generic import GenericConnector
from correlate.ingest import ingest
from correlate.store import Store


def write_parquet(path, select_sql: str) -> None:
    """A Parquet file holding what `select_sql` returns (DuckDB writes it: no pyarrow needed)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"COPY ({select_sql}) TO '{path}' (FORMAT parquet)")
    con.close()


def _ingest(store, kind, path, **opts):
    (r,) = ingest(store, GenericConnector(), kind, [str(path)], Options(**opts))
    assert r.balanced
    return r


def test_activity_parquet_typed_timestamps_and_missing_optional_columns(tmp_path):
    path = tmp_path / "act.parquet"
    write_parquet(path, "SELECT 'e' || i AS event_id, TIMESTAMPTZ '2026-01-05 10:00:00+00' "
                        "+ i * INTERVAL 1 MINUTE AS ts, 'Alice' AS account, 'db-1' AS target, "
                        "'sudo' AS action, 7 AS unrelated FROM range(3) t(i)")
    store = Store(":memory:")
    r = _ingest(store, "activity", path)
    assert (r.read, r.accepted, r.quarantined) == (3, 3, 0)
    rows = store.query("SELECT event_id, ts, account, target, action, detail FROM activity "
                       "ORDER BY event_id")
    assert rows[0][0] == "e0" and rows[2][1].isoformat() == "2026-01-05T10:02:00+00:00"
    assert rows[0][2:] == ("Alice", "db-1", "sudo", None)


def test_bad_parquet_row_is_quarantined_with_its_row_number_and_record(tmp_path):
    path = tmp_path / "act.parquet"
    write_parquet(path, "SELECT * FROM (VALUES ('e1', '2026-01-05T10:00:00Z', 'a', 't'), "
                        "('e2', 'yesterday', 'a', 't'), ('e3', '2026-01-05T11:00:00Z', NULL, 't')) "
                        "v(event_id, ts, account, target)")
    store = Store(":memory:")
    r = _ingest(store, "activity", path)
    assert (r.read, r.accepted, r.quarantined) == (3, 1, 2)
    q = store.query("SELECT line, reason, raw FROM quarantine ORDER BY line")
    assert [x[0] for x in q] == [2, 3]
    assert "missing required field: account" in q[1][1]
    assert json.loads(q[0][2])["ts"] == "yesterday"


def test_parquet_reingest_is_a_no_op_and_new_file_counts_duplicates(tmp_path):
    sql = ("SELECT 'e' || i AS event_id, '2026-01-05T10:00:00Z' AS ts, 'a' AS account, "
           "'t' AS target FROM range(5) t(i)")
    write_parquet(tmp_path / "a.parquet", sql)
    write_parquet(tmp_path / "b.parquet", sql + " UNION ALL SELECT 'new', '2026-01-05T12:00:00Z', "
                                               "'a', 't'")
    store = Store(":memory:")
    assert _ingest(store, "activity", tmp_path / "a.parquet").accepted == 5
    assert _ingest(store, "activity", tmp_path / "a.parquet").skipped
    r = _ingest(store, "activity", tmp_path / "b.parquet")
    assert (r.read, r.accepted, r.duplicates) == (6, 1, 5)


def test_approvals_and_identities_from_parquet(tmp_path):
    write_parquet(tmp_path / "ap.parquet",
                  "SELECT 'A1' AS approval_id, 'alice' AS account, 'db-*' AS target, "
                  "TIMESTAMPTZ '2026-01-05 09:00:00+00' AS start, "
                  "TIMESTAMPTZ '2026-01-05 12:00:00+00' AS \"end\", 'CHG1' AS ticket")
    write_parquet(tmp_path / "id.parquet", "SELECT 'CORP\\alice' AS alias, 'alice' AS identity")
    store = Store(":memory:")
    assert _ingest(store, "approvals", tmp_path / "ap.parquet").accepted == 1
    assert _ingest(store, "identities", tmp_path / "id.parquet").accepted == 1
    assert store.query("SELECT approval_id, kind, status, ticket FROM approvals") == [
        ("A1", "standard", "approved", "CHG1")]
    assert store.query("SELECT alias_norm, identity FROM identities") == [("corp\\alice", "alice")]
