"""Issue 18 §1: the gap report's summary shows a trend per verdict over the last comparable runs
(an inline SVG with its numbers as a table) and says which sources sent no data in the period."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

from connectors.base import Options
from connectors.registry import get_connector
from correlate.engine import correlate
from correlate.ingest import ingest
from correlate.jobs import parse_week
from reports.gaps import write_gap_report
from reports.trend import SPARK_HEIGHT, SPARK_PAD, trend

# unapproved actions per week: W44 3, W45 0 (nothing at all), W46 1, W47 2
WEEKS = {"2026-W44": 3, "2026-W45": 0, "2026-W46": 1, "2026-W47": 2}


@pytest.fixture
def weekly(world, tmp_path):
    """A store with a passing action in every week but W45 and the unapproved ones above."""
    world.approval("A", "2026-10-26T00:00:00Z", "2026-11-23T00:00:00Z", target="web-01")
    for label, n in WEEKS.items():
        if label == "2026-W45":
            continue
        start = parse_week(label).start
        world.action(f"ok-{label}", iso(start + timedelta(hours=9)))
        for i in range(n):
            world.action(f"bad-{label}-{i}", iso(start + timedelta(hours=10 + i)), target="db-01")
    store = world.store(str(tmp_path / "t.duckdb"))
    yield store
    store.close()


def iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def judge_weeks(store, labels) -> list[int]:
    runs = []
    for label in labels:
        week = parse_week(label)
        runs.append(correlate(store, week.start, week.end))
    return runs


def soup_of(store, tmp_path, run_id=None) -> BeautifulSoup:
    path = write_gap_report(store, tmp_path / "gaps.html", run_id)
    return BeautifulSoup(path.read_text(), "html.parser")


def trend_rows(soup) -> dict[str, list[int]]:
    return {tr["data-verdict"]: [int(td.get_text().replace(",", "")) for td in
                                 tr.select("td.num")]
            for tr in soup.select("#trend-table tr.trend")}


def test_trend_counts_each_verdict_per_comparable_run_oldest_first(weekly, tmp_path):
    runs = judge_weeks(weekly, WEEKS)
    soup = soup_of(weekly, tmp_path)
    assert trend_rows(soup) == {"unapproved": [3, 0, 1, 2], "approved": [1, 0, 1, 1]}
    heads = [th.get_text(" ", strip=True) for th in soup.select("#trend-table thead th")][2:]
    assert [h.split()[1] for h in heads] == [str(r) for r in runs]
    svg = soup.select_one('#trend-table tr[data-verdict=unapproved] svg.spark')
    assert svg["role"] == "img"
    assert svg.title.get_text() == "unapproved: 3, 0, 1, 2 action(s), oldest run first"
    points = [tuple(map(float, p.split(","))) for p in svg.polyline["points"].split()]
    xs, ys = zip(*points)
    assert len(points) == 4 and list(xs) == sorted(xs)
    assert ys[0] == SPARK_PAD and ys[1] == SPARK_HEIGHT - SPARK_PAD    # the top and the floor
    assert "last 4 runs" in soup.select_one("#trend-note").get_text()
    assert not soup.find("script", src=True)      # nothing fetched: the chart is inline


def test_a_week_judged_twice_counts_once_and_other_period_lengths_stay_out(weekly, tmp_path):
    judge_weeks(weekly, ["2026-W44", "2026-W46"])
    correlate(weekly, parse_week("2026-W46").start,                    # one day: not comparable
              parse_week("2026-W46").start + timedelta(days=1))
    judge_weeks(weekly, ["2026-W46", "2026-W47"])                       # W46 again
    t = trend(weekly, weekly.scalar("SELECT max(run_id) FROM runs"))
    assert [r["run_id"] for r in t.runs] == [1, 4, 5]
    assert {s["verdict"]: s["counts"] for s in t.series}["unapproved"] == [3, 1, 2]


def test_trend_of_an_older_run_ends_at_that_run(weekly, tmp_path):
    runs = judge_weeks(weekly, WEEKS)
    judge_weeks(weekly, ["2026-W46"])                   # W46 again, after W47
    soup = soup_of(weekly, tmp_path, runs[2])
    assert trend_rows(soup)["unapproved"] == [3, 0, 1]
    assert [r["run_id"] for r in trend(weekly, runs[2]).runs] == runs[:3]    # not the re-run


def test_trend_keeps_the_last_eight_runs(weekly, tmp_path):
    labels = [f"2026-W{w}" for w in range(38, 48)]
    runs = judge_weeks(weekly, labels)
    t = trend(weekly, runs[-1])
    assert [r["run_id"] for r in t.runs] == runs[-8:]


def test_first_run_draws_no_line_and_says_so(weekly, tmp_path):
    judge_weeks(weekly, ["2026-W47"])
    soup = soup_of(weekly, tmp_path)
    assert "First run" in soup.select_one("#trend-note").get_text()
    assert not soup.select("#trend svg")
    assert trend_rows(soup) == {"unapproved": [2], "approved": [1]}


def test_runs_without_findings_show_zero_and_no_empty_chart(weekly, tmp_path):
    judge_weeks(weekly, ["2026-W45", "2026-W45"])
    soup = soup_of(weekly, tmp_path)
    assert "No action was judged" in soup.select_one("#trend-note").get_text()
    assert not soup.select("#trend svg") and not soup.select("#trend-table tr.trend")
    judge_weeks(weekly, ["2026-W46"])
    soup = soup_of(weekly, tmp_path)
    assert trend_rows(soup) == {"unapproved": [0, 1], "approved": [0, 1]}
    assert len(soup.select("#trend svg.spark")) == 2


def ingest_k8s(store, path, ts: str) -> None:
    path.write_text(json.dumps({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": ts,
        "stage": "ResponseComplete", "requestURI": "/api/v1/pods", "verb": "get",
        "user": {"username": "alice"}, "requestReceivedTimestamp": ts,
        "stageTimestamp": ts}) + "\n")
    for r in ingest(store, get_connector("k8s"), None, [str(path)], Options()):
        assert r.accepted == 1, r


def test_silent_sources_are_a_warn_line_with_when_they_were_last_seen(weekly, tmp_path):
    ingest_k8s(weekly, tmp_path / "k8s.jsonl", "2026-11-10T08:00:00.000000Z")    # W46 only
    judge_weeks(weekly, ["2026-W46"])
    line = soup_of(weekly, tmp_path).select_one("#source-coverage")
    # the approval (26 Oct) and the ticket (1 Jan) are older than the week: silent feeds
    assert [s.get_text() for s in line.select(".silent-source")] == [
        "generic approvals", "generic tickets"]
    judge_weeks(weekly, ["2026-W47"])
    line = soup_of(weekly, tmp_path).select_one("#source-coverage")
    assert line["data-status"] == "WARN" and line.select_one(".badge.WARN")
    assert [s.get_text() for s in line.select(".silent-source")] == [
        "generic approvals", "generic tickets", "k8s"]
    assert ("no data in this period from: generic approvals (last seen 2026-10-26), "
            "generic tickets (last seen 2026-01-01), k8s (last seen 2026-11-10).") in " ".join(
        line.get_text(" ", strip=True).replace(" ,", ",").replace(" .", ".").split())


def test_a_source_seen_only_after_the_period_says_so(weekly, tmp_path):
    ingest_k8s(weekly, tmp_path / "k8s.jsonl", "2026-11-24T08:00:00.000000Z")    # W48
    judge_weeks(weekly, ["2026-W47"])
    text = soup_of(weekly, tmp_path).select_one("#source-coverage").get_text(" ", strip=True)
    assert "k8s (none before; first seen 2026-11-24)" in text


def test_ticket_history_counts_as_the_ticket_source_sending_data(world, tmp_path):
    world.approval("A", "2026-11-16T08:00:00Z", "2026-11-16T12:00:00Z")
    world.action("ok", "2026-11-16T09:00:00Z")
    world.transition("CHG-1", "2026-11-16T07:00:00Z", "approved")
    store = world.store(str(tmp_path / "t.duckdb"))
    judge_weeks(store, ["2026-W47"])
    line = soup_of(store, tmp_path).select_one("#source-coverage")
    store.close()
    # CHG-1 was opened on 1 Jan, but its state changed in the week: the ticket feed is alive
    assert line["data-status"] == "PASS", line.get_text()
    assert "generic tickets 1" in line.get_text()


def test_a_run_without_a_period_judges_everything_so_every_source_sent_data(weekly, tmp_path):
    """Approvals precede the actions they cover: without a period nothing is cut at the first
    action, and every source counts all it has on record."""
    correlate(weekly)
    line = soup_of(weekly, tmp_path).select_one("#source-coverage")
    assert line["data-status"] == "PASS"
    assert "generic 9, generic approvals 1, generic tickets 1" in line.get_text()


def test_a_later_week_judged_earlier_is_not_in_an_older_weeks_trend(weekly):
    w47, w46 = judge_weeks(weekly, ["2026-W47", "2026-W46"])
    assert [r["run_id"] for r in trend(weekly, w46).runs] == [w46]
    assert [r["run_id"] for r in trend(weekly, w47).runs] == [w47]


def test_readme_shows_the_report_screenshot_and_the_three_jobs():
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    png = root / "docs" / "gap-report.png"
    assert "](docs/gap-report.png)" in readme
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size < 300_000
    jobs = readme[readme.index("## The three jobs"):]
    for command in ("pamcorr run --config", "pamcorr scope --target", "pamcorr export",
                    "pamcorr verify"):
        assert command in jobs, command
    assert "exit 3" in jobs and "exit 1" in jobs
