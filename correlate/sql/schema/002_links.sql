-- 002_links: what vendor connectors and ticket fetchers carry beyond the generic contract.

-- Explicit link from an action to the approval it was granted under (Teleport
-- access_requests[] on session.start, CyberArk checkout before a PSM session):
-- when present it beats time matching (docs/verdicts.md).
ALTER TABLE activity ADD COLUMN approval_ref VARCHAR;
-- human | service | bot (Teleport user_kind/bot_name, CloudTrail AWSService ...)
ALTER TABLE activity ADD COLUMN actor_kind VARCHAR;
-- read-only API calls (CloudTrail readOnly, k8s get/list/watch) are kept but marked.
ALTER TABLE activity ADD COLUMN read_only BOOLEAN;
-- anything else worth keeping from the record, as JSON text.
ALTER TABLE activity ADD COLUMN attrs VARCHAR;

ALTER TABLE approvals ADD COLUMN reason VARCHAR;

ALTER TABLE tickets ADD COLUMN reporter VARCHAR;
ALTER TABLE tickets ADD COLUMN title VARCHAR;
ALTER TABLE tickets ADD COLUMN components VARCHAR[];
ALTER TABLE tickets ADD COLUMN system VARCHAR;
ALTER TABLE tickets ADD COLUMN url VARCHAR;
ALTER TABLE tickets ADD COLUMN work_start TIMESTAMPTZ;
ALTER TABLE tickets ADD COLUMN work_end TIMESTAMPTZ;
