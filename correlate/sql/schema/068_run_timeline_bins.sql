-- 068_run_timeline_bins: a busy account's timeline in the gap report, binned when the run is
-- written (correlate/sql/run_timeline.sql), so the report reads a few thousand bins instead of
-- the millions of actions of the busiest accounts (issue 11). One row per account with more
-- than `above` actions in the run, pixel column of the run's period, status and flagged (a
-- detection on the action) or not, as the report's own binning of the actions draws them
-- (reports/gaps.py TIMELINE_BINS_SQL; tests/test_timeline_bins.py compares the two). A run
-- without a run_timelines row (written before 068, or loaded with `load-run`) has no bins: the
-- report bins its actions itself.
CREATE TABLE run_timelines (
    run_id INTEGER PRIMARY KEY,
    t0     DOUBLE NOT NULL,           -- epoch seconds of the period's start (x = 0)
    span   DOUBLE NOT NULL,           -- seconds the width stands for (at least 1)
    width  INTEGER NOT NULL,          -- pixel columns
    above  BIGINT NOT NULL            -- accounts with more actions than this are binned
);
CREATE TABLE run_timeline_bins (
    run_id    INTEGER NOT NULL,
    account   VARCHAR NOT NULL,
    col       INTEGER NOT NULL,       -- floor(clamp((ts - t0) / span, 0, 1) * width)
    status    VARCHAR NOT NULL,
    flagged   BOOLEAN NOT NULL,
    n         BIGINT NOT NULL,        -- actions
    ts        TIMESTAMPTZ NOT NULL,   -- the first
    verdicts  VARCHAR NOT NULL,       -- the distinct verdicts, sorted, ', ' between
    target    VARCHAR NOT NULL,       -- the least target
    rules     VARCHAR[],              -- flagged: the distinct rules, sorted
    severity  VARCHAR,                -- flagged: the worst severity
    review    VARCHAR,                -- flagged: FAIL, needs_review or MUTED (the worst)
    sequences VARCHAR[]               -- flagged: the distinct sequences, sorted, or NULL
);
