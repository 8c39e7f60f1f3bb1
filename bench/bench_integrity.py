"""Gate for issue 20: CloudTrail logs plus their digests must ingest in at most 1.10x the time
of the logs alone.

Generates FILES gzipped S3 log files (RECORDS records each) over FILES/50 hours in an AWSLogs
tree, and one digest per hour listing that hour's files, then runs `pamcorr ingest cloudtrail`
(a fresh process and database each) on the tree without and with the digests, REPEAT times
each, alternating, and compares the medians of the child's CPU time (user + system; wall time
is printed too but swings with the machine's load). Also times the log-hash pass alone (it runs in
both: see docs/performance.md). Exit 1 when the gate fails.
Usage: python bench/bench_integrity.py [FILES] [RECORDS] [REPEAT]   (default 5000 20 3)
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
        from connectors.cloudtrail_digest import sha256_uncompressed
        started = time.perf_counter()
        for path in sorted(logs.rglob("*.json.gz")):
            sha256_uncompressed(path)
        hashing = time.perf_counter() - started
    a, b = (statistics.median(w for w, _ in without),
            statistics.median(w for w, _ in with_digests))
    ca, cb = (statistics.median(c for _, c in without),
              statistics.median(c for _, c in with_digests))
    print(f"{files} files x {records} records, {files // PER_HOUR} digests, median of {repeat}")
    for label, runs, wall, cpu in (("without digests", without, a, ca),
                                   ("with digests:  ", with_digests, b, cb)):
        print(f"ingest {label}: wall {wall:.2f} s, CPU {cpu:.2f} s  "
              f"{[(round(w, 1), round(c, 1)) for w, c in runs]}")
    print(f"ratio wall {b / a:.3f}, CPU {cb / ca:.3f} (gate: CPU <= 1.10); the log-hash pass "
          f"alone: {hashing:.2f} s (included in both)")
    return 0 if cb <= 1.10 * ca else 1

if __name__ == "__main__":
    sys.exit(main())
