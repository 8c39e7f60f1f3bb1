-- 022_outcome: what the source says came of an action: success | failure | unknown (NULL: the
-- source says nothing). A failed attempt is kept (detections read it) but is not work done.
ALTER TABLE activity ADD COLUMN outcome VARCHAR;
