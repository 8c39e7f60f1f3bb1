"""cloudtrail connector: Records files and JSON lines become activity, identities mapped."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pytest

from connectors.base import Options
from connectors.cloudtrail import CloudTrailConnector, layout
from correlate.ingest import ingest
from correlate.store import Store
from tests.helpers import ingest_one, activity_by_event as _by_id

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "cloudtrail"
SAMPLES = (Path(__file__).resolve().parents[2] / "shared" / "vendor-samples"
           / "invictus-aws-cloudtrail")
SAMPLE_FILES = sorted((SAMPLES / "CloudTrail").glob("*.json")) if SAMPLES.is_dir() else []


def _ingest(path, store=None, **opts):
    return ingest_one(CloudTrailConnector(), path, store, **opts)



def test_vendor_samples_all_ingest_and_balance():
    if not SAMPLE_FILES:
        pytest.skip(f"vendor samples not present under {SAMPLES} (../shared/vendor-samples)")
    store = Store(":memory:")
    results = ingest(store, CloudTrailConnector(), None, [str(p) for p in SAMPLE_FILES], Options())
    assert len(results) == 35 and all(r.balanced for r in results)
    records = sum(len(json.loads(p.read_text())["Records"]) for p in SAMPLE_FILES)
    assert sum(r.read for r in results) == records == 2273
    assert sum(r.quarantined for r in results) == 0
    kinds = dict(store.query("SELECT coalesce(actor_kind, '-'), count(*) FROM activity GROUP BY 1"))
    assert kinds["service"] > 0 and kinds["human"] > 0
    assert store.scalar("SELECT count(*) FROM activity WHERE read_only") > 1000


def test_vendor_sample_as_json_lines_gives_the_same_rows(tmp_path):
    if not SAMPLE_FILES:
        pytest.skip(f"vendor samples not present under {SAMPLES}")
    records = json.loads(SAMPLE_FILES[0].read_text())["Records"]
    lines = tmp_path / "one.jsonl"
    lines.write_text("".join(json.dumps(r) + "\n" for r in records))
    sql = ("SELECT line, event_id, ts, account, target, action, actor, read_only FROM activity "
           "ORDER BY line")
    assert _ingest(SAMPLE_FILES[0])[0].query(sql) == _ingest(lines)[0].query(sql)


def test_assumed_role_with_source_identity_names_the_human():
    store, r = _ingest(FIXTURES / "assumed_role.json")
    assert (r.read, r.accepted, r.ignored, r.quarantined) == (8, 6, 1, 1)
    ct1 = _by_id(store)["ct-1"]
    assert (ct1["account"], ct1["actor"], ct1["target"], ct1["action"]) == (
        "AdminRole", "alice@corp.example", "111122223333", "iam.amazonaws.com:CreateUser")
    assert (ct1["read_only"], ct1["actor_kind"], ct1["session_id"]) == (
        False, "human", "ASIAEXAMPLEKEY00001")
    assert ct1["ts"] == datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
    assert ct1["detail"] == '{"userName":"backdoor"}'
    assert json.loads(ct1["attrs"])["mfa"] == "true"


def test_other_identities_map_to_role_session_user_service_sso_and_root():
    got = _by_id(_ingest(FIXTURES / "assumed_role.json")[0])
    pick = lambda e: (got[e]["account"], got[e]["actor"], got[e]["actor_kind"])  # noqa: E731
    assert pick("ct-2") == ("AdminRole", "bob", None)               # role session name
    assert pick("ct-3") == ("carol", "carol", None)                  # IAM user
    assert pick("ct-4") == ("ec2.amazonaws.com", "ec2.amazonaws.com", "service")
    assert pick("ct-6") == ("AWSReservedSSO_Admin_0123", "dave-id", "human")   # onBehalfOf
    assert pick("ct-7") == ("root", "root", "human")
    assert got["ct-2"]["read_only"] is True and got["ct-3"]["read_only"] is True
    assert json.loads(got["ct-3"]["attrs"])["error_code"] == "AccessDenied"


def test_insight_ignored_and_record_without_time_quarantined_by_ordinal():
    store, _ = _ingest(FIXTURES / "assumed_role.json")
    ignored = store.query("SELECT event_type, count FROM ignored_counts")
    assert ignored == [("AwsCloudTrailInsight", 1)]
    (line, reason, raw), = store.query("SELECT line, reason, raw FROM quarantine")
    assert (line, reason) == (8, "missing required field: eventTime")
    assert json.loads(raw)["eventID"] == "ct-8"


def test_json_lines_quarantine_names_the_line_and_count_duplicates():
    store, r = _ingest(FIXTURES / "records.jsonl")
    assert (r.read, r.accepted, r.ignored, r.quarantined, r.duplicates) == (7, 3, 1, 2, 1)
    assert store.query("SELECT line, reason FROM quarantine ORDER BY line") == [
        (3, "invalid JSON"), (6, "JSON value is not an object")]
    assert store.query("SELECT line, event_id FROM activity ORDER BY line") == [
        (1, "ct-1"), (2, "ct-3"), (7, "ct-2")]


def test_gzip_records_file_gives_the_same_rows(tmp_path):
    gz = tmp_path / "111122223333_CloudTrail_eu-west-1_x.json.gz"
    gz.write_bytes(gzip.compress((FIXTURES / "assumed_role.json").read_bytes()))
    sql = "SELECT line, event_id, ts, account, actor, read_only FROM activity ORDER BY line"
    assert _ingest(gz)[0].query(sql) == _ingest(FIXTURES / "assumed_role.json")[0].query(sql)


def test_one_records_document_per_line_numbers_records_across_documents(tmp_path):
    records = json.loads((FIXTURES / "assumed_role.json").read_text())["Records"]
    path = tmp_path / "concatenated.json"
    path.write_text(json.dumps({"Records": records[:3]}) + "\n" + "{oops\n"
                    + json.dumps({"Records": records[3:4]}) + "\n")
    assert layout(path) == "records"
    store, r = _ingest(path)
    assert (r.read, r.accepted, r.quarantined) == (5, 4, 1)
    assert store.query("SELECT line, event_id FROM activity ORDER BY line") == [
        (1, "ct-1"), (2, "ct-2"), (3, "ct-3"), (5, "ct-4")]
    assert store.query("SELECT line, reason FROM quarantine") == [(4, "invalid JSON")]


@pytest.mark.parametrize("text, expected", [
    ('{"Records":[{"eventID":"1"}]}\n', "records"),
    ('{\n  "Records": [\n', "document"),
    ('[{"eventID": "1"}]', "document"),
    ('{"eventVersion":"1.08","eventID":"1"}\n{"eventID":"2"}\n', "lines"),
    ("", "lines"),
])
def test_layout_is_found_from_the_first_line(tmp_path, text, expected):
    path = tmp_path / "f.json"
    path.write_text(text)
    assert layout(path) == expected


def test_truncated_document_is_one_quarantined_record(tmp_path):
    path = tmp_path / "cut.json"
    path.write_text((FIXTURES / "assumed_role.json").read_text()[:500])
    store, r = _ingest(path)
    assert (r.read, r.quarantined) == (1, 1)
    assert store.query("SELECT line, reason FROM quarantine") == [(1, "invalid JSON")]


def test_fast_and_exact_readers_agree_on_json_lines(tmp_path):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET preserve_insertion_order = true")
    records = json.loads((FIXTURES / "assumed_role.json").read_text())["Records"]
    path = tmp_path / "clean.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    sizes = {}
    for batch in CloudTrailConnector().stage(path, "auto", Options()):
        fast = con.execute(batch.sql, batch.params)
        names = [d[0] for d in fast.description]
        keep = [i for i, n in enumerate(names) if n not in ("raw", "line")]
        fast_rows = sorted(str([r[i] for i in keep]) for r in fast.fetchall())
        exact_rows = sorted(str([r[i] for i in keep]) for r in
                            con.execute(batch.exact.sql, batch.exact.params).fetchall())
        assert fast_rows == exact_rows
        sizes[batch.table] = len(fast_rows)
    assert sizes == {"activity": 7, "ignored": 1}


def test_typed_and_record_by_record_readers_agree_on_records_files():
    paths = [FIXTURES / "assumed_role.json"] + SAMPLE_FILES[:5]
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET preserve_insertion_order = true")
    for path in paths:
        for batch in CloudTrailConnector().stage(path, "auto", Options()):
            fast = con.execute(batch.sql, batch.params)
            keep = [i for i, d in enumerate(fast.description) if d[0] != "raw"]
            fast_rows = sorted(tuple(r[i] for i in keep) for r in fast.fetchall())
            exact_rows = sorted(tuple(r[i] for i in keep) for r in
                                con.execute(batch.exact.sql, batch.exact.params).fetchall())
            assert fast_rows == exact_rows, (path.name, batch.table)


def test_vendor_samples_keep_whole_policy_documents_and_error_outcomes():
    if not SAMPLE_FILES:
        pytest.skip(f"vendor samples not present under {SAMPLES}")
    store = Store(":memory:")
    results = ingest(store, CloudTrailConnector(), None, [str(p) for p in SAMPLE_FILES], Options())
    assert all(r.balanced for r in results)
    # PutBucketPolicy's requestParameters are 679 characters: the policy document is whole
    detail = store.scalar("SELECT detail FROM activity "
                          "WHERE event_id = '988f1043-3e3d-4d84-803b-1b4d00e0df90'")
    assert len(detail) > 600 and json.loads(detail)["bucketPolicy"]["Statement"]
    created = json.loads(store.scalar(
        "SELECT attrs FROM activity WHERE event_id = 'ff709962-49b6-494d-8198-cdf0f7e8e666'"))
    assert created["response"]["role"]["roleName"] == "stratus-red-team-ec2-get-password-data-role"
    outcomes = dict(store.query(
        "SELECT outcome, count(*) FROM activity GROUP BY 1"))
    failed = store.scalar("SELECT count(*) FROM activity WHERE attrs->>'error_code' IS NOT NULL")
    assert outcomes["failure"] == failed > 0 and set(outcomes) == {"success", "failure"}


def test_error_code_is_a_failure_and_long_requests_are_whole(tmp_path):
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::b/{i:04d}/*"} for i in range(20)]}
    base = {"eventTime": "2026-03-02T10:00:00Z", "eventSource": "s3.amazonaws.com",
            "userIdentity": {"type": "IAMUser", "userName": "bob", "accountId": "1"},
            "readOnly": False}
    recs = [dict(base, eventID="ok", eventName="PutBucketPolicy",
                 requestParameters={"bucketName": "b", "bucketPolicy": policy}),
            dict(base, eventID="denied", eventName="PutBucketPolicy", errorCode="AccessDenied",
                 errorMessage="Access Denied", requestParameters={"bucketName": "b"}),
            dict(base, eventID="read", eventName="GetObject", readOnly=True,
                 responseElements={"x": 1})]
    for name, text in (("one.json", json.dumps({"Records": recs})),
                       ("lines.jsonl", "".join(json.dumps(r) + "\n" for r in recs))):
        (tmp_path / name).write_text(text)
        store, r = _ingest(tmp_path / name)
        assert (r.read, r.accepted) == (3, 3)
        got = _by_id(store)
        assert json.loads(got["ok"]["detail"])["bucketPolicy"] == policy
        assert len(got["ok"]["detail"]) > 1000
        assert [got[k]["outcome"] for k in ("ok", "denied", "read")] == [
            "success", "failure", "success"]
        assert json.loads(got["denied"]["attrs"])["error_message"] == "Access Denied"
        assert "response" not in json.loads(got["read"]["attrs"])   # a read's data: not kept
