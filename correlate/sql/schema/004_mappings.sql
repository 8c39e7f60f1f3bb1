-- 004_mappings: identities.csv and targets.csv let an approval name what a log does not show verbatim.
CREATE TABLE identities (
    alias_norm VARCHAR PRIMARY KEY,   -- lower(alias): DOMAIN\alice, alice@corp, Alice
    identity   VARCHAR NOT NULL,
    kind       VARCHAR NOT NULL DEFAULT 'human',   -- human | service
    owner      VARCHAR,
    source     VARCHAR,
    ingest_id  INTEGER,
    line       BIGINT
);
CREATE TABLE targets (
    name_norm  VARCHAR NOT NULL,      -- lower(host name as logs show it)
    alias_norm VARCHAR,               -- lower(another name: an IP, an FQDN)
    grp        VARCHAR,               -- a CyberArk safe, a Teleport role, a host group
    source     VARCHAR,
    ingest_id  INTEGER,
    line       BIGINT
);
-- Which mapping made the match (identity alias, target alias or group), shown in reports.
ALTER TABLE findings ADD COLUMN match_via VARCHAR;
