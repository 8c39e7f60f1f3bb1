"""vault connector: one activity row per request id, response outcome in attrs."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from connectors.base import Options
from connectors.vault import VaultConnector
from correlate.errors import InputError
from tests.helpers import ingest_one, reduced_rows as _cells, activity_by_event as _by_id

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "vault"
SAMPLE = (Path(__file__).resolve().parents[2] / "shared" / "vendor-samples"
          / "elastic-hashicorp_vault" / "test-audit.log")


def _ingest(path, store=None, **opts):
    return ingest_one(VaultConnector(), path, store, **opts)




def test_vendor_sample_counts_balance():
    if not SAMPLE.is_file():
        pytest.skip(f"vendor sample {SAMPLE} not present (../shared/vendor-samples "
                    "beside the repo)")
    store, r = _ingest(SAMPLE)
    assert r.read == len(SAMPLE.read_text().splitlines()) == 13
    # 5 requests (4 with their response: duplicates), 4 KMIP records ignored.
    assert (r.accepted, r.duplicates, r.ignored, r.quarantined) == (5, 4, 4, 0)
    denied = _by_id(store)["24ac580b-805a-d9ee-4d0d-7046932f4e05"]
    assert json.loads(denied["attrs"])["status"] == "error"
    assert denied["account"].startswith("hmac-sha256:")            # no display_name: the token
    kv = _by_id(store)["0042ad1b-1400-7eb7-5e25-1dfc898c1998"]
    assert (kv["target"], kv["action"], kv["read_only"]) == ("secret/", "read", True)


def test_request_and_response_are_one_row_with_the_response_outcome():
    store, r = _ingest(FIXTURES / "audit.jsonl")
    assert (r.read, r.accepted, r.duplicates, r.ignored, r.quarantined) == (11, 4, 3, 2, 2)
    got = _by_id(store)
    r1 = got["r-1"]
    assert (r1["line"], r1["account"], r1["actor"], r1["target"], r1["detail"]) == (
        1, "oidc-alice@corp.example", "ent-alice", "database/", "database/creds/prod-admin")
    assert (r1["actor_kind"], r1["read_only"], r1["session_id"]) == (
        "human", True, "hmac-sha256:" + "b1" * 32)
    assert json.loads(r1["attrs"])["status"] == "ok"
    r2 = json.loads(got["r-2"]["attrs"])
    assert (r2["status"], r2["error"]) == ("error", "1 error occurred:\n\t* permission denied\n\n")
    assert got["r-2"]["actor_kind"] == "service"


def test_request_without_response_namespace_and_auth_mount():
    r3 = _by_id(_ingest(FIXTURES / "audit.jsonl")[0])["r-3"]
    assert r3["target"] == "team-a/auth/userpass/"
    attrs = json.loads(r3["attrs"])
    assert (attrs["status"], attrs["namespace"]) == ("no_response", "team-a/")


def test_login_takes_its_identity_from_the_response():
    r5 = _by_id(_ingest(FIXTURES / "audit.jsonl")[0])["r-5"]
    assert (r5["line"], r5["account"], r5["actor"]) == (10, "userpass-alice", "ent-alice")


def test_tokenless_requests_and_kmip_are_ignored_bad_lines_quarantined():
    store, _ = _ingest(FIXTURES / "audit.jsonl")
    assert dict(store.query("SELECT event_type, count FROM ignored_counts")) == {
        "kmip-request": 1, "request without a token": 1}
    assert store.query("SELECT line, reason FROM quarantine ORDER BY line") == [
        (5, "invalid JSON"), (9, "not a Vault audit record: missing type")]


def test_vault_target_path_option():
    got = _by_id(_ingest(FIXTURES / "audit.jsonl", extra={"vault_target": "path"})[0])
    assert got["r-1"]["target"] == "database/creds/prod-admin"
    with pytest.raises(InputError, match="vault_target"):
        VaultConnector().stage(FIXTURES / "audit.jsonl", "auto",
                               Options(extra={"vault_target": "mount-point"}))


def test_response_in_a_later_file_is_a_duplicate(tmp_path):
    lines = (FIXTURES / "audit.jsonl").read_text().splitlines()
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    first.write_text(lines[0] + "\n")
    second.write_text(lines[1] + "\n")
    store, _ = _ingest(first)
    _, r = _ingest(second, store)
    assert (r.read, r.duplicates) == (1, 1)


def test_fast_and_exact_readers_agree(tmp_path):
    clean = tmp_path / "clean.jsonl"
    clean.write_text("\n".join(ln for ln in (FIXTURES / "audit.jsonl").read_text().splitlines()
                               if ln.startswith("{")) + "\n")
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET preserve_insertion_order = true")
    for batch in VaultConnector().stage(clean, "auto", Options()):
        fast = con.execute(batch.sql, batch.params)
        keep = [i for i, d in enumerate(fast.description) if d[0] not in ("raw", "line")]
        fast_rows = fast.fetchall()
        exact = con.execute(batch.exact.sql, batch.exact.params).fetchall()
        assert _cells(fast_rows, keep) == _cells(exact, keep)


def test_vendor_sample_outcomes_and_token_kind_from_metadata():
    if not SAMPLE.is_file():
        pytest.skip(f"vendor sample {SAMPLE} not present")
    got = _by_id(_ingest(SAMPLE)[0])
    assert got["24ac580b-805a-d9ee-4d0d-7046932f4e05"]["outcome"] == "failure"   # permission denied
    assert got["cd09708b-11cc-2985-648b-cfe262cf7e50"]["outcome"] == "success"
    # token-<alloc>-runner: a Nomad task's token, a service by its metadata (AllocationID, Task)
    runner = got["0042ad1b-1400-7eb7-5e25-1dfc898c1998"]
    assert runner["actor_kind"] == "service"
    assert json.loads(runner["attrs"])["token_meta"]["Task"] == "runner"


def _vault_line(rid, typ, path, op="update", auth=None, error=None, t="2026-03-02T10:00:00Z"):
    rec = {"time": t, "type": typ, "auth": auth or {},
           "request": {"id": rid, "operation": op, "path": path, "mount_type": "system",
                       "client_token": "hmac-sha256:" + rid}}
    if error:
        rec["error"] = error
    return json.dumps(rec)


def test_root_token_named_and_flagged_token_names_not_a_service_alone(tmp_path):
    root = {"client_token": "hmac-sha256:aa", "accessor": "hmac-sha256:bb",
            "policies": ["root"], "token_policies": ["root"], "token_type": "service"}
    bare = {"display_name": "token", "policies": ["ops"], "accessor": "hmac-sha256:cc"}
    person = {"display_name": "token-alice", "policies": ["ops"], "accessor": "hmac-sha256:dd",
              "metadata": {"email": "alice@corp.example"}}
    lines = [
        _vault_line("q1", "request", "sys/policies/acl/admins", auth=root),
        _vault_line("q1", "response", "sys/policies/acl/admins", auth=root),
        _vault_line("q2", "request", "auth/userpass/users/mallory", auth=bare),
        _vault_line("q2", "response", "auth/userpass/users/mallory", auth=bare,
                    error="permission denied"),
        _vault_line("q3", "request", "sys/policy/legacy", op="delete", auth=person),
        _vault_line("q4", "request", "sys/policies/acl/admins", op="read", auth=person),
    ]
    path = tmp_path / "audit.log"
    path.write_text("\n".join(lines) + "\n")
    store, r = _ingest(path)
    assert (r.read, r.accepted, r.duplicates, r.ignored, r.quarantined) == (6, 4, 2, 0, 0)
    got = _by_id(store)
    q1 = got["q1"]
    assert (q1["account"], q1["actor"], q1["actor_kind"], q1["outcome"]) == (
        "root token", "root token", "human", "success")
    a1 = json.loads(q1["attrs"])
    assert a1["root_token"] is True and a1["policy"] == "admins"
    q2 = got["q2"]
    assert (q2["actor_kind"], q2["outcome"]) == (None, "failure")     # "token": not a service
    assert json.loads(q2["attrs"])["changed_user"] == "mallory"
    q3 = got["q3"]
    assert (q3["actor_kind"], q3["outcome"]) == ("human", "unknown")  # no response logged
    assert json.loads(q3["attrs"])["policy"] == "legacy"
    assert "policy" not in json.loads(got["q4"]["attrs"])             # a read changes nothing
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for batch in VaultConnector().stage(path, "auto", Options()):
        fast = con.execute(batch.sql, batch.params)
        keep = [i for i, d in enumerate(fast.description) if d[0] not in ("raw", "line")]
        assert _cells(fast.fetchall(), keep) == _cells(
            con.execute(batch.exact.sql, batch.exact.params).fetchall(), keep)
