-- 031_target_criticality: the `[criticality]` globs a run was judged with (docs/verdicts.md). The
-- gap report's grouped findings sort by the level of the most specific pattern matching each
-- target (most characters that are not wildcards; a tie goes to the higher level).
CREATE TABLE target_criticality (
    run_id      INTEGER NOT NULL,
    pattern     VARCHAR NOT NULL,       -- target glob, lower case
    level       VARCHAR NOT NULL,       -- critical | high | medium | low
    specificity INTEGER NOT NULL        -- characters of the pattern that are not wildcards
);
