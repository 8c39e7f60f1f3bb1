"""CloudTrail S3 files ingested many at a time (correlate/ingest/many.py) equal one by one."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

import pytest

import correlate.ingest.pipeline as pipeline
from connectors.base import Options
from connectors.cloudtrail import CloudTrailConnector
from connectors.generic import GenericConnector
from correlate.ingest import ingest, ingest_file
from correlate.store import Store

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "cloudtrail"
SAMPLES = (Path(__file__).resolve().parents[2] / "shared" / "vendor-samples"
           / "invictus-aws-cloudtrail" / "CloudTrail")
FIXTURE = json.loads((FIXTURES / "assumed_role.json").read_text())["Records"]
GOOD = [r for r in FIXTURE if r["eventID"] in ("ct-1", "ct-2", "ct-3", "ct-4", "ct-6", "ct-7")]
INSIGHT = next(r for r in FIXTURE if r["eventID"] == "ct-5")
NO_TIME = next(r for r in FIXTURE if r["eventID"] == "ct-8")

TABLES = {
    "activity": "SELECT * FROM activity ORDER BY ALL",
    "ingest_log": "SELECT * EXCLUDE (started, finished) FROM ingest_log ORDER BY ALL",
    "ignored_counts": "SELECT * FROM ignored_counts ORDER BY ALL",
    "quarantine": "SELECT * FROM quarantine ORDER BY ALL",
    "activity_keys": "SELECT * FROM activity_keys ORDER BY ALL",
}


def rec(event_id: str, k: int = 0, base: dict | None = None) -> dict:
    """A good record (one of the fixture's shapes) with its own id and time."""
    r = copy.deepcopy(base or GOOD[k % len(GOOD)])
    r["eventID"] = event_id
    r["eventTime"] = f"2026-03-02T10:{k // 60 % 60:02d}:{k % 60:02d}Z"
    return r


def write(folder: Path, name: str, records: list, text: str | None = None) -> Path:
    """A CloudTrail S3 file: one {"Records": [...]} line, gzipped when `name` ends in .gz."""
    path = folder / name
    data = (text if text is not None else json.dumps({"Records": records}) + "\n").encode()
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return path


def together(files, store=None, progress=None):
    store = store or Store(":memory:")
    results = ingest(store, CloudTrailConnector(), None, [str(f) for f in files], Options(),
                     progress=progress)
    assert all(r.balanced for r in results), results
    return store, results


def one_at_a_time(files, store=None):
    """Today's per-file path for each file, in order (no grouping at all)."""
    store = store or Store(":memory:")
    results = [ingest_file(store, CloudTrailConnector(), "auto", Path(f), Options())
               for f in files]
    return store, results


def tables(store) -> dict:
    return {name: store.query(sql) for name, sql in TABLES.items()}


def counts(results) -> list:
    return [(Path(r.file).name, r.read, r.accepted, r.ignored, r.quarantined, r.duplicates,
             r.skipped, r.sha256) for r in results]


@pytest.fixture
def per_file_calls(monkeypatch):
    """Names of the files ingest_many handed to the per-file path."""
    calls = []
    original = pipeline.ingest_file

    def spy(store, connector, kind, path, options):
        calls.append(Path(path).name)
        return original(store, connector, kind, path, options)

    monkeypatch.setattr(pipeline, "ingest_file", spy)
    return calls


def assert_same(files, per_file_calls=None, expect_per_file=()):
    grouped, got = together(files)
    if per_file_calls is not None:
        assert per_file_calls == list(expect_per_file)
    single, want = one_at_a_time(files)
    assert counts(got) == counts(want)
    assert tables(grouped) == tables(single)
    return grouped, got


def test_group_of_clean_files_equals_one_by_one_and_reads_each_file_once(tmp_path,
                                                                        per_file_calls):
    files = [write(tmp_path, f"f{k}.json.gz", [rec(f"e{k}-{i}", i) for i in range(40)])
             for k in range(5)]
    files.append(write(tmp_path, "empty.json.gz", []))
    _, got = assert_same(files, per_file_calls, [])
    assert [r.read for r in got] == [40] * 5 + [0]
    assert [r.accepted for r in got] == [40] * 5 + [0]


@pytest.mark.parametrize("insight", [False, True], ids=["one-pass", "staged"])
def test_duplicates_within_across_files_and_against_stored_count_as_one_by_one(
        tmp_path, per_file_calls, insight):
    first = [write(tmp_path, "a.json.gz", [rec("x1", 1), rec("x2", 2), rec("x1", 3)]),
             write(tmp_path, "b.json.gz", [rec("x2", 4), rec("x3", 5), rec("x4", 6)])]
    # An Insights record makes the one-pass load give way to the staged one.
    later = [write(tmp_path, "c.json.gz", [rec("x3", 7), rec("y1", 8)] + [INSIGHT] * insight
                   + [rec("y1", 9)]),
             write(tmp_path, "d.json.gz", [rec("y2", 10), rec("x4", 11), rec("y1", 12)])]
    grouped, _ = together(first)
    grouped, got = together(later, grouped)
    single, _ = one_at_a_time(first)
    single, want = one_at_a_time(later, single)
    assert per_file_calls == []
    assert counts(got) == counts(want)
    assert [(r.accepted, r.duplicates) for r in got] == [(1, 2), (1, 2)]
    assert tables(grouped) == tables(single)


@pytest.mark.parametrize("batch, chunk", [(1, 1 << 30), (1, 1), (5000, 12000)])
def test_batches_and_chunks_of_any_size_give_the_same_result(tmp_path, monkeypatch,
                                                             per_file_calls, batch, chunk):
    import correlate.ingest.many as many
    monkeypatch.setattr(many, "BATCH_BYTES", batch)
    monkeypatch.setattr(many, "CHUNK_BYTES", chunk)
    files = [write(tmp_path, f"f{k}.json.gz",
                   [rec(f"e{(k * 3 + i) % 11}", k * 3 + i) for i in range(4)]
                   + [INSIGHT] * (k == 4))
             for k in range(7)]
    assert_same(files, per_file_calls, [])


def test_insights_mixed_into_a_file_stay_ignored_and_lines_count_them(tmp_path,
                                                                      per_file_calls):
    files = [write(tmp_path, "a.json.gz", [rec("a1", 1), INSIGHT, rec("a2", 2), rec("a2", 3)]),
             write(tmp_path, "b.json.gz", [rec("b1", 4), rec("b2", 5)]),
             write(tmp_path, "insights.json.gz", [INSIGHT, INSIGHT])]
    grouped, got = assert_same(files, per_file_calls, [])
    assert [(r.read, r.accepted, r.ignored, r.duplicates) for r in got] == [
        (4, 2, 1, 1), (2, 2, 0, 0), (2, 0, 2, 0)]
    assert grouped.query("SELECT event_id, line FROM activity WHERE event_id LIKE 'a%' "
                         "ORDER BY line") == [("a1", 1), ("a2", 3)]


def test_one_bad_file_in_a_group_takes_the_per_file_path_in_its_place(tmp_path,
                                                                      per_file_calls):
    files = [write(tmp_path, "a.json.gz", [rec("a1", 1), rec("dup", 2)]),
             write(tmp_path, "bad.json.gz", [rec("b1", 3), NO_TIME, rec("dup", 4)]),
             write(tmp_path, "c.json.gz", [rec("dup", 5), rec("b1", 6), rec("c1", 7)])]
    grouped, got = assert_same(files, per_file_calls, ["bad.json.gz"])
    assert [(r.read, r.accepted, r.quarantined, r.duplicates) for r in got] == [
        (2, 2, 0, 0), (3, 1, 1, 1), (3, 1, 0, 2)]
    (file, line, reason, raw), = grouped.query("SELECT file, line, reason, raw FROM quarantine")
    assert (Path(file).name, line, reason) == ("bad.json.gz", 2,
                                               "missing required field: eventTime")
    assert json.loads(raw)["eventID"] == "ct-8"


def test_files_the_reader_rejects_are_found_and_read_one_by_one(tmp_path, per_file_calls):
    odd = rec("o1", 2)
    odd["userIdentity"] = "not an object"
    files = [write(tmp_path, "a.json.gz", [rec("a1", 1)]),
             write(tmp_path, "odd.json.gz", [odd, rec("o2", 3)]),
             write(tmp_path, "number.json.gz", [1, rec("n1", 4)]),
             write(tmp_path, "d.json.gz", [rec("d1", 5)])]
    assert_same(files, per_file_calls, ["odd.json.gz", "number.json.gz"])


def test_act_ids_follow_the_dense_ids_when_one_pass_loads_stored_hashed_ones(tmp_path):
    generic = tmp_path / "generic.jsonl"
    generic.write_text('{"event_id": "g1", "ts": "2026-03-02T09:00:00Z", "account": "alice", '
                       '"target": "web-01"}\n')
    files = [write(tmp_path, "a.json.gz", [rec("a1", 1), rec("a2", 2)])]
    stores = []
    for load in (together, one_at_a_time):
        store = Store(":memory:")
        ingest(store, GenericConnector(), "activity", [str(generic)], Options())
        stores.append(load(files, store)[0])
    assert tables(stores[0]) == tables(stores[1])
    assert stores[0].query("SELECT act_id FROM activity WHERE source = 'cloudtrail' "
                           "ORDER BY 1") == [(1,), (2,)]


@pytest.mark.parametrize("name, text, per_file", [
    # something after the array: the reader rejects the cut-out text
    ("more.json.gz", '{"Records": [%s], "more": [1]}', True),
    # a second document on the same line
    ("two.json", '{"Records": [%s]} {"Records": [%s]}', True),
    # 'records' layout: a first line ending in } means one document per line
    ("split.json", '{"Records": [%s\n]}\n', True),
    # 'document' layout: pretty-printed, read whole both ways
    ("pretty.json", '{\n  "Records": [\n%s\n  ]\n}\n', False),
    ("bom.json", '\ufeff{"Records": [%s]}', True),
])
def test_odd_shapes_give_what_one_by_one_gives(tmp_path, per_file_calls, name, text, per_file):
    body = json.dumps(rec("s1", 1))
    path = write(tmp_path, name, [], text.replace("%s", body))
    files = [write(tmp_path, "a.json.gz", [rec("a1", 2)]), path]
    assert_same(files, per_file_calls, [name] if per_file else [])


def test_gzip_of_two_members_or_cut_short_gives_what_one_by_one_gives(tmp_path,
                                                                       per_file_calls):
    doc = (json.dumps({"Records": [rec("m1", 1), rec("m2", 2)]}) + "\n").encode()
    (tmp_path / "two.json.gz").write_bytes(gzip.compress(doc[:300]) + gzip.compress(doc[300:]))
    (tmp_path / "cut.json.gz").write_bytes(gzip.compress(doc)[:-40])
    files = [write(tmp_path, "a.json.gz", [rec("a1", 3)]), tmp_path / "two.json.gz",
             tmp_path / "cut.json.gz"]
    grouped, got = together(files[:2])
    single, want = one_at_a_time(files[:2])
    assert counts(got) == counts(want) and tables(grouped) == tables(single)
    assert per_file_calls == []
    with pytest.raises(Exception) as grouped_error:
        together(files)
    with pytest.raises(Exception) as single_error:
        one_at_a_time(files)
    assert (type(grouped_error.value), str(grouped_error.value)) == (
        type(single_error.value), str(single_error.value))
    assert per_file_calls == ["cut.json.gz"]


def test_arrays_go_to_the_usual_temp_folder_when_the_ram_disk_is_missing_or_small(
        tmp_path, monkeypatch):
    import correlate.ingest.many as many
    monkeypatch.setattr(many, "SHM", str(tmp_path / "missing"))
    assert many.scratch_dir() is None
    monkeypatch.setattr(many, "SHM", str(tmp_path))
    monkeypatch.setattr(many, "CHUNK_BYTES", 1 << 62)
    assert many.scratch_dir() is None


def test_json_lines_file_among_s3_files_takes_the_per_file_path(tmp_path, per_file_calls):
    lines = tmp_path / "lines.jsonl"
    lines.write_text("".join(json.dumps(rec(f"l{i}", i)) + "\n" for i in range(3)))
    files = [write(tmp_path, "a.json.gz", [rec("a1", 1), rec("l1", 1)]), lines,
             write(tmp_path, "b.json.gz", [rec("l2", 2), rec("b1", 3)])]
    assert_same(files, per_file_calls, ["lines.jsonl"])


def test_same_content_twice_is_skipped_and_rerunning_adds_nothing(tmp_path, per_file_calls):
    records = [rec(f"s{i}", i) for i in range(5)]
    files = [write(tmp_path, "a.json.gz", records), write(tmp_path, "b.json", [rec("b1", 1)])]
    (tmp_path / "copy.json.gz").write_bytes(files[0].read_bytes())
    files.insert(1, tmp_path / "copy.json.gz")
    grouped, got = assert_same(files)
    assert [r.skipped for r in got] == [False, True, False]
    before = tables(grouped)
    _, again = together(files, grouped)
    assert all(r.skipped for r in again) and tables(grouped) == before
    assert per_file_calls == []


def test_secrets_are_redacted_as_one_by_one(tmp_path):
    leaky = rec("p1", 1)
    leaky["requestParameters"] = {"command": "mysql -pHunter2 --password=s3cret prod"}
    files = [write(tmp_path, "a.json.gz", [leaky, rec("p2", 2)])]
    grouped, _ = assert_same(files)
    (detail,), = grouped.query("SELECT detail FROM activity WHERE event_id = 'p1'")
    assert "Hunter2" not in detail and "s3cret" not in detail and "[REDACTED]" in detail


def test_progress_names_every_file_in_order(tmp_path):
    files = [write(tmp_path, f"f{k}.json.gz", [rec(f"e{k}", k)]) for k in range(3)]
    files.insert(1, tmp_path / "lines.jsonl")
    files[1].write_text(json.dumps(rec("l1", 1)) + "\n")
    seen = []
    together(files, progress=seen.append)
    assert seen == [f"[{n}/4] {f}" for n, f in enumerate(files, 1)]


def test_vendor_samples_ingest_together_as_one_by_one(per_file_calls):
    files = sorted(SAMPLES.glob("*.json")) if SAMPLES.is_dir() else []
    if not files:
        pytest.skip(f"vendor samples not present under {SAMPLES} (../shared/vendor-samples)")
    grouped, got = assert_same(files, per_file_calls, [])
    assert len(got) == 35 and sum(r.read for r in got) == 2273
    assert sum(r.quarantined for r in got) == 0


@pytest.mark.parametrize("text, expected", [
    ('{"Records":[{"a":1}]}', (11, 20)),
    ('  {\n "Records" : [ ] }\n', (17, 20)),
    ('{"Records":[{"a":1}]}x', None),
    ('{"Records":{"a":1}}', None),
    ('{"records":[{"a":1}]}', None),
    ('{"Records":[{"a":1}\n]}', None),          # layout 'records': a document per line
    ('{"Records":[\n{"a":1}]}', (11, 21)),       # layout 'document'
    ('[{"a":1}]', None),
])
def test_records_array_accepts_only_documents_read_whole(text, expected):
    assert CloudTrailConnector().records_array(text.encode()) == expected
