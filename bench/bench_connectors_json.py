"""Benchmark the JSON connectors (teleport, cloudtrail, k8s, vault) through the real store.

For each shape, N events are generated with DuckDB into a temporary directory, then
ingested into a fresh DuckDB file with correlate.ingest.ingest; prints events/s and the
process CPU time (all threads; steadier than wall time when other work shares the machine).
Usage: python bench/bench_connectors_json.py [N] [SHAPE...]   (default 1000000, every shape;
SHAPE picks shapes by a word of their label, e.g. `s3` or `lines`)
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from connectors.base import Options
from connectors.registry import get_connector
from correlate.ingest import ingest
from correlate.store import Store

TS = "strftime(TIMESTAMP '2026-03-02' + to_seconds(i // 10), '%Y-%m-%dT%H:%M:%S.') || lpad((i % 1000)::VARCHAR, 3, '0') || 'Z'"

# Sessions of 50 events: a session.start citing an access request, commands, some kube/db
# events; one line in 20 is a login or certificate event (ignored); one session in 1000 is
# preceded by its access request's create + update.
TELEPORT = f"""
COPY (SELECT CASE
  WHEN i % 50 = 0 THEN {{'event': 'session.start', 'code': 'T2000I', 'ei': 0, 'uid': 'u' || i,
       'time': {TS}, 'user': 'user' || (i // 50 % 300), 'login': 'root', 'sid': 's' || (i // 50),
       'server_hostname': 'web-' || (i // 50 % 150), 'server_id': 'srv-' || (i // 50 % 150),
       'addr.remote': '10.1.' || (i % 250) || '.7:51234', 'access_requests': ['req-' || (i // 50000)]}}::JSON
  WHEN i % 20 = 7 THEN {{'event': 'user.login', 'code': 'T1000I', 'uid': 'u' || i, 'time': {TS},
       'user': 'user' || (i % 300), 'method': 'local', 'success': true}}::JSON
  WHEN i % 50 = 11 THEN {{'event': 'kube.request', 'code': 'T3009I', 'uid': 'u' || i, 'time': {TS},
       'user': 'user' || (i // 50 % 300), 'login': 'user' || (i // 50 % 300), 'kubernetes_cluster': 'prod',
       'verb': 'GET', 'request_path': '/api/v1/namespaces/default/pods', 'response_code': 200}}::JSON
  WHEN i % 50 = 13 THEN {{'event': 'db.session.query', 'code': 'TDB02I', 'ei': i % 50, 'uid': 'u' || i,
       'time': {TS}, 'user': 'user' || (i // 50 % 300), 'sid': 's' || (i // 50), 'db_user': 'postgres',
       'db_service': 'pg-' || (i % 7), 'db_name': 'orders', 'db_query': 'SELECT * FROM orders WHERE id = ' || i}}::JSON
  WHEN i % 50000 = 1 THEN {{'event': 'access_request.create', 'code': 'T5000I', 'uid': 'u' || i,
       'id': 'req-' || (i // 50000), 'time': {TS}, 'user': 'user' || (i % 300), 'roles': ['admin'],
       'state': 'PENDING', 'reason': 'OPS-' || i, 'expires': '2026-03-09T00:00:00Z'}}::JSON
  WHEN i % 50000 = 2 THEN {{'event': 'access_request.update', 'code': 'T5001I', 'uid': 'u' || i,
       'id': 'req-' || (i // 50000), 'time': {TS}, 'state': 'APPROVED', 'updated_by': 'boss'}}::JSON
  ELSE {{'event': 'session.command', 'code': 'T4000I', 'ei': i % 50, 'uid': 'u' || i, 'time': {TS},
       'user': 'user' || (i // 50 % 300), 'login': 'root', 'sid': 's' || (i // 50),
       'server_id': 'srv-' || (i // 50 % 150), 'program': 'systemctl', 'path': '/usr/bin/systemctl',
       'argv': ['restart', 'nginx'], 'return_code': 0, 'pid': 4000 + i % 1000, 'cgroup_id': 4294968064}}::JSON
  END AS j FROM range($n) t(i)) TO '{{path}}' (FORMAT CSV, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\x01')
"""

# About 1 KB per record, like the public samples: IAM users, assumed roles with a source
# identity, AWS services; two in three read-only.
CLOUDTRAIL_RECORD = f"""{{
  'eventVersion': '1.08',
  'userIdentity': CASE WHEN i % 3 = 0 THEN {{'type': 'IAMUser', 'principalId': 'AIDA' || (i % 97),
        'arn': 'arn:aws:iam::111122223333:user/user' || (i % 97), 'accountId': '111122223333',
        'accessKeyId': 'AKIAEXAMPLE' || (i % 97), 'userName': 'user' || (i % 97)}}::JSON
      WHEN i % 3 = 1 THEN {{'type': 'AssumedRole', 'principalId': 'AROA:s' || (i % 500),
        'arn': 'arn:aws:sts::111122223333:assumed-role/Admin' || (i % 9) || '/s' || (i % 500),
        'accountId': '111122223333', 'accessKeyId': 'ASIAEXAMPLE' || (i % 500),
        'sessionContext': {{'sessionIssuer': {{'type': 'Role', 'principalId': 'AROA', 'userName': 'Admin' || (i % 9),
          'arn': 'arn:aws:iam::111122223333:role/Admin' || (i % 9), 'accountId': '111122223333'}},
          'attributes': {{'creationDate': {TS}, 'mfaAuthenticated': 'true'}},
          'sourceIdentity': 'person' || (i % 40) || '@corp.example'}}}}::JSON
      ELSE {{'type': 'AWSService', 'invokedBy': 'ec2.amazonaws.com'}}::JSON END,
  'eventTime': {TS}, 'eventSource': 'ec2.amazonaws.com',
  'eventName': CASE WHEN i % 3 = 2 THEN 'RunInstances' ELSE 'DescribeInstances' END,
  'awsRegion': 'eu-west-1', 'sourceIPAddress': '198.51.100.' || (i % 250),
  'userAgent': 'aws-cli/2.15.0 Python/3.11.6 Linux/6.5 exe/x86_64.ubuntu.22 prompt/off command/ec2.describe-instances',
  'requestParameters': {{'instancesSet': {{'items': [{{'instanceId': 'i-0' || (i % 100000)}}]}},
        'filterSet': {{}}, 'includeAllInstances': false}},
  'responseElements': NULL, 'requestID': 'req-' || i, 'eventID': 'evt-' || i, 'readOnly': i % 3 <> 2,
  'eventType': 'AwsApiCall', 'managementEvent': true, 'recipientAccountId': '111122223333',
  'eventCategory': 'Management', 'tlsDetails': {{'tlsVersion': 'TLSv1.3',
        'cipherSuite': 'TLS_AES_128_GCM_SHA256', 'clientProvidedHostHeader': 'ec2.eu-west-1.amazonaws.com'}}
}}"""
CLOUDTRAIL_LINES = f"""
COPY (SELECT {CLOUDTRAIL_RECORD}::JSON AS j FROM range($n) t(i))
TO '{{path}}' (FORMAT CSV, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\x01')
"""
CLOUDTRAIL_RECORDS = f"""
COPY (SELECT list({CLOUDTRAIL_RECORD} ORDER BY i) AS "Records" FROM range($lo, $hi) t(i))
TO '{{path}}' (FORMAT JSON, COMPRESSION gzip)
"""

# Two stages per request (RequestReceived, ResponseComplete), as an API server writes them.
K8S = f"""
COPY (SELECT {{'kind': 'Event', 'apiVersion': 'audit.k8s.io/v1', 'level': 'Metadata',
  'auditID': 'a-' || (i // 2), 'stage': CASE WHEN i % 2 = 0 THEN 'RequestReceived' ELSE 'ResponseComplete' END,
  'requestURI': '/api/v1/namespaces/ns' || (i % 40) || '/pods/p' || (i % 900),
  'verb': CASE WHEN i % 10 < 2 THEN 'create' ELSE 'get' END,
  'user': {{'username': 'user' || (i // 2 % 300) || '@corp.example', 'groups': ['system:authenticated']}},
  'sourceIPs': ['10.0.' || (i % 250) || '.1'], 'userAgent': 'kubectl/v1.30.0',
  'objectRef': {{'resource': 'pods', 'subresource': CASE WHEN i % 10 < 2 THEN 'exec' END,
                 'namespace': 'ns' || (i % 40), 'name': 'p' || (i % 900), 'apiVersion': 'v1'}},
  'responseStatus': CASE WHEN i % 2 = 1 THEN {{'code': 200}} END,
  'requestReceivedTimestamp': {TS.replace('i // 10', '(i // 2) // 10')},
  'stageTimestamp': {TS},
  'annotations': {{'authorization.k8s.io/decision': 'allow', 'authorization.k8s.io/reason': 'RBAC'}}}}::JSON
  AS j FROM range($n) t(i)) TO '{{path}}' (FORMAT CSV, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\x01')
"""

# Request/response pairs sharing request.id; values HMAC'd as a file audit device writes them.
VAULT = f"""
COPY (SELECT {{'time': {TS}, 'type': CASE WHEN i % 2 = 0 THEN 'request' ELSE 'response' END,
  'auth': {{'client_token': 'hmac-sha256:' || md5('t' || (i // 2 % 800)) || md5('x'),
            'accessor': 'hmac-sha256:' || md5('a' || (i // 2 % 800)) || md5('y'),
            'display_name': CASE WHEN i % 4 < 2 THEN 'oidc-user' || (i // 2 % 300) ELSE 'approle-ci' END,
            'policies': ['default', 'kv-read'], 'entity_id': 'ent-' || (i // 2 % 300), 'token_type': 'service'}},
  'request': {{'id': 'r-' || (i // 2), 'operation': CASE WHEN i % 20 < 2 THEN 'update' ELSE 'read' END,
               'mount_type': 'kv', 'mount_point': 'secret/', 'namespace': {{'id': 'root'}},
               'path': 'secret/data/apps/app' || (i % 50), 'remote_address': '10.6.8.' || (i % 250)}},
  'response': CASE WHEN i % 2 = 1 THEN {{'mount_type': 'kv', 'data': {{'data': {{'key':
               'hmac-sha256:' || md5('v' || i)}}}}}} END}}::JSON
  AS j FROM range($n) t(i)) TO '{{path}}' (FORMAT CSV, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\x01')
"""


def generate(folder: Path, n: int, only: list[str]) -> list[tuple[str, str, list[Path]]]:
    """(label, connector, files) for every shape (or those `only` names), written under `folder`."""
    con = duckdb.connect()
    out = []

    def wanted(label: str) -> bool:
        return not only or any(word.lower() in label.lower() for word in only)

    for label, source, sql, name in [
            ("teleport audit JSON lines", "teleport", TELEPORT, "teleport.jsonl"),
            ("cloudtrail JSON lines", "cloudtrail", CLOUDTRAIL_LINES, "cloudtrail.jsonl"),
            ("k8s audit JSON lines", "k8s", K8S, "k8s.jsonl"),
            ("vault audit JSON lines", "vault", VAULT, "vault.jsonl")]:
        if not wanted(label):
            continue
        path = folder / name
        con.execute(sql.replace("{path}", str(path)), {"n": n})
        out.append((label, source, [path]))
    # The S3 layout: gzipped {"Records": [...]} files of 10,000 records.
    per_file = min(10_000, n)
    label = f"cloudtrail S3 files ({-(-n // per_file)} x {per_file} records, .json.gz)"
    if not wanted(label):
        return out
    files = []
    for k, lo in enumerate(range(0, n, per_file)):
        path = folder / "cloudtrail_s3" / f"111122223333_CloudTrail_eu-west-1_{k:05d}.json.gz"
        path.parent.mkdir(exist_ok=True)
        con.execute(CLOUDTRAIL_RECORDS.replace("{path}", str(path)),
                    {"lo": lo, "hi": min(n, lo + per_file)})
        files.append(path)
    out.insert(min(2, len(out)), (label, "cloudtrail", files))
    return out


def main(argv: list[str]) -> None:
    n = int(argv[1]) if len(argv) > 1 else 1_000_000
    only = argv[2:]
    with tempfile.TemporaryDirectory(prefix="pamcorr-bench-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        shapes = generate(folder, n, only)
        print(f"generated {n:,} events per shape in {time.perf_counter() - t0:.1f} s "
              f"(load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs)")
        for label, source, files in shapes:
            size = sum(f.stat().st_size for f in files)
            with Store(folder / f"{source}-{len(files)}.duckdb") as store:
                t0, c0 = time.perf_counter(), time.process_time()
                results = ingest(store, get_connector(source), None, [str(f) for f in files],
                                 Options())
                secs, cpu = time.perf_counter() - t0, time.process_time() - c0
            read = sum(r.read for r in results)
            balanced = all(r.balanced for r in results)
            acc = sum(r.accepted for r in results)
            print(f"{label:55s} {read:>9,} read {acc:>9,} accepted {size / 2**20:8.0f} MiB "
                  f"{secs:6.1f} s {read / secs:>9,.0f} events/s  cpu {cpu:5.1f} s"
                  f"{'' if balanced else '  UNBALANCED'}")


if __name__ == "__main__":
    main(sys.argv)
