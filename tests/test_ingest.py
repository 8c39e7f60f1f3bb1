"""Generic ingest: counts add up, quarantine reasons and lines, idempotence, zones, redaction."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from connectors.base import Options
from connectors.generic import GenericConnector
from correlate.errors import InputError, StoreLockedError
from correlate.ingest import ingest
from correlate.store import Store

ROOT = Path(__file__).resolve().parents[1]


def _ingest(store, kind, path, **opts):
    (r,) = ingest(store, GenericConnector(), kind, [str(path)], Options(**opts))
    assert r.balanced
    return r


def test_counts_add_up_and_quarantine_names_lines(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text("\n".join([
        json.dumps({"event_id": "1", "ts": "2026-11-16T10:00:00Z", "account": "a", "target": "h"}),
        "{not json",
        "",
        json.dumps({"event_id": "2", "ts": "2026-11-16T10:00:00", "account": "a", "target": "h"}),
        json.dumps({"event_id": "3", "ts": "2026-11-16T10:00:00Z", "target": "h"}),
        json.dumps({"event_id": "1", "ts": "2026-11-16T10:00:00Z", "account": "a", "target": "h"}),
        json.dumps({"event_id": "4", "ts": "yesterday", "account": "a", "target": "h"}),
        "[1, 2]",
    ]) + "\n")
    store = Store(":memory:")
    r = _ingest(store, "activity", path)
    assert (r.read, r.accepted, r.quarantined, r.duplicates) == (7, 1, 5, 1)
    got = dict(store.query("SELECT line, reason FROM quarantine ORDER BY line"))
    assert got[2] == "invalid JSON"
    assert got[4].startswith("timestamp without time zone in ts")
    assert got[5] == "missing required field: account"
    assert got[7].startswith("unparseable timestamp in ts")
    assert got[8] == "JSON value is not an object"


def test_reingest_same_file_adds_nothing(tmp_path):
    store = Store(str(tmp_path / "db.duckdb"))
    path = ROOT / "sample_data" / "approvals.csv"
    first = _ingest(store, "approvals", path)
    n = store.scalar("SELECT count(*) FROM approvals")
    again = _ingest(store, "approvals", path)
    assert again.skipped and store.scalar("SELECT count(*) FROM approvals") == n == first.accepted


def test_reingest_same_rows_in_new_file_counts_duplicates(tmp_path):
    rows = [json.dumps({"event_id": str(i), "ts": "2026-11-16T10:00:00Z", "account": "a",
                        "target": "h"}) for i in range(5)]
    (tmp_path / "a.jsonl").write_text("\n".join(rows) + "\n")
    (tmp_path / "b.jsonl").write_text("\n".join(rows[::-1]) + "\n\n")
    store = Store(":memory:")
    assert _ingest(store, "activity", tmp_path / "a.jsonl").accepted == 5
    r = _ingest(store, "activity", tmp_path / "b.jsonl")
    assert (r.read, r.accepted, r.duplicates) == (5, 0, 5)
    assert store.scalar("SELECT count(*) FROM activity") == 5


def test_zoneless_timestamp_accepted_with_configured_zone(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"event_id": "1", "ts": "2026-11-16T10:00:00", "account": "a",
                                "target": "h"}) + "\n")
    store = Store(":memory:")
    r = _ingest(store, "activity", path, tz="Asia/Kolkata")
    assert r.accepted == 1
    assert str(store.scalar("SELECT ts FROM activity")) == "2026-11-16 04:30:00+00:00"


def test_unknown_zone_is_a_clear_error():
    with pytest.raises(InputError, match="unknown time zone"):
        Options(tz="Mars/Olympus")


def test_csv_missing_required_column_names_file_and_line(tmp_path):
    path = tmp_path / "approvals.csv"
    path.write_text("approval_id,account,start,end\nA,alice,2026-11-16T10:00:00Z,2026-11-16T11:00:00Z\n")
    with pytest.raises(InputError, match=r"approvals.csv:1: .*target"):
        _ingest(Store(":memory:"), "approvals", path)


def test_csv_quarantine_lines_count_multiline_cells(tmp_path):
    path = tmp_path / "approvals.csv"
    path.write_text(
        "approval_id,account,target,start,end,ticket\n"
        'A,alice,h,2026-11-16T10:00:00Z,2026-11-16T11:00:00Z,"CHG-1\nsecond line"\n'
        "B,alice,h,2026-11-16T12:00:00Z,2026-11-16T11:00:00Z,CHG-1\n"
        "C,alice,h,2026-11-16T12:00:00Z,2026-11-16T13:00:00Z,CHG-1,extra\n")
    store = Store(":memory:")
    r = _ingest(store, "approvals", path)
    assert (r.read, r.accepted, r.quarantined) == (3, 1, 2)
    assert store.query("SELECT line, reason FROM quarantine ORDER BY line") == [
        (4, "end before start"), (5, "expected 6 fields, found 7")]


def test_gzip_and_epoch_ms(tmp_path):
    path = tmp_path / "a.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(json.dumps({"event_id": "1", "ts": 1794823200000, "account": "a",
                             "target": "h"}) + "\n")
    store = Store(":memory:")
    assert _ingest(store, "activity", path).accepted == 1
    assert str(store.scalar("SELECT ts FROM activity")) == "2026-11-16 10:00:00+00:00"


def test_secrets_in_commands_are_redacted_before_storing(tmp_path):
    details = ["mysql -u root -pS3cr3t! prod", "curl -H 'Authorization: Bearer eyJhbGciOi.x.y' u",
               "export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG", "psql postgres://app:hunter2@db/x",
               "vault login -token=s.abcdef123", "echo AKIAIOSFODNN7EXAMPLE", "ls -la /etc"]
    path = tmp_path / "a.jsonl"
    path.write_text("".join(json.dumps({"event_id": str(i), "ts": "2026-11-16T10:00:00Z",
                                        "account": "a", "target": "h", "detail": d}) + "\n"
                            for i, d in enumerate(details)))
    store = Store(":memory:")
    _ingest(store, "activity", path)
    stored = [d for (d,) in store.query("SELECT detail FROM activity ORDER BY event_id")]
    for secret in ("S3cr3t", "eyJhbGciOi", "wJalrXUtnFEMI", "hunter2", "s.abcdef123", "AKIAIOSFODNN7"):
        assert not any(secret in d for d in stored), secret
    assert stored[-1] == "ls -la /etc"
    assert stored[0] == "mysql -u root -p[REDACTED] prod"


def test_second_process_gets_a_clear_lock_error(tmp_path):
    db = tmp_path / "x.duckdb"
    holder = subprocess.Popen([sys.executable, "-c",
                               "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                               "print('ready', flush=True); time.sleep(30)", str(db)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLockedError, match=str(db)):
            Store(str(db))
    finally:
        holder.kill()
        holder.wait()


def test_sample_data_counts_match_generator():
    expected = json.loads((ROOT / "sample_data" / "expected_counts.json").read_text())
    store = Store(":memory:")
    act = expected["activity.jsonl"]
    r = _ingest(store, "activity", ROOT / "sample_data" / "activity.jsonl")
    assert r.read == act["lines"]
    assert r.accepted == act["distinct_valid_events"]
    assert r.duplicates == act["exact_duplicate_lines"]
    assert r.quarantined == act["invalid_json"] + act["missing_account"] + act["zoneless_timestamp"]
    appr = expected["approvals.csv"]
    r = _ingest(store, "approvals", ROOT / "sample_data" / "approvals.csv")
    assert (r.read, r.quarantined) == (appr["rows"], appr["end_before_start"])


def test_sample_week_has_every_verdict():
    from correlate.engine import correlate
    from correlate.findings import VERDICTS
    store = Store(":memory:")
    for kind, name in (("approvals", "approvals.csv"), ("tickets", "tickets.csv"),
                       ("ticket_history", "ticket_history.csv"), ("activity", "activity.jsonl")):
        _ingest(store, kind, ROOT / "sample_data" / name)
    run = correlate(store)
    seen = {v for (v,) in store.query("SELECT DISTINCT verdict FROM findings WHERE run_id = ?", [run])}
    assert seen == set(VERDICTS)


def test_memory_limit_from_environment(monkeypatch):
    from correlate.errors import StoreError
    monkeypatch.setenv("PAMCORR_MEMORY_LIMIT", "512MB")
    store = Store(":memory:")
    assert store.scalar("SELECT current_setting('memory_limit')").startswith("48")  # 512 MB = 488 MiB
    monkeypatch.setenv("PAMCORR_MEMORY_LIMIT", "lots'; DROP TABLE x; --")
    with pytest.raises(StoreError, match="PAMCORR_MEMORY_LIMIT"):
        Store(":memory:")


def test_fast_path_line_numbers_follow_the_file(tmp_path):
    """JSON lines with a repeated event_id take the staged fast path (the one-pass load steps
    aside, tests/test_ingest_direct.py); its stored lines must still be file lines."""
    import duckdb
    path = tmp_path / "big.jsonl"
    duckdb.sql(f"COPY (SELECT 'e' || least(i, 300000) AS event_id, '2026-11-16T10:00:00Z' AS ts, "
               f"'u' || (i % 7) AS account, 'h' || (i % 11) AS target, "
               f"CASE WHEN i % 1000 = 0 THEN 'mysql -pSecret' ELSE repeat('x', 100) END AS detail "
               f"FROM range(1, 300002) t(i)) TO '{path}' (FORMAT JSON)")
    store = Store(":memory:")
    r = _ingest(store, "activity", path)
    assert (r.accepted, r.quarantined, r.duplicates) == (300000, 0, 1)
    wrong = store.scalar("SELECT count(*) FROM activity WHERE line <> substr(event_id, 2)::BIGINT")
    assert wrong == 0      # also for the rows whose detail was redacted in place
    assert store.scalar("SELECT count(*) FROM activity WHERE detail LIKE '%[REDACTED]'") == 300
    assert store.scalar("SELECT count(DISTINCT act_id) FROM activity") == 300000


def test_same_content_under_another_name_is_skipped_and_changed_content_is_not(tmp_path):
    rows = [json.dumps({"event_id": str(i), "ts": "2026-11-16T10:00:00Z", "account": "a",
                        "target": "h"}) for i in range(3)]
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("\n".join(rows) + "\n")
    b.write_text(a.read_text())
    store = Store(":memory:")
    assert _ingest(store, "activity", a).accepted == 3
    assert _ingest(store, "activity", b).skipped
    # Same name and size, different content: not skipped.
    a.write_text("\n".join(rows).replace('"0"', '"9"') + "\n")
    again = _ingest(store, "activity", a)
    assert not again.skipped and again.accepted == 1 and again.duplicates == 2


@pytest.mark.parametrize("text,blank", [
    ('{"a":1}\n{"a":2}\n', False),
    ('{"a":1}\n{"a":2}\n\n\n', False),            # trailing blank lines precede no record
    ('{"a":1}\n\n{"a":2}\n', True),
    ('\n{"a":1}\n', True),
    ('{"a":1}\n   \t\n{"a":2}\n', True),
    ('{"a":1}\r\n\r\n{"a":2}\r\n', True),
])
def test_blank_line_detection(tmp_path, text, blank):
    from correlate.ingest.read import has_blank_lines
    path = tmp_path / "x.jsonl"
    path.write_text(text, newline="")
    assert has_blank_lines(path) is blank
    gz = tmp_path / "x.jsonl.gz"
    with gzip.open(gz, "wt", newline="") as fh:
        fh.write(text)
    assert has_blank_lines(gz) is blank


def test_clean_file_with_blank_lines_keeps_true_line_numbers(tmp_path):
    rows = [json.dumps({"event_id": f"e{i}", "ts": "2026-11-16T10:00:00Z", "account": "a",
                        "target": "h"}) for i in range(1, 6)]
    path = tmp_path / "a.jsonl"
    # the repeat of e1 at the end makes it take the staged path, which numbers lines
    path.write_text(rows[0] + "\n\n" + rows[1] + "\n   \n" + "\n".join(rows[2:]) + "\n"
                    + rows[0] + "\n")
    store = Store(":memory:")
    r = _ingest(store, "activity", path)
    assert (r.read, r.accepted, r.quarantined, r.duplicates) == (6, 5, 0, 1)
    assert store.query("SELECT event_id, line FROM activity ORDER BY line") == [
        ("e1", 1), ("e2", 3), ("e3", 5), ("e4", 6), ("e5", 7)]
