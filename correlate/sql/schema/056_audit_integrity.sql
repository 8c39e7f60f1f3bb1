-- Input integrity (issue 20): auditd records' serials per host, and kernel lost-record lines.
CREATE TABLE IF NOT EXISTS audit_record (
    host VARCHAR, ts TIMESTAMPTZ, serial BIGINT, rtype VARCHAR, file VARCHAR, line BIGINT,
    info VARCHAR, complete BOOLEAN,
    PRIMARY KEY (host, ts, serial, rtype)
);
CREATE TABLE IF NOT EXISTS audit_lost (
    file VARCHAR, line BIGINT, host VARCHAR, info VARCHAR, PRIMARY KEY (file, line)
);
