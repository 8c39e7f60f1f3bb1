"""The gap report reads a run's groups (schema 066, correlate/run_groups.py), not its findings
(issue 11): every number it shows equals the same count taken directly over the findings, on a
run with every verdict path, an accepted exception, criticality and failed attempts."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from bs4 import BeautifulSoup

import reports.gaps as gaps
from correlate import queries
from correlate.engine import correlate
from correlate.exceptions import TargetCriticality, VerdictException
from correlate.run_groups import BY_DEFINITION
from reports import run_groups as rg
from reports.detections import detections, worst_detections
from reports.gaps import gap_report_context, write_gap_report

S, E = "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z"
EXC = VerdictException("db-maint", "agreed", "ciso", datetime(2099, 1, 1, tzinfo=timezone.utc),
                       account="carol", target="db-*")
GRACE = VerdictException("grace-ok", "agreed", "ciso",
                         datetime(2099, 1, 1, tzinfo=timezone.utc), verdict="approved_in_grace")
CRIT = (TargetCriticality("db-*", "critical"), TargetCriticality("web-01", "low"))

# The findings, counted directly (what the report counted before schema 066).
DIRECT_ACCOUNTS_SQL = """
SELECT a.account AS account, count(*) AS total,
       count(*) FILTER (WHERE f.status = 'PASS') AS pass,
       count(*) FILTER (WHERE f.status = 'WARN' AND e.act_id IS NULL) AS warn,
       count(*) FILTER (WHERE f.status = 'FAIL' AND e.act_id IS NULL) AS fail,
       count(e.act_id) AS excepted,
       count(e.act_id) FILTER (WHERE f.status = 'FAIL') AS excepted_fail,
       count(DISTINCT a.target) AS targets, min(a.ts) AS first, max(a.ts) AS last,
       coalesce(any_value(i.kind), any_value(a.actor_kind), '') AS kind
FROM findings f JOIN activity a USING (act_id)
LEFT JOIN finding_exceptions e ON e.run_id = f.run_id AND e.act_id = f.act_id
LEFT JOIN identities i ON i.alias_norm = lower(a.account)
WHERE f.run_id = ? GROUP BY a.account ORDER BY account
"""
DIRECT_KINDS_SQL = """
SELECT coalesce(i.kind, a.actor_kind, 'unknown') AS kind, count(*) AS total,
       count(*) FILTER (WHERE f.status = 'PASS') AS pass,
       count(*) FILTER (WHERE f.status = 'WARN' AND e.act_id IS NULL) AS warn,
       count(*) FILTER (WHERE f.status = 'FAIL' AND e.act_id IS NULL) AS fail,
       count(e.act_id) AS excepted
FROM findings f JOIN activity a USING (act_id)
LEFT JOIN finding_exceptions e ON e.run_id = f.run_id AND e.act_id = f.act_id
LEFT JOIN identities i ON i.alias_norm = lower(a.account)
WHERE f.run_id = ? GROUP BY 1 ORDER BY kind
"""


def _week(world):
    world.identity("alice", "Alice", kind="human")
    world.ticket("CHG-2", status="rejected")
    world.approval("A", S, E, target="web-01")
    world.approval("B", S, E, account="dave", target="db-01", ticket="CHG-2")
    world.approval("G", S, E, account="erin", target="web-02", kind="break_glass", ticket="")
    for i in range(6):
        world.action(f"ok{i}", f"2026-11-16T10:{i:02d}:00Z", target="web-01")          # PASS
    world.action("grace", "2026-11-16T12:02:00Z", target="web-01")                      # WARN
    world.action("after", "2026-11-16T15:00:00Z", target="web-01")                      # oow +
    world.action("before", "2026-11-16T08:00:00Z", target="web-01")                     # oow -
    world.action("far", "2026-12-30T08:00:00Z", target="web-01")                        # far
    for i in range(4):
        world.action(f"inv{i}", f"2026-11-16T10:1{i}:00Z", account="dave", target="db-01",
                     action="exec", detail="rm -rf /var/lib/mysql")                     # invalid
        world.action(f"un{i}", f"2026-11-17T10:1{i}:00Z", account="bob", target="db-02",
                     action="exec", detail="auditctl -D")                              # FAIL
        world.action(f"cx{i}", f"2026-11-17T11:1{i}:00Z", account="carol", target="db-03")
    world.action("bg", "2026-11-16T10:30:00Z", account="erin", target="web-02")          # WARN
    world.action("cited", "2026-11-16T10:31:00Z", account="erin", target="web-02",
                 approval_ref="PAM-404")
    world.action("denied", "2026-11-17T09:00:00Z", account="bob", target="db-02",
                 outcome="failure")                                                      # INFO
    world.action("svc", "2026-11-17T09:30:00Z", account="svc-x", target="db-02",
                 actor_kind="service")
    world.action("old", "2026-11-15T09:30:00Z", account="frank", target="db-09")   # resolved
    world.approval("H", S, E, account="hank", target="web-05")
    world.action("late", "2026-11-16T13:00:00Z", account="hank", target="web-05")  # oow, only +
    return world.store()


D = lambda day: datetime(2026, 11, day, tzinfo=timezone.utc)    # noqa: E731




def _rows(store, sql, run):
    return store.query_dicts(f"SELECT * FROM ({sql}) ORDER BY ALL", {"run_id": run})


def _runs(world):
    """Two runs: the 15th and 16th, then the 16th to the 18th (new and resolved issues)."""
    store = _week(world)
    previous = correlate(store, D(15), D(17), exceptions=(EXC, GRACE), criticality=CRIT)
    run = correlate(store, D(16), D(19), exceptions=(EXC, GRACE), criticality=CRIT)
    return store, run, previous


def test_groups_from_finding_refs_equal_the_groups_by_definition(world):
    store, run, _ = _runs(world)
    verdicts = {v for (v,) in store.query("SELECT DISTINCT verdict FROM findings")}
    assert verdicts >= {"approved", "approved_in_grace", "out_of_window", "unapproved",
                        "ticket_invalid", "attempt_failed"}
    stored = store.query_dicts("SELECT * FROM run_groups WHERE run_id = ? ORDER BY ALL", [run])
    # the engine's groups (run_timeline.sql's pass, then run_groups.sql's FROM_PARTS)
    assert stored == _rows(store, BY_DEFINITION, run)
    assert store.query("SELECT findings, groups FROM run_summaries WHERE run_id = ?", [run]) == [
        (store.scalar("SELECT count(*) FROM findings WHERE run_id = ?", [run]), len(stored))]
    assert {r["status"] for r in stored if r["entry"] is not None} == {"FAIL", "WARN"}
    assert any(r["account"] == "hank" and r["approval"]["approval_id"] == "H" for r in stored)
    store.close()


def _direct_vs_groups(store, run, previous):
    """Each count the report reads from the groups equals the count over the findings."""
    rg.load_groups(store, [run, previous])
    direct = store.query_dicts(queries.VERDICT_TOTALS_SQL, [run])
    assert rg.verdict_totals(store, run) == queries.verdict_totals(store, run) == direct
    assert any(t["excepted"] for t in direct)
    assert sorted(rg.accounts(store, run, 200), key=lambda a: a["account"]) == \
        store.query_dicts(DIRECT_ACCOUNTS_SQL, [run])
    assert sorted(rg.kinds(store, run), key=lambda k: k["kind"]) == \
        store.query_dicts(DIRECT_KINDS_SQL, [run])
    assert rg.failed_attempts(store, run) == queries.failed_attempts(store, run) != []
    assert rg.period(store, run) == store.query(
        "SELECT min(a.ts), max(a.ts) FROM findings f JOIN activity a USING (act_id) "
        "WHERE f.run_id = ?", [run])[0]
    keep = ("account", "target", "verdict", "status", "issue_key", "n", "first", "last",
            "sample", "ticket_id", "reason", "new", "criticality", "exception")
    mine = rg.issue_groups(store, run, previous, 100)
    direct = queries.issue_groups(store, run, previous, 100)
    assert [{k: g[k] for k in keep} for g in mine] == [{k: g[k] for k in keep} for g in direct]
    assert [(g["approval"] or {}).get("approval_id") for g in mine] == \
        [(g["approval"] or {}).get("approval_id") for g in direct]
    assert rg.issue_changes(store, run, previous) == queries.issue_changes(store, run, previous)
    return mine


def test_the_reports_counts_equal_direct_counts_over_the_findings(world):
    store, run, previous = _runs(world)
    mine = _direct_vs_groups(store, run, previous)
    assert {g["exception"] for g in mine} == {None, "db-maint", "grace-ok"}
    assert {g["criticality"] for g in mine} >= {"critical", "low"}
    assert any(g["new"] for g in mine) and not all(g["new"] for g in mine)
    changes = rg.issue_changes(store, run, previous)
    assert changes["new"] and changes["resolved"] and changes["still"]
    ctx = gap_report_context(store, run)
    assert ctx.total_findings == store.scalar("SELECT count(*) FROM findings WHERE run_id = ?",
                                              [run])
    assert ctx.failing_total == store.scalar(
        "SELECT count(*) FROM findings f ANTI JOIN finding_exceptions e USING (run_id, act_id) "
        "WHERE f.run_id = ? AND f.status = 'FAIL'", [run])
    store.close()


def test_a_run_written_before_its_groups_is_grouped_by_the_report_the_same_way(world, tmp_path):
    store, run, previous = _runs(world)
    with_groups = gap_report_context(store, run)
    store.query("DELETE FROM run_groups; DELETE FROM run_summaries")    # as before schema 066
    assert rg.stored_runs(store) == set()
    _direct_vs_groups(store, run, previous)
    without = gap_report_context(store, run)
    for name in ("totals", "accounts", "kinds", "status_counts", "issue_verdicts", "changes",
                 "failed_attempts", "trend", "excepted", "period_start", "period_end"):
        assert getattr(with_groups, name) == getattr(without, name), name
    store.close()


def test_verdict_totals_read_the_groups_written_with_the_run_else_the_findings(world):
    store, run, previous = _runs(world)
    direct = store.query_dicts(queries.VERDICT_TOTALS_SQL, [run])
    store.query("UPDATE run_groups SET n = n + 1000 WHERE run_id = ? AND verdict = 'approved'",
                [run])          # only a read of the groups sees this
    grouped = {t["verdict"]: t["n"] for t in queries.verdict_totals(store, run)}
    assert grouped["approved"] == 1000 + next(t["n"] for t in direct
                                             if t["verdict"] == "approved")
    store.query("DELETE FROM run_summaries WHERE run_id = ?", [run])    # groups not written
    assert queries.verdict_totals(store, run) == direct
    store.close()


def test_the_worst_detections_are_the_first_rows_of_detections(world):
    store, run, _ = _runs(world)
    assert len(detections(store, run)) >= 2
    for limit in (1, 2, 3, 1000):
        assert worst_detections(store, run, limit) == detections(store, run, limit=limit)
    store.close()


def test_each_verdict_lists_its_worst_issues_and_says_how_many_more_it_has(world, tmp_path,
                                                                         monkeypatch):
    store, run, _ = _runs(world)
    monkeypatch.setattr(gaps, "ISSUE_LIMIT", 1)
    ctx = gap_report_context(store, run)
    direct = dict(store.query(
        "SELECT f.verdict, count(DISTINCT (a.account, a.target)) FROM findings f "
        "JOIN activity a USING (act_id) ANTI JOIN finding_exceptions e USING (run_id, act_id) "
        "WHERE f.run_id = ? AND f.status IN ('FAIL', 'WARN') GROUP BY ALL", [run]))
    assert {v["verdict"]: v["issues"] for v in ctx.issue_verdicts} == direct
    assert ctx.issues_total == sum(direct.values()) and ctx.issues_capped
    soup = BeautifulSoup(write_gap_report(store, tmp_path / "r.html", run).read_text(),
                         "html.parser")
    for v in ctx.issue_verdicts:
        assert len(soup.select(f"#issues-{v['verdict']} tr.issue")) == 1
        more = soup.select_one(f"#more-{v['verdict']}")
        assert (more is None) == (direct[v["verdict"]] == 1)
        if more is not None:
            assert more.get_text().startswith(f"{direct[v['verdict']] - 1} more ")
    store.close()
