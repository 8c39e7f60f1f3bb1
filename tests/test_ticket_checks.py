"""Ticket checks beyond status: requester on the ticket, components cover the target, and the
change window (planned by default, actual when configured). docs/tickets.md."""

from __future__ import annotations

S, E, T = "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z", "2026-11-16T11:00:00Z"


def test_requester_not_assignee_or_reporter_is_a_warning(world):
    world.ticket("CHG-2", assignee="bob", reporter="carol")
    world.ticket("CHG-3", assignee="Alice")
    world.approval("A", S, E, ticket="CHG-2", requester="mallory")
    world.approval("B", S, E, ticket="CHG-3", requester="alice", target="web-02")
    world.approval("C", S, E, ticket="CHG-2", requester="carol", target="web-03")
    for i, target in enumerate(("web-01", "web-02", "web-03")):
        world.action(f"e{i}", T, target=target)
    got = world.judge()
    assert got["e0"]["verdict"] == "approved"           # a warning, not a verdict change
    assert world.checks == [("A", "requester_not_on_ticket")]


def test_requester_check_is_skipped_when_no_ticket_has_a_reporter(world):
    """Issue 18: the sample week's tickets have no reporter column, so the requester (who files
    the ticket) cannot be on it: no warning per approval, one line in the run summary."""
    from correlate import queries
    world.ticket("CHG-2", assignee="bob")
    world.approval("A", S, E, ticket="CHG-2", requester="mallory")
    world.action("e", T)
    world.judge()
    assert world.checks == []
    assert queries.skipped_checks(world.store()) == [
        "requester_not_on_ticket skipped: the generic tickets carry no reporter"]


def test_requester_alias_counts_as_the_assignee(world):
    world.identity("CORP\\alice", "alice")
    world.ticket("CHG-2", assignee="alice")
    world.approval("A", S, E, ticket="CHG-2", requester="CORP\\alice")
    world.action("e", T)
    world.judge()
    assert world.checks == []


def test_ticket_components_must_cover_the_target(world):
    world.ticket("CHG-2", components="db-*; web-02")
    world.ticket("CHG-3", components="web-0*")
    world.approval("A", S, E, ticket="CHG-2")                       # web-01: not covered
    world.approval("B", S, E, ticket="CHG-2", target="web-02")      # named
    world.approval("C", S, E, ticket="CHG-3", target="web-03")      # glob component
    for i, target in enumerate(("web-01", "web-02", "web-03")):
        world.action(f"e{i}", T, target=target)
    world.judge()
    assert world.checks == [("A", "ticket_does_not_cover_target")]


def test_unused_approvals_are_not_checked(world):
    world.ticket("CHG-2", assignee="bob")
    world.approval("A", S, E, ticket="CHG-2", requester="mallory")
    world.action("e", T, account="someone-else")
    world.judge()
    assert world.checks == []


def test_change_window_actual_instead_of_planned(world):
    world.ticket("CHG-2", planned_start="2026-11-16T10:00:00Z", planned_end="2026-11-16T10:30:00Z",
                 work_start="2026-11-16T10:45:00Z", work_end="2026-11-16T11:30:00Z")
    world.approval("A", S, E, ticket="CHG-2")
    world.action("e", T)
    assert world.judge()["e"]["reason"] == "outside_planned_window"
    assert world.judge(change_window="actual")["e"]["verdict"] == "approved"


def test_checks_are_listed_in_the_gap_report(world, tmp_path):
    from bs4 import BeautifulSoup

    from correlate.engine import correlate
    from reports.gaps import write_gap_report
    world.ticket("CHG-2", assignee="bob", reporter="carol",
                 components="<img src=x onerror=alert(1)>")
    world.approval("A", S, E, ticket="CHG-2", requester="mallory")
    world.action("e", T)
    store = world.store()
    run = correlate(store)
    soup = BeautifulSoup(write_gap_report(store, tmp_path / "r.html", run).read_text(), "html.parser")
    rows = soup.select("#ticket-checks tbody tr")
    assert {r.find("td").get_text() for r in rows} == {"requester_not_on_ticket",
                                                        "ticket_does_not_cover_target"}
    assert not soup.find_all("img")


def test_config_change_window(tmp_path):
    import pytest

    from correlate.config import load_settings as load_config
    cfg = tmp_path / "p.toml"
    cfg.write_text('[policy]\nchange_window = "actual"\n')
    assert load_config(cfg).policy.change_window == "actual"
    cfg.write_text('[policy]\nchange_window = "sometime"\n')
    with pytest.raises(Exception, match="change_window"):
        load_config(cfg)
