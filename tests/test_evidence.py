"""`pamcorr export` and `pamcorr verify`: bundle contents, OCSF, manifest, tampering, chain."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import zipfile
from datetime import datetime, timezone

import pytest
from bs4 import BeautifulSoup
from click.testing import CliRunner

from correlate import __version__
from correlate.cli import main
from correlate.store import Store
from reports.ocsf import finding_uid


@pytest.fixture
def cli(tmp_path, monkeypatch, world):
    """A store with one approved and two failing actions, correlated once."""
    monkeypatch.setenv("PAMCORR_DB", str(tmp_path / "e.duckdb"))
    runner = CliRunner()

    def run(*args):
        return runner.invoke(main, list(args), catch_exceptions=False)
    world.approval("A", "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z")
    world.action("ok", "2026-11-16T11:00:00Z", detail="=HYPERLINK(\"http://x\")")
    world.action("bad", "2026-11-16T15:00:00Z", account="mallory", target="db-01")
    world.action("late", "2026-11-18T09:00:00Z", account="mallory", target="db-01")
    run.inputs = world.write()
    for kind, path in run.inputs.items():
        assert run("ingest", "generic", "--kind", kind, str(path)).exit_code == 0
    assert run("correlate").exit_code == 0
    run.tmp = tmp_path
    return run


def verify(*args):
    return CliRunner().invoke(main, ["verify", *map(str, args)])


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_bundle_holds_findings_report_index_and_manifest(cli):
    out = cli.tmp / "b1"
    res = cli("export", "-o", str(out))
    assert res.exit_code == 0, res.output
    names = {p.name for p in out.iterdir()}
    assert names == {"findings.csv", "findings.jsonl", "findings.ocsf.json", "gap-report.html",
                     "detections.csv", "detections.jsonl", "hygiene.csv", "hygiene.jsonl",
                     "index.html", "manifest.json", "input-integrity.json"}
    m = json.loads((out / "manifest.json").read_text())
    assert m["tool"] == {"name": "pamcorr", "version": __version__}
    assert m["run"]["run_id"] == 1 and m["run"]["grace_s"] == 300 and m["findings"] == 3
    assert m["previous"] is None
    listed = {o["path"]: o for o in m["outputs"]}
    assert set(listed) == names - {"manifest.json"}
    for name, entry in listed.items():
        assert entry["sha256"] == sha(out / name) and entry["size"] == (out / name).stat().st_size
    assert listed["findings.jsonl"]["rows"] == 3
    inputs = {i["kind"]: i for i in m["inputs"]}
    act = inputs["activity"]
    assert act["sha256"] == sha(cli.inputs["activity"])
    assert (act["read"], act["accepted"], act["quarantined"], act["duplicates"]) == (3, 3, 0, 0)
    assert {c["control"] for c in m["controls"]} >= {"10.2.1.2", "AC-6(9)"}
    assert m["completeness"]["quarantined"] == 0
    assert res.stdout.strip().endswith(hashlib.sha256((out / "manifest.json").read_bytes())
                                       .hexdigest())


def test_csv_in_the_bundle_is_formula_safe(cli):
    cli("export", "-o", str(cli.tmp / "b"))
    rows = list(csv.DictReader(io.StringIO((cli.tmp / "b" / "findings.csv").read_text())))
    assert [r["detail"] for r in rows if r["event_id"] == "ok"] == ["'=HYPERLINK(\"http://x\")"]


def test_ocsf_detection_findings(cli):
    cli("export", "-o", str(cli.tmp / "b"))
    items = {i["metadata"]["uid"]: i
             for i in json.loads((cli.tmp / "b" / "findings.ocsf.json").read_text())}
    bad, ok = items["bad"], items["ok"]
    for i in items.values():
        assert (i["class_uid"], i["category_uid"], i["activity_id"], i["type_uid"]) == \
            (2004, 2, 1, 200401)
        assert i["metadata"]["product"]["name"] == "pamcorr"
        assert i["metadata"]["product"]["version"] == __version__
    assert (bad["severity_id"], bad["severity"], bad["status_code"]) == (4, "High", "FAIL")
    assert (ok["severity_id"], ok["status_code"]) == (1, "PASS")
    assert bad["time"] == int(datetime(2026, 11, 16, 15, tzinfo=timezone.utc).timestamp() * 1000)
    assert bad["actor"]["user"]["name"] == "mallory"
    assert bad["resources"] == [{"name": "db-01", "type": "target"}]
    assert bad["finding_info"]["uid"] == finding_uid("generic", "bad", "unapproved")
    assert bad["finding_info"]["title"] == "unapproved"
    assert ok["unmapped"]["approval_id"] == "A" and ok["unmapped"]["ticket_id"] == "CHG-1"
    assert "gap_seconds" in bad["unmapped"]


def test_finding_uid_is_stable_across_runs_and_exports(cli):
    cli("export", "-o", str(cli.tmp / "b1"))
    cli("correlate")
    cli("export", "-o", str(cli.tmp / "b2"))
    uids = [{i["metadata"]["uid"]: i["finding_info"]["uid"]
             for i in json.loads((cli.tmp / b / "findings.ocsf.json").read_text())}
            for b in ("b1", "b2")]
    assert uids[0] == uids[1] and len(set(uids[0].values())) == 3


def test_period_and_run_select_findings(cli):
    cli("correlate", "--to", "2026-11-17")
    out = cli.tmp / "p"
    assert cli("export", "--run", "1", "--from", "2026-11-17", "-o", str(out)).exit_code == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["findings"] == 1 and m["run"]["run_id"] == 1
    assert m["period"]["start"] == "2026-11-17T00:00:00Z"
    assert m["parameters"]["run"] == 1
    assert cli("export", "--run", "9", "-o", str(cli.tmp / "x")).exit_code == 1


def test_untouched_bundle_verifies(cli):
    cli("export", "-o", str(cli.tmp / "b"))
    res = verify(cli.tmp / "b")
    assert res.exit_code == 0 and "files: 10/10 valid" in res.output
    assert "chain: 0/0 links valid" in res.output


def test_tampered_byte_is_caught(cli):
    out = cli.tmp / "b"
    cli("export", "-o", str(out))
    data = bytearray((out / "findings.csv").read_bytes())
    data[-2] ^= 1
    (out / "findings.csv").write_bytes(bytes(data))
    res = verify(out)
    assert res.exit_code == 1
    assert "files: 9/10 valid" in res.output and "changed: findings.csv" in res.output


def test_deleted_and_added_files_are_caught(cli):
    out = cli.tmp / "b"
    cli("export", "-o", str(out))
    (out / "findings.jsonl").unlink()
    (out / "notes.txt").write_text("added later")
    res = verify(out)
    assert res.exit_code == 1
    assert "missing: findings.jsonl" in res.output and "extra: notes.txt" in res.output


def test_bundles_chain_and_a_rewritten_predecessor_breaks_the_chain(cli):
    b1, b2 = cli.tmp / "b1", cli.tmp / "b2"
    cli("export", "-o", str(b1))
    cli("export", "-o", str(b2), "--previous", str(b1))
    m2 = json.loads((b2 / "manifest.json").read_text())
    assert m2["previous"] == {"bundle": "b1", "manifest_sha256": sha(b1 / "manifest.json")}
    assert "chain: 1/1 links valid" in verify(b2).output
    index = BeautifulSoup((b2 / "index.html").read_text(), "html.parser")
    assert index.select_one("#previous-sha256").get_text() == sha(b1 / "manifest.json")
    assert len(index.select("#bundle-files tr.file")) == 9
    # rewrite b1 consistently: its own verify passes, but b2 no longer vouches for it
    m1 = json.loads((b1 / "manifest.json").read_text())
    m1["created"] = "2020-01-01T00:00:00Z"     # (a count edited is caught by its arithmetic)
    (b1 / "manifest.json").write_text(json.dumps(m1))
    assert verify(b1).exit_code == 0
    res = verify(b2)
    assert res.exit_code == 1 and "chain: 0/1 links valid" in res.output
    assert "b2 -> b1: BROKEN" in res.output


def test_missing_predecessor_is_caught_unless_its_folder_is_given(cli):
    cli("export", "-o", str(cli.tmp / "old" / "b1"))
    cli("export", "-o", str(cli.tmp / "new" / "b2"), "--previous", str(cli.tmp / "old" / "b1"))
    res = verify(cli.tmp / "new" / "b2")
    assert res.exit_code == 1 and "previous bundle b1 of b2 not found" in res.output
    res = verify(cli.tmp / "new" / "b2", "--chain-dir", cli.tmp / "old")
    assert res.exit_code == 0 and "chain: 1/1 links valid" in res.output


def test_explicit_previous_and_the_exports_table(cli):
    cli("export", "-o", str(cli.tmp / "b1"))
    cli("export", "-o", str(cli.tmp / "b2"))      # ad hoc: not chained unasked (issue 18)
    res = cli("export", "--previous", str(cli.tmp / "b1"), "-o", str(cli.tmp / "b3"))
    assert res.exit_code == 0
    m3 = json.loads((cli.tmp / "b3" / "manifest.json").read_text())
    assert m3["previous"]["bundle"] == "b1"
    with Store(str(cli.tmp / "e.duckdb"), read_only=True) as store:
        rows = store.query("SELECT bundle, manifest_sha256, previous_sha256 FROM exports "
                           "ORDER BY export_id")
    assert [r[0] for r in rows] == ["b1", "b2", "b3"]
    assert rows[1][2] is None and rows[2][2] == rows[0][1]
    assert json.loads((cli.tmp / "b2" / "manifest.json").read_text())["previous"] is None
    assert verify(cli.tmp / "b2").exit_code == 0
    assert rows[2][1] == sha(cli.tmp / "b3" / "manifest.json")


def test_zip_bundle_verifies_and_tampering_inside_is_caught(cli):
    z = cli.tmp / "bundle.zip"
    assert cli("export", "-o", str(z)).exit_code == 0
    res = verify(z)
    assert res.exit_code == 0 and "files: 10/10 valid" in res.output
    bad = cli.tmp / "bad.zip"
    with zipfile.ZipFile(z) as src, zipfile.ZipFile(bad, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "findings.jsonl":
                data = data.replace(b"mallory", b"nallory")
            dst.writestr(name, data)
        dst.writestr("extra.txt", b"x")
    res = verify(bad)
    assert res.exit_code == 1
    assert "changed: findings.jsonl" in res.output and "extra: extra.txt" in res.output


def test_zip_chains_to_folder_bundle(cli):
    cli("export", "-o", str(cli.tmp / "b1"))
    cli("export", "-o", str(cli.tmp / "b2.zip"), "--previous", str(cli.tmp / "b1"))
    res = verify(cli.tmp / "b2.zip")
    assert res.exit_code == 0 and "b2.zip -> b1: ok" in res.output
    shutil.rmtree(cli.tmp / "b1")
    assert verify(cli.tmp / "b2.zip").exit_code == 1


def test_verify_prints_the_manifest_sha256_and_checks_an_expected_one(cli):
    out = cli.tmp / "b"
    cli("export", "-o", str(out))
    digest = sha(out / "manifest.json")
    res = verify(out)
    assert res.exit_code == 0 and f"manifest sha256 {digest}" in res.output
    assert verify(out, "--expect-sha256", digest).exit_code == 0
    # a manifest edited consistently verifies on its own, never against the recorded sha256
    m = json.loads((out / "manifest.json").read_text())
    m["created"] = "2020-01-01T00:00:00Z"
    (out / "manifest.json").write_text(json.dumps(m))
    assert verify(out).exit_code == 0
    res = verify(out, "--expect-sha256", digest)
    assert res.exit_code == 1 and f"expected {digest}" in res.output


def test_not_a_bundle(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    res = verify(tmp_path / "empty")
    assert res.exit_code == 1 and "missing: manifest.json" in res.output


def test_index_states_controls_and_completeness(cli):
    cli("export", "-o", str(cli.tmp / "b"))
    soup = BeautifulSoup((cli.tmp / "b" / "index.html").read_text(), "html.parser")
    assert len(soup.select("#frameworks tr")) >= 8
    assert soup.select("#sources td") and len(soup.select("#inputs tbody tr")) == len(cli.inputs)
    assert soup.select_one("#chain-start")
    files = {tr.find("a").get_text(): tr.find_all("td")[-1].get_text()
             for tr in soup.select("#bundle-files tr.file")}
    assert files["findings.csv"] == sha(cli.tmp / "b" / "findings.csv")
    assert len(soup.find_all("script")) == 0


def test_export_never_replaces_a_folder_that_is_not_a_bundle(cli):
    precious = cli.tmp / "documents"
    precious.mkdir()
    (precious / "thesis.txt").write_text("years of work")
    res = cli("export", "-o", str(precious))
    assert res.exit_code == 1 and "is not a pamcorr bundle" in res.output
    assert (precious / "thesis.txt").read_text() == "years of work"
    assert cli("export", "-o", str(cli.tmp / "b")).exit_code == 0
    assert cli("export", "-o", str(cli.tmp / "b")).exit_code == 0     # a bundle may be replaced


def test_export_without_a_database_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PAMCORR_DB", str(tmp_path / "none.duckdb"))
    res = CliRunner().invoke(main, ["export", "-o", str(tmp_path / "b")])
    assert res.exit_code == 1 and "no pamcorr database" in res.output
    assert not (tmp_path / "none.duckdb").exists()
