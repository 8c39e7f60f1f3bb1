"""Vendor approval state across files: stored approval events, refolded after every file.

A connector whose approvals fold several vendor events (Teleport access requests, CyberArk
checkouts, PIM activations) stages the events (connectors/approval_events.py); see
docs/approval-events.md. The staged strategy's loader of `approval_events` (correlate/ingest/load.py).
"""

from __future__ import annotations

from correlate.errors import InputError
from correlate.ingest.base import scalar



# --- vendor approval state across files (approval_events) ----------------------------------
# A connector whose approvals fold several vendor events (Teleport access requests, CyberArk
# checkouts, PIM activations) stages the events (connectors/approval_events.py). The store keeps
# them and after each file re-runs the connector's fold over every stored event of the fold keys
# the file touched, so the approvals do not depend on how the events were split across files or
# ingest runs. Counts: a new event that creates or changes an approval (or a pending one) is
# accepted, at most one per approval and per new event; the file's other events are duplicates
# (already stored, folded into an approval counted once, or changing nothing).
# docs/approval-events.md.

EVENTS_NEW = """
CREATE OR REPLACE TEMP TABLE ev_new AS
SELECT line, fold_key, approval_id, event_key, event, ts, fields FROM stage s
WHERE reason IS NULL AND NOT EXISTS (SELECT 1 FROM approval_events e
                                     WHERE e.source = $source AND e.event_key = s.event_key)
QUALIFY row_number() OVER (PARTITION BY event_key ORDER BY line) = 1
"""
EVENTS_INSERT = """
INSERT INTO approval_events (source, fold_key, approval_id, event_key, event, ts, fields,
                             ingest_id, line)
SELECT $source, fold_key, approval_id, event_key, event, ts, fields, $ingest_id, line FROM ev_new
"""
EVENTS_ACTIVITY_KEYS = """
INSERT INTO ev_keys SELECT DISTINCT k FROM (
    SELECT {key} AS k FROM activity WHERE source = $source AND ingest_id = $ingest_id) a
WHERE k IS NOT NULL AND k NOT IN (SELECT fold_key FROM ev_keys)
"""
FOLD_EVENTS = """
CREATE OR REPLACE TEMP TABLE fold_events AS
SELECT fold_key, approval_id, event_key, event, ts, fields, ingest_id, line
FROM approval_events e SEMI JOIN ev_keys k USING (fold_key) WHERE e.source = $source
"""
FOLD_ACTIVITY = """
CREATE OR REPLACE TEMP TABLE fold_activity AS
SELECT * FROM (SELECT act_id, ts, account, target, action, session_id, actor, attrs,
                      approval_ref, {key} AS fold_key
               FROM activity WHERE source = $source) a
SEMI JOIN ev_keys k USING (fold_key)
"""
# The fold's rows with their provenance (the approval id's most recently ingested event).
FOLD_OUT = """
CREATE OR REPLACE TEMP TABLE ev_out AS
SELECT f.*, coalesce(p.n, 0) AS events,
       coalesce(p.last.i, $ingest_id) AS p_ingest, p.last.l AS p_line,
       f.problem IS NULL AND coalesce(f.status IN ('approved', 'denied', 'revoked'), false)
           AND f.account IS NOT NULL AND f.target IS NOT NULL AND f.start_ts IS NOT NULL
           AND f.end_ts IS NOT NULL AS complete,
       coalesce(f.problem,
                CASE WHEN coalesce(f.status IN ('approved', 'denied', 'revoked'), false)
                     THEN 'no account, target, start or end yet'
                     ELSE 'not approved, denied or revoked yet (status '
                          || coalesce(f.status, 'unknown') || ')' END) AS pending_reason
FROM ev_folded f LEFT JOIN (
    SELECT approval_id, count(*) AS n, max(struct_pack(i := ingest_id, l := line)) AS last
    FROM fold_events GROUP BY approval_id) p USING (approval_id)
"""
_FOLDED_APPROVAL = (("approval_id", "approval_id"), ("account", "account"), ("target", "target"),
                    ("start_ts", "start_ts"), ("end_ts", "end_ts"), ("ticket", "ticket"),
                    ("requester", "requester"), ("approver", "approver"), ("kind", "kind"),
                    ("status", "status"), ("revoked_at", "revoked_at"),
                    ("reason", "approval_reason"), ("targets", "targets"))
_SAME_APPROVAL = " AND ".join(f"a.{col} IS NOT DISTINCT FROM o.{expr}"
                              for col, expr in _FOLDED_APPROVAL)
FOLD_CHANGED = f"""
CREATE OR REPLACE TEMP TABLE ev_changed AS
SELECT approval_id, fold_key FROM ev_out o
WHERE complete AND NOT EXISTS (SELECT 1 FROM approvals a WHERE a.source = $source
                               AND {_SAME_APPROVAL})
UNION ALL
SELECT approval_id, fold_key FROM ev_out o
WHERE NOT complete AND NOT EXISTS (
    SELECT 1 FROM approvals_pending p WHERE p.source = $source AND p.approval_id = o.approval_id
      AND p.status IS NOT DISTINCT FROM o.status AND p.reason = o.pending_reason
      AND p.events = o.events)
"""
# An approval that its events no longer complete leaves `approvals`; one stored before its
# events were kept (schema 009) stays, beside the pending row that explains the new event.
FOLD_APPLY = (
    "DELETE FROM approvals WHERE source = $source "
    "AND approval_id IN (SELECT approval_id FROM ev_out WHERE NOT complete) "
    "AND approval_id IN (SELECT approval_id FROM approval_events WHERE source = $source "
    "                    AND ingest_id < $ingest_id)",
    f"INSERT OR REPLACE INTO approvals ({', '.join(c for c, _ in _FOLDED_APPROVAL)}, source, "
    f"ingest_id, line) SELECT {', '.join(e for _, e in _FOLDED_APPROVAL)}, $source, p_ingest, "
    "p_line FROM ev_out WHERE complete AND approval_id IN (SELECT approval_id FROM ev_changed)",
    "DELETE FROM approvals_pending WHERE source = $source "
    "AND (fold_key IN (SELECT fold_key FROM ev_keys) OR approval_id IN (SELECT approval_id "
    "FROM ev_out)) AND approval_id NOT IN (SELECT approval_id FROM ev_out WHERE NOT complete)",
    "INSERT OR REPLACE INTO approvals_pending (source, approval_id, fold_key, status, reason, "
    "events, ingest_id, line) SELECT $source, approval_id, fold_key, status, pending_reason, "
    "events, p_ingest, p_line FROM ev_out "
    "WHERE NOT complete AND approval_id IN (SELECT approval_id FROM ev_changed)",
)
FOLD_LINKS = """
UPDATE activity SET approval_ref = l.approval_ref FROM ev_links l
WHERE activity.act_id = l.act_id AND activity.approval_ref IS DISTINCT FROM l.approval_ref
"""
FOLD_ACCEPTED = """
SELECT coalesce(sum(least(c.n, e.n)), 0)::BIGINT
FROM (SELECT fold_key, count(*) AS n FROM ev_changed GROUP BY fold_key) c
JOIN (SELECT fold_key, count(*) AS n FROM ev_new GROUP BY fold_key) e USING (fold_key)
"""
_FOLD_SCRATCH = ("ev_new", "ev_keys", "fold_events", "fold_activity", "ev_folded", "ev_out",
                 "ev_changed", "ev_links")


def _fold_of(source: str):
    """The source's declared approval_fold (connectors/approval_events.py `Fold`)."""
    from connectors.registry import get_connector

    fold = getattr(get_connector(source), "approval_fold", None)
    if fold is None:
        raise InputError(f"source {source} stages approval events but declares no approval_fold")
    return fold


def _sql(con, sql: str, **params):
    return con.execute(sql, {k: v for k, v in params.items() if f"${k}" in sql})


def load_approval_events(con, source, ingest_id):
    """Store the file's new events, refold the keys they (or its new activity) touched.

    Runs after the file's activity batch (the connector stages this batch last), so a fold that
    reads activity sees the file's own rows.
    """
    fold = _fold_of(source)
    p = {"source": source, "ingest_id": ingest_id}
    accepted = 0
    _sql(con, EVENTS_NEW, **p)
    _sql(con, EVENTS_INSERT, **p)
    con.execute("CREATE OR REPLACE TEMP TABLE ev_keys AS SELECT DISTINCT fold_key FROM ev_new")
    if fold.activity_key:
        _sql(con, EVENTS_ACTIVITY_KEYS.format(key=fold.activity_key), **p)
    if scalar(con, "SELECT count(*) FROM ev_keys", []):
        _sql(con, FOLD_EVENTS, **p)
        if fold.activity_key:
            _sql(con, FOLD_ACTIVITY.format(key=fold.activity_key), **p)
        con.execute(f"CREATE OR REPLACE TEMP TABLE ev_folded AS {fold.approvals}")
        _sql(con, FOLD_OUT, **p)
        _sql(con, FOLD_CHANGED, **p)
        for statement in FOLD_APPLY:
            _sql(con, statement, **p)
        if fold.links:
            con.execute(f"CREATE OR REPLACE TEMP TABLE ev_links AS {fold.links}")
            con.execute(FOLD_LINKS)
        accepted = scalar(con, FOLD_ACCEPTED, [])
    # Scratch is dropped here; on an error the transaction's rollback removes it.
    for name in _FOLD_SCRATCH:
        con.execute(f"DROP TABLE IF EXISTS {name}")
    return accepted
