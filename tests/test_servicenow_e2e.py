"""ServiceNow changes judged as strictly as Jira issues: `pamcorr fetch servicenow` over real HTTP,
then `pamcorr correlate`. State history from sys_audit, sys_id references, unknown states,
approval records, malformed and missing references."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from correlate.cli import main
from correlate.store import Store
from tests.test_servicenow_fetch import approval, change, sys_id
from tests.ticket_server import Reply
from tests.ticket_server import ticket_server as _server_fixture

ticket_server = _server_fixture

DAY = "2026-11-16"


def audit(n: int, change_n: int, old: str, new: str, at: str) -> dict:
    """A sys_audit row for a change_request.state move."""
    return {"sys_id": f"{90_000 + n:032x}", "tablename": "change_request", "fieldname": "state",
            "documentkey": sys_id(change_n), "oldvalue": old, "newvalue": new,
            "sys_created_on": f"{DAY} {at}", "record_checkpoint": str(n)}


def snow_change(n: int, state: str, **kw) -> dict:
    return change(n, state=state, opened_at=f"{DAY} 08:00:00", start_date="", end_date="",
                  work_start="", **kw)


def run(world, server, monkeypatch, tmp_path) -> tuple[dict, str, Store]:
    db = tmp_path / "s.duckdb"
    monkeypatch.setenv("PAMCORR_DB", str(db))
    monkeypatch.setenv("PAMCORR_SNOW_USER", "svc.pamcorr")
    monkeypatch.setenv("PAMCORR_SNOW_TOKEN", "not-a-real-token")
    runner = CliRunner()
    for kind, path in world.write().items():
        assert runner.invoke(main, ["ingest", "generic", "--kind", kind, str(path)]).exit_code == 0
    fetched = runner.invoke(main, ["fetch", "servicenow", "--url", server.url])
    assert fetched.exit_code == 0, fetched.output
    judged = runner.invoke(main, ["correlate"])
    assert judged.exit_code == 0, judged.output
    store = Store(str(db))
    got = dict(store.query("SELECT a.event_id, f.verdict || '/' || coalesce(f.reason, '') "
                           "FROM findings f JOIN activity a USING (act_id)"))
    return got, fetched.output + judged.output, store


@pytest.fixture
def changes(world, ticket_server):
    world.tickets.clear()
    ticket_server.snow_changes = [
        snow_change(1, "-1"),                       # New until 10:30, then Implement
        snow_change(2, "-1"),                       # cited by its sys_id
        snow_change(3, "5"),                        # a custom state, no audit trail
        snow_change(4, "-1"),                       # an approver has not decided yet
        snow_change(5, "-1"),                       # one approver rejected
    ]
    ticket_server.snow_audit = [
        audit(1, 1, "-5", "-1", "10:30:00"),
        audit(2, 2, "-5", "-1", "09:00:00"),
        audit(3, 4, "-5", "-1", "09:00:00"),
        audit(4, 5, "-5", "-1", "09:00:00"),
    ]
    ticket_server.snow_approvals = [
        approval(1, 1, "cab.chair", "approved", f"{DAY} 09:00:00"),
        approval(2, 4, "cab.chair", "approved", f"{DAY} 09:00:00"),
        approval(3, 4, "sec.lead", "requested", f"{DAY} 09:00:00"),
        approval(4, 5, "sec.lead", "rejected", f"{DAY} 09:00:00"),
    ]
    refs = {"number": "CHG0000001", "sys_id": sys_id(2), "custom": "CHG0000003",
            "pending": "CHG0000004", "rejected": "CHG0000005", "malformed": "chg0000009",
            "missing": "CHG0000404"}
    for i, (name, ref) in enumerate(refs.items()):
        world.approval(name, f"{DAY}T09:00:00Z", f"{DAY}T13:00:00Z", ticket=ref, target=f"db-{i}")
        world.action(name, f"{DAY}T11:00:00Z", target=f"db-{i}")
    world.action("before-implement", f"{DAY}T10:15:00Z", target="db-0")
    return refs


def test_servicenow_changes_are_judged_by_state_history_approvals_and_strict_refs(
        world, ticket_server, changes, monkeypatch, tmp_path):
    got, output, store = run(world, ticket_server, monkeypatch, tmp_path)
    with store:
        assert got["before-implement"] == "ticket_invalid/ticket_status_requested"
        assert got["number"] == "approved/"
        # a change cited by its sys_id is found (stored under both identifiers)
        assert got["sys_id"] == "approved/"
        assert store.scalar("SELECT count(*) FROM tickets WHERE ticket_id IN (?, ?)",
                            ["CHG0000002", sys_id(2)]) == 2
        # a state outside the documented map never permits work
        assert got["custom"] == "ticket_invalid/ticket_status_unknown:5"
        assert got["pending"] == "ticket_invalid/ticket_approval_pending"
        assert got["rejected"] == "ticket_invalid/ticket_approval_rejected"
        assert got["malformed"] == "ticket_invalid/invalid_ticket_ref"
        assert got["missing"] == "ticket_invalid/ticket_unverifiable"
        details = dict(store.query("SELECT ticket_id, detail FROM ticket_unverifiable"))
        assert details["CHG0000404"] == "not found"          # missing from a 200 answer
        # the custom-state change had no audit trail: judged by its current state, and said so
        checks = store.query("SELECT ticket_id, check_id FROM approval_checks")
        assert ("CHG0000003", "ticket_state_without_history") in checks
        assert not any(c == "ticket_state_without_history" and t != "CHG0000003" for t, c in checks)
    assert "missing 1," in output and "invalid refs 1" in output
    assert "judged by their current state only (state history unreadable): 1 (CHG0000003)" in output
    assert "not-a-real-token" not in output
    sent = ticket_server.urls()
    assert "chg0000009" not in sent


def test_unreadable_sys_audit_falls_back_to_the_current_state_and_says_so(
        world, ticket_server, changes, monkeypatch, tmp_path):
    ticket_server.script(r"/sys_audit$", Reply(403, {"error": {"message": "User Not Authorized"}}))
    got, output, store = run(world, ticket_server, monkeypatch, tmp_path)
    with store:
        # without history the current state (Implement) decides: the 10:15 action passes
        assert got["before-implement"] == "approved/"
        notes = dict(store.query("SELECT ticket_id, history_note FROM tickets"))
        assert "HTTP 403" in notes["CHG0000001"] and "current state" in notes["CHG0000001"]
        assert store.scalar("SELECT count(*) FROM approval_checks "
                            "WHERE check_id = 'ticket_state_without_history'") >= 4
    assert "judged by their current state only" in output


def test_a_404_is_said_as_such(world, ticket_server, monkeypatch, tmp_path):
    world.tickets.clear()
    world.approval("A", f"{DAY}T09:00:00Z", f"{DAY}T13:00:00Z", ticket="CHG0000404")
    world.action("a", f"{DAY}T11:00:00Z")
    got, output, store = run(world, ticket_server, monkeypatch, tmp_path)
    with store:
        assert got["a"] == "ticket_invalid/ticket_unverifiable"
        assert store.scalar("SELECT detail FROM ticket_unverifiable") == \
            "not found (HTTP 404 No Record found)"
    assert "missing 1," in output


def test_history_that_does_not_end_in_the_current_state_is_not_trusted(
        world, ticket_server, changes, monkeypatch, tmp_path):
    # the audit trail stops at Assess, yet the change is in Implement: rows are missing
    ticket_server.snow_audit = [audit(1, 1, "-5", "-4", "10:30:00")]
    got, output, store = run(world, ticket_server, monkeypatch, tmp_path)
    with store:
        note = store.scalar("SELECT history_note FROM tickets WHERE ticket_id = 'CHG0000001'")
        assert "ends in state '-4'" in note
        assert store.scalar("SELECT count(*) FROM ticket_history WHERE ticket_id = 'CHG0000001'") == 0
