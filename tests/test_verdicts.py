"""Every verdict rule on its edges (docs/verdicts.md)."""

from __future__ import annotations

import random
import time

import pytest

S, E = "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z"


def v(world, event="e", **kw):
    return world.judge(**kw)[event]


def test_action_at_exact_start_is_approved(world):
    world.approval("A", S, E)
    world.action("e", S)
    assert v(world) == {"verdict": "approved", "status": "PASS", "approval_id": "A",
                        "ticket_id": "CHG-1", "gap_seconds": None, "reason": None}


def test_action_at_exact_end_is_approved(world):
    world.approval("A", S, E)
    world.action("e", E)
    assert v(world)["verdict"] == "approved"


def test_one_microsecond_after_end_is_in_grace(world):
    world.approval("A", S, E)
    world.action("e", "2026-11-16T12:00:00.000001Z")
    assert v(world)["verdict"] == "approved_in_grace"


@pytest.mark.parametrize("ts,verdict", [
    ("2026-11-16T09:55:00Z", "approved_in_grace"),        # exactly grace before start
    ("2026-11-16T12:05:00Z", "approved_in_grace"),        # exactly grace after end
    ("2026-11-16T09:54:59Z", "out_of_window"),            # 1 s past grace, before
    ("2026-11-16T12:05:01Z", "out_of_window"),            # 1 s past grace, after
    ("2026-11-16T12:05:00.000001Z", "out_of_window"),     # 1 us past grace
])
def test_grace_edges(world, ts, verdict):
    world.approval("A", S, E)
    world.action("e", ts)
    assert v(world)["verdict"] == verdict


def test_out_of_window_gap_is_signed(world):
    world.approval("A", S, E)
    world.action("before", "2026-11-16T09:00:00Z")
    world.action("after", "2026-11-16T13:00:00Z")
    got = world.judge()
    assert got["before"]["gap_seconds"] == -3600 and got["before"]["approval_id"] == "A"
    assert got["after"]["gap_seconds"] == 3600
    assert got["after"]["reason"] == "after the end of the nearest approval"


def test_grace_zero_makes_edges_strict(world):
    world.approval("A", S, E)
    world.action("e", "2026-11-16T12:00:01Z")
    assert v(world, grace=0)["verdict"] == "out_of_window"


def test_nested_window_where_latest_start_does_not_cover(world):
    # A long window and a short one inside it that starts later and ends before the action:
    # a plain ASOF join would pick B and call the action out of window.
    world.approval("A", "2026-11-16T08:00:00Z", "2026-11-16T18:00:00Z")
    world.approval("B", "2026-11-16T12:00:00Z", "2026-11-16T12:30:00Z")
    world.action("e", "2026-11-16T14:00:00Z")
    got = v(world)
    assert (got["verdict"], got["approval_id"]) == ("approved", "A")


def test_overlapping_windows_tie_goes_to_latest_start(world):
    world.approval("A", "2026-11-16T08:00:00Z", "2026-11-16T18:00:00Z")
    world.approval("B", "2026-11-16T09:00:00Z", "2026-11-16T17:00:00Z")
    world.action("e", "2026-11-16T14:00:00Z")
    assert v(world)["approval_id"] == "B"


def test_two_covering_windows_valid_ticket_beats_invalid(world):
    world.ticket("CHG-2", status="cancelled")
    world.approval("A", "2026-11-16T08:00:00Z", "2026-11-16T18:00:00Z", ticket="CHG-1")
    world.approval("B", "2026-11-16T09:00:00Z", "2026-11-16T17:00:00Z", ticket="CHG-2")
    world.action("e", "2026-11-16T14:00:00Z")
    got = v(world)
    assert (got["verdict"], got["approval_id"], got["ticket_id"]) == ("approved", "A", "CHG-1")


def test_approved_beats_grace_of_another_window(world):
    world.approval("A", "2026-11-16T08:00:00Z", "2026-11-16T10:00:00Z")
    world.approval("B", "2026-11-16T10:03:00Z", "2026-11-16T11:00:00Z")
    world.action("e", "2026-11-16T10:01:00Z")   # in A's grace and B's grace
    world.action("f", "2026-11-16T10:00:00Z")   # inside A, in B's grace
    got = world.judge()
    assert got["e"]["verdict"] == "approved_in_grace" and got["e"]["approval_id"] == "B"
    assert (got["f"]["verdict"], got["f"]["approval_id"]) == ("approved", "A")


def test_revoked_before_action_is_out_of_window(world):
    world.approval("A", S, E, status="revoked", revoked_at="2026-11-16T10:30:00Z")
    world.action("in", "2026-11-16T10:29:00Z")
    world.action("after", "2026-11-16T11:00:00Z")
    got = world.judge()
    assert got["in"]["verdict"] == "approved"
    assert got["after"]["verdict"] == "out_of_window"
    assert got["after"]["gap_seconds"] == 1800     # measured from the revocation


def test_revoked_after_end_keeps_the_end(world):
    world.approval("A", S, E, status="revoked", revoked_at="2026-11-16T15:00:00Z")
    world.action("e", "2026-11-16T12:30:00Z")
    assert v(world)["verdict"] == "out_of_window"


def test_denied_approval_never_applies(world):
    world.approval("A", S, E, status="denied")
    world.action("e", "2026-11-16T11:00:00Z")
    got = v(world)
    assert got["verdict"] == "unapproved" and got["approval_id"] is None


def test_glob_target_matches_case_insensitively(world):
    world.approval("A", S, E, target="WEB-PROD-*")
    world.action("hit", "2026-11-16T11:00:00Z", target="web-prod-07")
    world.action("miss", "2026-11-16T11:00:00Z", target="db-prod-01")
    got = world.judge()
    assert got["hit"]["verdict"] == "approved"
    assert got["miss"]["verdict"] == "unapproved"


def test_glob_question_mark_and_class(world):
    world.approval("A", S, E, target="db-0[12]-?")
    world.action("hit", "2026-11-16T11:00:00Z", target="db-02-a")
    world.action("miss", "2026-11-16T11:00:00Z", target="db-03-a")
    got = world.judge()
    assert got["hit"]["verdict"] == "approved" and got["miss"]["verdict"] == "unapproved"


def test_glob_patterns_shared_by_approvals_and_identities_match_only_their_own(world):
    """Each distinct (identity, pattern) is matched once and handed to every approval that has
    it (verdicts.sql glob_keys): two approvals with one pattern both apply, a pattern never
    lends its matches to another identity's or another pattern's approval."""
    later_s, later_e = "2026-11-16T14:00:00Z", "2026-11-16T16:00:00Z"
    world.approval("A1", S, E, account="alice", target="web-*")
    world.approval("A2", later_s, later_e, account="alice", target="web-*")
    world.approval("A3", S, E, account="alice", target="db-0?")
    world.approval("B1", later_s, later_e, account="bob", target="web-*")
    world.action("a_web_1", "2026-11-16T11:00:00Z", account="alice", target="web-01")
    world.action("a_web_2", "2026-11-16T15:00:00Z", account="alice", target="web-01")
    world.action("a_db_1", "2026-11-16T11:00:00Z", account="alice", target="db-01")
    world.action("a_db_2", "2026-11-16T15:00:00Z", account="alice", target="db-01")
    world.action("b_web_1", "2026-11-16T11:00:00Z", account="bob", target="web-01")
    world.action("b_web_2", "2026-11-16T15:00:00Z", account="bob", target="web-01")
    got = world.judge()
    assert {k: (r["verdict"], r["approval_id"]) for k, r in got.items()} == {
        "a_web_1": ("approved", "A1"), "a_web_2": ("approved", "A2"),
        "a_db_1": ("approved", "A3"), "a_db_2": ("out_of_window", "A3"),
        "b_web_1": ("out_of_window", "B1"), "b_web_2": ("approved", "B1")}


def test_account_matches_case_insensitively(world):
    world.approval("A", S, E, account="Alice")
    world.action("e", "2026-11-16T11:00:00Z", account="ALICE")
    assert v(world)["verdict"] == "approved"


def test_other_account_is_unapproved(world):
    world.approval("A", S, E, account="alice")
    world.action("e", "2026-11-16T11:00:00Z", account="bob")
    assert v(world)["verdict"] == "unapproved"


def test_no_ticket_reference_is_ticket_missing(world):
    world.approval("A", S, E, ticket="")
    world.action("e", "2026-11-16T11:00:00Z")
    assert v(world)["verdict"] == "ticket_missing"


def test_unknown_ticket_is_invalid(world):
    world.approval("A", S, E, ticket="CHG-404")
    world.action("e", "2026-11-16T11:00:00Z")
    got = v(world)
    assert (got["verdict"], got["reason"]) == ("ticket_invalid", "ticket_not_found")


def test_ticket_closed_before_action_is_invalid(world):
    world.ticket("CHG-2", status="closed", closed="2026-11-16T10:59:59Z")
    world.approval("A", S, E, ticket="CHG-2")
    world.action("late", "2026-11-16T11:00:00Z")
    world.action("edge", "2026-11-16T10:59:59Z")
    got = world.judge()
    assert (got["late"]["verdict"], got["late"]["reason"]) == ("ticket_invalid", "ticket_closed")
    assert got["edge"]["verdict"] == "approved"       # closed is inclusive


def test_ticket_opened_after_action_is_invalid(world):
    world.ticket("CHG-2", opened="2026-11-16T11:00:01Z")
    world.approval("A", S, E, ticket="CHG-2")
    world.action("e", "2026-11-16T11:00:00Z")
    assert v(world)["reason"] == "ticket_not_open_yet"


@pytest.mark.parametrize("status", ["requested", "cancelled", "rejected"])
def test_ticket_status_without_history(world, status):
    world.ticket("CHG-2", status=status)
    world.approval("A", S, E, ticket="CHG-2")
    world.action("e", "2026-11-16T11:00:00Z")
    got = v(world)
    assert (got["verdict"], got["reason"]) == ("ticket_invalid", f"ticket_status_{status}")


def test_ticket_history_status_at_the_time_counts(world):
    # Current status is closed, but history says it was in progress at 11:00.
    world.ticket("CHG-2", status="closed", closed="2026-11-16T11:30:00Z")
    world.transition("CHG-2", "2026-11-16T09:00:00Z", "requested")
    world.transition("CHG-2", "2026-11-16T10:15:00Z", "approved")
    world.transition("CHG-2", "2026-11-16T10:45:00Z", "in_progress")
    world.transition("CHG-2", "2026-11-16T11:30:00Z", "closed")
    world.approval("A", "2026-11-16T08:00:00Z", E, ticket="CHG-2")
    world.action("early", "2026-11-16T08:30:00Z")     # before the first transition
    world.action("req", "2026-11-16T10:00:00Z")
    world.action("appr", "2026-11-16T10:15:00Z")      # transition instant counts
    world.action("prog", "2026-11-16T11:00:00Z")
    world.action("closed", "2026-11-16T11:30:00Z")
    got = world.judge()
    assert got["early"]["reason"] == "ticket_no_status_yet"
    assert got["req"]["reason"] == "ticket_status_requested"
    assert got["appr"]["verdict"] == "approved"
    assert got["prog"]["verdict"] == "approved"
    assert got["closed"]["reason"] == "ticket_status_closed"


def test_planned_window_bounds_are_inclusive(world):
    world.ticket("CHG-2", planned_start="2026-11-16T10:30:00Z", planned_end="2026-11-16T11:30:00Z")
    world.approval("A", S, E, ticket="CHG-2")
    world.action("before", "2026-11-16T10:29:59Z")
    world.action("start", "2026-11-16T10:30:00Z")
    world.action("end", "2026-11-16T11:30:00Z")
    world.action("after", "2026-11-16T11:30:01Z")
    got = world.judge()
    assert got["before"]["reason"] == "outside_planned_window"
    assert got["start"]["verdict"] == got["end"]["verdict"] == "approved"
    assert got["after"]["reason"] == "outside_planned_window"


@pytest.mark.parametrize("opened,verdict", [
    ("2026-11-17T10:00:00Z", "break_glass"),              # 23 h after the action
    ("2026-11-17T11:00:00Z", "break_glass"),              # exactly 24 h
    ("2026-11-17T11:00:01Z", "break_glass_unreviewed"),   # 24 h + 1 s
    ("2026-11-17T12:00:00Z", "break_glass_unreviewed"),   # 25 h
])
def test_break_glass_ticket_within_24_hours(world, opened, verdict):
    world.ticket("INC-9", opened=opened, status="resolved")
    world.approval("BG", S, E, kind="break_glass", ticket="INC-9")
    world.action("e", "2026-11-16T11:00:00Z")
    assert v(world)["verdict"] == verdict


def test_break_glass_without_ticket_is_unreviewed(world):
    world.approval("BG", S, E, kind="break_glass", ticket="")
    world.action("e", "2026-11-16T11:00:00Z")
    assert v(world)["verdict"] == "break_glass_unreviewed"


def test_standard_approval_beats_break_glass(world):
    world.ticket("INC-9", opened="2026-11-16T11:30:00Z")
    world.approval("BG", S, E, kind="break_glass", ticket="INC-9")
    world.approval("A", "2026-11-16T09:00:00Z", E)
    world.action("e", "2026-11-16T11:00:00Z")
    assert v(world)["approval_id"] == "A"


def test_order_of_verdicts_among_candidates(world):
    world.ticket("CHG-X", status="rejected")
    world.approval("missing", S, E, ticket="")
    world.approval("invalid", "2026-11-16T09:00:00Z", E, ticket="CHG-X")
    world.action("e", "2026-11-16T11:00:00Z")
    assert v(world)["verdict"] == "ticket_invalid"    # ticket_invalid ranks above ticket_missing


def test_nearest_window_is_named_for_out_of_window(world):
    world.approval("early", "2026-11-15T10:00:00Z", "2026-11-15T12:00:00Z")
    world.approval("late", "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z")
    world.action("e", "2026-11-16T09:00:00Z")
    got = v(world)
    assert (got["verdict"], got["approval_id"], got["gap_seconds"]) == ("out_of_window", "late", -3600)


def test_window_beyond_lookaround_is_unapproved(world):
    world.approval("A", "2026-11-01T10:00:00Z", "2026-11-01T12:00:00Z")
    world.action("in", "2026-11-08T12:00:00Z")      # exactly 7 days after the end
    world.action("out", "2026-11-08T12:00:01Z")
    got = world.judge()
    assert got["in"]["verdict"] == "out_of_window" and got["in"]["gap_seconds"] == 7 * 86400
    assert got["out"]["verdict"] == "unapproved"


def test_offsets_and_epoch_ms_are_the_same_instant(world):
    world.approval("A", "2026-11-16T15:30:00+05:30", "2026-11-16T12:00:00Z")   # 10:00Z
    world.action("offset", "2026-11-16T15:30:00+05:30")
    world.action("epoch", 1794823200000)                                        # 10:00Z
    world.action("before", "2026-11-16T04:24:59-05:30")                         # 09:54:59Z
    got = world.judge()
    assert got["offset"]["verdict"] == "approved"
    assert got["epoch"]["verdict"] == "approved"
    assert got["before"]["verdict"] == "out_of_window" and got["before"]["gap_seconds"] == -301


def _scenario(world):
    world.ticket("CHG-2", status="closed", closed="2026-11-16T11:00:00Z")
    world.approval("A", "2026-11-16T08:00:00Z", "2026-11-16T18:00:00Z")
    world.approval("B", "2026-11-16T12:00:00Z", "2026-11-16T12:30:00Z", ticket="CHG-2")
    world.approval("C", S, E, target="web-*", ticket="")
    for i in range(60):
        world.action(f"e{i}", f"2026-11-16T{7 + i // 6:02d}:{(i * 7) % 60:02d}:00Z",
                     target=["web-01", "web-02", "db-01"][i % 3])


def test_verdicts_do_not_depend_on_input_order(world):
    _scenario(world)
    first = world.judge()
    rng = random.Random(7)
    shuffled = world.judge(order=lambda rows: rng.sample(rows, len(rows)))
    assert first == shuffled and len(first) == 60


def test_verdicts_do_not_depend_on_host_time_zone(world, monkeypatch):
    _scenario(world)
    first = world.judge()
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        assert world.judge() == first
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_period_bounds_select_actions(world):
    from datetime import datetime, timezone
    world.approval("A", S, E)
    world.action("in", "2026-11-16T11:00:00Z")
    world.action("out", "2026-11-17T11:00:00Z")
    got = world.judge(start=datetime(2026, 11, 16, tzinfo=timezone.utc),
                      end=datetime(2026, 11, 17, tzinfo=timezone.utc))
    assert set(got) == {"in"}


def test_cited_approval_beats_time_matching(world):
    # The action cites B (explicit link); A would cover it by time but is not considered.
    world.approval("A", "2026-11-16T08:00:00Z", "2026-11-16T18:00:00Z")
    world.approval("B", "2026-11-16T13:00:00Z", "2026-11-16T14:00:00Z", account="x", target="y",
                   ticket="")
    world.action("cites", "2026-11-16T13:30:00Z", approval_ref="B")
    world.action("outside", "2026-11-16T15:00:00Z", approval_ref="B")
    world.action("plain", "2026-11-16T15:00:00Z")
    got = world.judge()
    assert (got["cites"]["verdict"], got["cites"]["approval_id"]) == ("ticket_missing", "B")
    assert got["outside"]["verdict"] == "out_of_window" and got["outside"]["gap_seconds"] == 3600
    assert got["outside"]["reason"] == "outside the cited approval B"
    assert (got["plain"]["verdict"], got["plain"]["approval_id"]) == ("approved", "A")


@pytest.mark.parametrize("status", ["denied", None])
def test_cited_approval_missing_or_denied_is_unapproved(world, status):
    world.approval("A", "2026-11-16T08:00:00Z", "2026-11-16T18:00:00Z")
    if status:
        world.approval("R", "2026-11-16T08:00:00Z", "2026-11-16T18:00:00Z", status=status)
    world.action("e", "2026-11-16T13:30:00Z", approval_ref="R")
    got = v(world)
    assert got["verdict"] == "unapproved"
    assert got["reason"] == "cited approval R not found or denied"


def test_two_transitions_in_the_same_instant_resolve_deterministically(world):
    world.ticket("CHG-2", status="approved")
    world.transition("CHG-2", "2026-11-16T09:00:00Z", "in_progress")
    world.transition("CHG-2", "2026-11-16T09:00:00Z", "cancelled")
    world.approval("A", S, E, ticket="CHG-2")
    world.action("e", "2026-11-16T11:00:00Z")
    results = {(r["verdict"], r["reason"]) for r in (v(world) for _ in range(3))}
    # fail closed: the status that does not permit work wins the tie
    assert results == {("ticket_invalid", "ticket_status_cancelled")}


# --- issue 17 §9: edges a reviewer asks about -------------------------------------------------

def test_ticket_id_in_another_case_is_not_found_with_a_hint(world):
    world.ticket("CHG-77")
    world.approval("A", S, E, ticket="chg-77")
    world.approval("B", S, E, ticket="CHG-78", target="db-01")
    world.action("e", "2026-11-16T11:00:00Z")
    world.action("f", "2026-11-16T11:00:00Z", target="db-01")
    got = world.judge()
    assert (got["e"]["verdict"], got["e"]["reason"]) == \
        ("ticket_invalid", "ticket_not_found (did you mean CHG-77?)")
    assert got["f"]["reason"] == "ticket_not_found"       # no near id: no hint


@pytest.mark.parametrize("status", ["cancelled", "rejected"])
def test_break_glass_ticket_cancelled_or_rejected_is_no_review(world, status):
    world.ticket("INC-9", opened="2026-11-16T12:00:00Z", status=status)
    world.approval("BG", S, E, kind="break_glass", ticket="INC-9")
    world.action("e", "2026-11-16T11:00:00Z")
    got = v(world)
    assert got["verdict"] == "break_glass_unreviewed"
    assert got["reason"] == f"break_glass ticket INC-9 is no review: {status} (current status)"


def test_break_glass_ticket_cancelled_at_the_action_time_is_no_review(world):
    # cancelled while the action ran, reopened later: the status at the action's time counts
    world.ticket("INC-9", opened="2026-11-16T09:00:00Z", status="resolved")
    world.transition("INC-9", "2026-11-16T09:00:00Z", "in_progress")
    world.transition("INC-9", "2026-11-16T10:30:00Z", "cancelled")
    world.transition("INC-9", "2026-11-16T11:30:00Z", "in_progress")
    world.approval("BG", S, E, kind="break_glass", ticket="INC-9")
    world.action("before", "2026-11-16T10:29:59Z")
    world.action("during", "2026-11-16T10:30:00Z")
    world.action("after", "2026-11-16T11:30:00Z")
    got = world.judge()
    assert got["before"]["verdict"] == got["after"]["verdict"] == "break_glass"
    assert got["during"]["verdict"] == "break_glass_unreviewed"
    assert got["during"]["reason"] == ("break_glass ticket INC-9 is no review: cancelled at the "
                                       "time of the action")


def test_break_glass_ticket_resolved_is_a_review(world):
    world.ticket("INC-9", opened="2026-11-16T12:00:00Z", status="resolved")
    world.approval("BG", S, E, kind="break_glass", ticket="INC-9")
    world.action("e", "2026-11-16T11:00:00Z")
    assert v(world)["verdict"] == "break_glass"


def test_equally_near_windows_on_the_same_side_name_the_smaller_id(world):
    world.approval("B", S, E)
    world.approval("A", "2026-11-16T11:00:00Z", E)
    world.action("after", "2026-11-16T13:00:00Z")
    got = v(world, event="after")
    assert (got["verdict"], got["approval_id"], got["gap_seconds"]) == ("out_of_window", "A", 3600)


def test_revoked_at_on_an_approved_approval_cuts_its_window(world):
    world.approval("A", S, E, revoked_at="2026-11-16T11:00:00Z")     # status stays approved
    world.action("e", "2026-11-16T11:30:00Z")
    got = v(world)
    assert (got["verdict"], got["gap_seconds"]) == ("out_of_window", 1800)


def test_when_several_ticket_checks_fail_the_first_in_order_is_stored(world):
    # closed before the action AND a status that does not permit work AND outside the planned
    # window: ticket_closed comes first in the CASE
    world.ticket("CHG-2", status="cancelled", closed="2026-11-16T10:00:00Z",
                 planned_start="2026-11-16T09:00:00Z", planned_end="2026-11-16T10:00:00Z")
    world.approval("A", S, E, ticket="CHG-2")
    world.action("e", "2026-11-16T11:00:00Z")
    assert v(world)["reason"] == "ticket_closed"


def test_a_digit_string_in_csv_is_epoch_milliseconds(world):
    # 1794823200000 ms = 2026-11-16T10:00:00Z = S: the window's start, inclusive
    world.approval("A", "1794823200000", E)
    world.action("e", S)
    assert v(world)["verdict"] == "approved"
