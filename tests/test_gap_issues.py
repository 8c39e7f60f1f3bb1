"""The gap report's summary, findings grouped by issue (account, target, verdict), timelines
that never hide a FAIL, and the file mode of the report."""

from __future__ import annotations

import os
import stat

import duckdb
import pytest
from bs4 import BeautifulSoup
from click.testing import CliRunner

import reports.gaps as gaps
from correlate.cli import main
from correlate.engine import correlate
from reports.gaps import write_gap_report
from reports.render import write_atomic

S, E = "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z"


def _soup(path) -> BeautifulSoup:
    return BeautifulSoup(path.read_text(), "html.parser")


def _counts(soup, details) -> list[int]:
    return [int(tr.find_all("td")[2].get_text().replace(",", "")) for tr in details.select("tr.issue")]


@pytest.fixture(scope="module")
def sample_week(tmp_path_factory):
    """The demo: the sample week in sample_data/, correlated, and its gap report."""
    tmp = tmp_path_factory.mktemp("demo")
    db, out = tmp / "demo.duckdb", tmp / "demo.html"
    res = CliRunner().invoke(main, ["demo", "--db", str(db), "-o", str(out)],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    with duckdb.connect(str(db), read_only=True) as con:
        expected = con.execute(
            "SELECT f.verdict, f.status, count(*), count(DISTINCT (a.account, a.target)) "
            "FROM findings f JOIN activity a USING (act_id) WHERE f.run_id = "
            "(SELECT max(run_id) FROM runs) AND f.status IN ('FAIL', 'WARN') GROUP BY ALL").fetchall()
        statuses = dict(con.execute(
            "SELECT status, count(*) FROM findings WHERE run_id = (SELECT max(run_id) FROM runs) "
            "GROUP BY ALL").fetchall())
    return _soup(out), expected, statuses


def test_every_fail_and_warn_verdict_of_the_sample_week_is_a_group_with_all_its_issues(sample_week):
    soup, expected, _ = sample_week
    groups = {d["data-verdict"]: d for d in soup.select("#failures details.verdict-group")}
    assert {v for v, *_ in expected} <= set(groups)
    assert {v for v, s, *_ in expected if s == "FAIL"} >= {"unapproved", "out_of_window",
                                                           "ticket_missing", "ticket_invalid"}
    for verdict, status, n, keys in expected:
        d = groups[verdict]
        assert d["data-status"] == status
        counts = _counts(soup, d)
        assert len(counts) == keys and sum(counts) == n, verdict      # every issue listed
        assert counts == sorted(counts, reverse=True), verdict        # biggest first
        assert ("open" in d.attrs) == (status == "FAIL")
    order = [d["data-status"] for d in soup.select("#failures details.verdict-group")]
    assert order == sorted(order, key=lambda s: s != "FAIL")          # FAIL verdicts first


def test_summary_shows_status_counts_shares_and_the_biggest_fail_issues(sample_week):
    soup, expected, statuses = sample_week
    rows = {tr["data-status"]: tr for tr in soup.select("#status-summary tr[data-status]")}
    total = sum(statuses.values())
    for status, n in statuses.items():
        assert rows[status].select_one(".count").get_text() == f"{n:,}"
        assert rows[status].select_one(".share").get_text() == f"{n / total * 100:.1f}%"
    top = soup.select("#top-fail li.top-issue")
    assert 1 <= len(top) <= gaps.TOP_FAIL
    biggest = max(_counts(soup, d)[0] for d in
                  soup.select("#failures details.verdict-group[data-status=FAIL]"))
    assert top[0].get_text().endswith(f"{biggest:,}")
    # the summary and the risky actions come before the findings; controls and sources after
    ids = [s["id"] for s in soup.select("section")]
    assert ids[:3] == ["summary", "risky", "failures"]
    assert ids.index("controls") > ids.index("failures") < ids.index("sources")
    assert not soup.select('a[href^="docs/"]')                       # no link that breaks


def test_issue_group_counts_first_last_sample_and_nearest_approval(world, tmp_path):
    world.ticket("CHG-1")
    world.approval("A", S, E, target="web-01")
    for i, ts in enumerate(("2026-11-16T13:00:00Z", "2026-11-16T14:00:00Z", "2026-11-16T12:30:00Z")):
        world.action(f"o{i}", ts, target="web-01", action="exec", detail=f"cmd {i}")
    world.action("u", "2026-11-16T13:00:00Z", account="bob", target="db-01", detail="drop")
    store = world.store()
    run = correlate(store)
    soup = _soup(write_gap_report(store, tmp_path / "r.html", run))
    groups = {d["data-verdict"]: d for d in soup.select("details.verdict-group")}
    assert set(groups) == {"out_of_window", "unapproved"}
    cells = [td.get_text() for td in groups["out_of_window"].select_one("tr.issue").find_all("td")]
    assert cells[:5] == ["alice", "web-01", "3", "2026-11-16 12:30:00Z", "2026-11-16 14:00:00Z"]
    assert cells[5].strip() == "exec cmd 2" and cells[6] == "A" and cells[8] == "+30m 0s"
    assert [o["value"] for o in soup.select("#verdict-filter option")] == ["", "out_of_window",
                                                                           "unapproved"]
    correlate(store)                                 # a second run compares with the first
    soup = _soup(write_gap_report(store, tmp_path / "r2.html"))
    assert "0 new, 0 resolved, 2 still present" in soup.select_one("#changes").get_text()
    store.close()


def test_a_timeline_cap_never_hides_fail_marks_and_says_what_it_left_out(world, tmp_path,
                                                                         monkeypatch):
    monkeypatch.setattr(gaps, "TIMELINE_MARKS", 4)
    world.approval("A", S, E, target="web-01")
    for i in range(6):
        world.action(f"p{i}", f"2026-11-16T10:{i:02d}:00Z", target="web-01")      # PASS
        world.action(f"f{i}", f"2026-11-18T10:{i:02d}:00Z", target="web-01")      # FAIL
    store = world.store()
    run = correlate(store)
    soup = _soup(write_gap_report(store, tmp_path / "r.html", run))
    fig = soup.select_one("#timelines figure.timeline")
    assert len(fig.select("line.mark.FAIL")) == 6
    assert len(fig.select("line.mark.PASS")) == 0
    caption = fig.select_one("figcaption").get_text()
    assert "6 action(s) not drawn (6 PASS)" in caption and "passing" not in caption
    ticks = fig.select("g.axis text")
    assert len(ticks) >= 2 and ticks[0].get_text() == "16 Nov 12:00"
    store.close()


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_reports_get_the_bundle_file_mode_respecting_umask(world, tmp_path, umask, mode):
    world.action("u", "2026-11-16T13:00:00Z")
    store = world.store()
    run = correlate(store)
    old = os.umask(umask)
    try:
        report = write_gap_report(store, tmp_path / "r.html", run)
        plain = write_atomic(tmp_path / "x.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(report.stat().st_mode) == mode
    assert stat.S_IMODE(plain.stat().st_mode) == mode
    store.close()
