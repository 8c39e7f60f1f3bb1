"""auditd sequence gaps, lost records, stops and config changes; Teleport session structure;
silent sources (issue 20 sections 2 and 3), and the calibration on the shared vendor samples."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from correlate.cli import main

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "vendor-samples"
T0 = datetime(2026, 11, 30, 10, 0, tzinfo=timezone.utc).timestamp()


def audit_line(serial: int, offset: float, rtype: str = "USER_ACCT", host: str = "web1",
               rest: str = "pid=1 uid=0 auid=1000 ses=1 msg='op=PAM:accounting res=success'") -> str:
    return f"node={host} type={rtype} msg=audit({T0 + offset:.3f}:{serial}): {rest}\n"


def teleport(event: str, sid: str, minutes: float, ei: int, target: str = "web1") -> str:
    ts = datetime.fromtimestamp(T0 + minutes * 60, tz=timezone.utc)
    return json.dumps({"event": event, "code": "T2000I", "uid": f"{sid}-{ei}", "sid": sid,
                       "ei": ei, "time": ts.isoformat().replace("+00:00", "Z"),
                       "user": "alice", "login": "root", "server_hostname": target,
                       "cluster_name": "c1"}) + "\n"


def ingest(tmp_path: Path, source: str, name: str, text: str, *options: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    args = ["ingest", source, str(path), "--db", str(tmp_path / "t.duckdb")]
    for option in options:
        args += ["--option", option]
    if source == "syslog":
        args += ["--year", "2026", "--tz", "UTC"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output


def checks(tmp_path: Path, *args: str) -> list[dict]:
    result = CliRunner().invoke(main, ["integrity", "--format", "json", "--db",
                                       str(tmp_path / "t.duckdb"), *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def by_check(findings, check_id) -> list[tuple[str, str]]:
    return [(f["severity"], f["subject"]) for f in findings if f["check_id"] == check_id]


def test_one_missing_serial_is_info(tmp_path):
    text = "".join(audit_line(s, s) for s in (100, 101, 103, 104))
    ingest(tmp_path, "auditd", "audit.log", text)
    assert by_check(checks(tmp_path), "auditd_sequence_gap") == [("INFO", "web1")]


def test_large_gap_in_a_dense_log_warns_and_in_an_excerpt_does_not(tmp_path):
    serials = list(range(1, 1001)) + list(range(2101, 3001))
    ingest(tmp_path, "auditd", "audit.log", "".join(audit_line(s, s / 10) for s in serials))
    gaps = [f for f in checks(tmp_path) if f["check_id"] == "auditd_sequence_gap"]
    assert [(f["severity"], f["evidence"]["missing"]) for f in gaps] == [("WARN", 1100)]


def test_large_gap_in_an_excerpt_is_info(tmp_path):
    ingest(tmp_path, "auditd", "audit.log", "".join(audit_line(s, s / 10)
                                                      for s in (5, 6, 4000, 4001)))
    assert by_check(checks(tmp_path), "auditd_sequence_gap") == [("INFO", "web1")]


def test_declared_complete_log_warns_on_any_gap(tmp_path):
    text = "".join(audit_line(s, s) for s in (100, 101, 103))
    ingest(tmp_path, "auditd", "audit.log", text, "auditd_complete=yes")
    assert by_check(checks(tmp_path), "auditd_sequence_gap") == [("WARN", "web1")]


def test_gap_during_a_teleport_session_on_the_host_warns(tmp_path):
    text = "".join(audit_line(s, s * 60) for s in (1, 2, 5, 6))
    ingest(tmp_path, "auditd", "audit.log", text)
    ingest(tmp_path, "teleport", "tp.log",
           teleport("session.start", "s1", 2.5, 0) + teleport("session.end", "s1", 4, 9))
    gaps = [f for f in checks(tmp_path) if f["check_id"] == "auditd_sequence_gap"]
    assert [(f["severity"], f["evidence"]["session"]) for f in gaps] == [("WARN", "s1")]


def test_serial_decrease_and_daemon_records_are_no_gap(tmp_path):
    text = (audit_line(7798, 0, "DAEMON_START", rest="auditd start, ver=2.4.1 res=success")
            + audit_line(6, 1) + audit_line(7, 2)
            + audit_line(60, 3, "DAEMON_CONFIG", rest="config changed, auid=0 res=success")
            + audit_line(3, 4) + audit_line(4, 5))
    ingest(tmp_path, "auditd", "audit.log", text)
    assert by_check(checks(tmp_path), "auditd_sequence_gap") == []


def test_kernel_lost_records_fail(tmp_path):
    text = (audit_line(1, 1) + audit_line(2, 2)
            + "node=web1 kernel: audit: audit_lost=12 audit_rate_limit=0 audit_backlog_limit=64\n")
    ingest(tmp_path, "auditd", "audit.log", text)
    assert by_check(checks(tmp_path), "auditd_lost") == [("FAIL", "web1")]


def test_stop_then_activity_on_the_host_warns_and_a_final_stop_is_info(tmp_path):
    end = "auditd normal halt, sending auid=0 pid=1 res=success"
    ingest(tmp_path, "auditd", "audit.log",
           audit_line(1, 0) + audit_line(7800, 60, "DAEMON_END", rest=end)
           + audit_line(7801, 3600, "DAEMON_START", rest="auditd start res=success")
           + audit_line(1, 3601) + audit_line(7802, 7200, "DAEMON_END", rest=end))
    ingest(tmp_path, "syslog", "auth.log",
           "Nov 30 10:10:00 web1 sshd[42]: Accepted publickey for alice from 10.0.0.1 port 5 ssh2\n")
    assert by_check(checks(tmp_path), "auditd_stopped") == [("WARN", "web1"), ("INFO", "web1")]


def test_config_changes_warn_with_the_auid(tmp_path):
    ingest(tmp_path, "auditd", "audit.log",
           audit_line(1, 0, "CONFIG_CHANGE", rest='auid=1000 ses=3 op=remove_rule key="pam" res=1')
           + audit_line(2, 1, "CONFIG_CHANGE", rest='auid=1000 ses=3 op=add_rule key="pam" res=1')
           + audit_line(3, 2, "CONFIG_CHANGE", rest="audit_enabled=0 old=1 auid=0 ses=3 res=1"))
    found = [f for f in checks(tmp_path) if f["check_id"] == "audit_config_change"]
    assert [(f["severity"], f["detail"].split(" by auid ")[1]) for f in found] == [
        ("WARN", "1000"), ("WARN", "0")]


def test_teleport_unterminated_session_and_event_after_end_but_never_ei_gaps(tmp_path):
    ingest(tmp_path, "teleport", "tp.log",
           teleport("session.start", "open", 0, 0) + teleport("session.command", "open", 1, 7)
           + teleport("session.start", "done", 0, 0) + teleport("session.end", "done", 5, 13)
           + teleport("session.command", "done", 6, 16)
           + teleport("session.start", "later", 26 * 60, 0)
           + teleport("session.end", "later", 26 * 60 + 1, 11))
    found = checks(tmp_path)
    assert by_check(found, "session_unterminated") == [("WARN", "open")]
    assert by_check(found, "session_event_after_end") == [("WARN", "done")]
    assert {f["check_id"] for f in found} == {"session_unterminated", "session_event_after_end"}


def test_source_silent_during_a_session(tmp_path):
    ingest(tmp_path, "auditd", "audit.log",
           "".join(audit_line(s, m * 60, "USER_CMD", rest="pid=1 uid=0 auid=1000 ses=1 msg='cwd=\"/\" cmd=6C73 exe=\"/usr/bin/sudo\" terminal=pts/0 res=success'")
                   for s, m in ((1, -30), (2, 90))))
    ingest(tmp_path, "teleport", "tp.log",
           teleport("session.start", "s9", 0, 0) + teleport("session.end", "s9", 60, 5))
    found = [f for f in checks(tmp_path) if f["check_id"] == "source_silent_during_session"]
    assert [(f["severity"], f["evidence"]["source"], f["evidence"]["session"]) for f in found] == [
        ("WARN", "auditd", "s9")]


def test_source_that_reported_during_the_session_is_not_silent(tmp_path):
    ingest(tmp_path, "auditd", "audit.log",
           "".join(audit_line(s, m * 60, "USER_CMD", rest="pid=1 uid=0 auid=1000 ses=1 msg='cwd=\"/\" cmd=6C73 exe=\"/usr/bin/sudo\" terminal=pts/0 res=success'")
                   for s, m in ((1, -30), (2, 30), (3, 90))))
    ingest(tmp_path, "teleport", "tp.log",
           teleport("session.start", "s9", 0, 0) + teleport("session.end", "s9", 60, 5))
    assert by_check(checks(tmp_path), "source_silent_during_session") == []


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="shared vendor samples not present "
                                                   "(../shared/vendor-samples)")
def test_calibration_on_the_shared_samples(tmp_path):
    """No FAIL, and no WARN beyond the sample's own DAEMON_CONFIG (serial and ei gaps never)."""
    db = str(tmp_path / "t.duckdb")
    runner = CliRunner()
    files = [("auditd", SAMPLES / "go-libaudit" / "audit-rhel7.log")]
    files += [("auditd", p) for p in sorted((SAMPLES / "laurel-auditd").glob("*.txt"))]
    files += [("teleport", SAMPLES / "elastic-teleport" / "test-teleport-all-events.log")]
    for source, path in files:
        if not path.exists():
            pytest.skip(f"{path} not present")
        runner.invoke(main, ["ingest", source, str(path), "--db", db])
    result = runner.invoke(main, ["integrity", "--format", "json", "--db", db])
    found = json.loads(result.stdout)
    loud = [(f["severity"], f["check_id"], f["subject"]) for f in found if f["severity"] != "INFO"]
    assert loud == [("WARN", "audit_config_change", "audit-rhel7")]
    fork = [f for f in found if f["subject"] == "fork-sleep-exec"]
    assert [(f["check_id"], f["severity"]) for f in fork] == [("auditd_sequence_gap", "INFO")]
    # the Teleport sample logs no session.upload (so three session.ends without one are no
    # finding), and one session.end says session_recording off
    from correlate.store import Store
    with Store(db) as store:
        assert store.query("SELECT mark, count(*) FROM teleport_session_mark GROUP BY ALL") == [
            ("recording_off", 1)]


def upload(sid: str, minutes: float, cluster: str | None = "c1") -> str:
    """A session.upload event as Teleport writes it (no target; ei near MaxInt32)."""
    ts = datetime.fromtimestamp(T0 + minutes * 60, tz=timezone.utc)
    event = {"event": "session.upload", "code": "T2005I", "uid": f"up-{sid}", "sid": sid,
             "ei": 2147483646, "time": ts.isoformat().replace("+00:00", "Z"),
             "url": f"s3://recordings/{sid}.tar"}
    if cluster is not None:
        event["cluster_name"] = cluster
    return json.dumps(event) + "\n"


def session(sid: str, start: float, end: float, target: str = "web1", **end_fields) -> str:
    ended = json.loads(teleport("session.end", sid, end, 9, target))
    ended.update(end_fields)
    return teleport("session.start", sid, start, 0, target) + json.dumps(ended) + "\n"


def test_recording_not_uploaded_where_the_cluster_logs_uploads(tmp_path):
    ingest(tmp_path, "teleport", "tp.log",
           session("uploaded", 0, 10) + upload("uploaded", 11)
           + session("lost", 20, 30)                                   # no upload
           + session("off", 40, 50, session_recording="off")           # nothing recorded
           + session("late", 100, 200) + upload("late", 210)
           + session("recent", 215, 220))     # ended 10 min before the last event: may follow
    found = checks(tmp_path)
    assert by_check(found, "recording_not_uploaded") == [("WARN", "lost")]
    [lost] = [f for f in found if f["check_id"] == "recording_not_uploaded"]
    assert lost["evidence"]["cluster"] == "c1" and lost["evidence"]["uploads_in_cluster"] == 2
    # the period is the session's end
    assert by_check(checks(tmp_path, "--from", "2026-11-30T10:31:00Z",
                           "--to", "2026-12-01T00:00:00Z"), "recording_not_uploaded") == []


def test_no_recording_finding_where_the_cluster_logs_no_uploads(tmp_path):
    # uploads are logged, but only by another cluster: c1's log says nothing of uploads
    ingest(tmp_path, "teleport", "tp.log",
           session("s1", 0, 10) + session("s2", 100, 200)
           + upload("elsewhere", 300, cluster="c2"))
    assert by_check(checks(tmp_path), "recording_not_uploaded") == []


def test_recording_upload_in_a_later_file_counts(tmp_path):
    ingest(tmp_path, "teleport", "day1.log", session("s1", 0, 10) + session("s2", 20, 30))
    ingest(tmp_path, "teleport", "day2.log", upload("s1", 15) + upload("s2", 35)
           + session("s3", 300, 310) + upload("s3", 312))
    ingest(tmp_path, "teleport", "day2-again.log", upload("s1", 15))   # a duplicate mark
    assert by_check(checks(tmp_path), "recording_not_uploaded") == []
