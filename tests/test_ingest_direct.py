"""The one-pass activity load (correlate/ingest/activity.py, onepass.py), 64-bit keys and the migrations.

The one-pass load must store exactly what the staged path stores; it must step aside for any
file with a row to quarantine or a blank line; keys interned before schema 013 keep their ids.
"""

from __future__ import annotations

import csv
import json

import duckdb
import pytest

from connectors.base import Options
from connectors.generic import GenericConnector
from correlate.ingest import onepass
from correlate.engine import correlate
from correlate.errors import StoreError
from correlate.ingest import ingest
from correlate.store import Store, schema_files

COLS = ("event_id", "ts", "account", "target", "action", "detail", "session_id", "actor")
ROWS = [
    {"event_id": "e1", "ts": "2026-11-16T10:00:00Z", "account": "Alice", "target": "web-01",
     "action": "ssh.command", "detail": "mysql -pS3cret -u root", "session_id": "s1",
     "actor": "alice"},
    {"event_id": "e2", "ts": "2026-11-16T10:00:05+05:30", "account": "alice", "target": "WEB-01",
     "action": "ssh.command", "detail": " ls ", "session_id": "s1", "actor": ""},
    {"event_id": "e3", "ts": "1794823200000", "account": "bob", "target": "db-01",
     "action": "", "detail": "", "session_id": "", "actor": "bob"},
    {"event_id": "e1", "ts": "2026-11-16T11:00:00Z", "account": "carol", "target": "web-02",
     "action": "x", "detail": "repeat of e1: the first line wins", "session_id": "",
     "actor": ""},
    {"event_id": "", "ts": "2026-11-16T12:00:00Z", "account": "dave", "target": "web-03",
     "action": "x", "detail": "no id: a content hash", "session_id": "", "actor": ""},
]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _csv(path, rows):
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLS)
        w.writeheader()
        w.writerows(rows)
    return path


def _ingest(store, path):
    (r,) = ingest(store, GenericConnector(), "activity", [str(path)], Options())
    assert r.balanced, r
    return r


def _spy(monkeypatch):
    """Records whether each ingest took the one-pass path."""
    taken = []
    real = onepass.load

    def spy(*args):
        result = real(*args)
        taken.append(result is not None)
        return result

    monkeypatch.setattr(onepass, "load", spy)
    return taken


ROW_SQL = ("SELECT act_id, event_id, ts, account, target, action, detail, session_id, actor, "
           "key_id, line FROM activity ORDER BY act_id")


UNIQUE = [r for r in ROWS if r["detail"] != "repeat of e1: the first line wins"]
ROW_COLS = "event_id, ts, account, target, action, detail, session_id, actor, key_id"


def test_one_pass_stores_what_the_staged_path_stores(tmp_path, monkeypatch):
    taken = _spy(monkeypatch)
    direct, from_csv, staged = Store(":memory:"), Store(":memory:"), Store(":memory:")
    r1 = _ingest(direct, _jsonl(tmp_path / "a.jsonl", UNIQUE))
    r3 = _ingest(from_csv, _csv(tmp_path / "a.csv", UNIQUE))
    assert taken == [True, True]               # JSON lines and CSV: one pass
    monkeypatch.setattr(onepass, "load", lambda *args: None)
    r2 = _ingest(staged, tmp_path / "a.jsonl")
    assert (r1.read, r1.accepted, r1.duplicates, r1.quarantined) == (4, 4, 0, 0)
    assert (r2.read, r2.accepted, r2.duplicates) == (r3.read, r3.accepted, r3.duplicates) == (4, 4, 0)
    sql = f"SELECT {ROW_COLS} FROM activity ORDER BY event_id"
    rows = direct.query(sql)
    assert rows == staged.query(sql) == from_csv.query(sql)
    by_id = {r[0]: r for r in rows}
    assert "S3cret" not in by_id["e1"][5] and "[REDACTED]" in by_id["e1"][5]
    assert by_id["e2"][5] == "ls" and by_id["e2"][7] is None           # trimmed, '' -> NULL
    assert by_id["e1"][8] == by_id["e2"][8]                            # same key, any case
    assert direct.query("SELECT * FROM activity_keys ORDER BY 1") == \
        staged.query("SELECT * FROM activity_keys ORDER BY 1")
    # one-pass rows: no line, an id hashed from (source, event_id) above the counted ones
    ids = direct.query("SELECT act_id, line FROM activity")
    assert all(i >= 1 << 62 and line is None for i, line in ids) and len({i for i, _ in ids}) == 4
    assert staged.query("SELECT min(act_id), max(act_id) FROM activity") == [(1, 4)]
    # staged rows added after hashed ones still count up from the counted ids
    _ingest(direct, _jsonl(tmp_path / "b.jsonl", [{**UNIQUE[0], "event_id": "c1"}]))
    assert direct.scalar("SELECT act_id FROM activity WHERE event_id = 'c1'") == 1


def test_a_repeated_event_id_takes_the_staged_path_where_the_first_line_wins(tmp_path,
                                                                             monkeypatch):
    taken = _spy(monkeypatch)
    store = Store(":memory:")
    r = _ingest(store, _jsonl(tmp_path / "a.jsonl", ROWS))
    assert taken == [False]
    assert (r.read, r.accepted, r.duplicates) == (5, 4, 1)
    assert store.query("SELECT account, line FROM activity WHERE event_id = 'e1'") == [
        ("Alice", 1)]


def test_one_pass_steps_aside_for_quarantine(tmp_path, monkeypatch):
    taken = _spy(monkeypatch)
    store = Store(":memory:")
    bad = _jsonl(tmp_path / "bad.jsonl", ROWS[:2] + [{"event_id": "x", "ts": "2026-11-16T10:00:00",
                                                       "account": "a", "target": "h"}])
    r = _ingest(store, bad)
    assert (r.read, r.accepted, r.quarantined) == (3, 2, 1)
    assert store.query("SELECT line FROM quarantine") == [(3,)]
    assert taken == [False]
    assert store.scalar("SELECT count(*) FROM ingest_log") == 1        # nothing left behind


def test_one_pass_counts_rows_stored_before_as_duplicates(tmp_path, monkeypatch):
    taken = _spy(monkeypatch)
    store = Store(":memory:")
    _ingest(store, _jsonl(tmp_path / "a.jsonl", UNIQUE[:3]))
    r = _ingest(store, _jsonl(tmp_path / "b.jsonl", UNIQUE[1:]))
    assert taken == [True, True]
    assert (r.read, r.accepted, r.duplicates) == (3, 1, 2)   # e2, e3 stored before
    assert store.scalar("SELECT count(*) FROM activity") == 4
    assert store.scalar("SELECT count(DISTINCT act_id) FROM activity") == 4
    again = _ingest(store, tmp_path / "b.jsonl")
    assert again.skipped


def test_one_pass_leaves_a_clashing_id_to_the_staged_path(tmp_path, monkeypatch):
    taken = _spy(monkeypatch)
    store = Store(":memory:")
    (h,) = store.con.execute("SELECT ((hash('generic', 'e3') >> 2) | (1::BIGINT << 62))"
                             "::BIGINT").fetchone()
    _ingest(store, _jsonl(tmp_path / "a.jsonl", UNIQUE[:1]))
    store.con.execute("UPDATE activity SET act_id = ?", [h])           # a forged clash
    r = _ingest(store, _jsonl(tmp_path / "b.jsonl", UNIQUE[1:3]))
    assert taken == [True, False] and r.accepted == 2
    assert store.scalar("SELECT count(DISTINCT act_id) FROM activity") == 3


def test_keys_interned_before_013_keep_their_ids(tmp_path):
    store = Store(":memory:")
    store.con.execute("INSERT INTO activity_keys VALUES (7, 'alice', 'web-01')")
    _ingest(store, _jsonl(tmp_path / "a.jsonl", ROWS[:3]))
    keys = dict(store.query("SELECT event_id, key_id FROM activity"))
    assert keys["e1"] == keys["e2"] == 7
    assert keys["e3"] > 2 ** 20
    assert store.scalar("SELECT count(*) FROM activity_keys") == 2


@pytest.mark.parametrize("one_pass", [True, False], ids=["one-pass", "staged"])
def test_activity_keys_hold_each_pair_once_without_indexes(tmp_path, monkeypatch, one_pass):
    """Schema 035 dropped activity_keys' PRIMARY KEY and UNIQUE: intern_keys keeps them."""
    if not one_pass:
        monkeypatch.setattr(onepass, "load", lambda *args: None)
    store = Store(":memory:")
    _ingest(store, _jsonl(tmp_path / "a.jsonl", UNIQUE[:3]))
    later = [dict(r, event_id=r["event_id"] + "b", account=r["account"].upper(),
                  target=r["target"].lower()) for r in UNIQUE[:3]]
    later.append(dict(UNIQUE[0], event_id="n1", account="erin"))
    _ingest(store, _jsonl(tmp_path / "b.jsonl", later))
    _ingest(store, _jsonl(tmp_path / "c.jsonl", [dict(r, event_id=r["event_id"] + "c")
                                                 for r in later]))
    assert store.query("SELECT count(*), count(DISTINCT key_id), "
                       "count(DISTINCT (account_norm, target_norm)) FROM activity_keys") == [
        (3, 3, 3)]
    assert store.scalar("SELECT count(*) FROM activity a ANTI JOIN activity_keys k "
                        "USING (key_id)") == 0


def test_a_key_collision_is_refused_and_nothing_is_stored(tmp_path):
    store = Store(":memory:")
    (h,) = store.con.execute("SELECT (hash('bob', 'db-01') >> 1)::BIGINT").fetchone()
    store.con.execute("INSERT INTO activity_keys VALUES (?, 'someone', 'else')", [h])
    with pytest.raises(StoreError, match="key collision"):
        _ingest(store, _jsonl(tmp_path / "a.jsonl", ROWS[:3]))
    assert store.scalar("SELECT count(*) FROM activity") == 0
    assert store.scalar("SELECT count(*) FROM ingest_log") == 0


def _old_store(path, upto: int):
    """A database at schema version `upto`, as an older pamcorr left it."""
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, "
                "applied TIMESTAMPTZ NOT NULL)")
    for version, name, sql in schema_files():
        if version <= upto:
            con.execute(sql)
            con.execute("INSERT INTO schema_version VALUES (?, ?, now())", [version, name])
    return con


def test_findings_of_runs_before_012_stay_readable(tmp_path):
    db = tmp_path / "old.duckdb"
    con = _old_store(db, 11)
    con.execute("INSERT INTO findings VALUES (1, 10, 'unapproved', 'FAIL', NULL, NULL, NULL, NULL, "
                "'no applicable approval', NULL)")
    con.execute("INSERT INTO activity_keys VALUES (3, 'alice', 'web-01')")
    con.close()
    store = Store(str(db))
    assert store.query("SELECT run_id, act_id, verdict, status, reason FROM findings") == [
        (1, 10, "unapproved", "FAIL", "no applicable approval")]
    assert store.query("SELECT * FROM activity_keys") == [(3, "alice", "web-01")]
    assert dict(store.query("SELECT column_name, data_type FROM information_schema.columns "
                            "WHERE table_name = 'activity' AND column_name = 'key_id'")) == {
        "key_id": "BIGINT"}
    _ingest(store, _jsonl(tmp_path / "a.jsonl", ROWS[:2]))
    run = correlate(store)
    assert store.query("SELECT DISTINCT verdict FROM findings WHERE run_id = ?", [run]) == [
        ("unapproved",)]
    assert store.scalar("SELECT count(*) FROM findings") == 3


def test_one_pass_reads_gzip_and_blank_lines(tmp_path, monkeypatch):
    import gzip

    taken = _spy(monkeypatch)
    store = Store(":memory:")
    gz = tmp_path / "a.jsonl.gz"
    gz.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in UNIQUE[:3]).encode()))
    blank = tmp_path / "b.jsonl"
    blank.write_text(json.dumps(UNIQUE[3]) + "\n\n \n" + json.dumps({**UNIQUE[3], "event_id": "e9"}))
    assert _ingest(store, gz).accepted == 3
    r = _ingest(store, blank)
    assert (r.read, r.accepted) == (2, 2)          # blank lines are not records
    assert taken == [True, True]


def test_csv_read_by_duckdb_keeps_physical_lines(tmp_path):
    """CSV goes through DuckDB's reader unless a record spans lines or a line is blank; either
    way stored and quarantined lines are the file's."""
    head = "approval_id,account,target,start,end,ticket\n"
    good = "A{0},alice,web-0{0},2026-11-16T10:00:00Z,2026-11-16T12:00:00Z,CHG-{0}\n"
    store = Store(":memory:")
    plain = tmp_path / "a.csv"
    plain.write_text(head + "".join(good.format(i) for i in range(1, 4))
                     + "A9,bob,web-09,2026-11-16T10:00:00,2026-11-16T12:00:00Z,\n")
    (r,) = ingest(store, GenericConnector(), "approvals", [str(plain)], Options())
    assert (r.read, r.accepted, r.quarantined) == (4, 3, 1)
    assert store.query("SELECT approval_id, line FROM approvals ORDER BY line") == [
        ("A1", 2), ("A2", 3), ("A3", 4)]
    assert store.query("SELECT line FROM quarantine") == [(5,)]
    spans = tmp_path / "b.csv"
    spans.write_text(head + good.format(4) + '"A5",carol,web-05,2026-11-16T10:00:00Z,'
                     '2026-11-16T12:00:00Z,"CHG-5\nsee above"\n\n' + good.format(6))
    (r,) = ingest(store, GenericConnector(), "approvals", [str(spans)], Options())
    assert (r.read, r.accepted) == (3, 3)
    assert store.query("SELECT approval_id, line FROM approvals WHERE ingest_id = 2 "
                       "ORDER BY line") == [("A4", 2), ("A5", 3), ("A6", 6)]


def test_store_draws_no_progress_bar_on_stdout():
    """Long statements must not write DuckDB's progress bar into piped CSV/JSON output."""
    store = Store(":memory:")
    assert store.scalar("SELECT current_setting('enable_progress_bar')") is False


@pytest.mark.parametrize("source", ["cloudtrail", "generic"])
def test_a_cut_or_false_gzip_is_an_error_naming_the_file(tmp_path, source):
    import gzip

    from connectors.registry import get_connector
    from correlate.errors import InputError

    data = gzip.compress(json.dumps({"Records": [{"eventTime": "2026-11-16T10:00:00Z"}] * 200})
                         .encode())
    cut, false = tmp_path / "cut.json.gz", tmp_path / "false.json.gz"
    cut.write_bytes(data[: len(data) // 2])
    false.write_bytes(b"not gzip at all")
    store = Store(":memory:")
    kind = "activity" if source == "generic" else None
    for path in (cut, false):
        with pytest.raises(InputError, match="cannot read") as err:
            ingest(store, get_connector(source), kind, [str(path)], Options())
        assert path.name in str(err.value)
    assert store.scalar("SELECT count(*) FROM ingest_log") == 0
