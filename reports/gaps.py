"""The gap report's context: aggregates and the worst findings, read from a run. No verdict logic."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from correlate import __version__, queries
from correlate.clock import now_utc
from correlate.findings import DESCRIPTIONS, VERDICTS
from correlate.store import Store
from reports.render import render, write_atomic

WORST_LIMIT = 500
TIMELINE_ACCOUNTS = 5
TIMELINE_MARKS = 400

ACCOUNTS_SQL = """
SELECT a.account AS account, count(*) AS total,
       count(*) FILTER (WHERE f.status = 'PASS') AS pass,
       count(*) FILTER (WHERE f.status = 'WARN') AS warn,
       count(*) FILTER (WHERE f.status = 'FAIL') AS fail,
       count(DISTINCT a.target) AS targets, min(a.ts) AS first, max(a.ts) AS last,
       coalesce(any_value(i.kind), any_value(a.actor_kind), '') AS kind
FROM findings f JOIN activity a USING (act_id)
LEFT JOIN identities i ON i.alias_norm = lower(a.account)
WHERE f.run_id = ?
GROUP BY a.account ORDER BY fail DESC, warn DESC, total DESC, account LIMIT ?
"""

WORST_SQL = """
SELECT a.ts, a.account, a.target, a.action, a.detail, a.actor, a.event_id, a.source,
       f.verdict, f.status, f.approval_id, f.ticket_id, f.gap_seconds, f.reason, f.match_via
FROM findings f JOIN activity a USING (act_id)
WHERE f.run_id = ? AND f.status = 'FAIL'
ORDER BY CASE f.verdict WHEN 'unapproved' THEN 1 WHEN 'out_of_window' THEN 2
                        WHEN 'break_glass_unreviewed' THEN 3 WHEN 'ticket_missing' THEN 4
                        ELSE 5 END,
         a.ts, a.event_id
LIMIT ?
"""

# identity kind: identities.csv, else what the source said (bots, service principals).
KINDS_SQL = """
SELECT coalesce(i.kind, a.actor_kind, 'unknown') AS kind, count(*) AS total,
       count(*) FILTER (WHERE f.status = 'PASS') AS pass,
       count(*) FILTER (WHERE f.status = 'WARN') AS warn,
       count(*) FILTER (WHERE f.status = 'FAIL') AS fail
FROM findings f JOIN activity a USING (act_id)
LEFT JOIN identities i ON i.alias_norm = lower(a.account)
WHERE f.run_id = ? GROUP BY 1 ORDER BY fail DESC, kind
"""

PERIOD_SQL = "SELECT min(a.ts), max(a.ts) FROM findings f JOIN activity a USING (act_id) WHERE f.run_id = ?"

QUARANTINE_SQL = """
SELECT file, line, reason FROM quarantine ORDER BY file, line LIMIT 200
"""

TIMELINE_WINDOWS_SQL = """
SELECT approval_id, target, start_ts, window_end AS end_ts, kind, status
FROM approval_windows
WHERE lower(account) = lower(?) AND status <> 'denied' AND end_ts >= ? AND start_ts <= ?
ORDER BY start_ts LIMIT 200
"""

TIMELINE_ACTIONS_SQL = """
SELECT a.ts, f.verdict, f.status, a.target FROM findings f JOIN activity a USING (act_id)
WHERE f.run_id = ? AND a.account = ?
ORDER BY f.status = 'PASS', a.ts LIMIT ?
"""

CHECKS_SQL = """
SELECT c.check_id, c.approval_id, c.ticket_id, c.detail, a.account, a.target
FROM approval_checks c LEFT JOIN approvals a
  ON a.source = c.approval_source AND a.approval_id = c.approval_id
WHERE c.run_id = ? ORDER BY c.check_id, c.approval_id LIMIT 200
"""

FRAMEWORKS = (
    ("PCI DSS 4.0", "10.2.1.2", "administrative actions by privileged users are logged"),
    ("ISO/IEC 27001:2022", "A.8.2", "privileged access rights"),
    ("ISO/IEC 27001:2022", "A.8.15", "logging"),
    ("ISO/IEC 27001:2022", "A.8.32", "change management"),
    ("NIST SP 800-53", "AC-6(9)", "log use of privileged functions"),
    ("NIST SP 800-53", "AU-6(3)", "correlate audit record repositories"),
    ("NIST SP 800-53", "CM-3", "configuration change control"),
    ("SOX ITGC", "access / change", "privileged access and change management"),
)


@dataclass
class Timeline:
    """One account's approval windows (bars) and actions (marks), in SVG coordinates."""

    account: str
    bars: list[dict] = field(default_factory=list)
    marks: list[dict] = field(default_factory=list)
    omitted: int = 0


@dataclass
class GapReportContext:
    """Everything gaps.html may show; the template only lays it out."""

    title: str
    generated: datetime
    tool_version: str
    run: dict
    period_start: datetime | None
    period_end: datetime | None
    sources: list[dict]
    totals: list[dict]
    total_findings: int
    accounts: list[dict]
    kinds: list[dict]
    worst: list[dict]
    worst_limit: int
    failing_total: int
    quarantine: list[dict]
    quarantined_total: int
    timelines: list[Timeline]
    checks: list[dict]
    checks_total: int
    failed_attempts: list[dict]
    failed_attempts_total: int
    frameworks: tuple
    descriptions: dict
    verdict_order: list[str]
    svg_width: int = 900


def _timeline(store: Store, run_id: int, account: str, total: int, start: datetime,
              end: datetime, width: int) -> Timeline:
    """`total`: the account's actions in the run (from the accounts table, not counted again)."""
    tl = Timeline(account)
    span = max((end - start).total_seconds(), 1.0)

    def x(ts: datetime) -> float:
        return round(max(0.0, min(1.0, (ts - start).total_seconds() / span)) * width, 1)

    windows = store.query(TIMELINE_WINDOWS_SQL, [account, start, end])
    for i, (aid, target, ws, we, kind, status) in enumerate(windows):
        x0, x1 = x(ws), x(we)
        tl.bars.append({"x": x0, "w": max(x1 - x0, 1.5), "row": i % 4, "approval_id": aid,
                        "target": target, "start": ws, "end": we, "kind": kind, "status": status})
    actions = store.query(TIMELINE_ACTIONS_SQL, [run_id, account, TIMELINE_MARKS])
    for ts, verdict, status, target in actions:
        tl.marks.append({"x": x(ts), "ts": ts, "verdict": verdict, "status": status,
                         "target": target})
    tl.omitted = total - len(actions)
    return tl


def gap_report_context(store: Store, run_id: int | None = None) -> GapReportContext:
    run_id = queries.resolve_run(store, run_id)
    run = queries.run_info(store, run_id)
    first, last = store.query(PERIOD_SQL, [run_id])[0]
    start = run["period_start"] or first
    end = run["period_end"] or last
    totals = queries.verdict_totals(store, run_id)
    by_verdict = {t["verdict"]: t for t in totals}
    ordered = [by_verdict.get(v, {"verdict": v, "status": s, "n": 0}) for v, s in VERDICTS.items()]
    accounts = store.query_dicts(ACCOUNTS_SQL, [run_id, 200])
    worst = store.query_dicts(WORST_SQL, [run_id, WORST_LIMIT])
    failing_total = sum(t["n"] for t in totals if t["status"] == "FAIL")
    attempts = queries.failed_attempts(store, run_id)
    width = 900
    timelines = []
    if start and end:
        for acc in [a for a in accounts if a["fail"]][:TIMELINE_ACCOUNTS]:
            timelines.append(_timeline(store, run_id, acc["account"], acc["total"], start, end,
                                       width))
    return GapReportContext(
        title="pamcorr gap report", generated=now_utc(), tool_version=__version__, run=run,
        period_start=start, period_end=end, sources=queries.source_counts(store),
        totals=ordered, total_findings=sum(t["n"] for t in totals), accounts=accounts,
        kinds=store.query_dicts(KINDS_SQL, [run_id]),
        worst=worst, worst_limit=WORST_LIMIT, failing_total=failing_total,
        quarantine=store.query_dicts(QUARANTINE_SQL),
        quarantined_total=store.scalar("SELECT count(*) FROM quarantine"),
        timelines=timelines, checks=store.query_dicts(CHECKS_SQL, [run_id]),
        checks_total=queries.check_count(store, run_id),
        failed_attempts=attempts[:200], failed_attempts_total=sum(a["n"] for a in attempts),
        frameworks=FRAMEWORKS, descriptions=DESCRIPTIONS,
        verdict_order=list(VERDICTS), svg_width=width)


def write_gap_report(store: Store, path: Path, run_id: int | None = None) -> Path:
    ctx = gap_report_context(store, run_id)
    return write_atomic(path, render("gaps.html", {"r": ctx}))
