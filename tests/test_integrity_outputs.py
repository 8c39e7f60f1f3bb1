"""Input integrity in the outputs (issue 20 section 4): the gap report's section, manifest.json
`input_integrity` (checked by `pamcorr verify`) and the chain head carried to the next period."""

from __future__ import annotations

import gzip
import json

from bs4 import BeautifulSoup
from click.testing import CliRunner

from correlate.cli import main
from tests.test_integrity_cloudtrail import _digest_key, build, keys  # noqa: F401 (a fixture)


def _setup(tmp_path, keys):
    chain = build(tmp_path, keys[0])
    chain["logs"][0].unlink()
    db = str(tmp_path / "t.duckdb")
    runner = CliRunner()
    assert runner.invoke(main, ["ingest", "cloudtrail", str(tmp_path / "AWSLogs"),
                                "--db", db]).exit_code == 0
    assert runner.invoke(main, ["integrity", "--db", db]).exit_code == 0
    assert runner.invoke(main, ["correlate", "--db", db]).exit_code in (0, 3)
    return db, runner


def test_gap_report_has_the_input_integrity_section(tmp_path, keys):
    db, runner = _setup(tmp_path, keys)
    out = tmp_path / "gaps.html"
    result = runner.invoke(main, ["report", "gaps", "-o", str(out), "--db", db])
    assert result.exit_code == 0, result.output
    page = BeautifulSoup(out.read_text(), "html.parser")
    section = page.find("section", id="integrity")
    row = section.find("tr", attrs={"data-source": "cloudtrail"})
    cells = [td.get_text() for td in row.find_all("td")]
    assert cells[:6] == ["cloudtrail", "3", "3", "3", "1", "0"]
    checks = [tr["data-check"] for tr in section.find_all("tr", class_="integrity-finding")]
    assert checks == ["ct_log_missing", "ct_unsigned"]


def test_manifest_input_integrity_is_verified(tmp_path, keys):
    db, runner = _setup(tmp_path, keys)
    bundle = tmp_path / "bundle"
    result = runner.invoke(main, ["export", "-o", str(bundle), "--db", db])
    assert result.exit_code == 0, result.output
    manifest = json.loads((bundle / "manifest.json").read_text())
    section = manifest["input_integrity"]
    assert section["findings"] == {"FAIL": 1, "INFO": 1}
    assert [h["key"] for h in section["chain_heads"]] == [_digest_key(2)]
    assert runner.invoke(main, ["verify", str(bundle)]).exit_code == 0
    section["chain_heads"][0]["sha256"] = "0" * 64
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    result = runner.invoke(main, ["verify", str(bundle)])
    assert result.exit_code == 1 and "input_integrity" in result.output


def test_next_period_not_continuing_from_the_recorded_head_is_digest_missing(tmp_path, keys):
    chain = build(tmp_path, keys[0])
    db = str(tmp_path / "t.duckdb")
    runner = CliRunner()
    # week one: the first two hours; the head recorded is the hour-1 digest
    chain["digests"][2].rename(tmp_path / "later.json.gz")
    assert runner.invoke(main, ["ingest", "cloudtrail", str(tmp_path / "AWSLogs"),
                                "--db", db]).exit_code == 0
    first = runner.invoke(main, ["integrity", "--from", "2026-11-30T00:00:00Z",
                                 "--to", "2026-11-30T02:00:00Z", "--db", db, "--format", "json"])
    assert "ct_digest_missing" not in first.stdout
    # the next period's digest names another previous digest (its chain was rewritten)
    doc = json.loads(gzip.decompress((tmp_path / "later.json.gz").read_bytes()))
    doc["previousDigestS3Object"] = doc["previousDigestS3Object"].replace("T02", "T05")
    chain["digests"][2].write_bytes(gzip.compress(json.dumps(doc).encode()))
    assert runner.invoke(main, ["ingest", "cloudtrail", str(chain["digests"][2]),
                                "--db", db]).exit_code == 0
    second = json.loads(runner.invoke(main, [
        "integrity", "--from", "2026-11-30T02:00:00Z", "--to", "2026-11-30T03:00:00Z",
        "--db", db, "--format", "json"]).stdout)
    missing = [f for f in second if f["check_id"] == "ct_digest_missing"]
    assert any(f["subject"] == _digest_key(1) and "recorded" in f["detail"] for f in missing)


def test_hostile_names_in_integrity_findings_are_escaped_in_the_report(tmp_path, keys):
    chain = build(tmp_path, keys[0])
    log = chain["logs"][2]
    hostile = log.with_name(log.name.replace("_c.", "_<img src=x onerror=alert(1)>."))
    hostile.write_bytes(log.read_bytes())         # an unlisted log with a hostile name
    db = str(tmp_path / "t.duckdb")
    runner = CliRunner()
    assert runner.invoke(main, ["ingest", "cloudtrail", str(tmp_path / "AWSLogs"),
                                "--db", db]).exit_code == 0
    assert runner.invoke(main, ["integrity", "--db", db]).exit_code == 0
    assert runner.invoke(main, ["correlate", "--db", db]).exit_code in (0, 3)
    out = tmp_path / "gaps.html"
    assert runner.invoke(main, ["report", "gaps", "-o", str(out), "--db", db]).exit_code == 0
    page = BeautifulSoup(out.read_text(), "html.parser")
    assert page.find("img") is None
    cells = [tr.find_all("td")[3].get_text() for tr in
             page.find_all("tr", attrs={"data-check": "ct_log_unlisted"})]
    assert cells and "<img src=x onerror=alert(1)>" in cells[0]
