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
  else the latest one of the same principal, role and scope in force at that time); those not in
  effect (pending, denied, no time) are ignored. Eligibility requests (context or @odata.type ``Eligibility``) grant
  nothing by themselves: ignored.
directoryAudit (AuditLogs) -> "Add member to role completed (PIM activation)" is an approval;
  fields come from additionalDetails BY KEY (case-insensitive: RequestId, StartTime,
  ExpirationTime, TicketNumber, TicketSystem, Justification, RoleDefinitionOriginId,
  DirectoryScopeId) and targetResources by type (User, Role), never by position.
  "... request approved (PIM activation)" sets the approver of the activation with the same
  RequestId / correlationId; "Remove member from role ... (PIM deactivate)" revokes it.
  "Add member to role outside of PIM ..." (a role assigned directly, bypassing PIM) is activity:
  action pim.add_member_outside_pim, account = the member, actor = who assigned it, target =
  the role + scope as above; the approval hygiene check approval_bypass reports it (FAIL). Every
  other audit event is ignored (event_type = its name).

Activations, deactivations and approval records are staged as approval events
(connectors/approval_events.py, fold key = principal + role + scope) and folded by the store
over every file ingested (APPROVAL_FOLD_SQL): a deactivation or approval in a later file, or in
an earlier one, applies as within one file; one matching no activation stays pending.
Graph writes times in UTC (Z); a zone-less one is read in --tz, and one that a daylight-saving
change makes ambiguous or non-existent is quarantined unless options.extra['dst'] is
`earlier` or `later` (connectors.base.local_to_utc).
"""

from __future__ import annotations

import bisect
import gzip
import json
import re
from datetime import datetime, timedelta, timezone
from json.decoder import scanstring
from pathlib import Path
from typing import NamedTuple
from zoneinfo import ZoneInfo

from connectors.approval_events import Fold, event_key, event_row, events_batch, field_ts, iso_sql
from connectors.base import (TS_RANGE, Options, Staged, dst_of, local_to_utc, naive_iso,
                             ts_problem)
from connectors.textlog import ignored_row, quarantined_row, staged_frames, zone_of
from connectors.textlog import parse_iso as _parse_iso
from correlate.errors import InputError

FOREVER = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)


class LocalZone(NamedTuple):
    """The source zone (--tz) and the choice for local times a DST change makes ambiguous or
    non-existent (--option dst=earlier|later; None: quarantined)."""

    zone: ZoneInfo
    dst: str | None


def parse_iso(text: str, tz) -> tuple[datetime | None, str | None]:
    """textlog.parse_iso, with a zone-less time in a LocalZone read by connectors.base
    local_to_utc (DST changes refused unless the dst option picks)."""
    if isinstance(tz, LocalZone):
        naive = naive_iso(text)
        if naive is not None:
            return local_to_utc(naive, tz.zone, tz.dst)
        tz = tz.zone
    return _parse_iso(text, tz)
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
    try:
        return timedelta(weeks=w, days=d, hours=h, minutes=mi, seconds=s)
    except OverflowError:       # P99999999999W: no timestamp can end that late
        return timedelta.max


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
    except RecursionError:
        pass    # nested too deeply for a document: read line by line, the deep line quarantined
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
        except (ValueError, RecursionError):     # RecursionError: nested too deeply
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
    except (ValueError, RecursionError):
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


def _key(principal, target) -> str:
    """The fold key: the principal and the role + scope (lower case)."""
    return f"{str(principal).lower()}\x1f{str(target).lower()}"


# Activations, deactivations and approval records of the same principal and role + scope
# (fold_events), wherever they were read. The latest record of a request id wins (by time, then
# ingest order, then line). A deactivation ends the activation of its targetScheduleId that
# started last at or before it (else the first of that schedule); without one, the latest
# approved activation in force at that time; the earliest deactivation counts. An approval
# record sets the approver of the activation with the same RequestId / correlationId. A
# deactivation or approval matching no activation stays pending until the activation arrives.
APPROVAL_FOLD_SQL = f"""
WITH ev AS (SELECT *, struct_pack(t := ts, i := ingest_id, l := line) AS ord FROM fold_events),
a AS (
    SELECT approval_id, fold_key, ord, fields->>'account' AS account,
        fields->>'target' AS target, {field_ts('start_ts')} AS start_ts,
        {field_ts('end_ts')} AS end_ts, fields->>'ticket' AS ticket,
        fields->>'requester' AS requester, fields->>'status' AS status,
        {field_ts('revoked_at')} AS revoked_at, fields->>'approval_reason' AS approval_reason,
        fields->>'schedule' AS schedule, from_json(fields->'ids', '["VARCHAR"]') AS ids
    FROM ev WHERE event = 'activation'
    QUALIFY row_number() OVER (PARTITION BY approval_id ORDER BY ord DESC) = 1),
d AS (
    SELECT approval_id AS ender, fold_key, {field_ts('at')} AS ended, fields->>'schedule' AS schedule,
        fields->>'principal' AS principal, fields->>'target' AS target
    FROM ev WHERE event = 'deactivation'),
by_schedule AS (
    SELECT d.ender, d.ended, coalesce(
        arg_max(a.approval_id, struct_pack(s := a.start_ts, o := a.ord))
            FILTER (WHERE a.start_ts <= d.ended),
        arg_min(a.approval_id, a.ord)) AS approval_id
    FROM d JOIN a ON a.schedule = d.schedule GROUP BY d.ender, d.ended),
by_time AS (
    SELECT d.ender, d.ended, arg_max(a.approval_id, struct_pack(s := a.start_ts, o := a.ord))
        AS approval_id
    FROM d JOIN a ON a.fold_key = d.fold_key AND a.status = 'approved'
                 AND a.start_ts <= d.ended AND d.ended < a.end_ts
    WHERE d.ender NOT IN (SELECT ender FROM by_schedule)
    GROUP BY d.ender, d.ended),
ends AS (SELECT approval_id, min(ended) AS ended
         FROM (SELECT * FROM by_schedule UNION ALL SELECT * FROM by_time) e GROUP BY approval_id),
p AS (
    SELECT approval_id AS approval, fold_key, ord, fields->>'approver' AS approver,
        from_json(fields->'ids', '["VARCHAR"]') AS ids
    FROM ev WHERE event = 'approval'),
who AS (
    SELECT a.approval_id, arg_max(p.approver, p.ord) AS approver
    FROM a JOIN p ON list_has_any(a.ids, p.ids) GROUP BY a.approval_id)
SELECT a.approval_id, a.fold_key, a.account, a.target, a.start_ts, a.end_ts, a.ticket,
    a.requester, who.approver, 'standard' AS kind,
    CASE WHEN ends.ended IS NOT NULL AND a.status IN ('approved', 'revoked') THEN 'revoked'
         ELSE a.status END AS status,
    CASE WHEN ends.ended IS NOT NULL AND a.status IN ('approved', 'revoked')
         THEN least(a.revoked_at, ends.ended) ELSE a.revoked_at END AS revoked_at,
    a.approval_reason, NULL::VARCHAR[] AS targets, NULL::VARCHAR AS problem
FROM a LEFT JOIN ends USING (approval_id) LEFT JOIN who USING (approval_id)
UNION ALL
SELECT ender, fold_key, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'revoked', ended, NULL, NULL,
    'deactivation of ' || coalesce(principal, '?') || ' on ' || coalesce(target, '?') || ' at '
        || coalesce({iso_sql('ended')}, '?') || ' matches no stored activation'
FROM d WHERE ender NOT IN (SELECT ender FROM by_schedule UNION ALL SELECT ender FROM by_time)
UNION ALL
SELECT approval, fold_key, NULL, NULL, NULL, NULL, NULL, NULL, approver, NULL, 'approved', NULL,
    NULL, NULL, 'approval of request ' || array_to_string(ids, ' / ')
        || ' matches no stored activation'
FROM p WHERE NOT EXISTS (SELECT 1 FROM a WHERE list_has_any(a.ids, p.ids))
"""


class PimConnector:
    """Microsoft Entra PIM activations (Graph requests or AuditLogs)."""

    name = "pim"
    kinds = ("auto",)
    approval_fold = Fold(APPROVAL_FOLD_SQL)
    description = ("Microsoft Entra PIM: roleAssignmentScheduleRequests and directory AuditLogs "
                   "(approvals: role activations)")

    def stage(self, path: Path, kind: str, options: Options) -> list[Staged]:
        tz = LocalZone(zone_of(options), dst_of(options)) if options.tz else None
        events: list[dict] = []
        ignored: list[dict] = []
        acts: list[dict] = []      # roles assigned outside of PIM (activity)
        for line, raw, value, context in read_records(path):
            if value is None:
                events.append(quarantined_row(line, raw, "invalid JSON"))
            elif not isinstance(value, dict):
                events.append(quarantined_row(line, raw, "JSON value is not an object"))
            elif "Eligibility" in context or "Eligibility" in str(value.get("@odata.type", "")):
                ignored.append(ignored_row(line, raw, "eligibility request"))
            elif "activityDisplayName" in value:
                self._audit(line, raw, value, tz, events, ignored, acts)
            elif "action" in value and ("roleDefinitionId" in value or "groupId" in value):
                self._request(line, raw, value, tz, events, ignored)
            else:
                events.append(quarantined_row(
                    line, raw, "unrecognised record: neither a roleAssignmentScheduleRequest "
                               "nor a directoryAudit"))
        # activity before the approval events: the store folds those last (ingest_events)
        return (staged_frames({"activity": acts}) + [events_batch(events)]
                + staged_frames({"ignored": ignored}))

    @staticmethod
    def _event(line, raw, rec, fold_key, approval_id, event, ts, fields) -> dict:
        key = event_key("pim", json.dumps(rec, sort_keys=True, default=str))
        return event_row(line, raw, fold_key, approval_id, key, event, ts, fields)

    # -- Graph requests ------------------------------------------------------------------

    def _request(self, line, raw, rec, tz, events, ignored) -> None:
        action = str(rec.get("action") or "").lower()
        status = str(rec.get("status") or "").lower()
        label = f"{rec.get('action')}:{rec.get('status')}"
        if action in END:
            when = None
            if not (status.startswith("pending") or STATUS.get(status) == "denied"):
                when, _ = self._iso(str(rec.get("completedDateTime") or rec.get("createdDateTime")
                                        or _get(rec, "scheduleInfo", "startDateTime")),
                                    timezone.utc)
            if when is None:            # not in effect (pending, denied) or no time
                ignored.append(ignored_row(line, raw, label))
                return
            principal, target = rec.get("principalId"), self._target(rec)
            events.append(self._event(
                line, raw, rec, _key(principal, target), f"deactivation:{rec.get('id')}",
                "deactivation", when, {"at": when, "schedule": rec.get("targetScheduleId"),
                                       "principal": principal, "target": target}))
            return
        if action not in ACTIVATE or status.startswith("pending") or status not in STATUS:
            ignored.append(ignored_row(line, raw, label))
            return
        principal = _get(rec, "principal", "userPrincipalName") or rec.get("principalId")
        target = self._target(rec)
        start_text = _get(rec, "scheduleInfo", "startDateTime") or rec.get("createdDateTime")
        problem = next((f"missing required field: {name}" for name, v in (
            ("id", rec.get("id")), ("principalId", principal), ("roleDefinitionId", target),
            ("scheduleInfo.startDateTime", start_text)) if not v), None)
        start = end = None
        if problem is None:
            start, problem = self._iso(str(start_text), tz)
        if problem is None:
            end, problem = self._end(_get(rec, "scheduleInfo", "expiration") or {}, start, tz)
        revoked_at = None
        if problem is None and STATUS[status] == "revoked":
            when = rec.get("completedDateTime") or rec.get("createdDateTime") or str(start_text)
            revoked_at, problem = self._iso(str(when), tz)
        if problem is None and end < start:
            problem = "end before start"
        if problem:
            events.append(quarantined_row(line, raw, problem))
            return
        reason = _reason(rec.get("justification"), _get(rec, "ticketInfo", "ticketSystem"))
        events.append(self._event(
            line, raw, rec, _key(rec.get("principalId") or principal, target), str(rec["id"]),
            "activation", start, {
                "account": principal, "target": target, "start_ts": start, "end_ts": end,
                "ticket": _get(rec, "ticketInfo", "ticketNumber") or None,
                "requester": (_get(rec, "createdBy", "user", "userPrincipalName")
                              or _get(rec, "createdBy", "user", "id")
                              or _get(rec, "createdBy", "application", "displayName")),
                "status": STATUS[status], "revoked_at": revoked_at, "approval_reason": reason,
                "schedule": rec.get("targetScheduleId"), "ids": None}))

    @staticmethod
    def _target(rec: dict) -> str | None:
        if rec.get("groupId"):
            return f"group:{rec['groupId']}/{rec.get('accessId') or 'member'}"
        role = rec.get("roleDefinitionId") or _get(rec, "roleDefinition", "id")
        if not role:
            return None
        scope = rec.get("directoryScopeId") or rec.get("appScopeId") or "/"
        return f"{role}{scope if scope.startswith('/') else '/' + scope}"

    def _iso(self, text: str, tz) -> tuple[datetime | None, str | None]:
        """An ISO time; a zone-less one is read in `tz`, ambiguous DST times quarantined."""
        return parse_iso(text, tz)

    def _end(self, exp: dict, start: datetime, tz) -> tuple[datetime | None, str | None]:
        if exp.get("endDateTime"):
            return self._iso(str(exp["endDateTime"]), tz)
        if exp.get("duration"):
            delta = parse_duration(str(exp["duration"]))
            if delta is None:
                return None, (f"unsupported expiration.duration {str(exp['duration'])[:40]}: "
                              f"ISO 8601 weeks, days, hours, minutes, seconds only")
            try:
                return start + delta, ts_problem(start + delta, f"start + {exp['duration']}")
            except OverflowError:
                return None, (f"timestamp out of range ({TS_RANGE}): start + "
                              f"{str(exp['duration'])[:40]}")
        if str(exp.get("type", "")).lower() == "noexpiration":
            return FOREVER, None
        return None, "missing required field: expiration.endDateTime or expiration.duration"

    # -- AuditLogs -----------------------------------------------------------------------

    def _audit(self, line, raw, rec, tz, events, ignored, acts) -> None:
        name = str(rec.get("activityDisplayName"))
        low = name.lower()
        details = {str(d.get("key", "")).lower(): d.get("value")
                   for d in rec.get("additionalDetails") or [] if isinstance(d, dict)}
        user = _resource(rec, "user", "serviceprincipal", "group")
        role_res = _resource(rec, "role")
        role = details.get("roledefinitionoriginid") or role_res.get("id")
        target = f"{role}{details.get('directoryscopeid') or '/'}"
        ids = sorted({str(v) for v in (details.get("requestid"), rec.get("correlationId")) if v})
        if "(pim activation)" in low and "request approved" in low:
            when, _ = self._iso(str(rec.get("activityDateTime")), timezone.utc)
            if not (user.get("id") or user.get("userPrincipalName")) or not role or not ids \
                    or when is None:
                ignored.append(ignored_row(line, raw, f"{name} (no User, Role, RequestId or "
                                                      f"time: matches no activation)"))
                return
            events.append(self._event(
                line, raw, rec, _key(user.get("id") or user.get("userPrincipalName"), target),
                f"approval:{ids[0]}", "approval", when,
                {"approver": _get(rec, "initiatedBy", "user", "userPrincipalName"), "ids": ids}))
            return
        if low.startswith("add member to role outside of pim"):
            acts.append(self._outside(line, raw, rec, name, user, role, target))
            return
        if low.startswith("remove member from role") and "deactivat" in low:
            when, _ = self._iso(str(rec.get("activityDateTime")), timezone.utc)
            if when is None:
                ignored.append(ignored_row(line, raw, name))
                return
            principal = user.get("id") or user.get("userPrincipalName")
            events.append(self._event(
                line, raw, rec, _key(principal, target),
                f"deactivation:{rec.get('id') or rec.get('correlationId')}", "deactivation", when,
                {"at": when, "schedule": None, "principal": principal, "target": target}))
            return
        if not ("(pim activation)" in low and low.startswith("add member to role completed")):
            ignored.append(ignored_row(line, raw, name))
            return
        principal = (user.get("userPrincipalName") or user.get("id")
                     or _get(rec, "initiatedBy", "user", "userPrincipalName"))
        request = details.get("requestid") or rec.get("correlationId") or rec.get("id")
        start_text = details.get("starttime") or rec.get("activityDateTime")
        problem = next((f"missing required field: {n}" for n, v in (
            ("RequestId / correlationId", request), ("targetResources User", principal),
            ("RoleDefinitionOriginId or targetResources Role", role), ("StartTime", start_text),
            ("ExpirationTime", details.get("expirationtime"))) if not v), None)
        start = end = None
        if problem is None:
            start, problem = self._iso(str(start_text), tz)
        if problem is None:
            end, problem = self._iso(str(details["expirationtime"]), tz)
        if problem is None and end < start:
            problem = "end before start"
        if problem:
            events.append(quarantined_row(line, raw, problem))
            return
        reason = _reason(details.get("justification") or rec.get("resultReason"),
                         details.get("ticketsystem"))
        events.append(self._event(
            line, raw, rec, _key(user.get("id") or principal, target), str(request), "activation",
            start, {
                "account": principal, "target": target, "start_ts": start, "end_ts": end,
                "ticket": details.get("ticketnumber") or None,
                "requester": _get(rec, "initiatedBy", "user", "userPrincipalName"),
                "status": "approved" if str(rec.get("result", "success")).lower() == "success"
                else "denied",
                "revoked_at": None, "approval_reason": reason, "schedule": None,
                "ids": sorted({str(request)} | ({str(rec["correlationId"])}
                                                if rec.get("correlationId") else set()))}))

    def _outside(self, line, raw, rec, name, user, role, target) -> dict:
        """A role assigned outside of PIM: an activity row (approval hygiene: approval_bypass)."""
        when, problem = self._iso(str(rec.get("activityDateTime")), timezone.utc)
        member = user.get("userPrincipalName") or user.get("id")
        problem = problem or next((f"missing required field: {n}" for n, v in (
            ("targetResources User", member),
            ("RoleDefinitionOriginId or targetResources Role", role)) if not v), None)
        if problem:
            return quarantined_row(line, raw, problem)
        result = str(rec.get("result") or "").lower()
        return {
            "line": line, "raw": raw, "reason": None,
            "event_id": str(rec.get("id") or event_key("pim", json.dumps(rec, sort_keys=True))),
            "ts": when, "account": member, "target": target,
            "action": "pim.add_member_outside_pim",
            "detail": f"{name}: {_resource(rec, 'role').get('displayName') or role}",
            "session_id": None,
            "actor": (_get(rec, "initiatedBy", "user", "userPrincipalName")
                      or _get(rec, "initiatedBy", "app", "displayName")),
            "approval_ref": None, "actor_kind": None, "read_only": False, "attrs": None,
            "outcome": ("success" if result == "success" else "failure"
                        if result in ("failure", "failed") else None)}
