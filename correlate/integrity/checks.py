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


def cloudtrail_findings(store: Store, start: datetime | None, end: datetime | None) -> list[dict]:
    """Every CloudTrail digest finding for the period (all digests on record when None)."""
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
    signed, _ = _signature_findings(con)
    return out + signed


def run_checks(store: Store, start: datetime | None, end: datetime | None,
               checked: datetime) -> list[dict]:
    """Run every integrity check for the period and record the findings (replacing the ones
    recorded before for the same period)."""
    from correlate.integrity import host_checks
    findings = cloudtrail_findings(store, start, end) + host_checks.findings(store, start, end)
    con = store.con
    with store.transaction():
        con.execute("DELETE FROM integrity_findings WHERE period_start IS NOT DISTINCT FROM ? "
                    "AND period_end IS NOT DISTINCT FROM ?", [start, end])
        if findings:
            con.executemany(
                "INSERT INTO integrity_findings (period_start, period_end, checked, check_id, "
                "severity, source, subject, detail, evidence) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [[start, end, checked] + [f[c] for c in FINDING_COLS] for f in findings])
    return findings


def summary(store: Store) -> dict:
    """Per-source counts for the report and the manifest."""
    con = store.con
    digests, logs = con.execute("SELECT count(*), (SELECT count(*) FROM ct_log_file) "
                                "FROM ct_digest").fetchall()[0]
    _, counts = _signature_findings(con) if digests else ([], {})
    return {"cloudtrail": {"files": logs, "digests": digests, **counts}}


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
