"""auditd sequence, Teleport session and silent-source checks (issue 20, sections 2 and 3).

Each check is a SQL file named by its id (correlate/integrity/sql/); it returns
`severity, subject, detail, evidence` rows.
"""

from __future__ import annotations

from datetime import datetime

from correlate.store import Store

# (check id, source) in report order: an explicit registry
HOST_CHECKS = (("auditd_lost", "auditd"), ("auditd_stopped", "auditd"),
               ("audit_config_change", "auditd"), ("auditd_sequence_gap", "auditd"),
               ("session_unterminated", "teleport"), ("session_event_after_end", "teleport"),
               ("recording_not_uploaded", "teleport"),
               ("source_silent_during_session", "activity"))
GAP_WARN = 1000       # a serial gap this large is a WARN on its own
IDLE_HOURS = 24       # records further apart than this are separate segments
UPLOAD_GRACE_S = 3600  # a session ended this close to its cluster's last event: upload may follow


def findings(store: Store, start: datetime | None, end: datetime | None,
             gap_warn: int = GAP_WARN) -> list[dict]:
    """Host-side integrity findings for the period (all on record when start/end are None)."""
    from correlate.integrity.checks import _finding, sql
    values = {"start": start, "end": end, "gap_warn": gap_warn, "idle_hours": IDLE_HOURS,
              "grace_s": UPLOAD_GRACE_S}
    out = []
    for check_id, source in HOST_CHECKS:
        text = sql(check_id)
        params = {k: v for k, v in values.items() if f"${k}" in text}
        for severity, subject, detail, evidence in store.con.execute(text, params).fetchall():
            out.append(_finding(check_id, severity, subject, detail, evidence, source))
    return out
