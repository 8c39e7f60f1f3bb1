"""Store what a ticket fetch returned: tickets, history, raw evidence, and what could not be verified.

Fetching (talking to Jira or ServiceNow) lives in connectors/*_fetch.py; this module only writes
their result into the store, so checks never call out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pandas as pd

from correlate.clock import now_utc
from correlate.store import Store

TICKET_REFS_SQL = """
SELECT DISTINCT trim(ticket) FROM approvals
WHERE ticket IS NOT NULL AND trim(ticket) <> ''
  AND ($start IS NULL OR end_ts >= $start) AND ($end IS NULL OR start_ts < $end)
ORDER BY 1
"""

TICKET_COLUMNS = ("ticket_id", "status", "opened", "closed", "planned_start", "planned_end",
                  "assignee", "reporter", "title", "components", "system", "url", "work_start",
                  "work_end")


@dataclass
class FetchSummary:
    fetch_id: int
    fetched: int
    missing: int
    failed: int
    invalid: int


def ticket_refs(store: Store, start=None, end=None) -> list[str]:
    """Ticket references cited by approvals overlapping the period."""
    return [r for (r,) in store.query(TICKET_REFS_SQL, {"start": start, "end": end})]


def _frame(rows: list[dict], columns: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.DataFrame([{c: r.get(c) for c in columns} for r in rows], columns=list(columns),
                         dtype=object)
    frame.insert(0, "n", range(len(frame)))          # arrival order: the last one wins
    return frame


TICKETS_IN = """
INSERT OR REPLACE INTO tickets (ticket_id, status, opened, closed, planned_start, planned_end,
    assignee, reporter, title, components, system, url, work_start, work_end, source)
SELECT ticket_id, status, opened::TIMESTAMPTZ, closed::TIMESTAMPTZ, planned_start::TIMESTAMPTZ,
       planned_end::TIMESTAMPTZ, assignee, reporter, title, components::VARCHAR[],
       coalesce(system, $system), url, work_start::TIMESTAMPTZ, work_end::TIMESTAMPTZ, $system
FROM fetched_tickets WHERE status IS NOT NULL AND opened IS NOT NULL
QUALIFY row_number() OVER (PARTITION BY ticket_id ORDER BY n DESC) = 1
"""

# Every reference that could not be verified, with why; a fetched ticket clears an older entry.
UNVERIFIABLE_IN = """
INSERT OR REPLACE INTO ticket_unverifiable (ticket_id, reason, detail, fetch_id)
SELECT ticket_id, reason, detail, $fetch_id FROM (
    SELECT n, ticket_id, 'ticket_unverifiable' AS reason,
           'fetched without status or created time' AS detail
    FROM fetched_tickets WHERE status IS NULL OR opened IS NULL
    UNION ALL SELECT n + 1000000000, ticket_id, reason, detail FROM unverified
)
QUALIFY row_number() OVER (PARTITION BY ticket_id ORDER BY n DESC) = 1
"""

CLEAR_UNVERIFIABLE = """
DELETE FROM ticket_unverifiable
WHERE ticket_id IN (SELECT ticket_id FROM fetched_tickets
                    WHERE status IS NOT NULL AND opened IS NOT NULL)
"""


def store_fetch(store: Store, result, system: str, url: str) -> FetchSummary:
    """Write a connectors.ticket_refs.TicketFetch into the store, in one transaction."""
    con = store.con
    unverified = ([{"ticket_id": r, "reason": "ticket_unverifiable", "detail": "not found (404)"}
                   for r in result.missing]
                  + [{"ticket_id": r, "reason": "ticket_unverifiable", "detail": why}
                     for r, why in result.failed.items()]
                  + [{"ticket_id": r, "reason": "invalid_ticket_ref",
                      "detail": "does not match the strict key pattern"} for r in result.invalid])
    frames = {
        "fetched_tickets": _frame(result.tickets, TICKET_COLUMNS),
        "fetched_history": _frame(result.history, ("ticket_id", "ts", "status")),
        "fetched_approvals": _frame(result.approvals, ("ticket_id", "approver", "state", "ts")),
        "fetched_raw": _frame([{"name": n, "sha256": hashlib.sha256(b).hexdigest(), "body": b}
                               for n, b in result.raw], ("name", "sha256", "body")),
        "unverified": _frame(unverified, ("ticket_id", "reason", "detail")),
    }
    for name, frame in frames.items():
        con.register(name, frame)
    try:
        with store.transaction():
            fetch_id = con.execute(
                "SELECT coalesce(max(fetch_id), 0) + 1 FROM ticket_fetch_log").fetchone()[0]
            con.execute("INSERT INTO ticket_fetch_log VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        [fetch_id, system, url, now_utc(), len(result.tickets),
                         len(result.missing), len(result.failed), len(result.invalid)])
            con.execute("INSERT INTO ticket_raw SELECT ?, name, sha256, body::BLOB "
                        "FROM fetched_raw ORDER BY n", [fetch_id])
            con.execute(TICKETS_IN, {"system": system})
            con.execute(CLEAR_UNVERIFIABLE)
            con.execute("INSERT OR IGNORE INTO ticket_history (ticket_id, ts, status, source) "
                        "SELECT DISTINCT ticket_id, ts::TIMESTAMPTZ, status, ? "
                        "FROM fetched_history", [system])
            con.execute("INSERT INTO ticket_approvals SELECT ticket_id, approver, state, "
                        "ts::TIMESTAMPTZ, ? FROM fetched_approvals ORDER BY n", [fetch_id])
            con.execute(UNVERIFIABLE_IN, {"fetch_id": fetch_id})
    finally:
        for name in frames:
            con.unregister(name)
    return FetchSummary(fetch_id, len(result.tickets), len(result.missing), len(result.failed),
                        len(result.invalid))
