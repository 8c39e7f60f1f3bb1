-- 027_ingest_warnings: what a connector warned about a whole file (the year a year-less syslog
-- file was given, the file name used as the auditd host), one per line; NULL when nothing.
ALTER TABLE ingest_log ADD COLUMN warnings VARCHAR;
