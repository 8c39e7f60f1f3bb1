#!/usr/bin/env python3
"""Rebuild docs/gap-report.png: the sample week's gap report as a weekly bundle shows it.

    .venv/bin/python docs/screenshot.py [--keep DIR]

Three earlier weeks (2026-W44..W46) are generated first with sample_data/generate.py (seeds 44-46,
dates moved, ids prefixed so they do not collide with the sample week's), each ingested and
correlated as its week, so the summary has a trend to draw. Then the bundled sample week
(2026-W47) is ingested and correlated, an evidence bundle with its scope pages is written, and
headless Chromium (Debian's `chromium`, driven by Playwright as tests/test_browser.py does) takes
the top of its gap report.
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

from connectors.base import Options
from connectors.generic import GenericConnector
from correlate.engine import correlate
from correlate.ingest import ingest
from correlate.jobs import parse_week
from correlate.store import Store
from reports.evidence import write_bundle

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "gap-report.png"
FILES = (("approvals", "approvals.csv"), ("tickets", "tickets.csv"),
         ("ticket_history", "ticket_history.csv"), ("activity", "activity.jsonl"))
IDS = re.compile(r"\b(ev|PAM|CHG)-(\d+)")


def earlier_week(folder: Path, weeks_back: int) -> None:
    """The generator's week moved `weeks_back` weeks earlier, with its own seed and ids."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("generate", ROOT / "sample_data" / "generate.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    shift = timedelta(weeks=weeks_back)
    saved = gen.DAY0, gen.WEEK, gen.EXPORT
    gen.DAY0, gen.WEEK, gen.EXPORT = (t - shift for t in saved)
    try:
        g = gen.Gen(47 - weeks_back)
        for step in (g.humans, g.services, g.trouble, g.risky, g.noise_tickets):
            step()
        folder.mkdir(parents=True)
        g.write(str(folder), 47 - weeks_back)
    finally:
        gen.DAY0, gen.WEEK, gen.EXPORT = saved
    tag = f"w{47 - weeks_back}"
    for _, name in FILES:
        path = folder / name
        path.write_text(IDS.sub(lambda m: f"{m.group(1)}-{tag}-{m.group(2)}", path.read_text()))


def load(store: Store, folder: Path, week: str) -> None:
    for kind, name in FILES:
        list(ingest(store, GenericConnector(), kind, [str(folder / name)], Options()))
    period = parse_week(week)
    correlate(store, period.start, period.end)


def shoot(report: Path, out: Path) -> None:
    import shutil as sh

    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=sh.which("chromium"),
                                    args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1200, "height": 1100})
        page.goto(report.resolve().as_uri())
        page.screenshot(path=str(out))
        browser.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", help="write the store and bundle here (default: a temp folder)")
    args = ap.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="pamcorr-shot-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        with Store(str(work / "shot.duckdb")) as store:
            for back in (3, 2, 1):
                folder = work / f"w{47 - back}"
                earlier_week(folder, back)
                load(store, folder, f"2026-W{47 - back}")
            load(store, ROOT / "sample_data", "2026-W47")
            bundle = write_bundle(store, work / "2026-W47", scope_pages=True)
        shoot(bundle.path / "gap-report.html", OUT)
        print(f"{OUT} ({OUT.stat().st_size:,} bytes)")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
