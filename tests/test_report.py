"""The gap report parsed as HTML: structure, counts, and hostile log strings rendered as text."""

from __future__ import annotations

from bs4 import BeautifulSoup

from correlate.engine import correlate
from reports.gaps import write_gap_report

HOSTILE = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "javascript:alert(1)",
           "\"><svg onload=alert(1)>"]


def build(world, tmp_path):
    world.approval("A", "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z", target="web-*")
    for i, h in enumerate(HOSTILE):
        world.action(f"h{i}", "2026-11-16T15:00:00Z", account=f"m{i}{h}", target=f"web-{h}",
                     detail=h, actor=h, action=h)
    world.action("ok", "2026-11-16T11:00:00Z", target="web-01")
    store = world.store()
    run = correlate(store)
    path = write_gap_report(store, tmp_path / "r.html", run)
    return BeautifulSoup(path.read_text(), "html.parser"), path


def test_hostile_strings_render_as_text(world, tmp_path):
    soup, path = build(world, tmp_path)
    assert soup.find_all("script") and len(soup.find_all("script")) == 1   # only our filter
    assert not soup.find_all("img") and not soup.select("svg[onload]")
    for tag in soup.find_all(True):
        for attr, val in tag.attrs.items():
            assert not attr.startswith("on"), (tag.name, attr)
            assert "javascript:" not in str(val), (tag.name, attr)
    text = soup.get_text()
    for h in HOSTILE:
        assert h in text


def test_report_shows_totals_and_failures(world, tmp_path):
    soup, _ = build(world, tmp_path)
    totals = {tr["data-verdict"]: tr.find_all("td")[2].get_text()
              for tr in soup.select("#totals tr[data-verdict]")}
    assert totals["unapproved"] == "4" and totals["approved"] == "1"
    assert len(soup.select("#failing tr.finding")) == 4
    assert soup.select("#timelines svg rect.window") or soup.select("#timelines svg line.mark")
    assert soup.select("#sources td")


def test_report_has_no_external_assets(world, tmp_path):
    soup, _ = build(world, tmp_path)
    for tag in soup.find_all(["script", "link", "img", "iframe"]):
        assert not tag.get("src") and not tag.get("href")
