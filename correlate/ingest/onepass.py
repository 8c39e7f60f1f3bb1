"""Strategy: one pass. A JSON-lines (or CSV) activity file is read, checked, de-duplicated and
inserted by one statement (activity.load_direct) and logged, in one transaction.

Optimistic: a row to quarantine, an event_id repeated in the file or a failed read rolls it
back, and the file takes the staged strategy (correlate/ingest/staged.py) instead.
"""

from __future__ import annotations

from correlate.ingest import log
from correlate.ingest.activity import NotDirect, load_direct
from correlate.ingest.base import FileResult, bound
from correlate.ingest.plan import Plan
from correlate.store import Store


def usable(plan: Plan) -> bool:
    """One activity batch whose lines the store numbers (one record a line), not --reingest."""
    return (len(plan.staged) == 1 and plan.staged[0].table == "activity"
            and plan.staged[0].number_lines and not plan.reingest)


def load(store: Store, plan: Plan) -> FileResult | None:
    """The file's result, or None: nothing kept, take the staged strategy. `known_ids`, when
    `pamcorr watch` set it on the store: its filter of stored keys (activity.stored_ids)."""
    con, batch = store.con, plan.staged[0]
    con.execute("BEGIN TRANSACTION")
    try:
        ingest_id = log.next_id(con)
        read, accepted = load_direct(con, batch.sql, bound(batch), plan.source, ingest_id,
                                     getattr(store, "known_ids", None))
        if log.seen(con, plan.digest, plan.source, plan.kind):     # under another name
            con.execute("ROLLBACK")
            return plan.skipped(con)
        result = plan.result(read=read, accepted=accepted, duplicates=read - accepted)
        log.record(con, [plan.entry(ingest_id, result)])
    except NotDirect:
        con.execute("ROLLBACK")
        return None
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
    return result
