-- 001_core: the tables every connector maps into and the engine reads.
-- All timestamps are TIMESTAMPTZ and every connection runs with TimeZone='UTC'.

CREATE TABLE ingest_log (
    ingest_id    INTEGER PRIMARY KEY,
    source       VARCHAR NOT NULL,      -- connector name: generic, teleport, ...
    kind         VARCHAR NOT NULL,      -- approvals | tickets | ticket_history | activity | mixed
    file         VARCHAR NOT NULL,
    sha256       VARCHAR NOT NULL,
    size_bytes   BIGINT,
    read         BIGINT NOT NULL DEFAULT 0,
    accepted     BIGINT NOT NULL DEFAULT 0,
    quarantined  BIGINT NOT NULL DEFAULT 0,
    duplicates   BIGINT NOT NULL DEFAULT 0,
    started      TIMESTAMPTZ NOT NULL,
    finished     TIMESTAMPTZ
);

CREATE TABLE quarantine (
    ingest_id INTEGER NOT NULL,
    source    VARCHAR NOT NULL,
    kind      VARCHAR NOT NULL,
    file      VARCHAR NOT NULL,
    line      BIGINT,
    reason    VARCHAR NOT NULL,
    raw       VARCHAR
);

CREATE TABLE approvals (
    source      VARCHAR NOT NULL,
    approval_id VARCHAR NOT NULL,
    account     VARCHAR NOT NULL,
    target      VARCHAR NOT NULL,        -- exact name or glob (web-prod-*)
    start_ts    TIMESTAMPTZ NOT NULL,
    end_ts      TIMESTAMPTZ NOT NULL,
    ticket      VARCHAR,
    requester   VARCHAR,
    approver    VARCHAR,
    kind        VARCHAR NOT NULL DEFAULT 'standard',   -- standard | break_glass
    status      VARCHAR NOT NULL DEFAULT 'approved',   -- approved | revoked | denied
    revoked_at  TIMESTAMPTZ,
    ingest_id   INTEGER,
    line        BIGINT,
    PRIMARY KEY (source, approval_id)
);

CREATE TABLE tickets (
    ticket_id     VARCHAR PRIMARY KEY,
    status        VARCHAR NOT NULL,
    opened        TIMESTAMPTZ NOT NULL,
    closed        TIMESTAMPTZ,
    planned_start TIMESTAMPTZ,
    planned_end   TIMESTAMPTZ,
    assignee      VARCHAR,
    source        VARCHAR NOT NULL,
    ingest_id     INTEGER,
    line          BIGINT
);

CREATE TABLE ticket_history (
    ticket_id VARCHAR NOT NULL,
    ts        TIMESTAMPTZ NOT NULL,
    status    VARCHAR NOT NULL,
    source    VARCHAR NOT NULL,
    ingest_id INTEGER,
    line      BIGINT,
    PRIMARY KEY (ticket_id, ts, status)
);

-- (account, target) pairs seen in activity, interned to an integer so the
-- correlation joins sort integers, not strings (see docs/performance.md).
CREATE TABLE activity_keys (
    key_id       INTEGER PRIMARY KEY,
    account_norm VARCHAR NOT NULL,       -- lower(account)
    target_norm  VARCHAR NOT NULL,       -- lower(target)
    UNIQUE (account_norm, target_norm)
);

-- No primary key: at 1e7 rows an ART index costs more than it saves; the
-- store de-duplicates on (source, event_id) with an anti-join at insert.
CREATE TABLE activity (
    act_id     BIGINT NOT NULL,
    source     VARCHAR NOT NULL,
    event_id   VARCHAR NOT NULL,
    ts         TIMESTAMPTZ NOT NULL,
    account    VARCHAR NOT NULL,
    target     VARCHAR NOT NULL,
    action     VARCHAR,
    detail     VARCHAR,                  -- secrets redacted before storing
    session_id VARCHAR,
    actor      VARCHAR,
    key_id     INTEGER NOT NULL,
    ingest_id  INTEGER,
    line       BIGINT
);

CREATE TABLE runs (
    run_id        INTEGER PRIMARY KEY,
    started       TIMESTAMPTZ NOT NULL,
    finished      TIMESTAMPTZ,
    period_start  TIMESTAMPTZ,
    period_end    TIMESTAMPTZ,
    grace_s       INTEGER NOT NULL,
    lookaround_s  INTEGER NOT NULL,
    parameters    VARCHAR NOT NULL,      -- JSON
    tool_version  VARCHAR NOT NULL
);

CREATE TABLE findings (
    run_id      INTEGER NOT NULL,
    act_id      BIGINT NOT NULL,
    verdict     VARCHAR NOT NULL,
    status      VARCHAR NOT NULL,        -- PASS | WARN | FAIL
    approval_id VARCHAR,
    approval_source VARCHAR,
    ticket_id   VARCHAR,
    gap_seconds DOUBLE,
    reason      VARCHAR
);

