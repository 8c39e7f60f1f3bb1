"""The CLI through click's CliRunner: exit codes, formats, errors without tracebacks."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from correlate.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("PAMCORR_DB", str(tmp_path / "t.duckdb"))
    runner = CliRunner()

    def run(*args):
        return runner.invoke(main, list(args), catch_exceptions=False)
    return run


@pytest.fixture
def loaded(cli, world):
    world.approval("A", "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z")
    world.action("ok", "2026-11-16T11:00:00Z", detail="=HYPERLINK(\"http://x\")")
    world.action("bad", "2026-11-16T15:00:00Z", account="mallory", detail="rm -rf /")
    files = world.write()
    for kind, path in files.items():
        res = cli("ingest", "generic", "--kind", kind, str(path))
        assert res.exit_code == 0, res.output
    return cli


def test_ingest_prints_counts_that_add_up(cli, tmp_path):
    res = cli("ingest", "generic", "--kind", "approvals", str(ROOT / "sample_data" / "approvals.csv"))
    assert res.exit_code == 0
    line = [l for l in res.output.splitlines() if "read" in l][0]
    nums = [int(x) for x in line.replace("=", " ").replace("+", " ").split() if x.isdigit()]
    assert nums[0] == sum(nums[1:])


def test_correlate_fail_on_exits_3(loaded):
    assert loaded("correlate").exit_code == 0
    res = loaded("correlate", "--fail-on", "fail")
    assert res.exit_code == 3 and "unapproved" in res.output


def test_findings_csv_is_formula_safe(loaded):
    loaded("correlate")
    res = loaded("findings", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(res.output)))
    assert {r["event_id"]: r["verdict"] for r in rows} == {"ok": "approved", "bad": "unapproved"}
    assert [r["detail"] for r in rows if r["event_id"] == "ok"] == ["'=HYPERLINK(\"http://x\")"]
    for col in ("event_id", "ts", "account", "target", "verdict", "status", "approval_id",
                "ticket_id", "gap_seconds", "reason"):
        assert col in rows[0]


def test_findings_jsonl_and_filter(loaded):
    loaded("correlate")
    res = loaded("findings", "--verdict", "unapproved", "--format", "jsonl")
    rows = [json.loads(l) for l in res.output.splitlines()]
    assert [r["event_id"] for r in rows] == ["bad"] and rows[0]["ts"] == "2026-11-16T15:00:00Z"


def test_usage_error_exits_2(cli):
    assert cli("correlate", "--grace", "soon").exit_code == 2


def test_errors_are_messages_not_tracebacks(cli, tmp_path):
    res = cli("ingest", "generic", "--kind", "activity", str(tmp_path / "nope.jsonl"))
    assert res.exit_code == 1 and "nope.jsonl" in res.output and "Traceback" not in res.output
    res = cli("ingest", "nosuch", str(tmp_path))
    assert res.exit_code == 2 and "unknown source" in res.output     # a usage error (issue 18)
    res = cli("findings")
    assert res.exit_code == 1 and "Traceback" not in res.output


def test_report_gaps_writes_html(loaded, tmp_path):
    loaded("correlate")
    out = tmp_path / "r.html"
    res = loaded("report", "gaps", "-o", str(out))
    assert res.exit_code == 0 and out.exists()


def test_demo_writes_report(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = cli("demo")
    assert res.exit_code == 0
    path = Path(res.output.strip().splitlines()[-1])
    assert path.exists() and path.read_text().startswith("<!doctype html>")


def test_sources_lists_generic(cli):
    assert "generic" in cli("sources").output


def test_every_command_is_in_readme():
    readme = (ROOT / "README.md").read_text()

    def walk(group, prefix):
        for name, cmd in group.commands.items():
            full = f"{prefix} {name}"
            yield full, cmd
            if hasattr(cmd, "commands"):
                yield from walk(cmd, full)
    for full, cmd in walk(main, "pamcorr"):
        assert f"`{full}" in readme, f"{full} missing from README.md"
        assert cmd.help, f"{full} has no help text"


def test_ingest_passes_connector_options(cli, tmp_path, monkeypatch):
    from correlate.store import Store
    log = Path(__file__).parent / "fixtures" / "teleport" / "requests.jsonl"
    res = cli("ingest", "teleport", "--option", r"ticket_regex=\bNOPE-\d+\b", str(log))
    assert res.exit_code == 0, res.output
    with Store(str(tmp_path / "t.duckdb")) as store:
        assert store.scalar("SELECT ticket FROM approvals WHERE approval_id = 'req-1'") is None
    monkeypatch.setenv("PAMCORR_DB", str(tmp_path / "u.duckdb"))
    assert cli("ingest", "teleport", str(log)).exit_code == 0
    with Store(str(tmp_path / "u.duckdb")) as store:
        assert store.scalar("SELECT ticket FROM approvals WHERE approval_id = 'req-1'") == "OPS-123"
    assert cli("ingest", "teleport", "--option", "novalue", str(log)).exit_code == 2
