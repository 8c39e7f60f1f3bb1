-- 050_approval_hygiene: findings about the approvals themselves (issue 19, docs/hygiene.md).
-- approval_checks keeps the ticket checks (family 'ticket') and gains the hygiene checks
-- (family 'hygiene'): a hygiene row may name no ticket, and a bypass names no approval at all
-- (it names the action instead: act_id, account, target). evidence is a JSON object.
ALTER TABLE approval_checks ALTER COLUMN ticket_id DROP NOT NULL;
ALTER TABLE approval_checks ALTER COLUMN approval_source DROP NOT NULL;
ALTER TABLE approval_checks ALTER COLUMN approval_id DROP NOT NULL;
ALTER TABLE approval_checks ADD COLUMN family VARCHAR DEFAULT 'ticket';
ALTER TABLE approval_checks ADD COLUMN account VARCHAR;
ALTER TABLE approval_checks ADD COLUMN target VARCHAR;
ALTER TABLE approval_checks ADD COLUMN act_id BIGINT;
ALTER TABLE approval_checks ADD COLUMN evidence VARCHAR;
-- Per run and hygiene check: approvals (or actions) judged, and those not judged because a
-- field the check needs is missing (no requester, no approver): never silently passed.
CREATE TABLE hygiene_counts (
    run_id     INTEGER NOT NULL,
    check_id   VARCHAR NOT NULL,
    judged     BIGINT NOT NULL,
    not_judged BIGINT NOT NULL,
    PRIMARY KEY (run_id, check_id)
);
-- approvers.csv (pamcorr ingest generic --kind approvers): who may approve what. scope: a
-- target name, a glob (web-*) or a group of targets.csv; kinds: the approval kinds
-- (standard, break_glass) the entry covers, NULL for every kind.
CREATE TABLE approvers (
    approver_norm VARCHAR NOT NULL,     -- lower(approver)
    scope_norm    VARCHAR NOT NULL,     -- lower(scope)
    kinds         VARCHAR[],
    source        VARCHAR,
    ingest_id     INTEGER,
    line          BIGINT,
    PRIMARY KEY (approver_norm, scope_norm)
);
