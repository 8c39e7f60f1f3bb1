"""Detections in watch: run with each batch, in its transaction (a detection alert is stored with
the verdict alerts of its batch), and sequence rules that span batches found through the
look-back kept in watch_seq_events."""

from __future__ import annotations

import io
import json
import threading
import time

from correlate.store import Store
from correlate.watch.loop import Follow, Watcher, WatchSettings
from correlate.watch.sinks import StdoutSink
from tests.watch_helpers import Watch, append, event

SEQ = "seq_root_shell_then_audit_off"


def _line(n: int, account: str, detail: str, ts: str, actor: str | None = None) -> str:
    row = json.loads(event(n, account=account, ts=ts, detail=detail))
    if actor:
        row["actor"] = actor
    return json.dumps(row) + "\n"


def _watcher(tmp_path, log, out) -> Watcher:
    store = Store(tmp_path / "w.duckdb")
    return Watcher(store, [Follow("generic", str(log), "activity")],
                   WatchSettings(spool=tmp_path / "spool", sinks=[StdoutSink(out)]),
                   say=lambda m: None)


def _alerts(out: io.StringIO) -> list[dict]:
    return [json.loads(x) for x in out.getvalue().splitlines()]


def test_sequence_spread_over_two_batches_alerts_on_the_batch_that_completes_it(tmp_path):
    log, out = tmp_path / "act.jsonl", io.StringIO()
    log.write_text(_line(1, "alice", "sudo -i", "2026-12-06T10:00:00Z", actor="alice"))
    w = _watcher(tmp_path, log, out)
    try:
        assert w.step() == 1
        assert SEQ not in {a["rule"] for a in _alerts(out)}
        append(log, _line(2, "alice", "auditctl -D", "2026-12-06T10:04:00Z", actor="alice"))
        assert w.step() == 1
        seq = [a for a in _alerts(out) if a["rule"] == SEQ]
        # the new member alerts; the sudo -i was judged with its own batch
        assert [a["event_id"] for a in seq] == ["e2"] and seq[0]["sequence_id"]
        # a later batch past the timespan (and the look-back): no sequence with the old shell
        append(log, _line(3, "alice", "auditctl -D", "2026-12-06T10:30:00Z", actor="alice"))
        w.step()
        assert [a["event_id"] for a in _alerts(out) if a["rule"] == SEQ] == ["e2"]
    finally:
        w.store.close()


def test_kept_matches_are_bounded_by_the_longest_sequence_timespan(tmp_path):
    log, out = tmp_path / "act.jsonl", io.StringIO()
    log.write_text(_line(1, "alice", "sudo -i", "2026-12-06T10:00:00Z", actor="alice")
                   + _line(2, "bob", "sudo -i", "2026-12-06T10:10:00Z", actor="bob"))
    w = _watcher(tmp_path, log, out)
    try:
        w.step()
        assert w.history.lookback_s == 900            # 15 min, the shipped rules' longest
        kept = "SELECT list(act_id ORDER BY ts) FROM watch_seq_events"
        assert len(w.store.con.execute(kept).fetchall()[0][0]) == 2
        # 20 min after the first: it can no longer begin a sequence and is deleted; the
        # second (10 min before) still can and is kept
        append(log, _line(3, "carol", "sudo -i", "2026-12-06T10:20:00Z", actor="carol"))
        w.step()
        ids = w.store.con.execute(
            "SELECT list(a.event_id ORDER BY a.ts) FROM watch_seq_events k "
            "JOIN activity a USING (act_id)").fetchall()[0][0]
        assert ids == ["e2", "e3"]
    finally:
        w.store.close()


def test_detection_alert_is_committed_with_its_batch_under_a_steady_flow(tmp_path):
    """`auditctl -D` inside an approved window alerts (a detection, no verdict alert), and a
    detection of an unapproved action is stored in the same transaction as its verdict alert,
    while lines keep arriving (no quiet look to wait for)."""
    (tmp_path / "tix.jsonl").write_text(json.dumps(
        {"ticket_id": "CHG1", "status": "approved", "opened": "2020-01-01T00:00:00Z"}) + "\n")
    (tmp_path / "appr.jsonl").write_text(json.dumps(
        {"approval_id": "A1", "account": "ok", "target": "*", "start": "2020-01-01T00:00:00Z",
         "end": "2030-01-01T00:00:00Z", "ticket": "CHG1"}) + "\n")
    log, db = tmp_path / "act.jsonl", tmp_path / "w.duckdb"
    log.write_text("")
    w = Watch(db, "--poll", "0.1", "--debounce-ms", "20",
              "generic:tickets", str(tmp_path / "tix.jsonl"),
              "generic:approvals", str(tmp_path / "appr.jsonl"), "generic:activity", str(log),
              fast=False)
    stop = threading.Event()

    def flow():                               # approved work, every 20 ms
        n = 1000
        while not stop.is_set():
            append(log, event(n, account="ok", ts="2026-12-06T10:00:00Z", detail="uptime"))
            n += 1
            time.sleep(0.02)

    writer = threading.Thread(target=flow, daemon=True)
    try:
        w.wait_for(lambda w: w.proc.poll() is None and len(w.stderr) == 0, timeout=5,
                   what="start")
        writer.start()
        time.sleep(1)
        append(log, event(1, account="ok", ts="2026-12-06T10:00:01Z", detail="auditctl -D"))
        append(log, event(2, account="mallory", ts="2026-12-06T10:00:02Z",
                          detail="auditctl -e 0"))
        w.wait_for(lambda w: {("e1", "auditctl_rules_deleted"), ("e2", "auditctl_rules_deleted"),
                              ("e2", "verdict")} <= {(a["event_id"], a["rule"]) for a in w.alerts},
                   timeout=30, what="the detection alerts")
    finally:
        stop.set()
        writer.join(5)
        w.stop()
    e1 = next(a for a in w.alerts if a["event_id"] == "e1")
    assert e1["severity"] == "critical" and e1["review"] == "needs_review"
    assert not [a for a in w.alerts if a["event_id"] == "e1" and a["rule"] == "verdict"]
    with Store(db) as store:
        created = store.con.execute(
            "SELECT rule, created FROM watch_alerts WHERE body->>'event_id' = 'e2'").fetchall()
    assert len(created) == 2 and created[0][1] == created[1][1], created


def test_detections_an_earlier_version_deferred_are_run_at_start(tmp_path):
    from connectors.base import Options
    from connectors.generic import GenericConnector
    from correlate.ingest import ingest
    log, out = tmp_path / "act.jsonl", io.StringIO()
    log.write_text(event(1, detail="rm -rf /etc"))
    store = Store(tmp_path / "w.duckdb")
    ingest(store, GenericConnector(), "activity", [str(log)], Options())
    store.con.execute("INSERT INTO watch_detect_todo SELECT ingest_id FROM ingest_log")
    store.close()
    w = _watcher(tmp_path, tmp_path / "other.jsonl", out)
    try:
        w.deliver()
        assert [(a["event_id"], a["rule"]) for a in _alerts(out)] == [
            ("e1", "recursive_delete_of_data")]
        assert w.store.con.execute("SELECT count(*) FROM watch_detect_todo").fetchall()[0][0] == 0
    finally:
        w.store.close()
