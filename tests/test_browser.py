"""Every HTML output in headless Chromium: no errors, filters work, SVG renders, hostile text inert."""

from __future__ import annotations

import shutil

import pytest

CHROMIUM = shutil.which("chromium")
if CHROMIUM is None:
    pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run does it)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="the playwright Python package is not installed")

from conftest import World  # noqa: E402
from correlate.config import load_settings  # noqa: E402
from correlate.engine import correlate  # noqa: E402
from correlate.jobs import parse_week, run_weekly  # noqa: E402
from correlate.store import Store  # noqa: E402
from reports.gaps import write_gap_report  # noqa: E402
from reports.scope import scope_context, write_scope  # noqa: E402

HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=1">'
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict:
    """The gap report, a scope page and a weekly bundle index, all carrying hostile log strings."""
    tmp = tmp_path_factory.mktemp("browser")
    world = World(tmp / "drop")
    world.approval("A", "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z", target="web-*")
    world.action("ok", "2026-11-16T11:00:00Z", target="web-01", session_id="s1")
    world.action("h", "2026-11-16T15:00:00Z", target=f"web-{HOSTILE}", detail=HOSTILE,
                 action=HOSTILE, actor=HOSTILE)
    world.action("h2", "2026-11-17T09:00:00Z", account=f"m{HOSTILE}", target="db-01",
                 detail=HOSTILE)
    for i in range(6):
        world.action(f"f{i}", f"2026-11-1{6 + i % 5}T2{i % 4}:00:00Z", target=f"db-0{i}",
                     detail=f"psql -c 'select {i}'")
    world.write()
    (tmp / "pamcorr.toml").write_text(
        'db = "b.duckdb"\noutput = "out"\n'
        + "".join(f'[[sources]]\nconnector = "generic"\nkind = "{k}"\npaths = ["drop/{f}"]\n'
                  for k, f in (("approvals", "approvals.csv"), ("tickets", "tickets.csv"),
                               ("activity", "activity.jsonl"))))
    result = run_weekly(load_settings(tmp / "pamcorr.toml"), parse_week("2026-W47"))
    with Store(str(tmp / "b.duckdb")) as store:
        correlate(store)            # an earlier run of the same (whole) period: a trend to draw
        run = correlate(store)
        gaps = write_gap_report(store, tmp / "gaps.html", run)
        scope = write_scope(scope_context(store, "alice"), tmp / "scope.html")
    return {"gaps": gaps, "scope": scope, "index": result.out_dir / "index.html",
            "bundle_gaps": result.out_dir / "gap-report.html"}


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def open_page(browser, pages):
    """Open one output; collects console errors and page errors in page.problems."""
    opened = []

    def go(name):
        page = browser.new_page()
        page.problems = []
        page.on("console", lambda m: page.problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: page.problems.append(str(e)))
        page.goto(pages[name].resolve().as_uri())
        opened.append(page)
        return page
    yield go
    for page in opened:
        page.close()


@pytest.mark.parametrize("name", ["gaps", "scope", "index", "bundle_gaps"])
def test_page_loads_without_errors_and_hostile_strings_stay_text(open_page, name):
    page = open_page(name)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert HOSTILE in page.inner_text("body")
    assert page.locator("img").count() == 0
    assert page.problems == []


@pytest.mark.parametrize("name, selector", [("gaps", "#timelines svg"),
                                            ("scope", "#scope-timeline")])
def test_svg_timeline_renders(open_page, name, selector):
    box = open_page(name).locator(selector).first.bounding_box()
    assert box and box["width"] > 100 and box["height"] > 50


def test_gap_report_filter_hides_rows(open_page):
    page = open_page("gaps")
    rows = page.locator("#failing tr.issue:visible")
    before = rows.count()
    assert before >= 3
    page.fill("#filter", "select 3")
    assert 0 < rows.count() < before
    page.fill("#filter", "")
    assert rows.count() == before
    assert page.problems == []


def test_gap_report_verdict_filter_and_sorting(open_page):
    page = open_page("gaps")
    rows = page.locator("#failing tr.issue:visible")
    before = rows.count()
    verdicts = page.eval_on_selector_all("#failing details.verdict-group",
                                         "ds => ds.map(d => d.dataset.verdict)")
    page.select_option("#verdict-filter", verdicts[0])
    assert 0 < rows.count() <= before
    assert page.locator("#failing details.verdict-group:visible").count() == 1
    page.select_option("#verdict-filter", "")
    assert rows.count() == before
    table = page.locator("#failing table.issues").first
    table.locator("thead th").nth(1).click()                 # target, ascending
    targets = table.locator("tbody tr td:nth-child(2)").all_inner_texts()
    assert targets == sorted(targets, key=str.lower)
    assert page.problems == []


def test_gap_report_shows_summary_numbers_and_every_fail_group(open_page, pages, tmp_path):
    """What a reader sees first, checked in the rendered page: the status counts of the summary,
    and every FAIL verdict's group open with its issues on screen (and in a screenshot)."""
    from bs4 import BeautifulSoup
    soup = BeautifulSoup(pages["gaps"].read_text(), "html.parser")
    page = open_page("gaps")
    page.set_viewport_size({"width": 1280, "height": 900})
    for tr in soup.select("#status-summary tr[data-status]"):
        cell = page.locator(f'#status-summary tr[data-status="{tr["data-status"]}"] td.count')
        assert cell.is_visible() and cell.inner_text() == tr.select_one(".count").get_text()
    assert page.locator("#status-summary").bounding_box()["y"] < 900      # above the fold
    # the trend chart (one sparkline a verdict, with its numbers) and whether every source sent
    # data are part of the summary a reader sees
    for tr in soup.select("#trend-table tr.trend"):
        spark = page.locator(f'#trend-table tr[data-verdict="{tr["data-verdict"]}"] svg.spark')
        box = spark.bounding_box()
        assert spark.is_visible() and box["width"] > 100 and box["height"] > 20
        line = spark.locator("polyline")        # drawn across the chart (a flat one too)
        assert line.evaluate("p => p.getBBox().width") > 100
        assert line.evaluate("p => p.points.numberOfItems") == 2     # two comparable runs
    assert soup.select("#trend-table tr.trend")
    coverage = page.locator("#source-coverage")
    assert coverage.is_visible() and "sent data in this period" in coverage.inner_text()
    shot = page.locator("#summary").screenshot(path=str(tmp_path / "summary.png"))
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 1000
    fail_verdicts = [d["data-verdict"] for d in
                     soup.select("#failing details.verdict-group[data-status=FAIL]")]
    assert "unapproved" in fail_verdicts
    for verdict in fail_verdicts:
        group = page.locator(f"#issues-{verdict}")
        assert group.locator("summary").is_visible()
        rows = group.locator("tr.issue")
        assert rows.count() >= 1 and all(rows.nth(i).is_visible() for i in range(rows.count()))
        shot = group.screenshot(path=str(tmp_path / f"{verdict}.png"))
        assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 1000
    assert page.problems == []


def test_gap_report_prints_landscape_with_every_group_open(open_page):
    page = open_page("gaps")
    page.emulate_media(media="print")
    assert not page.locator("#filter").is_visible()
    page.evaluate("window.dispatchEvent(new Event('beforeprint'))")
    assert page.eval_on_selector_all("#failing details", "ds => ds.every(d => d.open)")
    assert page.pdf(prefer_css_page_size=True)[:4] == b"%PDF"


def test_scope_filter_by_text_and_verdict(open_page):
    page = open_page("scope")
    rows = page.locator("#events tr.event:visible")
    before = rows.count()
    page.fill("#filter", "psql")
    assert 0 < rows.count() < before
    page.fill("#filter", "")
    page.select_option("#verdict-filter", "approved")
    assert rows.count() == 1
    assert page.locator("#events tr.event:visible td").nth(1).inner_text() == "action"
    page.select_option("#verdict-filter", "")
    assert rows.count() == before
    assert "of" in page.inner_text("#shown") and page.problems == []


def test_bundle_index_shows_weekly_sections(open_page):
    page = open_page("index")
    assert page.locator("#coverage-table tr.coverage").count() == 1
    assert page.locator("#changes tr.change").count() >= 3
    assert page.locator("#bundle-files tr.file").count() >= 5


def test_print_hides_controls_and_makes_a_pdf(open_page):
    page = open_page("scope")
    page.emulate_media(media="print")
    assert not page.locator("#filter").is_visible()
    assert page.pdf()[:4] == b"%PDF"


def test_bundle_report_links_open_scope_pages_that_link_back(open_page):
    """In the weekly bundle, a failing account's name opens its scope page in scope/, whose
    back link returns to the report: relative links that work from the bundle folder."""
    page = open_page("bundle_gaps")
    link = page.locator("#failing a.scope-link").first
    name = link.inner_text()
    link.click()
    page.wait_for_load_state()
    assert "/scope/" in page.url and name in page.locator("h1").inner_text()
    assert page.locator("#scope-timeline").is_visible()
    page.locator("#back a").click()
    page.wait_for_load_state()
    assert page.url.endswith("/gap-report.html") and page.problems == []
