"""Incident scoping: everything on record for one identity, one approval or one target in one
timeline.

The context is read from the store: approvals, actions with the verdict of the latest run that
judged them, sessions, cited tickets and their transitions. No verdict logic lives here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from correlate import __version__, queries
from correlate.clock import now_utc
from correlate.detect.rules import SEVERITIES
from correlate.findings import VERDICTS
from correlate.store import Store
from reports.export import iso
from reports.gaps import FRAMEWORKS
from reports.render import render, write_atomic

ACTION_LIMIT = 5000
SVG_MARKS = 2000
SVG_WIDTH = 900
NOT_JUDGED = "not judged"
COLOURS = {"PASS": "#17663a", "WARN": "#d9a400", "FAIL": "#b0122b", NOT_JUDGED: "#8a8f9c",
           "INFO": "#8a8f9c"}

TABLE_COLUMNS_SQL = """
SELECT column_name FROM information_schema.columns WHERE table_name = ?
"""

IDENTITIES_SQL = """
SELECT DISTINCT lower(identity) FROM identities
WHERE alias_norm = lower($name) OR lower(identity) = lower($name)
"""

ALIASES_SQL = "SELECT DISTINCT alias_norm FROM identities WHERE list_contains($ids, lower(identity))"

APPROVAL_COLS = """source, approval_id, account, target, start_ts, end_ts, ticket, requester,
       approver, kind, status, revoked_at, window_end AS effective_end"""

APPROVALS_BY_NAMES_SQL = f"""
SELECT {APPROVAL_COLS} FROM approval_windows
WHERE (list_contains($names, lower(account)) OR list_contains($names, lower(requester))
       OR list_contains($names, lower(approver)))
  AND ($start IS NULL OR end_ts >= $start) AND ($end IS NULL OR start_ts < $end)
ORDER BY start_ts, approval_id
"""

APPROVAL_BY_ID_SQL = f"""
SELECT {APPROVAL_COLS} FROM approval_windows WHERE approval_id = $approval_id ORDER BY source
"""

ACTS_BY_NAMES = """
SELECT * FROM activity a
WHERE (list_contains($names, lower(a.account)) OR list_contains($names, lower(a.actor)))
  AND ($start IS NULL OR a.ts >= $start) AND ($end IS NULL OR a.ts < $end)
"""

# What was done under an approval: actions judged against it, and actions in its window by its
# account on its target (a glob target matches as the engine matches it).
ACTS_BY_APPROVAL = """
SELECT * FROM activity a
WHERE a.act_id IN (
    SELECT act_id FROM findings WHERE approval_id = $approval_id
                                  AND ($run_id IS NULL OR run_id = $run_id)
    UNION ALL      -- two selective sets, not one OR over every action (3-5x faster at 1e6)
    SELECT x.act_id FROM activity x JOIN approval_windows p
      ON p.approval_id = $approval_id AND lower(x.account) = lower(p.account)
     AND (lower(x.target) = lower(p.target) OR lower(x.target) GLOB lower(p.target))
     AND x.ts >= p.start_ts AND x.ts <= p.window_end)
  AND ($start IS NULL OR a.ts >= $start) AND ($end IS NULL OR a.ts < $end)
"""

# The verdict of the newest finished run that judged each action (or of --run N only).
_JUDGED = """
), judged AS (
    SELECT f.* FROM findings f JOIN runs r USING (run_id)
    SEMI JOIN acts USING (act_id)
    WHERE r.finished IS NOT NULL AND ($run_id IS NULL OR f.run_id = $run_id)
    QUALIFY row_number() OVER (PARTITION BY f.act_id ORDER BY f.run_id DESC) = 1
), dets AS (      -- what the detection rules flagged in the run that judged the action
    SELECT d.act_id,
           list({'rule_id': d.rule_id, 'title': r.title, 'class': r.class,
                 'severity': r.severity, 'review': d.review, 'muted_by': d.muted_by,
                 'sequence_id': d.sequence_id, 'position': d.position}
                ORDER BY list_position($severities, r.severity) DESC, d.rule_id) AS detections
    FROM detections d JOIN judged j ON j.act_id = d.act_id AND j.run_id = d.run_id
    JOIN detection_rules r ON r.run_id = d.run_id AND r.rule_id = d.rule_id
    GROUP BY d.act_id
)
SELECT acts.source, acts.event_id, acts.ts, acts.account, acts.target, acts.action, acts.detail,
       acts.session_id, acts.actor, j.verdict, j.status, j.approval_id, j.ticket_id, j.reason,
       j.gap_seconds, j.run_id, coalesce(dets.detections, []) AS detections
FROM acts LEFT JOIN judged j USING (act_id) LEFT JOIN dets USING (act_id)
ORDER BY $fail_first AND j.status = 'FAIL' DESC, acts.ts, acts.source, acts.event_id
LIMIT $limit
"""

# A target: the names it goes by (targets.csv: name and aliases) and the groups it is in.
TARGET_NAMES_SQL = """
SELECT DISTINCT name_norm, alias_norm, grp FROM targets
WHERE name_norm = lower($name) OR alias_norm = lower($name)
"""

# What happened on a target: actions on any of its names.
ACTS_BY_TARGET = """
SELECT * FROM activity a
WHERE list_contains($hosts, lower(a.target))
  AND ($start IS NULL OR a.ts >= $start) AND ($end IS NULL OR a.ts < $end)
"""

# Approvals for a target: naming it, one of its aliases or groups, or a glob matching it (as the
# engine matches), and any approval an action on it was judged against.
APPROVALS_BY_TARGET_SQL = f"""
SELECT {APPROVAL_COLS} FROM approval_windows p
WHERE (EXISTS (SELECT 1 FROM unnest(list_append(coalesce(p.targets, []), p.target)) AS u(t),
                             unnest($grants) AS g(n)
               WHERE g.n = lower(u.t) OR g.n GLOB lower(u.t))
       OR p.approval_id IN (SELECT f.approval_id FROM findings f JOIN activity a USING (act_id)
                            WHERE list_contains($hosts, lower(a.target))
                              AND f.approval_id IS NOT NULL
                              AND ($run_id IS NULL OR f.run_id = $run_id)))
  AND ($start IS NULL OR end_ts >= $start) AND ($end IS NULL OR start_ts < $end)
ORDER BY start_ts, approval_id
"""

ACTIONS_BY_NAMES_SQL = "WITH acts AS (" + ACTS_BY_NAMES + _JUDGED
ACTIONS_BY_APPROVAL_SQL = "WITH acts AS (" + ACTS_BY_APPROVAL + _JUDGED
COUNT_BY_NAMES_SQL = "SELECT count(*) FROM (" + ACTS_BY_NAMES + ")"
COUNT_BY_APPROVAL_SQL = "SELECT count(*) FROM (" + ACTS_BY_APPROVAL + ")"
ACTIONS_BY_TARGET_SQL = "WITH acts AS (" + ACTS_BY_TARGET + _JUDGED
COUNT_BY_TARGET_SQL = "SELECT count(*) FROM (" + ACTS_BY_TARGET + ")"

TICKETS_SQL = """
SELECT ticket_id, status, opened, closed, planned_start, planned_end, assignee, source
FROM tickets WHERE list_contains($ids, ticket_id) ORDER BY ticket_id
"""

HISTORY_SQL = """
SELECT ticket_id, ts, status FROM ticket_history WHERE list_contains($ids, ticket_id)
ORDER BY ticket_id, ts, status
"""


@dataclass
class ScopeContext:
    """Everything scope.html (and --format json) shows; the template only lays it out."""

    title: str
    subject: str
    generated: datetime
    tool_version: str
    names: list[str]
    identity_note: str
    period_start: datetime | None
    period_end: datetime | None
    run_id: int | None
    approval: list[dict]                 # the approval rows when scoping --approval
    approvals: list[dict]
    actions: list[dict]
    actions_total: int
    sessions: list[dict]
    tickets: list[dict]
    events: list[dict]
    frameworks: tuple = FRAMEWORKS
    sources: list[dict] = field(default_factory=list)
    quarantined_total: int = 0
    verdicts: list[str] = field(default_factory=list)
    svg: dict = field(default_factory=dict)
    detections_total: int = 0            # detection rows on the listed actions
    back: str | None = None              # the gap report this page belongs to (a bundle's)
    fail_first: bool = False             # a cut list holds every FAIL action first


def _has_table(store: Store, name: str) -> set[str]:
    return {c for (c,) in store.query(TABLE_COLUMNS_SQL, [name])}


def identity_names(store: Store, name: str) -> tuple[list[str], str]:
    """The lower-cased names one identity goes by, and a note on how they were found."""
    cols = _has_table(store, "identities")
    if not cols:
        return [name.lower()], "no identities table: matching this name only (case-insensitive)"
    if not {"alias_norm", "identity"} <= cols:
        return [name.lower()], "identities table without alias_norm/identity: name only"
    ids = {r for (r,) in store.query(IDENTITIES_SQL, {"name": name})} | {name.lower()}
    aliases = {r for (r,) in store.query(ALIASES_SQL, {"ids": sorted(ids)})}
    names = sorted(ids | aliases)
    note = ("aliases from the identities table: " + ", ".join(names) if len(names) > 1
            else "no aliases in the identities table")
    return names, note


def target_names(store: Store, name: str) -> tuple[list[str], list[str], str]:
    """A target's lower-cased host names (with its aliases), the names an approval may grant it
    by (those and its groups), and a note on how they were found."""
    hosts, groups = {name.lower()}, set()
    for host, alias, grp in store.query(TARGET_NAMES_SQL, {"name": name}):
        hosts |= {n for n in (host, alias) if n}
        groups |= {grp.lower()} if grp else set()
    note = ("aliases from the targets table: " + ", ".join(sorted(hosts)) if len(hosts) > 1
            else "no aliases in the targets table")
    if groups:
        note += "; groups: " + ", ".join(sorted(groups))
    return sorted(hosts), sorted(hosts | groups), note


def _roles(a: dict, names: list[str]) -> list[str]:
    roles = []
    if (a["account"] or "").lower() in names:
        roles.append("account")
    if (a["requester"] or "").lower() in names:
        roles.append("requested")
    if (a["approver"] or "").lower() in names:
        roles.append("approved")
    return roles


def _sessions(actions: list[dict]) -> list[dict]:
    rank = {"FAIL": 3, "WARN": 2, NOT_JUDGED: 1, "PASS": 0, "INFO": 0}
    groups: dict[str, dict] = {}
    for a in actions:
        if not a["session_id"]:
            continue
        g = groups.setdefault(a["session_id"], {"session_id": a["session_id"], "first": a["ts"],
                                                "last": a["ts"], "n": 0, "targets": set(),
                                                "worst": "PASS"})
        g["last"], g["n"] = a["ts"], g["n"] + 1
        g["targets"].add(a["target"])
        if rank[a["status"]] > rank[g["worst"]]:
            g["worst"] = a["status"]
    return [{**g, "targets": sorted(g["targets"])} for g in groups.values()]


def _events(approvals, actions, tickets) -> list[dict]:
    ev = []
    for a in approvals:
        decided = "denied" if a["status"] == "denied" else "approved"
        parts = [f"{role} by {a[col]}" for role, col in (("requested", "requester"),
                                                         (decided, "approver")) if a[col]]
        if a["status"] == "denied":    # never opened: say so, not "opens ... (denied)"
            text = (f"approval {a['approval_id']} was denied ({a['kind']}): it covers nothing; "
                    f"asked for {a['account']} on {a['target']} until {iso(a['end_ts'])}")
        else:
            text = (f"approval {a['approval_id']} opens: {a['account']} on {a['target']} "
                    f"until {iso(a['end_ts'])} ({a['kind']}, {a['status']})")
        ev.append({"ts": a["start_ts"], "kind": "approval", "verdict": "-", "status": "",
                   "text": text + (f"; {', '.join(parts)}" if parts else "")})
        if a["revoked_at"]:
            ev.append({"ts": a["revoked_at"], "kind": "revocation", "verdict": "-", "status": "",
                       "text": f"approval {a['approval_id']} revoked"})
    for x in actions:
        by = f" (by {x['actor']})" if x["actor"] and x["actor"] != x["account"] else ""
        what = f"{x['action'] or ''} {x['detail'] or ''}".strip()
        ev.append({"ts": x["ts"], "kind": "action", "verdict": x["verdict"], "status": x["status"],
                   "text": f"{x['account']}{by} on {x['target']}: {what}",
                   "approval_id": x["approval_id"], "ticket_id": x["ticket_id"],
                   "session_id": x["session_id"], "detections": x["detections"]})
    for t in tickets:
        for h in t["transitions"]:
            ev.append({"ts": h["ts"], "kind": "ticket", "verdict": "-", "status": "",
                       "text": f"ticket {t['ticket_id']}: {h['status']}"})
    for e in ev:
        e.setdefault("approval_id", None)
        e.setdefault("ticket_id", None)
        e.setdefault("session_id", None)
        e.setdefault("detections", [])
    return sorted(ev, key=lambda e: (e["ts"], e["kind"] != "approval", e["text"]))


def _svg(start, end, approvals, actions, tickets) -> dict:
    """Windows as bars, tickets as spans, actions as marks, in SVG coordinates."""
    if start is None or end is None or end <= start:
        return {"width": SVG_WIDTH, "height": 0, "bars": [], "spans": [], "marks": [], "ticks": []}
    span = (end - start).total_seconds()

    def x(ts):
        return round(max(0.0, min(1.0, (ts - start).total_seconds() / span)) * SVG_WIDTH, 1)
    bars = [{"x": x(a["start_ts"]), "w": max(x(a["effective_end"]) - x(a["start_ts"]), 2.0),
             "y": 14 + (i % 6) * 12, "label": f"{a['approval_id']} {a['target']}",
             "kind": a["kind"], "start": a["start_ts"], "end": a["effective_end"]}
            for i, a in enumerate(approvals)]
    spans = []
    for i, t in enumerate(tickets):
        t0 = t["opened"] or (t["transitions"][0]["ts"] if t["transitions"] else None)
        if t0 is None:
            continue
        t1 = t["closed"] or (t["transitions"][-1]["ts"] if t["transitions"] else end)
        spans.append({"x": x(t0), "w": max(x(max(t1, t0)) - x(t0), 2.0), "y": 96 + (i % 4) * 10,
                      "label": f"ticket {t['ticket_id']} ({t['status'] or 'not on record'})"})
    # flagged actions first, so they are always drawn; their detections as a dot above
    marks = [{"x": x(a["ts"]), "colour": COLOURS[a["status"]], "status": a["status"],
              "label": f"{iso(a['ts'])} {a['target']}: {a['verdict']}"
                       + "".join(f"; {d['rule_id']} ({d['severity']}, {d['review']})"
                                 for d in a["detections"]),
              "review": _worst_review(a["detections"])}
             for a in sorted(actions, key=lambda a: (not a["detections"],
                                                     a["status"] == "PASS"))[:SVG_MARKS]]
    ticks = [{"x": round(SVG_WIDTH * i / 4, 1),
              "label": (start + (end - start) * i / 4).strftime("%Y-%m-%d %H:%M")}
             for i in range(5)]
    return {"width": SVG_WIDTH, "height": 180, "bars": bars, "spans": spans, "marks": marks,
            "ticks": ticks, "omitted": max(0, len(actions) - SVG_MARKS)}


def _worst_review(detections: list[dict]) -> str | None:
    order = {"FAIL": 0, "needs_review": 1, "MUTED": 2}
    return min((d["review"] for d in detections), key=order.__getitem__, default=None)


def scope_context(store: Store, account: str | None = None, approval_id: str | None = None,
                  start: datetime | None = None, end: datetime | None = None,
                  run_id: int | None = None, target: str | None = None,
                  limit: int = ACTION_LIMIT, fail_first: bool = False) -> ScopeContext:
    """Everything on record for `account` (with its aliases), for the approval `approval_id`, or
    on `target` (with its aliases): what happened on that host. At most `limit` actions are
    listed: the earliest, or with `fail_first` the FAIL ones and then the earliest others."""
    if sum(x is not None for x in (account, approval_id, target)) != 1:
        raise ValueError("give an account, an approval id or a target")
    if run_id is not None:
        queries.resolve_run(store, run_id)
    params = {"start": start, "end": end, "run_id": run_id, "limit": limit,
              "fail_first": fail_first,
              "severities": list(SEVERITIES)}
    approval: list[dict] = []
    if account is not None:
        names, note = identity_names(store, account)
        approvals = store.query_dicts(APPROVALS_BY_NAMES_SQL, {"names": names, "start": start,
                                                               "end": end})
        actions = store.query_dicts(ACTIONS_BY_NAMES_SQL, {**params, "names": names})
        total = store.scalar(COUNT_BY_NAMES_SQL, {"names": names, "start": start, "end": end})
        subject = account
    elif target is not None:
        names, grants, note = target_names(store, target)
        approvals = store.query_dicts(APPROVALS_BY_TARGET_SQL, {
            "hosts": names, "grants": grants, "run_id": run_id, "start": start, "end": end})
        actions = store.query_dicts(ACTIONS_BY_TARGET_SQL, {**params, "hosts": names})
        total = store.scalar(COUNT_BY_TARGET_SQL, {"hosts": names, "start": start, "end": end})
        subject = f"target {target}"
    else:
        approval = store.query_dicts(APPROVAL_BY_ID_SQL, {"approval_id": approval_id})
        approvals = approval
        names = sorted({a["account"].lower() for a in approval})
        note = f"approval {approval_id}" + ("" if approval else " is not on record")
        actions = store.query_dicts(ACTIONS_BY_APPROVAL_SQL, {**params, "approval_id": approval_id})
        total = store.scalar(COUNT_BY_APPROVAL_SQL, {"approval_id": approval_id, "run_id": run_id,
                                                     "start": start, "end": end})
        subject = f"approval {approval_id}"
    if fail_first:
        actions.sort(key=lambda x: (x["ts"], x["source"], x["event_id"]))
    for a in approvals:
        a["roles"] = ["target"] if target is not None else _roles(a, names)
    for x in actions:
        if x["verdict"] is None:
            x["verdict"], x["status"] = NOT_JUDGED, NOT_JUDGED
    ids = sorted({a["ticket"] for a in approvals if a["ticket"]}
                 | {x["ticket_id"] for x in actions if x["ticket_id"]})
    found = {t["ticket_id"]: t for t in store.query_dicts(TICKETS_SQL, {"ids": ids})}
    history = store.query_dicts(HISTORY_SQL, {"ids": ids})
    tickets = []
    for tid in ids:
        t = found.get(tid) or {"ticket_id": tid, "status": None, "opened": None, "closed": None,
                               "planned_start": None, "planned_end": None, "assignee": None,
                               "source": None}
        tickets.append({**t, "transitions": [h for h in history if h["ticket_id"] == tid]})
    times = ([a["start_ts"] for a in approvals] + [a["effective_end"] for a in approvals]
             + [x["ts"] for x in actions])
    lo, hi = start or (min(times) if times else None), end or (max(times) if times else None)
    return ScopeContext(
        title=f"pamcorr scope: {subject}", subject=subject, generated=now_utc(),
        tool_version=__version__, names=names, identity_note=note, period_start=start,
        period_end=end, run_id=run_id or queries.latest_run(store), approval=approval,
        approvals=approvals, actions=actions, actions_total=total or 0,
        sessions=_sessions(actions), tickets=tickets, events=_events(approvals, actions, tickets),
        sources=queries.source_counts(store),
        quarantined_total=store.scalar("SELECT count(*) FROM quarantine") or 0,
        verdicts=[v for v in list(VERDICTS) + [NOT_JUDGED] if any(x["verdict"] == v
                                                                    for x in actions)],
        svg=_svg(lo, hi, approvals, actions, tickets),
        detections_total=sum(len(x["detections"]) for x in actions), fail_first=fail_first)


def scope_json(ctx: ScopeContext) -> str:
    """The context as JSON (without the drawing)."""
    data = asdict(ctx)
    for key in ("svg", "frameworks"):
        data.pop(key)
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False,
                      default=lambda v: iso(v) if isinstance(v, datetime) else str(v)) + "\n"


def write_scope(ctx: ScopeContext, path: Path, fmt: str = "html") -> Path:
    text = scope_json(ctx) if fmt == "json" else render("scope.html", {"r": ctx})
    return write_atomic(Path(path), text)
