-- 035_keys_unindexed: activity_keys without its PRIMARY KEY and UNIQUE indexes. Keeping the two
-- ART indexes cost ~3 CPU-s per 450k new (account, target) pairs at ingest (1e7 actions of the
-- perf anchor), more than the rest of key interning. The ingest keeps the pairs unique itself
-- (correlate/ingest/activity.py intern_keys: one row per key, a key clash refused, a pair
-- interned before under another id mapped to it); tests/test_ingest_direct.py checks it.
CREATE TABLE activity_keys_plain (
    key_id       BIGINT NOT NULL,
    account_norm VARCHAR NOT NULL,
    target_norm  VARCHAR NOT NULL
);
INSERT INTO activity_keys_plain SELECT key_id, account_norm, target_norm FROM activity_keys;
DROP TABLE activity_keys;
ALTER TABLE activity_keys_plain RENAME TO activity_keys;
