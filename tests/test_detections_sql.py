"""Detections CSV and JSON lines rendered in SQL (reports/detections_sql.py) are byte for byte
what the row-by-row writers (reports/detections.py write_csv / write_jsonl, kept as the
reference) write: on the sample week and on hostile text (formula starts, RFC 4180 quoting, bidi
and control characters, a redacted secret, sequences, a mute with a hostile reason)."""

from __future__ import annotations

import io

import pytest
from click.testing import CliRunner

import export_world
from connectors.base import Options
from connectors.registry import get_connector
from correlate.cli import SAMPLE_FILES, main, sample_dir
from correlate.engine import correlate
from correlate.ingest import ingest
from correlate.store import Store
from reports import detections as det
from reports.detections_sql import detection_groups, write_detections


def both(store, fmt: str, **filters) -> tuple[str, str]:
    old, new = io.StringIO(), io.StringIO()
    det.WRITERS[fmt](det.detections(store, **filters), old)
    write_detections(store, fmt, new, **filters)
    return old.getvalue(), new.getvalue()


@pytest.fixture(scope="module")
def sample_store():
    store = Store(":memory:")
    for kind, name in SAMPLE_FILES:
        list(ingest(store, get_connector("generic"), kind, [str(sample_dir() / name)], Options()))
    correlate(store)
    yield store
    store.close()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_sample_week_detections_bytes_equal_reference(sample_store, fmt):
    old, new = both(sample_store, fmt)
    assert old.count("\n") > 200
    assert new.encode("utf-8") == old.encode("utf-8")


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_filters_bytes_equal_reference(sample_store, fmt):
    for filters in ({"review": "needs_review"}, {"severity": "high", "limit": 9},
                    {"cls": "log_tamper"}, {"account": "nobody"}, {"limit": 1}):
        old, new = both(sample_store, fmt, **filters)
        assert new == old, filters


@pytest.fixture
def hostile(world):
    export_world.build(world)
    store = world.store()
    export_world.correlate_world(store)
    yield store
    store.close()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_hostile_detections_bytes_equal_reference(hostile, fmt):
    old, new = both(hostile, fmt)
    reviews = {r["review"] for r in det.detections(hostile)}
    assert reviews == {"FAIL", "needs_review", "MUTED"}
    assert any(r["sequence_id"] for r in det.detections(hostile))
    assert "[REDACTED]" in new and "hunter2" not in new
    if fmt == "csv":    # zero-width joiner shown, a formula start (after a figure space) guarded
        assert "<U+200D>" in new and "\u200d" not in new and ",'\u2007@," in new
    else:               # JSON keeps the text as it is
        assert "a\u200db" in new and '"\u2007@"' in new
    assert new == old


def test_cli_and_bundle_build_no_detection_dicts(world, tmp_path, monkeypatch):
    """`detections --format csv|jsonl` and the bundle's detections.csv/jsonl never build a dict
    per detection (they did: detections() and the row-by-row writers)."""
    export_world.build(world)
    db = str(tmp_path / "d.duckdb")
    with world.store(db) as store:
        export_world.correlate_world(store)
        expected = {fmt: both(store, fmt)[0] for fmt in ("csv", "jsonl")}

    def refuse(*args, **kwargs):
        raise AssertionError("a dict per detection")
    for name in ("write_csv", "write_jsonl"):
        monkeypatch.setattr(det, name, refuse)
    monkeypatch.setitem(det.WRITERS, "csv", refuse)
    monkeypatch.setitem(det.WRITERS, "jsonl", refuse)
    runner = CliRunner()
    for fmt in ("csv", "jsonl"):
        res = runner.invoke(main, ["detections", "--db", db, "--format", fmt],
                            catch_exceptions=False)
        assert res.exit_code == 0 and res.stdout_bytes == expected[fmt].encode("utf-8")
    res = runner.invoke(main, ["export", "--db", db, "-o", str(tmp_path / "b")],
                        catch_exceptions=False)
    assert res.exit_code == 0, res.output
    for fmt in ("csv", "jsonl"):
        assert (tmp_path / "b" / f"detections.{fmt}").read_bytes() == expected[fmt].encode()


def test_files_duckdb_writes_equal_the_streamed_bytes(hostile, tmp_path):
    """The bundle's files (COPY ... TO, no line through Python) are the stdout bytes: findings
    and detections CSV/JSON lines, and findings.ocsf.json with and without findings or
    detections (its commas and brackets are cut and added around what DuckDB wrote)."""
    from reports.detections_sql import copy_detections
    from reports.export_sql import copy_findings, write_findings
    from reports.ocsf_sql import copy_findings_ocsf, write_findings_ocsf
    path = tmp_path / "out"
    for fmt in ("csv", "jsonl"):
        for write, copy in ((write_findings, copy_findings), (write_detections, copy_detections)):
            streamed = io.StringIO()
            assert write(hostile, fmt, streamed) == copy(hostile, fmt, path) > 20
            assert path.read_bytes() == streamed.getvalue().encode("utf-8")
    dets = det.detections(hostile)
    for filters in ({}, {"verdict": "approved_in_grace"}):
        for d in (dets, []):
            streamed = io.StringIO()
            n = write_findings_ocsf(hostile, streamed, None, d, **filters)
            assert copy_findings_ocsf(hostile, path, None, d, **filters) == n
            assert path.read_bytes() == streamed.getvalue().encode("utf-8"), (filters, len(d))
    assert path.read_bytes() == b"[\n]\n"


@pytest.mark.parametrize("filters", [{}, {"review": "MUTED"}, {"limit": 5}])
def test_streamed_groups_are_group_detections(sample_store, world, filters):
    """The bundle's OCSF detections come one group at a time from SQL, in group_detections's
    order and membership (a sequence at the place of its first row, members by position)."""
    export_world.build(world)
    hostile = world.store()
    export_world.correlate_world(hostile)
    for store in (sample_store, hostile):
        expected = det.group_detections(det.detections(store, **filters))
        assert list(detection_groups(store, **filters)) == expected
        if not filters:
            assert any(len(g) > 1 for g in expected)
    hostile.close()
