"""Verdict edges a single flipped bound, dropped clause or swapped order would move.

Segments are judged at their first instant, so an inclusive bound only shows when a second
change point falls on the same instant: each bound of docs/verdicts.md is tested here with
another cut on it (a ticket opened, closed, planned or changing status right there).
Also: the nearest window on ties, the candidate order, the period bounds, and the identity
of a stored action (content id, source).
"""

from __future__ import annotations

import json
import random

import pytest

from connectors.base import Options
from connectors.generic import GenericConnector
from correlate.ingest import ingest
from correlate.store import Store

S, E = "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z"


def h(hms: str) -> str:
    """An instant on the test day."""
    return f"2026-11-16T{hms}Z"


def pick(got, *keys):
    return {e: tuple(r[k] for k in keys) for e, r in got.items()}


# --- the nearest window when none covers the action --------------------------------------

@pytest.mark.parametrize("order", [None, lambda rows: rows[::-1]])
def test_equidistant_windows_name_the_earlier_one(world, order):
    # ids sort the other way round from the windows, so only time decides
    world.approval("Z", h("08:00:00"), h("10:00:00"))
    world.approval("A", h("12:00:00"), h("14:00:00"))
    world.action("tie", h("11:00:00"))
    world.action("nearer_end", h("10:59:59.999999"))
    world.action("nearer_start", h("11:00:00.000001"))
    got = world.judge(order=order)
    assert got["tie"]["verdict"] == "out_of_window"
    assert (got["tie"]["approval_id"], got["tie"]["gap_seconds"]) == ("Z", 3600)
    assert got["tie"]["reason"] == "after the end of the nearest approval"
    assert got["nearer_end"]["approval_id"] == "Z"
    assert (got["nearer_start"]["approval_id"], got["nearer_start"]["gap_seconds"]) == (
        "A", -3599.999999)
    assert got["nearer_start"]["reason"] == "before the start of the nearest approval"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_windows_sharing_an_end_name_the_smallest_id(world, seed):
    world.approval("B", h("08:00:00"), h("10:00:00"))
    world.approval("A", h("09:00:00"), h("10:00:00"))
    world.approval("C", h("07:00:00"), h("10:00:00"))
    world.action("e", h("11:00:00"))
    rng = random.Random(seed)
    got = world.judge(order=lambda rows: rng.sample(rows, len(rows)))["e"]
    assert (got["verdict"], got["approval_id"], got["gap_seconds"]) == ("out_of_window", "A", 3600)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_windows_sharing_a_start_name_the_smallest_id(world, seed):
    world.approval("B", h("12:00:00"), h("14:00:00"))
    world.approval("A", h("12:00:00"), h("13:00:00"))
    world.approval("C", h("12:00:00"), h("15:00:00"))
    world.action("e", h("11:00:00"))
    rng = random.Random(seed)
    got = world.judge(order=lambda rows: rng.sample(rows, len(rows)))["e"]
    assert (got["verdict"], got["approval_id"], got["gap_seconds"]) == ("out_of_window", "A", -3600)


def test_lookaround_is_inclusive_on_both_sides_with_its_reasons(world):
    # gaps are measured per action, not per segment: no coinciding cut is needed here
    world.approval("A", "2026-11-08T10:00:00Z", "2026-11-08T12:00:00Z")
    world.action("before_in", "2026-11-01T10:00:00Z")           # exactly 7 days before the start
    world.action("before_out", "2026-11-01T09:59:59.999999Z")
    world.action("after_in", "2026-11-15T12:00:00Z")            # exactly 7 days after the end
    world.action("after_out", "2026-11-15T12:00:00.000001Z")
    got = pick(world.judge(), "verdict", "approval_id", "gap_seconds", "reason")
    assert got["before_in"] == ("out_of_window", "A", -7 * 86400,
                                "before the start of the nearest approval")
    assert got["after_in"] == ("out_of_window", "A", 7 * 86400,
                               "after the end of the nearest approval")
    far = ("unapproved", None, None, "no applicable approval within the lookaround")
    assert got["before_out"] == got["after_out"] == far


# --- revocation ---------------------------------------------------------------------------

def test_approval_revoked_before_its_start_never_applies_not_even_in_grace(world):
    world.approval("A", S, E, status="revoked", revoked_at=h("09:58:00"))
    world.action("e", h("10:01:00"))
    world.action("start", S)
    got = pick(world.judge(), "verdict", "approval_id", "gap_seconds", "reason")
    assert got["e"] == got["start"] == ("unapproved", None, None, "no applicable approval")


def test_approval_revoked_at_its_start_applies_at_that_instant(world):
    world.approval("A", S, E, status="revoked", revoked_at=S)
    world.action("e", S)
    assert world.judge()["e"]["verdict"] == "approved"


# --- glob targets -------------------------------------------------------------------------

def test_bracket_only_glob_target(world):
    world.approval("A", S, E, target="db-0[12]")
    world.action("hit", h("11:00:00"), target="db-02")
    world.action("HIT", h("11:00:00"), target="DB-01")
    world.action("miss", h("11:00:00"), target="db-03")
    got = world.judge()
    assert got["hit"]["verdict"] == got["HIT"]["verdict"] == "approved"
    assert got["miss"]["verdict"] == "unapproved"


def test_a_direct_match_needs_no_note_even_when_an_alias_also_matches(world):
    world.target("web-01", alias="web-01.corp")
    world.approval("A", S, E, target="web-*")      # matches the name and its alias
    world.action("e", h("11:00:00"), target="web-01")
    got = world.judge(extra=", f.match_via")["e"]
    assert (got["verdict"], got["match_via"]) == ("approved", None)


# --- every inclusive / exclusive bound with a second change point on the same instant ----

def test_window_start_with_the_ticket_opened_on_it(world):
    world.ticket("CHG-2", opened=S)
    world.approval("A", S, E, ticket="CHG-2")
    world.action("start", S)                          # window start and ticket opened: both inclusive
    world.action("before", h("09:59:59.999999"))
    got = pick(world.judge(), "verdict", "reason")
    assert got["start"] == ("approved", None)
    assert got["before"] == ("ticket_invalid", "ticket_not_open_yet")


def test_ticket_opened_inside_the_window_at_the_action_instant(world):
    world.ticket("CHG-2", opened=h("11:00:00"))
    world.approval("A", S, E, ticket="CHG-2")
    world.action("at", h("11:00:00"))
    world.action("before", h("10:59:59.999999"))
    got = pick(world.judge(), "verdict", "reason")
    assert got["at"] == ("approved", None)
    assert got["before"] == ("ticket_invalid", "ticket_not_open_yet")


def test_ticket_opened_inside_the_grace_before_the_window(world):
    # its opening splits the grace segment: the part after it is in grace, the part before not
    world.ticket("CHG-2", opened=h("09:57:00"))
    world.approval("A", S, E, ticket="CHG-2")
    world.action("at", h("09:57:00"))
    world.action("before", h("09:56:59"))
    got = pick(world.judge(), "verdict", "reason")
    assert got["at"] == ("approved_in_grace", None)
    assert got["before"] == ("ticket_invalid", "ticket_not_open_yet")


def test_grace_start_with_the_ticket_opened_on_it(world):
    world.ticket("CHG-2", opened=h("09:55:00"))
    world.approval("A", S, E, ticket="CHG-2")
    world.action("at", h("09:55:00"))
    assert world.judge()["at"]["verdict"] == "approved_in_grace"


def test_window_end_with_a_status_change_on_it(world):
    world.ticket("CHG-2", status="in_progress")
    world.transition("CHG-2", h("09:00:00"), "approved")
    world.transition("CHG-2", E, "in_progress")       # a cut exactly at the window's end
    world.approval("A", S, E, ticket="CHG-2")
    world.action("end", E)
    world.action("after", h("12:00:00.000001"))
    got = world.judge()
    assert got["end"]["verdict"] == "approved"
    assert got["after"]["verdict"] == "approved_in_grace"


def test_grace_end_with_a_status_change_on_it(world):
    world.ticket("CHG-2", status="in_progress")
    world.transition("CHG-2", h("09:00:00"), "requested")
    world.transition("CHG-2", h("09:30:00"), "approved")
    world.transition("CHG-2", h("12:05:00"), "in_progress")   # a cut exactly at end + grace
    world.approval("A", S, E, ticket="CHG-2")
    world.action("edge", h("12:05:00"))
    world.action("past", h("12:05:00.000001"))
    got = pick(world.judge(), "verdict", "approval_id", "gap_seconds")
    assert got["edge"] == ("approved_in_grace", "A", None)
    assert got["past"] == ("out_of_window", "A", 300.000001)


def test_ticket_change_on_the_grace_end_is_weighed(world):
    # the ticket becomes valid exactly at end + grace: that last instant is in grace
    world.ticket("CHG-2", status="approved")
    world.transition("CHG-2", h("09:00:00"), "requested")
    world.transition("CHG-2", h("12:05:00"), "approved")
    world.approval("A", S, E, ticket="CHG-2")
    world.action("edge", h("12:05:00"))
    world.action("before", h("12:04:59.999999"))
    got = pick(world.judge(), "verdict", "reason")
    assert got["edge"] == ("approved_in_grace", None)
    assert got["before"] == ("ticket_invalid", "ticket_status_requested")


def test_ticket_closed_on_the_window_start(world):
    world.ticket("CHG-2", status="closed", closed=S)
    world.approval("A", S, E, ticket="CHG-2")
    world.action("at", S)                              # closed is inclusive, start too
    world.action("after", h("10:00:00.000001"))
    got = pick(world.judge(), "verdict", "reason")
    assert got["at"] == ("approved", None)
    assert got["after"] == ("ticket_invalid", "ticket_closed")


def test_planned_end_on_the_window_start(world):
    world.ticket("CHG-2", planned_start=h("09:00:00"), planned_end=S)
    world.approval("A", S, E, ticket="CHG-2")
    world.action("at", S)
    world.action("after", h("10:00:00.000001"))
    got = pick(world.judge(), "verdict", "reason")
    assert got["at"] == ("approved", None)
    assert got["after"] == ("ticket_invalid", "outside_planned_window")


def test_planned_start_on_the_ticket_opening(world):
    world.ticket("CHG-2", opened=h("11:00:00"), planned_start=h("11:00:00"),
                 planned_end=h("13:00:00"))
    world.approval("A", S, E, ticket="CHG-2")
    world.action("at", h("11:00:00"))
    world.action("before", h("10:59:59.999999"))
    got = pick(world.judge(), "verdict", "reason")
    assert got["at"] == ("approved", None)
    assert got["before"] == ("ticket_invalid", "ticket_not_open_yet")


@pytest.mark.parametrize("change_window", ["planned", "actual"])
def test_change_window_end_on_a_status_change(world, change_window):
    # planned (or actual) end at 11:00, and a status transition at the same instant
    world.ticket("CHG-2", status="in_progress", planned_start=S, planned_end=h("11:00:00"),
                 work_start=S, work_end=h("11:00:00"))
    world.transition("CHG-2", h("09:00:00"), "approved")
    world.transition("CHG-2", h("11:00:00"), "in_progress")
    world.approval("A", S, E, ticket="CHG-2")
    world.action("at", h("11:00:00"))
    world.action("after", h("11:00:00.000001"))
    got = pick(world.judge(change_window=change_window), "verdict", "reason")
    assert got["at"] == ("approved", None)
    assert got["after"] == ("ticket_invalid", "outside_planned_window")


def test_status_transition_on_the_window_start(world):
    world.ticket("CHG-2", status="approved")
    world.transition("CHG-2", S, "approved")
    world.approval("A", S, E, ticket="CHG-2")
    world.action("at", S)
    world.action("grace", h("09:59:59.999999"))
    got = pick(world.judge(), "verdict", "reason")
    assert got["at"] == ("approved", None)
    assert got["grace"] == ("ticket_invalid", "ticket_no_status_yet")


def test_reopened_ticket_follows_its_history_not_its_closed_field(world):
    # closed at 11:00 and reopened at 11:30: with history, `closed` and the current status
    # do not decide
    world.ticket("CHG-2", status="cancelled", closed=h("11:00:00"))
    world.transition("CHG-2", h("09:00:00"), "approved")
    world.transition("CHG-2", h("11:00:00"), "closed")
    world.transition("CHG-2", h("11:30:00"), "in_progress")
    world.approval("A", S, E, ticket="CHG-2")
    world.action("open", h("10:30:00"))
    world.action("shut", h("11:10:00"))
    world.action("reopened", h("11:30:00"))
    got = pick(world.judge(), "verdict", "reason")
    assert got["open"] == ("approved", None)
    assert got["shut"] == ("ticket_invalid", "ticket_status_closed")
    assert got["reopened"] == ("approved", None)


def test_break_glass_24_hours_on_the_window_start(world):
    # the ticket opens exactly 24 h after the window's start: the start is reviewed in time
    world.ticket("INC-9", opened="2026-11-17T10:00:00Z", status="resolved")
    world.approval("BG", S, E, kind="break_glass", ticket="INC-9")
    world.action("start", S)
    world.action("grace", h("09:59:59.999999"))
    got = pick(world.judge(), "verdict", "reason")
    assert got["start"] == ("break_glass", None)
    assert got["grace"] == ("break_glass_unreviewed",
                            "break_glass ticket opened more than 24 h after the action")


def test_break_glass_24_hours_inside_the_window(world):
    world.ticket("INC-9", opened="2026-11-17T11:00:00Z", status="resolved")
    world.approval("BG", S, E, kind="break_glass", ticket="INC-9")
    world.action("at", h("11:00:00"))
    world.action("before", h("10:59:59.999999"))
    world.action("later", h("11:30:00"))
    got = pick(world.judge(), "verdict", "status", "reason")
    assert got["at"] == got["later"] == ("break_glass", "WARN", None)
    assert got["before"] == ("break_glass_unreviewed", "FAIL",
                             "break_glass ticket opened more than 24 h after the action")


def test_break_glass_reasons(world):
    world.approval("none", S, E, kind="break_glass", ticket="", account="a")
    world.approval("lost", S, E, kind="break_glass", ticket="INC-404", account="b")
    world.action("none", h("11:00:00"), account="a")
    world.action("lost", h("11:00:00"), account="b")
    got = pick(world.judge(), "verdict", "reason")
    assert got["none"] == ("break_glass_unreviewed", "break_glass without ticket")
    assert got["lost"] == ("break_glass_unreviewed", "break_glass ticket not found")


# --- the best candidate ---------------------------------------------------------------------

def _loser_starts_later_with_the_smaller_id(world, winner, loser):
    """Two covering windows: the loser starts later and has the smaller id, so only the
    verdict rank can make the winner win."""
    world.approval("Z", h("08:00:00"), h("10:58:00"), **winner)
    world.approval("A", h("10:30:00"), h("12:00:00"), **loser)
    world.action("e", h("11:00:00"))
    return pick(world.judge(), "verdict", "approval_id")["e"]


def test_approved_in_grace_beats_break_glass(world):
    world.ticket("INC-9", opened=h("11:30:00"))
    got = _loser_starts_later_with_the_smaller_id(
        world, {}, {"kind": "break_glass", "ticket": "INC-9"})
    assert got == ("approved_in_grace", "Z")


def test_break_glass_beats_ticket_invalid(world):
    world.ticket("INC-9", opened=h("11:30:00"))
    world.ticket("CHG-X", status="cancelled")
    world.approval("Z", h("08:00:00"), h("12:00:00"), kind="break_glass", ticket="INC-9")
    world.approval("A", h("10:30:00"), h("12:00:00"), ticket="CHG-X")
    world.action("e", h("11:00:00"))
    assert pick(world.judge(), "verdict", "approval_id")["e"] == ("break_glass", "Z")


def test_ticket_invalid_beats_ticket_missing(world):
    world.ticket("CHG-X", status="cancelled")
    world.approval("Z", h("08:00:00"), h("12:00:00"), ticket="CHG-X")
    world.approval("A", h("10:30:00"), h("12:00:00"), ticket="")
    world.action("e", h("11:00:00"))
    assert pick(world.judge(), "verdict", "approval_id")["e"] == ("ticket_invalid", "Z")


def test_ticket_missing_beats_unreviewed_break_glass(world):
    world.approval("Z", h("08:00:00"), h("12:00:00"), ticket="")
    world.approval("A", h("10:30:00"), h("12:00:00"), kind="break_glass", ticket="")
    world.action("e", h("11:00:00"))
    assert pick(world.judge(), "verdict", "approval_id")["e"] == ("ticket_missing", "Z")


@pytest.mark.parametrize("seed", [1, 2])
def test_same_verdict_same_start_goes_to_the_smallest_id(world, seed):
    for n, i in enumerate(["B", "E", "A", "C", "G", "D", "F"]):
        world.approval(i, S, h(f"{12 + n % 3}:00:00"))
    world.action("e", h("11:00:00"))
    rng = random.Random(seed)
    got = world.judge(order=lambda rows: rng.sample(rows, len(rows)))
    assert pick(got, "verdict", "approval_id")["e"] == ("approved", "A")


# --- the period ------------------------------------------------------------------------------

def test_period_start_is_inclusive_and_its_end_exclusive(world):
    from datetime import datetime, timezone
    world.approval("A", "2026-11-15T20:00:00Z", "2026-11-17T04:00:00Z", account="first")
    world.approval("B", "2026-11-15T20:00:00Z", "2026-11-17T04:00:00Z", account="last")
    world.approval("C", "2026-11-15T20:00:00Z", "2026-11-17T04:00:00Z", account="x",
                   target="y")
    # each action is alone on its (account, target) key, so the key's own selection shows
    world.action("at_start", "2026-11-16T00:00:00Z", account="first")
    world.action("at_end", "2026-11-17T00:00:00Z", account="last")
    world.action("cites", "2026-11-16T00:00:00Z", account="z", approval_ref="C")
    got = world.judge(start=datetime(2026, 11, 16, tzinfo=timezone.utc),
                      end=datetime(2026, 11, 17, tzinfo=timezone.utc))
    assert set(got) == {"at_start", "cites"}
    assert pick(got, "verdict", "approval_id") == {"at_start": ("approved", "A"),
                                                   "cites": ("approved", "C")}


# --- the identity of a stored action ------------------------------------------------------------

BASE = {"ts": "2026-11-16T10:00:00Z", "account": "alice", "target": "web-01", "action": "ssh",
        "detail": "ls -l", "session_id": "s1", "actor": "alice"}
CHANGED = {"ts": "2026-11-16T10:00:01Z", "account": "bob", "target": "web-02", "action": "scp",
           "detail": "ls -la", "session_id": "s2", "actor": "carol"}


def _rows(tmp_path, records, name="a.jsonl", store=None, connector=None):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    store = store or Store(":memory:")
    (r,) = ingest(store, connector or GenericConnector(), "activity", [str(path)], Options())
    assert r.balanced, r
    return store, r


BAD = {"event_id": "bad", "ts": "not a time", "account": "a", "target": "t"}


@pytest.mark.parametrize("path", ["one_pass", "staged"])
@pytest.mark.parametrize("field", sorted(BASE))
def test_content_id_differs_when_any_one_field_differs(tmp_path, field, path):
    records = [BASE, {**BASE, field: CHANGED[field]}]
    if path == "staged":
        records.append(BAD)      # a record to quarantine sends the file down the staged path
    store, r = _rows(tmp_path, records)
    assert (r.accepted, r.duplicates) == (2, 0)
    ids = [i for (i,) in store.query("SELECT event_id FROM activity")]
    assert len(set(ids)) == 2 and all(i.startswith("sha:") for i in ids)


@pytest.mark.parametrize("path", ["one_pass", "staged"])
def test_content_id_is_stable_so_the_same_record_is_a_duplicate(tmp_path, path):
    extra = [BAD] if path == "staged" else []
    store, _ = _rows(tmp_path, [BASE, *extra])
    _, r = _rows(tmp_path, [{**BASE, "event_id": ""}, *extra], name="b.jsonl", store=store)
    assert (r.accepted, r.duplicates) == (0, 1)
    assert store.scalar("SELECT count(*) FROM activity") == 1


# A JSON-lines record lacking a key has NULL there; the content id hashes it as an empty value in
# its place, so {detail: x} and {session_id: x} are two events (concat_ws alone skips NULLs).
@pytest.mark.parametrize("a,b", [("detail", "session_id"), ("session_id", "actor")])
def test_content_id_differs_when_a_value_moves_to_the_next_field(tmp_path, a, b):
    common = {k: BASE[k] for k in ("ts", "account", "target", "action")}
    store, r = _rows(tmp_path, [{**common, a: "x"}, {**common, b: "x"}])
    assert (r.accepted, r.duplicates) == (2, 0)


class _OtherSource(GenericConnector):
    name = "other"


@pytest.mark.parametrize("path", ["one_pass", "staged"])
def test_same_event_id_from_two_sources_is_two_rows(tmp_path, path):
    extra = [BAD] if path == "staged" else []
    store, _ = _rows(tmp_path, [{**BASE, "event_id": "E1"}, *extra])
    # the second source has rows of its own already, so its new rows are checked against them
    _rows(tmp_path, [{**BASE, "event_id": "O1"}], name="b.jsonl", store=store,
          connector=_OtherSource())
    _, r = _rows(tmp_path, [{**BASE, "event_id": "E1", "detail": "other"}, *extra],
                 name="c.jsonl", store=store, connector=_OtherSource())
    assert (r.accepted, r.duplicates) == (1, 0)
    assert store.query("SELECT source, detail FROM activity WHERE event_id = 'E1' "
                       "ORDER BY source") == [("generic", "ls -l"), ("other", "other")]
    assert store.scalar("SELECT count(DISTINCT act_id) FROM activity") == 3

