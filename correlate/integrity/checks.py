"""The input-integrity checks: each a SQL file named by its check id, plus the signature pass.

A check file returns `severity, subject, detail, evidence` rows; its file name is the check id.
The RSA checks (about one per digest-hour) run in Python with `cryptography` after the load.
"""

from __future__ import annotations

import json
from datetime import datetime
from importlib import resources

from correlate.integrity.signature import SUPPORTED, verify
from correlate.store import Store

# Explicit registry: (check id, source); order is the order of the report.
CT_CHECKS = ("ct_digest_invalid", "ct_log_modified", "ct_log_missing", "ct_digest_missing",
             "ct_digest_modified", "ct_digest_moved", "ct_log_unlisted", "ct_chain_restart",
             "ct_no_digests", "ct_unsupported")
SEVERITIES = ("INFO", "WARN", "FAIL")
FINDING_COLS = ("check_id", "severity", "source", "subject", "detail", "evidence")


def sql(name: str) -> str:
    """The text of correlate/integrity/sql/NAME.sql."""
    return (resources.files("correlate.integrity") / "sql" / f"{name}.sql").read_text("utf-8")


def _params(text: str, start, end) -> dict:
    return {k: v for k, v in (("start", start), ("end", end)) if f"${k}" in text}


def _finding(check_id: str, severity: str, subject: str, detail: str, evidence,
             source: str = "cloudtrail") -> dict:
    if not isinstance(evidence, str):
        evidence = json.dumps(evidence, default=str, sort_keys=True)
    return {"check_id": check_id, "severity": severity, "source": source, "subject": subject,
            "detail": detail, "evidence": evidence}


def _signature_findings(con) -> tuple[list[dict], dict]:
    """ct_digest_signature_invalid per failing digest, ct_unsigned per chain nothing signed,
    ct_key_unmatched per supplied key no digest names; and the counts for the summary."""
    out, chains, counts = [], {}, {"signed_valid": 0, "signature_invalid": 0, "unsigned": 0}
    for (key, bucket, end_text, sha, prev_sig, key_fp, sig_algo, account, region, trail,
         signature, der) in con.execute(sql("_ct_signatures")).fetchall():
        chain = f"{account}/{region}/{trail or '?'}"
        chains.setdefault(chain, 0)
        if der is None or signature is None or (sig_algo or SUPPORTED) != SUPPORTED:
            counts["unsigned"] += 1
            continue
        if verify(bytes(der), signature, end_text, bucket, key, sha, prev_sig):
            chains[chain] += 1
            counts["signed_valid"] += 1
        else:
            counts["signature_invalid"] += 1
            out.append(_finding("ct_digest_signature_invalid", "FAIL", key,
                                f"the signature of digest {key} does not verify with key "
                                f"{key_fp}", {"fingerprint": key_fp, "signature": signature}))
    for chain, valid in sorted(chains.items()):
        if not valid:
            out.append(_finding("ct_unsigned", "INFO", chain,
                                "chain consistent, authenticity not proven (no public key or "
                                "signature to check it with)", {"chain": chain}))
    for (fingerprint, file) in con.execute(
            "SELECT fingerprint, file FROM ct_public_key k WHERE NOT EXISTS (SELECT 1 FROM "
            "ct_digest d WHERE lower(d.key_fp) = k.fingerprint) ORDER BY 1").fetchall():
        out.append(_finding("ct_key_unmatched", "INFO", fingerprint,
                            f"public key {fingerprint} from {file}: fingerprint not found in "
                            f"any digest", {"file": file}))
    return out, counts


def cloudtrail_findings(store: Store, start: datetime | None, end: datetime | None,
                        counts: dict | None = None) -> list[dict]:
    """Every CloudTrail digest finding for the period (all digests on record when None);
    `counts`, when given, receives the signature counts of the summary."""
    con = store.con
    prepare = sql("_ct_prepare")
    for statement in (s for s in prepare.split(";") if s.strip()):
        con.execute(statement, _params(statement, start, end))
    out = []
    for check_id in CT_CHECKS:
        text = sql(check_id)
        for severity, subject, detail, evidence in con.execute(
                text, _params(text, start, end)).fetchall():
            out.append(_finding(check_id, severity, subject, detail, evidence))
    text = sql("ct_head_not_continued")        # a check of its own, reported as a missing digest
    for severity, subject, detail, evidence in con.execute(
            text, _params(text, start, end)).fetchall():
        out.append(_finding("ct_digest_missing", severity, subject, detail, evidence))
    signed, signatures = _signature_findings(con)
    if counts is not None:
        counts.update(signatures)
    return out + signed


def run_checks(store: Store, start: datetime | None, end: datetime | None,
               checked: datetime) -> list[dict]:
    """Run every integrity check for the period and record the findings, the per-source
    summary and the digest chain heads (replacing what was recorded for the same period)."""
    from correlate.integrity import host_checks
    signatures: dict = {}
    findings = (cloudtrail_findings(store, start, end, signatures)
                + host_checks.findings(store, start, end))
    con = store.con
    rows = _summary_rows(con, findings, signatures)
    heads = con.execute(sql("_ct_heads")).fetchall()
    same = "WHERE period_start IS NOT DISTINCT FROM ? AND period_end IS NOT DISTINCT FROM ?"
    with store.transaction():
        for table in ("integrity_findings", "integrity_summary", "integrity_chain_head"):
            con.execute(f"DELETE FROM {table} {same}", [start, end])
        if findings:        # one INSERT from a frame: executemany costs ~2 ms a row
            import pandas as pd
            con.register("_integrity_findings", pd.DataFrame(findings, columns=FINDING_COLS))
            try:
                con.execute(
                    "INSERT INTO integrity_findings (period_start, period_end, checked, "
                    f"check_id, severity, source, subject, detail, evidence) SELECT ?, ?, ?, "
                    f"{', '.join(FINDING_COLS)} FROM _integrity_findings", [start, end, checked])
            finally:
                con.unregister("_integrity_findings")
        for row in rows:
            con.execute("INSERT INTO integrity_summary VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [start, end, checked] + [row[c] for c in SUMMARY_COLS])
        for chain, key, sha, end_ts in heads:
            con.execute("INSERT INTO integrity_chain_head VALUES (?, ?, ?, ?, ?, ?)",
                        [start, end, chain, key, sha, end_ts])
    return findings


SUMMARY_COLS = ("source", "files", "digests", "valid", "missing", "modified", "unsigned", "gaps",
                "config_changes")


def _summary_rows(con, findings: list[dict], signatures: dict) -> list[dict]:
    """Per source: files, digests, valid, missing, modified, unsigned, gaps, config changes."""
    def n(*check_ids):
        return sum(1 for f in findings if f["check_id"] in check_ids)
    digests = [k for (k,) in con.execute("SELECT digest_key FROM ct_period").fetchall()]
    failed = {f["subject"] for f in findings if f["severity"] == "FAIL"}
    logs = con.execute("SELECT count(*) FROM ct_log_file").fetchall()[0][0]
    audit_files = con.execute("SELECT count(DISTINCT file) FROM audit_record").fetchall()[0][0]
    rows = []
    if logs or digests:
        rows.append({"source": "cloudtrail", "files": logs, "digests": len(digests),
                     "valid": sum(1 for k in digests if k not in failed),
                     "missing": n("ct_log_missing", "ct_digest_missing"),
                     "modified": n("ct_log_modified", "ct_digest_modified",
                                   "ct_digest_signature_invalid", "ct_digest_moved"),
                     "unsigned": signatures.get("unsigned", 0), "gaps": n("ct_chain_restart"),
                     "config_changes": 0})
    if audit_files:
        rows.append({"source": "auditd", "files": audit_files, "digests": None, "valid": None,
                     "missing": n("auditd_lost"), "modified": None, "unsigned": None,
                     "gaps": n("auditd_sequence_gap", "auditd_stopped"),
                     "config_changes": n("audit_config_change")})
    if n("session_unterminated", "session_event_after_end", "recording_not_uploaded"):
        rows.append({"source": "teleport", "files": None, "digests": None, "valid": None,
                     "missing": n("session_unterminated", "recording_not_uploaded"),
                     "modified": None, "unsigned": None,
                     "gaps": n("session_event_after_end"), "config_changes": None})
    return rows


def recorded(store: Store, start: datetime | None, end: datetime | None) -> dict | None:
    """What the last check pass of exactly this period recorded (None when none ran):
    `{checked, summary, findings, heads, fingerprints}` for the report and the manifest."""
    same = "WHERE period_start IS NOT DISTINCT FROM ? AND period_end IS NOT DISTINCT FROM ?"
    checked = store.query(f"SELECT max(checked) FROM integrity_summary {same} UNION ALL "
                          f"SELECT max(checked) FROM integrity_findings {same}",
                          [start, end, start, end])
    when = max((c for (c,) in checked if c is not None), default=None)
    if when is None:
        return None
    return {
        "checked": when,
        "summary": store.query_dicts(f"SELECT {', '.join(SUMMARY_COLS)} FROM integrity_summary "
                                     f"{same} ORDER BY source", [start, end]),
        "findings": store.query_dicts(
            f"SELECT check_id, severity, source, subject, detail, evidence "
            f"FROM integrity_findings {same} ORDER BY CASE severity WHEN 'FAIL' THEN 0 "
            f"WHEN 'WARN' THEN 1 ELSE 2 END, check_id, subject", [start, end]),
        "heads": store.query_dicts(f"SELECT chain, digest_key AS key, sha256 FROM "
                                   f"integrity_chain_head {same} ORDER BY chain", [start, end]),
        "fingerprints": [f for (f,) in store.query(
            "SELECT fingerprint FROM ct_public_key ORDER BY 1")],
    }


def manifest_section(store: Store, start: datetime | None, end: datetime | None) -> dict:
    """`input_integrity` of manifest.json: counts, the head of each digest chain (key and
    sha256) and the key fingerprints, as the period's check pass recorded them."""
    got = recorded(store, start, end)
    if got is None:
        return {"checked": False}
    counts: dict[str, int] = {}
    for f in got["findings"]:
        counts[f["severity"]] = counts.get(f["severity"], 0) + 1
    return {"checked": True, "findings": counts, "sources": got["summary"],
            "chain_heads": got["heads"], "key_fingerprints": got["fingerprints"]}


def summary_lines(findings: list[dict]) -> list[str]:
    """The input-integrity lines of the weekly summary (`pamcorr integrity` lists them all)."""
    if not findings:
        return ["integrity: no input-integrity findings"]
    counts = {sev: sum(1 for f in findings if f["severity"] == sev)
              for sev in ("FAIL", "WARN", "INFO")}
    lines = ["integrity: " + ", ".join(f"{n} {sev}" for sev, n in counts.items())
             + " (pamcorr integrity lists them)"]
    for f in [f for f in findings if f["severity"] != "INFO"][:5]:
        lines.append(f"  {f['severity']}: {f['check_id']} {f['subject']}")
    return lines
