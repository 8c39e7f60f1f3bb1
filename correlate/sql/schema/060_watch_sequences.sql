-- 060_watch_sequences: the matches of sequence rules' member rules that `pamcorr watch` saw in
-- earlier batches, so a sequence spread over several batches is still found (docs/watch.md).
-- The columns are those of the detection pass's det_events (correlate/detect/run.py). Written
-- in the transaction that stores the batch; rows older than the longest sequence timespan
-- (measured back from the newest event kept) are deleted in the same transaction.
CREATE TABLE watch_seq_events (
    rule_id     VARCHAR NOT NULL,
    act_id      BIGINT NOT NULL,
    ts          TIMESTAMPTZ NOT NULL,
    account     VARCHAR,
    target      VARCHAR,
    session_id  VARCHAR,
    actor       VARCHAR,
    detail      VARCHAR,
    source      VARCHAR,
    approval_id VARCHAR
);
