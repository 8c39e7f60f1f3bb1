"""Kubernetes API-server audit logs (JSON lines): native audit.k8s.io Events and cloud wrappers.

Shapes, told apart per line: a native `audit.k8s.io/v1` Event (`auditID`); GKE
Cloud Audit Logs (`protoPayload`, serviceName k8s.io); AKS diagnostic logs
(`properties.log`, category kube-audit / kube-audit-admin, the Event as an
object or as JSON text); Elastic's `kubernetes.audit` object; a shipper's
`message` holding the Event as JSON text.

One activity row per request: the stages of one `auditID` (GKE: `operation.id`)
are staged with the values of its ResponseComplete / Panic stage (else its last
line), so the store keeps one row and counts the other stages as duplicates. A
line that reuses an auditID of the file for another verb or request URI is a
clash and is quarantined (it is another request, not a stage of the first).

* account = `impersonatedUser.username` when impersonating, else `user.username`
  (GKE: authenticationInfo.principalEmail); actor = `user.username`;
  actor_kind = service for `system:*` users;
* target = the cluster: GKE resource.labels.cluster_name, the AKS cluster from
  resourceId, else options.extra['cluster'], else "kubernetes";
* action = verb + resource[/subresource] (`create pods/exec`), or verb + URI for
  non-resource requests; detail = requestURI; read_only = get/list/watch;
* attrs = namespace, resource, subresource, name, api_group, decision, status
  code, source_ip, impersonated_by, and `sensitive`: pod_exec (pods exec/attach/
  portforward), secret_access (secrets), rbac_change (writes to rbac roles and
  bindings), token_request (create serviceaccounts/token; service_account = its name);
* from the request body (`requestObject`, logged at level Request / RequestResponse):
  privileged (a container with securityContext.privileged), host_namespaces (hostPID,
  hostNetwork, hostIPC), host_path (hostPath volumes) for pods and workload templates;
  role_ref, role_ref_kind and subjects for role bindings; owner (ownerReferences[0]);
* a write by a controller (system:serviceaccount:kube-system:*-controller) keeps the
  controller as actor and gets attrs.human: the person whose create/update/patch of the
  owning object (directly, or through one more controller-written owner: pod -> ReplicaSet
  -> Deployment) is in the same file at or before it, else `unknown`;
* outcome = failure for responseStatus.code >= 400 or decision forbid, success for other
  codes (GKE: status code 0 success, other failure), NULL without a response.

Ignored (store table "ignored"): GKE entries of other services and AKS
diagnostic categories other than kube-audit / kube-audit-admin.
Quarantined: lines that are not JSON objects, objects of none of these shapes,
events without a user or a parseable timestamp.
"""

from __future__ import annotations

from pathlib import Path

from connectors.base import Options, Staged, ts_problem_sql
from connectors.jsonsql import (
    Fields, attrs_sql, content_id_sql, extract_sql, json_list_sql, staged_pair, ts_fast_sql,
    wrong_type_sql,
)

# The native Event's fields, relative to the Event.
EVENT: Fields = {
    "kind": ("kind",), "audit_id": ("auditID",), "stage": ("stage",), "uri": ("requestURI",),
    "verb": ("verb",), "username": ("user", "username"),
    "impersonated": ("impersonatedUser", "username"), "source_ips": ("sourceIPs",),
    "resource": ("objectRef", "resource"), "subresource": ("objectRef", "subresource"),
    "namespace": ("objectRef", "namespace"), "name": ("objectRef", "name"),
    "api_group": ("objectRef", "apiGroup"), "code": ("responseStatus", "code"),
    "received": ("requestReceivedTimestamp",), "stage_ts": ("stageTimestamp",),
    "decision": ("annotations", "authorization.k8s.io/decision"),
    "request_object": ("requestObject",),
}
_PP = "protoPayload"
FIELDS: Fields = {**EVENT,
    "aks_log": ("properties", "log"), "category": ("category",), "resource_id": ("resourceId",),
    "time": ("time",), "ecs": ("kubernetes", "audit"), "message": ("message",),
    "g_service": (_PP, "serviceName"), "g_method": (_PP, "methodName"),
    "g_resource": (_PP, "resourceName"), "g_user": (_PP, "authenticationInfo", "principalEmail"),
    "g_ip": (_PP, "requestMetadata", "callerIp"), "g_code": (_PP, "status", "code"),
    "g_ts": ("timestamp",), "g_insert": ("insertId",), "g_op": ("operation", "id"),
    "g_last": ("operation", "last"), "g_cluster": ("resource", "labels", "cluster_name"),
    "g_decision": ("labels", "authorization.k8s.io/decision"),
}
SHAPE_FIELDS: Fields = {k: FIELDS[k] for k in
                        ("kind", "audit_id", "aks_log", "category", "ecs", "message", "g_service")}

_AUDIT_CATEGORIES = "('kube-audit', 'kube-audit-admin')"
SHAPE_SQL = (
    "CASE WHEN parse_error IS NOT NULL THEN 'bad' "
    "WHEN f_audit_id IS NOT NULL OR f_kind = 'Event' THEN 'native' "
    "WHEN f_g_service = 'k8s.io' THEN 'gke' WHEN f_g_service IS NOT NULL THEN 'ignored' "
    f"WHEN f_aks_log IS NOT NULL AND f_category IN {_AUDIT_CATEGORIES} THEN 'wrapped' "
    "WHEN f_aks_log IS NOT NULL AND f_category IS NOT NULL THEN 'ignored' "
    "WHEN f_aks_log IS NOT NULL OR f_ecs IS NOT NULL "
    "OR starts_with(ltrim(f_message), '{') THEN 'wrapped' ELSE 'unknown' END"
)
IGNORED_TYPE_SQL = ("CASE WHEN f_g_service IS NOT NULL THEN 'gcp ' || f_g_service "
                    "ELSE 'azure ' || f_category END")

_WRAPPED_EXPR, _ = extract_sql(EVENT, "coalesce(f_aks_log, f_ecs, f_message)")
_GKE_PARTS = "string_split(f_g_resource, '/')"


def _field(name: str, gke: str | None = None) -> str:
    """One Event field for any shape: native column, wrapped Event, or the GKE equivalent."""
    k = list(EVENT).index(name) + 1
    return (f"CASE shape WHEN 'native' THEN f_{name} WHEN 'wrapped' THEN w[{k}] "
            f"WHEN 'gke' THEN {gke or 'NULL'} END")


def _rows(source: str) -> str:
    gke_ns = "CASE WHEN p[3] = 'namespaces' AND len(p) >= 5 THEN p[4] END"
    gke_at = "CASE WHEN p[3] = 'namespaces' AND len(p) >= 5 THEN 2 ELSE 0 END"
    return f"""
SELECT line, raw, parse_error, shape,
    {_field('audit_id', 'coalesce(f_g_op, f_g_insert)')} AS audit_id,
    {_field('stage', "CASE WHEN f_g_last = 'false' THEN 'RequestReceived' END")} AS stage,
    lower({_field('verb', "regexp_extract(f_g_method, '[.]([^.]+)$', 1)")}) AS verb,
    {_field('username', 'f_g_user')} AS username, {_field('impersonated')} AS impersonated,
    {_field('uri', 'f_g_resource')} AS uri,
    {_field('resource', f'CASE WHEN len(p) >= 3 THEN p[3 + {gke_at}] END')} AS resource,
    {_field('subresource', f'p[5 + {gke_at}]')} AS subresource,
    {_field('namespace', gke_ns)} AS namespace, {_field('name', f'p[4 + {gke_at}]')} AS name,
    {_field('api_group', "CASE WHEN len(p) >= 3 THEN nullif(p[1], 'core') END")} AS api_group,
    {_field('code', 'f_g_code')} AS code, {_field('decision', 'f_g_decision')} AS decision,
    {_field('source_ips', 'f_g_ip')} AS source_ip, {_field('request_object')} AS req,
    coalesce({_field('received', 'f_g_ts')}, {_field('stage_ts')}, f_time) AS ts_text,
    coalesce(nullif(f_g_cluster, ''), nullif(regexp_extract(f_resource_id,
             '(?i)/managedclusters/([^/]+)', 1), ''), nullif($cluster, ''), 'kubernetes')
        AS target
FROM (SELECT *, {_GKE_PARTS} AS p,
             CASE WHEN shape = 'wrapped' THEN try({_WRAPPED_EXPR}) END AS w
      FROM (SELECT *, {SHAPE_SQL} AS shape FROM ({source}) s) s2) s3
"""


# Where a written object holds its pod spec (a pod itself, a workload's template).
_POD_SPEC = ("CASE WHEN resource = 'pods' AND subresource IS NULL THEN '$.spec' "
             "WHEN resource = 'cronjobs' THEN '$.spec.jobTemplate.spec.template.spec' "
             "WHEN resource IN ('deployments', 'replicasets', 'statefulsets', 'daemonsets', "
             "'jobs', 'replicationcontrollers') THEN '$.spec.template.spec' END")
_CONTAINERS = ("containers", "initContainers", "ephemeralContainers")
_PRIVILEGED = ("(" + " OR ".join(
    f"list_contains(json_extract_string(ps, '$.{c}[*].securityContext.privileged'), 'true')"
    for c in _CONTAINERS) + ")")
_HOST_NS = ("nullif(concat_ws(',', " + ", ".join(
    f"CASE WHEN json_extract_string(ps, '$.{k}') = 'true' THEN '{k}' END"
    for k in ("hostPID", "hostNetwork", "hostIPC")) + "), '')")
_HOST_PATH = "nullif(array_to_string(json_extract_string(ps, '$.volumes[*].hostPath.path'), ','), '')"
# Controllers of kube-controller-manager act for whoever wrote the object they own.
CONTROLLER_SQL = ("(starts_with(username, 'system:serviceaccount:kube-system:') "
                  "AND suffix(username, '-controller') "
                  "OR username = 'system:kube-controller-manager')")
_WRITES = "('create', 'update', 'patch')"


def _mapped(rows: str) -> str:
    first_ip = f"split_part(coalesce({json_list_sql('source_ip')}, source_ip), ',', 1)"
    sensitive = (
        "CASE WHEN resource = 'pods' AND subresource IN ('exec', 'attach', 'portforward') "
        "THEN 'pod_exec' WHEN resource = 'secrets' THEN 'secret_access' "
        "WHEN api_group = 'rbac.authorization.k8s.io' AND resource IN ('roles', 'rolebindings', "
        "'clusterroles', 'clusterrolebindings') AND verb IN ('create', 'update', 'patch', "
        "'delete', 'deletecollection', 'bind', 'escalate') THEN 'rbac_change' "
        "WHEN resource = 'serviceaccounts' AND subresource = 'token' THEN 'token_request' END")
    binding = "resource IN ('rolebindings', 'clusterrolebindings')"
    attrs = attrs_sql([
        ("namespace", "namespace"), ("resource", "resource"), ("subresource", "subresource"),
        ("name", "name"), ("api_group", "nullif(api_group, '')"), ("decision", "decision"),
        ("status", "code"), ("source_ip", f"nullif({first_ip}, '')"),
        ("impersonated_by", "CASE WHEN impersonated IS NOT NULL THEN username END"),
        ("sensitive", sensitive),
        ("service_account", "CASE WHEN resource = 'serviceaccounts' AND subresource = 'token' "
                            "THEN name END")])
    # Read from the request body: only for the lines that carry one.
    body = attrs_sql([
        ("role_ref", f"CASE WHEN {binding} THEN nullif(json_extract_string(req, '$.roleRef.name'), "
                     "'') END"),
        ("role_ref_kind", f"CASE WHEN {binding} THEN json_extract_string(req, '$.roleRef.kind') END"),
        ("subjects", f"CASE WHEN {binding} THEN nullif(array_to_string(list_transform("
                     "json_extract(req, '$.subjects[*]'), lambda x: concat_ws(':', x->>'kind', "
                     "nullif(x->>'namespace', ''), x->>'name')), ','), '') END"),
        ("privileged", f"CASE WHEN {_PRIVILEGED} THEN true END"),
        ("host_namespaces", _HOST_NS), ("host_path", _HOST_PATH),
        ("owner", "nullif(concat_ws('/', owner_kind, owner_name), '')")])
    return f"""
SELECT line, raw, parse_error, shape, ts_text, {ts_fast_sql('ts_text')} AS ts, verb,
    CASE stage WHEN 'ResponseComplete' THEN 3 WHEN 'Panic' THEN 3 WHEN 'ResponseStarted' THEN 2
               WHEN 'RequestReceived' THEN 1 ELSE 3 END AS stage_rank,
    coalesce(nullif(audit_id, ''), {content_id_sql(['ts_text', 'username', 'verb', 'uri'])})
        AS event_id,
    coalesce(nullif(impersonated, ''), nullif(username, '')) AS account, target,
    CASE WHEN resource IS NOT NULL THEN concat_ws(' ', verb,
              resource || coalesce('/' || nullif(subresource, ''), ''))
         ELSE concat_ws(' ', verb, uri) END AS action,
    uri AS detail, nullif(username, '') AS actor,
    CASE WHEN starts_with(username, 'system:') THEN 'service' END AS actor_kind,
    CASE WHEN verb IS NOT NULL THEN verb IN ('get', 'list', 'watch') END AS read_only,
    CASE WHEN req IS NULL THEN base WHEN body IS NULL THEN base WHEN base IS NULL THEN body
         ELSE left(base, -1) || ',' || substr(body, 2) END AS attrs,
    CASE WHEN shape = 'gke' THEN CASE WHEN code = '0' THEN 'success' WHEN code IS NOT NULL
                                      THEN 'failure' END
         WHEN decision = 'forbid' OR try_cast(code AS INTEGER) >= 400 THEN 'failure'
         WHEN try_cast(code AS INTEGER) > 0 THEN 'success' END AS outcome,
    namespace, resource, coalesce(name, json_extract_string(req, '$.metadata.name')) AS obj_name,
    owner_kind, owner_name, username, coalesce({CONTROLLER_SQL}, false) AS controller
FROM (SELECT *, {attrs} AS base, CASE WHEN req IS NOT NULL THEN {body} END AS body
      FROM (SELECT *, CASE WHEN verb IN {_WRITES} AND req IS NOT NULL
                     THEN json_extract(req, {_POD_SPEC}) END AS ps,
             CASE WHEN req IS NOT NULL THEN json_extract_string(req,
                  '$.metadata.ownerReferences[0].kind') END AS owner_kind,
             CASE WHEN req IS NOT NULL THEN json_extract_string(req,
                  '$.metadata.ownerReferences[0].name') END AS owner_name
            FROM ({rows}) r0) r1) r
"""


_COLS = "event_id, ts, account, target, action, detail, actor, actor_kind, read_only, outcome"

# A controller's write, linked to the person who wrote the object it owns (ownerReferences[0]
# of its request body), at or before it, in the same file; through one more controller-written
# owner (pod -> ReplicaSet -> Deployment, pod -> Job -> CronJob). Else human = 'unknown'.
_LINK = f"""
obj AS MATERIALIZED (
    SELECT event_id, namespace, resource, obj_name AS name, ts, username, controller, verb,
        owner_kind, owner_name
    FROM chosen WHERE verb IN ('create', 'update', 'patch', 'delete')
                  AND (controller OR verb IN {_WRITES} AND obj_name IS NOT NULL)),
hum AS (SELECT * FROM obj WHERE NOT controller AND verb IN {_WRITES}),
ctl AS (SELECT * FROM obj WHERE controller),
l1 AS (SELECT c.event_id, max_by(h.username, h.ts) AS human FROM ctl c JOIN hum h
       ON h.namespace IS NOT DISTINCT FROM c.namespace AND h.resource = lower(c.owner_kind) || 's'
          AND h.name = c.owner_name AND h.ts <= c.ts GROUP BY c.event_id),
l2 AS (SELECT c.event_id, max_by(h.username, h.ts) AS human FROM ctl c
       JOIN ctl o ON o.namespace IS NOT DISTINCT FROM c.namespace
            AND o.resource = lower(c.owner_kind) || 's' AND o.name = c.owner_name AND o.ts <= c.ts
       JOIN hum h ON h.namespace IS NOT DISTINCT FROM o.namespace
            AND h.resource = lower(o.owner_kind) || 's' AND h.name = o.owner_name AND h.ts <= c.ts
       GROUP BY c.event_id),
lk AS (SELECT ctl.event_id, coalesce(l1.human, l2.human, 'unknown') AS human
       FROM ctl LEFT JOIN l1 ON l1.event_id = ctl.event_id LEFT JOIN l2 ON l2.event_id = ctl.event_id)
"""


def _activity_final(rows: str) -> str:
    # The stages of one request share its auditID, verb and request URI. A line whose auditID
    # the file's first line with that auditID used for another verb or URI is a clash, not a
    # stage of the same request: it is quarantined, never folded into the first as a duplicate.
    return f"""
WITH a0 AS MATERIALIZED (
    SELECT *, CASE WHEN parse_error IS NOT NULL THEN parse_error
        WHEN shape = 'unknown' THEN 'not a Kubernetes audit event (no auditID, protoPayload, '
             || 'properties.log, kubernetes.audit or message)'
        WHEN ts IS NULL THEN {ts_problem_sql('ts_text', 'requestReceivedTimestamp')}
        WHEN account IS NULL THEN coalesce(
             CASE WHEN shape = 'native' THEN {wrong_type_sql(('user',))} END,
             'missing required field: user.username')
    END AS reason FROM ({_mapped(rows)}) m WHERE shape <> 'ignored'),
first AS (SELECT event_id, min(line) AS first_line,
                 arg_min(struct_pack(verb, detail), line) AS request
          FROM a0 WHERE reason IS NULL GROUP BY event_id),
a AS MATERIALIZED (
    SELECT a0.* REPLACE (CASE
        WHEN a0.reason IS NULL AND struct_pack(verb := a0.verb, detail := a0.detail)
                                   IS DISTINCT FROM f.request
        THEN 'auditID ' || a0.event_id || ' is already used at line ' || f.first_line
             || ' by a different request (' || coalesce(f.request.verb, '?') || ' '
             || coalesce(f.request.detail, '?') || ')'
        ELSE a0.reason END AS reason)
    FROM a0 LEFT JOIN first f ON f.event_id = a0.event_id),
pick AS (SELECT arg_max(line, stage_rank * 1000000000000 + line) AS line
         FROM a WHERE reason IS NULL GROUP BY event_id),
chosen AS (SELECT a.* FROM a SEMI JOIN pick ON pick.line = a.line),
{_LINK}
SELECT a.line, a.raw, a.reason,
    {', '.join(f'CASE WHEN a.reason IS NULL THEN c.{c} ELSE a.{c} END AS {c}'
               for c in _COLS.split(', '))},
    CASE WHEN a.reason IS NOT NULL THEN a.attrs WHEN lk.human IS NULL THEN c.attrs
         ELSE json_merge_patch(coalesce(c.attrs, '{{}}'), json_object('human', lk.human))::VARCHAR
    END AS attrs, NULL::VARCHAR AS session_id
FROM a LEFT JOIN chosen c ON c.event_id = a.event_id AND a.reason IS NULL
LEFT JOIN lk ON lk.event_id = c.event_id
"""


def _ignored_rows(source: str) -> str:
    return (f"SELECT line, raw, parse_error, f_g_service, f_category, {SHAPE_SQL} AS shape "
            f"FROM ({source}) s")


def _ignored_final(rows: str) -> str:
    return (f"SELECT line, raw, NULL::VARCHAR AS reason, {IGNORED_TYPE_SQL} AS event_type "
            f"FROM ({rows}) r WHERE shape = 'ignored'")


class KubernetesConnector:
    """Kubernetes audit events (native, GKE, AKS, Elastic) -> activity."""

    name = "k8s"
    kinds = ("auto",)
    description = ("Kubernetes API-server audit log JSON lines (audit.k8s.io Event, GKE "
                   "protoPayload, AKS properties.log, Elastic kubernetes.audit) -> activity")

    def stage(self, path: Path, kind: str, options: Options) -> list[Staged]:
        params = {"tz": options.tz, "cluster": str(options.extra.get("cluster") or "")}
        return [
            staged_pair("activity", FIELDS, path, params, _activity_final, _rows, tail_safe=True),
            staged_pair("ignored", SHAPE_FIELDS, path, {},
                        _ignored_final, _ignored_rows, number_lines=False, tail_safe=True),
        ]
