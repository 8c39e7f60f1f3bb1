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
