"""Fetch ServiceNow change requests and their approvals as pamcorr tickets.

Table API, with ``requests``:

* ``GET /api/now/table/change_request`` with
  ``sysparm_query=numberIN<CHG...>^ORsys_idIN<sys_id...>^ORDERBYsys_id``
  (references validated first, see ``connectors.ticket_refs``),
  ``sysparm_display_value=false`` (times are then UTC ``YYYY-MM-DD HH:MM:SS``),
  ``sysparm_exclude_reference_link=true``, ``sysparm_fields`` from an
  allow-list, and ``sysparm_limit`` / ``sysparm_offset`` paging until the
  ``X-Total-Count`` header is reached;
* ``GET /api/now/table/sysapproval_approver`` with
  ``sysparm_query=sysapprovalIN<change sys_ids>`` for the approval records;
* ``GET /api/now/table/sys_audit`` with ``tablename=change_request^fieldname=state^
  documentkeyIN<change sys_ids>`` for the state history. When it cannot be used the
  ticket carries ``history_note`` (why) and is judged by its current state.

A ticket carries ``aliases``: the other references that cited the change (its
sys_id when asked for by sys_id), under which the store keeps it too.

User names come from dot-walked fields (``assigned_to.user_name`` ...) so no
display values (which are in the caller's time zone) are needed.  A 404 from
the Table API ("No Record found") means the batch's references are missing.
A change whose approvals cannot be read is reported in ``failed`` instead of
being returned without them.  See docs/tickets.md.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Iterable, Mapping

import requests

from connectors.http import (
    RETRY_STATUSES, RetryPolicy, check_base_url, connection_reason, keep_raw_bodies, make_auth,
    make_session, send,
)
from connectors.ticket_refs import (
    SNOW_SYS_ID_RE, TicketFetch, TicketFetchError, parse_servicenow_utc, split_servicenow_refs,
)

LOG = logging.getLogger(__name__)

#: change_request fields that may be requested (``fields=`` must be a subset).
ALLOWLIST = (
    "sys_id", "number", "state", "approval", "short_description", "opened_at", "closed_at",
    "start_date", "end_date", "work_start", "work_end", "sys_updated_on",
    "assigned_to.user_name", "requested_by.user_name", "opened_by.user_name", "cmdb_ci.name",
)
REQUIRED_FIELDS = ("sys_id", "number", "state")
APPROVAL_FIELDS = ("sys_id", "sysapproval", "approver.user_name", "state", "sys_updated_on")
AUDIT_FIELDS = ("documentkey", "fieldname", "oldvalue", "newvalue", "sys_created_on",
                "record_checkpoint")

#: change_request.state codes (Change Management state model) -> our statuses.
STATE_MAP = {
    "-5": "requested", "-4": "requested", "-3": "requested", "-2": "approved",
    "-1": "in_progress", "0": "resolved", "3": "closed", "4": "cancelled",
}
_TIMES = {"opened": "opened_at", "closed": "closed_at", "planned_start": "start_date",
          "planned_end": "end_date", "work_start": "work_start", "work_end": "work_end"}
_MAX_PAGES = 10_000


class _Failure(Exception):
    """A table read that could not be completed; the message is the reason."""


class _NotFound(Exception):
    """The Table API answered 404 (no record matched / ACL hides them)."""


def servicenow_credentials_from_env(env: Mapping[str, str] | None = None) -> tuple[str | None, str | None]:
    """``(user, token)`` from ``PAMCORR_SNOW_USER`` / ``PAMCORR_SNOW_TOKEN`` (empty -> None)."""
    env = os.environ if env is None else env
    return env.get("PAMCORR_SNOW_USER") or None, env.get("PAMCORR_SNOW_TOKEN") or None


def fetch_servicenow(
    url: str,
    numbers: Iterable[str],
    *,
    user: str | None = None,
    token: str | None = None,
    timeout: float = 30.0,
    max_retries: int = 3,
    backoff: float = 1.0,
    max_wait: float = 60.0,
    fields: Iterable[str] = ALLOWLIST,
    batch_size: int = 50,
    page_size: int = 100,
) -> TicketFetch:
    """Fetch the change requests ``numbers`` (CHG numbers or sys_ids) and their approvals.

    ``user`` + ``token`` gives basic auth, ``token`` alone a bearer token.
    Raises :class:`TicketFetchError` when the credentials are rejected (401).
    """
    fields = tuple(dict.fromkeys(fields))
    extra = [f for f in fields if f not in ALLOWLIST]
    if extra:
        raise ValueError(f"fields not in the allow-list: {extra}")
    fields = tuple(dict.fromkeys(REQUIRED_FIELDS + fields))
    base = check_base_url(url)
    policy = RetryPolicy(max_retries=max_retries, backoff=backoff, max_wait=max_wait, timeout=timeout)
    result = TicketFetch()
    valid, result.invalid = split_servicenow_refs(numbers)
    if not valid:
        return result
    session = make_session(base, make_auth(user, token))
    keep_raw_bodies(session, result.raw, "servicenow")
    try:
        run = _Run(session, base, policy, result, fields, max(1, page_size))
        step = max(1, batch_size)
        for i in range(0, len(valid), step):
            run.fetch_batch(valid[i:i + step])
    finally:
        session.close()
    return result


def _value(record: dict, name: str) -> str:
    """A field's raw value; tolerates ``{"value": ...}`` objects (reference links)."""
    value = record.get(name)
    if isinstance(value, dict):
        value = value.get("value")
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _ref_query(refs: list[str]) -> str:
    numbers = [r for r in refs if not SNOW_SYS_ID_RE.fullmatch(r)]
    sys_ids = [r for r in refs if SNOW_SYS_ID_RE.fullmatch(r)]
    parts = []
    if numbers:
        parts.append("numberIN" + ",".join(numbers))
    if sys_ids:
        parts.append("sys_idIN" + ",".join(sys_ids))
    return "^OR".join(parts) + "^ORDERBYsys_id"


class _Run:
    def __init__(self, session: requests.Session, base: str, policy: RetryPolicy,
                 result: TicketFetch, fields: tuple[str, ...], page_size: int) -> None:
        self.session, self.base, self.policy, self.result = session, base, policy, result
        self.fields, self.page_size = fields, page_size

    def table(self, table: str, query: str, fields: Iterable[str]) -> list[dict]:
        """All records of ``table`` matching ``query``, paged; raises _Failure/_NotFound."""
        records: list[dict] = []
        for _ in range(_MAX_PAGES):
            params = {
                "sysparm_query": query, "sysparm_fields": ",".join(fields),
                "sysparm_display_value": "false", "sysparm_exclude_reference_link": "true",
                "sysparm_limit": str(self.page_size), "sysparm_offset": str(len(records)),
            }
            try:
                resp = send(self.session, "GET", f"{self.base}/api/now/table/{table}",
                            policy=self.policy, params=params)
            except requests.Timeout:
                raise _Failure(f"timeout after {self.policy.max_retries} retries") from None
            except requests.ConnectionError as exc:
                raise _Failure(f"{connection_reason(exc)} after {self.policy.max_retries} "
                               f"retries") from None
            except requests.RequestException as exc:
                raise _Failure(f"{type(exc).__name__} after {self.policy.max_retries} retries") from None
            if resp.status_code == 401:
                raise TicketFetchError(
                    f"ServiceNow at {self.base} rejected the credentials (HTTP 401); check "
                    "PAMCORR_SNOW_USER / PAMCORR_SNOW_TOKEN")
            if resp.status_code == 404 and not records:
                raise _NotFound()
            if resp.status_code == 404:
                return records
            if not 200 <= resp.status_code < 300:
                text = f"HTTP {resp.status_code}"
                if resp.status_code in RETRY_STATUSES:
                    text += f" after {self.policy.max_retries} retries"
                raise _Failure(text + _error_message(resp))
            try:
                body = resp.json()
            except ValueError:
                raise _Failure("malformed JSON body") from None
            page = body.get("result") if isinstance(body, dict) else None
            if not isinstance(page, list) or not all(isinstance(r, dict) for r in page):
                raise _Failure("malformed body: no 'result' list")
            records.extend(page)
            total = resp.headers.get("X-Total-Count", "")
            total_n = int(total) if total.isascii() and total.isdigit() else None
            if not page or (total_n is not None and len(records) >= total_n) or (
                    total_n is None and len(page) < self.page_size):
                return records
        raise _Failure("too many pages")

    def fetch_batch(self, refs: list[str]) -> None:
        try:
            records = self.table("change_request", _ref_query(refs), self.fields)
        except _NotFound:
            self.result.missing.extend(refs)
            self.result.missing_why.update({r: "not found (HTTP 404 No Record found)" for r in refs})
            return
        except _Failure as exc:
            self.result.failed.update({r: str(exc) for r in refs})
            return
        found: dict[str, dict] = {}  # ref -> record (a change may be asked for twice)
        for rec in records:
            matched = [r for r in refs if r in (_value(rec, "number"), _value(rec, "sys_id"))]
            if not matched:
                LOG.warning("servicenow returned a record that was not asked for; ignored")
            for ref in matched:
                if not SNOW_SYS_ID_RE.fullmatch(_value(rec, "sys_id")):
                    self.result.failed[ref] = "malformed record: no sys_id"
                else:
                    found.setdefault(ref, rec)
        self.result.missing.extend(r for r in refs if r not in found and r not in self.result.failed)
        if not found:
            return
        approvals = self.approvals(found)
        if approvals is None:
            return
        changes: dict[str, tuple[dict, list[str]]] = {}   # sys_id -> (record, refs citing it)
        for ref, rec in found.items():
            changes.setdefault(_value(rec, "sys_id"), (rec, []))[1].append(ref)
        histories = self.histories({sys_id: rec for sys_id, (rec, _) in changes.items()})
        for sys_id, (rec, cited) in changes.items():
            ticket = self.ticket(rec)
            # stored under its number and under every other form that cites it (a sys_id)
            ticket["aliases"] = [r for r in cited if r != ticket["ticket_id"]]
            history = histories[sys_id]
            if isinstance(history, str):
                ticket["history_note"] = f"state history unavailable ({history}); judged by the current state"
            else:
                self.result.history.extend({"ticket_id": ticket["ticket_id"], **h} for h in history)
            self.result.tickets.append(ticket)
            self.result.approvals.extend(approvals.get(sys_id, []))

    def histories(self, changes: dict[str, dict]) -> dict[str, list[dict] | str]:
        """sys_id -> the change's state history (``ts``, ``status`` rows, oldest first) from
        ``sys_audit``, or why it cannot be told (the change is then judged by its current state)."""
        query = ("tablename=change_request^fieldname=state^documentkeyIN" + ",".join(sorted(changes))
                 + "^ORDERBYsys_created_on")
        try:
            records = self.table("sys_audit", query, AUDIT_FIELDS)
        except _NotFound:
            records = []
        except _Failure as exc:
            return {sys_id: f"sys_audit unreadable: {exc}" for sys_id in changes}
        audit: dict[str, list[dict]] = {}
        for rec in records:
            if _value(rec, "documentkey") in changes and _value(rec, "fieldname") in ("", "state"):
                audit.setdefault(_value(rec, "documentkey"), []).append(rec)
        return {sys_id: _state_history(rec, audit.get(sys_id, [])) for sys_id, rec in changes.items()}

    def approvals(self, found: dict[str, dict]) -> dict[str, list[dict]] | None:
        by_sys_id = {_value(rec, "sys_id"): _value(rec, "number") for rec in found.values()}
        query = "sysapprovalIN" + ",".join(sorted(by_sys_id)) + "^ORDERBYsys_id"
        try:
            records = self.table("sysapproval_approver", query, APPROVAL_FIELDS)
        except _NotFound:
            records = []
        except _Failure as exc:
            self.result.failed.update({ref: f"approvals unavailable: {exc}" for ref in found})
            return None
        out: dict[str, list[dict]] = {}
        for rec in records:
            sys_id = _value(rec, "sysapproval")
            if sys_id not in by_sys_id:
                continue
            ts_raw = _value(rec, "sys_updated_on")
            ts = parse_servicenow_utc(ts_raw)
            if ts is None and ts_raw:
                LOG.warning("servicenow approval for %s: unparseable sys_updated_on", by_sys_id[sys_id])
            out.setdefault(sys_id, []).append({
                "ticket_id": by_sys_id[sys_id], "approver": _value(rec, "approver.user_name") or None,
                "state": _value(rec, "state") or None, "ts": ts})
        return out

    def ticket(self, rec: dict) -> dict:
        number, sys_id = _value(rec, "number"), _value(rec, "sys_id")
        status = _status(_value(rec, "state"))
        if _value(rec, "approval") == "rejected":
            status = "rejected"
        ticket: dict[str, Any] = {"ticket_id": number or sys_id, "status": status}
        for ours, theirs in _TIMES.items():
            raw = _value(rec, theirs)
            ticket[ours] = parse_servicenow_utc(raw)
            if ticket[ours] is None and raw:
                LOG.warning("servicenow %s: %s is not 'YYYY-MM-DD HH:MM:SS'; left empty", number, theirs)
        ci = _value(rec, "cmdb_ci.name")
        ticket.update({
            "assignee": _value(rec, "assigned_to.user_name") or None,
            "reporter": (_value(rec, "requested_by.user_name")
                         or _value(rec, "opened_by.user_name") or None),
            "title": _value(rec, "short_description") or None,
            "components": [ci] if ci else [],
            "system": "servicenow",
            "url": f"{self.base}/nav_to.do?uri=change_request.do%3Fsys_id%3D{sys_id}",
        })
        return ticket


def _status(state: str) -> str:
    """Our status for a change_request.state code; codes outside the map stay ``unknown:<code>``
    and never permit work."""
    return STATE_MAP.get(state, f"unknown:{state}")


def _state_history(change: dict, audit: list[dict]) -> list[dict] | str:
    """The state history of one change from its ``sys_audit`` rows (field ``state``): the state
    before the first audited move holds from ``opened_at``, then one row per move. A string says
    why there is no usable history: no audited move, an unreadable time, or an audit trail that
    does not end in the change's current state (rows missing)."""
    if not audit:
        return "no state changes in sys_audit"
    moves = []
    for rec in audit:
        raw = _value(rec, "sys_created_on")
        ts = parse_servicenow_utc(raw)
        if ts is None:
            return f"sys_audit time {raw[:40]!r} is not 'YYYY-MM-DD HH:MM:SS'"
        checkpoint = _value(rec, "record_checkpoint")
        moves.append((ts, int(checkpoint) if checkpoint.isdigit() else 0,
                      _value(rec, "oldvalue"), _value(rec, "newvalue")))
    moves.sort(key=lambda m: m[:2])
    if moves[-1][3] != _value(change, "state"):
        return (f"sys_audit ends in state {moves[-1][3]!r}, the change is in "
                f"{_value(change, 'state')!r}")
    first_ts, _, first_old, _ = moves[0]
    opened = parse_servicenow_utc(_value(change, "opened_at"))
    rows = []
    if first_old:
        start = opened if opened is not None and opened <= first_ts else first_ts
        rows.append({"ts": start, "status": _status(first_old)})
    rows.extend({"ts": ts, "status": _status(new)} for ts, _, _, new in moves)
    return rows


def _error_message(resp: requests.Response) -> str:
    try:
        body = resp.json()
        msg = body["error"]["message"] if isinstance(body, dict) else ""
    except (ValueError, KeyError, TypeError):
        return ""
    return f": {' '.join(str(msg).split())[:200]}" if msg else ""
