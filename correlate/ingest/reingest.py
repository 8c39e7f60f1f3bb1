"""`pamcorr ingest --reingest`: replace exactly one file's rows. The pipeline calls these inside
the transaction that loads the file again (and `reject_unread` to take a rejected file back)."""

from __future__ import annotations

from correlate.ingest import log

# Every table whose rows carry the ingest that brought them. Rows a later file superseded
# (an approval or ticket it re-sent) carry that file's ingest id and stay.
TABLES = ("activity", "approvals", "approvals_pending", "tickets", "ticket_history",
          "approval_events", "identities", "targets", "approvers", "quarantine", "ignored_counts")

# What the summary line names, in this order (table, singular label).
SHOWN = (("activity", "activity rows"), ("approvals", "approvals"), ("tickets", "tickets"),
         ("ticket_history", "ticket history rows"), ("approval_events", "approval events"),
         ("identities", "identities"), ("targets", "targets"), ("approvers", "approvers"),
         ("quarantine", "quarantined rows"))



def _in(ids: list[int]) -> str:
    # integers written into the SQL (not bound) so DuckDB can skip row groups by ingest_id
    return ", ".join(str(int(i)) for i in ids) or "NULL"


def row_counts(con, ids: list[int]) -> dict[str, int]:
    """Rows each table holds from these ingests."""
    return {t: con.execute(f"SELECT count(*) FROM {t} WHERE ingest_id IN ({_in(ids)})")
            .fetchone()[0] for t, _ in SHOWN}


def remove(con, ids: list[int]) -> None:
    """Delete every row these ingests brought, and their ingest_log rows (in the caller's
    transaction)."""
    if not ids:
        return
    for table in TABLES:
        con.execute(f"DELETE FROM {table} WHERE ingest_id IN ({_in(ids)})")
    log.forget(con, ids)


def describe(before: dict[str, int], after: dict[str, int]) -> str:
    """`-N +M activity rows, ...`: every table that had or has rows of the file."""
    parts = [f"-{before[t]} +{after[t]} {label}" for t, label in SHOWN
             if before.get(t) or after.get(t)]
    return ", ".join(parts) or "-0 +0 rows"
