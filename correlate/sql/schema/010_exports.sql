-- 010_exports: every evidence bundle pamcorr wrote, so the next one can name its predecessor
-- (the sha256 of its manifest.json) and the bundles form a hash chain (docs/jobs.md).
CREATE TABLE exports (
    export_id        INTEGER PRIMARY KEY,
    created          TIMESTAMPTZ NOT NULL,
    run_id           INTEGER,
    path             VARCHAR NOT NULL,      -- absolute path of the bundle folder or .zip
    bundle           VARCHAR NOT NULL,      -- its base name, as the next manifest cites it
    manifest_sha256  VARCHAR NOT NULL,
    previous_sha256  VARCHAR
);
