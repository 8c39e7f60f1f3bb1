"""The issue key (#18 section 1): the gap report's group (account, target, verdict; and the rule
for a detection) as a column of the findings and detections CSV and JSON lines, in each OCSF
object (metadata.correlation_uid, unmapped.issue_key) and on each issue row of the gap report.
Adding it changed the exports' bytes on purpose; everything else is as before (the frozen
files in tests/fixtures/exports were written by the writers before the key)."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

import export_world
from correlate import queries
from correlate.findings import issue_key
from reports.detections_sql import write_detections
from reports.export_sql import write_findings
from reports.gaps import write_gap_report
from reports.ocsf_sql import write_findings_ocsf
from reports import detections as det

BEFORE = Path(__file__).parent / "fixtures" / "exports"
KEY = re.compile(r"iss-[0-9a-f]{12}")


@pytest.fixture
def store(world):
    export_world.build(world)
    store = world.store()
    export_world.correlate_world(store)
    yield store
    store.close()


def written(store, what: str, fmt: str) -> str:
    out = io.StringIO()
    (write_findings if what == "findings" else write_detections)(store, fmt, out)
    return out.getvalue()


def test_issue_key_is_stable_and_separates_its_parts():
    assert issue_key("alice", "web-01", "unapproved") == "iss-5df8612d345f"   # docs/verdicts.md
    assert KEY.fullmatch(issue_key("alice", "web-01", "unapproved"))
    keys = {issue_key("alice", "web-01", "unapproved"), issue_key("alicew", "eb-01", "unapproved"),
            issue_key("alice", "web-01", "out_of_window"), issue_key("Alice", "web-01", "unapproved"),
            issue_key("alice", "web-01", "unapproved", "rule_a"),
            issue_key("alice", "web-01", "unapproved", "rule_b")}
    assert len(keys) == 6


@pytest.mark.parametrize("what", ["findings", "detections"])
def test_csv_has_the_issue_key_of_each_row(store, what):
    rows = list(csv.DictReader(io.StringIO(written(store, what, "csv"))))
    assert rows
    reference = ({(f.event_id, f.verdict): issue_key(f.account, f.target, f.verdict)
                  for f in queries.findings(store)} if what == "findings" else
                 {(d["event_id"], d["rule_id"]): issue_key(d["account"], d["target"], d["verdict"],
                                                           d["rule_id"])
                  for d in det.detections(store)})
    got = {(r["event_id"].lstrip("'"), r["verdict" if what == "findings" else "rule_id"]):
           r["issue_key"] for r in rows}
    assert len(got) == len(reference)
    # CSV cells are formula-guarded and revealed; compare through the unguarded event ids
    assert sorted(got.values()) == sorted(reference.values())


@pytest.mark.parametrize("what", ["findings", "detections"])
def test_jsonl_has_the_issue_key_of_each_row(store, what):
    lines = [json.loads(x) for x in written(store, what, "jsonl").split("\n") if x]
    for d in lines:
        rule = d["rule_id"] if what == "detections" else None
        assert d["issue_key"] == issue_key(d["account"], d["target"], d["verdict"], rule)


@pytest.mark.parametrize("what", ["findings", "detections"])
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_everything_but_the_issue_key_is_as_before(store, what, fmt):
    new = written(store, what, fmt)
    records = (len(list(csv.reader(io.StringIO(new)))) - 1 if fmt == "csv"
               else len([x for x in new.split("\n") if x]))
    assert records > 20 and len(KEY.findall(new)) == records
    if what == "findings":      # the exception column came later; none here, so it is empty
        if fmt == "csv":
            assert new.split("\n", 1)[0].endswith(",issue_key,exception")
            new = re.sub(r",exception\n", "\n", new, count=1)
            new = re.sub(r"(iss-[0-9a-f]{12}),\n", r"\1\n", new)
        else:
            assert new.count('"exception": null, ') == records
            new = new.replace('"exception": null, ', "")
    if fmt == "csv":
        assert new.split("\n", 1)[0].endswith(",issue_key")
        stripped = re.sub(r",issue_key\n", "\n", new, count=1)
        stripped = re.sub(r",iss-[0-9a-f]{12}\n", "\n", stripped)
    else:
        stripped = re.sub(r', "issue_key": "iss-[0-9a-f]{12}"', "", new)
    assert stripped.encode("utf-8") == (BEFORE / f"{what}.{fmt}").read_bytes()


def test_gap_report_shows_the_key_of_every_failing_group(store, tmp_path):
    write_gap_report(store, tmp_path / "gaps.html")
    soup = BeautifulSoup((tmp_path / "gaps.html").read_text(encoding="utf-8"), "html.parser")
    shown = {tr["id"]: tr.select_one("td.issue-key").get_text() for tr in soup.select("tr.issue")}
    assert shown and all(k == v for k, v in shown.items())
    exported = {r["issue_key"] for r in csv.DictReader(io.StringIO(written(store, "findings", "csv")))
                if r["status"] in ("FAIL", "WARN")}
    assert set(shown) == exported


def test_ocsf_objects_carry_the_issue_key(store):
    out = io.StringIO()
    write_findings_ocsf(store, out, None, det.detections(store))
    objects = json.loads(out.getvalue())
    findings = {f.event_id: f for f in queries.findings(store)}
    seen_detection = False
    for o in objects:
        key = o["metadata"]["correlation_uid"]
        assert key == o["unmapped"]["issue_key"]
        if "rule_id" in o["unmapped"]:
            seen_detection = True
            first = o["evidences"][0]["data"]
            assert key == issue_key(o["evidences"][0]["actor"]["user"]["name"], first["target"],
                                    first["verdict"], o["unmapped"]["rule_id"])
        else:
            f = findings[o["metadata"]["uid"]]
            assert key == issue_key(f.account, f.target, f.verdict)
    assert seen_detection
