"""Microsoft Entra PIM: Graph roleAssignmentScheduleRequests and directory AuditLogs -> approvals.

Input: a Graph page ``{"value": [...]}`` (pretty-printed or not), a bare JSON array, one
object, or JSON lines (each line a record or a page). Records of both kinds may be mixed;
line = where the record starts. PIM-for-groups requests (``groupId`` + ``accessId``) are read
too; Azure resource (ARM) role requests are not.

roleAssignmentScheduleRequest -> one approval per activation-type request (selfActivate,
  adminAssign, self/adminExtend, self/adminRenew, adminUpdate): approval_id = request id,
  account = principal.userPrincipalName when the page was fetched with $expand=principal,
  else principalId; target = roleDefinitionId + directoryScopeId (``<role-id>/`` tenant-wide,
  ``<role-id>/administrativeUnits/<id>``), ``group:<groupId>/<accessId>`` for groups;
  start = scheduleInfo.startDateTime (else createdDateTime); end = expiration.endDateTime,
  else start + expiration.duration (ISO 8601, weeks/days/hours/minutes/seconds), else
  9999-12-31 for noExpiration; ticket = ticketInfo.ticketNumber; approval_reason = justification
  (+ ticketSystem); requester = createdBy. Status: Provisioned/Granted/ScheduleCreated ->
  approved; Denied/Failed/Canceled -> denied; Revoked -> revoked (revoked_at =
  completedDateTime). Pending* requests are not in force: ignored.
  selfDeactivate / adminRemove requests revoke the activation they end (same targetScheduleId,
  else the latest one of the same principal, role and scope in force at that time) and are
  counted as ignored. Eligibility requests (context or @odata.type ``Eligibility``) grant
  nothing by themselves: ignored.
directoryAudit (AuditLogs) -> "Add member to role completed (PIM activation)" is an approval;
  fields come from additionalDetails BY KEY (case-insensitive: RequestId, StartTime,
  ExpirationTime, TicketNumber, TicketSystem, Justification, RoleDefinitionOriginId,
  DirectoryScopeId) and targetResources by type (User, Role), never by position.
  "... request approved (PIM activation)" sets the approver of the activation with the same
  RequestId / correlationId; "Remove member from role ... (PIM deactivate)" revokes it. Both
  are counted as ignored; every other audit event is ignored (event_type = its name).
"""

from __future__ import annotations

import bisect
import gzip
import json
import re
from datetime import datetime, timedelta, timezone
from json.decoder import scanstring
from pathlib import Path

from connectors.base import Options, Staged
from connectors.textlog import ignored_row, parse_iso, quarantined_row, staged_frames, zone_of
from correlate.errors import InputError

FOREVER = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)
ACTIVATE = {"selfactivate", "adminassign", "selfextend", "adminextend", "selfrenew",
            "adminrenew", "adminupdate"}
END = {"selfdeactivate", "adminremove"}
STATUS = {"provisioned": "approved", "granted": "approved", "schedulecreated": "approved",
          "denied": "denied", "failed": "denied", "canceled": "denied", "cancelled": "denied",
          "revoked": "revoked"}
_DURATION = re.compile(r"P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?")
_WS = re.compile(r"\s*")


def parse_duration(text: str) -> timedelta | None:
    """ISO 8601 duration without years or months (PT8H, P1DT2H30M, PT90S), else None."""
    m = _DURATION.fullmatch((text or "").strip().upper())
    if not m or not any(m.groups()) or text.strip().upper().endswith("T"):
        return None
    w, d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    return timedelta(weeks=w, days=d, hours=h, minutes=mi, seconds=s)


def _array(text: str, i: int, dec: json.JSONDecoder) -> tuple[list, int]:
    """(offset, value) of each element of the JSON array at text[i], and the end offset."""
    items, i = [], _WS.match(text, i + 1).end()
    while text[i] != "]":
        value, end = dec.raw_decode(text, i)
        items.append((i, value))
        i = _WS.match(text, end).end()
        if text[i] == ",":
            i = _WS.match(text, i + 1).end()
    return items, i + 1


def _document_items(text: str) -> tuple[list, str]:
    """Records (offset, value) of a whole-file JSON document, and its @odata.context."""
    dec = json.JSONDecoder()
    i = _WS.match(text).end()
    if text[i] == "[":
        return _array(text, i, dec)[0], ""
    if text[i] != "{":
        return [(i, json.loads(text))], ""
    items, context, start = None, "", i
    i = _WS.match(text, i + 1).end()
    while text[i] != "}":
        key, i = scanstring(text, i + 1)
        i = _WS.match(text, _WS.match(text, i).end() + 1).end()       # past ':'
        if key == "value" and text[i] == "[":
            items, i = _array(text, i, dec)
        else:
            value, i = dec.raw_decode(text, i)
            context = value if key == "@odata.context" and isinstance(value, str) else context
        i = _WS.match(text, i).end()
        if text[i] == ",":
            i = _WS.match(text, i + 1).end()
    return (items if items is not None else [(start, json.loads(text))]), context


def read_records(path: Path) -> list[tuple[int, str, object, str]]:
    """(line, raw, parsed value or None, page context) for every record in the file."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8-sig", errors="replace") as fh:
        text = fh.read()
    if not text.strip():
        return []
    lines = text.split("\n")
    try:
        json.loads(text)
    except ValueError as exc:
        # JSON lines (several values) also land here: they are read line by line below.
        if not any(_is_object(ln) for ln in [ln for ln in lines if ln.strip()][:5]):
            raise InputError(f"invalid JSON document: {exc.msg}", str(path), exc.lineno) from None
    else:
        breaks = [m.start() for m in re.finditer("\n", text)]
        items, context = _document_items(text)
        return [(bisect.bisect_right(breaks, off) + 1, json.dumps(v), v, context)
                for off, v in items]
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            out.append((n, line, None, ""))
            continue
        if isinstance(value, dict) and isinstance(value.get("value"), list):
            ctx = str(value.get("@odata.context", ""))
            out.extend((n, json.dumps(v), v, ctx) for v in value["value"])
        else:
            out.append((n, line, value, ""))
    return out


def _is_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _resource(rec: dict, *types: str) -> dict:
    """The first targetResources entry of one of `types` (matched by type, never by position)."""
    return next((t for t in rec.get("targetResources") or [] if isinstance(t, dict)
                 and str(t.get("type", "")).lower() in types), {})


def _reason(justification, system) -> str | None:
    """approvals.reason: the justification, and the ticket system when one is named."""
    parts = (justification, f"[ticketSystem={system}]" if system else None)
    return " ".join(x for x in parts if x) or None


def _get(d, *path):
    for key in path:
        d = d.get(key) if isinstance(d, dict) else None
    return d


class PimConnector:
    """Microsoft Entra PIM activations (Graph requests or AuditLogs)."""

    name = "pim"
    kinds = ("auto",)
    description = ("Microsoft Entra PIM: roleAssignmentScheduleRequests and directory AuditLogs "
                   "(approvals: role activations)")

    def stage(self, path: Path, kind: str, options: Options) -> list[Staged]:
        tz = zone_of(options)
        rows: dict[str, list[dict]] = {"approvals": [], "ignored": []}
        approvals, enders = [], []          # activation dicts; (line, raw, record, kind)
        for line, raw, value, context in read_records(path):
            if value is None:
                rows["approvals"].append(quarantined_row(line, raw, "invalid JSON"))
            elif not isinstance(value, dict):
                rows["approvals"].append(quarantined_row(line, raw, "JSON value is not an object"))
            elif "Eligibility" in context or "Eligibility" in str(value.get("@odata.type", "")):
                rows["ignored"].append(ignored_row(line, raw, "eligibility request"))
            elif "activityDisplayName" in value:
                self._audit(line, raw, value, tz, approvals, enders, rows)
            elif "action" in value and ("roleDefinitionId" in value or "groupId" in value):
                self._request(line, raw, value, tz, approvals, enders, rows)
            else:
                rows["approvals"].append(quarantined_row(
                    line, raw, "unrecognised record: neither a roleAssignmentScheduleRequest "
                               "nor a directoryAudit"))
        self._apply_enders(approvals, enders, rows)
        rows["approvals"].extend(a["row"] for a in approvals)
        rows["approvals"].sort(key=lambda r: r["line"])
        return staged_frames(rows)

    # -- Graph requests ------------------------------------------------------------------

    def _request(self, line, raw, rec, tz, approvals, enders, rows) -> None:
        action = str(rec.get("action") or "").lower()
        status = str(rec.get("status") or "").lower()
        if action in END:
            enders.append((line, raw, rec, f"{rec.get('action')}:{rec.get('status')}"))
            return
        if action not in ACTIVATE or status.startswith("pending") or status not in STATUS:
            rows["ignored"].append(ignored_row(line, raw, f"{rec.get('action')}:{rec.get('status')}"))
            return
        principal = _get(rec, "principal", "userPrincipalName") or rec.get("principalId")
        target = self._target(rec)
        start_text = _get(rec, "scheduleInfo", "startDateTime") or rec.get("createdDateTime")
        problem = next((f"missing required field: {name}" for name, v in (
            ("id", rec.get("id")), ("principalId", principal), ("roleDefinitionId", target),
            ("scheduleInfo.startDateTime", start_text)) if not v), None)
        start = end = None
        if problem is None:
            start, problem = parse_iso(str(start_text), tz)
        if problem is None:
            end, problem = self._end(_get(rec, "scheduleInfo", "expiration") or {}, start, tz)
        revoked_at = None
        if problem is None and STATUS[status] == "revoked":
            when = rec.get("completedDateTime") or rec.get("createdDateTime") or str(start_text)
            revoked_at, problem = parse_iso(str(when), tz)
        if problem is None and end < start:
            problem = "end before start"
        if problem:
            rows["approvals"].append(quarantined_row(line, raw, problem))
            return
        reason = _reason(rec.get("justification"), _get(rec, "ticketInfo", "ticketSystem"))
        approvals.append({
            "key": (str(rec.get("principalId") or principal).lower(), target.lower()),
            "schedule": rec.get("targetScheduleId"), "corr": None,
            "row": {"line": line, "raw": raw, "reason": None, "approval_id": str(rec["id"]),
                    "account": principal, "target": target, "start_ts": start, "end_ts": end,
                    "ticket": _get(rec, "ticketInfo", "ticketNumber") or None,
                    "requester": (_get(rec, "createdBy", "user", "userPrincipalName")
                                  or _get(rec, "createdBy", "user", "id")
                                  or _get(rec, "createdBy", "application", "displayName")),
                    "approver": None, "kind": "standard", "status": STATUS[status],
                    "revoked_at": revoked_at, "approval_reason": reason}})

    @staticmethod
    def _target(rec: dict) -> str | None:
        if rec.get("groupId"):
            return f"group:{rec['groupId']}/{rec.get('accessId') or 'member'}"
        role = rec.get("roleDefinitionId") or _get(rec, "roleDefinition", "id")
        if not role:
            return None
        scope = rec.get("directoryScopeId") or rec.get("appScopeId") or "/"
        return f"{role}{scope if scope.startswith('/') else '/' + scope}"

    @staticmethod
    def _end(exp: dict, start: datetime, tz) -> tuple[datetime | None, str | None]:
        if exp.get("endDateTime"):
            return parse_iso(str(exp["endDateTime"]), tz)
        if exp.get("duration"):
            delta = parse_duration(str(exp["duration"]))
            if delta is None:
                return None, (f"unsupported expiration.duration {str(exp['duration'])[:40]}: "
                              f"ISO 8601 weeks, days, hours, minutes, seconds only")
            return start + delta, None
        if str(exp.get("type", "")).lower() == "noexpiration":
            return FOREVER, None
        return None, "missing required field: expiration.endDateTime or expiration.duration"

    # -- AuditLogs -----------------------------------------------------------------------

    def _audit(self, line, raw, rec, tz, approvals, enders, rows) -> None:
        name = str(rec.get("activityDisplayName"))
        low = name.lower()
        details = {str(d.get("key", "")).lower(): d.get("value")
                   for d in rec.get("additionalDetails") or [] if isinstance(d, dict)}
        rec = dict(rec, _details=details)
        if "(pim activation)" in low and "request approved" in low:
            enders.append((line, raw, rec, name))
            return
        if low.startswith("remove member from role") and "deactivat" in low:
            enders.append((line, raw, rec, name))
            return
        if not ("(pim activation)" in low and low.startswith("add member to role completed")):
            rows["ignored"].append(ignored_row(line, raw, name))
            return
        user = _resource(rec, "user", "serviceprincipal", "group")
        role_res = _resource(rec, "role")
        principal = (user.get("userPrincipalName") or user.get("id")
                     or _get(rec, "initiatedBy", "user", "userPrincipalName"))
        role = details.get("roledefinitionoriginid") or role_res.get("id")
        scope = details.get("directoryscopeid") or "/"
        request = details.get("requestid") or rec.get("correlationId") or rec.get("id")
        start_text = details.get("starttime") or rec.get("activityDateTime")
        problem = next((f"missing required field: {n}" for n, v in (
            ("RequestId / correlationId", request), ("targetResources User", principal),
            ("RoleDefinitionOriginId or targetResources Role", role), ("StartTime", start_text),
            ("ExpirationTime", details.get("expirationtime"))) if not v), None)
        start = end = None
        if problem is None:
            start, problem = parse_iso(str(start_text), tz)
        if problem is None:
            end, problem = parse_iso(str(details["expirationtime"]), tz)
        if problem is None and end < start:
            problem = "end before start"
        if problem:
            rows["approvals"].append(quarantined_row(line, raw, problem))
            return
        reason = _reason(details.get("justification") or rec.get("resultReason"),
                         details.get("ticketsystem"))
        target = f"{role}{scope}"
        approvals.append({
            "key": (str(user.get("id") or principal).lower(), target.lower()),
            "schedule": None, "corr": {str(request), str(rec.get("correlationId"))},
            "row": {"line": line, "raw": raw, "reason": None, "approval_id": str(request),
                    "account": principal, "target": target, "start_ts": start, "end_ts": end,
                    "ticket": details.get("ticketnumber") or None,
                    "requester": _get(rec, "initiatedBy", "user", "userPrincipalName"),
                    "approver": None, "kind": "standard",
                    "status": "approved" if str(rec.get("result", "success")).lower() == "success"
                    else "denied",
                    "revoked_at": None, "approval_reason": reason}})

    # -- deactivations and approvals that refer to an activation -------------------------

    def _apply_enders(self, approvals: list, enders: list, rows: dict) -> None:
        for line, raw, rec, label in enders:
            rows["ignored"].append(ignored_row(line, raw, label))
            details = rec.get("_details")
            if details is not None and "request approved" in label.lower():
                ids = {str(details.get("requestid")), str(rec.get("correlationId"))} - {"None"}
                for a in approvals:
                    if a["corr"] and a["corr"] & ids:
                        a["row"]["approver"] = _get(rec, "initiatedBy", "user", "userPrincipalName")
                continue
            if details is not None:
                user, role_res = _resource(rec, "user"), _resource(rec, "role")
                role = details.get("roledefinitionoriginid") or role_res.get("id")
                key = (str(user.get("id") or user.get("userPrincipalName")).lower(),
                       f"{role}{details.get('directoryscopeid') or '/'}".lower())
                when, _ = parse_iso(str(rec.get("activityDateTime")), timezone.utc)
            else:
                status = str(rec.get("status") or "").lower()
                if status.startswith("pending") or STATUS.get(status) == "denied":
                    continue
                key = (str(rec.get("principalId")).lower(), str(self._target(rec)).lower())
                when, _ = parse_iso(str(rec.get("completedDateTime") or rec.get("createdDateTime")
                                        or _get(rec, "scheduleInfo", "startDateTime")), timezone.utc)
            if when is None:
                continue
            target = next((a for a in approvals if rec.get("targetScheduleId")
                           and a["schedule"] == rec.get("targetScheduleId")), None)
            if target is None:
                live = [a for a in approvals if a["key"] == key and a["row"]["status"] == "approved"
                        and a["row"]["start_ts"] <= when < a["row"]["end_ts"]]
                target = max(live, key=lambda a: a["row"]["start_ts"], default=None)
            if target is not None:
                target["row"].update(status="revoked", revoked_at=when)
