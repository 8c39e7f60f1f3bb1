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
