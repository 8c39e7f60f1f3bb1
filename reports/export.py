"""Findings as CSV (formula-safe), JSON lines and plain tables: one Finding, many writers."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import IO, Iterable

from correlate.errors import printable
from correlate.findings import FINDING_FIELDS, Finding
from reports.visible import reveal

CSV_COLUMNS = ("event_id", "ts", "account", "target", "verdict", "status", "approval_id",
               "ticket_id", "gap_seconds", "reason", "source", "action", "detail", "session_id",
               "actor", "run_id", "match_via", "identity_kind", "outcome", "issue_key", "exception")

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")

_LEADING_BLANKS = re.compile(r"[^\S\t\r\n]*")   # spaces of any kind, but not TAB, CR or LF


def formula_safe(value) -> str:
    """Text a spreadsheet will not run and a reader can see: cells starting like a formula (also
    after leading spaces) get a leading quote; bidi and invisible characters become `<U+XXXX>`."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    text = reveal(str(value))
    if text[_LEADING_BLANKS.match(text).end():].startswith(_FORMULA_START):
        return "'" + text
    return text


def iso(ts: datetime | None) -> str | None:
    """ISO 8601 UTC with Z."""
    if ts is None:
        return None
    return ts.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


_QUOTE_WHEN = (",", '"', "\r", "\n")


def csv_cell(text: str) -> str:
    """RFC 4180: a cell holding a comma, a quote, CR or LF is quoted, its quotes doubled.

    (The csv module with a "\n" line end leaves a bare CR unquoted, and a spreadsheet then starts
    a new row there.)"""
    if any(c in text for c in _QUOTE_WHEN):
        return '"' + text.replace('"', '""') + '"'
    return text


def write_csv(findings: Iterable[Finding], out: IO[str]) -> int:
    """Formula-safe CSV, one finding a line ("\n" line ends; CR and LF inside cells quoted)."""
    out.write(",".join(CSV_COLUMNS) + "\n")
    n = 0
    for f in findings:
        out.write(",".join(csv_cell(formula_safe(getattr(f, c))) for c in CSV_COLUMNS) + "\n")
        n += 1
    return n


def finding_dict(f: Finding) -> dict:
    d = {c: getattr(f, c) for c in FINDING_FIELDS}
    d["ts"] = iso(f.ts)
    return d


def write_csv_rows(rows: Iterable[dict], columns, out: IO[str], cell=formula_safe) -> int:
    """CSV of `columns` with a header, each value through `cell` (formula-safe by default) and
    RFC 4180 quoting, "\n" line ends; returns the rows written."""
    out.write(",".join(columns) + "\n")
    n = 0
    for r in rows:
        out.write(",".join(csv_cell(cell(r[c])) for c in columns) + "\n")
        n += 1
    return n


def write_dict_lines(dicts: Iterable[dict], out: IO[str]) -> int:
    """One JSON object a line (keys sorted, text as is); returns how many."""
    n = 0
    for d in dicts:
        out.write(json.dumps(d, ensure_ascii=False, sort_keys=True) + "\n")
        n += 1
    return n


def write_jsonl(findings: Iterable[Finding], out: IO[str]) -> int:
    return write_dict_lines(map(finding_dict, findings), out)


def write_aligned(cols: tuple[str, ...], rows: list[list[str]], out: IO[str]) -> int:
    """A header and rows of already printable cells, in columns padded to their widest cell."""
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(cols)]
    for r in [list(cols), *rows]:
        out.write("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() + "\n")
    return len(rows)


TABLE_COLUMNS = ("ts", "account", "target", "action", "status", "verdict", "approval_id",
                 "ticket_id", "gap_seconds", "outcome", "reason", "exception")


def write_table(findings: Iterable[Finding], out: IO[str]) -> int:
    """A plain table for a terminal: control characters in a cell shown escaped."""
    return write_aligned(TABLE_COLUMNS, [[printable(formula_safe(getattr(f, c, None)))
                                          for c in TABLE_COLUMNS] for f in findings], out)


WRITERS = {"csv": write_csv, "jsonl": write_jsonl, "table": write_table}
