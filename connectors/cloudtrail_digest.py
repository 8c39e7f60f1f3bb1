"""CloudTrail digest files and log-file hashes: parsing only (the store loads, checks judge).

A digest (`AWSLogs/[o-ORG/]ACCOUNT/CloudTrail-Digest/REGION/YYYY/MM/DD/..._CloudTrail-Digest_
REGION_TRAIL_REGION_STAMP.json.gz`, `_backfill` ones too) lists the log files delivered in one
hour with the SHA-256 of their uncompressed bytes, and chains to the previous digest by its
key, hash and signature. See docs/integrity.md.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

DIGEST_DIR = "CloudTrail-Digest"
REQUIRED = ("digestS3Bucket", "digestS3Object", "digestStartTime", "digestEndTime",
            "awsAccountId", "logFiles")
# digest file name: ACCOUNT_CloudTrail-Digest_REGION_TRAIL_REGION_YYYYMMDDTHHMMSSZ[...].json.gz
_DIGEST_NAME = re.compile(r"^(\d+)_CloudTrail-Digest_([a-z0-9-]+)_(.+)_\2_(\d{8}T\d{6}Z)")
# log file name: ACCOUNT_CloudTrail_REGION_YYYYMMDDTHHMMZ_UNIQUE.json.gz
_LOG_NAME = re.compile(r"^(\d+)_CloudTrail_([a-z0-9-]+)_(\d{8}T\d{4})Z_")
_CHUNK = 1 << 20


class DigestError(ValueError):
    """Why a digest file cannot be read (it is quarantined with this reason)."""


def is_digest_path(path: Path) -> bool:
    """True for a file under a `CloudTrail-Digest` folder or named like a digest."""
    return DIGEST_DIR in Path(path).parts or "_CloudTrail-Digest_" in Path(path).name


def local_key(path: Path) -> str:
    """The path from `AWSLogs/` on (the S3 key suffix), else the whole path."""
    parts = Path(path).parts
    if "AWSLogs" in parts:
        return "/".join(parts[parts.index("AWSLogs"):])
    return Path(path).as_posix()


def uncompressed(path: Path) -> bytes:
    """The file's bytes, gunzipped when gzip; DigestError when the gzip stream is broken."""
    data = Path(path).read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DigestError(f"not a readable gzip file ({exc})") from None
    return data


def sha256_uncompressed(path: Path) -> str:
    """Hex SHA-256 of a file's uncompressed bytes, one update per decompressed piece."""
    h = hashlib.sha256()
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw) if gz else raw
        for piece in iter(lambda: stream.read(_CHUNK), b""):
            h.update(piece)
    return h.hexdigest()


def _ts(text) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)
    except ValueError:
        return None


@dataclass
class Digest:
    """One parsed digest file: its row for ct_digest and its logFiles rows."""

    row: dict
    logs: list[dict]


def parse_digest(path: Path) -> Digest:
    """Parse one digest file; DigestError (the quarantine reason) when it is not one."""
    data = uncompressed(path)
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DigestError(f"not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise DigestError("not a digest: the JSON is not an object")
    missing = [k for k in REQUIRED if k not in doc]
    if missing:
        raise DigestError(f"not a digest: missing {', '.join(missing)}")
    if not isinstance(doc["logFiles"], list) or not isinstance(doc["digestS3Object"], str):
        raise DigestError("not a digest: logFiles is not a list or digestS3Object not a string")
    start, end = _ts(doc["digestStartTime"]), _ts(doc["digestEndTime"])
    if start is None or end is None:
        raise DigestError("not a digest: digestStartTime/digestEndTime are not ISO timestamps")
    key = doc["digestS3Object"]
    name = _DIGEST_NAME.match(Path(key).name)
    region = name.group(2) if name else doc.get("awsRegion")
    trail = name.group(3) if name else None
    row = {
        "digest_key": key, "bucket": doc["digestS3Bucket"], "account": str(doc["awsAccountId"]),
        "region": region, "trail": trail, "start_ts": start, "end_ts": end,
        "end_text": doc["digestEndTime"],
        "prev_bucket": doc.get("previousDigestS3Bucket"),
        "prev_key": doc.get("previousDigestS3Object"),
        "prev_hash": doc.get("previousDigestHashValue"),
        "prev_hash_algo": doc.get("previousDigestHashAlgorithm"),
        "prev_sig": doc.get("previousDigestSignature"),
        "sig_algo": doc.get("digestSignatureAlgorithm"),
        "key_fp": doc.get("digestPublicKeyFingerprint"),
        "sha256": hashlib.sha256(data).hexdigest(),
        "file": str(path), "local_key": local_key(path),
        "backfill": "_backfill" in key or "_backfill" in Path(path).as_posix(),
    }
    logs = []
    for item in doc["logFiles"]:
        if not isinstance(item, dict) or not isinstance(item.get("s3Object"), str):
            raise DigestError("not a digest: a logFiles entry has no s3Object")
        logs.append({"digest_key": key, "s3_bucket": item.get("s3Bucket"),
                     "s3_object": item["s3Object"], "hash_value": item.get("hashValue"),
                     "hash_algo": item.get("hashAlgorithm"),
                     "oldest_ts": item.get("oldestEventTime"),
                     "newest_ts": item.get("newestEventTime")})
    return Digest(row, logs)


def is_log_name(path: Path) -> bool:
    """True for a CloudTrail log file named the S3 way (ACCOUNT_CloudTrail_REGION_...)."""
    return _LOG_NAME.match(Path(path).name) is not None


def log_file_row(path: Path, sha256: str | None = None) -> dict | None:
    """ct_log_file row of a CloudTrail log file named the S3 way (None for other files);
    `sha256` of its uncompressed bytes when the ingest's read computed it, else hashed here."""
    name = _LOG_NAME.match(Path(path).name)
    if name is None:
        return None
    stamp = datetime.strptime(name.group(3), "%Y%m%dT%H%M").replace(tzinfo=timezone.utc)
    return {"file": str(path), "local_key": local_key(path), "basename": Path(path).name,
            "sha256": sha256 or sha256_uncompressed(path), "account": name.group(1),
            "region": name.group(2), "name_ts": stamp}


def data_to_sign(end_text: str, bucket: str, key: str, digest_sha256: str,
                 prev_sig: str | None) -> bytes:
    """What CloudTrail signs: end time, bucket/key, hex SHA-256 of the digest, previous
    signature (`null` for a chain's first digest), one per line."""
    return "\n".join([end_text, f"{bucket}/{key}", digest_sha256,
                      prev_sig if prev_sig else "null"]).encode("utf-8")
