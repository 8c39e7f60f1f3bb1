"""The gap report's context: aggregates and the worst findings, read from a run. No verdict logic."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from correlate import __version__, queries
from correlate.clock import now_utc
from correlate.detect.rules import SEVERITIES
from correlate.findings import DESCRIPTIONS, VERDICTS
from correlate.store import Store
from reports.detections import detections, group_detections
from reports.render import render, write_atomic

WORST_LIMIT = 500
RISKY_LIMIT = 500
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

# An account's actions for its timeline; the ones a detection flagged come first (never cut),
# with their rules, worst severity and review, and the sequences they belong to.
TIMELINE_ACTIONS_SQL = """
SELECT a.ts, f.verdict, f.status, a.target, dd.rules, dd.severity, dd.review, dd.sequences
FROM findings f JOIN activity a USING (act_id)
LEFT JOIN (
    SELECT d.act_id, list(DISTINCT d.rule_id ORDER BY d.rule_id) AS rules,
           $severities[max(list_position($severities, r.severity))] AS severity,
           ['FAIL', 'needs_review', 'MUTED'][min(CASE d.review WHEN 'FAIL' THEN 1
                                             WHEN 'needs_review' THEN 2 ELSE 3 END)] AS review,
           list(DISTINCT d.sequence_id ORDER BY d.sequence_id)
               FILTER (WHERE d.sequence_id IS NOT NULL) AS sequences
    FROM detections d JOIN detection_rules r ON r.run_id = d.run_id AND r.rule_id = d.rule_id
    WHERE d.run_id = $run_id GROUP BY d.act_id
) dd USING (act_id)
WHERE f.run_id = $run_id AND a.account = $account
ORDER BY dd.rules IS NULL, f.status = 'PASS', a.ts LIMIT $limit
"""

# Accounts whose actions are members of a sequence that no allow entry muted, most first.
SEQUENCE_ACCOUNTS_SQL = """
SELECT a.account, count(DISTINCT d.sequence_id) AS n
FROM detections d JOIN activity a USING (act_id)
WHERE d.run_id = ? AND d.sequence_id IS NOT NULL AND d.review <> 'MUTED'
GROUP BY a.account ORDER BY n DESC, a.account LIMIT ?
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
    sequences: list[dict] = field(default_factory=list)   # {sequence_id, points, n}


@dataclass
class RiskyGroup:
    """One detection (rows: one action) or one sequence (rows: its members in order) in the
    Risky actions section; review is the worst of its rows."""

    kind: str                     # event | sequence
    rule_id: str
    title: str
    cls: str
    severity: str
    review: str
    muted_by: str | None
    sequence_id: str | None
    rows: list[dict]


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
    risky: list[RiskyGroup] = field(default_factory=list)         # FAIL, then needs_review
    risky_muted: list[RiskyGroup] = field(default_factory=list)   # every member MUTED
    risky_total: int = 0          # detection rows in the run (risky + muted, all of them)
    risky_shown: int = 0          # detection rows listed (RISKY_LIMIT)
    risky_counts: dict = field(default_factory=dict)   # review -> rows


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
    actions = store.query(TIMELINE_ACTIONS_SQL, {"run_id": run_id, "account": account,
                                                 "limit": TIMELINE_MARKS,
                                                 "severities": list(SEVERITIES)})
    members: dict[str, list[float]] = {}
    for ts, verdict, status, target, rules, severity, review, sequences in actions:
        tl.marks.append({"x": x(ts), "ts": ts, "verdict": verdict, "status": status,
                         "target": target, "rules": rules or [], "severity": severity,
                         "review": review})
        for sid in sequences or ():
            members.setdefault(sid, []).append(x(ts))
    for sid, xs in members.items():
        tl.sequences.append({"sequence_id": sid, "n": len(xs),
                             "points": " ".join(f"{v},63" for v in sorted(xs))})
    tl.omitted = total - len(actions)
    return tl


def risky_groups(rows: list[dict]) -> tuple[list[RiskyGroup], list[RiskyGroup]]:
    """Detection rows (worst first) as groups: (listed as risky, listed as MUTED). A sequence
    is one group at the place of its worst member; it is MUTED only when every member is."""
    order = {"FAIL": 0, "needs_review": 1, "MUTED": 2}
    risky, muted = [], []
    for members in group_detections(rows):
        first = members[0]
        review = min((m["review"] for m in members), key=order.__getitem__)
        group = RiskyGroup("event" if first["sequence_id"] is None else "sequence",
                           first["rule_id"], first["title"], first["class"], first["severity"],
                           review, first["muted_by"], first["sequence_id"], members)
        (muted if review == "MUTED" else risky).append(group)
    return risky, muted


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
        # accounts with sequences first (their sequences are drawn), then the most failing
        totals_by_account = {a["account"]: a["total"] for a in accounts}
        chosen = [a for (a, _) in store.query(SEQUENCE_ACCOUNTS_SQL, [run_id, TIMELINE_ACCOUNTS])]
        chosen += [a["account"] for a in accounts if a["fail"] and a["account"] not in chosen]
        for acc in chosen[:TIMELINE_ACCOUNTS]:
            total = totals_by_account.get(acc) or store.scalar(
                "SELECT count(*) FROM findings f JOIN activity a USING (act_id) "
                "WHERE f.run_id = ? AND a.account = ?", [run_id, acc])
            timelines.append(_timeline(store, run_id, acc, total, start, end, width))
    rows = detections(store, run_id, limit=RISKY_LIMIT)
    risky, risky_muted = risky_groups(rows)
    counts: dict[str, int] = {}
    for t in queries.detection_totals(store, run_id):
        counts[t["review"]] = counts.get(t["review"], 0) + t["n"]
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
        verdict_order=list(VERDICTS), svg_width=width, risky=risky, risky_muted=risky_muted,
        risky_total=sum(counts.values()), risky_shown=len(rows), risky_counts=counts)


def write_gap_report(store: Store, path: Path, run_id: int | None = None) -> Path:
    ctx = gap_report_context(store, run_id)
    return write_atomic(path, render("gaps.html", {"r": ctx}))
