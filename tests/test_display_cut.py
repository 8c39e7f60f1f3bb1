"""A whole request (a CloudTrail policy document) is stored and exported whole, and cut only where
a page shows it: the gap report and the scope page say how much they left out."""

from __future__ import annotations

import csv
import io

from bs4 import BeautifulSoup
from click.testing import CliRunner

from correlate.cli import main

POLICY = '{"Version":"2012-10-17","Statement":[' + ",".join(
    f'{{"Sid":"S{i}","Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b{i}/*"}}'
    for i in range(40)) + "]}"


def test_long_detail_is_whole_in_store_and_csv_and_cut_on_pages(world, tmp_path, monkeypatch):
    monkeypatch.setenv("PAMCORR_DB", str(tmp_path / "d.duckdb"))
    world.action("put", "2026-11-16T11:00:00Z", action="s3.amazonaws.com:PutBucketPolicy",
                 detail=POLICY)
    runner = CliRunner()
    for kind, path in world.write().items():
        assert runner.invoke(main, ["ingest", "generic", "--kind", kind, str(path)]).exit_code == 0
    assert runner.invoke(main, ["correlate"]).exit_code in (0, 3)
    rows = list(csv.DictReader(io.StringIO(
        runner.invoke(main, ["findings", "--format", "csv"]).stdout)))
    assert rows[0]["detail"] == POLICY
    assert runner.invoke(main, ["report", "gaps", "-o", str(tmp_path / "g.html")]).exit_code == 0
    assert runner.invoke(main, ["scope", "alice", "-o", str(tmp_path / "s.html")]).exit_code == 0
    for page in ("g.html", "s.html"):
        text = BeautifulSoup((tmp_path / page).read_text(), "html.parser").get_text()
        assert POLICY not in text and POLICY[:300] in text, page
        assert "more characters)" in text, page
