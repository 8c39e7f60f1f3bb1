"""Hostile log strings in the outputs: formula cells, bare CR/LF and bidi controls, end to end from
an ingested activity file into `findings --format csv`, the bundle's CSV and every HTML page."""

from __future__ import annotations

import csv
import io
import json

import pytest
from bs4 import BeautifulSoup
from click.testing import CliRunner

from correlate.cli import main
from reports.export import csv_cell, formula_safe

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")
# Ingest trims ASCII spaces off a field's ends; other leading blanks reach the writers.
LEADING = ("", " \t", "\u00a0", "\u3000 ")
FORMULA_DETAILS = [f"{lead}{start}2+2" for start in FORMULA_STARTS for lead in LEADING]
# Cells that are not formulas but need RFC 4180 quoting (a CR or LF inside must not cut the row).
QUOTED_DETAILS = ["ok\r=2+2", "ok\n=2+2", "ok\r\n@SUM(A1)", 'say "hi", then', "a,b"]
BIDI = "\u202e"
BIDI_DETAIL = f"cat notes{BIDI}txt.exe; rm -rf /"
INVISIBLE = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068",
             "\u2069", "\u200e", "\u200f", "\u200b", "\ufeff"]


@pytest.fixture
def cli(tmp_path, monkeypatch, world):
    """Activity whose detail, account and target are formula shapes and bidi text, correlated."""
    monkeypatch.setenv("PAMCORR_DB", str(tmp_path / "h.duckdb"))
    runner = CliRunner()

    def run(*args):
        return runner.invoke(main, list(args), catch_exceptions=False)
    world.approval("A", "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z")
    details = FORMULA_DETAILS + QUOTED_DETAILS
    for i, detail in enumerate(details):
        world.action(f"f{i:02}", f"2026-11-16T11:{i % 60:02}:00Z", detail=detail)
    world.action("acct", "2026-11-16T11:30:30Z", account="=cmd|' /C calc'!A0", target="@db")
    world.action("bidi", "2026-11-16T15:00:00Z", account="mallory", target="db-01",
                 detail=BIDI_DETAIL, action="".join(INVISIBLE))
    run.inputs = {f"f{i:02}": d for i, d in enumerate(details)}
    for kind, path in world.write().items():
        assert run("ingest", "generic", "--kind", kind, str(path)).exit_code == 0
    assert run("correlate").exit_code == 0
    run.tmp = tmp_path
    stored = run("findings", "--format", "jsonl").stdout_bytes.decode("utf-8").splitlines()
    stored = {r["event_id"]: r["detail"] for r in map(json.loads, stored)}
    run.expected = {k: stored[k] for k in run.inputs}
    assert run.expected == {k: v.strip(" ") for k, v in run.inputs.items()}
    return run


def parse_csv(text: str) -> list[dict]:
    """Parse as RFC 4180; a bare CR or LF outside quotes would cut a row and fail the counts."""
    return list(csv.DictReader(io.StringIO(text, newline=""), strict=True))


def guarded(text: str) -> str:
    return "'" + text if text.lstrip(" \u00a0\u3000").startswith(FORMULA_STARTS) else text


def check_findings_csv(text: str, expected: dict) -> None:
    rows = parse_csv(text)
    assert len(rows) == len(expected) + 2          # every finding once, no row cut in two
    by_id = {r["event_id"]: r for r in rows}
    for event_id, detail in expected.items():
        assert by_id[event_id]["detail"] == guarded(detail), event_id
    for i, detail in enumerate(FORMULA_DETAILS):     # each formula start, with leading blanks
        assert by_id[f"f{i:02}"]["detail"].startswith("'"), repr(detail)
    assert by_id["acct"]["account"] == "'=cmd|' /C calc'!A0"
    assert by_id["acct"]["target"] == "'@db"
    for row in rows:                                 # no cell at all starts like a formula
        for col, cell in row.items():
            assert not cell.lstrip(" \u00a0\u3000").startswith(FORMULA_STARTS), (col, cell)
    assert BIDI not in text
    assert by_id["bidi"]["detail"] == "cat notes<U+202E>txt.exe; rm -rf /"
    assert by_id["bidi"]["action"] == "".join(f"<U+{ord(c):04X}>" for c in INVISIBLE)


def test_findings_csv_quotes_cr_lf_and_guards_every_formula_start(cli):
    res = cli("findings", "--format", "csv")
    assert res.exit_code == 0
    check_findings_csv(res.stdout_bytes.decode("utf-8"), cli.expected)


def test_bundle_csv_is_written_quoted_and_guarded(cli):
    res = cli("export", "-o", str(cli.tmp / "b"))
    assert res.exit_code == 0, res.output
    text = (cli.tmp / "b" / "findings.csv").read_bytes().decode("utf-8")
    check_findings_csv(text, cli.expected)
    assert cli("verify", str(cli.tmp / "b")).exit_code == 0


@pytest.mark.parametrize("start", FORMULA_STARTS)
@pytest.mark.parametrize("lead", ["", " ", "   ", " \t", "\u00a0"])
def test_formula_guard_every_start_after_leading_blanks(start, lead):
    assert formula_safe(f"{lead}{start}2+2") == f"'{lead}{start}2+2"


def test_csv_cell_quotes_as_rfc_4180():
    assert csv_cell("plain") == "plain"
    assert csv_cell("a\rb") == '"a\rb"' and csv_cell("a\nb") == '"a\nb"'
    assert csv_cell('x "y", z') == '"x ""y"", z"'
    assert formula_safe("  \r=1") == "'  \r=1" and formula_safe(-3) == "-3"


def visible_checks(html: str) -> BeautifulSoup:
    soup = BeautifulSoup(html, "html.parser")
    for ch in INVISIBLE:
        assert ch not in html, f"raw U+{ord(ch):04X} in the HTML"
    assert "notes<U+202E>txt.exe" in soup.get_text()
    return soup


def test_gap_report_shows_bidi_controls_as_markers(cli):
    out = cli.tmp / "gaps.html"
    assert cli("report", "gaps", "-o", str(out)).exit_code == 0
    soup = visible_checks(out.read_text(encoding="utf-8"))
    assert "<U+202E>" in soup.get_text()


def test_scope_report_shows_bidi_controls_as_markers(cli):
    out = cli.tmp / "scope.html"
    assert cli("scope", "mallory", "-o", str(out)).exit_code == 0
    soup = visible_checks(out.read_text(encoding="utf-8"))
    markers = "".join(f"<U+{ord(c):04X}>" for c in INVISIBLE)
    assert markers in soup.get_text()


def test_bundle_index_shows_bidi_controls_as_markers(cli, world):
    # The index lists the input files; one whose name holds a bidi control.
    name = f"act{BIDI}lmth.jsonl"
    (cli.tmp / name).write_text('{"event_id":"n1","ts":"2026-11-17T01:00:00Z",'
                                '"account":"bob","target":"x"}\n')
    assert cli("ingest", "generic", "--kind", "activity", str(cli.tmp / name)).exit_code == 0
    assert cli("correlate").exit_code == 0
    assert cli("export", "-o", str(cli.tmp / "b")).exit_code == 0
    html = (cli.tmp / "b" / "index.html").read_text(encoding="utf-8")
    assert BIDI not in html
    soup = BeautifulSoup(html, "html.parser")
    assert "act<U+202E>lmth.jsonl" in soup.get_text()
    gaps = (cli.tmp / "b" / "gap-report.html").read_text(encoding="utf-8")
    visible_checks(gaps)
