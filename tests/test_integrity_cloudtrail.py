"""CloudTrail digest chains checked offline (issue 20 section 1): a chain of 3 digests and 4 logs
signed with a throwaway RSA key, then broken one way per test."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from connectors.cloudtrail_digest import data_to_sign
from correlate.cli import main

ACCT, REGION, TRAIL, BUCKET = "111122223333", "us-east-1", "mgmt", "ct-bucket"
PREFIX = f"AWSLogs/{ACCT}"


@pytest.fixture(scope="module")
def keys():
    """Two throwaway keys: the signer and a stranger."""
    return [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2)]


def _der(key, pkcs1=False) -> bytes:
    fmt = serialization.PublicFormat.PKCS1 if pkcs1 else serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(serialization.Encoding.DER, fmt)


def fingerprint(key) -> str:
    return hashlib.md5(_der(key, pkcs1=True)).hexdigest()


def _record(n: int, hour: int) -> dict:
    return {"eventVersion": "1.08", "eventTime": f"2026-11-30T{hour:02d}:0{n % 10}:00Z",
            "eventSource": "iam.amazonaws.com", "eventName": "CreateUser", "eventID": f"ev-{n}",
            "awsRegion": REGION, "recipientAccountId": ACCT,
            "userIdentity": {"type": "IAMUser", "userName": "alice",
                             "arn": f"arn:aws:iam::{ACCT}:user/alice"}}


def _log_key(hour: int, minute: int, uid: str) -> str:
    return (f"{PREFIX}/CloudTrail/{REGION}/2026/11/30/"
            f"{ACCT}_CloudTrail_{REGION}_20261130T{hour:02d}{minute:02d}Z_{uid}.json.gz")


def _digest_key(hour: int, backfill: bool = False) -> str:
    tail = "_backfill" if backfill else ""
    return (f"{PREFIX}/CloudTrail-Digest/{REGION}/2026/11/30/{ACCT}_CloudTrail-Digest_{REGION}_"
            f"{TRAIL}_{REGION}_20261130T{hour + 1:02d}0000Z{tail}.json.gz")


def build(root: Path, signer, restart_at: int | None = None, backfill: bool = False) -> dict:
    """Logs (hour 0: two, hours 1 and 2: one each) and a digest per hour, chained and signed."""
    logs = {0: [(5, "a"), (35, "b")], 1: [(5, "c")], 2: [(5, "d")]}
    prev = None            # (key, sha256, signature) of the previous digest
    out = {"logs": [], "digests": [], "signatures": {}}
    n = 0
    for hour in (0, 1, 2):
        listed = []
        for minute, uid in logs[hour]:
            n += 1
            key = _log_key(hour, minute, uid)
            body = json.dumps({"Records": [_record(n, hour)]}).encode()
            path = root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(gzip.compress(body))
            out["logs"].append(path)
            listed.append({"s3Bucket": BUCKET, "s3Object": key,
                           "hashValue": hashlib.sha256(body).hexdigest(),
                           "hashAlgorithm": "SHA-256",
                           "newestEventTime": "2026-11-30T00:00:00Z",
                           "oldestEventTime": "2026-11-30T00:00:00Z"})
        start = restart_at == hour
        key = _digest_key(hour, backfill and hour == 1)
        end_text = f"2026-11-30T{hour + 1:02d}:00:00Z"
        doc = {"awsAccountId": ACCT, "digestStartTime": f"2026-11-30T{hour:02d}:00:00Z",
               "digestEndTime": end_text, "digestS3Bucket": BUCKET, "digestS3Object": key,
               "digestPublicKeyFingerprint": fingerprint(signer),
               "digestSignatureAlgorithm": "SHA256withRSA",
               "newestEventTime": end_text, "oldestEventTime": end_text,
               "previousDigestS3Bucket": None if (prev is None or start) else BUCKET,
               "previousDigestS3Object": None if (prev is None or start) else prev[0],
               "previousDigestHashValue": None if (prev is None or start) else prev[1],
               "previousDigestHashAlgorithm": None if (prev is None or start) else "SHA-256",
               "previousDigestSignature": None if (prev is None or start) else prev[2],
               "logFiles": listed}
        body = json.dumps(doc).encode()
        sha = hashlib.sha256(body).hexdigest()
        sig = signer.sign(data_to_sign(end_text, BUCKET, key, sha, doc["previousDigestSignature"]),
                          padding.PKCS1v15(), hashes.SHA256()).hex()
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(body))
        out["digests"].append(path)
        out["signatures"][key] = sig
        prev = (key, sha, sig)
    return out


def write_keys(tmp_path: Path, key, pkcs1=True) -> Path:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"PublicKeyList": [{
        "Value": base64.b64encode(_der(key, pkcs1)).decode(),
        "Fingerprint": fingerprint(key) if pkcs1 else None}]}))
    return path


def write_meta(tmp_path: Path, chain: dict) -> Path:
    path = tmp_path / "meta.jsonl"
    path.write_text("\n".join(json.dumps({"key": k, "signature": s})
                              for k, s in chain["signatures"].items()))
    return path


def run(tmp_path: Path, *options: str) -> tuple[list[dict], object]:
    db = str(tmp_path / "t.duckdb")
    runner = CliRunner()
    args = ["ingest", "cloudtrail", str(tmp_path / "AWSLogs"), "--db", db]
    for option in options:
        args += ["--option", option]
    ingested = runner.invoke(main, args)
    assert ingested.exit_code == 0, ingested.output
    checked = runner.invoke(main, ["integrity", "--format", "json", "--db", db])
    assert checked.exit_code == 0, checked.output
    return json.loads(checked.stdout), ingested


def ids(findings) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in findings:
        out.setdefault(f["check_id"], []).append(f["subject"])
    return out


def test_valid_chain_without_key_is_consistent_but_unsigned(tmp_path, keys):
    build(tmp_path, keys[0])
    findings, ingested = run(tmp_path)
    assert ids(findings) == {"ct_unsigned": [f"{ACCT}/{REGION}/{TRAIL}"]}
    assert "read 1 = accepted 1 + ignored 0 + quarantined 0 + duplicates 0" in ingested.stdout


def test_valid_chain_with_key_and_metadata_has_no_finding(tmp_path, keys):
    chain = build(tmp_path, keys[0])
    findings, _ = run(tmp_path, f"cloudtrail_public_keys={write_keys(tmp_path, keys[0])}",
                      f"digest_metadata={write_meta(tmp_path, chain)}")
    assert findings == []


def test_spki_key_without_listed_fingerprint_is_fingerprinted_and_unmatched(tmp_path, keys):
    build(tmp_path, keys[0])
    findings, _ = run(tmp_path, f"cloudtrail_public_keys={write_keys(tmp_path, keys[0], False)}")
    assert "ct_key_unmatched" in ids(findings)       # MD5 of SPKI DER is not the AWS name


def test_log_recompressed_at_another_level_is_still_valid(tmp_path, keys):
    chain = build(tmp_path, keys[0])
    log = chain["logs"][1]
    log.write_bytes(gzip.compress(gzip.decompress(log.read_bytes()), compresslevel=1))
    findings, _ = run(tmp_path)
    assert set(ids(findings)) == {"ct_unsigned"}


def test_one_byte_changed_in_a_log_is_modified(tmp_path, keys):
    chain = build(tmp_path, keys[0])
    log = chain["logs"][2]
    body = bytearray(gzip.decompress(log.read_bytes()))
    body[body.index(b"alice")] = ord("A")
    log.write_bytes(gzip.compress(bytes(body)))
    found = ids(run(tmp_path)[0])
    assert found["ct_log_modified"] == [str(log.relative_to(tmp_path))]


def test_deleted_log_is_missing(tmp_path, keys):
    chain = build(tmp_path, keys[0])
    chain["logs"][0].unlink()
    found = ids(run(tmp_path)[0])
    assert found["ct_log_missing"] == [str(chain["logs"][0].relative_to(tmp_path))]


def test_middle_digest_deleted_is_missing_and_the_walk_continues(tmp_path, keys):
    chain = build(tmp_path, keys[0])
    chain["logs"][1].unlink()          # keep the check focused: a later log edited too
    chain["digests"][1].unlink()
    log = chain["logs"][3]
    log.write_bytes(gzip.compress(gzip.decompress(log.read_bytes()) + b" "))
    found = ids(run(tmp_path)[0])
    assert found["ct_digest_missing"] == [_digest_key(1)]
    assert found["ct_log_modified"] == [str(log.relative_to(tmp_path))]


def _edit_logfiles(path: Path) -> None:
    doc = json.loads(gzip.decompress(path.read_bytes()))
    doc["logFiles"] = doc["logFiles"][:0]
    path.write_bytes(gzip.compress(json.dumps(doc).encode()))


def test_edited_logfiles_is_digest_modified_without_key(tmp_path, keys):
    chain = build(tmp_path, keys[0])
    _edit_logfiles(chain["digests"][1])
    found = ids(run(tmp_path)[0])
    assert found["ct_digest_modified"] == [_digest_key(1)]
    assert "ct_digest_signature_invalid" not in found


def test_edited_logfiles_is_signature_invalid_with_key(tmp_path, keys):
    chain = build(tmp_path, keys[0])
    _edit_logfiles(chain["digests"][1])
    found = ids(run(tmp_path, f"cloudtrail_public_keys={write_keys(tmp_path, keys[0])}")[0])
    assert found["ct_digest_signature_invalid"] == [_digest_key(1)]


def test_wrong_key_fingerprint_matches_nothing(tmp_path, keys):
    build(tmp_path, keys[0])
    found = ids(run(tmp_path, f"cloudtrail_public_keys={write_keys(tmp_path, keys[1])}")[0])
    assert found["ct_key_unmatched"] == [fingerprint(keys[1])]
    assert "ct_unsigned" in found and "ct_digest_signature_invalid" not in found


def test_starting_digest_mid_chain_is_a_restart(tmp_path, keys):
    build(tmp_path, keys[0], restart_at=2)
    found = ids(run(tmp_path)[0])
    assert found["ct_chain_restart"] == [_digest_key(2)]
    assert "ct_digest_missing" not in found


def test_backfill_digest_does_not_break_the_chain(tmp_path, keys):
    build(tmp_path, keys[0], backfill=True)
    assert set(ids(run(tmp_path)[0])) == {"ct_unsigned"}


def test_extra_log_is_unlisted(tmp_path, keys):
    chain = build(tmp_path, keys[0])
    extra = chain["logs"][2].with_name(chain["logs"][2].name.replace("_c.", "_x."))
    extra.write_bytes(chain["logs"][2].read_bytes())
    found = ids(run(tmp_path)[0])
    assert found["ct_log_unlisted"] == [str(extra.relative_to(tmp_path))]


def test_moved_digest(tmp_path, keys):
    chain = build(tmp_path, keys[0])
    moved = chain["digests"][2].parent.parent / "29" / chain["digests"][2].name
    moved.parent.mkdir()
    chain["digests"][2].rename(moved)
    assert ids(run(tmp_path)[0])["ct_digest_moved"] == [_digest_key(2)]


def test_data_to_sign_known_answer():
    assert data_to_sign("2026-11-30T01:00:00Z", "b", "AWSLogs/k.json.gz", "ab12", None) == (
        b"2026-11-30T01:00:00Z\nb/AWSLogs/k.json.gz\nab12\nnull")
    assert data_to_sign("2026-11-30T01:00:00Z", "b", "k", "ab12", "ff00") == (
        b"2026-11-30T01:00:00Z\nb/k\nab12\nff00")


def test_reingest_adds_nothing_and_counts_add_up(tmp_path, keys):
    build(tmp_path, keys[0])
    db = str(tmp_path / "t.duckdb")
    runner = CliRunner()
    args = ["ingest", "cloudtrail", str(tmp_path / "AWSLogs"), "--db", db]
    assert runner.invoke(main, args).exit_code == 0
    again = runner.invoke(main, args)
    assert again.exit_code == 0
    assert again.stdout.count("accepted 0 + ignored 0 + quarantined 0 + duplicates 1") == 3
    import duckdb
    with duckdb.connect(db, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM ct_digest").fetchall() == [(3,)]
        assert con.execute("SELECT count(*) FROM ct_digest_log").fetchall() == [(4,)]


@pytest.mark.parametrize("content,reason", [
    (b"not gzip and not json", "not JSON"),
    (gzip.compress(b"{broken"), "not JSON"),
    (b"\x1f\x8b\x08\x00garbage", "gzip"),
    (gzip.compress(b'{"digestS3Bucket": "b"}'), "missing"),
])
def test_bad_digest_is_quarantined_with_a_finding(tmp_path, keys, content, reason):
    chain = build(tmp_path, keys[0])
    bad = chain["digests"][0].with_name("bad.json.gz")
    bad.write_bytes(content)
    findings, ingested = run(tmp_path)
    assert "quarantined 1" in ingested.stdout and reason in ingested.stdout
    assert ids(findings)["ct_digest_invalid"] == [str(bad)]


def test_unsupported_algorithm_warns(tmp_path, keys):
    chain = build(tmp_path, keys[0])
    path = chain["digests"][2]
    doc = json.loads(gzip.decompress(path.read_bytes()))
    doc["previousDigestHashAlgorithm"] = "SHA-512"
    doc["digestSignatureAlgorithm"] = "SHA512withRSA"
    path.write_bytes(gzip.compress(json.dumps(doc).encode()))
    findings, _ = run(tmp_path, f"cloudtrail_public_keys={write_keys(tmp_path, keys[0])}")
    unsupported = [f for f in findings if f["check_id"] == "ct_unsupported"]
    assert unsupported and all(f["severity"] == "WARN" for f in unsupported)


@pytest.mark.parametrize("option", ["cloudtrail_public_keys", "digest_metadata"])
@pytest.mark.parametrize("content", [None, "not a key file {"])
def test_unreadable_key_or_metadata_file_exits_2_naming_it(tmp_path, keys, option, content):
    build(tmp_path, keys[0])
    path = tmp_path / "input.txt"
    if content is not None:
        path.write_text(content)
    result = CliRunner().invoke(main, ["ingest", "cloudtrail", str(tmp_path / "AWSLogs"),
                                       "--db", str(tmp_path / "t.duckdb"),
                                       "--option", f"{option}={path}"])
    assert result.exit_code == 2, result.output
    assert str(path) in result.output and "Traceback" not in result.output


def test_no_digests_warns(tmp_path, keys):
    chain = build(tmp_path, keys[0])
    for d in chain["digests"]:
        d.unlink()
    assert ids(run(tmp_path)[0])["ct_no_digests"] == [f"{ACCT}/{REGION}"]


def test_fail_on_exits_3(tmp_path, keys):
    chain = build(tmp_path, keys[0])
    chain["logs"][0].unlink()
    run(tmp_path)
    result = CliRunner().invoke(main, ["integrity", "--fail-on", "fail",
                                       "--db", str(tmp_path / "t.duckdb")])
    assert result.exit_code == 3 and "ct_log_missing" in result.stdout


def test_weekly_run_ingests_digests_and_reports_integrity(tmp_path, keys, monkeypatch):
    monkeypatch.delenv("PAMCORR_DB", raising=False)
    chain = build(tmp_path, keys[0])
    chain["logs"][0].unlink()
    config = tmp_path / "pamcorr.toml"
    config.write_text(f'db = "{tmp_path / "w.duckdb"}"\noutput = "{tmp_path / "out"}"\n'
                      f'[[sources]]\nname = "aws"\nconnector = "cloudtrail"\n'
                      f'paths = ["{tmp_path / "AWSLogs"}/"]\n')
    result = CliRunner().invoke(main, ["run", "--config", str(config), "--week", "2026-W49",
                                       "--fail-on", "fail"])
    assert result.exit_code == 3, result.output
    assert "integrity: 1 FAIL, 0 WARN, 1 INFO" in result.stdout
    assert "FAIL: ct_log_missing" in result.stdout
    assert "1 FAIL input-integrity finding(s)" in result.stdout
