"""Fetched tickets drive verdicts: CLI `pamcorr fetch jira` over real HTTP, then correlate."""

from __future__ import annotations

from click.testing import CliRunner

from correlate.cli import main
from correlate.store import Store
from tests.ticket_server import (  # noqa: F401 - ticket_server is a fixture
    jira_history, jira_issue, jira_status, ticket_server,
)


def test_fetched_history_and_unverifiable_tickets_decide_verdicts(world, ticket_server, tmp_path,
                                                                   monkeypatch):
    db = tmp_path / "f.duckdb"
    monkeypatch.setenv("PAMCORR_DB", str(db))
    monkeypatch.setenv("PAMCORR_JIRA_USER", "bot@example.com")
    monkeypatch.setenv("PAMCORR_JIRA_TOKEN", "not-a-real-token")
    todo = jira_status("To Do", "1", "new")
    progress = jira_status("In Progress", "3", "indeterminate")
    done = jira_status("Done", "10001", "done")
    ticket_server.jira_statuses = [todo, progress, done]
    ticket_server.strict_keys = False
    ticket_server.add_issues(jira_issue(
        "OPS-1", done, created="2026-11-16T08:00:00.000+0000",
        resolutiondate="2026-11-16T12:30:00.000+0000",
        histories=[jira_history(1, "2026-11-16T10:30:00.000+0000", todo, progress),
                   jira_history(2, "2026-11-16T12:30:00.000+0000", progress, done)]))
    world.tickets.clear()
    world.approval("A", "2026-11-16T10:00:00Z", "2026-11-16T13:00:00Z", ticket="OPS-1")
    world.approval("B", "2026-11-16T10:00:00Z", "2026-11-16T13:00:00Z", ticket="OPS-404",
                   target="web-02")
    world.approval("C", "2026-11-16T10:00:00Z", "2026-11-16T13:00:00Z",
                   ticket="ops-1) OR project = SECRET", target="web-03")
    world.action("before", "2026-11-16T10:15:00Z")     # ticket still To Do
    world.action("during", "2026-11-16T11:00:00Z")     # In Progress
    world.action("after", "2026-11-16T12:45:00Z")      # Done
    world.action("missing", "2026-11-16T11:00:00Z", target="web-02")
    world.action("inject", "2026-11-16T11:00:00Z", target="web-03")
    runner = CliRunner()
    for kind, path in world.write().items():
        assert runner.invoke(main, ["ingest", "generic", "--kind", kind, str(path)]).exit_code == 0
    res = runner.invoke(main, ["fetch", "jira", "--url", ticket_server.url])
    assert res.exit_code == 0, res.output
    assert "not-a-real-token" not in res.output
    assert "fetched 1" in res.output and "invalid refs 1" in res.output
    assert not any("SECRET" in p for p in ticket_server.urls().splitlines())
    assert runner.invoke(main, ["correlate"]).exit_code == 0
    with Store(str(db)) as store:
        got = dict(store.query("SELECT a.event_id, f.verdict || '/' || coalesce(f.reason, '') "
                               "FROM findings f JOIN activity a USING (act_id)"))
        raw = store.scalar("SELECT count(*) FROM ticket_raw")
    assert got["before"] == "ticket_invalid/ticket_status_requested"
    assert got["during"] == "approved/"
    assert got["after"].startswith("ticket_invalid/ticket_status_")
    assert got["missing"] == "ticket_invalid/ticket_unverifiable"
    assert got["inject"] == "ticket_invalid/invalid_ticket_ref"
    assert raw >= 1


def test_a_jira_status_that_cannot_be_mapped_never_permits_work(world, ticket_server, tmp_path,
                                                                 monkeypatch):
    db = tmp_path / "u.duckdb"
    monkeypatch.setenv("PAMCORR_DB", str(db))
    monkeypatch.setenv("PAMCORR_JIRA_TOKEN", "not-a-real-token")
    custom = jira_status("Waiting for CAB", "20001", None)     # a custom status, no category
    ticket_server.jira_statuses = []
    ticket_server.strict_keys = False
    ticket_server.add_issues(jira_issue("OPS-7", custom, created="2026-11-16T08:00:00.000+0000"))
    world.tickets.clear()
    world.approval("A", "2026-11-16T10:00:00Z", "2026-11-16T13:00:00Z", ticket="OPS-7")
    world.action("during", "2026-11-16T11:00:00Z")
    runner = CliRunner()
    for kind, path in world.write().items():
        assert runner.invoke(main, ["ingest", "generic", "--kind", kind, str(path)]).exit_code == 0
    res = runner.invoke(main, ["fetch", "jira", "--url", ticket_server.url, "--flavour", "cloud"])
    assert res.exit_code == 0, res.output
    assert runner.invoke(main, ["correlate"]).exit_code == 0
    with Store(str(db)) as store:
        assert store.scalar("SELECT status FROM tickets") == "unknown:Waiting for CAB"
        got = store.scalar("SELECT f.verdict || '/' || f.reason FROM findings f")
    assert got == "ticket_invalid/ticket_status_unknown:Waiting for CAB"
