"""`pamcorr run`: the weekly job through the real CLI and store; default week, changes, coverage."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from click.testing import CliRunner
from freezegun import freeze_time

from correlate.cli import main
from correlate.config import load_settings
from correlate.errors import InputError, PamcorrError
from correlate.jobs import issue_key, last_full_week, parse_week
from correlate.store import Store

try:   # the local Jira/ServiceNow server of the fetcher tests (a fixture)
    from tests.ticket_server import jira_issue, jira_status, ticket_server  # noqa: F401
except ImportError:
    ticket_server = None

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """
db = "t.duckdb"
output = "out"
[policy]
grace_s = 300
{policy}
[[sources]]
connector = "generic"
kind = "approvals"
paths = ["drop/approvals*.csv"]
[[sources]]
connector = "generic"
kind = "tickets"
paths = ["drop/tickets.csv"]
[[sources]]
connector = "generic"
kind = "ticket_history"
paths = ["drop/ticket_history.csv"]
[[sources]]
name = "bastion"
connector = "generic"
kind = "activity"
paths = ["drop/activity*.jsonl", "drop/never-*.jsonl"]
{extra}
"""


@pytest.fixture
def job(tmp_path, monkeypatch, world):
    """A drop folder with week 47 in it, a config, and `run(*args)` invoking the CLI."""
    monkeypatch.delenv("PAMCORR_DB", raising=False)
    world.folder = tmp_path / "drop"
    world.approval("A", "2026-11-22T10:00:00Z", "2026-11-22T12:00:00Z")
    world.action("w47-alice", "2026-11-22T11:00:00Z")
    world.action("w47-mallory", "2026-11-17T10:00:00Z", account="mallory", target="db-01")
    world.action("w47-bob", "2026-11-17T11:00:00Z", account="bob", target="web-01")
    world.action("w47-carol", "2026-11-18T09:00:00Z", account="carol", target="web-02")
    world.write()

    def configure(policy="", extra=""):
        path = tmp_path / "pamcorr.toml"
        path.write_text(CONFIG.format(policy=policy, extra=extra))
        return path
    configure()

    def run(*args):
        return CliRunner().invoke(main, ["run", "--config", str(tmp_path / "pamcorr.toml"),
                                         *args], catch_exceptions=False)
    run.tmp, run.configure, run.drop = tmp_path, configure, world.folder
    return run


def add_week_48(drop: Path) -> None:
    """Mallory fails again, bob now has an approval, dave is new, carol is quiet."""
    (drop / "approvals-w48.csv").write_text(
        "approval_id,account,target,start,end,ticket\n"
        "B,bob,web-01,2026-11-24T10:00:00Z,2026-11-24T12:00:00Z,CHG-1\n")
    rows = [{"event_id": "w48-mallory", "ts": "2026-11-24T09:00:00Z", "account": "mallory",
             "target": "db-01"},
            {"event_id": "w48-bob", "ts": "2026-11-24T11:00:00Z", "account": "bob",
             "target": "web-01"},
            {"event_id": "w48-dave", "ts": "2026-11-24T12:00:00Z", "account": "dave",
             "target": "db-02"}]
    (drop / "activity-w48.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def weekly_json(job, week: str) -> dict:
    return json.loads((job.tmp / "out" / week / "weekly.json").read_text())


@pytest.mark.parametrize("now, week", [
    ("2026-11-25T09:00:00Z", "2026-W47"),     # a Wednesday in W48
    ("2026-11-23T00:00:00Z", "2026-W47"),     # the very start of W48: W47 has just ended
    ("2026-11-22T23:59:59Z", "2026-W46"),     # W47 not over yet
    ("2027-01-05T12:00:00Z", "2026-W53"),     # 2026 has 53 ISO weeks
])
def test_default_week_is_last_full_iso_week_in_utc(now, week):
    with freeze_time(now):
        got = last_full_week()
    assert got.label == week
    assert got.start.weekday() == 0 and got.start.tzinfo is not None
    assert (got.end - got.start).days == 7


def test_parse_week_gives_monday_to_monday_utc_and_rejects_bad_labels():
    w = parse_week("2026-W47")
    assert w.start == datetime(2026, 11, 16, tzinfo=timezone.utc)
    assert w.end == datetime(2026, 11, 23, tzinfo=timezone.utc)
    for bad in ("2026-47", "2026-W54", "2025-W53", "W47"):
        with pytest.raises(PamcorrError):
            parse_week(bad)


def test_run_without_week_judges_last_full_week_and_writes_bundle(job):
    with freeze_time("2026-11-25T09:00:00Z"):
        res = job()
    assert res.exit_code == 0, res.output
    assert "pamcorr run 2026-W47 (2026-11-16T00:00:00Z .. 2026-11-23T00:00:00Z)" in res.output
    assert "ingest: 4 new file(s), 0 already ingested" in res.output
    assert "bastion: nothing matches" in res.output and "tickets: not configured" in res.output
    assert "no earlier weekly run to compare with: 3 failing issue(s)" in res.output
    out = job.tmp / "out" / "2026-W47"
    assert {p.name for p in out.iterdir()} == {
        "findings.csv", "findings.jsonl", "findings.ocsf.json", "gap-report.html", "index.html",
        "detections.csv", "detections.jsonl", "hygiene.csv", "hygiene.jsonl",
        "manifest.json", "weekly.json", "scope", "input-integrity.json"}
    # scope pages of the three failing accounts (mallory, bob, carol), listed in the manifest
    assert len(list((out / "scope").iterdir())) == 3
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["period"] == {"start": "2026-11-16T00:00:00Z", "end": "2026-11-23T00:00:00Z"}
    assert manifest["run"]["parameters"]["week"] == "2026-W47"
    assert manifest["previous"] is None
    verify = CliRunner().invoke(main, ["verify", str(out)])
    assert verify.exit_code == 0 and "files: 14/14 valid" in verify.output


def test_fail_on_exits_3_from_option_or_config(job):
    assert job("--week", "2026-W47", "--fail-on", "fail").exit_code == 3
    job.configure(policy='fail_on = "fail"')
    assert job("--week", "2026-W47").exit_code == 3
    assert job("--week", "2026-W47", "--fail-on", "warn").exit_code == 3


def test_second_week_compares_by_issue_key(job):
    assert job("--week", "2026-W47").exit_code == 0
    add_week_48(job.drop)
    res = job("--week", "2026-W48")
    assert res.exit_code == 0, res.output
    assert "ingest: 2 new file(s), 4 already ingested" in res.output
    assert ("since 2026-W47 (run 1): 1 new, 1 still failing, 1 resolved, 1 not seen this week"
            in res.output)
    changes = weekly_json(job, "2026-W48")["changes"]
    states = {(c["account"], c["verdict"]): c["state"] for c in changes}
    assert states == {("dave", "unapproved"): "new", ("mallory", "unapproved"): "still failing",
                      ("bob", "unapproved"): "resolved", ("carol", "unapproved"): "not seen"}
    keys = {c["account"]: c["key"] for c in changes}
    assert keys["mallory"] == issue_key("MALLORY", "DB-01", "unapproved")
    soup = BeautifulSoup((job.tmp / "out" / "2026-W48" / "index.html").read_text(), "html.parser")
    assert sorted(tr["data-state"] for tr in soup.select("#changes tr.change")) == [
        "new", "not seen", "resolved", "still failing"]
    verify = CliRunner().invoke(main, ["verify", str(job.tmp / "out" / "2026-W48")])
    assert verify.exit_code == 0, verify.output
    assert "chain: 1/1 links valid" in verify.output and "2026-W48 -> 2026-W47: ok" in verify.output


def test_coverage_warns_when_a_source_goes_quiet_and_fails_when_it_sends_nothing(job):
    add_week_48(job.drop)
    res = job("--week", "2026-W48", "--fail-on", "fail")
    assert "WARN: no activity from generic since 2026-11-24T12:00:00Z" in res.output
    assert res.exit_code == 3   # mallory and dave fail
    res = job("--week", "2026-W49", "--fail-on", "fail")
    assert ("FAIL: no activity from generic in 2026-W49 (last seen 2026-11-24T12:00:00Z)"
            in res.output)
    assert "verdicts: no actions" in res.output
    assert res.exit_code == 3   # no failing action, but the population is incomplete
    cov = weekly_json(job, "2026-W49")["coverage"]
    assert [(c["source"], c["status"], c["rows"]) for c in cov] == [("generic", "FAIL", 0)]


def test_coverage_passes_when_activity_reaches_the_end_of_the_week(job):
    res = job("--week", "2026-W47")
    assert "coverage: every source sent activity" in res.output


def test_rerun_of_a_week_ingests_nothing_new_and_replaces_its_bundle(job):
    job("--week", "2026-W47")
    res = job("--week", "2026-W47")
    assert "ingest: 0 new file(s), 4 already ingested" in res.output
    out = job.tmp / "out" / "2026-W47"
    assert json.loads((out / "manifest.json").read_text())["previous"] is None
    assert CliRunner().invoke(main, ["verify", str(out)]).exit_code == 0
    with Store(str(job.tmp / "t.duckdb"), read_only=True) as store:
        assert store.scalar("SELECT count(*) FROM runs") == 2
        assert store.scalar("SELECT count(*) FROM exports") == 2


def test_db_option_beats_the_config(job):
    res = job("--week", "2026-W47", "--db", str(job.tmp / "other.duckdb"))
    assert res.exit_code == 0
    assert (job.tmp / "other.duckdb").exists() and not (job.tmp / "t.duckdb").exists()


@pytest.mark.parametrize("extra, message", [
    ('[tickets]\nsystem = "jira"\nurl = "https://x.example"\ntoken = "abc"',
     "secrets are not read from the config file"),
    ('[tickets]\nsystem = "jira"\nurl = "https://bot:pw@x.example"', "no user or password"),
    ('[tickets]\nsystem = "gitlab"\nurl = "https://x.example"', "tickets.system"),
    ("colour = 1", "unknown key 'colour'"),
])
def test_bad_config_is_a_message_naming_the_file(job, extra, message):
    job.configure(extra=extra)
    res = job("--week", "2026-W47")
    assert res.exit_code == 1 and message in res.output and "pamcorr.toml" in res.output
    assert "Traceback" not in res.output and "abc" not in res.output


def test_toml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('output = "x"\n[policy\n')
    with pytest.raises(InputError) as err:
        load_settings(path)
    assert err.value.file == str(path) and err.value.line == 2


def test_example_config_parses():
    settings = load_settings(ROOT / "pamcorr.example.toml")
    assert settings.policy.grace_s == 300 and settings.fail_on == ("fail",)
    assert settings.output == ROOT / "evidence" and settings.tickets is None
    assert [s.kind for s in settings.sources] == ["approvals", "tickets", "ticket_history",
                                                  "activity"]
    assert settings.sources[3].tz == "Europe/Berlin"
    assert all(Path(p).is_absolute() for s in settings.sources for p in s.paths)


def test_configured_tickets_are_fetched_before_correlating(job, monkeypatch, request):
    if ticket_server is None:
        pytest.skip("tests/ticket_server.py (the local Jira/ServiceNow server) is not present")
    server = request.getfixturevalue("ticket_server")
    done = jira_status("Done", "10001", "done")
    server.jira_statuses = [done]
    server.strict_keys = False
    server.add_issues(jira_issue("OPS-7", done, created="2026-11-01T08:00:00.000+0000"))
    (job.drop / "approvals-ops.csv").write_text(
        "approval_id,account,target,start,end,ticket\n"
        "J,erin,web-09,2026-11-20T10:00:00Z,2026-11-20T12:00:00Z,OPS-7\n")
    monkeypatch.setenv("PAMCORR_JIRA_USER", "bot@example.com")
    monkeypatch.setenv("PAMCORR_JIRA_TOKEN", "not-a-real-token")
    job.configure(extra=f'[tickets]\nsystem = "jira"\nurl = "{server.url}"')
    res = job("--week", "2026-W47")
    assert res.exit_code == 0, res.output
    assert "tickets: jira fetched 1" in res.output and "not-a-real-token" not in res.output


def test_weekly_run_says_which_servicenow_tickets_were_judged_without_history(job, monkeypatch,
                                                                              request):
    if ticket_server is None:
        pytest.skip("tests/ticket_server.py (the local Jira/ServiceNow server) is not present")
    server = request.getfixturevalue("ticket_server")
    server.snow_changes = [{"sys_id": "a" * 32, "number": "CHG0000007", "state": "-1",
                            "approval": "approved", "opened_at": "2026-11-01 08:00:00"}]
    (job.drop / "approvals-ops.csv").write_text(
        "approval_id,account,target,start,end,ticket\n"
        "S,erin,web-09,2026-11-20T10:00:00Z,2026-11-20T12:00:00Z,CHG0000007\n")
    (job.drop / "activity-ops.jsonl").write_text(json.dumps(
        {"event_id": "erin-1", "ts": "2026-11-20T11:00:00Z", "account": "erin",
         "target": "web-09"}) + "\n")
    monkeypatch.setenv("PAMCORR_SNOW_TOKEN", "not-a-real-token")
    job.configure(extra=f'[tickets]\nsystem = "servicenow"\nurl = "{server.url}"')
    res = job("--week", "2026-W47")
    assert res.exit_code in (0, 3), res.output
    assert "tickets: servicenow fetched 1" in res.output
    assert ("1 ticket(s) judged by their current state only (state history unreadable): "
            "CHG0000007") in res.output


def risky(drop: Path, name: str, rows: list[tuple]) -> None:
    """An extra activity file of (event_id, ts, account, target, action, detail)."""
    (drop / name).write_text("".join(
        json.dumps({"event_id": e, "ts": ts, "account": a, "target": t, "action": act,
                    "detail": d}) + "\n" for e, ts, a, t, act, d in rows))


def test_weekly_diff_includes_detections_by_account_target_rule(job):
    risky(job.drop, "activity-r47.jsonl", [
        ("r47-mallory", "2026-11-17T10:05:00Z", "mallory", "db-01", "exec", "rm -rf /var/lib/mysql"),
        ("r47-bob", "2026-11-17T11:05:00Z", "bob", "web-01", "exec", "history -c"),
        ("r47-carol", "2026-11-18T09:05:00Z", "carol", "web-02", "exec", "auditctl -D")])
    res = job("--week", "2026-W47")
    assert "detections: 3 (3 FAIL, 0 needs_review, 0 MUTED)" in res.output
    assert "  new detection: critical recursive_delete_of_data mallory on db-01 (FAIL, 1x)" \
        in res.output
    add_week_48(job.drop)
    risky(job.drop, "activity-r48.jsonl", [
        ("r48-mallory", "2026-11-24T09:05:00Z", "mallory", "db-01", "exec", "rm -rf /srv/data"),
        ("r48-dave", "2026-11-24T12:05:00Z", "dave", "db-02", "sudo.command", "/bin/bash")])
    res = job("--week", "2026-W48")
    assert res.exit_code == 0, res.output
    # bob acted on web-01 in W48 (approved) without clearing the history: resolved; carol is quiet
    assert ("detections since 2026-W47: 1 new, 1 still present, 1 resolved, 1 not seen this week"
            in res.output)
    changes = weekly_json(job, "2026-W48")["detection_changes"]
    assert {(c["account"], c["rule_id"]): (c["state"], c["before"], c["now"]) for c in changes} == {
        ("dave", "root_shell_via_sudo"): ("new", 0, 1),
        ("mallory", "recursive_delete_of_data"): ("still present", 1, 1),
        ("bob", "shell_history_cleared"): ("resolved", 1, 0),
        ("carol", "auditctl_rules_deleted"): ("not seen", 1, 0)}
    mallory = [c for c in changes if c["account"] == "mallory"][0]
    assert mallory["key"] == issue_key("MALLORY", "db-01", "recursive_delete_of_data")
    assert mallory["severity"] == "critical" and mallory["review"] == "FAIL"
    assert weekly_json(job, "2026-W48")["detections"] == [
        {"severity": "critical", "review": "FAIL", "n": 1},
        {"severity": "medium", "review": "FAIL", "n": 1}]
    soup = BeautifulSoup((job.tmp / "out" / "2026-W48" / "index.html").read_text(), "html.parser")
    assert sorted(tr["data-state"] for tr in soup.select("#detection-changes tr.detection-change")
                  ) == ["new", "not seen", "resolved", "still present"]
    out = job.tmp / "out" / "2026-W48"
    assert len((out / "detections.jsonl").read_text().splitlines()) == 2
    assert CliRunner().invoke(main, ["verify", str(out)]).exit_code == 0


def test_run_fail_on_severity(job):
    risky(job.drop, "activity-r47.jsonl", [
        ("r47-alice", "2026-11-22T11:05:00Z", "alice", "web-01", "sudo.command", "/bin/bash")])
    # alice's root shell is inside approval A: needs_review, medium
    assert job("--week", "2026-W47", "--fail-on", "high").exit_code == 0
    assert job("--week", "2026-W47", "--fail-on", "medium").exit_code == 3
    assert job("--week", "2026-W47", "--fail-on", "low", "--fail-on", "high").exit_code == 3
    job.configure(extra='[detections]\n[[detections.mute]]\nrule = "root_shell_via_sudo"\n'
                        'account = "alice"\nreason = "on-call shell"\nexpires = 2099-01-01\n')
    assert job("--week", "2026-W47", "--fail-on", "info").exit_code == 0
    assert job("--week", "2026-W47", "--fail-on", "fail").exit_code == 3


def test_weekly_run_says_which_files_it_did_not_read(job):
    extra = job.drop / "extra"
    extra.mkdir()
    (extra / ".hidden.jsonl").write_text("{}\n")
    (extra / "more.jsonl").write_text(json.dumps(
        {"event_id": "x-1", "ts": "2026-11-18T10:00:00Z", "account": "erin", "target": "web-09"})
        + "\n")
    job.configure(extra='[[sources]]\nname = "extra"\nconnector = "generic"\nkind = "activity"\n'
                        'paths = ["drop/extra/"]')
    res = job("--week", "2026-W47")
    assert "  extra: " in res.output and "1 hidden file not read" in res.output, res.output


def test_an_excepted_issue_is_counted_apart_in_what_changed_and_in_the_index(job):
    assert job("--week", "2026-W47").exit_code == 0
    add_week_48(job.drop)
    job.configure(extra="""
[[exceptions]]
name = "mallory-db"
account = "mallory"
verdict = "unapproved"
reason = "migration, CHG-7"
accepted_by = "ciso@example.com"
expires = 2099-01-01
""")
    res = job("--week", "2026-W48")
    assert res.exit_code == 0, res.output
    # mallory failed in W47 and is excepted in W48: neither still failing nor resolved
    assert ("since 2026-W47 (run 1): 1 new, 0 still failing, 1 resolved, 1 not seen this week; "
            "1 excepted issue(s) (1 FAIL action(s), not counted as failing)") in res.output
    changes = weekly_json(job, "2026-W48")["changes"]
    states = {c["account"]: (c["state"], c["before"], c["now"], c["excepted"]) for c in changes}
    assert states == {"dave": ("new", 0, 1, 0), "mallory": ("excepted", 1, 0, 1),
                      "bob": ("resolved", 1, 0, 0), "carol": ("not seen", 1, 0, 0)}
    soup = BeautifulSoup((job.tmp / "out" / "2026-W48" / "index.html").read_text(), "html.parser")
    assert "1 excepted" in soup.select_one("#changes-summary").get_text()
    assert sorted(tr["data-state"] for tr in soup.select("#changes tr.change")) == [
        "excepted", "new", "not seen", "resolved"]
    # totals: the Actions column counts what no exception covers, Excepted the rest
    row = soup.select_one('#totals tr[data-verdict="unapproved"]')
    assert (row.select_one(".count").get_text(), row.select_one(".excepted").get_text()) == (
        "1", "1")
    assert ("EXCEPTED 1: failing (FAIL, WARN) 2 = excepted 1 + not excepted 1"
            in soup.select_one("#excepted-summary").get_text())
    # the week after: mallory's exception is gone from the config and mallory fails again: new,
    # since it was not counted as failing in W48
    job.configure()
    (job.drop / "activity-w49.jsonl").write_text(json.dumps(
        {"event_id": "w49-mallory", "ts": "2026-12-01T09:00:00Z", "account": "mallory",
         "target": "db-01"}) + "\n")
    res = job("--week", "2026-W49")
    states = {c["account"]: c["state"] for c in weekly_json(job, "2026-W49")["changes"]}
    assert states["mallory"] == "new", res.output
    assert "excepted" not in res.output.split("since 2026-W48")[1].splitlines()[0]
