"""Approval hygiene through the CLI and the outputs: `pamcorr hygiene`, --hygiene and [hygiene],
--fail-on, approvers.csv, the gap report section and the evidence bundle."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from click.testing import CliRunner

from correlate.cli import main

HOSTILE = "=cmd|'/c calc'!A1<script>alert(1)</script>"


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("PAMCORR_DB", str(tmp_path / "t.duckdb"))
    runner = CliRunner()

    def run(*args):
        return runner.invoke(main, list(args), catch_exceptions=False)
    return run


def load(cli, world):
    for kind, path in world.write().items():
        res = cli("ingest", "generic", "--kind", kind, str(path))
        assert res.exit_code == 0, res.output
    return cli


@pytest.fixture
def self_approved(cli, world):
    """Every action approved, and one approval its requester approved under another alias."""
    world.identity("DOMAIN\\alice", "alice")
    world.identity("alice@corp", "alice")
    world.approval("A1", "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z",
                   requester="DOMAIN\\alice", approver="alice@corp")
    world.approval("A2", "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z", account=HOSTILE,
                   target="web-02", requester="bob", approver="carol")
    world.action("ok", "2026-11-16T11:00:00Z")
    world.action("ok2", "2026-11-16T11:00:00Z", account=HOSTILE, target="web-02")
    return load(cli, world)


def test_hygiene_lists_a_runs_findings_in_three_formats(self_approved):
    assert self_approved("correlate").exit_code == 0
    table = self_approved("hygiene")
    assert table.exit_code == 0
    assert "self_approval" in table.stdout and "A1" in table.stdout
    assert "self_approval            FAIL 1 of 2 judged" in table.stderr
    rows = list(csv.DictReader(io.StringIO(self_approved("hygiene", "--format", "csv").stdout)))
    assert [(r["check_id"], r["approval_id"]) for r in rows if r["severity"] == "FAIL"] == [
        ("self_approval", "A1")]
    assert json.loads(rows[0]["evidence"])["identity"] == "alice"
    lines = self_approved("hygiene", "--format", "jsonl", "--check", "self_approval").stdout
    (row,) = [json.loads(line) for line in lines.splitlines()]
    assert row["evidence"]["matched_by"].startswith("identities.csv")


def test_hygiene_csv_is_formula_safe(self_approved):
    self_approved("correlate", "--hygiene", "min_window=0.5", "--hygiene", "used_fraction=1")
    rows = list(csv.DictReader(io.StringIO(self_approved("hygiene", "--format", "csv").stdout)))
    hostile = [r for r in rows if r["approval_id"] == "A2"]
    assert hostile and all(r["account"] == "'" + HOSTILE for r in hostile)


def test_fail_on_fail_counts_a_fail_check_like_a_fail_verdict(self_approved):
    res = self_approved("correlate", "--fail-on", "fail")
    assert res.exit_code == 3, res.output
    assert "approval hygiene: FAIL 1" in res.stdout
    assert "unapproved" not in res.stdout      # every action was approved


def test_no_fail_check_no_exit_3(cli, world):
    world.approval("A1", "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z", requester="alice",
                   approver="bob")
    world.action("ok", "2026-11-16T11:00:00Z")
    load(cli, world)
    assert cli("correlate", "--fail-on", "fail").exit_code == 0


@pytest.mark.parametrize("args, message", [
    (("correlate", "--hygiene", "min_window=-1"), "must not be negative"),
    (("correlate", "--hygiene", "nonsense=3"), "unknown hygiene threshold 'nonsense'"),
    (("correlate", "--hygiene", "max_per_week=many"), "an integer"),
    (("hygiene", "--check", "self_approvals"), "'self_approvals' is not one of"),
])
def test_bad_thresholds_and_unknown_checks_are_usage_errors(self_approved, args, message):
    res = self_approved(*args)
    assert res.exit_code == 2 and message in res.output
    assert "Traceback" not in res.output


def test_config_hygiene_thresholds_apply_and_bad_ones_name_the_file(cli, world, tmp_path):
    for i in range(4):
        world.approval(f"P{i}", f"2026-11-16T0{i}:00:00Z", f"2026-11-16T0{i + 1}:00:00Z")
        world.action(f"e{i}", f"2026-11-16T0{i}:30:00Z")
    load(cli, world)
    good = tmp_path / "good.toml"
    good.write_text("[hygiene]\nmax_chain = 3\n")
    assert cli("correlate", "--config", str(good)).exit_code == 0
    assert "renewal_chain" in cli("hygiene", "--check", "renewal_chain").stdout
    cli("correlate", "--config", str(good), "--hygiene", "max_chain=12")    # the flag wins
    assert "renewal_chain" not in cli("hygiene", "--check", "renewal_chain").stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[hygiene]\nmax_chain = -3\n")
    res = cli("correlate", "--config", str(bad))
    assert res.exit_code == 1 and "bad.toml" in res.output and "negative" in res.output


def test_approvers_row_without_scope_is_quarantined_with_file_and_line(cli, tmp_path):
    path = tmp_path / "approvers.csv"
    path.write_text("approver,scope,kinds\nbob,web-*,standard\ncarol,,\ndave,db-*,urgent\n")
    res = cli("ingest", "generic", "--kind", "approvers", str(path))
    assert res.exit_code == 0, res.output
    assert "read 3 = accepted 1 + ignored 0 + quarantined 2 + duplicates 0" in res.stdout
    from correlate.store import Store
    with Store(str(tmp_path / "t.duckdb"), read_only=True) as store:
        got = store.query("SELECT file, line, reason FROM quarantine ORDER BY line")
    assert got == [(str(path), 3, "missing required field: scope"),
                   (str(path), 4, "invalid kinds: urgent (standard and/or break_glass)")]


def test_gap_report_has_the_hygiene_section_with_counts_and_evidence(self_approved, tmp_path):
    self_approved("correlate")
    out = tmp_path / "gaps.html"
    assert self_approved("report", "gaps", "-o", str(out)).exit_code == 0
    page = BeautifulSoup(out.read_text(), "html.parser")
    section = page.find("section", id="hygiene")
    assert section.find("h2").get_text() == "Approval hygiene"
    counts = {tr.find_all("td")[0].get_text(): tr.find_all("td")[4].get_text()
              for tr in section.find(id="hygiene-counts").find("tbody").find_all("tr")}
    assert counts["self_approval"] == "1" and set(counts) >= {"approval_bypass", "window_oversized"}
    rows = section.find(id="hygiene-rows").find("tbody").find_all("tr")
    first = rows[0].find_all("td")
    assert first[1].get_text() == "self_approval" and "identity: alice" in first[7].get_text()
    assert page.find("script", string=lambda s: s and "alert(1)" in s) is None


def test_evidence_bundle_lists_hygiene_files_in_its_manifest(self_approved, tmp_path):
    self_approved("correlate")
    out = tmp_path / "bundle"
    assert self_approved("export", "-o", str(out)).exit_code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    listed = {o["path"]: o for o in manifest["outputs"]}
    assert listed["hygiene.csv"]["rows"] == listed["hygiene.jsonl"]["rows"] >= 1
    assert manifest["hygiene"]["FAIL"] == 1
    lines = (out / "hygiene.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["check_id"] == "self_approval"
    assert self_approved("verify", str(out)).exit_code == 0


def test_the_demo_week_shows_an_example_of_every_check(tmp_path):
    from correlate.hygiene import CHECK_IDS
    db = tmp_path / "demo.duckdb"
    runner = CliRunner()
    res = runner.invoke(main, ["demo", "--db", str(db), "-o", str(tmp_path / "demo.html")],
                        catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "approval hygiene: FAIL 3" in res.stderr and "pamcorr hygiene --db" in res.stderr
    out = runner.invoke(main, ["hygiene", "--db", str(db), "--format", "jsonl"]).stdout
    seen = {json.loads(line)["check_id"] for line in out.splitlines()}
    assert seen == set(CHECK_IDS)
