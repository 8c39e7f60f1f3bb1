-- INFO, or WARN: missing kernel serials between two records of one host and boot segment.
-- A segment starts at a serial decrease, a DAEMON_START, a SYSTEM_BOOT, or after more than
-- $idle_hours without records (the records between are not there to count). DAEMON_* records
-- use auditd's own counter and are left out. WARN when the gap is >= $gap_warn serials in a
-- segment holding at least half of its serials (a log excerpt is sparse and its gaps say
-- nothing), the files were declared complete (auditd_complete=yes), or it overlaps a
-- privileged session on that host recorded by an access source (Teleport, sshd, PSM).
WITH ev AS (
    SELECT host, ts, serial, bool_or(starts_with(rtype, 'DAEMON_')) AS daemon,
        bool_or(rtype = 'DAEMON_START') AS daemon_start, bool_or(rtype = 'SYSTEM_BOOT') AS boot,
        bool_or(complete) AS complete
    FROM audit_record GROUP BY host, ts, serial),
numbered AS (
    SELECT *, sum(daemon_start::INT) OVER (PARTITION BY host ORDER BY ts, serial
                                           ROWS UNBOUNDED PRECEDING) AS starts
    FROM ev),
k AS (
    SELECT *, lag(serial) OVER w AS prev_serial, lag(ts) OVER w AS prev_ts,
        lag(starts) OVER w AS prev_starts
    FROM numbered WHERE NOT daemon
    WINDOW w AS (PARTITION BY host ORDER BY ts, serial)),
flagged AS (
    SELECT *, (prev_serial IS NULL OR serial < prev_serial OR starts <> prev_starts OR boot
               OR ts - prev_ts > to_hours($idle_hours::BIGINT)) AS new_segment
    FROM k),
segs AS (
    SELECT *, sum(new_segment::INT) OVER (PARTITION BY host ORDER BY ts, serial
                                          ROWS UNBOUNDED PRECEDING) AS seg
    FROM flagged),
-- share of the segment's serials present: a log excerpt (a sample of records) is sparse,
-- and its gaps say nothing about lost records
density AS (
    SELECT host, seg, count(*) / (max(serial) - min(serial) + 1) AS dense
    FROM segs GROUP BY ALL),
gaps AS (
    SELECT s.host, s.prev_ts, s.ts, s.prev_serial, s.serial,
        s.serial - s.prev_serial - 1 AS missing, s.complete, d.dense
    FROM segs s JOIN density d USING (host, seg)
    WHERE NOT s.new_segment AND s.serial > s.prev_serial + 1
      AND ($start::TIMESTAMPTZ IS NULL OR s.ts >= $start::TIMESTAMPTZ)
      AND ($end::TIMESTAMPTZ IS NULL OR s.prev_ts < $end::TIMESTAMPTZ)),
sessions AS (
    SELECT lower(target) AS host, source, session_id, min(ts) AS first_ts, max(ts) AS last_ts
    FROM activity
    WHERE source IN ('teleport', 'syslog', 'cyberark') AND session_id IS NOT NULL
    GROUP BY ALL)
SELECT CASE WHEN (g.missing >= $gap_warn AND g.dense >= 0.5) OR g.complete OR s.session_id IS NOT NULL
            THEN 'WARN' ELSE 'INFO' END AS severity,
    g.host AS subject,
    g.missing || ' audit record serial(s) missing between ' || g.prev_serial || ' and '
        || g.serial || CASE WHEN s.session_id IS NOT NULL
                            THEN ', during session ' || s.session_id ELSE '' END AS detail,
    json_object('host', g.host, 'after', g.prev_serial, 'before', g.serial,
                'from', g.prev_ts, 'to', g.ts, 'missing', g.missing,
                'session', s.session_id, 'complete', g.complete,
                'segment_density', round(g.dense, 4)) AS evidence
FROM gaps g
LEFT JOIN sessions s ON s.host = lower(g.host) AND s.first_ts < g.ts AND s.last_ts > g.prev_ts
QUALIFY row_number() OVER (PARTITION BY g.host, g.serial ORDER BY s.first_ts) = 1
ORDER BY subject, g.serial
