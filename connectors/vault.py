"""HashiCorp Vault file audit device (JSON lines): one activity row per request.

A request and its response share `request.id`; both lines are staged with the
request's values plus the response's outcome, so the store keeps one row and
counts the other line as a duplicate (a response whose request was in an
earlier file is a duplicate of that row).

* account = `auth.display_name` (else the token accessor, else the HMAC'd client
  token: opaque but stable), from the request line, else the response (a login's
  response carries the new token's identity); actor = `auth.entity_id`; session_id = the token
  accessor; actor_kind = human for oidc-/ldap-/userpass-/okta-/github-/saml-/
  radius- logins, service for approle-/kubernetes-/aws-/gcp-/azure-/cert-/jwt-/token-;
* target = the mount: `request.mount_point` (Vault 1.13+), else the first path
  segment (`auth/<name>/` for auth mounts), prefixed by the namespace path; with
  options.extra['vault_target'] = 'path' the full request path instead;
* action = `request.operation`; detail = `request.path`; read_only = read, list
  or help; event_id = `request.id` (else a content hash);
* attrs = mount_type, namespace, remote_address, token_type, policies, error (of
  the request, else of the response) and status: ok, error, or no_response; root_token
  (true); token_meta (a token-* name's auth.metadata); changed_user (a write to
  auth/<mount>/users/<name>) and policy (a write to sys/policies/<type>/<name> or
  sys/policy/<name>);
* outcome = failure when the request or response has an error, success when answered
  without one, unknown when no response was logged.

HMAC'd values (`hmac-sha256:...`) are kept as they are; no data fields are read.
Ignored (store table "ignored"): records of other types (kmip-request,
kmip-response, ...) and requests without a token on either line (logins before
they succeed, sys/health). Quarantined: non-JSON lines, records without `type`,
request/response records without a parseable time.
"""

from __future__ import annotations

from pathlib import Path

from connectors.base import Options, Staged, ts_problem_sql
from connectors.jsonsql import (
    Fields, attrs_sql, content_id_sql, json_list_sql, staged_pair, ts_fast_sql, wrong_type_sql,
)
from correlate.errors import InputError

FIELDS: Fields = {
    "type": ("type",), "time": ("time",), "error": ("error",),
    "display_name": ("auth", "display_name"), "entity_id": ("auth", "entity_id"),
    "accessor": ("auth", "accessor"), "token_type": ("auth", "token_type"),
    "policies": ("auth", "policies"), "metadata": ("auth", "metadata"),
    "id": ("request", "id"), "operation": ("request", "operation"), "path": ("request", "path"),
    "mount_point": ("request", "mount_point"), "mount_type": ("request", "mount_type"),
    "namespace": ("request", "namespace", "path"), "remote": ("request", "remote_address"),
    "client_accessor": ("request", "client_token_accessor"),
    "client_token": ("request", "client_token"),
}

IGNORED_FIELDS: Fields = {k: FIELDS[k] for k in ("type", "time", "id", "display_name",
                                                  "accessor", "client_accessor", "client_token",
                                                  "policies")}
_CLASS = ("CASE WHEN parse_error IS NOT NULL OR nullif(f_type, '') IS NULL THEN 'bad' "
          "WHEN f_type IN ('request', 'response') THEN 'activity' ELSE 'other' END")
# Only request/response records can have a time problem; other types are just counted.
_PROBLEM = ("CASE WHEN parse_error IS NOT NULL THEN parse_error "
            "WHEN cls = 'bad' THEN 'not a Vault audit record: missing type' "
            f"WHEN cls = 'activity' AND ts IS NULL THEN {ts_problem_sql('f_time', 'time')} "
            f"WHEN cls = 'activity' THEN {wrong_type_sql(('auth', 'request'))} END")

_HUMAN = ("oidc-", "ldap-", "userpass-", "okta-", "github-", "saml-", "radius-")
_SERVICE = ("approle-", "kubernetes-", "aws-", "gcp-", "azure-", "cert-", "jwt-")
# A `token-*` display name is a token created for someone (`vault token create`, Nomad,
# ...): its kind comes from its metadata, never from the name alone.
_WORKLOAD_META = ("AllocationID", "Task", "NodeID", "JobID", "role_name", "service_account_name",
                  "service_account_namespace", "pod_name")
_PERSON_META = ("email", "username", "user", "preferred_username")


def _prefixes(col: str, prefixes: tuple[str, ...]) -> str:
    return " OR ".join(f"starts_with({col}, '{p}')" for p in prefixes)


def _meta_has(keys: tuple[str, ...]) -> str:
    """SQL: the token's metadata (token_meta, JSON) has a non-empty value under one of `keys`."""
    return "(" + " OR ".join(f"nullif(token_meta->>'{k}', '') IS NOT NULL" for k in keys) + ")"


# The root token: its policies include root (its display name is "root", or none at all).
_ROOT = "list_contains(try(from_json(f_policies, '[\"VARCHAR\"]')), 'root')"
_ACCOUNT = ("coalesce(nullif(f_display_name, ''), CASE WHEN " + _ROOT + " THEN 'root token' END, "
            "nullif(f_accessor, ''), nullif(f_client_accessor, ''), nullif(f_client_token, ''))")
_MOUNT = ("CASE WHEN nullif(f_mount_point, '') IS NOT NULL THEN f_mount_point "
          "WHEN starts_with(f_path, 'auth/') THEN 'auth/' || split_part(f_path, '/', 2) || '/' "
          "WHEN f_path IS NOT NULL THEN split_part(f_path, '/', 1) || '/' END")


def _rows(source: str) -> str:
    return f"""
SELECT line, raw, parse_error, f_type, f_time, nullif(f_error, '') AS error, {_CLASS} AS cls,
    CASE WHEN f_type = 'request' THEN 0 ELSE 1 END AS pref,
    {ts_fast_sql('f_time')} AS ts, nullif(f_id, '') AS request_id,
    coalesce(nullif(f_id, ''), {content_id_sql(['f_time', 'f_type', 'f_path', 'f_operation',
                                                'f_client_token', 'f_remote'])}) AS event_id,
    {_ACCOUNT} AS account,
    CASE WHEN $vault_target = 'path' THEN f_path
         ELSE coalesce(nullif(f_namespace, ''), '') || {_MOUNT} END AS target,
    f_operation AS action, f_path AS detail,
    coalesce(nullif(f_accessor, ''), nullif(f_client_accessor, '')) AS session_id,
    coalesce(nullif(f_entity_id, ''), CASE WHEN {_ROOT} THEN 'root token' END) AS actor,
    CASE WHEN {_ROOT} THEN true END AS root_token,
    CASE WHEN starts_with(f_display_name, 'token') THEN try_cast(f_metadata AS JSON) END
        AS token_meta,
    f_display_name, f_mount_type,
    nullif(f_namespace, '') AS namespace, f_remote, f_token_type,
    {json_list_sql('f_policies')} AS policies
FROM ({source}) s
"""


# Values a request's row takes from its lines: the request line first, else the response.
_FOLDED = ("ts", "account", "target", "action", "detail", "session_id", "actor",
           "f_display_name", "f_mount_type", "namespace", "f_remote", "f_token_type", "policies",
           "root_token", "token_meta")


def _folded(rows: str) -> str:
    """CTE `v`: every line with its request's folded values and `problem` (NULL if good)."""
    folds = ",\n        ".join(
        f"arg_min({c}, pref * 1000000000000 + line) FILTER (WHERE {c} IS NOT NULL) AS {c}"
        for c in _FOLDED)
    pick = ", ".join(f"coalesce(g.{c}, a.{c}) AS {c}" if c != "ts" else
                     "CASE WHEN a.problem IS NULL THEN coalesce(g.ts, a.ts) ELSE a.ts END AS ts"
                     for c in _FOLDED)
    return f"""
WITH a AS MATERIALIZED (SELECT *, {_PROBLEM} AS problem FROM ({rows}) r),
g AS (
    SELECT request_id, {folds},
        arg_min(error, line) FILTER (WHERE f_type = 'request') AS request_error,
        arg_max(error, line) FILTER (WHERE f_type = 'response') AS response_error,
        bool_or(f_type = 'response') AS responded
    FROM a WHERE problem IS NULL AND cls = 'activity' AND request_id IS NOT NULL
    GROUP BY request_id),
v AS (
    SELECT a.line, a.raw, a.cls, a.problem, a.event_id, a.error, a.request_id, a.f_type, {pick},
        g.request_error, g.response_error, g.responded
    FROM a LEFT JOIN g ON g.request_id = a.request_id AND a.problem IS NULL)
"""


# A request (or response) with an identity but nothing to name the target by.
_NO_TARGET = "'missing required field: request.mount_point or request.path'"


def _activity_final(rows: str) -> str:
    error = ("CASE WHEN request_id IS NULL THEN error "
             "ELSE coalesce(request_error, response_error) END")
    attrs = attrs_sql([
        ("mount_type", "f_mount_type"), ("namespace", "namespace"),
        ("remote_address", "f_remote"), ("token_type", "f_token_type"), ("policies", "policies"),
        ("error", error), ("root_token", "root_token"), ("token_meta", "token_meta"),
        ("changed_user", "CASE WHEN NOT read_only THEN nullif(regexp_extract(detail, "
                         "'^auth/[^/]+/users/([^/]+)', 1), '') END"),
        ("policy", "CASE WHEN NOT read_only THEN nullif(regexp_extract(detail, "
                   "'^sys/polic(?:y|ies/[^/]+)/([^/]+)', 1), '') END"),
        ("status", f"CASE WHEN ({error}) IS NOT NULL THEN 'error' WHEN responded THEN 'ok' "
                   "WHEN request_id IS NOT NULL THEN 'no_response' END")])
    return _folded(rows) + f"""
SELECT line, raw, coalesce(problem, CASE WHEN target IS NULL THEN {_NO_TARGET} END) AS reason,
    event_id, ts, account, target, action, detail,
    session_id, actor,
    CASE WHEN {_prefixes('f_display_name', _HUMAN)} THEN 'human'
         WHEN {_prefixes('f_display_name', _SERVICE)} THEN 'service'
         WHEN {_meta_has(_WORKLOAD_META)} THEN 'service'
         WHEN {_meta_has(_PERSON_META)} OR root_token THEN 'human' END AS actor_kind,
    read_only, CASE WHEN problem IS NULL THEN {attrs} END AS attrs,
    CASE WHEN problem IS NOT NULL THEN NULL WHEN ({error}) IS NOT NULL THEN 'failure'
         WHEN responded THEN 'success' WHEN request_id IS NOT NULL THEN 'unknown' END AS outcome
FROM (SELECT *, action IN ('read', 'list', 'help') AS read_only FROM v) v WHERE problem IS NOT NULL OR (cls = 'activity' AND account IS NOT NULL)
"""


def _ignored_rows(source: str) -> str:
    return f"""
SELECT line, raw, parse_error, f_type, f_time, {_CLASS} AS cls, {ts_fast_sql('f_time')} AS ts,
    nullif(f_id, '') AS request_id, {_ACCOUNT} AS account
FROM ({source}) s
"""


def _ignored_final(rows: str) -> str:
    # The same partition as _activity_final: a request is ignored when none of its lines
    # carries an identity (the fold there takes the first identity found).
    return f"""
WITH a AS MATERIALIZED (SELECT *, {_PROBLEM} AS problem FROM ({rows}) r),
g AS (SELECT request_id, bool_or(account IS NOT NULL) AS identified FROM a
      WHERE problem IS NULL AND cls = 'activity' AND request_id IS NOT NULL GROUP BY request_id)
SELECT a.line, a.raw, NULL::VARCHAR AS reason,
    CASE WHEN a.cls = 'other' THEN a.f_type ELSE 'request without a token' END AS event_type
FROM a LEFT JOIN g ON g.request_id = a.request_id
WHERE a.problem IS NULL
  AND (a.cls = 'other' OR NOT coalesce(g.identified, a.account IS NOT NULL))
"""


class VaultConnector:
    """Vault audit request/response pairs -> activity."""

    name = "vault"
    kinds = ("auto",)
    description = "HashiCorp Vault file audit device JSON lines -> activity (one row per request)"

    def stage(self, path: Path, kind: str, options: Options) -> list[Staged]:
        target = str(options.extra.get("vault_target") or "mount")
        if target not in ("mount", "path"):
            raise InputError(f"vault_target must be 'mount' or 'path', not {target!r}")
        params = {"tz": options.tz, "vault_target": target}
        return [
            staged_pair("activity", FIELDS, path, params, _activity_final, _rows),
            staged_pair("ignored", IGNORED_FIELDS, path, {"tz": options.tz}, _ignored_final,
                        _ignored_rows, number_lines=False),
        ]
