"""A busy account's timeline binned when the run is written (schema 068,
correlate/sql/run_timeline.sql) is the timeline the report bins from the actions: the same
bins (pixel column, status, flagged or not), the same counts, first times, verdicts, targets,
rules, reviews and sequences, over a given period and over one taken from the actions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

import correlate.run_groups as crg
import reports.gaps as gaps
from correlate.detect.rules import SEVERITIES
from correlate.engine import correlate
from reports import run_groups as rg
from reports.gaps import gap_report_context

D = lambda day: datetime(2026, 11, day, tzinfo=timezone.utc)    # noqa: E731
T0 = D(16)
WIDTH = crg.TIMELINE_WIDTH


def _at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def _week(world):
    """alice and bob busy, carol quiet. Over the 16th a pixel column is 96 s: actions on column
    bounds (every 48 s from 10:00, itself a bound), one second before them, several statuses
    and flagged and unflagged actions in one column, two FAIL verdicts in one column, failed
    attempts, and a sequence (destructive commands on three hosts within ten minutes)."""
    world.approval("A", "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z", target="web-01")
    for k in range(60):
        world.action(f"p{k}", _at(36000 + 48 * k), target="web-01")                  # PASS
        world.action(f"u{k}", _at(36000 + 48 * k + 47), target="db-09",              # FAIL
                     **({"action": "exec", "detail": "auditctl -D"} if k % 3 == 0 else {}))
    world.action("grace1", "2026-11-16T12:01:00Z", target="web-01")                   # WARN
    world.action("grace2", "2026-11-16T12:02:30Z", target="web-01")
    world.action("after", "2026-11-16T13:00:10Z", target="web-01")                    # oow
    world.action("un13", "2026-11-16T13:00:20Z", target="db-07")                      # unapproved
    for k in range(3):
        world.action(f"no{k}", _at(50000 + 96 * k), target="db-05", outcome="failure")   # INFO
        world.action(f"wipe{k}", _at(60000 + 60 * k), target=f"db-0{k + 1}", action="exec",
                     detail="rm -rf /var/lib/mysql")
    for k in range(25):
        world.action(f"b{k}", _at(3600 * k + 1), account="bob", target="db-02")
    world.action("late", "2026-11-16T23:59:59.999999Z", account="bob", target="db-02")
    world.action("c1", "2026-11-16T09:00:00Z", account="carol", target="db-03")
    return world.store()


@pytest.fixture
def runs(world, monkeypatch):
    monkeypatch.setattr(crg, "TIMELINE_BIN_ABOVE", 10)      # bins written for > 10 actions
    monkeypatch.setattr(gaps, "TIMELINE_BIN_ABOVE", 10)
    store = _week(world)
    given = correlate(store, D(16), D(17))
    taken = correlate(store)                 # the period: the first and last action
    yield store, given, taken
    store.close()


def _from_actions(store, run, account, t0, span, limit=100000):
    """The report's own binning (reports/gaps.py TIMELINE_BINS_SQL) of the account's actions."""
    scratch = {"run_id": run, "accounts": [account], "severities": list(SEVERITIES)}
    for statement in gaps.TIMELINE_SCRATCH_SQL:
        store.query(statement, {k: v for k, v in scratch.items() if f"${k}" in statement})
    return store.query(gaps.TIMELINE_BINS_SQL, {
        "account": account, "limit": limit, "severities": list(SEVERITIES), "t0": t0,
        "span": span, "width": WIDTH})


def _period(store, run):
    start, end = store.query("SELECT period_start, period_end FROM runs WHERE run_id = ?",
                             [run])[0]
    if start is None:
        start, end = store.query("SELECT min(first), max(last) FROM run_groups "
                                 "WHERE run_id = ?", [run])[0]
    return start.timestamp(), max((end - start).total_seconds(), 1.0)


@pytest.mark.parametrize("which", ["given", "taken"])
def test_the_bins_written_with_the_run_are_the_bins_of_its_actions(runs, which):
    store, given, taken = runs
    run = given if which == "given" else taken
    t0, span = _period(store, run)
    assert rg.stored_timeline(store, run, t0, span, WIDTH, 10)
    assert {a for (a,) in store.query("SELECT DISTINCT account FROM run_timeline_bins "
                                      "WHERE run_id = ?", [run])} == {"alice", "bob"}
    for account in ("alice", "bob"):
        stored = rg.stored_bins(store, run, account, 100000)
        assert stored == _from_actions(store, run, account, t0, span)
        assert sum(b[-1] for b in stored) == store.scalar(
            "SELECT count(*) FROM findings f JOIN activity a USING (act_id) "
            "WHERE f.run_id = ? AND a.account = ?", [run, account])
    alice = rg.stored_bins(store, run, "alice", 100000)
    # the world has what the test means: several statuses, flags and verdicts in a column
    cols = {}
    for ts, verdict, status, target, rules, severity, review, sequences, n in alice:
        cols.setdefault(int((ts.timestamp() - t0) / span * WIDTH), set()).add(
            (status, bool(rules)))
    assert any(len(v) >= 3 for v in cols.values())
    assert {b[2] for b in alice} == {"PASS", "WARN", "FAIL", "INFO"}
    assert any(b[1] == "out_of_window, unapproved" for b in alice)
    assert any(b[7] for b in alice) and any(b[4] == ["auditctl_rules_deleted"] for b in alice)
    assert max(b[-1] for b in alice) > 1


def test_the_report_draws_the_same_timelines_from_the_bins_as_from_the_actions(runs,
                                                                               monkeypatch):
    store, given, _ = runs
    monkeypatch.setattr(gaps, "TIMELINE_MARKS", 5)          # the cap on unflagged PASS/WARN
    binned = gap_report_context(store, given).timelines
    store.query("DELETE FROM run_timelines")                # as a run written before 068
    assert not rg.stored_timeline(store, given, *_period(store, given), WIDTH, 10)
    unbinned = gap_report_context(store, given).timelines
    assert [t.account for t in binned] == [t.account for t in unbinned]
    assert {t.account for t in binned} >= {"alice", "bob"}
    for a, b in zip(binned, unbinned):
        assert (a.marks, a.sequences, a.drawn, a.omitted_by_status) == \
            (b.marks, b.sequences, b.drawn, b.omitted_by_status), a.account
    alice = next(t for t in binned if t.account == "alice")
    assert alice.sequences and alice.omitted


def test_a_quiet_account_and_a_lower_threshold_are_read_from_the_actions(runs, monkeypatch):
    store, given, _ = runs
    assert rg.stored_bins(store, given, "carol", 100) == []
    monkeypatch.setattr(gaps, "TIMELINE_BIN_ABOVE", 5)      # bins written above 10 only
    assert not rg.stored_timeline(store, given, *_period(store, given), WIDTH, 5)
