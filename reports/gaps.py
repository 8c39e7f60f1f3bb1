"""The gap report's context: aggregates and the worst findings, read from a run. No verdict logic."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from correlate import __version__, queries
from correlate.clock import now_utc
from correlate.detect.rules import SEVERITIES
from correlate.exceptions import CRITICALITY, run_exceptions, until
from correlate.findings import DESCRIPTIONS, STATUSES, VERDICTS
from correlate.store import Store
from reports.detections import group_detections, worst_detections
from reports.hygiene import hygiene_rows
# more actions than TIMELINE_BIN_ABOVE (2,000): one mark per pixel, status, flagged
from correlate.run_groups import TIMELINE_BIN_ABOVE, TIMELINE_WIDTH
from reports import run_groups as rg
from reports.render import render, write_atomic
from reports.source_coverage import source_coverage
from reports.trend import Trend, trend

ISSUE_LIMIT = 200       # issue groups listed per verdict (the worst; "N more not shown"); all: `findings`
TOP_FAIL = 5            # at most this many issues in the summary ...
TOP_FAIL_SHARE = 0.8    # ... enough to make up this share of the FAIL actions
RISKY_LIMIT = 500
TIMELINE_ACCOUNTS = 5
TIMELINE_MARKS = 400
TIMELINE_SEQUENCES = 50     # sequence lines drawn per timeline, the longest; the rest counted
HYGIENE_LIMIT = 500     # approval hygiene findings listed

QUARANTINE_SQL = """
SELECT file, line, reason FROM quarantine ORDER BY file, line LIMIT 200
"""

TIMELINE_WINDOWS_SQL = """
SELECT approval_id, target, start_ts, window_end AS end_ts, kind, status
FROM approval_windows
WHERE lower(account) = lower(?) AND status <> 'denied' AND end_ts >= ? AND start_ts <= ?
ORDER BY start_ts LIMIT 200
"""

# The timeline accounts' actions and their detections, read once for all of them (one pass over
# the run's findings instead of one per account; issue 11).
TIMELINE_SCRATCH_SQL = ("""
CREATE OR REPLACE TEMP TABLE timeline_actions AS
SELECT a.act_id, a.account, a.ts, a.target, f.verdict, f.status
FROM (SELECT act_id, account, ts, target FROM activity
      WHERE account IN (SELECT unnest($accounts::VARCHAR[]))) a
JOIN findings f USING (act_id)
WHERE f.run_id = $run_id
""", """
CREATE OR REPLACE TEMP TABLE timeline_flags AS
SELECT d.act_id, list(DISTINCT d.rule_id ORDER BY d.rule_id) AS rules,
       max(list_position($severities, r.severity)) AS sev,
       min(CASE d.review WHEN 'FAIL' THEN 1 WHEN 'needs_review' THEN 2 ELSE 3 END) AS rev,
       list(DISTINCT d.sequence_id ORDER BY d.sequence_id)
           FILTER (WHERE d.sequence_id IS NOT NULL) AS sequences
FROM detections d JOIN detection_rules r ON r.run_id = d.run_id AND r.rule_id = d.rule_id
WHERE d.run_id = $run_id AND d.act_id IN (SELECT act_id FROM timeline_actions)
GROUP BY d.act_id
""")

# An account's actions for its timeline: every FAIL and every action a detection flagged (never
# cut), then WARN, INFO and PASS up to the cap; with their rules, worst severity and review, and
# the sequences they belong to.
TIMELINE_ACTIONS_SQL = """
SELECT a.ts, a.verdict, a.status, a.target, dd.rules, $severities[dd.sev] AS severity,
       ['FAIL', 'needs_review', 'MUTED'][dd.rev] AS review, dd.sequences
FROM timeline_actions a LEFT JOIN timeline_flags dd USING (act_id)
WHERE a.account = $account
QUALIFY dd.rules IS NOT NULL OR a.status = 'FAIL' OR row_number() OVER (
    ORDER BY dd.rules IS NULL, CASE a.status WHEN 'FAIL' THEN 1 WHEN 'WARN' THEN 2
                                            WHEN 'INFO' THEN 3 ELSE 4 END, a.ts) <= $limit
ORDER BY a.ts
"""

# The same for a busy account, at the SVG's resolution: the actions of one pixel column with the
# same status (flagged or not) are one mark that says how many it stands for, so every FAIL and
# every detection is still drawn and the report stays small at 1e7 findings (issue 11).
TIMELINE_BINS_SQL = """
SELECT min(a.ts) AS ts, string_agg(DISTINCT a.verdict, ', ' ORDER BY a.verdict) AS verdict,
       a.status,
       CASE WHEN count(*) = 1 THEN min(a.target)
            ELSE min(a.target) || ' and ' || (count(*) - 1) || ' more action(s) here' END AS target,
       list_sort(list_distinct(flatten(list(dd.rules) FILTER (WHERE dd.rules IS NOT NULL))))
           AS rules,
       $severities[max(dd.sev)] AS severity,
       ['FAIL', 'needs_review', 'MUTED'][min(dd.rev)] AS review,
       list_sort(list_distinct(flatten(list(dd.sequences) FILTER (WHERE dd.sequences IS NOT NULL))))
           AS sequences,
       count(*) AS n
FROM timeline_actions a LEFT JOIN timeline_flags dd USING (act_id)
WHERE a.account = $account
GROUP BY floor(greatest(0, least(1, (epoch(a.ts) - $t0) / $span)) * $width), a.status,
         dd.rules IS NULL
QUALIFY NOT (dd.rules IS NULL) OR a.status = 'FAIL' OR row_number() OVER (
    ORDER BY dd.rules IS NULL, CASE a.status WHEN 'FAIL' THEN 1 WHEN 'WARN' THEN 2
                                            WHEN 'INFO' THEN 3 ELSE 4 END, min(a.ts)) <= $limit
ORDER BY ts, a.status, dd.rules IS NULL
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
WHERE c.run_id = ? AND c.family = 'ticket' ORDER BY c.check_id, c.approval_id LIMIT 200
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
    drawn: int = 0                # actions the marks stand for (a binned mark: several)
    omitted_by_status: dict = field(default_factory=dict)   # status -> actions not drawn
    sequences: list[dict] = field(default_factory=list)   # {sequence_id, points, n}
    sequences_omitted: int = 0    # sequences not drawn (TIMELINE_SEQUENCES)


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
    failing_total: int
    status_counts: list[dict]     # {status, n, share} for FAIL, WARN, PASS, INFO
    top_fail: list[dict]          # the biggest FAIL issues, together most of the FAIL actions
    top_fail_actions: int         # FAIL actions they make up
    issue_verdicts: list[dict]    # {verdict, status, n, groups}: every FAIL and WARN verdict
    issues_total: int             # issue groups (not excepted), listed or not
    issues_limit: int             # per verdict
    issues_capped: bool           # some verdict has more groups than the limit (v["more"])
    previous_run: dict | None     # the run "new" and "resolved" compare with
    changes: dict | None          # {new, resolved, still} issue keys
    axis: list[dict]              # time axis ticks {x, label} shared by the timelines
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
    previous_note: str | None = None   # the run compared with did not judge the adjacent period
    trend: Trend = field(default_factory=Trend)        # per verdict over the comparable runs
    source_coverage: list[dict] = field(default_factory=list)   # per source and kind, silent first
    links: object | None = None   # reports.scope_pages.ScopeLinks: scope pages beside the report
    exceptions: list[dict] = field(default_factory=list)  # the run's accepted exceptions
    excepted: list[dict] = field(default_factory=list)    # issue groups an exception covers
    excepted_total: int = 0       # findings an exception covers (FAIL and WARN)

    @staticmethod
    def criticality_rank(level: str | None) -> int:
        """4 critical .. 1 low, 0 none: how the Criticality column sorts."""
        return CRITICALITY[::-1].index(level) + 1 if level in CRITICALITY else 0
    # approval hygiene (_hygiene.html): counts per check, the findings (evidence as a dict)
    hygiene: list[dict] = field(default_factory=list)
    hygiene_rows: list[dict] = field(default_factory=list)
    hygiene_total: int = 0
    integrity: dict | None = None  # recorded input-integrity pass (correlate/integrity), or None

    @property
    def worst(self) -> list[dict]:
        """Every issue group listed, FAIL first."""
        return [g for v in self.issue_verdicts for g in v["groups"]]


def _axis(start: datetime, end: datetime, width: int) -> list[dict]:
    """UTC ticks at whole days (or hours for a short period), at most ~10, in SVG x coordinates."""
    span = max((end - start).total_seconds(), 1.0)
    steps = [3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400, 14 * 86400,
             28 * 86400]
    step = next((s for s in steps if span / s <= 10), 91 * 86400)
    first = int(start.timestamp()) // step * step
    if first < start.timestamp():
        first += step
    ticks, t = [], first
    while t <= end.timestamp():
        ts = datetime.fromtimestamp(t, tz=timezone.utc)
        fmt = "%a %d %b" if step >= 86400 else "%d %b %H:%M"
        ticks.append({"x": round((t - start.timestamp()) / span * width, 1),
                      "label": ts.strftime(fmt), "ts": ts})
        t += step
    return ticks


def _timeline(store: Store, run_id: int, account: str, counts: dict, start: datetime,
              end: datetime, width: int, stored: bool = False) -> Timeline:
    """`counts`: the account's actions in the run per status (from the accounts table);
    `stored`: a busy account's bins were written with the run (schema 068): read them."""
    tl = Timeline(account)
    span = max((end - start).total_seconds(), 1.0)

    def x(ts: datetime) -> float:
        return round(max(0.0, min(1.0, (ts - start).total_seconds() / span)) * width, 1)

    windows = store.query(TIMELINE_WINDOWS_SQL, [account, start, end])
    for i, (aid, target, ws, we, kind, status) in enumerate(windows):
        x0, x1 = x(ws), x(we)
        tl.bars.append({"x": x0, "w": max(x1 - x0, 1.5), "row": i % 4, "approval_id": aid,
                        "target": target, "start": ws, "end": we, "kind": kind, "status": status})
    params = {"account": account, "limit": TIMELINE_MARKS,
              "severities": list(SEVERITIES)}
    if sum(counts.values()) > TIMELINE_BIN_ABOVE and stored:
        actions = rg.stored_bins(store, run_id, account, TIMELINE_MARKS)
    elif sum(counts.values()) > TIMELINE_BIN_ABOVE:
        actions = store.query(TIMELINE_BINS_SQL, {**params, "t0": start.timestamp(),
                                                  "span": span, "width": width})
    else:
        actions = [(*row, 1) for row in store.query(TIMELINE_ACTIONS_SQL, params)]
    members: dict[str, list[float]] = {}
    for ts, verdict, status, target, rules, severity, review, sequences, n in actions:
        tl.marks.append({"x": x(ts), "ts": ts, "verdict": verdict, "status": status,
                         "target": target, "rules": rules or [], "severity": severity,
                         "review": review, "n": n})
        for sid in sequences or ():
            members.setdefault(sid, []).append(x(ts))
    # the longest sequences are drawn (at 1e7 an account had 28,893: 17 MB of lines)
    longest = sorted(members.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    tl.sequences_omitted = max(len(longest) - TIMELINE_SEQUENCES, 0)
    for sid, xs in longest[:TIMELINE_SEQUENCES]:
        tl.sequences.append({"sequence_id": sid, "n": len(xs),
                             "points": " ".join(f"{v},63" for v in sorted(xs))})
    drawn = {st: 0 for st in counts}
    for m in tl.marks:
        drawn[m["status"]] = drawn.get(m["status"], 0) + m["n"]
    tl.drawn = sum(m["n"] for m in tl.marks)
    tl.omitted_by_status = {st: counts[st] - drawn.get(st, 0) for st in counts
                            if counts[st] > drawn.get(st, 0)}
    tl.omitted = sum(tl.omitted_by_status.values())
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


def _status_counts(totals: list[dict], exceptions: bool = False) -> list[dict]:
    """{status, n, share} per status; with accepted exceptions in the run, FAIL and WARN count
    the findings no exception covers and an EXCEPTED row the ones it does (the rows add up)."""
    all_n = sum(t["n"] for t in totals)
    out = []
    for status in STATUSES:
        n = sum(t["n"] - t.get("excepted", 0) for t in totals if t["status"] == status)
        out.append({"status": status, "n": n, "share": n / all_n if all_n else 0.0})
    if exceptions:
        n = sum(t.get("excepted", 0) for t in totals)
        out.insert(2, {"status": "EXCEPTED", "n": n, "share": n / all_n if all_n else 0.0})
    return out


def _issues(groups: list[dict], ordered: list[dict], failing_total: int):
    """Groups (criticality, verdict severity, count order) by verdict, FAIL verdicts first and
    the biggest first within a status: every FAIL and WARN verdict with actions no accepted
    exception covers; the few biggest FAIL groups that make up most FAIL actions; and the
    excepted groups, listed apart as EXCEPTED."""
    by_verdict = {t["verdict"]: {**t, "n": t["n"] - t.get("excepted", 0), "groups": []}
                  for t in ordered if t["status"] in ("FAIL", "WARN")
                  and t["n"] > t.get("excepted", 0)}
    excepted = []
    for g in groups:
        approval = g.pop("approval") or {}
        g.update(approval_id=approval.get("approval_id"), match_via=approval.get("via"),
                 gap_seconds=approval.get("gap"))
        if g["exception"] is not None:      # listed as EXCEPTED, never dropped
            g["exception_until"] = until(g.pop("exception_expires"))
            excepted.append(g)
            continue
        v = by_verdict.setdefault(g["verdict"], {"verdict": g["verdict"], "status": g["status"],
                                                 "n": 0, "groups": []})
        v["groups"].append(g)
        v["issues"] = g.get("verdict_issues", len(v["groups"]))
    for v in by_verdict.values():     # the worst N are listed; how many more there are
        v["issues"] = max(v.get("issues", 0), len(v["groups"]))
        v["more"] = v["issues"] - len(v["groups"])
    verdicts = sorted(by_verdict.values(), key=lambda v: (v["status"] != "FAIL", -v["n"]))
    top, covered = [], 0
    # the biggest FAIL issues no exception covers (groups come in criticality order)
    for g in sorted((g for v in verdicts for g in v["groups"] if g["status"] == "FAIL"),
                    key=lambda g: -g["n"]):
        if len(top) >= TOP_FAIL or covered >= TOP_FAIL_SHARE * failing_total:
            break
        top.append(g)
        covered += g["n"]
    return verdicts, top, covered, excepted


def _account_counts(row: dict | None) -> dict | None:
    """An account's actions per status from its row of the accounts table (no other scan)."""
    if row is None:
        return None
    # an excepted finding keeps its status on the timeline
    warn = row["warn"] + row["excepted"] - row["excepted_fail"]
    fail = row["fail"] + row["excepted_fail"]
    counts = {"PASS": row["pass"], "WARN": warn, "FAIL": fail,
              "INFO": row["total"] - row["pass"] - warn - fail}
    return {status: n for status, n in counts.items() if n}


def gap_report_context(store: Store, run_id: int | None = None,
                       links=None) -> GapReportContext:
    """`links`: the scope pages written beside the report (a bundle's); without them names are
    plain text, so a report alone has no link that leads nowhere."""
    run_id = queries.resolve_run(store, run_id)
    run = queries.run_info(store, run_id)
    previous = queries.previous_run(store, run_id)
    rg.load_groups(store, [run_id, previous])     # counts from the groups, not the findings
    start, end = run["period_start"], run["period_end"]
    if start is None or end is None:
        first, last = rg.period(store, run_id)
        start, end = start or first, end or last
    totals = rg.verdict_totals(store, run_id)
    by_verdict = {t["verdict"]: t for t in totals}
    ordered = [by_verdict.get(v, {"verdict": v, "status": s, "n": 0, "excepted": 0})
               for v, s in VERDICTS.items()]
    accounts = rg.accounts(store, run_id, 200)
    # FAIL actions no accepted exception covers (the excepted ones are counted apart)
    failing_total = sum(t["n"] - t["excepted"] for t in totals if t["status"] == "FAIL")
    groups = rg.issue_groups(store, run_id, previous, ISSUE_LIMIT)
    issue_verdicts, top_fail, top_actions, excepted = _issues(groups, ordered, failing_total)
    accepted = run_exceptions(store, run_id)
    attempts = rg.failed_attempts(store, run_id)
    width = TIMELINE_WIDTH
    timelines = []
    if start and end:
        # accounts with sequences first (their sequences are drawn), then the most failing
        chosen = [a for (a, _) in store.query(SEQUENCE_ACCOUNTS_SQL, [run_id, TIMELINE_ACCOUNTS])]
        chosen += [a["account"] for a in accounts if a["fail"] and a["account"] not in chosen]
        listed = {a["account"]: a for a in accounts}
        chosen = chosen[:TIMELINE_ACCOUNTS]
        counts = {acc: _account_counts(listed.get(acc)) or rg.account_status(store, run_id, acc)
                  for acc in chosen}
        span = max((end - start).total_seconds(), 1.0)
        stored = rg.stored_timeline(store, run_id, start.timestamp(), span, width,
                                    TIMELINE_BIN_ABOVE)
        binned = {acc for acc in chosen if stored and sum(counts[acc].values())
                  > TIMELINE_BIN_ABOVE}      # read from the run's bins, not its actions
        scratch = {"run_id": run_id, "accounts": [a for a in chosen if a not in binned],
                   "severities": list(SEVERITIES)}
        for statement in TIMELINE_SCRATCH_SQL:
            store.query(statement, {k: v for k, v in scratch.items() if f"${k}" in statement})
        for acc in chosen:
            timelines.append(_timeline(store, run_id, acc, counts[acc], start, end, width,
                                       acc in binned))
        store.query("DROP TABLE IF EXISTS timeline_actions; DROP TABLE IF EXISTS timeline_flags")
    rows = worst_detections(store, run_id, RISKY_LIMIT)
    risky, risky_muted = risky_groups(rows)
    counts: dict[str, int] = {}
    for t in queries.detection_totals(store, run_id):
        counts[t["review"]] = counts.get(t["review"], 0) + t["n"]
    return GapReportContext(
        title="pamcorr gap report", generated=now_utc(), tool_version=__version__, run=run,
        period_start=start, period_end=end, sources=queries.source_counts(store),
        totals=ordered, total_findings=sum(t["n"] for t in totals), accounts=accounts,
        kinds=rg.kinds(store, run_id),
        failing_total=failing_total, status_counts=_status_counts(totals, bool(accepted)),
        top_fail=top_fail, top_fail_actions=top_actions, issue_verdicts=issue_verdicts,
        issues_total=sum(v["issues"] for v in issue_verdicts), issues_limit=ISSUE_LIMIT,
        issues_capped=any(v["more"] for v in issue_verdicts),
        previous_run=queries.run_info(store, previous) if previous else None,
        changes=rg.issue_changes(store, run_id, previous) if previous else None,
        axis=_axis(start, end, width) if start and end else [],
        quarantine=store.query_dicts(QUARANTINE_SQL),
        quarantined_total=store.scalar("SELECT count(*) FROM quarantine"),
        timelines=timelines, checks=store.query_dicts(CHECKS_SQL, [run_id]),
        checks_total=queries.check_count(store, run_id),
        failed_attempts=attempts[:200], failed_attempts_total=sum(a["n"] for a in attempts),
        frameworks=FRAMEWORKS, descriptions=DESCRIPTIONS,
        verdict_order=list(VERDICTS), svg_width=width, risky=risky, risky_muted=risky_muted,
        risky_total=sum(counts.values()), risky_shown=len(rows), risky_counts=counts,
        previous_note=(queries.period_note(queries.run_info(store, previous),
                                           run["period_start"], run["period_end"])
                       if previous else None),
        trend=trend(store, run_id), links=links,
        source_coverage=source_coverage(store, run["period_start"], run["period_end"]),
        exceptions=accepted, excepted=excepted,
        excepted_total=sum(t["excepted"] for t in totals),
        integrity=integrity_recorded(store, run["period_start"], run["period_end"]),
        **_hygiene(store, run_id))


def integrity_recorded(store: Store, start, end) -> dict | None:
    """The input-integrity pass recorded for the run's period, else the one over all records."""
    from correlate.integrity.checks import recorded
    return recorded(store, start, end) or recorded(store, None, None)


def _hygiene(store: Store, run_id: int) -> dict:
    """The Approval hygiene section's part of the context."""
    counts = queries.hygiene_counts(store, run_id)
    rows = hygiene_rows(store, run_id, limit=HYGIENE_LIMIT)
    for r in rows:
        r["evidence"] = json.loads(r["evidence"]) if r["evidence"] else {}
    return {"hygiene": counts, "hygiene_rows": rows,
            "hygiene_total": sum(c["n"] for c in counts)}


def write_gap_report(store: Store, path: Path, run_id: int | None = None, links=None) -> Path:
    ctx = gap_report_context(store, run_id, links)
    return write_atomic(path, render("gaps.html", {"r": ctx}))
