"""Store what a ticket fetch returned: tickets, history, raw evidence, and what could not be verified.

Fetching (talking to Jira or ServiceNow) lives in connectors/*_fetch.py; this module only writes
their result into the store, so checks never call out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

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


def store_fetch(store: Store, result, system: str, url: str) -> FetchSummary:
    """Write a connectors.ticket_refs.TicketFetch into the store, in one transaction."""
    con = store.con
    with store.transaction():
        fetch_id = con.execute("SELECT coalesce(max(fetch_id), 0) + 1 FROM ticket_fetch_log").fetchone()[0]
        con.execute("INSERT INTO ticket_fetch_log VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [fetch_id, system, url, now_utc(), len(result.tickets), len(result.missing),
                     len(result.failed), len(result.invalid)])
        for name, body in result.raw:
            con.execute("INSERT INTO ticket_raw VALUES (?, ?, ?, ?)",
                        [fetch_id, name, hashlib.sha256(body).hexdigest(), body])
        for t in result.tickets:
            row = {c: t.get(c) for c in TICKET_COLUMNS}
            row["system"] = row["system"] or system
            if not row["status"] or row["opened"] is None:
                con.execute("INSERT OR REPLACE INTO ticket_unverifiable VALUES (?, ?, ?, ?)",
                            [row["ticket_id"], "ticket_unverifiable",
                             "fetched without status or created time", fetch_id])
                continue
            con.execute(f"INSERT OR REPLACE INTO tickets ({', '.join(TICKET_COLUMNS)}, source) "
                        f"VALUES ({', '.join('?' * len(TICKET_COLUMNS))}, ?)",
                        [row[c] for c in TICKET_COLUMNS] + [system])
            con.execute("DELETE FROM ticket_unverifiable WHERE ticket_id = ?", [row["ticket_id"]])
        for h in result.history:
            con.execute("INSERT OR IGNORE INTO ticket_history (ticket_id, ts, status, source) "
                        "VALUES (?, ?, ?, ?)", [h["ticket_id"], h["ts"], h["status"], system])
        for a in result.approvals:
            con.execute("INSERT INTO ticket_approvals VALUES (?, ?, ?, ?, ?)",
                        [a.get("ticket_id"), a.get("approver"), a.get("state"), a.get("ts"),
                         fetch_id])
        for ref in result.missing:
            con.execute("INSERT OR REPLACE INTO ticket_unverifiable VALUES (?, ?, ?, ?)",
                        [ref, "ticket_unverifiable", "not found (404)", fetch_id])
        for ref, why in result.failed.items():
            con.execute("INSERT OR REPLACE INTO ticket_unverifiable VALUES (?, ?, ?, ?)",
                        [ref, "ticket_unverifiable", why, fetch_id])
        for ref in result.invalid:
            con.execute("INSERT OR REPLACE INTO ticket_unverifiable VALUES (?, ?, ?, ?)",
                        [ref, "invalid_ticket_ref", "does not match the strict key pattern",
                         fetch_id])
    return FetchSummary(fetch_id, len(result.tickets), len(result.missing), len(result.failed),
                        len(result.invalid))
