"""correlate.fetch.store_fetch: a fetch result lands in the store in one transaction."""

from __future__ import annotations

from datetime import datetime, timezone

from connectors.ticket_refs import TicketFetch
from correlate.fetch import store_fetch, ticket_refs
from correlate.store import Store

T0 = datetime(2026, 11, 16, 9, tzinfo=timezone.utc)


def test_empty_fetch_is_logged():
    store = Store(":memory:")
    summary = store_fetch(store, TicketFetch(), "jira", "https://jira.example")
    assert (summary.fetched, summary.missing, summary.failed, summary.invalid) == (0, 0, 0, 0)
    assert store.scalar("SELECT count(*) FROM ticket_fetch_log") == 1


def test_tickets_history_raw_and_unverifiable_refs_are_stored():
    store = Store(":memory:")
    store.con.execute("INSERT INTO ticket_unverifiable VALUES ('OPS-1', 'ticket_unverifiable', "
                      "'timeout', 0)")
    result = TicketFetch(
        tickets=[{"ticket_id": "OPS-1", "status": "approved", "opened": T0,
                  "components": ["web-*", "db-01"], "assignee": "alice", "system": "jira"},
                 {"ticket_id": "OPS-2", "status": None, "opened": T0}],
        history=[{"ticket_id": "OPS-1", "ts": T0, "status": "requested"},
                 {"ticket_id": "OPS-1", "ts": T0, "status": "requested"}],
        raw=[("jira 1 GET /search -> 200", b'{"issues": []}')],
        missing=["OPS-3"], failed={"OPS-4": "HTTP 403"}, invalid=["x) OR 1=1"])
    store_fetch(store, result, "jira", "https://jira.example")
    assert store.query("SELECT ticket_id, components, source FROM tickets") == [
        ("OPS-1", ["web-*", "db-01"], "jira")]
    assert store.scalar("SELECT count(*) FROM ticket_history") == 1
    assert store.scalar("SELECT body FROM ticket_raw") == b'{"issues": []}'
    assert dict(store.query("SELECT ticket_id, reason FROM ticket_unverifiable")) == {
        "OPS-2": "ticket_unverifiable", "OPS-3": "ticket_unverifiable",
        "OPS-4": "ticket_unverifiable", "x) OR 1=1": "invalid_ticket_ref"}


def test_cited_references_are_fetched_as_cited_never_trimmed():
    store = Store(":memory:")
    store.con.execute("INSERT INTO approvals (source, approval_id, account, target, start_ts, end_ts, "
                      "ticket) VALUES ('x', 'A', 'a', 't', ?, ?, 'CHG0000001 '), "
                      "('x', 'B', 'a', 't', ?, ?, 'OPS-1'), ('x', 'C', 'a', 't', ?, ?, '')",
                      [T0, T0, T0, T0, T0, T0])
    assert ticket_refs(store) == ["CHG0000001 ", "OPS-1"]


def test_a_reference_asked_for_but_not_accounted_for_is_unverifiable_and_counted():
    store = Store(":memory:")
    result = TicketFetch(tickets=[{"ticket_id": "CHG0000001", "status": "approved", "opened": T0,
                                   "aliases": ["0" * 32]}])
    summary = store_fetch(store, result, "servicenow", "https://snow.example",
                          asked=["CHG0000001", "0" * 32, "CHG0000002"])
    assert summary.missing == 1
    assert store.query("SELECT ticket_id, reason FROM ticket_unverifiable") == [
        ("CHG0000002", "ticket_unverifiable")]
    assert sorted(t for (t,) in store.query("SELECT ticket_id FROM tickets")) == ["0" * 32, "CHG0000001"]
