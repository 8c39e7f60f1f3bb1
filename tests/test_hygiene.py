"""Approval hygiene (correlate/sql/hygiene.sql, docs/hygiene.md): one small world per check, a
positive and a negative case each, the same answer whatever the order of the files."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from connectors.base import Options
from connectors.generic import GenericConnector
from connectors.pim import PimConnector
from connectors.teleport import TeleportConnector
from correlate import queries
from correlate.engine import Policy, correlate
from correlate.hygiene import CHECK_IDS, hygiene_settings
from correlate.ingest import ingest
from reports.hygiene import hygiene_rows

DAY = "2026-03-02"


def t(hhmm: str, day: str = DAY) -> str:
    return f"{day}T{hhmm}:00Z"


def judge(world, order=None, approvers=None, ticket_approvals=(), feeds=(), start=None,
          end=None, **thresholds):
    """(rows, counts by check) of one run over the world (and vendor files `feeds`)."""
    store = world.store(order=order)
    if approvers is not None:
        path = world.folder / "approvers.csv"
        path.write_text("approver,scope,kinds\n" + "".join(f"{a},{s},{k}\n"
                                                          for a, s, k in approvers))
        for r in ingest(store, GenericConnector(), "approvers", [str(path)], Options()):
            assert r.balanced, r
    for ticket, approver in ticket_approvals:
        store.con.execute("INSERT INTO ticket_approvals VALUES (?, ?, 'approved', NULL, NULL)",
                          [ticket, approver])
    for connector, path in feeds:
        for r in ingest(store, connector, None, [str(path)], Options()):
            assert r.balanced, r
    run = correlate(store, start, end, Policy(), hygiene=hygiene_settings(thresholds))
    rows = hygiene_rows(store, run)
    counts = {c["check_id"]: c for c in queries.hygiene_counts(store, run)}
    store.close()
    for r in rows:
        r["evidence"] = json.loads(r["evidence"])
    return rows, counts


def found(rows, check):
    return sorted(r["approval_id"] or r["event_id"] for r in rows if r["check_id"] == check)


def only(rows, check):
    (row,) = [r for r in rows if r["check_id"] == check]
    return row


def heartbeat(world, host, times, account="svc-monitor"):
    """Another account's actions on `host`: its source was reporting then."""
    for ts in times:
        world.action(f"hb-{len(world.actions)}", ts, account=account, target=host)


# -- self_approval ----------------------------------------------------------------------------

def test_requester_approving_under_another_alias_is_self_approval(world):
    world.identity("DOMAIN\\alice", "alice")
    world.identity("alice@corp", "alice")
    world.approval("A1", t("10:00"), t("11:00"), requester="DOMAIN\\alice", approver="alice@corp")
    world.approval("A2", t("10:00"), t("11:00"), requester="alice", approver="bob")
    world.approval("A3", t("10:00"), t("11:00"), requester="Carol", approver="carol")
    world.action("e1", t("10:10"))
    rows, counts = judge(world)
    assert found(rows, "self_approval") == ["A1", "A3"]
    a1 = only([r for r in rows if r["approval_id"] == "A1"], "self_approval")
    assert a1["severity"] == "FAIL" and a1["control"] == "AC-5"
    assert a1["evidence"]["identity"] == "alice"
    assert "alias DOMAIN\\alice of alice" in a1["evidence"]["matched_by"]
    assert "alias alice@corp of alice" in a1["evidence"]["matched_by"]
    assert counts["self_approval"]["judged"] == 3


def test_approval_without_requester_or_approver_is_counted_not_judged(world):
    world.approval("A1", t("10:00"), t("11:00"), requester="alice")
    world.approval("A2", t("10:00"), t("11:00"), approver="alice")
    world.approval("A3", t("10:00"), t("11:00"), requester="alice", approver="bob")
    rows, counts = judge(world)
    assert found(rows, "self_approval") == []
    assert (counts["self_approval"]["judged"], counts["self_approval"]["not_judged"]) == (1, 2)
    assert counts["approver_is_implementer"]["not_judged"] == 1


# -- approver_is_implementer ------------------------------------------------------------------

def test_approver_acting_under_the_approval_is_the_implementer(world):
    world.identity("bob@corp", "bob")
    world.approval("A1", t("10:00"), t("11:00"), account="root", requester="alice",
                   approver="bob")
    world.approval("A2", t("12:00"), t("13:00"), account="root", requester="alice",
                   approver="bob")
    world.action("e1", t("10:10"), account="root", actor="bob@corp")
    world.action("e2", t("12:10"), account="root", actor="alice")
    world.action("e3", t("14:10"), account="root", actor="bob")     # under no approval
    rows, _ = judge(world)
    assert found(rows, "approver_is_implementer") == ["A1"]
    row = only(rows, "approver_is_implementer")
    assert row["evidence"]["actor"] == "bob@corp" and row["evidence"]["identity"] == "bob"
    assert row["evidence"]["matched_by"] == "identities.csv"


# -- approver_not_authorized ------------------------------------------------------------------

def test_approver_not_listed_for_the_target_or_kind_is_not_authorized(world):
    world.target("web-01", group="web")
    world.approval("A1", t("10:00"), t("11:00"), approver="bob")                    # listed
    world.approval("A2", t("10:00"), t("11:00"), approver="carol")                  # not listed
    world.approval("A3", t("10:00"), t("11:00"), approver="bob", kind="break_glass")
    world.approval("A4", t("10:00"), t("11:00"), approver="dave", target="db-01")   # by group
    world.approval("A5", t("10:00"), t("11:00"), approver="erin")                   # via group
    rows, counts = judge(world, approvers=[("bob", "web-*", "standard"), ("dave", "db-*", ""),
                                           ("erin", "web", "")])
    assert found(rows, "approver_not_authorized") == ["A2", "A3"]
    assert counts["approver_not_authorized"]["judged"] == 5


def test_without_approvers_csv_the_check_judges_nothing(world):
    world.approval("A1", t("10:00"), t("11:00"), approver="carol")
    rows, counts = judge(world)
    assert found(rows, "approver_not_authorized") == []
    assert (counts["approver_not_authorized"]["judged"],
            counts["approver_not_authorized"]["not_judged"]) == (0, 1)


def test_approver_not_among_the_tickets_approvers_is_not_authorized(world):
    world.ticket("CHG-2")
    world.identity("Bob Jones", "bob")
    world.approval("A1", t("10:00"), t("11:00"), approver="bob", ticket="CHG-2")
    world.approval("A2", t("10:00"), t("11:00"), approver="carol", ticket="CHG-2")
    rows, _ = judge(world, ticket_approvals=[("CHG-2", "Bob Jones")])
    assert found(rows, "approver_not_authorized") == ["A2"]
    assert only(rows, "approver_not_authorized")["evidence"]["ticket_approvers"] == "Bob Jones"


# -- approval_unused / approval_unused_unknown ------------------------------------------------

def test_unused_approval_while_the_host_reported_is_unused(world):
    world.approval("A1", t("10:00"), t("11:00"))                  # web-01: nothing by alice
    world.approval("A2", t("10:00"), t("11:00"), target="web-02")  # used
    heartbeat(world, "web-01", [t("09:00"), t("10:30")])
    world.action("e1", t("10:20"), target="web-02")
    rows, _ = judge(world)
    assert found(rows, "approval_unused") == ["A1"]
    assert found(rows, "approval_unused_unknown") == []
    ev = only(rows, "approval_unused")["evidence"]
    assert ev["sources_reporting"] == ["generic"] and ev["granted_minutes"] == 60


def test_unused_approval_on_a_host_whose_source_went_quiet_is_unknown(world):
    world.approval("A1", t("10:00"), t("11:00"), target="web-03")
    world.approval("A2", t("10:00"), t("11:00"), target="never-seen")
    heartbeat(world, "web-03", [t("08:00"), t("09:59")])          # quiet from 10:00 on
    world.action("e1", t("12:00"), target="web-03")               # after the window: no use
    rows, _ = judge(world)
    assert found(rows, "approval_unused") == []
    assert found(rows, "approval_unused_unknown") == ["A1", "A2"]
    a1 = [r for r in rows if r["approval_id"] == "A1"][0]
    assert a1["severity"] == "INFO" and a1["evidence"]["quiet"] == ["web-03 (generic)"]


def test_an_hour_whose_first_and_last_events_fall_outside_the_window_is_quiet(world):
    """A source's reporting is read per UTC hour from its first and last event: an hour of
    events at 10:05, 10:30 and 10:55 does not show the 10:20-10:40 window reported (unknown);
    one whose last event, 11:10, lies in the 11:00-11:30 window does (unused)."""
    world.approval("A1", t("10:20"), t("10:40"))
    world.approval("A2", t("11:00"), t("11:30"), target="web-02")
    heartbeat(world, "web-01", [t("10:05"), t("10:30"), t("10:55")])
    heartbeat(world, "web-02", [t("10:50"), t("11:10")])
    rows, _ = judge(world)
    assert found(rows, "approval_unused_unknown") == ["A1"]
    assert found(rows, "approval_unused") == ["A2"]


def test_a_failed_attempt_is_no_use(world):
    world.approval("A1", t("10:00"), t("11:00"))
    world.action("e1", t("10:10"), outcome="failure")
    heartbeat(world, "web-01", [t("10:30")])
    rows, _ = judge(world)
    assert found(rows, "approval_unused") == ["A1"]


def test_a_window_open_at_the_end_of_the_period_is_not_judged_unused(world):
    world.approval("A1", t("22:00"), "2026-03-03T02:00:00Z")
    heartbeat(world, "web-01", [t("23:00")])
    start = datetime(2026, 3, 2, tzinfo=timezone.utc)
    rows, counts = judge(world, start=start, end=datetime(2026, 3, 3, tzinfo=timezone.utc))
    assert found(rows, "approval_unused") == found(rows, "approval_unused_unknown") == []
    assert counts["approval_unused"]["not_judged"] == 1


# -- standing_eligibility ---------------------------------------------------------------------

@pytest.mark.parametrize("n, flagged", [(3, True), (2, False)])
def test_repeatedly_unused_approvals_are_standing_eligibility(world, n, flagged):
    for i in range(n):
        world.approval(f"A{i}", t(f"1{i}:00"), t(f"1{i}:30"))
        heartbeat(world, "web-01", [t(f"1{i}:10")])
    rows, _ = judge(world)
    assert len(found(rows, "approval_unused")) == n
    assert found(rows, "standing_eligibility") == ([f"A{n - 1}"] if flagged else [])
    if flagged:
        assert only(rows, "standing_eligibility")["evidence"]["unused"] == 3


# -- window_oversized -------------------------------------------------------------------------

def test_eight_hour_window_used_ten_minutes_is_oversized(world):
    world.approval("A1", t("08:00"), t("16:00"))                   # 10 min of 8 h
    world.approval("A2", t("08:00"), t("16:00"), target="web-02")  # 3 h of 8 h
    world.approval("A3", t("08:00"), t("09:00"), target="web-03")  # 1 h window: too short
    world.action("e1", t("09:00"))
    world.action("e2", t("09:10"))
    world.action("e3", t("09:00"), target="web-02")
    world.action("e4", t("12:00"), target="web-02")
    world.action("e5", t("08:30"), target="web-03")
    rows, _ = judge(world)
    assert found(rows, "window_oversized") == ["A1"]
    ev = only(rows, "window_oversized")["evidence"]
    assert (ev["granted_minutes"], ev["used_minutes"], ev["actions"]) == (480, 10, 2)


# -- renewal_chain ----------------------------------------------------------------------------

def test_four_one_hour_pim_activations_back_to_back(world):
    for i, (a, b) in enumerate((("08:00", "09:00"), ("09:00", "10:00"), ("10:02", "11:02"),
                                ("11:05", "12:05"))):
        world.approval(f"P{i}", t(a), t(b), account="alice@corp", target="global-admin")
        world.action(f"e{i}", t(a[:3] + "30"), account="alice@corp",
                     target="global-admin")
    rows, _ = judge(world)
    assert found(rows, "renewal_chain") == []                      # 4 h: under 12 h
    rows, _ = judge(world, max_chain=3)
    assert found(rows, "renewal_chain") == ["P0"]
    ev = only(rows, "renewal_chain")["evidence"]
    assert ev["chained"] == 4 and ev["approvals"] == ["P0", "P1", "P2", "P3"]


def test_a_gap_longer_than_chain_gap_breaks_the_chain(world):
    world.approval("P0", t("00:00"), t("07:00"))
    world.approval("P1", t("07:06"), t("14:00"))                   # 6 min later
    rows, _ = judge(world)
    assert found(rows, "renewal_chain") == []
    rows, _ = judge(world, chain_gap=10)
    assert found(rows, "renewal_chain") == ["P0"]


@pytest.mark.parametrize("n, flagged", [(11, True), (10, False)])
def test_more_than_max_per_week_approvals_is_a_renewal_chain(world, n, flagged):
    for i in range(n):
        day = f"2026-03-{2 + i % 6:02d}"
        world.approval(f"W{i:02d}", t(f"{8 + i // 6:02d}:00", day), t(f"{8 + i // 6:02d}:30", day))
    rows, _ = judge(world)
    assert bool(found(rows, "renewal_chain")) is flagged


# -- approval_bypass --------------------------------------------------------------------------

def test_teleport_request_approved_by_tctl_without_review_is_a_bypass(world, tmp_path):
    def ev(**kw):
        return json.dumps({"code": "T5000I", **kw})
    lines = [
        ev(event="access_request.create", id="req-1", uid="u1", time=t("09:00"), user="alice",
           roles=["db-admin"], state="PENDING", expires=t("13:00")),
        ev(event="access_request.update", id="req-1", uid="u2", time=t("09:05"),
           state="APPROVED", updated_by="root-admin", expires=t("13:00")),
        ev(event="access_request.create", id="req-2", uid="u3", time=t("09:00"), user="carol",
           roles=["db-admin"], state="PENDING", expires=t("13:00")),
        ev(event="access_request.review", id="req-2", uid="u4", time=t("09:04"), user="bob",
           reviewer="bob", proposed_state="APPROVED", state="APPROVED"),
        ev(event="access_request.update", id="req-2", uid="u5", time=t("09:05"),
           state="APPROVED", updated_by="bob", expires=t("13:00"))]
    path = tmp_path / "teleport.log"
    path.write_text("\n".join(lines) + "\n")
    rows, _ = judge(world, feeds=[(TeleportConnector(), path)])
    assert found(rows, "approval_bypass") == ["req-1"]
    assert only(rows, "approval_bypass")["evidence"]["approver"] == "root-admin"


def test_role_added_outside_of_pim_is_a_bypass_and_accepted(world, tmp_path):
    rec = {"id": "Directory_1", "category": "RoleManagement",
           "activityDisplayName": "Add member to role outside of PIM (permanent)",
           "activityDateTime": t("10:00"), "result": "success",
           "initiatedBy": {"user": {"userPrincipalName": "admin@corp"}},
           "targetResources": [{"type": "Role", "id": "role-ga", "displayName": "Global Admin"},
                               {"type": "User", "id": "u1", "userPrincipalName": "mallory@corp"}]}
    path = tmp_path / "audit.json"
    path.write_text(json.dumps({"value": [rec]}))
    store = world.store()
    (res,) = ingest(store, PimConnector(), None, [str(path)], Options())
    assert (res.read, res.accepted, res.ignored) == (1, 1, 0)
    store.close()
    rows, _ = judge(world, feeds=[(PimConnector(), path)])
    assert found(rows, "approval_bypass") == ["Directory_1"]
    row = only(rows, "approval_bypass")
    assert row["account"] == "mallory@corp" and row["evidence"]["actor"] == "admin@corp"


def test_policy_write_by_a_human_outside_any_approval_is_a_bypass(world):
    world.identity("deploy-bot", "deploy-bot", kind="service")
    world.approval("A1", t("10:00"), t("11:00"), account="alice", target="123456789012")
    for event, ts, account in (("in", "10:30", "alice"), ("out", "12:00", "alice"),
                               ("svc", "12:00", "deploy-bot")):
        world.action(event, t(ts), account=account, target="123456789012",
                     action="iam.amazonaws.com:AttachRolePolicy")
    world.action("read", t("12:00"), target="123456789012", action="iam.amazonaws.com:GetRole")
    world.action("failed", t("12:00"), target="123456789012", outcome="failure",
                 action="sso.amazonaws.com:CreateAccountAssignment")
    rows, _ = judge(world)
    assert found(rows, "approval_bypass") == ["out"]


# -- ticket_reused ----------------------------------------------------------------------------

def test_ticket_cited_over_more_than_two_weeks_or_after_it_closed_is_reused(world):
    world.ticket("CHG-9")
    world.ticket("CHG-8", closed="2026-03-01T00:00:00Z", status="closed")
    world.approval("A1", t("10:00", "2026-03-01"), t("11:00", "2026-03-01"), ticket="CHG-9")
    world.approval("A2", t("10:00", "2026-03-20"), t("11:00", "2026-03-20"), ticket="CHG-9")
    world.approval("A3", t("10:00"), t("11:00"), ticket="CHG-1")
    world.approval("A4", t("10:00", "2026-03-10"), t("11:00", "2026-03-10"), ticket="CHG-1")
    world.approval("A5", t("10:00"), t("11:00"), ticket="CHG-8")
    rows, _ = judge(world)
    assert found(rows, "ticket_reused") == ["A2", "A5"]


# -- break_glass_routine ----------------------------------------------------------------------

@pytest.mark.parametrize("n, flagged", [(3, ["B2"]), (2, [])])
def test_more_than_two_break_glass_in_30_days_is_routine(world, n, flagged):
    for i in range(n):
        day = f"2026-03-{1 + 10 * i:02d}"
        world.approval(f"B{i}", t("10:00", day), t("11:00", day), kind="break_glass",
                       target=f"db-0{i}")
    rows, _ = judge(world)
    assert found(rows, "break_glass_routine") == flagged


def test_break_glass_while_a_standard_approval_was_in_force_is_routine(world):
    world.approval("S1", t("08:00"), t("12:00"))
    world.approval("B1", t("10:00"), t("11:00"), kind="break_glass")
    world.approval("B2", t("13:00"), t("14:00"), kind="break_glass")
    rows, _ = judge(world)
    assert found(rows, "break_glass_routine") == ["B1"]
    assert only(rows, "break_glass_routine")["evidence"]["standard_approval"] == "S1"


# -- scope_wider_than_use ---------------------------------------------------------------------

def test_glob_over_fifty_hosts_with_one_touched_is_wider_than_use(world):
    for i in range(50):
        world.target(f"web-{i:02d}", group="web")
    world.approval("G1", t("10:00"), t("11:00"), target="web-*")
    world.approval("G2", t("10:00"), t("11:00"), account="bob", target="web")   # a group
    world.approval("G3", t("10:00"), t("11:00"), account="carol", target="web-0*")
    world.action("e1", t("10:10"), target="web-07")
    world.action("e2", t("10:10"), account="bob", target="web-07")
    world.action("e3", t("10:20"), account="bob", target="web-08")
    for i in range(5):                                     # 5 of the 10 web-0* hosts: 50 %
        world.action(f"c{i}", t("10:30"), account="carol", target=f"web-0{i}")
    rows, _ = judge(world)
    assert found(rows, "scope_wider_than_use") == ["G1", "G2"]
    g1 = [r for r in rows if r["approval_id"] == "G1"][0]["evidence"]
    assert (g1["allowed_hosts"], g1["touched_hosts"], g1["suggested"]) == (50, 1, "web-07")
    g2 = [r for r in rows if r["approval_id"] == "G2"][0]["evidence"]
    assert g2["touched"] == ["web-07", "web-08"] and g2["suggested"] == "web-0*"


# -- every check, any file order --------------------------------------------------------------

def big_world(world):
    world.identity("DOMAIN\\alice", "alice")
    world.identity("alice@corp", "alice")
    world.ticket("CHG-8", closed="2026-03-01T00:00:00Z", status="closed")
    for i in range(20):
        world.target(f"web-{i:02d}", group="web")
    world.approval("A1", t("08:00"), t("16:00"), requester="DOMAIN\\alice", approver="alice@corp",
                   target="web-*")
    world.approval("A2", t("10:00"), t("11:00"), account="bob", target="db-01", approver="bob",
                   requester="carol", ticket="CHG-8")
    world.approval("A3", t("12:00"), t("13:00"), account="bob", target="db-02")
    world.approval("B1", t("09:00"), t("10:00"), kind="break_glass", target="web-01")
    for i in range(3):
        world.approval(f"U{i}", t(f"1{i}:00"), t(f"1{i}:30"), account="dan", target="db-03")
    world.action("e1", t("09:00"), target="web-01")
    world.action("e2", t("09:05"), target="web-01")
    world.action("e3", t("10:30"), account="bob", target="db-01", actor="bob")
    heartbeat(world, "db-03", [t("10:10"), t("11:10"), t("12:10")])
    world.action("x1", t("15:00"), target="123", action="iam.amazonaws.com:PutRolePolicy")


def test_every_check_gives_the_same_rows_whatever_the_file_order(world):
    big_world(world)
    forward, _ = judge(world)
    backward, _ = judge(world, order=lambda rows: list(reversed(rows)))
    assert forward == backward
    checks = {r["check_id"] for r in forward}
    assert checks >= {"self_approval", "approver_is_implementer", "approval_unused",
                      "standing_eligibility", "window_oversized", "ticket_reused",
                      "break_glass_routine", "scope_wider_than_use", "approval_bypass",
                      "approval_unused_unknown"}
    assert set(CHECK_IDS) >= checks
