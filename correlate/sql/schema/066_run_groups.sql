-- 066_run_groups: a run's findings counted once, when the run is written, per account, target,
-- source, identity kind (as the source said it), verdict, status and accepted exception
-- (correlate/sql/run_groups.sql). The gap report reads these groups (under 5 % of the findings
-- at 1e7) instead of the findings (issue 11). A run with a run_summaries row has its groups;
-- older runs have none, and the report groups their findings itself, with the same SELECT.
-- The "first"/"nearest" columns are structs whose first field is the rank, so min() over the
-- groups of several sources gives exactly the min over their findings.
CREATE TABLE run_groups (
    run_id     INTEGER NOT NULL,
    account    VARCHAR,
    target     VARCHAR,
    source     VARCHAR,
    actor_kind VARCHAR,
    verdict    VARCHAR,
    status     VARCHAR,
    entry      INTEGER,               -- verdict_exceptions.n covering the group, else NULL
    n          BIGINT NOT NULL,       -- findings
    first      TIMESTAMPTZ,
    last       TIMESTAMPTZ,
    sample     STRUCT(ts TIMESTAMPTZ, act_id BIGINT),          -- the first action
    approval   STRUCT(rank DOUBLE, approval_id VARCHAR, via VARCHAR, gap DOUBLE),  -- nearest
    ticket     STRUCT(rank DOUBLE, ticket_id VARCHAR),          -- nearest in time
    reason     STRUCT(ts TIMESTAMPTZ, reason VARCHAR)           -- the first with a reason
);
CREATE TABLE run_summaries (
    run_id   INTEGER PRIMARY KEY,
    findings BIGINT NOT NULL,         -- = sum(run_groups.n) of the run
    groups   BIGINT NOT NULL
);
