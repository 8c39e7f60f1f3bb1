"""Issue 18 (sections 2 and 3): the CLI never says "clean" when nothing was judged, and never
leaves a user stuck (wrong source, unknown option, unknown account, refused fetch)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from correlate.cli import main
from correlate.store import Store
from tests.test_jobs import job  # noqa: F401 - the weekly-run fixture

try:
    from tests.ticket_server import TicketServer
except ImportError:
    TicketServer = None


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("PAMCORR_DB", str(tmp_path / "t.duckdb"))

    def run(*args):
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    run.tmp = tmp_path
    return run


@pytest.fixture
def loaded(cli, world):
    world.approval("A", "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z", ticket="OPS-1")
    world.action("ok", "2026-11-16T11:00:00Z")
    world.action("bad", "2026-11-16T15:00:00Z", account="dave.okafor")
    for kind, path in world.write().items():
        assert cli("ingest", "generic", "--kind", kind, path).exit_code == 0
    cli.files = world.write()
    return cli


def test_a_period_without_activity_is_not_clean(loaded):
    res = loaded("correlate", "--from", "2027-01-01", "--to", "2027-02-01")
    assert res.exit_code == 3, res.output
    assert ("no activity in this period; data on record spans "
            "2026-11-16T11:00:00Z..2026-11-16T15:00:00Z") in res.output
    res = loaded("report", "gaps", "-o", loaded.tmp / "g.html")
    assert res.exit_code == 3 and "no activity in this period" in res.output
    assert (loaded.tmp / "g.html").exists()
    assert loaded("correlate").exit_code == 0          # the whole record judges two actions


@pytest.mark.parametrize("args, message", [
    (("--from", "2026-11-17", "--to", "2026-11-16"), "is not after --from"),
    (("--from", "2026-11-16T10:00:00"), "no zone"),
])
def test_bad_ranges_are_usage_errors(loaded, args, message):
    res = loaded("correlate", *args)
    assert res.exit_code == 2 and message in res.output


def test_zoned_and_date_bounds_still_work(loaded):
    assert loaded("correlate", "--from", "2026-11-16T10:00:00+01:00",
                  "--to", "2026-11-17").exit_code == 0


def test_a_file_fed_to_the_wrong_source_is_an_error_and_not_recorded(cli, world):
    world.action("k1", "2026-11-16T11:00:00Z")
    activity = world.write()["activity"]
    res = cli("ingest", "k8s", activity)
    assert res.exit_code == 1, res.output
    assert "no record accepted" in res.output and "not recorded as ingested" in res.output
    assert "generic activity JSON lines" in res.output
    with Store(str(cli.tmp / "t.duckdb"), read_only=True) as store:
        assert store.scalar("SELECT count(*) FROM ingest_log") == 0
        assert store.scalar("SELECT count(*) FROM quarantine") == 0
    res = cli("ingest", "generic", "--kind", "activity", activity)   # read now, not skipped
    assert res.exit_code == 0 and "accepted 1" in res.output


def test_wrong_source_in_the_weekly_run_is_exit_1(job):  # noqa: F811
    (job.drop / "k8s.jsonl").write_text(json.dumps({"event_id": "x", "ts": "2026-11-17T10:00:00Z",
                                                    "account": "a", "target": "t"}) + "\n")
    job.configure(extra='[[sources]]\nconnector = "k8s"\npaths = ["drop/k8s.jsonl"]')
    res = job("--week", "2026-W47")
    assert res.exit_code == 1 and "k8s.jsonl: no record accepted" in res.output


def test_unknown_option_key_lists_the_known_ones(cli, tmp_path):
    f = tmp_path / "x.log"
    f.write_text("")
    res = cli("ingest", "cyberark", "--option", "checkout_minute=90", f)
    assert res.exit_code == 2
    assert "'checkout_minute'" in res.output and "checkout_minutes, dst, ticket_regex" in res.output
    assert cli("ingest", "cyberark", "--option", "checkout_minutes=90", f).exit_code == 0


def test_scope_of_an_unknown_account_suggests_close_names(loaded):
    res = loaded("scope", "dave", "-o", loaded.tmp / "s.html")
    assert res.exit_code == 1 and "no such account or alias" in res.output
    assert "dave.okafor" in res.output and not (loaded.tmp / "s.html").exists()
    assert loaded("scope", "DAVE.okafor", "-o", loaded.tmp / "s.html").exit_code == 0


def test_demo_prints_the_next_commands_with_its_db(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["demo", "--db", "my demo.duckdb"])
    assert res.exit_code == 0
    assert "pamcorr findings --db 'my demo.duckdb'" in res.output
    assert "pamcorr scope svc-deploy --db 'my demo.duckdb'" in res.output
    assert Path(res.output.splitlines()[-1]).exists()     # the last line stays the report


@pytest.mark.skipif(TicketServer is None, reason="tests/ticket_server.py is not present")
def test_a_fetch_where_every_ticket_failed_is_exit_1(loaded, monkeypatch):
    closed = TicketServer()   # nothing listens there
    url = closed.url
    closed.stop()
    monkeypatch.setenv("PAMCORR_JIRA_USER", "u")
    monkeypatch.setenv("PAMCORR_JIRA_TOKEN", "t")
    res = loaded("fetch", "jira", "--url", url, "--flavour", "cloud")
    assert res.exit_code == 1, res.output
    assert "fetched 0" in res.output and "every ticket fetch failed" in res.output


def test_run_says_why_it_exits_3(job):  # noqa: F811
    res = job("--week", "2026-W47", "--fail-on", "fail")
    assert res.exit_code == 3
    assert "exit 3: 3 FAIL findings (--fail-on fail)" in res.output


def test_findings_every_row_by_default_failing_and_repeatable_status(world, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from correlate.cli import main
    monkeypatch.setenv("PAMCORR_DB", str(tmp_path / "f.duckdb"))
    world.approval("A", "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z")
    world.action("ok", "2026-11-16T11:00:00Z", action="exec", detail="uptime")
    world.action("grace", "2026-11-16T12:03:00Z", action="exec", detail="uptime")
    world.action("bad", "2026-11-16T15:00:00Z", action="exec", detail="uptime")
    runner = CliRunner()
    for kind, path in world.write().items():
        assert runner.invoke(main, ["ingest", "generic", "--kind", kind, str(path)]).exit_code == 0
    assert runner.invoke(main, ["correlate"]).exit_code == 0

    def events(*args):
        res = runner.invoke(main, ["findings", "--format", "jsonl", *args])
        assert res.exit_code == 0, res.output
        return sorted(json.loads(line)["event_id"] for line in res.stdout.splitlines())
    assert events() == ["bad", "grace", "ok"]
    assert events("--failing") == events("--status", "FAIL", "--status", "WARN") == ["bad", "grace"]
    assert events("--status", "PASS") == ["ok"]
    table = runner.invoke(main, ["findings"]).stdout.splitlines()
    assert table[0].split() == ["ts", "account", "target", "action", "status", "verdict",
                                "approval_id", "ticket_id", "gap_seconds", "outcome", "reason",
                                "exception"]
    assert any("after the end of the nearest approval" in line for line in table)
