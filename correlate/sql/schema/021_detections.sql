-- 021_detections: what each action did (docs/detections.md). Per run: the rules it ran, and one
-- row per (action, rule); a sequence's member rows share its sequence_id.
CREATE TABLE detection_rules (
    run_id      INTEGER NOT NULL,
    rule_id     VARCHAR NOT NULL,
    title       VARCHAR NOT NULL,
    class       VARCHAR NOT NULL,
    severity    VARCHAR NOT NULL,       -- info | low | medium | high | critical
    attack      VARCHAR[],              -- ATT&CK technique ids (T1562.012)
    description VARCHAR NOT NULL,
    kind        VARCHAR NOT NULL,       -- event | temporal_ordered | temporal | event_count | value_count
    members     VARCHAR[],              -- a sequence's rules
    path        VARCHAR NOT NULL,
    sha256      VARCHAR NOT NULL
);
CREATE TABLE detections (
    run_id      INTEGER NOT NULL,
    act_id      BIGINT NOT NULL,
    rule_id     VARCHAR NOT NULL,
    sequence_id VARCHAR,                -- set on every member row of a sequence
    position    INTEGER,                -- the member's place in its sequence (1 = first)
    review      VARCHAR NOT NULL,       -- FAIL (risky and no valid approval) | needs_review | MUTED
    muted_by    VARCHAR                 -- the mute entry's reason, when muted
);
