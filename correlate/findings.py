"""Verdict names, their statuses and order: the vocabulary findings and reports share."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from datetime import datetime

# In the order the best candidate wins (docs/verdicts.md), then the no-candidate verdicts.
VERDICTS: dict[str, str] = {
    "approved": "PASS",
    "approved_in_grace": "WARN",
    "break_glass": "WARN",
    "ticket_invalid": "FAIL",
    "ticket_missing": "FAIL",
    "break_glass_unreviewed": "FAIL",
    "out_of_window": "FAIL",
    "unapproved": "FAIL",
    # the source says the action failed: kept (detections read it), never judged as work done
    "attempt_failed": "INFO",
}

DESCRIPTIONS: dict[str, str] = {
    "approved": "inside an approved window with a valid ticket",
    "approved_in_grace": "inside the grace period around an approved window, valid ticket",
    "break_glass": "under a break-glass approval whose ticket was opened within 24 h",
    "ticket_invalid": "covered by a window whose ticket was not valid at the time",
    "ticket_missing": "covered by a window that cites no ticket",
    "break_glass_unreviewed": "break-glass with no ticket opened within 24 h",
    "out_of_window": "outside every approval window (nearest within the lookaround)",
    "unapproved": "no applicable approval at all",
    "attempt_failed": "a failed attempt (the source says it failed): not work done, reported apart",
}

# Statuses from worst to best; INFO is reported apart and never counts for --fail-on.
STATUSES = ("FAIL", "WARN", "PASS", "INFO")

@dataclass(frozen=True)
class Finding:
    """One activity row and its verdict in one run: what every output format writes."""

    event_id: str
    source: str
    ts: datetime
    account: str
    target: str
    action: str | None
    detail: str | None
    session_id: str | None
    actor: str | None
    verdict: str
    status: str
    approval_id: str | None
    ticket_id: str | None
    gap_seconds: float | None
    reason: str | None
    run_id: int
    match_via: str | None = None      # identity/target mapping that made the match
    identity_kind: str | None = None  # human | service | bot, when known
    outcome: str | None = None        # success | failure | unknown; None: the source says nothing
    issue_key: str | None = None      # the gap report's issue group (issue_key below)
    exception: str | None = None      # the accepted exception covering it ([[exceptions]])


FINDING_FIELDS = tuple(f.name for f in fields(Finding))

def issue_key(account: str, target: str, verdict: str | None, rule_id: str | None = None) -> str:
    """The issue a finding (or a detection, with its rule) belongs to, as the gap report groups
    them: `iss-` and 12 hex digits of sha256(account US target US verdict[ US rule_id]), US the
    unit separator. The same in every run, export and report; queries.issue_key_sql is its SQL."""
    parts = [account, target, verdict or ""] + ([rule_id] if rule_id is not None else [])
    return "iss-" + hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:12]
