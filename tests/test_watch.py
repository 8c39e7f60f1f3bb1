"""`pamcorr watch` as a real process: files appended, rotated and truncated; restarts after
kill -9; a late approval resolving an alert; the weekly ingest not reading watched lines again."""

from __future__ import annotations

import json
import os
import time
from collections import Counter

from correlate.store import Store
from tests.watch_helpers import Watch, append, event


def test_followed_file_appended_rotated_and_truncated_alerts_every_line_once(tmp_path):
    log, db = tmp_path / "act.jsonl", tmp_path / "w.duckdb"
    log.write_text(event(1))
    w = Watch(db, "generic:activity", str(log))
    try:
        w.wait_for(lambda w: "e1" in w.events(), what="e1")
        append(log, event(2) + event(3))
        w.wait_for(lambda w: {"e2", "e3"} <= w.events(), what="appended lines")
        # rotation: rename, then a new file under the old name; a last line lands in the old one
        os.rename(log, tmp_path / "act.jsonl.1")
        append(tmp_path / "act.jsonl.1", event(4).rstrip("\n"))     # no newline at the end
        time.sleep(0.3)
        log.write_text(event(5))
        w.wait_for(lambda w: {"e4", "e5"} <= w.events(), what="rotated file")
        # copytruncate: the file is cut to 0 and written again from the start
        append(log, event(6))
        w.wait_for(lambda w: "e6" in w.events(), what="e6")
        with open(log, "r+") as fh:
            fh.truncate(0)
        time.sleep(0.3)
        append(log, event(7))
        w.wait_for(lambda w: "e7" in w.events(), what="line after truncation")
    finally:
        w.stop()
    ids = Counter((a["alert_id"], a["version"]) for a in w.alerts)
    assert max(ids.values()) == 1
    assert w.events() == {f"e{n}" for n in range(1, 8)}
    with Store(db) as store:
        assert store.scalar("SELECT count(*) FROM activity") == 7
        # what watch read is filed under the followed file's own name, lines numbered in it
        assert store.scalar("SELECT count(*) FROM ingest_log WHERE file LIKE '%chunks%'") == 0
        assert store.scalar("SELECT line FROM activity WHERE event_id = 'e3'") in (3, None)


def test_weekly_ingest_of_a_watched_file_reads_only_what_watch_did_not(tmp_path):
    from connectors.base import Options
    from connectors.generic import GenericConnector
    from correlate.ingest import ingest
    log, db = tmp_path / "act.jsonl", tmp_path / "w.duckdb"
    log.write_text(event(1) + event(2))
    w = Watch(db, "generic:activity", str(log), "--once")
    w.wait_for(lambda w: w.proc.poll() is not None, what="--once to finish")
    assert w.stop() == 0 and w.events() == {"e1", "e2"}
    with Store(db) as store:
        (same,) = ingest(store, GenericConnector(), "activity", [str(log)], Options())
        assert same.skipped
        append(log, event(3))
        (grown,) = ingest(store, GenericConnector(), "activity", [str(log)], Options())
        assert (grown.read, grown.accepted, grown.duplicates) == (1, 1, 0)


def _quiet(w: Watch, seconds: float = 0.6) -> None:
    """Wait until no alert arrived for `seconds` (its acknowledgements are committed then)."""
    seen, since = len(w.alerts), time.monotonic()
    while time.monotonic() - since < seconds:
        time.sleep(0.05)
        if len(w.alerts) != seen:
            seen, since = len(w.alerts), time.monotonic()


def test_kill_9_mid_stream_then_restart_loses_nothing_and_sends_nothing_twice(tmp_path):
    log, db = tmp_path / "act.jsonl", tmp_path / "w.duckdb"
    log.write_text("")
    first = Watch(db, "generic:activity", str(log))
    n = 0
    try:
        for _ in range(40):                       # a stream of batches while it works
            append(log, "".join(event(n + i) for i in range(10)))
            n += 10
            time.sleep(0.1)
            if len(first.alerts) >= 30:
                break
        first.wait_for(lambda w: len(w.alerts) >= 20, what="some alerts")
        _quiet(first)
        # killed while it stores these lines (between reading them and committing them); an
        # alert written to stdout just before its acknowledgement is committed would be sent
        # again (at least once: docs/watch.md), which is why the kill waits for quiet first
        append(log, "".join(event(n + i) for i in range(10)))
        n += 10
        time.sleep(0.03)
    finally:
        first.kill()                              # SIGKILL: no cleanup of any kind
    append(log, "".join(event(n + i) for i in range(50)))
    n += 50
    second = Watch(db, "generic:activity", str(log))
    try:
        second.wait_for(lambda w: len(first.events() | w.events()) >= n, timeout=20,
                        what="every event alerted")
        time.sleep(0.5)
    finally:
        second.stop()
    sent = Counter((a["alert_id"], a["version"]) for a in first.alerts + second.alerts)
    assert [k for k, c in sent.items() if c > 1] == []
    assert first.events() | second.events() == {f"e{i}" for i in range(n)}
    with Store(db) as store:
        assert store.scalar("SELECT count(*) FROM activity") == n
        assert store.scalar("SELECT count(*) FROM watch_alerts WHERE pending") == 0


def test_late_approval_resolves_the_earlier_alert_with_the_same_id(tmp_path):
    acts, approvals, tickets = (tmp_path / f for f in ("act.jsonl", "appr.jsonl", "tix.jsonl"))
    tickets.write_text(json.dumps({"ticket_id": "CHG7", "status": "approved",
                                   "opened": "2026-12-05T00:00:00Z"}) + "\n")
    approvals.write_text("")
    acts.write_text(event(1, account="alice", ts="2026-12-06T10:00:00Z"))
    w = Watch(tmp_path / "w.duckdb", "generic:activity", str(acts), "generic:approvals",
              str(approvals), "generic:tickets", str(tickets))
    try:
        w.wait_for(lambda w: "e1" in w.events(), what="the unapproved alert")
        opened = next(a for a in w.alerts if a["event_id"] == "e1")
        assert opened["verdict"] == "unapproved" and opened["version"] == 1
        append(approvals, json.dumps({"approval_id": "A9", "account": "alice",
                                      "target": "web-1", "start": "2026-12-06T09:00:00Z",
                                      "end": "2026-12-06T11:00:00Z", "ticket": "CHG7"}) + "\n")
        w.wait_for(lambda w: "e1" in w.events("resolved"), what="the resolution")
    finally:
        w.stop()
    resolved = next(a for a in w.alerts if a["state"] == "resolved")
    assert resolved["alert_id"] == opened["alert_id"] and resolved["version"] == 2
    assert resolved["verdict"] == "approved" and resolved["previous_verdict"] == "unapproved"
    assert resolved["message"].startswith("resolved: approval A9 arrived ")


def test_rate_limit_folds_an_incident_into_a_summary(tmp_path):
    log = tmp_path / "act.jsonl"
    log.write_text("".join(event(i, account="mallory") for i in range(12)))
    w = Watch(tmp_path / "w.duckdb", "generic:activity", str(log), "--rate-limit", "2/1")
    try:
        w.wait_for(lambda w: any(a["state"] == "summary" for a in w.alerts), what="a summary")
    finally:
        w.stop()
    assert len(w.events()) == 2
    (summary,) = [a for a in w.alerts if a["state"] == "summary"]
    assert summary["folded"] == 10 and summary["account"] == "mallory"


def test_stdin_is_read_to_its_end_and_hostile_text_stays_one_json_line(tmp_path):
    hostile = 'cat x\u202e; echo "<script>"\x1b[31m --password=s3cret'
    lines = event(1, detail=hostile).encode()
    w = Watch(tmp_path / "w.duckdb", "generic:activity", "-", stdin=lines)
    assert w.proc.wait(20) == 0
    w.stop()
    (raw,) = w.raw
    assert "\u202e".encode() not in raw and b"\x1b" not in raw
    (alert,) = w.alerts
    assert alert["detail"] == hostile.replace("s3cret", "[REDACTED]")


def test_new_file_in_a_watched_folder_is_read_whole_once(tmp_path):
    import gzip
    folder, db = tmp_path / "drop", tmp_path / "w.duckdb"
    folder.mkdir()
    (folder / "a.jsonl").write_text(event(1))
    w = Watch(db, "generic:activity", str(folder))
    try:
        w.wait_for(lambda w: "e1" in w.events(), what="the first file")
        with gzip.open(folder / "b.jsonl.gz", "wt") as fh:
            fh.write(event(2) + event(3))
        w.wait_for(lambda w: {"e2", "e3"} <= w.events(), what="the new file")
    finally:
        w.stop()
    (folder / "c.jsonl").write_text(event(4))       # arrives while watch is down
    restart = Watch(db, "generic:activity", str(folder), "--once")
    assert restart.proc.wait(20) == 0
    restart.stop()
    assert [a["event_id"] for a in restart.alerts] == ["e4"]    # the others not read again
    assert len(w.alerts) == 3
    # the last line counts the whole files read, not 0 (its folder was not counted)
    assert "0 chunks, 1 whole files, read 1, accepted 1," in restart.stderr[-1]


def test_config_sources_are_followed_and_a_dropped_approval_file_resolves(tmp_path):
    (tmp_path / "drop").mkdir()
    (tmp_path / "act.jsonl").write_text(event(1, account="alice", ts="2026-12-06T10:00:00Z"))
    (tmp_path / "tix.jsonl").write_text(json.dumps(
        {"ticket_id": "CHG7", "status": "approved", "opened": "2026-12-05T00:00:00Z"}) + "\n")
    (tmp_path / "pamcorr.toml").write_text(
        'db = "w.duckdb"\n'
        '[[sources]]\nconnector = "generic"\nkind = "activity"\npaths = ["act.jsonl"]\n'
        '[[sources]]\nconnector = "generic"\nkind = "tickets"\npaths = ["tix.jsonl"]\n'
        '[[sources]]\nconnector = "generic"\nkind = "approvals"\npaths = ["drop/appr-*.csv"]\n')
    w = Watch(tmp_path / "w.duckdb", "--config", str(tmp_path / "pamcorr.toml"))
    try:
        w.wait_for(lambda w: "e1" in w.events(), what="the unapproved alert")
        (tmp_path / "drop" / "appr-1.csv").write_text(
            "approval_id,account,target,start,end,ticket\n"
            "A9,alice,web-1,2026-12-06T09:00:00Z,2026-12-06T11:00:00Z,CHG7\n")
        w.wait_for(lambda w: "e1" in w.events("resolved"), what="the resolution")
    finally:
        w.stop()


def test_detection_at_or_above_the_severity_alerts_after_the_verdict(tmp_path):
    log = tmp_path / "act.jsonl"
    log.write_text(event(1, detail="rm -rf /etc") + event(2, detail="uptime"))
    w = Watch(tmp_path / "w.duckdb", "generic:activity", str(log), "--once", "--poll", "0.1",
              fast=False)
    assert w.proc.wait(30) == 0
    w.stop()
    rules = {(a["event_id"], a["rule"]) for a in w.alerts}
    assert ("e1", "recursive_delete_of_data") in rules and ("e1", "verdict") in rules
    assert {r for e, r in rules if e == "e2"} == {"verdict"}
    det = next(a for a in w.alerts if a["rule"] == "recursive_delete_of_data")
    assert det["severity"] == "critical" and det["review"] == "FAIL"
