"""OCSF input: API Activity gets the CloudTrail connector's account/actor/target, Process
Activity and Authentication auditd's; Parquet in Security Lake's partitioned layout."""

from __future__ import annotations

import json

import duckdb

from connectors.cloudtrail import CloudTrailConnector
from connectors.ocsf import OcsfConnector
from tests.helpers import ingest_one

T_MS = 1767607200000          # 2026-01-05T10:00:00Z
ROLE_ARN = "arn:aws:iam::111122223333:role/Admin"

CLOUDTRAIL = {
    "eventTime": "2026-01-05T10:00:00Z", "eventSource": "iam.amazonaws.com",
    "eventName": "CreateUser", "eventID": "ct-1", "recipientAccountId": "111122223333",
    "awsRegion": "eu-west-1", "requestParameters": {"userName": "eve"},
    "userIdentity": {"type": "AssumedRole", "principalId": "AROA1:alice",
                     "arn": "arn:aws:sts::111122223333:assumed-role/Admin/alice",
                     "accountId": "111122223333", "accessKeyId": "ASIAXYZ",
                     "sessionContext": {"sessionIssuer": {"arn": ROLE_ARN, "userName": "Admin"}}}}
API = {
    "class_uid": 6003, "time": T_MS, "metadata": {"uid": "ct-1"},
    "api": {"service": {"name": "iam.amazonaws.com"}, "operation": "CreateUser",
            "request": {"data": "{\"userName\":\"eve\"}"}},
    "cloud": {"region": "eu-west-1", "account": {"uid": "111122223333"}},
    "actor": {"user": {"type": "AssumedRole", "uid_alt": "AROA1:alice",
                       "uid": "arn:aws:sts::111122223333:assumed-role/Admin/alice",
                       "account": {"uid": "111122223333"}, "credential_uid": "ASIAXYZ"},
              "session": {"issuer": ROLE_ARN}},
    "status_id": 1}
PROCESS = {
    "class_uid": 1007, "activity_id": 1, "time": T_MS + 60000, "status_id": 1,
    "device": {"hostname": "db-01"}, "actor": {"user": {"name": "alice", "uid": "1000"},
                                              "session": {"uid": "42"}},
    "process": {"cmd_line": "systemctl restart postgresql", "user": {"uid": "0"}}}
LOGIN_FAILED = {
    "class_uid": 3002, "activity_id": 1, "status_id": 2, "time": T_MS + 120000,
    "user": {"name": "bob"}, "dst_endpoint": {"hostname": "web-01", "ip": "10.0.0.5"}}
FINDING = {"class_uid": 2004, "time": T_MS}      # a Detection Finding: not an action


def _jsonl(path, records):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


def _rows(store):
    return store.query_dicts("SELECT event_id, ts, account, target, action, detail, session_id, "
                             "actor, outcome FROM activity ORDER BY ts")


def test_api_activity_maps_like_the_cloudtrail_connector(tmp_path):
    ct_store, _ = ingest_one(CloudTrailConnector(), _jsonl(tmp_path / "ct.jsonl", [CLOUDTRAIL]))
    store, result = ingest_one(OcsfConnector(), _jsonl(tmp_path / "ocsf.jsonl", [API]))
    assert result.accepted == 1
    (ours,), (theirs,) = _rows(store), _rows(ct_store)
    for column in ("event_id", "ts", "account", "target", "action", "session_id", "actor",
                   "outcome"):
        assert ours[column] == theirs[column], column
    assert (ours["account"], ours["actor"], ours["target"]) == ("Admin", "alice", "111122223333")
    assert json.loads(ours["detail"]) == {"userName": "eve"}


def test_process_and_authentication_map_like_auditd(tmp_path):
    store, result = ingest_one(OcsfConnector(), _jsonl(tmp_path / "e.jsonl",
                                                       [PROCESS, LOGIN_FAILED, FINDING]))
    assert (result.read, result.accepted, result.ignored) == (3, 2, 1)
    exec_row, login = _rows(store)
    assert (exec_row["account"], exec_row["actor"], exec_row["target"], exec_row["action"]) == (
        "root", "alice", "db-01", "exec")
    assert exec_row["session_id"] == "db-01:42"
    assert exec_row["detail"] == "systemctl restart postgresql"
    assert (login["account"], login["target"], login["action"], login["outcome"]) == (
        "bob", "web-01", "login.failed", "failure")
    assert store.query("SELECT event_type, count FROM ignored_counts") == [("OCSF 2004", 1)]


def test_bad_records_are_quarantined_with_their_line(tmp_path):
    no_user = {**PROCESS, "actor": {}, "process": {"cmd_line": "x"}}
    store, result = ingest_one(OcsfConnector(), _jsonl(tmp_path / "e.jsonl", [
        PROCESS, "{not json", {**API, "time": "yesterday"}, no_user]))
    assert (result.read, result.accepted, result.quarantined) == (4, 1, 3)
    reasons = dict(store.query("SELECT line, reason FROM quarantine ORDER BY line"))
    assert reasons[2] == "invalid JSON"
    assert "time" in reasons[3]
    assert reasons[4].startswith("no user")


def test_security_lake_parquet_layout_is_read_as_a_partitioned_dataset(tmp_path):
    folder = (tmp_path / "region=eu-west-1" / "accountId=444455556666" / "eventDay=20260105")
    folder.mkdir(parents=True)
    api = {k: v for k, v in API.items() if k != "cloud"}      # no account named: the folder's
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"COPY (SELECT * FROM read_json('{_jsonl(tmp_path / 'src.jsonl', [api])}')) "
                f"TO '{folder / 'part-0.parquet'}' (FORMAT parquet)")
    con.close()
    store, result = ingest_one(OcsfConnector(), folder / "part-0.parquet")
    assert result.accepted == 1
    (row,) = _rows(store)
    assert (row["account"], row["target"], row["action"]) == (
        "Admin", "444455556666", "iam.amazonaws.com:CreateUser")
    attrs = json.loads(store.query("SELECT attrs FROM activity")[0][0])
    assert attrs["region"] == "eu-west-1"
