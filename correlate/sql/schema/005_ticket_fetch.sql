-- 005_ticket_fetch: tickets fetched from Jira / ServiceNow, with the raw responses kept as evidence.
CREATE TABLE ticket_fetch_log (
    fetch_id  INTEGER PRIMARY KEY,
    system    VARCHAR NOT NULL,      -- jira | servicenow
    url       VARCHAR NOT NULL,
    started   TIMESTAMPTZ NOT NULL,
    fetched   INTEGER NOT NULL,
    missing   INTEGER NOT NULL,
    failed    INTEGER NOT NULL,
    invalid   INTEGER NOT NULL
);
CREATE TABLE ticket_raw (
    fetch_id INTEGER NOT NULL,
    name     VARCHAR NOT NULL,
    sha256   VARCHAR NOT NULL,
    body     BLOB NOT NULL
);
-- Ticket references that could not be verified: the engine judges their actions
-- ticket_invalid with this reason (ticket_unverifiable or invalid_ticket_ref), never approved.
CREATE TABLE ticket_unverifiable (
    ticket_id VARCHAR PRIMARY KEY,
    reason    VARCHAR NOT NULL,
    detail    VARCHAR,
    fetch_id  INTEGER
);
CREATE TABLE ticket_approvals (
    ticket_id VARCHAR NOT NULL,
    approver  VARCHAR,
    state     VARCHAR,
    ts        TIMESTAMPTZ,
    fetch_id  INTEGER
);
