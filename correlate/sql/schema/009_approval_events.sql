-- 009_approval_events: vendor approval state that spans files (issue #3). A connector whose
-- approvals are folded from several vendor events (Teleport access_request.*, CyberArk checkouts,
-- PIM activations and deactivations) stages those events; the store keeps them here and, after
-- each file, re-runs the connector's fold over every stored event of the fold keys the file
-- touched. The approvals then do not depend on how the events were split across files or ingest
-- runs (docs/approval-events.md).
CREATE TABLE approval_events (
    source      VARCHAR NOT NULL,
    fold_key    VARCHAR NOT NULL,      -- events with the same key are folded together
    approval_id VARCHAR NOT NULL,      -- the approval (or request) the event belongs to
    event_key   VARCHAR NOT NULL,      -- the event's natural key: a repeat is a duplicate
    event       VARCHAR NOT NULL,      -- vendor event type
    ts          TIMESTAMPTZ NOT NULL,  -- fold order: ts, then ingest_id, then line
    fields      VARCHAR,               -- JSON object: the vendor fields the fold reads
    ingest_id   INTEGER NOT NULL,
    line        BIGINT,
    PRIMARY KEY (source, event_key)
);
-- Folded approvals that are not in force because an event is missing (an approval whose create
-- has not arrived, a request neither approved nor denied yet, a deactivation matching no stored
-- activation). The engine never reads them; the next file with the missing event resolves them.
CREATE TABLE approvals_pending (
    source      VARCHAR NOT NULL,
    approval_id VARCHAR NOT NULL,
    fold_key    VARCHAR NOT NULL,
    status      VARCHAR,               -- what its events say so far
    reason      VARCHAR NOT NULL,      -- which event is missing
    events      BIGINT NOT NULL,       -- stored events of this approval id
    ingest_id   INTEGER,               -- its most recently ingested event
    line        BIGINT,
    PRIMARY KEY (source, approval_id)
);
