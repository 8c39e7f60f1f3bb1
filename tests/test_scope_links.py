"""Issue 18 §1 links: the weekly bundle carries scope pages for the accounts and approvals with
most FAIL actions (bounded, said how many were left out), the gap report links to them with
relative links that resolve inside the bundle, a report alone links to nothing it lacks, and
`pamcorr scope --target HOST` shows what happened on one host."""

from __future__ import annotations

import json
import os
import stat
import zipfile
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from bs4 import BeautifulSoup
from click.testing import CliRunner

from correlate.cli import main
from correlate.config import load_settings
from correlate.engine import correlate
from correlate.jobs import parse_week, run_weekly
from correlate.store import Store
from reports import scope_pages
from reports.evidence import verify_bundle, write_bundle
from reports.gaps import write_gap_report

HOSTILE = '../<script>x</script>/a b'


@pytest.fixture
def drop(world, tmp_path):
    """Week 47: alice passes on web-01; mallory fails 3x, bob 2x (after his approval B ended),
    a hostile name 1x; carol passes."""
    world.approval("A", "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z")
    world.approval("B", "2026-11-17T10:00:00Z", "2026-11-17T11:00:00Z", account="bob",
                   target="web-*")
    world.approval("C", "2026-11-18T08:00:00Z", "2026-11-18T12:00:00Z", account="carol",
                   target="web-02")
    world.action("ok", "2026-11-16T11:00:00Z")
    for i in range(3):
        world.action(f"m{i}", f"2026-11-17T0{i}:00:00Z", account="mallory", target="db-01")
    world.action("b-ok", "2026-11-17T10:30:00Z", account="bob", target="web-01")
    world.action("b0", "2026-11-17T12:00:00Z", account="bob", target="web-01")
    world.action("b1", "2026-11-17T13:00:00Z", account="bob", target="web-01")
    world.action("h", "2026-11-18T09:00:00Z", account=HOSTILE, target="db-02")
    world.action("c", "2026-11-18T09:00:00Z", account="carol", target="web-02")
    world.approval("D", "2026-11-20T10:00:00Z", "2026-11-20T12:00:00Z", account="dave",
                   target="web-0?")                     # a glob naming web-01; never used
    world.write()
    (tmp_path / "pamcorr.toml").write_text(
        'db = "t.duckdb"\noutput = "out"\n'
        + "".join(f'[[sources]]\nconnector = "generic"\nkind = "{k}"\npaths = ["world/{f}"]\n'
                  for k, f in (("approvals", "approvals.csv"), ("tickets", "tickets.csv"),
                               ("activity", "activity.jsonl"))))
    return tmp_path


def weekly(drop: Path) -> Path:
    result = run_weekly(load_settings(drop / "pamcorr.toml"), parse_week("2026-W47"))
    return result.out_dir


def links_of(page: Path) -> list[str]:
    soup = BeautifulSoup(page.read_text(), "html.parser")
    return [a["href"] for a in soup.select("a[href]")]


def test_weekly_bundle_scope_pages_link_both_ways_and_are_in_the_manifest(drop):
    out = weekly(drop)
    report = out / "gap-report.html"
    soup = BeautifulSoup(report.read_text(), "html.parser")
    by_name = {a.get_text(): a["href"] for a in soup.select("#failing a.scope-link")}
    assert set(by_name) == {"mallory", "bob", HOSTILE, "B"}
    for name, href in by_name.items():
        assert not urlparse(href).scheme and href.startswith("scope/")
        page = (out / unquote(href)).resolve()
        assert page.is_file() and page.parent == (out / "scope").resolve(), name
        page_soup = BeautifulSoup(page.read_text(), "html.parser")
        assert page_soup.select_one("#back a")["href"] == "../gap-report.html"
        assert (page.parent / "../gap-report.html").resolve() == report.resolve()
        assert name in page_soup.h1.get_text()
    # the account table links the failing accounts only; passing ones have no page
    accounts = {a.get_text() for a in soup.select("#accounts a.scope-link")}
    assert accounts == {"mallory", "bob", HOSTILE}
    manifest = json.loads((out / "manifest.json").read_text())
    listed = {o["path"] for o in manifest["outputs"]}
    assert {h for h in by_name.values()} <= listed
    assert verify_bundle(out).ok


def test_scope_page_of_an_account_shows_the_weeks_actions_with_the_runs_verdicts(drop):
    out = weekly(drop)
    href = BeautifulSoup((out / "gap-report.html").read_text(), "html.parser").select_one(
        '#failing a.scope-link[href*="account-bob"]')["href"]
    soup = BeautifulSoup((out / href).read_text(), "html.parser")
    verdicts = [tr["data-verdict"] for tr in soup.select("#events tr.event.action")]
    assert verdicts == ["approved", "out_of_window", "out_of_window"]
    assert [td.get_text() for td in soup.select("#approvals-table tr td:first-child")] == ["B"]


def test_a_page_cut_to_its_bound_keeps_every_fail_action(drop, monkeypatch):
    monkeypatch.setattr(scope_pages, "PAGE_ACTIONS", 2)
    out = weekly(drop)
    href = BeautifulSoup((out / "gap-report.html").read_text(), "html.parser").select_one(
        '#failing a.scope-link[href*="account-bob"]')["href"]
    soup = BeautifulSoup((out / href).read_text(), "html.parser")
    events = [(tr.td.get_text(), tr["data-verdict"]) for tr in soup.select("#events tr.action")]
    assert events == [("2026-11-17 12:00:00Z", "out_of_window"),      # not the earlier PASS
                      ("2026-11-17 13:00:00Z", "out_of_window")]
    assert "2 shown: every FAIL action" in soup.select_one("#counts").get_text()


def test_a_change_to_a_scope_page_fails_verify(drop):
    out = weekly(drop)
    page = next((out / "scope").iterdir())
    page.write_text(page.read_text().replace("mallory", "nobody"))
    result = verify_bundle(out)
    assert not result.ok and any(f"changed: scope/{page.name}" in p for p in result.problems)
    page.unlink()
    assert any(f"missing: scope/{page.name}" in p for p in verify_bundle(out).problems)


def test_pages_are_bounded_and_the_report_says_how_many_were_left_out(drop, monkeypatch):
    monkeypatch.setattr(scope_pages, "SCOPE_LIMIT", 1)
    out = weekly(drop)
    assert len(list((out / "scope").iterdir())) == 2          # mallory (3 FAIL) and approval B
    soup = BeautifulSoup((out / "gap-report.html").read_text(), "html.parser")
    assert {a.get_text() for a in soup.select("a.scope-link")} == {"mallory", "B"}
    note = soup.select_one("#scope-note").get_text(" ", strip=True)
    assert "1 account(s) with the most FAIL actions" in note
    assert "2 more account(s) with FAIL actions have no page here" in note


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_scope_pages_get_the_bundle_file_mode(drop, umask):
    old = os.umask(umask)
    try:
        out = weekly(drop)
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (out / "scope").iterdir()}
    assert modes and set(modes.values()) == {0o666 & ~umask}
    assert stat.S_IMODE((out / "gap-report.html").stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE((out / "scope").stat().st_mode) == 0o777 & ~umask


def test_page_names_are_safe_whatever_the_account_holds():
    names = {scope_pages.page_name("account", n) for n in
             (HOSTILE, "MALLORY", "mallory", "a/b", "a_b", "", "..", "ž" * 60)}
    assert len(names) == 8
    for name in names:
        folder, _, file = name.partition("/")
        assert folder == "scope" and "/" not in file and not file.startswith(".")
        assert all(c.isalnum() or c in "-_." for c in file), file


def test_a_zip_bundle_keeps_the_scope_folder_and_verifies(world, tmp_path, drop):
    with Store(str(tmp_path / "z.duckdb")) as store:
        from correlate.ingest import ingest
        from connectors.generic import GenericConnector
        from connectors.base import Options
        for kind in ("approvals", "tickets", "activity"):
            ext = "jsonl" if kind == "activity" else "csv"
            list(ingest(store, GenericConnector(), kind, [str(drop / "world" / f"{kind}.{ext}")],
                        Options()))
        correlate(store)
        bundle = write_bundle(store, tmp_path / "b.zip", scope_pages=True)
    names = zipfile.ZipFile(bundle.path).namelist()
    assert sum(n.startswith("scope/") for n in names) == 4
    assert verify_bundle(bundle.path).ok


def test_a_report_alone_has_no_link_that_leads_nowhere(drop):
    out = weekly(drop)
    with Store(str(drop / "t.duckdb")) as store:
        alone = write_gap_report(store, drop / "alone" / "gaps.html")
    for href in links_of(alone):
        target = urlparse(href)
        assert target.scheme == "" and not target.path, href   # only in-page anchors, if any
    assert not BeautifulSoup(alone.read_text(), "html.parser").select("a.scope-link")
    for page in [out / "gap-report.html", *(out / "scope").iterdir()]:
        for href in links_of(page):
            path = urlparse(href).path
            assert not path or (page.parent / unquote(path)).resolve().is_file(), (page, href)


# --- pamcorr scope --target ---------------------------------------------------------------

@pytest.fixture
def cli(drop, monkeypatch):
    monkeypatch.setenv("PAMCORR_DB", str(drop / "t.duckdb"))
    weekly(drop)

    def run(*args):
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return run


def test_scope_of_a_target_is_what_happened_on_it(cli):
    res = cli("scope", "--target", "WEB-01", "--format", "json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["subject"] == "target WEB-01"
    got = {a["event_id"]: (a["account"], a["verdict"]) for a in data["actions"]}
    assert got == {"ok": ("alice", "approved"), "b-ok": ("bob", "approved"),
                   "b0": ("bob", "out_of_window"), "b1": ("bob", "out_of_window")}
    # A names web-01, B and D globs matching it; C (web-02) is for another host
    assert {a["approval_id"]: a["roles"] for a in data["approvals"]} == {
        "A": ["target"], "B": ["target"], "D": ["target"]}


def test_scope_of_a_target_as_html_has_the_account_page_shape(cli, drop):
    out = drop / "t.html"
    assert cli("scope", "--target", "db-01", "-o", out).exit_code == 0
    soup = BeautifulSoup(out.read_text(), "html.parser")
    assert soup.h1.get_text() == "pamcorr scope: target db-01"
    assert len(soup.select("#scope-timeline line.mark")) == 3
    assert {tr["data-verdict"] for tr in soup.select("#events tr.event")} == {"unapproved"}
    assert soup.select("#approvals-table") and soup.select("#sessions-table")
    assert not soup.select("#back")           # not inside a bundle: no link back


def test_scope_of_an_unknown_target_suggests_close_names(cli, drop):
    res = cli("scope", "--target", "web-1", "-o", drop / "x.html")
    assert res.exit_code == 1 and "web-1: no such target on record" in res.stderr
    assert "web-01" in res.stderr and not (drop / "x.html").exists()
    assert cli("scope", "--target", "nothing-like-it").exit_code == 1


def test_scope_takes_one_subject(cli):
    assert cli("scope", "alice", "--target", "web-01").exit_code == 2
