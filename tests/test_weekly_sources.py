"""Issue 18 (section 2): the weekly run checks coverage per configured source name, every kind,
and says when the run it compares with did not judge the adjacent period."""

from __future__ import annotations

import json

import pytest
from bs4 import BeautifulSoup
from click.testing import CliRunner

from correlate.cli import main

CONFIG = """
db = "t.duckdb"
output = "out"
[[sources]]
name = "approvals"
connector = "generic"
kind = "approvals"
paths = ["{approvals}"]
[[sources]]
name = "tickets"
connector = "generic"
kind = "tickets"
paths = ["drop/tickets.csv"]
[[sources]]
name = "bastion"
connector = "generic"
kind = "activity"
paths = ["drop/bastion-*.jsonl"]
[[sources]]
name = "vpn"
connector = "generic"
kind = "activity"
paths = ["drop/vpn-*.jsonl"]
"""


def jsonl(path, rows):
    path.write_text("".join(json.dumps({"event_id": e, "ts": ts, "account": a, "target": t})
                            + "\n" for e, ts, a, t in rows))


@pytest.fixture
def weekly(tmp_path, monkeypatch):
    """Two generic activity feeds (bastion busy in W47, vpn quiet since W45), approvals and a
    tickets snapshot; `run(*args, approvals=GLOB)` runs `pamcorr run` on them."""
    monkeypatch.delenv("PAMCORR_DB", raising=False)
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "approvals.csv").write_text(
        "approval_id,account,target,start,end,ticket\n"
        "A,alice,web-01,2026-11-17T10:00:00Z,2026-11-17T12:00:00Z,CHG-1\n")
    (drop / "tickets.csv").write_text("ticket_id,status,opened\nCHG-1,approved,2026-11-01T00:00:00Z\n")
    jsonl(drop / "bastion-w47.jsonl", [("b1", "2026-11-17T11:00:00Z", "alice", "web-01"),
                                       ("b2", "2026-11-22T20:00:00Z", "alice", "web-01")])
    jsonl(drop / "vpn-w45.jsonl", [("v1", "2026-11-05T11:00:00Z", "bob", "vpn-gw")])

    def run(*args, approvals="drop/approvals*.csv"):
        (tmp_path / "pamcorr.toml").write_text(CONFIG.format(approvals=approvals))
        return CliRunner().invoke(main, ["run", "--config", str(tmp_path / "pamcorr.toml"),
                                         *args], catch_exceptions=False)
    run.tmp, run.drop = tmp_path, drop
    return run


def test_a_quiet_feed_and_an_approvals_glob_matching_nothing_are_warnings(weekly):
    res = weekly("--week", "2026-W47", "--fail-on", "warn", approvals="drop/aprovals*.csv")
    out = res.output
    # the connector check sees generic activity in the week and is satisfied: not enough
    assert "coverage: every source sent activity" in out
    assert "sources:\n" in out
    assert ("  WARN: approvals (generic approvals): its paths match no file "
            f"({weekly.tmp}/drop/aprovals*.csv); 2026-W47 is judged without it") in out
    assert ("  WARN: vpn (generic activity): nothing in 2026-W47 (1 file(s), latest record "
            "before it 2026-11-05T11:00:00Z)") in out
    assert "bastion (generic activity)" not in out and "tickets (generic" not in out
    assert res.exit_code == 3
    assert "exit 3: 2 FAIL findings, 2 WARN coverage gap(s) (--fail-on warn)" in out
    got = json.loads((weekly.tmp / "out" / "2026-W47" / "weekly.json").read_text())
    assert {c["name"]: (c["status"], c["files"], c["rows"]) for c in got["source_coverage"]} == {
        "approvals": ("WARN", 0, 0), "tickets": ("PASS", 1, 1), "bastion": ("PASS", 1, 2),
        "vpn": ("WARN", 1, 0)}
    soup = BeautifulSoup((weekly.tmp / "out" / "2026-W47" / "index.html").read_text(),
                         "html.parser")
    rows = {tr.select("td")[1].get_text(): tr["data-status"]
            for tr in soup.select("#source-coverage tr.source-coverage")}
    assert rows == {"approvals": "WARN", "tickets": "PASS", "bastion": "PASS", "vpn": "WARN"}


def test_warnings_follow_fail_on_and_a_complete_week_passes(weekly):
    assert weekly("--week", "2026-W47", "--fail-on", "fail").exit_code == 3   # alice fails
    jsonl(weekly.drop / "vpn-w47.jsonl", [("v2", "2026-11-20T11:00:00Z", "alice", "web-01")])
    res = weekly("--week", "2026-W47")
    assert "sources: every configured source sent data for 2026-W47" in res.output
    assert res.exit_code == 0


def test_stale_approvals_and_files_ingested_before_are_judged_by_their_records(weekly):
    assert weekly("--week", "2026-W47").exit_code == 0
    # W48: the approvals file is the old one (skipped, already ingested), vpn stays quiet,
    # bastion sends W48; the tickets snapshot still holds an open ticket
    jsonl(weekly.drop / "bastion-w48.jsonl", [("b3", "2026-11-29T20:00:00Z", "alice", "web-01")])
    res = weekly("--week", "2026-W48")
    assert ("WARN: approvals (generic approvals): nothing in 2026-W48 (1 file(s), latest record "
            "before it 2026-11-17T10:00:00Z)") in res.output
    assert "WARN: vpn (generic activity): nothing in 2026-W48" in res.output
    got = json.loads((weekly.tmp / "out" / "2026-W48" / "weekly.json").read_text())
    status = {c["name"]: c["status"] for c in got["source_coverage"]}
    assert status == {"approvals": "WARN", "tickets": "PASS", "bastion": "PASS", "vpn": "WARN"}


def test_a_comparison_with_a_run_that_is_not_the_previous_week_says_so(weekly):
    assert weekly("--week", "2026-W45").exit_code == 0
    res = weekly("--week", "2026-W47")
    assert "since 2026-W45 (run 1):" in res.output
    note = ("compared with run 1 (2026-11-02..2026-11-09), not the previous week (1 week "
            "between without a weekly run)")
    assert f"  {note}\n" in res.output
    soup = BeautifulSoup((weekly.tmp / "out" / "2026-W47" / "index.html").read_text(),
                         "html.parser")
    assert note in soup.select_one("#previous-note").get_text()
    assert json.loads((weekly.tmp / "out" / "2026-W47" / "weekly.json").read_text()
                      )["previous"]["note"] == note
    res = weekly("--week", "2026-W48")             # W47 is adjacent: nothing to say
    assert "since 2026-W47 (run 2):" in res.output and "compared with run" not in res.output
    soup = BeautifulSoup((weekly.tmp / "out" / "2026-W48" / "index.html").read_text(),
                         "html.parser")
    assert soup.select_one("#previous-note") is None


def test_gap_report_says_when_the_run_compared_with_overlaps_or_leaves_a_gap(world, tmp_path,
                                                                              monkeypatch):
    monkeypatch.setenv("PAMCORR_DB", str(tmp_path / "g.duckdb"))
    world.action("a1", "2026-11-16T11:00:00Z")
    world.action("a2", "2026-11-18T11:00:00Z")
    world.action("a3", "2026-11-20T11:00:00Z")
    world.action("a4", "2026-11-24T11:00:00Z")

    def cli(*args):
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    for kind, path in world.write().items():
        assert cli("ingest", "generic", "--kind", kind, path).exit_code == 0

    def note(start, end):
        assert cli("correlate", "--from", start, "--to", end).exit_code == 0
        cli("report", "gaps", "-o", tmp_path / "g.html")
        found = BeautifulSoup((tmp_path / "g.html").read_text(), "html.parser").select_one(
            "#previous-note")
        return found.get_text() if found else None
    assert note("2026-11-16", "2026-11-18") is None                    # the first run
    assert note("2026-11-18", "2026-11-20") is None                    # adjacent
    assert note("2026-11-19", "2026-11-21") == (
        "Note: compared with run 2 (2026-11-18..2026-11-20), not the adjacent period: the two "
        "periods overlap.")
    assert note("2026-11-23", "2026-11-25") == (
        "Note: compared with run 3 (2026-11-19..2026-11-21), not the adjacent period "
        "(2026-11-21..2026-11-23 was not judged).")


def test_a_file_skipped_as_a_copy_still_counts_for_the_source_that_matched_it(weekly):
    import shutil
    shutil.copy(weekly.drop / "bastion-w47.jsonl", weekly.drop / "vpn-w47.jsonl")
    res = weekly("--week", "2026-W47")
    assert "sources: every configured source sent data for 2026-W47" in res.output, res.output
    assert "1 already ingested" in res.output        # the copy: same sha256, not read again


def test_sources_sharing_a_name_are_checked_apart(weekly):
    # unnamed sources are named after their connector: three `generic` entries here
    config = CONFIG.format(approvals="drop/approvals*.csv").replace('name = "approvals"\n', "")
    config = config.replace('name = "tickets"\n', "").replace('name = "vpn"\n', "")
    (weekly.tmp / "pamcorr.toml").write_text(config)
    res = CliRunner().invoke(main, ["run", "--config", str(weekly.tmp / "pamcorr.toml"),
                                    "--week", "2026-W47"])
    got = json.loads((weekly.tmp / "out" / "2026-W47" / "weekly.json").read_text())
    assert [(c["name"], c["kind"], c["status"], c["rows"]) for c in got["source_coverage"]] == [
        ("generic", "approvals", "PASS", 1), ("generic", "tickets", "PASS", 1),
        ("bastion", "activity", "PASS", 2), ("generic", "activity", "WARN", 0)]
    assert "WARN: generic (generic activity): nothing in 2026-W47" in res.output
