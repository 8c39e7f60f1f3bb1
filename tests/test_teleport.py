"""teleport connector: access requests fold into approvals, sessions into linked activity."""

from __future__ import annotations

import gzip
import shutil
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pytest

from connectors.base import Options
from connectors.teleport import TeleportConnector
from correlate.errors import InputError
from correlate.ingest import ingest
from correlate.store import Store
from tests.helpers import ingest_one

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "teleport"
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "vendor-samples"
SAMPLE = SAMPLES / "elastic-teleport" / "test-teleport-all-events.log"


def _ingest(path, store=None, **opts):
    return ingest_one(TeleportConnector(), path, store, **opts)


def _utc(*args):
    return datetime(*args, tzinfo=timezone.utc)


def _rows(store, table, cols, order="line"):
    return [dict(zip(cols, r, strict=True)) for r in
            store.query(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {order}")]


def _both_paths(path, options=None):
    """Every batch staged by the fast reader and by the exact reader: same rows but `raw`."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET preserve_insertion_order = true")
    out = []
    for batch in TeleportConnector().stage(Path(path), "auto", options or Options()):
        fast = con.execute(batch.sql, batch.params)
        names = [d[0] for d in fast.description]
        fast_rows = fast.fetchall()
        exact_rows = con.execute(batch.exact.sql, batch.exact.params).fetchall()
        keep = [i for i, n in enumerate(names) if n not in ("raw", "line")]
        if batch.table == "ignored":      # the fast path leaves ignored lines unnumbered
            assert sorted(str([r[i] for i in keep]) for r in fast_rows) == \
                sorted(str([r[i] for i in keep]) for r in exact_rows)
        else:
            assert sorted(fast_rows, key=lambda r: r[0]) == \
                [r[:1] + (None,) + r[2:] for r in sorted(exact_rows, key=lambda r: r[0])]
        out.append((batch.table, len(fast_rows)))
    return out


def test_vendor_sample_counts_balance():
    if not SAMPLE.is_file():
        pytest.skip(f"vendor sample {SAMPLE} not present (../shared/vendor-samples "
                    "beside the repo)")
    store, r = _ingest(SAMPLE)
    assert r.read == len([ln for ln in SAMPLE.read_text().splitlines() if ln.strip()]) == 246
    assert r.read == r.accepted + r.ignored + r.quarantined + r.duplicates
    assert r.ignored > 100 and r.accepted > 50
    ignored = dict(store.query("SELECT event_type, count FROM ignored_counts"))
    assert ignored["user.login"] == 8 and ignored["cert.create"] == 2
    (a,) = _rows(store, "approvals", ["approval_id", "account", "target", "approver", "status"])
    assert a == {"approval_id": "66b827b2-1b0b-512b-965d-6c789388d3c9",
                 "account": "Carrie_Sandoval", "target": "admin", "approver": "Sam_Waters",
                 "status": "revoked"}


def test_vendor_sample_fast_and_exact_readers_agree():
    if not SAMPLE.is_file():
        pytest.skip(f"vendor sample {SAMPLE} not present")
    assert dict(_both_paths(SAMPLE))["activity"] > 50


def test_create_approve_delete_is_a_revoked_approval_with_its_window():
    store, r = _ingest(FIXTURES / "requests.jsonl")
    # accepted: req-1..3 and the undecided req-4 (pending); the other request events are folded
    # into those (duplicates); access_request.search is ignored
    assert (r.read, r.accepted, r.duplicates, r.ignored, r.quarantined) == (10, 4, 5, 1, 0)
    cols = ["approval_id", "account", "target", "start_ts", "end_ts", "ticket", "requester",
            "approver", "kind", "status", "revoked_at", "reason", "line"]
    req1, req2, req3 = _rows(store, "approvals", cols, "approval_id")
    assert req1 == {"approval_id": "req-1", "account": "alice", "target": "db-admin",
                    "start_ts": _utc(2026, 3, 2, 9, 5),           # the approving review
                    "end_ts": _utc(2026, 3, 2, 13, 0),            # expires
                    "ticket": "OPS-123", "requester": "alice", "approver": "bob",
                    "kind": "standard", "status": "revoked",
                    "revoked_at": _utc(2026, 3, 2, 10, 30),       # the delete
                    "reason": "Restore backup for OPS-123", "line": 4}


def test_resource_request_starts_at_assume_start_and_ends_at_max_duration():
    store, _ = _ingest(FIXTURES / "requests.jsonl")
    (req2,) = store.query_dicts("SELECT * FROM approvals WHERE approval_id = 'req-2'")
    assert req2["target"] == "web-01,web-02"                       # resource_ids[].name
    assert req2["start_ts"] == _utc(2026, 3, 2, 12, 0)             # assume_start_time > approval
    assert req2["end_ts"] == _utc(2026, 3, 3, 9, 0)                # expires is Go's zero time
    assert (req2["status"], req2["ticket"], req2["approver"]) == ("approved", "CHG-77", "dave")


def test_denied_request_is_denied_and_undecided_request_is_pending():
    store, _ = _ingest(FIXTURES / "requests.jsonl")
    (req3,) = store.query_dicts("SELECT * FROM approvals WHERE approval_id = 'req-3'")
    assert (req3["status"], req3["start_ts"], req3["end_ts"]) == (
        "denied", _utc(2026, 3, 2, 12, 0), _utc(2026, 3, 2, 12, 5))
    assert not store.query("SELECT 1 FROM approvals WHERE approval_id = 'req-4'")
    # kept (a later file may approve it), never in force
    assert store.query("SELECT approval_id, status, reason FROM approvals_pending") == [
        ("req-4", "pending", "access request req-4 is neither approved nor denied yet")]
    assert dict(store.query("SELECT event_type, count FROM ignored_counts")) == {
        "access_request.search": 1}


def test_ticket_regex_option_and_bad_pattern():
    store, _ = _ingest(FIXTURES / "requests.jsonl", extra={"ticket_regex": r"backup"})
    assert store.scalar("SELECT ticket FROM approvals WHERE approval_id = 'req-1'") == "backup"
    with pytest.raises(InputError, match="invalid ticket_regex"):
        TeleportConnector().stage(FIXTURES / "requests.jsonl", "auto",
                                  Options(extra={"ticket_regex": "(["}))


def test_approval_without_create_is_pending_with_reason(tmp_path):
    """Its create may be in a file not ingested yet: kept, not quarantined, never in force."""
    lines = (FIXTURES / "requests.jsonl").read_text().splitlines()
    path = tmp_path / "later.jsonl"
    path.write_text("\n".join(lines[5:6]) + "\n")                  # req-2's approval only
    store, r = _ingest(path)
    assert (r.read, r.accepted, r.quarantined) == (1, 1, 0)
    assert not store.query("SELECT 1 FROM approvals")
    assert store.query("SELECT approval_id, status, reason, line FROM approvals_pending") == [
        ("req-2", "approved", "access request req-2 has no access_request.create "
                              "(requester unknown)", 1)]


def test_session_start_links_its_commands_to_the_access_request():
    store, r = _ingest(FIXTURES / "session.jsonl")
    assert (r.read, r.accepted, r.ignored, r.quarantined, r.duplicates) == (11, 7, 2, 1, 1)
    cols = ["line", "event_id", "account", "target", "action", "detail", "session_id", "actor",
            "approval_ref"]
    s1 = [a for a in _rows(store, "activity", cols) if a["session_id"] == "s1"]
    assert [a["event_id"] for a in s1] == ["a1", "a2", "a3", "a7"]
    assert {(a["approval_ref"], a["target"], a["account"], a["actor"]) for a in s1} == {
        ("req-1", "web-01", "root", "alice")}                      # carried over the sid
    assert s1[1]["detail"] == "/usr/bin/systemctl restart nginx"
    assert s1[1]["action"] == "session.command"


def test_malformed_line_is_quarantined_with_its_line_number():
    store, _ = _ingest(FIXTURES / "session.jsonl")
    assert store.query("SELECT line, reason, raw FROM quarantine") == [
        (3, "invalid JSON", '{"event":"session.command","sid":"s1","uid":"a-broken",')]


def test_kube_db_and_bot_events_map_target_kind_and_read_only():
    store, _ = _ingest(FIXTURES / "session.jsonl")
    got = {a["event_id"]: a for a in store.query_dicts("SELECT * FROM activity")}
    assert (got["a4"]["target"], got["a4"]["read_only"], got["a4"]["detail"]) == (
        "prod-k8s", True, "GET /api/v1/namespaces/default/pods")
    assert (got["a5"]["account"], got["a5"]["actor"], got["a5"]["actor_kind"]) == (
        "deploy", "bot-ci", "bot")
    assert (got["a6"]["account"], got["a6"]["target"], got["a6"]["actor_kind"]) == (
        "postgres", "pg-prod", "human")
    assert '"bot_name":"ci"' in got["a5"]["attrs"]


def test_gzip_input_gives_the_same_rows(tmp_path):
    gz = tmp_path / "session.jsonl.gz"
    with open(FIXTURES / "session.jsonl", "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    plain, r1 = _ingest(FIXTURES / "session.jsonl")
    packed, r2 = _ingest(gz)
    assert (r1.read, r1.accepted, r1.quarantined) == (r2.read, r2.accepted, r2.quarantined)
    sql = "SELECT line, event_id, ts, target, approval_ref FROM activity ORDER BY line"
    assert plain.query(sql) == packed.query(sql)


def test_fast_and_exact_readers_agree_on_fixtures(tmp_path):
    clean = tmp_path / "clean.jsonl"
    clean.write_text("\n".join(ln for ln in (FIXTURES / "session.jsonl").read_text().splitlines()
                               if "a-broken" not in ln) + "\n")
    assert dict(_both_paths(clean)) == {"approval_events": 0, "activity": 8, "ignored": 2}
    assert dict(_both_paths(FIXTURES / "requests.jsonl")) == {
        "approval_events": 9, "activity": 0, "ignored": 1}


def test_reingest_in_a_new_file_counts_duplicates(tmp_path):
    store, _ = _ingest(FIXTURES / "session.jsonl")
    copy = tmp_path / "again.jsonl"
    copy.write_text((FIXTURES / "session.jsonl").read_text() + "\n")
    _, r = _ingest(copy, store)
    assert (r.accepted, r.duplicates) == (0, 8)


def test_blank_lines_are_skipped_not_counted(tmp_path):
    lines = (FIXTURES / "requests.jsonl").read_text().splitlines()
    path = tmp_path / "gappy.jsonl"
    path.write_text("\n".join(lines[:4]) + "\n\n   \n" + "\n".join(lines[4:]) + "\n\n")
    _, r = _ingest(path)
    assert (r.read, r.accepted, r.duplicates, r.ignored) == (10, 4, 5, 1)


def test_blank_lines_do_not_shift_stored_line_numbers(tmp_path):
    """DuckDB's fast reader skips blank lines; the store re-reads such files exactly."""
    src = (FIXTURES / "session.jsonl").read_text().splitlines()
    good = [l for l in src if "a-broken" not in l]
    path = tmp_path / "s.jsonl"
    path.write_text(good[0] + "\n\n" + "\n".join(good[1:]) + "\n")
    store = Store(":memory:")
    (r,) = ingest(store, TeleportConnector(), None, [str(path)], Options())
    assert r.balanced and r.quarantined == 0
    assert store.scalar("SELECT line FROM activity WHERE event_id = 'a1'") == 1
    assert store.scalar("SELECT line FROM activity WHERE event_id = 'a2'") == 3


def test_vendor_sample_identity_changes_and_outcomes():
    if not SAMPLE.is_file():
        pytest.skip(f"vendor sample {SAMPLE} not present")
    store, r = _ingest(SAMPLE)
    assert r.read == r.accepted + r.ignored + r.quarantined + r.duplicates
    got = {a["action"]: a for a in store.query_dicts(
        "SELECT * FROM activity WHERE action LIKE 'user.%' OR action LIKE 'role.%'")}
    assert set(got) == {"user.add", "user.mod", "user.delete", "user.password_change"}
    assert '"changed_user":"hello"' in got["user.add"]["attrs"]
    assert '"roles":"admin"' in got["user.add"]["attrs"]
    assert '"roles":"root"' in got["user.mod"]["attrs"]           # a grant of root
    assert got["user.mod"]["account"] == "unknown"                # the event names no actor
    assert got["user.delete"]["account"] == "benarent"
    ignored = dict(store.query("SELECT event_type, count FROM ignored_counts"))
    assert not {"user.create", "user.update", "user.delete"} & set(ignored)
    outcome = dict(store.query(
        "SELECT attrs->>'code', outcome FROM activity WHERE attrs->>'code' IS NOT NULL"))
    assert outcome["TDB02W"] == outcome["TSPN001W"] == outcome["T3004E"] == "failure"
    assert outcome["TDB00I"] == outcome["T2000I"] == "success"


def test_role_changes_and_session_outcome(tmp_path):
    lines = [
        '{"event":"role.created","code":"T9000I","uid":"r1","time":"2026-03-02T10:00:00Z",'
        '"name":"prod-admin","user":"alice","cluster_name":"main"}',
        '{"event":"role.updated","code":"T9002I","uid":"r2","time":"2026-03-02T10:01:00Z",'
        '"name":"prod-admin","user":"alice"}',
        '{"event":"role.deleted","code":"T9001I","uid":"r3","time":"2026-03-02T10:02:00Z",'
        '"name":"prod-admin","user":"alice"}',
        '{"event":"session.start","code":"T2000I","uid":"s1","time":"2026-03-02T10:03:00Z",'
        '"user":"bob","login":"root","server_hostname":"web-1","success":false}',
        '{"event":"session.start","code":"T2000W","uid":"s2","time":"2026-03-02T10:04:00Z",'
        '"user":"bob","login":"root","server_hostname":"web-1"}',
        '{"event":"session.start","uid":"s3","time":"2026-03-02T10:05:00Z",'
        '"user":"bob","login":"root","server_hostname":"web-1"}',
        '{"event":"session.start","code":"T2000X","uid":"s4","time":"2026-03-02T10:06:00Z",'
        '"user":"bob","login":"root","server_hostname":"web-1"}',
        '{"event":"session.rejected","code":"T1006W","uid":"s5","time":"2026-03-02T10:07:00Z",'
        '"user":"bob","login":"root","server_id":"srv-1","reason":"max sessions reached"}',
    ]
    path = tmp_path / "audit.log"
    path.write_text("\n".join(lines) + "\n")
    store, r = _ingest(path)
    assert (r.read, r.accepted, r.ignored, r.quarantined, r.duplicates) == (8, 8, 0, 0, 0)
    got = {a["event_id"]: a for a in store.query_dicts("SELECT * FROM activity")}
    assert [(got[k]["action"], got[k]["account"], got[k]["target"]) for k in ("r1", "r2", "r3")] \
        == [("role.add", "alice", "main"), ("role.mod", "alice", "teleport"),
            ("role.delete", "alice", "teleport")]
    assert '"changed_role":"prod-admin"' in got["r1"]["attrs"]
    assert [got[k]["outcome"] for k in ("r1", "s1", "s2", "s3", "s4")] == [
        "success", "failure", "failure", None, "unknown"]
    assert {got[k]["action"] for k in ("s1", "s2", "s3", "s5")} == {"session.start"}
    assert got["s5"]["outcome"] == "failure"                   # a denied session
    assert '"error":"max sessions reached"' in got["s5"]["attrs"]
    assert dict(_both_paths(path))["activity"] == 8
