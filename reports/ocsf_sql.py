"""The findings part of findings.ocsf.json rendered by DuckDB: each finding's OCSF Detection
Finding (reports/ocsf.py ocsf_finding) built as JSON text in SQL, keys sorted and spelled as
json.dumps(sort_keys=True, ensure_ascii=False) spells them, fetched in batches. Detections
(far fewer, grouped into sequences) still go through ocsf_detection. tests/test_export_sql.py
compares the bytes with write_ocsf."""

from __future__ import annotations

import json
from datetime import datetime
from typing import IO, Iterable

from correlate import __version__, queries
from correlate.findings import DESCRIPTIONS
from correlate.store import Store
from reports.detections import group_detections
from correlate.findings import FINDING_FIELDS
from reports.export_sql import (BATCH, CONTROL_RE2, FINDING_KINDS, _float, _iso, _json_string,
                                copy_lines, fetch_batches, findings_params, row_flag)
from reports.ocsf import (ACTIVITY_CREATE, CATEGORY_UID, CLASS_UID, OCSF_VERSION, OUTCOME_STATUS,
                          PROFILES, SEVERITY, _ms, ocsf_detection)


def _lit(value) -> str:
    """SQL literal of a constant's JSON text."""
    return "'" + json.dumps(value, ensure_ascii=False, sort_keys=True).replace("'", "''") + "'"


def _str(x: str) -> str:
    return f"coalesce({_json_string(x, 'q._ctl')}, 'null')"


def _case(x: str, mapping: dict, default) -> str:
    whens = " ".join("WHEN '" + k.replace("'", "''") + f"' THEN {_lit(v)}"
                     for k, v in mapping.items())
    return f"CASE {x} {whens} ELSE {_lit(default)} END"


def _obj(entries: list[tuple]) -> str:
    """SQL: a JSON object from (key, JSON text SQL[, condition SQL]) entries, keys sorted; an
    entry with a condition is left out when the condition is not true (never the last key)."""
    entries = sorted(entries, key=lambda e: e[0])
    assert len(entries[-1]) == 2
    parts = ["'{'"]     # one concat(): no intermediate strings growing part by part
    for i, e in enumerate(entries):
        key, sep = f"'{json.dumps(e[0])}: '", (", ', '" if i < len(entries) - 1 else "")
        if len(e) == 3:
            parts.append(f"CASE WHEN {e[2]} THEN concat({key}, {e[1]}{sep}) ELSE '' END")
        else:
            parts += [key, e[1]] + ([sep[2:]] if sep else [])
    return "concat(" + ", ".join(parts + ["'}'"]) + ")"


def _ms_sql(x: str) -> str:
    """SQL: reports/ocsf.py _ms (float seconds times 1000, truncated) of a TIMESTAMPTZ."""
    return f"CAST(trunc(epoch_us({x})::DOUBLE / 1000000::DOUBLE * 1000::DOUBLE) AS BIGINT)::VARCHAR"


def _severity(field: int) -> str:
    return _case("q.status", {k: v[field] for k, v in SEVERITY.items()}, (0, "Unknown")[field])


def _outcome(field: int) -> str:
    return _case("q.outcome", {k: v[field] for k, v in OUTCOME_STATUS.items()}, None)


def _finding_object() -> str:
    ts_ms = _ms_sql("q.ts")
    uid = "substr(sha256(q.source || chr(31) || q.event_id || chr(31) || q.verdict), 1, 32)"
    message = ("coalesce(q.verdict, 'None') || ': ' || coalesce(q.account, 'None') || ' on ' "
               "|| coalesce(q.target, 'None')")
    product = {"name": "pamcorr", "vendor_name": "pamcorr", "version": __version__}
    known_outcome = "q.outcome IN (" + ", ".join(f"'{k}'" for k in OUTCOME_STATUS) + ")"
    return _obj([
        ("class_uid", _lit(CLASS_UID)), ("class_name", _lit("Detection Finding")),
        ("category_uid", _lit(CATEGORY_UID)), ("category_name", _lit("Findings")),
        ("activity_id", _lit(ACTIVITY_CREATE)), ("activity_name", _lit("Create")),
        ("type_uid", _lit(CLASS_UID * 100 + ACTIVITY_CREATE)),
        ("type_name", _lit("Detection Finding: Create")),
        ("severity_id", _severity(0)), ("severity", _severity(1)),
        ("status_id", _lit(1)), ("status", _lit("New")), ("status_code", _str("q.status")),
        ("status_detail", _str("q.reason"), "q.reason IS NOT NULL"),
        ("time", ts_ms), ("time_dt", f"'\"' || {_iso('q.ts')} || '\"'"),
        ("message", _str(message)),
        ("metadata", _obj([("version", _lit(OCSF_VERSION)), ("profiles", _lit(PROFILES)),
                           ("product", _lit(product)), ("uid", _str("q.event_id")),
                           ("log_name", _str("q.source")),
                           ("correlation_uid", _str("q.issue_key"), "q.issue_key IS NOT NULL")])),
        ("finding_info", _obj([
            ("uid", f"'\"' || {uid} || '\"'"), ("title", _str("q.verdict")),
            ("desc", _case("q.verdict", DESCRIPTIONS, "")),
            ("types", _lit(["privileged access"])),
            ("created_time", f"coalesce($created_ms::VARCHAR, {ts_ms})"),
            ("first_seen_time", ts_ms), ("last_seen_time", ts_ms)])),
        ("actor", _obj([
            ("session", _obj([("uid", _str("q.session_id"))]),
             "q.session_id IS NOT NULL AND q.session_id <> ''"),
            ("user", _obj([("name", _str("q.account"))]))])),
        ("resources", "'[' || " + _obj([("name", _str("q.target")), ("type", _lit("target"))])
         + " || ']'"),
        ("unmapped", _obj([
            ("verdict", _str("q.verdict")), ("approval_id", _str("q.approval_id")),
            ("ticket_id", _str("q.ticket_id")),
            ("gap_seconds", f"coalesce({_float('q.gap_seconds')}, 'null')"),
            ("reason", _str("q.reason")), ("action", _str("q.action")),
            ("detail", _str("q.detail")), ("actor", _str("q.actor")),
            ("event_id", _str("q.event_id")), ("run_id", "q.run_id::VARCHAR"),
            ("outcome", _str("q.outcome")), ("issue_key", _str("q.issue_key")),
            ("exception", _str("q.exception")),
            ("outcome_status_id", _outcome(0), known_outcome),
            ("outcome_status", _outcome(1), known_outcome)])),
    ])


_FLAGGED = row_flag(queries.FINDINGS_SQL, FINDING_FIELDS, FINDING_KINDS, CONTROL_RE2, "_ctl")


def _ocsf_sql(tail: str = "") -> str:
    obj = _finding_object()
    line = f"concat({obj}, {tail})" if tail else obj
    # in FINDINGS_SQL's order (rendered above its ORDER BY: see export_sql.FINDINGS_ORDER)
    return f"SELECT {line} AS \"[\" FROM ({_FLAGGED}) q"


FINDINGS_OCSF_SQL = _ocsf_sql()
# For copy_lines: a comma after every object, the header line "[" (the last comma is cut after).
COPY_OCSF_SQL = _ocsf_sql("','")


def write_findings_ocsf(store: Store, out: IO[str], created: datetime | None = None,
                        detections: Iterable[dict] = (), **filters) -> int:
    """write_ocsf's JSON array, the findings rendered in SQL; returns how many objects."""
    params = {**findings_params(store, **filters), "created_ms": _ms(created)}
    n = 0
    out.write("[")
    for lines in fetch_batches(store, FINDINGS_OCSF_SQL, params):
        out.write(("\n" if n == 0 else ",\n") + ",\n".join(lines))
        n += len(lines)
    for group in group_detections(detections):
        out.write(",\n" if n else "\n")
        out.write(json.dumps(ocsf_detection(group, created), ensure_ascii=False, sort_keys=True))
        n += 1
    out.write("\n]\n")
    return n


def copy_findings_ocsf(store: Store, path, created: datetime | None = None,
                       detections: Iterable[dict] = (), groups: Iterable[list] | None = None,
                       **filters) -> int:
    """write_findings_ocsf's bytes, the findings written by DuckDB straight to `path`; the
    detections given as rows, or already grouped (reports/detections_sql.py detection_groups:
    streamed, one group at a time)."""
    params = {**findings_params(store, **filters), "created_ms": _ms(created)}
    n = copy_lines(store, COPY_OCSF_SQL, params, path, header=True)
    with open(path, "r+b") as fh:
        if n:       # "[\n{...},\n...{...},\n": cut the last ",\n"
            fh.seek(-2, 2)
            fh.truncate()
        fh.seek(0, 2)
        for group in group_detections(detections) if groups is None else groups:
            fh.write(b",\n" if n else b"")     # the header line ended the "[" line
            fh.write(json.dumps(ocsf_detection(group, created), ensure_ascii=False,
                                sort_keys=True).encode("utf-8"))
            n += 1
        fh.write(b"\n]\n" if n else b"]\n")
    return n


__all__ = ["BATCH", "FINDINGS_OCSF_SQL", "copy_findings_ocsf", "write_findings_ocsf"]
