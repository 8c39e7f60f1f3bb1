"""OCSF events (Amazon Security Lake and endpoint sources), Parquet or JSON lines -> activity.

Three classes are actions (docs/ocsf-input.md has every field):

* API Activity (6003), e.g. Security Lake's CloudTrail: the OCSF fields are put back in the
  CloudTrail connector's place (userIdentity.arn = actor.user.uid, sessionIssuer.arn =
  actor.session.issuer, recipientAccountId = cloud.account.uid, ...) and judged by the
  CloudTrail connector's own expressions (connectors/cloudtrail.py `_rows`), so an event
  gets the same account, actor, target and action either way.
* Process Activity (1007), as auditd's exec: account = the user the process ran as
  (process.user), actor = the user behind it (actor.user), target = the host (device),
  session_id = host:session, detail = the command line.
* Authentication (3002), as auditd's logins: account = the user authenticated (user), target
  = the host logged into (dst_endpoint, else device), action session.start / login.failed /
  session.end.

Other classes are counted as ignored (event_type "OCSF <class_uid>"). A Parquet file is read
with hive partitioning: Security Lake's region=/accountId=/eventDay= folders become columns
(accountId is the target of an API Activity event that names no account). `line` is the row
number (Parquet) or the physical line (JSON lines).
"""

from __future__ import annotations

from pathlib import Path

from connectors.base import Options, Staged, ts_problem_sql
from connectors.cloudtrail import _rows as cloudtrail_rows
from connectors.generic import is_parquet
from connectors.jsonsql import MAX_OBJECT, attrs_sql, lines_sql

HANDLED = (6003, 1007, 3002)
UNSET_UID = "4294967295"


def _j(path: str) -> str:
    """Text at a JSON path of the record (NULL when absent, or for JSON null)."""
    return f"nullif(json_extract_string(doc, '$.{path}'), '')"


def _source(parquet: bool) -> str:
    """line, raw (JSON text), parse_error of every record of $path."""
    if parquet:
        return ("SELECT NULL::BIGINT AS line, to_json(r)::VARCHAR AS raw, "
                "NULL::VARCHAR AS parse_error FROM read_parquet($path, hive_partitioning = true) r")
    return ("SELECT line, raw, CASE WHEN bad IS NOT NULL THEN bad "
            "WHEN NOT json_valid(raw) THEN 'invalid JSON' "
            "WHEN json_type(raw::JSON) <> 'OBJECT' THEN 'JSON value is not an object' END "
            f"AS parse_error FROM ({lines_sql(MAX_OBJECT)}) WHERE raw IS NOT NULL "
            "AND trim(raw) <> ''")


def _user(prefix: str) -> str:
    """A user object's name, else its uid (uid 0 is root; the unset audit uid is none)."""
    uid = _j(f"{prefix}.uid")
    return (f"coalesce({_j(prefix + '.name')}, CASE WHEN {uid} = '0' THEN 'root' "
            f"WHEN {uid} = '{UNSET_UID}' THEN NULL ELSE {uid} END)")


# Each record's fields: the CloudTrail connector's f_* names for API Activity, p_* for the rest.
def _fields(source: str) -> str:
    issuer = _j("actor.session.issuer")
    host = f"coalesce({_j('device.hostname')}, {_j('device.name')}, {_j('device.ip')})"
    dst = f"coalesce({_j('dst_endpoint.hostname')}, {_j('dst_endpoint.name')}, {_j('dst_endpoint.ip')})"
    status = f"coalesce(try_cast({_j('status_id')} AS INTEGER), 0)"
    activity = f"coalesce(try_cast({_j('activity_id')} AS INTEGER), 0)"
    return f"""
SELECT line, raw, parse_error, class_uid,
    coalesce({_j('time')}, {_j('time_dt')}) AS f_event_time,
    {_j('api.service.name')} AS f_event_source, {_j('api.operation')} AS f_event_name,
    NULL::VARCHAR AS f_event_type, {_j('metadata.uid')} AS f_event_id,
    {_j('actor.user.type')} AS f_ui_type, {_j('actor.user.uid')} AS f_ui_arn,
    {_j('actor.user.uid_alt')} AS f_ui_principal, {_j('actor.user.name')} AS f_ui_user,
    coalesce({_j('actor.user.account.uid')}, {_j('actor.user.account_uid')}) AS f_ui_account,
    {_j('actor.invoked_by')} AS f_ui_invoked_by, {_j('actor.user.credential_uid')} AS f_ui_key,
    NULL::VARCHAR AS f_ui_source_identity,
    nullif(regexp_extract({issuer}, ':role/(?:.*/)?([^/]+)$', 1), '') AS f_issuer_user,
    {issuer} AS f_issuer_arn, NULL::VARCHAR AS f_source_identity,
    coalesce({_j('actor.session.is_mfa')}, {_j('actor.session.mfa')}) AS f_mfa,
    NULL::VARCHAR AS f_on_behalf_of,
    coalesce({_j('cloud.account.uid')}, {_j('accountId')}) AS f_recipient,
    coalesce({_j('cloud.region')}, {_j('region')}) AS f_region,
    {_j('src_endpoint.ip')} AS f_source_ip,
    coalesce({_j('api.response.error')},
             CASE WHEN {status} = 2 THEN coalesce({_j('status_code')}, 'Failure') END)
        AS f_error_code,
    coalesce({_j('api.response.message')}, {_j('status_detail')}) AS f_error_message,
    {_j('api.request.data')} AS f_request_parameters,
    {_j('api.response.data')} AS f_response_elements, NULL::VARCHAR AS f_console,
    NULL::VARCHAR AS f_digest, NULL::VARCHAR AS f_read_only,
    -- Process Activity and Authentication (auditd's rules)
    CASE class_uid WHEN 1007 THEN coalesce({_user('process.user')}, {_user('actor.user')})
         WHEN 3002 THEN coalesce({_user('user')}, {_user('actor.user')}) END AS p_account,
    CASE class_uid WHEN 1007 THEN {_user('actor.user')}
         WHEN 3002 THEN coalesce({_user('actor.user')}, {_user('user')}) END AS p_actor,
    CASE class_uid WHEN 1007 THEN {host} WHEN 3002 THEN coalesce({dst}, {host}) END AS p_target,
    CASE WHEN class_uid = 1007 AND {activity} = 1 THEN 'exec'
         WHEN class_uid = 1007 THEN 'process.' || lower(coalesce({_j('activity_name')}, 'other'))
         WHEN {activity} = 1 AND {status} = 2 THEN 'login.failed'
         WHEN {activity} = 1 THEN 'session.start'
         WHEN {activity} = 2 THEN 'session.end'
         ELSE 'auth.' || lower(coalesce({_j('activity_name')}, 'other')) END AS p_action,
    CASE class_uid WHEN 1007 THEN coalesce({_j('process.cmd_line')}, {_j('process.file.path')})
    END AS p_detail,
    coalesce({_j('actor.session.uid')}, {_j('process.session.uid')}, {_j('session.uid')})
        AS p_session,
    CASE {status} WHEN 1 THEN 'success' WHEN 2 THEN 'failure' ELSE 'unknown' END AS p_outcome,
    {attrs_sql([('class_uid', 'class_uid'), ('region', "coalesce(" + _j('cloud.region') + ", " + _j('region') + ")"),
                ('source_ip', _j('src_endpoint.ip')), ('status', _j('status')),
                ('event_day', _j('eventDay'))])} AS p_attrs
FROM (SELECT *, try_cast(json_extract_string(doc, '$.class_uid') AS INTEGER) AS class_uid
      FROM (SELECT *, CASE WHEN parse_error IS NULL THEN raw::JSON END AS doc
            FROM ({source}) s0) s1) s2
"""


_KEEP = "f_event_id, class_uid, p_account, p_actor, p_target, p_action, p_detail, p_session, p_outcome, p_attrs, "
_API = "class_uid = 6003"
_REASON = f"""CASE WHEN parse_error IS NOT NULL THEN parse_error
    WHEN ts IS NULL THEN {ts_problem_sql('f_event_time', 'time')}
    WHEN {_API} AND (f_event_name IS NULL OR f_event_source IS NULL)
      THEN 'API Activity without api.operation or api.service.name'
    WHEN {_API} AND account IS NULL
      THEN 'no identity: actor.user has no uid, name or uid_alt and actor.invoked_by is empty'
    WHEN NOT {_API} AND p_account IS NULL
      THEN 'no user: ' || CASE class_uid WHEN 1007 THEN 'process.user and actor.user'
                                         ELSE 'user and actor.user' END || ' have no name or uid'
    WHEN NOT {_API} AND p_target IS NULL THEN 'no host: device (and dst_endpoint) name or ip'
END"""


def _activity_final(parquet: bool) -> str:
    rows = cloudtrail_rows(_fields(_source(parquet)), keep=_KEEP)
    api = _API
    return f"""
SELECT line, raw, {_REASON} AS reason,
    CASE WHEN {api} THEN event_id
         ELSE coalesce(f_event_id, 'sha:' || left(sha256(raw), 32)) END AS event_id,
    ts,
    CASE WHEN {api} THEN account ELSE p_account END AS account,
    CASE WHEN {api} THEN target ELSE p_target END AS target,
    CASE WHEN {api} THEN action ELSE p_action END AS action,
    CASE WHEN {api} THEN detail ELSE p_detail END AS detail,
    CASE WHEN {api} THEN session_id
         WHEN p_session IS NOT NULL THEN p_target || ':' || p_session END AS session_id,
    CASE WHEN {api} THEN actor ELSE p_actor END AS actor,
    CASE WHEN {api} THEN actor_kind END AS actor_kind,
    CASE WHEN {api} THEN read_only END AS read_only,
    CASE WHEN {api} THEN attrs ELSE p_attrs END AS attrs,
    CASE WHEN {api} THEN outcome ELSE p_outcome END AS outcome
FROM ({rows}) r
WHERE parse_error IS NOT NULL OR class_uid IN ({', '.join(map(str, HANDLED))})
"""


def _ignored_final(parquet: bool) -> str:
    return f"""
SELECT line, raw, NULL::VARCHAR AS reason, 'OCSF ' || coalesce(class_uid::VARCHAR, '?') AS event_type
FROM (SELECT line, raw, parse_error,
             CASE WHEN parse_error IS NULL THEN try_cast(json_extract_string(raw, '$.class_uid')
                                                         AS INTEGER) END AS class_uid
      FROM ({_source(parquet)}) s) r
WHERE parse_error IS NULL AND (class_uid IS NULL OR class_uid NOT IN ({', '.join(map(str, HANDLED))}))
"""


class OcsfConnector:
    """OCSF API Activity, Process Activity and Authentication -> activity."""

    name = "ocsf"
    kinds = ("auto",)
    description = ("OCSF events (Security Lake Parquet or JSON lines): API Activity 6003, "
                   "Process Activity 1007, Authentication 3002 -> activity")

    def stage(self, path: Path, kind: str, options: Options) -> list[Staged]:
        parquet = is_parquet(path)
        params = {"tz": options.tz, "path": str(path)}
        return [Staged("activity", sql=_activity_final(parquet), params=params,
                       number_lines=parquet),
                Staged("ignored", sql=_ignored_final(parquet), params={"path": str(path)},
                       number_lines=parquet)]
