-- Input integrity (issue 20): what each check pass saw per source, and the digest chain heads
-- it recorded (the next period's chain must continue from them).
CREATE TABLE IF NOT EXISTS integrity_summary (
    period_start TIMESTAMPTZ, period_end TIMESTAMPTZ, checked TIMESTAMPTZ, source VARCHAR,
    files BIGINT, digests BIGINT, valid BIGINT, missing BIGINT, modified BIGINT,
    unsigned BIGINT, gaps BIGINT, config_changes BIGINT
);
CREATE TABLE IF NOT EXISTS integrity_chain_head (
    period_start TIMESTAMPTZ, period_end TIMESTAMPTZ, chain VARCHAR, digest_key VARCHAR,
    sha256 VARCHAR, end_ts TIMESTAMPTZ
);
