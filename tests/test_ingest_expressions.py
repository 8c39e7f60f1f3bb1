"""Cheaper ingest steps store exactly what their plain forms store (issue 11).

Pinned here: the trim rule of every text field (connectors.base.nonblank_sql, against its plain
form for every short string, so a cheaper rewrite of it must give the same values); the CSV
upsert's fast path into an empty table (correlate/ingest/load.py); the (account, target) keys
interned from the distinct spellings (correlate/ingest/activity.py NEW_KEYS).
"""

from __future__ import annotations

import itertools
import json

import duckdb
import pytest

from connectors.base import Options, nonblank_sql
from connectors.generic import GenericConnector
from correlate.errors import StoreError
from correlate.ingest import ingest
from correlate.ingest.activity import intern_keys
from correlate.store import Store
from tests.test_ingest_direct import _spy

# the form nonblank_sql replaced (issue 11): the reference for every string
PLAIN = ("(CASE WHEN x LIKE ' %' OR x LIKE '% ' THEN nullif(trim(x), '') "
         "ELSE nullif(x, '') END)")
# a space, what trim also strips (U+00A0, U+3000), what it keeps (tab, newline, NUL, U+200B),
# the bytes either side of ' ' and '!', a letter and a non-ASCII letter
EDGES = [" ", "\u00a0", "\u3000", "\t", "\n", "\x00", "\x1f", "!", "\u200b", "a", "\u00c9"]


def test_nonblank_sql_equals_the_plain_trim_rule_for_every_short_string():
    texts = [None] + ["".join(p) for n in range(5) for p in itertools.product(EDGES, repeat=n)]
    con = duckdb.connect()
    con.execute("CREATE TABLE t (i INTEGER, x VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate(texts)))
    differ = con.execute(f"SELECT x, {PLAIN}, {nonblank_sql('x')} FROM t "
                         f"WHERE {PLAIN} IS DISTINCT FROM {nonblank_sql('x')} LIMIT 5").fetchall()
    assert differ == []
    assert len(texts) > 16000


def test_fields_are_trimmed_of_spaces_only_and_blank_fields_stored_as_null(tmp_path, monkeypatch):
    rows = [{"event_id": " e1 ", "ts": "2026-11-16T10:00:00Z", "account": "   ", "target": "t"},
            {"event_id": "e2", "ts": "2026-11-16T10:00:00Z", "account": "\talice\n",
             "target": " db-01\u00a0", "action": "\u00a0x", "detail": "  ", "session_id": "s1 "}]
    path = tmp_path / "a.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows[1:]))
    taken, store = _spy(monkeypatch), Store(":memory:")
    (r,) = ingest(store, GenericConnector(), "activity", [str(path)], Options())
    assert taken == [True] and r.accepted == 1
    assert store.query("SELECT event_id, account, target, action, detail, session_id "
                       "FROM activity") == [("e2", "\talice\n", "db-01", "\u00a0x", None, "s1")]
    # a required field of only spaces is missing: quarantined (the staged path)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (r,) = ingest(Store(":memory:"), GenericConnector(), "activity", [str(path)], Options())
    assert (r.read, r.accepted, r.quarantined) == (2, 1, 1)


def test_non_ascii_upper_case_account_and_target_share_one_key(tmp_path):
    rows = [{"event_id": "e1", "ts": "2026-11-16T10:00:00Z", "account": "ÅSA", "target": "DB-Ü"},
            {"event_id": "e2", "ts": "2026-11-16T10:00:01Z", "account": "åsa", "target": "db-ü"}]
    path = tmp_path / "a.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    store = Store(":memory:")
    ingest(store, GenericConnector(), "activity", [str(path)], Options())
    assert store.scalar("SELECT count(DISTINCT key_id) FROM activity") == 1
    assert store.query("SELECT account_norm, target_norm FROM activity_keys") == [("åsa", "db-ü")]


APPROVALS = ("approval_id,account,target,start,end\n"
             "A1,alice,web-01,2026-11-16T10:00:00Z,2026-11-16T11:00:00Z\n"
             "A2,bob,db-01,2026-11-16T10:00:00Z,2026-11-16T11:00:00Z\n"
             "A1,alice,web-02,2026-11-16T10:00:00Z,2026-11-16T12:00:00Z\n")


def _approvals(store, path):
    (r,) = ingest(store, GenericConnector(), "approvals", [str(path)], Options())
    assert r.balanced, r
    return (r.read, r.accepted, r.duplicates)


def test_approvals_into_a_fresh_store_equal_the_upsert_into_a_used_one(tmp_path):
    """The fast path (nothing stored yet) keeps the latest line per id, as the upsert does;
    a store holding some of the ids takes the upsert (duplicates and replacements)."""
    (tmp_path / "a.csv").write_text(APPROVALS)
    (tmp_path / "before.csv").write_text("".join(APPROVALS.splitlines(True)[:3]))
    fresh, used = Store(":memory:"), Store(":memory:")
    assert _approvals(used, tmp_path / "before.csv") == (2, 2, 0)
    assert _approvals(fresh, tmp_path / "a.csv") == (3, 2, 1)
    assert _approvals(used, tmp_path / "a.csv") == (3, 1, 2)    # A2 stored as is, A1 replaced
    sql = ("SELECT approval_id, account, target, start_ts, end_ts, source, line FROM approvals "
           "ORDER BY 1")
    assert fresh.query(sql) == used.query(sql)
    assert [r[:3] + r[-1:] for r in fresh.query(sql)] == [("A1", "alice", "web-02", 4),
                                                          ("A2", "bob", "db-01", 3)]


def _rows_with_key(store, key: int, pairs):
    store.con.executemany(
        "INSERT INTO activity (act_id, source, event_id, ts, account, target, key_id, ingest_id) "
        "VALUES (?, 'generic', ?, TIMESTAMPTZ '2026-11-16 10:00:00+00', ?, ?, ?, 7)",
        [(i, f"e{i}", a, t, key) for i, (a, t) in enumerate(pairs)])


def test_new_keys_take_one_lower_case_pair_per_key_and_refuse_two():
    """intern_keys reads the distinct spellings, then lower case: a key whose rows spell one
    pair in several cases is that pair; two pairs under one key (a hash collision) are refused,
    however many rows spell each."""
    store = Store(":memory:")
    _rows_with_key(store, 42, [("ÅSA", "DB-Ü"), ("åsa", "db-ü"), ("Åsa", "Db-Ü"), ("ÅSA", "DB-Ü")])
    intern_keys(store.con, 7)
    assert store.query("SELECT * FROM activity_keys") == [(42, "åsa", "db-ü")]
    store = Store(":memory:")
    _rows_with_key(store, 42, [("alice", "db-01")] * 3 + [("bob", "db-01")] + [("ALICE", "DB-01")])
    with pytest.raises(StoreError, match="key collision"):
        intern_keys(store.con, 7)
    store = Store(":memory:")
    _rows_with_key(store, 42, [("alice", "db-01"), ("alice", "db-02")])
    with pytest.raises(StoreError, match="key collision"):
        intern_keys(store.con, 7)
