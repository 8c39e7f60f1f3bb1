"""Findings and detections as OCSF Detection Finding events (class 2004).

A finding (an action's verdict) is one object; a detection of an event rule is one object per
(action, rule); a sequence is one object listing every member action as evidence. Detections
carry the rule as `finding_info.analytic` and its ATT&CK techniques in `finding_info.attacks`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from datetime import datetime, timezone
from typing import IO, Iterable

from correlate import __version__
from correlate.findings import DESCRIPTIONS, Finding
from reports.detections import group_detections
from reports.export import iso

OCSF_VERSION = "1.3.0"
# time_dt and the *_dt times need the datetime profile, actor the host profile (OCSF 1.3.0);
# tests/test_ocsf_schema.py validates every object against the published schema with them.
PROFILES = ["datetime", "host"]
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
        "status_id": 1, "status": "New", "status_code": f.status,
        **({"status_detail": f.reason} if f.reason is not None else {}),
        "time": _ms(f.ts), "time_dt": iso(f.ts),
        "message": f"{f.verdict}: {f.account} on {f.target}",
        "metadata": _metadata(f.event_id, f.source, f.issue_key),
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
                     "outcome": f.outcome, "issue_key": f.issue_key,
                     "exception": f.exception, **_outcome_status(f.outcome)},
    }


def _metadata(event_id: str, source: str, issue_key: str | None) -> dict:
    """The action's id as the event's uid, its source as the log name; the issue key (the gap
    report's group) as correlation_uid: every object of one issue shares it."""
    return {"version": OCSF_VERSION, "profiles": PROFILES,
            "product": {"name": "pamcorr", "vendor_name": "pamcorr", "version": __version__},
            "uid": event_id, "log_name": source,
            **({"correlation_uid": issue_key} if issue_key is not None else {})}


def _outcome_status(outcome: str | None) -> dict:
    if outcome not in OUTCOME_STATUS:
        return {}
    status_id, status = OUTCOME_STATUS[outcome]
    return {"outcome_status_id": status_id, "outcome_status": status}


def write_ocsf(findings: Iterable[Finding], out: IO[str], created: datetime | None = None,
               detections: Iterable[dict] = ()) -> int:
    """A JSON array of Detection Findings (the findings, then the detections), streamed one
    object per line."""
    n = 0
    out.write("[")
    objects = itertools.chain((ocsf_finding(f, created) for f in findings),
                              (ocsf_detection(g, created) for g in group_detections(detections)))
    for obj in objects:
        out.write(",\n" if n else "\n")
        out.write(json.dumps(obj, ensure_ascii=False, sort_keys=True))
        n += 1
    out.write("\n]\n")
    return n


# Detection severities (correlate/detect/rules.py SEVERITIES) -> OCSF severity_id, severity.
DETECTION_SEVERITY = {"info": (1, "Informational"), "low": (2, "Low"), "medium": (3, "Medium"),
                      "high": (4, "High"), "critical": (5, "Critical")}
# review -> OCSF finding status_id, status: a muted detection is Suppressed, never dropped.
REVIEW_STATUS = {"FAIL": (1, "New"), "needs_review": (1, "New"), "MUTED": (3, "Suppressed")}
ATTACK_VERSION = "v15"


def attacks(ids: Iterable[str]) -> list[dict]:
    """OCSF attack objects for ATT&CK ids: T1562.012 -> technique T1562 + sub_technique
    T1562.012, named (and with its tactic) when the id is one pamcorr's rules use."""
    out = []
    for aid in ids:
        tech = aid.split(".")[0]
        obj: dict = {"technique": _named(tech), "version": ATTACK_VERSION}
        if tech != aid:
            obj["sub_technique"] = _named(aid)
        if tech in ATTACK_TACTICS:
            uid, name = ATTACK_TACTICS[tech]
            obj["tactic"] = {"uid": uid, "name": name}
        out.append(obj)
    return out


def _named(uid: str) -> dict:
    return {"uid": uid, **({"name": ATTACK_NAMES[uid]} if uid in ATTACK_NAMES else {})}


def detection_uid(members: list[dict]) -> str:
    """Stable id: of (source, event_id, rule) for one action, of the sequence for a sequence."""
    first = members[0]
    if first["sequence_id"] is None:
        text = "\x1f".join((first["source"], first["event_id"], first["rule_id"]))
    else:
        text = "\x1f".join(["sequence", first["rule_id"]]
                           + [f"{m['source']}\x1e{m['event_id']}" for m in members])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


_REVIEW_ORDER = {"FAIL": 0, "needs_review": 1, "MUTED": 2}


def ocsf_detection(members: list[dict], created: datetime | None = None) -> dict:
    """One Detection Finding for one detection (or one sequence: `members` in order)."""
    first = members[0]
    review = min((m["review"] for m in members), key=_REVIEW_ORDER.__getitem__)
    severity_id, severity = DETECTION_SEVERITY.get(first["severity"], (0, "Unknown"))
    status_id, status = REVIEW_STATUS[review]
    start, end = min(m["ts"] for m in members), max(m["ts"] for m in members)
    accounts = sorted({m["account"] for m in members})
    targets = sorted({m["target"] for m in members})
    return {
        "class_uid": CLASS_UID, "class_name": "Detection Finding",
        "category_uid": CATEGORY_UID, "category_name": "Findings",
        "activity_id": ACTIVITY_CREATE, "activity_name": "Create",
        "type_uid": CLASS_UID * 100 + ACTIVITY_CREATE, "type_name": "Detection Finding: Create",
        "severity_id": severity_id, "severity": severity,
        "status_id": status_id, "status": status, "status_code": review,
        **({"status_detail": first["muted_by"]}
           if review == "MUTED" and first["muted_by"] is not None else {}),
        "time": _ms(end), "time_dt": iso(end),
        "message": f"{first['title']}: {', '.join(accounts)} on {', '.join(targets)}",
        "metadata": _metadata(first["event_id"], first["source"], first.get("issue_key")),
        "finding_info": {
            "uid": detection_uid(members), "title": first["title"],
            **({"desc": first["description"]} if first["description"] is not None else {}),
            "types": ["risky action", first["class"]],
            "analytic": {"uid": first["rule_id"], "name": first["title"], "type_id": 1,
                         "type": "Rule"},
            "attacks": attacks(first["attack"]), "created_time": _ms(created or end),
            "first_seen_time": _ms(start), "last_seen_time": _ms(end)},
        "actor": {"user": {"name": first["account"]},
                  **({"session": {"uid": first["session_id"]}} if first["session_id"] else {})},
        "resources": [{"name": t, "type": "target"} for t in targets],
        "evidences": [{"actor": {"user": {"name": m["account"]}},
                       "data": {"event_id": m["event_id"], "source": m["source"],
                                "time_dt": iso(m["ts"]), "target": m["target"],
                                "action": m["action"], "detail": m["detail"],
                                "position": m["position"], "verdict": m["verdict"],
                                "approval_id": m["approval_id"], "ticket_id": m["ticket_id"],
                                "review": m["review"]}}
                      for m in members],
        "unmapped": {"rule_id": first["rule_id"], "class": first["class"],
                     "review": review, "muted_by": first["muted_by"],
                     "verdict": first["verdict"], "approval_id": first["approval_id"],
                     "ticket_id": first["ticket_id"], "ticket_title": first["ticket_title"],
                     "sequence_id": first["sequence_id"], "run_id": first["run_id"],
                     "is_alert": review != "MUTED", "related_events_count": len(members),
                     "issue_key": first.get("issue_key")},
    }


# Names of the ATT&CK (Enterprise) techniques and their first tactic, for the ids pamcorr's
# rules use; other ids are written with their uid only.
ATTACK_NAMES = {
    "T1048": "Exfiltration Over Alternative Protocol",
    "T1053": "Scheduled Task/Job", "T1053.003": "Cron",
    "T1070": "Indicator Removal", "T1070.002": "Clear Linux or Mac System Logs",
    "T1070.003": "Clear Command History",
    "T1078": "Valid Accounts", "T1078.004": "Cloud Accounts",
    "T1098": "Account Manipulation", "T1098.001": "Additional Cloud Credentials",
    "T1098.003": "Additional Cloud Roles", "T1098.004": "SSH Authorized Keys",
    "T1110": "Brute Force", "T1136": "Create Account",
    "T1485": "Data Destruction", "T1490": "Inhibit System Recovery",
    "T1543": "Create or Modify System Process", "T1543.002": "Systemd Service",
    "T1546": "Event Triggered Execution", "T1546.004": "Unix Shell Configuration Modification",
    "T1548": "Abuse Elevation Control Mechanism", "T1548.001": "Setuid and Setgid",
    "T1548.003": "Sudo and Sudo Caching",
    "T1552": "Unsecured Credentials", "T1552.007": "Container API",
    "T1555": "Credentials from Password Stores",
    "T1562": "Impair Defenses", "T1562.001": "Disable or Modify Tools",
    "T1562.004": "Disable or Modify System Firewall", "T1562.008": "Disable or Modify Cloud Logs",
    "T1562.012": "Disable or Modify Linux Audit System",
}
ATTACK_TACTICS = {
    "T1048": ("TA0010", "Exfiltration"), "T1053": ("TA0003", "Persistence"),
    "T1070": ("TA0005", "Defense Evasion"), "T1078": ("TA0005", "Defense Evasion"),
    "T1098": ("TA0003", "Persistence"), "T1110": ("TA0006", "Credential Access"),
    "T1136": ("TA0003", "Persistence"), "T1485": ("TA0040", "Impact"),
    "T1490": ("TA0040", "Impact"), "T1543": ("TA0003", "Persistence"),
    "T1546": ("TA0003", "Persistence"), "T1548": ("TA0004", "Privilege Escalation"),
    "T1552": ("TA0006", "Credential Access"), "T1555": ("TA0006", "Credential Access"),
    "T1562": ("TA0005", "Defense Evasion"),
}
