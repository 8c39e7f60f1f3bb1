"""Teleport audit log (JSON lines): access requests become approvals, sessions become activity.

Three batches per file, so every line lands in exactly one of them:

* approval_events - `access_request.create/update/review/delete/expire`, one event
  per line (connectors/approval_events.py), fold key = the request `id`. The store
  keeps them and folds ALL stored events of a request with APPROVAL_FOLD_SQL, so a
  request created in one daily log and approved in the next gives the approval one
  file with both would. The fold: approved when a review or update set state
  APPROVED (start = that time, or `assume_start_time` if later; end = latest
  `expires`, else `max_duration`, else the delete time); revoked when deleted
  after approval and before its end (revoked_at = delete time); denied when set
  DENIED. target = requested resource names (`resource_ids[].name`) joined by
  ",", else the roles joined by ","; requester = the creating user; approver =
  the approving `updated_by`, else the reviewers who proposed APPROVED; ticket =
  the first match of `ticket_regex` (options.extra, default `[A-Z][A-Z0-9]+-\\d+`)
  in the request reason, else the resolve reason. Events are ordered by time
  (ties: ingest order, then line). A request without its create, neither
  approved nor denied yet, or without a window end stays in approvals_pending
  with that reason until the missing event arrives.
* activity - SSH/Kubernetes/database/app/desktop session events (ACTIVITY_EVENTS
  and ACTIVITY_PREFIXES). account = `login` (else db_user, windows_user, user),
  actor = `user`, target = kubernetes_cluster / db_service / app_name /
  desktop_name / server_hostname (carried to every event of the same `sid` that
  lacks one), else the host of server_addr / addr.local, else server_id.
  approval_ref = the first of `access_requests[]` (all of them in attrs when
  several), carried to every event of the same `sid` in the file.
  event_id = `uid`, else sid:ei, else a content hash.
  Unparseable lines and lines without `event` are quarantined here.
  Identity and privilege changes are activity too, under auditd's names: user.create ->
  user.add, user.update -> user.mod, user.delete -> user.delete, user.password_change,
  role.created/updated/deleted -> role.add/mod/delete; account = the acting `user` (else
  "unknown"), target = cluster_name (else "teleport"), attrs changed_user / changed_role
  (`name`) and roles (the roles the event lists, joined by ",").
  outcome = `success` when the event has it (true/false), else from the code's last letter
  (I success, W or E failure, other unknown), NULL when the event has neither. A denied
  session (`session.rejected`) is a `session.start` whose outcome is failure (the reason in
  attrs.error), as in the other sources.
* ignored (store table "ignored": line, raw, reason NULL, event_type) - every
  other event type (user.login, cert.create, access_request.search, ...).
"""

from __future__ import annotations

import re
from pathlib import Path

from connectors.approval_events import TABLE, Fold, field_ts, iso_sql
from connectors.base import Options, Staged, ts_problem_sql
from connectors.jsonsql import (
    Fields, attrs_sql, content_id_sql, host_sql, json_list_sql, staged_pair, ts_fast_sql,
)
from correlate.errors import InputError

DEFAULT_TICKET_RE = r"\b[A-Z][A-Z0-9]+-\d+\b"

ACTIVITY_EVENTS = ("session.start", "session.rejected", "session.join", "session.end", "session.command",
                   "session.network", "session.disk", "exec", "scp", "sftp", "port",
                   "port.local", "port.remote", "x11-forward", "kube.request")
ACTIVITY_PREFIXES = ("db.session.", "app.session.", "windows.desktop.session.", "desktop.")
# Identity and privilege changes -> the action names auditd uses for the same change.
IDENTITY_ACTIONS = {"user.create": "user.add", "user.update": "user.mod",
                    "user.delete": "user.delete", "user.password_change": "user.password_change",
                    "role.created": "role.add", "role.updated": "role.mod",
                    "role.deleted": "role.delete"}
REQUEST_EVENTS = ("access_request.create", "access_request.update", "access_request.review",
                  "access_request.delete", "access_request.expire")

_ACTIVITY_NAMES = (
    "event", "uid", "time", "code", "ei", "user", "login", "sid", "user_kind", "bot_name",
    "access_requests", "server_hostname", "server_addr", "server_id", "proto",
    "kubernetes_cluster", "db_service", "db_user", "db_name", "db_query", "app_name",
    "desktop_name", "desktop_addr", "windows_user", "path", "argv", "return_code", "command",
    "verb", "request_path", "response_code", "status_code", "method", "cluster_name", "success",
    "error", "name", "roles", "connector", "reason")
_REQUEST_NAMES = ("event", "id", "uid", "time", "user", "state", "proposed_state", "reason", "roles",
                  "resource_ids", "expires", "max_duration", "assume_start_time", "updated_by",
                  "reviewer")
# Each batch reads only the fields it needs (the reader's cost grows with the columns).
ACTIVITY_FIELDS: Fields = {n: (n,) for n in _ACTIVITY_NAMES}
ACTIVITY_FIELDS.update({"addr_local": ("addr.local",), "addr_remote": ("addr.remote",),
                        "exit_code": ("exitCode",)})
REQUEST_FIELDS: Fields = {n: (n,) for n in _REQUEST_NAMES}


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


CLASS_SQL = (
    "CASE WHEN parse_error IS NOT NULL OR nullif(trim(f_event), '') IS NULL THEN 'bad' "
    f"WHEN f_event IN ({_in(ACTIVITY_EVENTS)}) "
    + "".join(f"OR starts_with(f_event, '{p}') " for p in ACTIVITY_PREFIXES)
    + f"THEN 'activity' WHEN f_event IN ({_in(tuple(IDENTITY_ACTIONS))}) THEN 'identity' "
    f"WHEN f_event IN ({_in(REQUEST_EVENTS)}) THEN 'request' "
    "ELSE 'other' END"
)


# --- activity -------------------------------------------------------------------------------

_STRONG_TARGET = ("coalesce(nullif(f_kubernetes_cluster, ''), nullif(f_db_service, ''), "
                  "nullif(f_app_name, ''), nullif(f_desktop_name, ''), "
                  "nullif(f_server_hostname, ''))")
_WEAK_TARGET = (f"coalesce(nullif({host_sql('f_server_addr')}, ''), "
                f"nullif({host_sql('f_addr_local')}, ''), "
                f"nullif({host_sql('f_desktop_addr')}, ''), "
                "nullif(f_server_id, ''))")
_DETAIL = (
    f"CASE WHEN f_event = 'session.command' THEN concat_ws(' ', f_path, "
    f"{json_list_sql('f_argv', ' ')}) "
    "WHEN f_event = 'kube.request' THEN concat_ws(' ', f_verb, f_request_path) "
    "ELSE coalesce(nullif(f_db_query, ''), nullif(f_command, ''), "
    "nullif(concat_ws(' ', f_method, f_path), '')) END"
)
_ACTOR_KIND = (
    "CASE WHEN nullif(f_bot_name, '') IS NOT NULL OR f_user_kind IN ('2', 'USER_KIND_BOT') "
    "THEN 'bot' WHEN f_user_kind IN ('1', 'USER_KIND_HUMAN') THEN 'human' "
    "WHEN f_user_kind IN ('3', 'USER_KIND_SYSTEM') THEN 'service' END"
)
_ATTRS = attrs_sql([
    ("code", "f_code"), ("cluster", "f_cluster_name"), ("client_addr", "f_addr_remote"),
    ("proto", "f_proto"), ("db_name", "nullif(f_db_name, '')"),
    ("status", "coalesce(f_return_code, f_exit_code, f_response_code, f_status_code)"),
    ("success", "f_success"), ("error", "coalesce(f_error, f_reason)"),
    ("bot_name", "nullif(f_bot_name, '')"),
    ("access_requests", f"CASE WHEN contains(f_access_requests, ',') "
                        f"THEN {json_list_sql('f_access_requests')} END"),
])
# What the source says came of it: `success` when the event has it, else the code's last
# letter (Teleport codes end in I for info, W for warning = failed, E for error).
_OUTCOME = (
    "CASE WHEN lower(f_success) = 'true' THEN 'success' WHEN lower(f_success) = 'false' "
    "THEN 'failure' WHEN f_event = 'session.rejected' THEN 'failure' "
    "WHEN f_code IS NULL OR trim(f_code) = '' THEN NULL "
    "WHEN suffix(f_code, 'I') THEN 'success' WHEN suffix(f_code, 'W') OR suffix(f_code, 'E') "
    "THEN 'failure' ELSE 'unknown' END"
)
_IDENTITY_ACTION = ("CASE f_event " + " ".join(f"WHEN '{k}' THEN '{v}'"
                                              for k, v in IDENTITY_ACTIONS.items()) + " END")
_ROLES = json_list_sql("f_roles")
# The changed user or role, and the roles a user change grants (as the event lists them).
_IDENTITY_ATTRS = attrs_sql([
    ("code", "f_code"), ("cluster", "f_cluster_name"), ("success", "f_success"),
    ("error", "f_error"),
    ("changed_user", "CASE WHEN starts_with(f_event, 'user.') "
                     "THEN coalesce(nullif(f_name, ''), nullif(f_user, '')) END"),
    ("changed_role", "CASE WHEN starts_with(f_event, 'role.') THEN nullif(f_name, '') END"),
    ("roles", _ROLES), ("connector", "nullif(f_connector, '')"),
])
_IDENTITY_DETAIL = ("nullif(concat_ws(' ', nullif(f_name, ''), 'roles=' || " + _ROLES + "), '')")
_NO_TARGET = ("'no target: none of server_hostname, server_addr, addr.local, server_id, "
              "kubernetes_cluster, db_service, app_name, desktop_name, desktop_addr'")


def _activity_rows(source: str) -> str:
    """Per-line values; only the session carry-over (final) needs other lines."""
    return f"""
SELECT line, raw, parse_error, f_time, f_event, cls,
    CASE WHEN cls IN ('activity', 'identity') THEN {ts_fast_sql('f_time')} END AS ts,
    nullif(trim(f_sid), '') AS sid, {_STRONG_TARGET} AS strong, {_WEAK_TARGET} AS weak,
    try(from_json(f_access_requests, '["VARCHAR"]'))[1] AS own_ref,
    CASE WHEN cls = 'identity' THEN coalesce(nullif(f_user, ''), 'unknown')
         ELSE coalesce(nullif(f_login, ''), nullif(f_db_user, ''), nullif(f_windows_user, ''),
                       nullif(f_user, '')) END AS account,
    coalesce(nullif(f_uid, ''),
             CASE WHEN nullif(trim(f_sid), '') IS NOT NULL AND f_ei IS NOT NULL
                  THEN trim(f_sid) || ':' || f_ei END,
             {content_id_sql(['f_event', 'f_time', 'f_user', 'f_login', 'f_sid', 'f_server_id',
                              'f_server_hostname', 'f_path', 'f_argv', 'f_command',
                              'f_db_query'])}) AS event_id,
    CASE WHEN cls = 'activity' THEN {_DETAIL} WHEN cls = 'identity' THEN {_IDENTITY_DETAIL} END
        AS detail, nullif(f_user, '') AS actor,
    CASE WHEN cls = 'identity' THEN {_IDENTITY_ACTION}
         WHEN f_event = 'session.rejected' THEN 'session.start' ELSE f_event END AS action,
    CASE WHEN cls = 'identity' THEN coalesce(nullif(f_cluster_name, ''), 'teleport') END
        AS identity_target,
    CASE WHEN cls IN ('activity', 'identity') THEN {_OUTCOME} END AS outcome,
    {_ACTOR_KIND} AS actor_kind,
    CASE WHEN f_event = 'kube.request' THEN upper(f_verb) IN ('GET', 'LIST', 'WATCH') END
        AS read_only,
    CASE WHEN cls = 'activity' THEN {_ATTRS} WHEN cls = 'identity' THEN {_IDENTITY_ATTRS} END
        AS attrs
FROM (SELECT *, {CLASS_SQL} AS cls FROM ({source}) s)
"""


def _activity_final(rows: str) -> str:
    # Session values by GROUP BY + join, not a window: a window would buffer and sort
    # every row with its raw text on the exact path.
    return f"""
WITH a AS MATERIALIZED (SELECT * FROM ({rows}) n WHERE cls IN ('bad', 'activity', 'identity')),
s AS (SELECT sid, min(strong) AS s_strong, min(own_ref) AS s_ref
      FROM a WHERE sid IS NOT NULL GROUP BY sid),
w AS (SELECT a.*, s.s_strong, s.s_ref FROM a LEFT JOIN s ON s.sid = a.sid)
SELECT line, raw,
    CASE WHEN parse_error IS NOT NULL THEN parse_error
         WHEN cls = 'bad' THEN 'missing required field: event'
         WHEN ts IS NULL THEN {ts_problem_sql('f_time', 'time')}
         WHEN account IS NULL THEN 'missing required field: login or user'
         WHEN coalesce(identity_target, strong, s_strong, weak) IS NULL THEN {_NO_TARGET}
    END AS reason,
    event_id, ts, account, coalesce(identity_target, strong, s_strong, weak) AS target, action,
    detail, sid AS session_id, actor, coalesce(own_ref, s_ref) AS approval_ref, actor_kind,
    read_only, attrs, outcome
FROM w
"""


# --- access requests ------------------------------------------------------------------------

_RESOURCE_NAMES = ("list_transform(try(from_json(f_resource_ids, '[{\"name\": \"VARCHAR\"}]')), "
                   "lambda x: x.name)")
_TARGET = (f"coalesce(nullif(array_to_string({_RESOURCE_NAMES}, ','), ''), "
           f"{json_list_sql('f_roles')})")


def _request_rows(source: str) -> str:
    return f"""
SELECT line, raw, parse_error, f_event AS event, cls, nullif(trim(f_id), '') AS id,
    CASE WHEN cls = 'request' THEN {ts_fast_sql('f_time')} END AS ts, f_user, f_uid,
    upper(f_state) AS state, upper(f_proposed_state) AS proposed, nullif(f_reason, '') AS reason,
    nullif(f_updated_by, '') AS updated_by, nullif(f_reviewer, '') AS reviewer,
    CASE WHEN cls = 'request' THEN {_TARGET} END AS target,
    CASE WHEN cls = 'request' THEN {ts_fast_sql('f_expires')} END AS expires,
    CASE WHEN cls = 'request' THEN {ts_fast_sql('f_max_duration')} END AS max_duration,
    CASE WHEN cls = 'request' THEN {ts_fast_sql('f_assume_start_time')} END AS assume_start,
    CASE WHEN cls <> 'request' THEN NULL
         WHEN nullif(trim(f_id), '') IS NULL THEN 'missing required field: id'
         WHEN {ts_fast_sql('f_time')} IS NULL THEN {ts_problem_sql('f_time', 'time')}
    END AS own_problem
FROM (SELECT *, {CLASS_SQL} AS cls FROM ({source}) s)
"""


# The fields the fold reads, per event; times as ISO text, the ticket pattern applied here (so the
# fold needs no options): `ticket` is NULL without a reason, '' when the reason cites none.
_EVENT_FIELDS = (
    "json_object('user', f_user, 'state', state, 'proposed', proposed, 'reason', reason, "
    "'ticket', regexp_extract(reason, $ticket_re), 'updated_by', updated_by, "
    "'reviewer', reviewer, 'target', target, "
    f"'expires', {iso_sql('expires')}, 'max_duration', {iso_sql('max_duration')}, "
    f"'assume_start', {iso_sql('assume_start')})"
)


def _events_final(rows: str) -> str:
    """One approval event per access_request.* line (uid alone is not unique in every log:
    the key is a hash of the event's values)."""
    return f"""
SELECT line, raw, own_problem AS reason, id AS fold_key, id AS approval_id,
    'tp:' || left(sha256(concat_ws(chr(31), event, coalesce(f_uid, ''), coalesce(id, ''),
                                   coalesce({iso_sql('ts')}, ''), fields)), 32) AS event_key,
    event, ts, fields
FROM (SELECT *, {_EVENT_FIELDS} AS fields FROM ({rows}) r WHERE cls = 'request') e
"""


def _ignored_final(rows: str) -> str:
    return f"""
SELECT line, raw, NULL::VARCHAR AS reason, event AS event_type FROM ({rows}) r WHERE cls = 'other'
"""


# One row per request id over all its stored events (fold_events), in time order (ties: ingest
# order, then line), wherever they were read: the connector's rules, run by the store.
APPROVAL_FOLD_SQL = f"""
WITH r AS (
    SELECT approval_id AS id, fold_key, event, ts,
        struct_pack(t := ts, i := ingest_id, l := line) AS ord,
        fields->>'user' AS f_user, fields->>'state' AS state, fields->>'proposed' AS proposed,
        fields->>'reason' AS reason, fields->>'ticket' AS ticket,
        fields->>'updated_by' AS updated_by, fields->>'reviewer' AS reviewer,
        fields->>'target' AS target, {field_ts('expires')} AS expires,
        {field_ts('max_duration')} AS max_duration, {field_ts('assume_start')} AS assume_start
    FROM fold_events),
g AS (
    SELECT id, any_value(fold_key) AS fold_key,
        arg_min(f_user, ord) FILTER (WHERE event = 'access_request.create') AS requester,
        min(ts) FILTER (WHERE event = 'access_request.create') AS created_at,
        arg_min(reason, ord) FILTER (WHERE event = 'access_request.create') AS request_reason,
        arg_min(ticket, ord) FILTER (WHERE event = 'access_request.create') AS request_ticket,
        arg_max(ticket, ord) FILTER (WHERE event <> 'access_request.create') AS resolve_ticket,
        arg_min(target, ord) AS target,
        min(ts) FILTER (WHERE state = 'APPROVED' AND event IN
            ('access_request.update', 'access_request.review')) AS approved_at,
        min(ts) FILTER (WHERE state = 'DENIED' AND event IN
            ('access_request.update', 'access_request.review')) AS denied_at,
        min(ts) FILTER (WHERE event = 'access_request.delete') AS deleted_at,
        arg_max(expires, ord) AS expires,
        arg_max(max_duration, ord) AS max_duration,
        max(assume_start) AS assume_start,
        arg_min(updated_by, ord) FILTER (WHERE state = 'APPROVED') AS updated_by,
        string_agg(DISTINCT reviewer, ',' ORDER BY reviewer) FILTER (WHERE proposed = 'APPROVED')
            AS reviewers
    FROM r GROUP BY id),
f AS (
    SELECT *,
        CASE WHEN approved_at IS NOT NULL AND deleted_at >= approved_at
                  AND (coalesce(expires, max_duration) IS NULL
                       OR deleted_at < coalesce(expires, max_duration)) THEN 'revoked'
             WHEN approved_at IS NOT NULL THEN 'approved'
             WHEN denied_at IS NOT NULL THEN 'denied'
             ELSE 'pending' END AS status
    FROM g),
w AS (
    SELECT *,
        CASE WHEN status = 'denied' THEN coalesce(created_at, denied_at)
             ELSE greatest(approved_at, assume_start) END AS start_ts,
        CASE WHEN status = 'denied' THEN denied_at
             ELSE coalesce(expires, max_duration, deleted_at) END AS end_ts
    FROM f)
SELECT id AS approval_id, fold_key, requester AS account, target, start_ts, end_ts,
    nullif(coalesce(nullif(request_ticket, ''), resolve_ticket), '') AS ticket,
    requester, coalesce(updated_by, reviewers) AS approver, 'standard' AS kind, status,
    CASE WHEN status = 'revoked' THEN deleted_at END AS revoked_at,
    request_reason AS approval_reason,
    -- target joins the resource names (or roles) with ','; each one is granted
    CASE WHEN contains(target, ',') THEN string_split(target, ',') END AS targets,
    CASE WHEN requester IS NULL THEN 'access request ' || id || ' has no access_request.create '
              || '(requester unknown)'
         WHEN status = 'pending' THEN 'access request ' || id || ' is neither approved nor '
              || 'denied yet'
         WHEN target IS NULL THEN 'access request ' || id || ' names neither roles nor '
              || 'resource_ids'
         WHEN end_ts IS NULL THEN 'approved access request ' || id || ' has neither expires, '
              || 'max_duration nor a delete (window end unknown)'
         WHEN end_ts < start_ts THEN 'access request ' || id || ' ends before it starts'
    END AS problem
FROM w
"""


def ticket_regex(options: Options) -> str:
    """The configured ticket pattern (RE2 syntax), checked before any file is read."""
    pattern = str(options.extra.get("ticket_regex") or DEFAULT_TICKET_RE)
    try:
        re.compile(pattern)
    except re.error as exc:
        raise InputError(f"invalid ticket_regex {pattern!r}: {exc}") from None
    return pattern


class TeleportConnector:
    """Teleport audit events: access requests -> approvals, session events -> activity."""

    name = "teleport"
    kinds = ("auto",)
    approval_fold = Fold(APPROVAL_FOLD_SQL)
    description = ("Teleport audit log JSON lines: access_request.* -> approvals; session, exec, "
                   "kube, db, app and desktop events -> activity; other events counted as ignored")

    def stage(self, path: Path, kind: str, options: Options) -> list[Staged]:
        params = {"tz": options.tz}
        return [
            staged_pair(TABLE, REQUEST_FIELDS, path,
                        {**params, "ticket_re": ticket_regex(options)},
                        _events_final, _request_rows),
            staged_pair("activity", ACTIVITY_FIELDS, path, params, _activity_final,
                        _activity_rows),
            staged_pair("ignored", REQUEST_FIELDS, path, params, _ignored_final, _request_rows,
                        number_lines=False),
        ]
