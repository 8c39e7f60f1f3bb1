-- 030_verdict_exceptions: accepted exceptions for verdicts (docs/verdicts.md). Per run: the
-- `[[exceptions]]` entries it was judged with (expired ones too, flagged), and one row per FAIL or
-- WARN finding an entry in force covers (the first such entry). The finding itself keeps its
-- verdict and status; readers count it apart as EXCEPTED.
CREATE TABLE verdict_exceptions (
    run_id      INTEGER NOT NULL,
    n           INTEGER NOT NULL,       -- the entry's place in the config (0 = first)
    name        VARCHAR NOT NULL,
    account     VARCHAR,                -- globs, case-insensitive; NULL = any
    target      VARCHAR,
    verdict     VARCHAR,
    reason      VARCHAR NOT NULL,
    accepted_by VARCHAR NOT NULL,
    expires     TIMESTAMPTZ NOT NULL,   -- in force while the run's time is before it
    expired     BOOLEAN NOT NULL,       -- expired at the run's time: applied to nothing
    findings    BIGINT NOT NULL         -- covered (in force) or would have covered (expired)
);
CREATE TABLE finding_exceptions (
    run_id      INTEGER NOT NULL,
    act_id      BIGINT NOT NULL,
    n           INTEGER NOT NULL        -- the verdict_exceptions entry that covers it
);
