"""The gap report at scale (issue 11): a busy account's timeline draws one mark per pixel
column, status and flagged-or-not, so every FAIL is still drawn and the page stays small."""

from __future__ import annotations

from bs4 import BeautifulSoup

import reports.gaps as gaps
from correlate.engine import correlate
from reports.gaps import gap_report_context, write_gap_report

S, E = "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z"


def _busy_week(world):
    world.approval("A", S, E, target="web-01")
    for i in range(30):
        world.action(f"p{i}", f"2026-11-16T10:{i:02d}:00Z", target="web-01")      # PASS
        world.action(f"f{i}", f"2026-11-18T10:{i:02d}:10Z", target="web-01")      # FAIL
        world.action(f"g{i}", f"2026-11-18T10:{i:02d}:20Z", target="db-01")       # FAIL
    return world.store()


def test_a_busy_accounts_timeline_is_binned_and_still_draws_every_fail(world, tmp_path,
                                                                      monkeypatch):
    monkeypatch.setattr(gaps, "TIMELINE_BIN_ABOVE", 10)
    monkeypatch.setattr(gaps, "TIMELINE_MARKS", 4)
    store = _busy_week(world)
    run = correlate(store)
    (tl,) = gap_report_context(store, run).timelines
    fails = [m for m in tl.marks if m["status"] == "FAIL"]
    assert sum(m["n"] for m in fails) == 60                     # every FAIL, in a few marks
    assert len(fails) <= 12 and any(m["n"] > 1 for m in fails)    # 30 minutes: ~10 px
    assert tl.drawn + tl.omitted == 90
    soup = BeautifulSoup(write_gap_report(store, tmp_path / "r.html", run).read_text(),
                         "html.parser")
    fig = soup.select_one("#timelines figure.timeline")
    assert f"{tl.drawn} action(s) drawn" in fig.select_one("figcaption").get_text()
    titles = [t.get_text() for t in fig.select("line.mark.FAIL title")]
    assert any("more action(s) here" in t for t in titles)
    store.close()


def test_a_quiet_accounts_timeline_draws_one_mark_per_action(world, tmp_path):
    store = _busy_week(world)
    run = correlate(store)
    (tl,) = gap_report_context(store, run).timelines
    assert len(tl.marks) == tl.drawn == 90 and all(m["n"] == 1 for m in tl.marks)
    store.close()
