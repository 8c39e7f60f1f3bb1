"""Load CloudTrail digests, local log-file hashes, public keys and digest signatures into the store."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from connectors.cloudtrail_digest import (DigestError, is_digest_path, is_log_name,
                                          log_file_row, parse_digest)
from correlate.clock import now_utc
from correlate.errors import PamcorrError, printable
from correlate.store import Store


class IntegrityFileError(PamcorrError):
    """A key or metadata file that cannot be read (the CLI exits 2 naming it)."""

    exit_code = 2


@dataclass
class DigestResult:
    """Counts for one digest file, shaped like an ingest FileResult (one record per file)."""

    file: str
    source: str = "cloudtrail"
    kind: str = "digest"
    sha256: str = ""
    read: int = 1
    accepted: int = 0
    quarantined: int = 0
    duplicates: int = 0
    ignored: int = 0
    skipped: bool = False
    reasons: dict = field(default_factory=dict)
    note: str | None = None
    replaced: str | None = None
    warnings: list = field(default_factory=list)
    rejected: bool = False
    guess: str | None = None

    @property
    def balanced(self) -> bool:
        return self.read == self.accepted + self.ignored + self.quarantined + self.duplicates


DIGEST_COLS = ("digest_key", "bucket", "account", "region", "trail", "start_ts", "end_ts",
               "end_text", "prev_bucket", "prev_key", "prev_hash", "prev_hash_algo", "prev_sig",
               "sig_algo", "key_fp", "sha256", "file", "local_key", "backfill")
LOG_COLS = ("digest_key", "s3_bucket", "s3_object", "hash_value", "hash_algo", "oldest_ts",
            "newest_ts")
FILE_COLS = ("file", "local_key", "basename", "sha256", "account", "region", "name_ts",
             "file_sha256")


def split_digests(files: list[Path]) -> tuple[list[Path], list[Path]]:
    """(digest files, the other files)."""
    digests = [f for f in files if is_digest_path(f)]
    return digests, [f for f in files if not is_digest_path(f)]


def _insert(con, table: str, cols: tuple[str, ...], rows: list[dict], extra: str = "") -> None:
    import pandas as pd     # here, not at import: the CLI starts 0.3 s sooner
    if not rows:
        return
    frame = pd.DataFrame([{c: r[c] for c in cols} for r in rows], columns=list(cols))
    con.register("_integrity_rows", frame)
    try:
        names = ", ".join(cols)
        con.execute(f"INSERT {extra} INTO {table} ({names}) SELECT {names} FROM _integrity_rows")
    finally:
        con.unregister("_integrity_rows")


def ingest_digests(store: Store, files: list[Path]) -> list[DigestResult]:
    """Each digest file: accepted into ct_digest (and its logFiles into ct_digest_log), a
    duplicate when its digestS3Object is there already, or quarantined with the reason (kept
    in ct_digest_invalid, which gives a `ct_digest_invalid` finding)."""
    results, rows, logs, bad = [], [], [], []
    known = {k for (k,) in store.con.execute("SELECT digest_key FROM ct_digest").fetchall()}
    for path in files:
        result = DigestResult(file=str(path))
        try:
            digest = parse_digest(path)
        except (DigestError, OSError) as exc:
            reason = f"CloudTrail digest: {exc}"
            result.quarantined, result.reasons = 1, {reason: 1}
            bad.append({"file": str(path), "reason": reason})
            results.append(result)
            continue
        result.sha256 = digest.row["sha256"]
        if digest.row["digest_key"] in known:
            result.duplicates = 1
        else:
            known.add(digest.row["digest_key"])
            result.accepted = 1
            rows.append(digest.row)
            logs.extend(digest.logs)
        results.append(result)
    con = store.con
    with store.transaction():
        _insert(con, "ct_digest", DIGEST_COLS, rows)
        _insert(con, "ct_digest_log", LOG_COLS, logs)
        _insert(con, "ct_digest_invalid", ("file", "reason"), bad, "OR REPLACE")
        con.execute("UPDATE ct_digest SET ingested = ? WHERE ingested IS NULL", [now_utc()])
    return results


def hash_log_files(store: Store, files: list[Path], results: list | None = None) -> int:
    """Record the SHA-256 of the uncompressed bytes of each S3-named CloudTrail log file.

    The ingest's read computes it while it inflates a file (FileResult.plain_sha256, one
    `update` per piece); a file it has not (skipped as ingested before, or read the per-file
    way) is hashed here, unless ct_log_file holds it already with the same file sha256.
    Returns how many were hashed here."""
    given = {r.file: r for r in results or ()}
    files = [f for f in files if is_log_name(f)]
    stored = {}
    if files:
        stored = dict(store.con.execute(
            "SELECT file, file_sha256 FROM ct_log_file WHERE file_sha256 IS NOT NULL"
        ).fetchall())
    rows, hashed = [], 0
    for path in files:
        r = given.get(str(path))
        sha = r.sha256 if r is not None and r.sha256 else None
        plain = getattr(r, "plain_sha256", None)
        if plain is None and sha is not None and stored.get(str(path)) == sha:
            continue                    # the same file, hashed before
        hashed += plain is None
        row = log_file_row(path, plain)
        row["file_sha256"] = sha
        rows.append(row)
    with store.transaction():
        _insert(store.con, "ct_log_file", FILE_COLS, rows, "OR REPLACE")
        store.con.execute("UPDATE ct_log_file SET hashed = ? WHERE hashed IS NULL", [now_utc()])
    return hashed


def _read_text(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise IntegrityFileError(f"{printable(path)}: cannot read the {what} file "
                                 f"({getattr(exc, 'strerror', None) or exc})") from None


def parse_public_keys(path: str) -> list[dict]:
    """Keys from `aws cloudtrail list-public-keys` output (JSON, `PublicKeyList[].Value`,
    base64 DER, PKCS#1 or SPKI) or one base64 key a line. Fingerprint: the listed one, else
    the MD5 of the DER bytes (how CloudTrail names its keys)."""
    text = _read_text(path, "public key")
    try:
        doc = json.loads(text)
        items = doc.get("PublicKeyList", []) if isinstance(doc, dict) else doc
        entries = [(i.get("Value"), i.get("Fingerprint")) for i in items]
    except (ValueError, AttributeError, TypeError):
        entries = [(line.strip(), None) for line in text.splitlines() if line.strip()]
    keys = []
    for value, fingerprint in entries:
        try:
            der = base64.b64decode(value, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise IntegrityFileError(f"{printable(path)}: a key is not base64 DER") from None
        from correlate.integrity.signature import load_key
        if load_key(der) is None:
            raise IntegrityFileError(f"{printable(path)}: a key is not an RSA public key "
                                     f"(DER, PKCS#1 or SPKI)")
        keys.append({"fingerprint": (fingerprint or hashlib.md5(der).hexdigest()).lower(),
                     "der": der, "file": path})
    if not keys:
        raise IntegrityFileError(f"{printable(path)}: no public key in the file")
    return keys


def parse_metadata(path: str) -> list[dict]:
    """JSON lines `{key, signature}` (from `aws s3api head-object`): a digest's own signature."""
    rows = []
    for n, line in enumerate(_read_text(path, "digest metadata").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            rows.append({"digest_key": str(item["key"]), "signature": str(item["signature"]),
                         "file": path})
        except (ValueError, KeyError, TypeError):
            raise IntegrityFileError(f"{printable(path)}:{n}: not a JSON object with key and "
                                     f"signature") from None
    return rows


def read_options(options: dict) -> tuple[list[dict], list[dict]]:
    """(keys, signatures) from the files named by the cloudtrail_public_keys / digest_metadata
    options; IntegrityFileError (exit 2) naming a file that cannot be read or used."""
    keys = parse_public_keys(options["cloudtrail_public_keys"]) \
        if options.get("cloudtrail_public_keys") else []
    meta = parse_metadata(options["digest_metadata"]) if options.get("digest_metadata") else []
    return keys, meta


def store_options(store: Store, keys: list[dict], meta: list[dict]) -> None:
    """Store keys and digest signatures read by read_options (a key or digest stored again
    replaces the earlier row)."""
    with store.transaction():
        _insert(store.con, "ct_public_key", ("fingerprint", "der", "file"), keys, "OR REPLACE")
        _insert(store.con, "ct_digest_signature", ("digest_key", "signature", "file"), meta,
                "OR REPLACE")


def load_options(store: Store, options: dict) -> None:
    """Store the keys and signatures named by --option cloudtrail_public_keys / digest_metadata."""
    store_options(store, *read_options(options))


AUDIT_COLS = ("host", "ts", "serial", "rtype", "file", "line", "info", "complete")


def scan_audit_files(store: Store, files: list[Path], options: dict) -> int:
    """Record every auditd record's host, time, serial and type (and kernel lost-record lines)
    for the sequence checks; `auditd_complete=yes` marks the files as the host's whole log."""
    import pandas as pd     # here, not at import: the CLI starts 0.3 s sooner
    from connectors.audit_serials import scan as scan_audit     # (pandas too)
    complete = str(options.get("auditd_complete", "")).lower() in ("yes", "true", "1")
    records, lost = [], []
    for path in files:
        got, gone = scan_audit(path, options.get("host"))
        records += got
        lost += gone
    for r in records:
        r["complete"] = complete
    con = store.con
    with store.transaction():
        if records:
            frame = pd.DataFrame(records, columns=list(AUDIT_COLS))
            con.register("_audit_rows", frame)
            try:
                con.execute("INSERT OR IGNORE INTO audit_record SELECT DISTINCT ON (host, ts, "
                            "serial, rtype) host, ts, serial, rtype, file, line, info, complete "
                            "FROM _audit_rows ORDER BY host, ts, serial, rtype, line")
            finally:
                con.unregister("_audit_rows")
        _insert(con, "audit_lost", ("file", "line", "host", "info"), lost, "OR IGNORE")
    return len(records)


def scan_teleport_files(store: Store, files: list[Path]) -> int:
    """Record which sessions Teleport logged a `session.upload` for, and which ended with
    recording off, for `recording_not_uploaded`. Returns how many marks were read."""
    import pandas as pd     # here, not at import: the CLI starts 0.3 s sooner
    from connectors.teleport_uploads import scan as scan_teleport
    marks = [m for path in files for m in scan_teleport(path)]
    if marks:
        con = store.con
        with store.transaction():
            con.register("_teleport_marks", pd.DataFrame(marks, columns=list(MARK_COLS)))
            try:
                con.execute("INSERT OR IGNORE INTO teleport_session_mark SELECT DISTINCT ON "
                            "(sid, mark, cluster) sid, mark, cluster, "
                            "try_cast(nullif(ts, '') AS TIMESTAMPTZ), file, line "
                            "FROM _teleport_marks ORDER BY sid, mark, cluster, file, line")
            finally:
                con.unregister("_teleport_marks")
    return len(marks)


MARK_COLS = ("sid", "mark", "cluster", "ts", "file", "line")


def after_ingest(store: Store, source: str, files: list[Path], options: dict,
                 results: list | None = None) -> None:
    """The integrity pass over files a source just ingested (log hashes, audit serials,
    Teleport upload marks); `results` are the ingest's FileResults of those files."""
    if source == "cloudtrail":
        hash_log_files(store, files, results)
    elif source == "auditd":
        scan_audit_files(store, files, options)
    elif source == "teleport":
        scan_teleport_files(store, files)
