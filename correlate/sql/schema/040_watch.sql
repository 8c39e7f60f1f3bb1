-- 040_watch: what `pamcorr watch` keeps between restarts (docs/watch.md).
-- watch_offsets: how far each followed file has been read and stored (its identity, the byte
-- offset and line count of the part stored). Written in the transaction that gives the rows of
-- that part their place in ingest_log under the followed file's own name.
CREATE TABLE watch_offsets (
    source     VARCHAR NOT NULL,      -- connector name
    kind       VARCHAR NOT NULL,
    path       VARCHAR NOT NULL,
    dev        BIGINT,
    inode      BIGINT,
    offset_bytes BIGINT NOT NULL,
    lines      BIGINT NOT NULL,
    updated    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (source, kind, path)
);

-- Every action watch judged FAIL, with its verdict as judged then (a re-judging updates it):
-- the set re-judged when approvals or tickets arrive.
CREATE TABLE watch_verdicts (
    act_id      BIGINT PRIMARY KEY,
    verdict     VARCHAR NOT NULL,
    status      VARCHAR NOT NULL,
    approval_id VARCHAR,
    ticket_id   VARCHAR,
    reason      VARCHAR,
    judged      TIMESTAMPTZ NOT NULL
);

-- One row per alert (stable id) and version: version 1 is the first message, each change of
-- state (resolved, changed) adds one. `delivered` lists the sinks that acknowledged it;
-- `pending` is true until every sink did (or it went to the dead-letter file).
CREATE TABLE watch_alerts (
    alert_id    VARCHAR NOT NULL,
    version     INTEGER NOT NULL,
    act_id      BIGINT,
    account     VARCHAR,              -- lower(account): the rate limit's key with the rule
    rule        VARCHAR NOT NULL,     -- 'verdict' or a detection rule id
    state       VARCHAR NOT NULL,     -- open | resolved | changed | folded | summary
    severity    VARCHAR NOT NULL,
    body        VARCHAR NOT NULL,     -- the alert as JSON (already redacted)
    created     TIMESTAMPTZ NOT NULL,
    pending     BOOLEAN NOT NULL DEFAULT true,
    delivered   VARCHAR[] NOT NULL DEFAULT [],
    dead        VARCHAR[] NOT NULL DEFAULT [],
    summarized  BOOLEAN NOT NULL DEFAULT false,   -- a folded alert counted in a summary
    PRIMARY KEY (alert_id, version)
);

-- Ingests whose actions have their verdicts (and verdict alerts) but not yet their detections:
-- watch runs the detection rules right after it delivered the verdict alerts, in a second
-- transaction that empties this (a restart finishes what a crash left here).
CREATE TABLE watch_detect_todo (ingest_id INTEGER PRIMARY KEY);
