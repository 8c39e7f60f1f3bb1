"""Findings CSV and JSON lines rendered in SQL (reports/export_sql.py) are byte for byte what the
row-by-row Python writers (reports/export.py write_csv / write_jsonl, kept as the reference)
write: on the bundled sample week and on hostile text (formula starts, quotes, CR/LF, bidi and
other invisible characters, control characters, non-ASCII)."""

from __future__ import annotations

import io
import json
import re
import sys

import pytest

from correlate import queries
from correlate.cli import SAMPLE_FILES, sample_dir
from connectors.registry import get_connector
from correlate.engine import correlate
from correlate.ingest import ingest
from connectors.base import Options
from correlate.store import Store
from reports import detections as det
from reports import export
from reports.ocsf import write_ocsf
from reports.ocsf_sql import write_findings_ocsf
from reports.export_sql import FORMULA_RE2, write_findings
from reports.visible import INVISIBLE

HOSTILE = ["=1+2", "  +cmd", "\u3000-x", "@SUM(A1)", "\tTAB", "\rCR", "a,b", 'say "hi"',
           "line\nbreak", "cr\rinside", "\u202eevil\u202c", "zero\u200bwidth", "a\u200db",
           "\x07bell\x1b[0m", "\x0bvt\x0cff", "back\\slash", "caf\u00e9 \u65e5\u672c",
           "\U0001f600 emoji", "\uff1dfull", "\u00a0=nbsp", "\u2007@", "\u0085-nel",
           "soft\u00adhyphen", "tag\U000e0041", "del\x7f", "\u2028sep", "plain"]


def reference(store: Store, fmt: str, **filters) -> str:
    out = io.StringIO()
    export.WRITERS[fmt](queries.findings(store, **filters), out)
    return out.getvalue()


def rendered(store: Store, fmt: str, **filters) -> str:
    out = io.StringIO()
    write_findings(store, fmt, out, **filters)
    return out.getvalue()


@pytest.fixture(scope="module")
def sample_store():
    store = Store(":memory:")
    generic = get_connector("generic")
    for kind, name in SAMPLE_FILES:
        list(ingest(store, generic, kind, [str(sample_dir() / name)], Options()))
    correlate(store)
    yield store
    store.close()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_sample_week_bytes_equal_reference(sample_store, fmt):
    old, new = reference(sample_store, fmt), rendered(sample_store, fmt)
    assert old.count("\n") > 1000
    assert new.encode("utf-8") == old.encode("utf-8")


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_filters_bytes_equal_reference(sample_store, fmt):
    for filters in ({"verdict": "unapproved"}, {"status": "WARN", "limit": 7}, {"limit": 1}):
        assert rendered(sample_store, fmt, **filters) == reference(sample_store, fmt, **filters)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_hostile_text_bytes_equal_reference(world, fmt):
    world.approval("A", "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z")
    for i, text in enumerate(HOSTILE):
        world.action(f"h{i:02}", f"2026-11-16T11:{i:02}:00.{i:06}Z", detail=text,
                     account="alice" if i % 2 else text, target=text, session_id=text,
                     actor=text)
    store = world.store()
    correlate(store)
    old, new = reference(store, fmt), rendered(store, fmt)
    assert len(old.splitlines()) >= len(HOSTILE) if fmt == "jsonl" else True
    assert new == old
    store.close()


def test_formula_pattern_is_python_whitespace_minus_revealed():
    """FORMULA_RE2's blanks are exactly formula_safe's leading blanks that survive reveal()."""
    blanks = {chr(c) for c in range(sys.maxunicode + 1)
              if re.fullmatch(r"[^\S\t\r\n]", chr(c)) and not INVISIBLE.match(chr(c))}
    listed = set(" \u00a0\u1680\u202f\u205f\u3000") | {chr(c) for c in range(0x2000, 0x200b)}
    assert blanks == listed
    assert "\\x{3000}" in FORMULA_RE2


def ocsf_pair(store: Store) -> tuple[str, str]:
    run = queries.resolve_run(store)
    created = queries.run_info(store, run)["finished"]
    dets = det.detections(store, run)
    old, new = io.StringIO(), io.StringIO()
    write_ocsf(queries.findings(store), old, created, dets)
    write_findings_ocsf(store, new, created, dets)
    return old.getvalue(), new.getvalue()


def test_sample_week_ocsf_bytes_equal_reference(sample_store):
    old, new = ocsf_pair(sample_store)
    assert len(json.loads(old)) > 1000
    assert new.encode("utf-8") == old.encode("utf-8")


def test_hostile_ocsf_bytes_equal_reference(world):
    world.approval("A", "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z")
    for i, text in enumerate(HOSTILE):
        world.action(f"h{i:02}", f"2026-11-16T11:{i:02}:00.{i:06}Z", detail=text,
                     account="alice" if i % 2 else text, target=text,
                     session_id="" if i % 3 else text, actor=text,
                     outcome=("success", "failure", "unknown", "")[i % 4])
    store = world.store()
    correlate(store)
    old, new = ocsf_pair(store)
    assert new == old
    empty = io.StringIO()
    write_findings_ocsf(store, empty, None, (), verdict="approved_in_grace")
    assert empty.getvalue() == "[\n]\n"
    store.close()


def test_findings_csv_jsonl_and_bundle_build_no_finding_objects(world, tmp_path, monkeypatch):
    """`findings --format csv|jsonl` and `export` never build a Finding per row (they did:
    queries.findings + the row-by-row writers, minutes and all findings in memory at 1e7)."""
    from click.testing import CliRunner

    from correlate.cli import main
    world.approval("A", "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z")
    world.action("ok", "2026-11-16T11:00:00Z", detail="=1+2")
    world.action("bad", "2026-11-16T15:00:00Z", account="mallory")
    db = str(tmp_path / "p.duckdb")
    world.store(db).close()
    with Store(db) as store:
        correlate(store)
        expected = {fmt: reference(store, fmt) for fmt in ("csv", "jsonl")}

    def refuse(*args, **kwargs):
        raise AssertionError("findings built one Python object per row")
    monkeypatch.setattr(queries, "findings", refuse)
    monkeypatch.setattr(export, "write_csv", refuse)
    monkeypatch.setattr(export, "write_jsonl", refuse)
    runner = CliRunner()
    for fmt in ("csv", "jsonl"):
        res = runner.invoke(main, ["findings", "--db", db, "--format", fmt],
                            catch_exceptions=False)
        assert res.exit_code == 0 and res.output == expected[fmt]
    res = runner.invoke(main, ["export", "--db", db, "-o", str(tmp_path / "b")],
                        catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "b" / "findings.csv").read_text(encoding="utf-8") == expected["csv"]
    assert len(json.loads((tmp_path / "b" / "findings.ocsf.json").read_text())) >= 2
