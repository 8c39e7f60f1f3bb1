-- 013_hash_keys: (account, target) keys are 64-bit, computed from the pair
-- (hash(lower(account), lower(target)) >> 1), so a big ingest writes each row's key in the same
-- pass as the row instead of joining 1e7 rows to activity_keys. Pairs interned before keep their
-- small ids; the store maps new rows of such pairs back to them and refuses a hash collision.
ALTER TABLE activity ALTER COLUMN key_id SET DATA TYPE BIGINT;
CREATE TABLE activity_keys_64 (
    key_id       BIGINT PRIMARY KEY,
    account_norm VARCHAR NOT NULL,
    target_norm  VARCHAR NOT NULL,
    UNIQUE (account_norm, target_norm)
);
INSERT INTO activity_keys_64 SELECT key_id, account_norm, target_norm FROM activity_keys;
DROP TABLE activity_keys;
ALTER TABLE activity_keys_64 RENAME TO activity_keys;
