-- 007_approval_targets: an approval that grants several targets at once (a Teleport request for
-- several resources or roles) lists them here; `target` keeps the display form.
ALTER TABLE approvals ADD COLUMN targets VARCHAR[];
