-- 006_approval_checks: checks of an approval against its ticket, beyond status (WARN level).
CREATE TABLE approval_checks (
    run_id          INTEGER NOT NULL,
    approval_source VARCHAR NOT NULL,
    approval_id     VARCHAR NOT NULL,
    ticket_id       VARCHAR NOT NULL,
    check_id        VARCHAR NOT NULL,   -- requester_not_on_ticket | ticket_does_not_cover_target
    severity        VARCHAR NOT NULL,   -- WARN
    detail          VARCHAR NOT NULL
);
