"""A vendor log that grew since its last ingest is read from where it was left when its records
are one a line and independent (k8s audit, CloudTrail JSON lines): the new part only, true line
numbers, and an old bad line is not quarantined again. Sources whose records pair across lines
(Vault request/response, Teleport sessions citing their request) are read whole, as before."""

from __future__ import annotations

import json

import pytest

from connectors.base import Options
from connectors.registry import get_connector
from correlate.ingest import ingest
from correlate.store import Store


def k8s(i: int) -> str:
    return json.dumps({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": f"a{i}",
                       "stage": "ResponseComplete", "requestURI": f"/api/v1/pods/p{i}",
                       "verb": "get", "user": {"username": "alice"},
                       "requestReceivedTimestamp": "2026-11-16T10:00:00Z"})


def cloudtrail(i: int) -> str:
    return json.dumps({"eventVersion": "1.08", "eventTime": "2026-11-16T10:00:00Z",
                       "eventSource": "s3.amazonaws.com", "eventName": "GetObject",
                       "eventID": f"ct-{i}", "recipientAccountId": "111122223333",
                       "userIdentity": {"type": "IAMUser", "userName": "carol",
                                        "accountId": "111122223333"}})


def _ingest(store, source, path):
    (r,) = ingest(store, get_connector(source), None, [str(path)], Options())
    assert r.balanced, r
    return r


@pytest.mark.parametrize("source, line", [("k8s", k8s), ("cloudtrail", cloudtrail)])
def test_a_grown_vendor_log_is_read_from_where_it_was_left(tmp_path, source, line):
    path = tmp_path / "live.log"
    path.write_text(f"{line(1)}\n{{bad json\n{line(2)}\n")
    store = Store(":memory:")
    first = _ingest(store, source, path)
    assert (first.read, first.accepted, first.quarantined) == (3, 2, 1)
    with open(path, "a") as fh:
        fh.write(f"{line(3)}\n{{also bad\n")
    second = _ingest(store, source, path)
    assert (second.read, second.accepted, second.quarantined, second.duplicates) == (2, 1, 1, 0)
    assert store.query("SELECT line FROM quarantine ORDER BY line") == [(2,), (5,)]
    assert store.scalar("SELECT count(*) FROM activity") == 3
    assert store.scalar("SELECT max(offset_bytes) FROM ingest_log") > 0


def test_vault_pairs_across_lines_so_a_grown_log_is_read_whole(tmp_path):
    req = {"type": "request", "time": "2026-11-16T10:00:00Z",
           "auth": {"display_name": "alice", "entity_id": "e1", "policies": ["default"]},
           "request": {"id": "r1", "operation": "read", "path": "secret/data/app",
                       "mount_type": "kv", "namespace": {"id": "root"}}}
    path = tmp_path / "audit.log"
    path.write_text(json.dumps(req) + "\n{bad json\n")
    store = Store(":memory:")
    _ingest(store, "vault", path)
    with open(path, "a") as fh:
        fh.write(json.dumps({**req, "type": "response", "response": {"data": {}}}) + "\n")
    second = _ingest(store, "vault", path)
    assert second.read == 3 and store.scalar("SELECT max(offset_bytes) FROM ingest_log") == 0
