"""Findings as OCSF Detection Finding events (class 2004): one Finding in, one JSON object out."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import IO, Iterable

from correlate import __version__
from correlate.findings import DESCRIPTIONS, Finding
from reports.export import iso

OCSF_VERSION = "1.3.0"
CLASS_UID, CATEGORY_UID, ACTIVITY_CREATE = 2004, 2, 1

# status -> (severity_id, severity): PASS is kept as evidence of a control that worked.
SEVERITY = {"PASS": (1, "Informational"), "INFO": (1, "Informational"), "WARN": (3, "Medium"),
            "FAIL": (4, "High")}

# The action's outcome in OCSF's status enum (status_id 0 Unknown, 1 Success, 2 Failure). The
# finding's own status/status_id stay the finding workflow's ("New"); the action's outcome goes
# under unmapped as outcome_status/outcome_status_id.
OUTCOME_STATUS = {"success": (1, "Success"), "failure": (2, "Failure"), "unknown": (0, "Unknown")}


def finding_uid(source: str, event_id: str, verdict: str) -> str:
    """Stable id of "this action got this verdict": same in every run and every export."""
    text = "\x1f".join((source, event_id, verdict))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _ms(ts: datetime | None) -> int | None:
    if ts is None:
        return None
    return int(ts.astimezone(timezone.utc).timestamp() * 1000)


def ocsf_finding(f: Finding, created: datetime | None = None) -> dict:
    """One Detection Finding. `created` is when the run judged it (defaults to the action's time)."""
    severity_id, severity = SEVERITY.get(f.status, (0, "Unknown"))
    created = created or f.ts
    return {
        "class_uid": CLASS_UID, "class_name": "Detection Finding",
        "category_uid": CATEGORY_UID, "category_name": "Findings",
        "activity_id": ACTIVITY_CREATE, "activity_name": "Create",
        "type_uid": CLASS_UID * 100 + ACTIVITY_CREATE, "type_name": "Detection Finding: Create",
        "severity_id": severity_id, "severity": severity,
        "status_id": 1, "status": "New", "status_code": f.status, "status_detail": f.reason,
        "time": _ms(f.ts), "time_dt": iso(f.ts),
        "message": f"{f.verdict}: {f.account} on {f.target}",
        "metadata": {"version": OCSF_VERSION,
                     "product": {"name": "pamcorr", "vendor_name": "pamcorr",
                                 "version": __version__},
                     "original_uid": f.event_id, "log_name": f.source},
        "finding_info": {"uid": finding_uid(f.source, f.event_id, f.verdict),
                         "title": f.verdict, "desc": DESCRIPTIONS.get(f.verdict, ""),
                         "types": ["privileged access"], "created_time": _ms(created),
                         "first_seen_time": _ms(f.ts), "last_seen_time": _ms(f.ts)},
        "actor": {"user": {"name": f.account},
                  **({"session": {"uid": f.session_id}} if f.session_id else {})},
        "resources": [{"name": f.target, "type": "target"}],
        "unmapped": {"verdict": f.verdict, "approval_id": f.approval_id,
                     "ticket_id": f.ticket_id, "gap_seconds": f.gap_seconds,
                     "reason": f.reason, "action": f.action, "detail": f.detail,
                     "actor": f.actor, "event_id": f.event_id, "run_id": f.run_id,
                     "outcome": f.outcome,
                     **_outcome_status(f.outcome)},
    }


def _outcome_status(outcome: str | None) -> dict:
    if outcome not in OUTCOME_STATUS:
        return {}
    status_id, status = OUTCOME_STATUS[outcome]
    return {"outcome_status_id": status_id, "outcome_status": status}


def write_ocsf(findings: Iterable[Finding], out: IO[str], created: datetime | None = None) -> int:
    """A JSON array of Detection Findings, streamed one object per line."""
    n = 0
    out.write("[")
    for f in findings:
        out.write(",\n" if n else "\n")
        out.write(json.dumps(ocsf_finding(f, created), ensure_ascii=False, sort_keys=True))
        n += 1
    out.write("\n]\n")
    return n
