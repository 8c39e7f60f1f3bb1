"""Did every source send data: for each source that ever sent activity, approvals or tickets, its
rows in the report's period and, when it sent none, when it was last seen (set-based SQL)."""

from __future__ import annotations

from datetime import datetime

from correlate.store import Store

# What counts as data in a period, per kind: an action at ts; an approval starting (or decided,
# revoked) then; a ticket opened or changing state then. [start, end), end exclusive; a side
# that is NULL is open (a run without a period judged everything on record).
SOURCE_COVERAGE_SQL = """
WITH seen AS (
    SELECT source, 'activity' AS kind, ts FROM activity
    UNION ALL SELECT source, 'approvals', start_ts FROM approvals
    UNION ALL SELECT source, 'approvals', revoked_at FROM approvals WHERE revoked_at IS NOT NULL
    UNION ALL SELECT source, 'tickets', opened FROM tickets
    UNION ALL SELECT source, 'tickets', ts FROM ticket_history
)
SELECT source, kind,
       count(*) FILTER (WHERE ($start IS NULL OR ts >= $start)
                          AND ($end IS NULL OR ts < $end)) AS rows,
       max(ts) FILTER (WHERE ts < $start) AS last_before,
       min(ts) FILTER (WHERE ts >= $end) AS first_after
FROM seen GROUP BY source, kind
ORDER BY rows = 0 DESC, source, list_position(['activity', 'approvals', 'tickets'], kind)
"""


def source_coverage(store: Store, start: datetime | None, end: datetime | None) -> list[dict]:
    """[{source, kind, rows, last_before, first_after, silent, label, seen}] for [start, end)
    (None: open on that side), silent sources first. `label`: the source, with its kind unless
    activity; `seen`: when a silent source was last (or next) seen, a UTC date."""
    rows = store.query_dicts(SOURCE_COVERAGE_SQL, {"start": start, "end": end})
    for r in rows:
        r["silent"] = r["rows"] == 0
        r["label"] = r["source"] if r["kind"] == "activity" else f"{r['source']} {r['kind']}"
        if r["last_before"] is not None:
            r["seen"] = f"last seen {r['last_before']:%Y-%m-%d}"
        elif r["first_after"] is not None:
            r["seen"] = f"none before; first seen {r['first_after']:%Y-%m-%d}"
        else:
            r["seen"] = ""
    return rows
