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

# References exactly as the approvals cite them: never trimmed or rewritten (a reference with a
# blank in it fails the strict pattern and is stored as invalid_ticket_ref).
TICKET_REFS_SQL = """
SELECT DISTINCT ticket FROM approvals
WHERE ticket IS NOT NULL AND ticket <> ''
  AND ($start IS NULL OR end_ts >= $start) AND ($end IS NULL OR start_ts < $end)
ORDER BY 1
"""

TICKET_COLUMNS = ("ticket_id", "status", "opened", "closed", "planned_start", "planned_end",
                  "assignee", "reporter", "title", "components", "system", "url", "work_start",
                  "work_end", "history_note")


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
    assignee, reporter, title, components, system, url, work_start, work_end, source, history_note)
SELECT ticket_id, status, opened::TIMESTAMPTZ, closed::TIMESTAMPTZ, planned_start::TIMESTAMPTZ,
       planned_end::TIMESTAMPTZ, assignee, reporter, title, components::VARCHAR[],
       coalesce(system, $system), url, work_start::TIMESTAMPTZ, work_end::TIMESTAMPTZ, $system,
       history_note
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

# A re-fetched ticket's approval records replace the earlier ones (the raw answers stay in
# ticket_raw): the engine judges the approvals as they stand now.
CLEAR_APPROVALS = """
DELETE FROM ticket_approvals
WHERE ticket_id IN (SELECT ticket_id FROM fetched_tickets
                    WHERE status IS NOT NULL AND opened IS NOT NULL)
"""

# A reference asked for that the fetch neither returned, nor reported missing, failed or
# invalid: never silent, it is unverifiable and counted as missing.
UNACCOUNTED_IN = """
INSERT INTO ticket_unverifiable
SELECT DISTINCT r.ref, 'ticket_unverifiable', 'the fetch returned nothing under this reference',
       $fetch_id
FROM (SELECT unnest($asked::VARCHAR[]) AS ref) r
WHERE r.ref NOT IN (SELECT ticket_id FROM tickets)
  AND r.ref NOT IN (SELECT ticket_id FROM ticket_unverifiable)
"""

CLEAR_UNVERIFIABLE = """
DELETE FROM ticket_unverifiable
WHERE ticket_id IN (SELECT ticket_id FROM fetched_tickets
                    WHERE status IS NOT NULL AND opened IS NOT NULL)
"""


def _with_aliases(rows: list[dict], aliases: dict[str, list[str]]) -> list[dict]:
    """`rows` plus a copy under every alias of its ticket (a ServiceNow change cited by sys_id)."""
    return rows + [dict(r, ticket_id=a) for r in rows for a in aliases.get(r["ticket_id"], ())]


def store_fetch(store: Store, result, system: str, url: str,
                asked: list[str] | None = None) -> FetchSummary:
    """Write a connectors.ticket_refs.TicketFetch into the store, in one transaction.

    `asked` are the references the fetch was given: any of them that ends up neither stored
    nor reported is recorded as unverifiable and counted as missing."""
    con = store.con
    aliases = {t["ticket_id"]: t.get("aliases") or [] for t in result.tickets}
    unverified = ([{"ticket_id": r, "reason": "ticket_unverifiable",
                    "detail": result.missing_why.get(r, "not found")} for r in result.missing]
                  + [{"ticket_id": r, "reason": "ticket_unverifiable", "detail": why}
                     for r, why in result.failed.items()]
                  + [{"ticket_id": r, "reason": "invalid_ticket_ref",
                      "detail": "does not match the strict key pattern"} for r in result.invalid])
    frames = {
        "fetched_tickets": _frame(_with_aliases(result.tickets, aliases), TICKET_COLUMNS),
        "fetched_history": _frame(_with_aliases(result.history, aliases), ("ticket_id", "ts", "status")),
        "fetched_approvals": _frame(_with_aliases(result.approvals, aliases),
                                    ("ticket_id", "approver", "state", "ts")),
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
            con.execute("INSERT INTO ticket_raw SELECT ?, name, sha256, body::BLOB "
                        "FROM fetched_raw ORDER BY n", [fetch_id])
            con.execute(TICKETS_IN, {"system": system})
            con.execute(CLEAR_UNVERIFIABLE)
            con.execute(CLEAR_APPROVALS)
            con.execute("INSERT OR IGNORE INTO ticket_history (ticket_id, ts, status, source) "
                        "SELECT DISTINCT ticket_id, ts::TIMESTAMPTZ, status, ? "
                        "FROM fetched_history", [system])
            con.execute("INSERT INTO ticket_approvals SELECT ticket_id, approver, state, "
                        "ts::TIMESTAMPTZ, ? FROM fetched_approvals ORDER BY n", [fetch_id])
            con.execute(UNVERIFIABLE_IN, {"fetch_id": fetch_id})
            lost = con.execute(UNACCOUNTED_IN, {"asked": list(asked or []),
                                                "fetch_id": fetch_id}).fetchone()[0]
            missing = len(result.missing) + lost
            con.execute("INSERT INTO ticket_fetch_log VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        [fetch_id, system, url, now_utc(), len(result.tickets), missing,
                         len(result.failed), len(result.invalid)])
    finally:
        for name in frames:
            con.unregister(name)
    return FetchSummary(fetch_id, len(result.tickets), missing, len(result.failed),
                        len(result.invalid))
