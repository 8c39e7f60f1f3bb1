"""k8s connector: native, GKE and AKS audit events; one row per request; sensitive marks."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pytest

from connectors.base import Options
from connectors.k8s import KubernetesConnector
from tests.helpers import ingest_one, reduced_rows as _cells, activity_by_event as _by_id

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "k8s"
SAMPLE = (Path(__file__).resolve().parents[2] / "shared" / "vendor-samples" / "elastic-kubernetes"
          / "test-audit.log")


def _ingest(path, store=None, **opts):
    return ingest_one(KubernetesConnector(), path, store, **opts)




def test_vendor_sample_counts_balance_and_wrappers_name_the_cluster():
    if not SAMPLE.is_file():
        pytest.skip(f"vendor sample {SAMPLE} not present (../shared/vendor-samples "
                    "beside the repo)")
    store, r = _ingest(SAMPLE)
    assert r.read == len(SAMPLE.read_text().splitlines()) == 5
    # The sample reuses one auditID for four events of three different requests: the first
    # keeps it, the other three are clashes, quarantined with the line that owns the id.
    assert (r.accepted, r.quarantined, r.duplicates, r.ignored) == (2, 3, 0, 0)
    assert set(r.reasons) == {"auditID abcde12345 is already used at line 1 by a different "
                              "request (get /api/v1/namespaces/default/pods)"}
    got = _by_id(store)
    assert (got["1234abcd"]["target"], got["1234abcd"]["action"]) == ("test-cluster", "get readyz")
    assert (got["abcde12345"]["action"], got["abcde12345"]["detail"]) == (
        "get pods", "/api/v1/namespaces/default/pods")


def _event(audit_id, stage, verb, uri, ts="2026-11-16T10:00:00.000000Z"):
    return json.dumps({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
                       "auditID": audit_id, "stage": stage, "requestURI": uri, "verb": verb,
                       "user": {"username": "alice"}, "requestReceivedTimestamp": ts,
                       "stageTimestamp": ts})


def test_one_audit_id_for_different_requests_is_a_clash_not_a_duplicate(tmp_path):
    path = tmp_path / "audit.log"
    path.write_text("\n".join([
        _event("A", "RequestReceived", "delete", "/api/v1/namespaces/prod"),
        _event("A", "ResponseComplete", "delete", "/api/v1/namespaces/prod"),   # same request
        _event("A", "ResponseComplete", "get", "/api/v1/namespaces/prod"),      # other verb
        _event("A", "ResponseComplete", "delete", "/api/v1/namespaces/dev"),    # other URI
        _event("B", "ResponseComplete", "get", "/api/v1/pods"),
    ]) + "\n")
    store, r = _ingest(path)
    assert (r.read, r.accepted, r.duplicates, r.quarantined) == (5, 2, 1, 2)
    assert store.query("SELECT line, reason FROM quarantine ORDER BY line") == [
        (3, "auditID A is already used at line 1 by a different request "
            "(delete /api/v1/namespaces/prod)"),
        (4, "auditID A is already used at line 1 by a different request "
            "(delete /api/v1/namespaces/prod)")]
    assert _by_id(store)["A"]["action"] == "delete /api/v1/namespaces/prod"


def test_stages_of_one_request_are_one_row_with_the_complete_stage():
    store, r = _ingest(FIXTURES / "audit.jsonl")
    assert (r.read, r.accepted, r.duplicates, r.ignored, r.quarantined) == (12, 6, 2, 2, 2)
    ex = _by_id(store)["a-exec"]
    assert (ex["line"], ex["account"], ex["action"], ex["read_only"]) == (
        1, "alice@corp.example", "create pods/exec", False)
    attrs = json.loads(ex["attrs"])
    assert (attrs["status"], attrs["sensitive"], attrs["namespace"], attrs["source_ip"]) == (
        "200", "pod_exec", "payments", "10.20.0.5")
    assert ex["ts"] == datetime(2026, 3, 2, 10, 0, 0, 100000, tzinfo=timezone.utc)


def test_secret_read_rbac_change_and_impersonation_are_marked():
    got = _by_id(_ingest(FIXTURES / "audit.jsonl")[0])
    sec, rbac, node = got["a-secret"], got["a-rbac"], got["a-node"]
    assert (sec["read_only"], json.loads(sec["attrs"])["sensitive"]) == (True, "secret_access")
    assert (rbac["account"], rbac["actor"]) == ("bob@corp.example", "teleport-proxy")
    assert json.loads(rbac["attrs"])["sensitive"] == "rbac_change"
    assert json.loads(rbac["attrs"])["impersonated_by"] == "teleport-proxy"
    assert (node["actor_kind"], node["read_only"]) == ("service", True)


def test_gke_and_aks_wrappers_map_like_native_events():
    got = _by_id(_ingest(FIXTURES / "audit.jsonl")[0])
    gke, aks = got["op-1"], got["a-aks"]
    assert (gke["account"], gke["target"], gke["action"]) == (
        "carol@corp.example", "gke-prod", "create pods/exec")
    assert json.loads(gke["attrs"])["namespace"] == "default"
    assert (aks["account"], aks["target"], aks["action"]) == (   # properties.log as JSON text
        "dave@corp.example", "AKS-PROD", "delete deployments")


def test_native_events_take_the_cluster_option_and_other_services_are_ignored():
    store, _ = _ingest(FIXTURES / "audit.jsonl", extra={"cluster": "prod-eu"})
    assert _by_id(store)["a-secret"]["target"] == "prod-eu"
    assert dict(store.query("SELECT event_type, count FROM ignored_counts")) == {
        "gcp compute.googleapis.com": 1, "azure kube-apiserver": 1}


def test_malformed_and_unknown_lines_are_quarantined_with_line_numbers():
    store, _ = _ingest(FIXTURES / "audit.jsonl")
    got = store.query("SELECT line, reason FROM quarantine ORDER BY line")
    assert got[0] == (5, "invalid JSON")
    assert got[1][0] == 12 and got[1][1].startswith("not a Kubernetes audit event")


def test_fast_and_exact_readers_agree(tmp_path):
    clean = tmp_path / "clean.jsonl"
    clean.write_text("\n".join(ln for ln in (FIXTURES / "audit.jsonl").read_text().splitlines()
                               if "broken" not in ln) + "\n")
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET preserve_insertion_order = true")
    for batch in KubernetesConnector().stage(clean, "auto", Options()):
        fast = con.execute(batch.sql, batch.params)
        keep = [i for i, d in enumerate(fast.description) if d[0] not in ("raw", "line")]
        fast_rows = fast.fetchall()
        exact = con.execute(batch.exact.sql, batch.exact.params).fetchall()
        assert _cells(fast_rows, keep) == _cells(exact, keep)


def _rr_event(aid, verb, uri, user, obj, code=201, body=None, stage="ResponseComplete",
           t="2026-03-02T10:00:00Z"):
    resource, ns, name, sub = obj
    ev = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
          "auditID": aid, "stage": stage, "requestURI": uri, "verb": verb,
          "user": {"username": user}, "sourceIPs": ["10.0.0.1"],
          "objectRef": {k: v for k, v in (("resource", resource), ("namespace", ns),
                                          ("name", name), ("subresource", sub)) if v},
          "requestReceivedTimestamp": t, "stageTimestamp": t,
          "annotations": {"authorization.k8s.io/decision": "forbid" if code == 403 else "allow"}}
    if stage != "RequestReceived":
        ev["responseStatus"] = {"code": code}
    if body is not None:
        ev["requestObject"] = body
    return json.dumps(ev)


def _owned(name, kind=None, owner=None, spec=None):
    meta = {"name": name}
    if owner:
        meta["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "controller": True}]
    return {"kind": kind, "metadata": meta, "spec": spec or {}}


_PRIV_SPEC = {"hostPID": True, "hostNetwork": False,
              "containers": [{"name": "c", "securityContext": {"privileged": True}}],
              "volumes": [{"name": "root", "hostPath": {"path": "/"}}, {"name": "tmp"}]}


def test_request_bodies_flag_privileged_pods_bindings_tokens_and_link_controllers(tmp_path):
    ctl = "system:serviceaccount:kube-system:"
    deploy_uri = "/apis/apps/v1/namespaces/prod/deployments"
    lines = [
        _rr_event("d1", "create", deploy_uri, "alice", ("deployments", "prod", None, None),
               body=_owned("web", "Deployment", spec={"template": {"spec": _PRIV_SPEC}}),
               stage="RequestReceived"),
        _rr_event("d1", "create", deploy_uri, "alice", ("deployments", "prod", None, None),
               body=_owned("web", "Deployment", spec={"template": {"spec": _PRIV_SPEC}})),
        _rr_event("rs1", "create", "/apis/apps/v1/namespaces/prod/replicasets",
               ctl + "deployment-controller", ("replicasets", "prod", None, None),
               body=_owned("web-5d", "ReplicaSet", ("Deployment", "web")),
               t="2026-03-02T10:00:01Z"),
        _rr_event("p1", "create", "/api/v1/namespaces/prod/pods", ctl + "replicaset-controller",
               ("pods", "prod", None, None), body=_owned("web-5d-x", "Pod", ("ReplicaSet", "web-5d"),
                                                        _PRIV_SPEC), t="2026-03-02T10:00:02Z"),
        _rr_event("p2", "create", "/api/v1/namespaces/batch/pods", ctl + "job-controller",
               ("pods", "batch", None, None), body=_owned("nightly-x", "Pod", ("Job", "nightly")),
               t="2026-03-02T10:00:03Z"),
        _rr_event("p3", "create", "/api/v1/namespaces/dev/pods", "dave",
               ("pods", "dev", None, None),
               body=_owned("debug", "Pod", spec={"hostNetwork": True, "hostIPC": True,
                                                "containers": [{"name": "c"}]})),
        _rr_event("b1", "create", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", "bob",
               ("clusterrolebindings", None, None, None),
               body={"metadata": {"name": "carol-admin"},
                     "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"},
                     "subjects": [{"kind": "User", "name": "carol"},
                                  {"kind": "ServiceAccount", "namespace": "ci", "name": "ci"}]}),
        _rr_event("t1", "create", "/api/v1/namespaces/ci/serviceaccounts/deployer/token", "carol",
               ("serviceaccounts", "ci", "deployer", "token"), code=403,
               body={"spec": {"audiences": ["api"]}}),
        _rr_event("n1", "delete", "/api/v1/namespaces/ci/pods/gone", "carol",
                  ("pods", "ci", "gone", None), code=400),            # allowed, then refused
    ]
    path = tmp_path / "audit.log"
    path.write_text("\n".join(lines) + "\n")
    store, r = _ingest(path)
    assert (r.read, r.accepted, r.duplicates, r.ignored, r.quarantined) == (9, 8, 1, 0, 0)
    got = {k: (v, json.loads(v["attrs"])) for k, v in _by_id(store).items()}
    d1, p1, p2, p3 = got["d1"][1], got["p1"][1], got["p2"][1], got["p3"][1]
    assert (d1["privileged"], d1["host_namespaces"], d1["host_path"]) == (True, "hostPID", "/")
    assert "human" not in d1                                   # a person's own request
    assert (p1["privileged"], p1["host_path"], p1["owner"]) == (True, "/", "ReplicaSet/web-5d")
    assert got["p1"][0]["actor"] == ctl + "replicaset-controller"      # kept as the actor
    assert p1["human"] == "alice"                                       # via RS -> Deployment
    assert got["rs1"][1]["human"] == "alice"
    assert p2["human"] == "unknown" and "privileged" not in p2
    assert (p3["host_namespaces"], "privileged" in p3) == ("hostNetwork,hostIPC", False)
    b1 = got["b1"][1]
    assert (b1["role_ref"], b1["role_ref_kind"], b1["subjects"]) == (
        "cluster-admin", "ClusterRole", "User:carol,ServiceAccount:ci:ci")
    t1 = got["t1"]
    assert (t1[0]["action"], t1[0]["outcome"]) == ("create serviceaccounts/token", "failure")
    assert (t1[1]["sensitive"], t1[1]["service_account"]) == ("token_request", "deployer")
    assert {got[k][0]["outcome"] for k in ("d1", "p1", "b1")} == {"success"}
    assert got["n1"][0]["outcome"] == "failure"
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for batch in KubernetesConnector().stage(path, "auto", Options()):
        fast = con.execute(batch.sql, batch.params)
        keep = [i for i, d in enumerate(fast.description) if d[0] not in ("raw", "line")]
        assert _cells(fast.fetchall(), keep) == _cells(
            con.execute(batch.exact.sql, batch.exact.params).fetchall(), keep)


def test_vendor_sample_outcomes():
    if not SAMPLE.is_file():
        pytest.skip(f"vendor sample {SAMPLE} not present")
    store, r = _ingest(SAMPLE)
    assert r.read == r.accepted + r.ignored + r.quarantined + r.duplicates
    # native and AKS 200 responses, the GKE status code 0: all say success
    assert dict(store.query("SELECT outcome, count(*) FROM activity GROUP BY 1")) == {
        "success": r.accepted}
