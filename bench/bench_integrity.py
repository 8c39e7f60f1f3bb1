"""Gate for issue 20: CloudTrail logs plus their digests must ingest in at most 1.10x the time
of the logs alone.

Generates FILES gzipped S3 log files (RECORDS records each) over FILES/50 hours in an AWSLogs
tree, and one digest per hour listing that hour's files, then runs `pamcorr ingest cloudtrail`
(a fresh process and database each) on the tree without and with the digests, REPEAT times
each, alternating, and compares the medians of the child's CPU time (user + system; wall time
is printed too but swings with the machine's load). The SHA-256 of each log's uncompressed bytes
is taken inside the ingest's own decompression pass (correlate/ingest/many.py), so it is priced in
both columns; the script also prints what hashing the inflated bytes alone costs. Exit 1 when the
gate fails.

`checks DIGESTS LOGS [KEYED]`: times `run_checks` (the chain walk and, with KEYED=1, one RSA
verify per digest) on a store filled in SQL with DIGESTS chained digests of LOGS log files each.

Usage: python bench/bench_integrity.py [FILES] [RECORDS] [REPEAT]   (default 5000 20 3)
       python bench/bench_integrity.py checks [DIGESTS] [LOGS] [KEYED]   (default 100000 10 0)
"""

from __future__ import annotations

import gzip
import hashlib
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ACCT, REGION = "111122223333", "eu-west-1"
PER_HOUR = 50


def generate(root: Path, files: int, records: int) -> tuple[Path, Path]:
    """(logs-only tree, logs-plus-digests tree)."""
    logs_root, both_root = root / "logs", root / "both"
    listed: dict[int, list[dict]] = {}
    for n in range(files):
        hour, minute = divmod(n, PER_HOUR)
        day, hh = divmod(hour, 24)
        stamp = f"202611{1 + day:02d}T{hh:02d}{minute % 60:02d}Z"
        key = (f"AWSLogs/{ACCT}/CloudTrail/{REGION}/2026/11/{1 + day:02d}/"
               f"{ACCT}_CloudTrail_{REGION}_{stamp}_{n:06d}.json.gz")
        recs = [{"eventVersion": "1.08",
                 "eventTime": f"2026-11-{1 + day:02d}T{hh:02d}:{minute % 60:02d}:{i % 60:02d}Z",
                 "eventSource": "ec2.amazonaws.com", "eventName": "DescribeInstances",
                 "eventID": f"{n}-{i}", "awsRegion": REGION, "recipientAccountId": ACCT,
                 "readOnly": True,
                 "userIdentity": {"type": "AssumedRole", "accountId": ACCT,
                                  "arn": f"arn:aws:sts::{ACCT}:assumed-role/Ops/u{n % 7}",
                                  "sessionContext": {"sessionIssuer": {"userName": "Ops"}}}}
                for i in range(records)]
        body = json.dumps({"Records": recs}).encode()
        path = logs_root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(body, 6))
        listed.setdefault(hour, []).append({"s3Bucket": "b", "s3Object": key,
                                            "hashValue": hashlib.sha256(body).hexdigest(),
                                            "hashAlgorithm": "SHA-256"})
    shutil.copytree(logs_root, both_root)
    prev = None
    for hour, items in sorted(listed.items()):
        day, hh = divmod(hour, 24)
        end = f"2026-11-{1 + day:02d}T{hh:02d}:59:59Z"
        key = (f"AWSLogs/{ACCT}/CloudTrail-Digest/{REGION}/2026/11/{1 + day:02d}/{ACCT}_"
               f"CloudTrail-Digest_{REGION}_t_{REGION}_202611{1 + day:02d}T{hh:02d}5959Z.json.gz")
        doc = {"awsAccountId": ACCT, "digestStartTime": f"2026-11-{1 + day:02d}T{hh:02d}:00:00Z",
               "digestEndTime": end, "digestS3Bucket": "b", "digestS3Object": key,
               "digestPublicKeyFingerprint": "00", "digestSignatureAlgorithm": "SHA256withRSA",
               "previousDigestS3Bucket": "b" if prev else None,
               "previousDigestS3Object": prev[0] if prev else None,
               "previousDigestHashValue": prev[1] if prev else None,
               "previousDigestHashAlgorithm": "SHA-256" if prev else None,
               "previousDigestSignature": "00" if prev else None, "logFiles": items}
        body = json.dumps(doc).encode()
        path = both_root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(body))
        prev = (key, hashlib.sha256(body).hexdigest())
    return logs_root, both_root


def ingest_seconds(tree: Path, work: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child: user + system, steadier on a loaded machine)."""
    db = work / "bench.duckdb"
    db.unlink(missing_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    pamcorr = Path(sys.executable).parent / "pamcorr"
    subprocess.run([str(pamcorr), "ingest", "cloudtrail", str(tree), "--db", str(db)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    files = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    records = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    repeat = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        logs, both = generate(work, files, records)
        without, with_digests = [], []
        for _ in range(repeat):
            without.append(ingest_seconds(logs, work))
            with_digests.append(ingest_seconds(both, work))
        started = time.perf_counter()
        for path in sorted(logs.rglob("*.json.gz")):
            hashlib.sha256(gzip.decompress(path.read_bytes()))
        hashing = time.perf_counter() - started - sum(
            _inflate_only(path) for path in sorted(logs.rglob("*.json.gz")))
    a, b = (statistics.median(w for w, _ in without),
            statistics.median(w for w, _ in with_digests))
    ca, cb = (statistics.median(c for _, c in without),
              statistics.median(c for _, c in with_digests))
    print(f"{files} files x {records} records, {files // PER_HOUR} digests, median of {repeat}")
    for label, runs, wall, cpu in (("without digests", without, a, ca),
                                   ("with digests:  ", with_digests, b, cb)):
        print(f"ingest {label}: wall {wall:.2f} s, CPU {cpu:.2f} s  "
              f"{[(round(w, 1), round(c, 1)) for w, c in runs]}")
    print(f"ratio wall {b / a:.3f}, CPU {cb / ca:.3f} (gate: CPU <= 1.10); sha256 of the "
          f"inflated bytes alone: {hashing:.2f} s (inside the ingest's pass, in both)")
    return 0 if cb <= 1.10 * ca else 1


def _inflate_only(path: Path) -> float:
    started = time.perf_counter()
    gzip.decompress(path.read_bytes())
    return time.perf_counter() - started


FILL_SQL = """
INSERT INTO ct_digest
SELECT 'AWSLogs/1/CloudTrail-Digest/r/' || i || '_CloudTrail-Digest_r_t_r_x.json.gz', 'b', '1',
    'r', 't', TIMESTAMPTZ '2020-01-01' + i * INTERVAL 1 HOUR,
    TIMESTAMPTZ '2020-01-01' + (i + 1) * INTERVAL 1 HOUR, 'end' || i,
    CASE WHEN i > 0 THEN 'b' END,
    CASE WHEN i > 0 THEN 'AWSLogs/1/CloudTrail-Digest/r/' || (i - 1)
        || '_CloudTrail-Digest_r_t_r_x.json.gz' END,
    CASE WHEN i > 0 THEN sha256('d' || (i - 1)) END, CASE WHEN i > 0 THEN 'SHA-256' END,
    CASE WHEN i > 0 THEN 'c2ln' END, 'SHA256withRSA', 'fp', sha256('d' || i),
    'AWSLogs/1/CloudTrail-Digest/r/' || i || '_CloudTrail-Digest_r_t_r_x.json.gz',
    'AWSLogs/1/CloudTrail-Digest/r/' || i || '_CloudTrail-Digest_r_t_r_x.json.gz', false, NULL
FROM range($n) t(i);
INSERT INTO ct_digest_log
SELECT 'AWSLogs/1/CloudTrail-Digest/r/' || i || '_CloudTrail-Digest_r_t_r_x.json.gz', 'b',
    'AWSLogs/1/CloudTrail/r/1_CloudTrail_r_' || i || '_' || j || '.json.gz',
    sha256('l' || i || '_' || j), 'SHA-256', NULL, NULL
FROM range($n) t(i), range($logs) u(j);
INSERT INTO ct_log_file
SELECT '/data/AWSLogs/1/CloudTrail/r/1_CloudTrail_r_' || i || '_' || j || '.json.gz',
    'AWSLogs/1/CloudTrail/r/1_CloudTrail_r_' || i || '_' || j || '.json.gz',
    '1_CloudTrail_r_' || i || '_' || j || '.json.gz', sha256('l' || i || '_' || j), '1', 'r',
    TIMESTAMPTZ '2020-01-01' + i * INTERVAL 1 HOUR, NULL, NULL
FROM range($n) t(i), range($logs) u(j);
"""


def checks_main(digests: int, logs: int, keyed: bool) -> int:
    """Time run_checks over a store of `digests` chained digests with `logs` logs each."""
    import base64
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from correlate.clock import now_utc
    from correlate.integrity.checks import run_checks
    from correlate.store import Store
    with tempfile.TemporaryDirectory() as tmp:
        with Store(str(Path(tmp) / "checks.duckdb")) as store:
            started = time.perf_counter()
            for statement in (s for s in FILL_SQL.split(";") if s.strip()):
                store.con.execute(statement, {k: v for k, v in (("n", digests), ("logs", logs))
                                              if f"${k}" in statement})
            if keyed:       # every signature is checked (and, being made up, fails)
                der = rsa.generate_private_key(public_exponent=65537, key_size=2048) \
                    .public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
                store.con.execute("INSERT INTO ct_public_key VALUES ('fp', ?, 'k')", [der])
                store.con.execute("UPDATE ct_digest SET prev_sig = ?",
                                  [base64.b64encode(b"\1" * 256).hex()])
            filled = time.perf_counter() - started
            started = time.perf_counter()
            findings = run_checks(store, None, None, now_utc())
            took = time.perf_counter() - started
    by = {}
    for f in findings:
        by[f["check_id"]] = by.get(f["check_id"], 0) + 1
    print(f"{digests} digests x {logs} logs ({digests * logs} log files), keyed={keyed}: "
          f"filled in {filled:.1f} s; run_checks {took:.2f} s; findings {by}")
    return 0

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "checks":
        sys.exit(checks_main(int(sys.argv[2]) if len(sys.argv) > 2 else 100000,
                             int(sys.argv[3]) if len(sys.argv) > 3 else 10,
                             len(sys.argv) > 4 and sys.argv[4] == "1"))
    sys.exit(main())
