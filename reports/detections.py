"""A run's detections (correlate/detect) read for the outputs: one query, worst first, and the
CSV (formula-safe), JSON lines and table writers. No detection or verdict logic lives here."""

from __future__ import annotations

from datetime import datetime
from typing import IO, Iterable

from correlate import queries
from correlate.detect.rules import CLASSES, SEVERITIES
from correlate.errors import printable
from correlate.store import Store
from reports.export import formula_safe, iso, write_aligned, write_csv_rows, write_dict_lines

REVIEWS = ("FAIL", "needs_review", "MUTED")

# What every output writes, in this order (the CLI, the bundle's CSV and JSON lines).
COLUMNS = ("event_id", "ts", "account", "target", "source", "action", "detail", "rule_id", "title",
           "class", "severity", "attack", "verdict", "status", "approval_id", "ticket_id",
           "ticket_title", "sequence_id", "position", "review", "muted", "muted_by", "session_id",
           "actor", "run_id", "issue_key")

TABLE_COLUMNS = ("ts", "review", "severity", "rule_id", "account", "target", "verdict",
                 "ticket_id", "sequence_id", "detail")


def _columns(d: str) -> str:
    """The SELECT list of a detection row, `d` the detections' alias; `a`, `r`, `f`, `t`: its
    action, rule, finding and ticket (DETECTIONS_SQL and WORST_SQL give the same columns)."""
    return f"""
SELECT a.event_id, a.ts, a.account, a.target, a.source, a.action, a.detail, {d}.rule_id, r.title,
       r.class, r.severity, r.attack, f.verdict, f.status, f.approval_id, f.ticket_id,
       t.title AS ticket_title, {d}.sequence_id, {d}.position, {d}.review,
       {d}.review = 'MUTED' AS muted, {d}.muted_by, a.session_id, a.actor, {d}.run_id,
       r.description, r.kind,
       {queries.issue_key_sql("a.account", "a.target", "f.verdict", d + ".rule_id")} AS issue_key
"""


# One row per (action, rule). Worst first: FAIL, then needs_review, then MUTED; within each,
# critical down to info; then time. A sequence's member rows share sequence_id and keep their
# position. $severities is SEVERITIES (info .. critical): a rule's rank is its place in it.
DETECTIONS_SQL = _columns("d") + """FROM detections d
JOIN detection_rules r ON r.run_id = d.run_id AND r.rule_id = d.rule_id
JOIN activity a ON a.act_id = d.act_id
LEFT JOIN findings f ON f.run_id = d.run_id AND f.act_id = d.act_id
LEFT JOIN tickets t ON t.ticket_id = f.ticket_id
WHERE d.run_id = $run_id
  AND ($class IS NULL OR r.class = $class)
  AND list_position($severities, r.severity) >= $min_rank
  AND ($review IS NULL OR d.review = $review)
  AND ($account IS NULL OR lower(a.account) = lower($account) OR lower(a.actor) = lower($account))
  AND ($start IS NULL OR a.ts >= $start) AND ($end IS NULL OR a.ts < $end)
ORDER BY CASE d.review WHEN 'FAIL' THEN 0 WHEN 'needs_review' THEN 1 ELSE 2 END,
         list_position($severities, r.severity) DESC, a.ts, a.source, a.event_id, d.rule_id,
         d.sequence_id, d.position
LIMIT $limit
"""


# DETECTIONS_SQL's first $limit rows of a run, without joining every detection to its action
# and finding (the gap report at 1e7, issue 11): only the (review, severity) classes the first
# $limit rows fall in are joined to activity for their order; the chosen rows' actions are then
# read by rowid and their findings joined. Same rows, same order (tests/test_run_groups.py).
WORST_ROWS_SQL = """
CREATE OR REPLACE TEMP TABLE worst_detections AS
WITH d AS (
    SELECT d.*, CASE d.review WHEN 'FAIL' THEN 0 WHEN 'needs_review' THEN 1 ELSE 2 END AS rv,
           list_position($severities, r.severity) AS sv
    FROM detections d JOIN detection_rules r ON r.run_id = d.run_id AND r.rule_id = d.rule_id
    WHERE d.run_id = $run_id
), classes AS (
    SELECT rv, sv, count(*) AS n,
           sum(count(*)) OVER (ORDER BY rv, sv DESC ROWS UNBOUNDED PRECEDING) AS upto
    FROM d GROUP BY rv, sv
)
SELECT d.*, a.rowid AS arow, a.ts, a.source, a.event_id
FROM d JOIN (SELECT rv, sv FROM classes WHERE upto - n < $limit) c USING (rv, sv)
JOIN activity a ON a.act_id = d.act_id
ORDER BY d.rv, d.sv DESC, a.ts, a.source, a.event_id, d.rule_id, d.sequence_id, d.position
LIMIT $limit
"""

WORST_SQL = _columns("w") + """FROM worst_detections w
JOIN detection_rules r ON r.run_id = w.run_id AND r.rule_id = w.rule_id
JOIN (SELECT rowid AS arow, * FROM activity
      WHERE rowid IN (SELECT arow FROM worst_detections)) a USING (arow)
LEFT JOIN (SELECT * FROM findings WHERE run_id = $run_id
           AND act_id IN (SELECT act_id FROM worst_detections)) f ON f.act_id = w.act_id
LEFT JOIN tickets t ON t.ticket_id = f.ticket_id
ORDER BY w.rv, w.sv DESC, w.ts, w.source, w.event_id, w.rule_id, w.sequence_id, w.position
"""


def worst_detections(store: Store, run_id: int, limit: int) -> list[dict]:
    """detections(store, run_id, limit=limit), read without a pass over every detection's
    action and finding."""
    params = {"run_id": run_id, "severities": list(SEVERITIES), "limit": limit}
    store.query(WORST_ROWS_SQL, params)
    rows = store.query_dicts(WORST_SQL, {"run_id": run_id})
    store.query("DROP TABLE IF EXISTS worst_detections")
    for r in rows:
        r["attack"] = list(r["attack"] or [])
    return rows


def severity_rank(severity: str | None) -> int:
    """1 (info) .. 5 (critical); 0 for None (every severity)."""
    if severity is None:
        return 0
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}, not {severity!r}")
    return SEVERITIES.index(severity) + 1


def detections_params(store: Store, run_id: int | None = None, cls: str | None = None,
                      severity: str | None = None, review: str | None = None,
                      account: str | None = None, start: datetime | None = None,
                      end: datetime | None = None, limit: int | None = None) -> dict:
    """DETECTIONS_SQL's parameters (the run resolved: the latest by default), checked."""
    run_id = queries.resolve_run(store, run_id)
    if cls is not None and cls not in CLASSES:
        raise ValueError(f"class must be one of {', '.join(CLASSES)}, not {cls!r}")
    if review is not None and review not in REVIEWS:
        raise ValueError(f"review must be one of {', '.join(REVIEWS)}, not {review!r}")
    return {"run_id": run_id, "class": cls, "severities": list(SEVERITIES),
            "min_rank": severity_rank(severity), "review": review, "account": account,
            "start": start, "end": end, "limit": limit if limit is not None else 2**62}


def detections(store: Store, run_id: int | None = None, cls: str | None = None,
               severity: str | None = None, review: str | None = None,
               account: str | None = None, start: datetime | None = None,
               end: datetime | None = None, limit: int | None = None) -> list[dict]:
    """The run's detections (latest run by default), worst first; `severity` means that or worse."""
    rows = store.query_dicts(DETECTIONS_SQL, detections_params(
        store, run_id, cls, severity, review, account, start, end, limit))
    for r in rows:
        r["attack"] = list(r["attack"] or [])
    return rows


def group_detections(rows: Iterable[dict]) -> list[list[dict]]:
    """Event detections one by one; a sequence's member rows together (in position order), at
    the place of its first row."""
    groups: list[list[dict]] = []
    seqs: dict[str, list[dict]] = {}
    for r in rows:
        if r["sequence_id"] is None:
            groups.append([r])
        elif r["sequence_id"] in seqs:
            seqs[r["sequence_id"]].append(r)
        else:
            seqs[r["sequence_id"]] = [r]
            groups.append(seqs[r["sequence_id"]])
    for members in seqs.values():
        members.sort(key=lambda r: (r["position"] or 0, r["ts"]))
    return groups


def _cell(value) -> str:
    if isinstance(value, (list, tuple)):
        value = " ".join(map(str, value))
    if isinstance(value, bool):
        value = "true" if value else "false"
    return formula_safe(value)


def write_csv(rows: Iterable[dict], out: IO[str]) -> int:
    """Formula-safe CSV of COLUMNS (ATT&CK ids space-separated), "\n" line ends."""
    return write_csv_rows(rows, COLUMNS, out, cell=_cell)


def row_dict(r: dict) -> dict:
    """COLUMNS of one row as JSON-ready values (ts as ISO 8601 UTC)."""
    d = {c: r[c] for c in COLUMNS}
    d["ts"] = iso(r["ts"])
    return d


def write_jsonl(rows: Iterable[dict], out: IO[str]) -> int:
    return write_dict_lines(map(row_dict, rows), out)


def write_table(rows: Iterable[dict], out: IO[str]) -> int:
    """A plain table for a terminal: control characters shown escaped, long commands cut."""
    def show(r, c):
        text = printable(_cell(r[c]))
        if c == "sequence_id" and r[c]:
            text = f"{text[:8]}#{r['position']}"
        return text if len(text) <= 60 else text[:57] + "..."
    return write_aligned(TABLE_COLUMNS, [[show(r, c) for c in TABLE_COLUMNS] for r in rows], out)


WRITERS = {"csv": write_csv, "jsonl": write_jsonl, "table": write_table}
