"""Accepted exceptions for verdicts ([[exceptions]]) and target criticality ([criticality]): which
findings an exception covers, that they keep their verdict and are counted apart, --fail-on, the
expiry bound and its zone, expired exceptions reported, bad entries refused; groups sorted by
criticality."""

from __future__ import annotations

import json
import re

import pytest
from bs4 import BeautifulSoup
from click.testing import CliRunner
from freezegun import freeze_time

from correlate import queries
from correlate.cli import main
from correlate.config import load_settings
from correlate.engine import correlate
from correlate.store import Store
from reports.gaps import write_gap_report

CRON = """
[[exceptions]]
name = "nightly-cron"
account = "Svc-*"                    # case-insensitive on both sides
target = "db-prod-?"
verdict = "unapproved"
reason = "nightly restore test, CHG-9"
accepted_by = "ciso@example.com"
expires = {expires}
"""

# event -> (account, target, verdict): what each action of the world is judged
EXPECTED = {
    "c1": ("svc-cron", "db-prod-1", "unapproved"),        # the exception's rows
    "c2": ("svc-cron", "db-prod-1", "unapproved"),
    "c3": ("SVC-CRON", "DB-PROD-2", "unapproved"),        # globs are case-insensitive
    "c4": ("svc-cron", "db-prod-10", "unapproved"),       # `?` is one character
    "c5": ("my-svc", "db-prod-1", "unapproved"),          # `svc-*` anchors at the start
    "o1": ("alice", "web-01", "out_of_window"),
    "g1": ("alice", "web-01", "approved_in_grace"),
    "p1": ("alice", "web-01", "approved"),
}
COVERED = {"c1", "c2", "c3"}


@pytest.fixture
def db(world, tmp_path):
    """A store file holding the world above, not yet correlated."""
    world.approval("A", "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z")
    times = {"c1": "13:00", "c2": "13:05", "c3": "13:10", "c4": "13:15", "c5": "13:20",
             "o1": "14:00", "g1": "12:03", "p1": "11:00"}
    for event, (account, target, _) in EXPECTED.items():
        world.action(event, f"2026-11-16T{times[event]}:00Z", account=account, target=target)
    path = tmp_path / "x.duckdb"
    world.store(db=str(path)).close()
    return path


def configure(tmp_path, text: str):
    path = tmp_path / "pamcorr.toml"
    path.write_text(text)
    return path


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def by_event(store: Store, run: int) -> dict:
    """event -> (verdict, status, exception name or None) of a run."""
    rows = store.query(
        "SELECT a.event_id, f.verdict, f.status, x.name FROM findings f JOIN activity a "
        "USING (act_id) LEFT JOIN finding_exceptions e ON e.run_id = f.run_id AND "
        "e.act_id = f.act_id LEFT JOIN verdict_exceptions x ON x.run_id = e.run_id AND "
        "x.n = e.n WHERE f.run_id = ?", [run])
    return {event: (verdict, status, name) for event, verdict, status, name in rows}


def judge(db, config, now="2026-11-20T00:00:00Z") -> tuple[Store, int]:
    settings = load_settings(config)
    store = Store(str(db))
    with freeze_time(now):
        run = correlate(store, exceptions=settings.exceptions,
                        criticality=settings.criticality)
    return store, run


def test_an_exception_covers_exactly_the_rows_its_globs_match_and_they_keep_their_verdict(
        db, tmp_path):
    store, run = judge(db, configure(tmp_path, CRON.format(expires="2099-01-01")))
    plain = correlate(store)                                  # the same actions, no exception
    excepted, before = by_event(store, run), by_event(store, plain)
    assert {e for e, (*_, name) in excepted.items() if name} == COVERED
    assert all(excepted[e][2] == "nightly-cron" for e in COVERED)
    # every row is still there, with its verdict and status: an exception drops nothing
    assert {e: v[:2] for e, v in excepted.items()} == {e: v[:2] for e, v in before.items()}
    assert {e: v[0] for e, v in excepted.items()} == {e: v[2] for e, v in EXPECTED.items()}
    assert queries.findings(store, run, status="FAIL", account="svc-cron")    # still listed
    store.close()


def test_an_exception_never_covers_a_passing_finding(db, tmp_path):
    text = CRON.format(expires="2099-01-01").replace('account = "Svc-*"', 'account = "alice"')
    text = text.replace('target = "db-prod-?"\nverdict = "unapproved"\n', "")
    store, run = judge(db, configure(tmp_path, text))
    covered = {e for e, (*_, name) in by_event(store, run).items() if name}
    assert covered == {"o1", "g1"}                 # FAIL and WARN; p1 (approved, PASS) is not
    store.close()


def test_counts_add_up_failing_is_excepted_plus_not_excepted(db, tmp_path):
    config = configure(tmp_path, CRON.format(expires="2099-01-01"))
    res = cli("correlate", "--db", db, "--config", config)
    assert res.exit_code == 0, res.output
    assert "EXCEPTED 3: failing (FAIL, WARN) 7 = excepted 3 + not excepted 4" in res.output
    store = Store(str(db), read_only=True)
    totals = queries.verdict_totals(store, queries.latest_run(store))
    failing = sum(t["n"] for t in totals if t["status"] in ("FAIL", "WARN"))
    assert failing == 7 and sum(t["excepted"] for t in totals) == 3
    assert {t["verdict"]: t["excepted"] for t in totals if t["excepted"]} == {"unapproved": 3}
    soup = BeautifulSoup(write_gap_report(store, tmp_path / "r.html").read_text(), "html.parser")
    store.close()
    counts = {tr["data-status"]: int(tr.select_one(".count").get_text())
              for tr in soup.select("#status-summary tr[data-status]")}
    assert counts == {"FAIL": 3, "WARN": 1, "EXCEPTED": 3, "PASS": 1, "INFO": 0}
    assert sum(counts.values()) == len(EXPECTED)            # the rows add up to every action
    # EXCEPTED is listed, grouped like the other groups, and not among the failing groups
    rows = soup.select("#issues-EXCEPTED tr.excepted-issue")
    assert sorted((r.find_all("td")[0].get_text(), r.find_all("td")[1].get_text(),
                   r.find_all("td")[4].get_text()) for r in rows) == [
        ("SVC-CRON", "DB-PROD-2", "1"), ("svc-cron", "db-prod-1", "2")]
    assert {r["data-exception"] for r in rows} == {"nightly-cron"}
    assert "ciso@example.com" in rows[0].get_text()
    failing_rows = [[td.get_text() for td in r.find_all("td")[:3]]
                    for r in soup.select("#failing tr.issue")]
    assert sum(int(c[2]) for c in failing_rows) == 4
    assert ["svc-cron", "db-prod-1", "2"] not in failing_rows
    unapproved = soup.select_one("#issues-unapproved summary").get_text()
    assert "2 action(s) in 2 issue(s)" in unapproved
    assert "3 excepted" in soup.select_one('#totals tr[data-verdict="unapproved"]').get_text()


def test_excepted_findings_do_not_count_for_fail_on(db, tmp_path):
    every = CRON.format(expires="2099-01-01") + """
[[exceptions]]
name = "the-rest"
account = "*"
verdict = "[ou]*"
reason = "known"
accepted_by = "ciso@example.com"
expires = 2099-01-01
"""
    config = configure(tmp_path, every)
    assert cli("correlate", "--db", db, "--config", config, "--fail-on", "fail").exit_code == 0
    # the WARN finding is not excepted
    assert cli("correlate", "--db", db, "--config", config, "--fail-on", "warn").exit_code == 3
    assert cli("correlate", "--db", db, "--fail-on", "fail").exit_code == 3     # no config
    # each finding is counted once, for the first entry that covers it
    store = Store(str(db), read_only=True)
    run = queries.latest_run(store) - 1                   # the last run with the config
    per_entry = store.query("SELECT name, findings FROM verdict_exceptions WHERE run_id = ? "
                            "ORDER BY n", [run])
    excepted = store.scalar("SELECT count(*) FROM finding_exceptions WHERE run_id = ?", [run])
    store.close()
    assert per_entry == [("nightly-cron", 3), ("the-rest", 3)] and excepted == 6


@pytest.mark.parametrize("expires, now, applies", [
    ("2026-12-01", "2026-12-01T23:59:59.999999Z", True),     # a date holds through its UTC day
    ("2026-12-01", "2026-12-02T00:00:00Z", False),
    ("2026-12-01T18:00:00-05:00", "2026-12-01T22:59:59.999999Z", True),   # 23:00 UTC
    ("2026-12-01T18:00:00-05:00", "2026-12-01T23:00:00Z", False),         # the end is exclusive
])
def test_an_exception_applies_until_it_expires(db, tmp_path, expires, now, applies):
    store, run = judge(db, configure(tmp_path, CRON.format(expires=expires)), now)
    covered = {e for e, (*_, name) in by_event(store, run).items() if name}
    assert covered == (COVERED if applies else set())
    (entry,) = store.query_dicts("SELECT expired, findings FROM verdict_exceptions "
                                 "WHERE run_id = ?", [run])
    assert entry == {"expired": not applies, "findings": 3}   # covered, or would have covered
    store.close()


def test_an_expired_exception_is_reported_with_what_it_would_have_covered(db, tmp_path):
    config = configure(tmp_path, CRON.format(expires="2020-01-31"))
    res = cli("correlate", "--db", db, "--config", config, "--fail-on", "fail")
    assert res.exit_code == 3                                # it no longer applies
    assert ("exception nightly-cron expired on 2020-02-01T00:00:00Z (held through 2020-01-31 "
            "UTC); 3 finding(s) it would have covered") in res.output
    assert "EXCEPTED 0: failing (FAIL, WARN) 7 = excepted 0 + not excepted 7" in res.output
    store = Store(str(db), read_only=True)
    soup = BeautifulSoup(write_gap_report(store, tmp_path / "r.html").read_text(), "html.parser")
    store.close()
    (item,) = soup.select("#summary #expired-exceptions li")
    assert item["data-exception"] == "nightly-cron"
    assert "expired on 2020-02-01T00:00:00Z" in item.get_text()
    assert "3 finding(s) it would have covered" in item.get_text()
    assert not soup.select("#issues-EXCEPTED tr.excepted-issue")


ENTRY = {"name": '"x"', "account": '"svc-*"', "reason": '"why"', "accepted_by": '"me"',
         "expires": "2099-01-01"}


def entry(**change) -> str:
    keys = {**ENTRY, **change}
    return "[[exceptions]]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items() if v is not None)


@pytest.mark.parametrize("text, message", [
    (entry(reason=None), "exceptions[0] (x): needs reason"),
    (entry(accepted_by=None), "exceptions[0] (x): needs accepted_by"),
    (entry(accepted_by='"  "'), "needs accepted_by"),
    (entry(expires=None), "needs expires"),
    (entry(account='"db-[prod"'), "exceptions[0] (x).account: 'db-[prod': a '['"),
    (entry(account=None, target='""'), "exceptions[0] (x).target: an empty pattern"),
    (entry(verdict='"unaproved"'), "exceptions[0] (x).verdict: 'unaproved' matches no verdict"),
    (entry(verdict='"approved"'), "matches no verdict that FAILs or WARNs"),
    (entry(account=None), "name the account, target or verdict"),
    (entry(expires="2099-01-01T10:00:00"), "exceptions[0] (x).expires: give a zone"),
    (entry(rule='"r"'), "exceptions[0] (x): unknown key 'rule'"),
    (entry() + entry(), "exceptions[1] (x): another exception is named 'x'"),
    (entry(name=None) + entry(name=None, reason=None), "exceptions[1]: needs reason"),
    ('[criticality]\n"db-*" = "severe"\n', "criticality.'db-*': one of critical, high"),
    ('[criticality]\n"db-[x" = "high"\n', "criticality.'db-[x': 'db-[x': a '['"),
])
def test_a_bad_exception_or_criticality_is_a_usage_error_naming_the_entry(db, tmp_path, text,
                                                                          message):
    config = configure(tmp_path, text)
    res = cli("correlate", "--db", db, "--config", config)
    assert res.exit_code == 2, res.output
    assert message in res.output and "pamcorr.toml" in res.output
    assert "Traceback" not in res.output


def test_the_weekly_run_applies_the_configured_exceptions(world, db, tmp_path):
    # db = the fixture's store (approvals and tickets in it); the run ingests nothing new
    config = configure(tmp_path, """
db = "x.duckdb"
output = "out"
[policy]
fail_on = "fail"
[[sources]]
connector = "generic"
kind = "activity"
paths = ["world/activity.jsonl"]
[[exceptions]]
name = "everything-failing"
account = "*"
verdict = "[ou]*"
reason = "pilot week"
accepted_by = "ciso@example.com"
expires = 2099-01-01
[criticality]
"db-prod-*" = "high"
""")
    res = cli("run", "--config", config, "--week", "2026-W47")
    assert res.exit_code == 0, res.output                   # every FAIL finding is excepted
    assert "EXCEPTED 6: failing (FAIL, WARN) 7 = excepted 6 + not excepted 1" in res.output
    out = tmp_path / "out" / "2026-W47"
    weekly = json.loads((out / "weekly.json").read_text())
    assert [x["name"] for x in weekly["exceptions"]] == ["everything-failing"]
    soup = BeautifulSoup((out / "gap-report.html").read_text(), "html.parser")
    assert len(soup.select("#issues-EXCEPTED tr.excepted-issue")) == 5
    assert {r.select_one("td.criticality").get_text()
            for r in soup.select("#issues-EXCEPTED tr.excepted-issue")} == {"high", ""}


CRITICALITY = """
[criticality]
{lines}
"""


@pytest.fixture
def crit_db(world, tmp_path):
    """Unapproved groups of different sizes on targets of different criticality."""
    world.approval("A", "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z", target="web-01")
    n = 0
    for target, count in (("web-01", 9), ("db-prod-1", 1), ("db-prod-10", 2), ("db-stg-1", 4),
                          ("files-1", 5)):
        for _ in range(count):
            n += 1
            world.action(f"u{n}", f"2026-11-16T13:{n:02d}:00Z", account="bob", target=target)
    world.action("o1", "2026-11-16T14:00:00Z", account="alice", target="web-01")
    world.action("o2", "2026-11-16T14:01:00Z", account="alice", target="db-prod-10")
    path = tmp_path / "c.duckdb"
    world.store(db=str(path)).close()
    return path


LEVELS = ['"db-prod-*" = "high"', '"db-prod-10" = "critical"', '"*" = "low"',
          '"web-*" = "medium"', '"files-?" = "high"', '"files-1" = "low"']


@pytest.mark.parametrize("order", [LEVELS, LEVELS[::-1]])
def test_groups_sort_by_criticality_then_verdict_then_count_most_specific_wins(
        crit_db, tmp_path, order):
    config = configure(tmp_path, CRITICALITY.format(lines="\n".join(order)))
    store, run = judge(crit_db, config)
    groups = [(g["account"], g["target"], g["verdict"], g["n"], g["criticality"])
              for g in queries.issue_groups(store, run, None, 100)]
    assert groups == [
        ("bob", "db-prod-10", "unapproved", 2, "critical"),    # the exact name beats db-prod-*
        ("alice", "db-prod-10", "unapproved", 1, "critical"),  # (no approval on that target)
        ("bob", "db-prod-1", "unapproved", 1, "high"),
        ("bob", "web-01", "unapproved", 9, "medium"),          # unapproved before out_of_window
        ("alice", "web-01", "out_of_window", 1, "medium"),
        ("bob", "files-1", "unapproved", 5, "low"),            # the exact name beats files-?
        ("bob", "db-stg-1", "unapproved", 4, "low"),           # only "*"; same level: bigger first
    ]
    soup = BeautifulSoup(write_gap_report(store, tmp_path / "r.html", run).read_text(),
                         "html.parser")
    store.close()
    cells = [(tr.find_all("td")[1].get_text(), tr.select_one("td.criticality").get_text())
             for tr in soup.select("#issues-unapproved tr.issue")]
    assert cells == [("db-prod-10", "critical"), ("db-prod-10", "critical"), ("db-prod-1", "high"),
                     ("web-01", "medium"), ("files-1", "low"), ("db-stg-1", "low")]


def test_without_criticality_groups_sort_by_verdict_then_count_and_a_tie_takes_the_higher(
        crit_db, tmp_path):
    store, run = judge(crit_db, configure(tmp_path, ""))
    groups = [(g["target"], g["verdict"], g["n"], g["criticality"])
              for g in queries.issue_groups(store, run, None, 100)]
    assert [g[2] for g in groups if g[1] == "unapproved"] == [9, 5, 4, 2, 1, 1]
    assert groups[-1][1] == "out_of_window" and {g[3] for g in groups} == {None}
    store.close()
    # two patterns as specific as each other (8 literal characters): the higher level wins
    tie = configure(tmp_path, CRITICALITY.format(lines='"db-prod-?" = "low"\n'
                                                       '"?b-prod-1" = "high"'))
    store, run = judge(crit_db, tie)
    levels = {g["target"]: g["criticality"] for g in queries.issue_groups(store, run, None, 100)}
    assert levels["db-prod-1"] == "high" and levels["web-01"] is None
    assert levels["db-prod-10"] is None                  # `?` is one character
    store.close()


def test_the_example_configs_exceptions_and_criticality_parse_when_uncommented(tmp_path):
    from pathlib import Path
    text = (Path(__file__).resolve().parents[1] / "pamcorr.example.toml").read_text()
    at = text.index("# Accepted exceptions for verdicts")
    head, tail = text[:at], text[at:]
    tail = re.sub(r'(?m)^# (?=\[|"|[a-z_]+ = )', "", tail)
    settings = load_settings(configure(tmp_path, head + tail))
    (x,) = settings.exceptions
    assert (x.name, x.account, x.target, x.verdict) == ("restore-test", "svc-backup", "db-prod-*",
                                                        "unapproved")
    assert x.expires.isoformat() == "2027-04-01T00:00:00+00:00" and x.accepted_by
    assert {c.pattern: c.level for c in settings.criticality} == {
        "db-prod-*": "high", "db-prod-10": "critical", "web-*": "medium"}


def test_findings_are_joined_to_the_matched_keys_on_the_whole_key(db, tmp_path):
    """With account, target and verdict as three join conditions the planner joined the findings
    to the matched keys on the verdict alone (every finding x every key of its verdict: 20 GB
    of memory at 1e6 actions); the plan must not hold such a join."""
    from correlate import exceptions
    store, run = judge(db, configure(tmp_path, CRON.format(expires="2099-01-01")))
    store.con.execute(exceptions.MATCH_SQL, {"run_id": run})
    plan = store.con.execute("EXPLAIN " + exceptions.COVER_SQL, {"run_id": run}).fetchall()[0][1]
    # boxes of the plan stand side by side: every "Conditions: ..." up to its box's edge
    conditions = [c.strip() for c in re.findall(r"Conditions: ([^│]*)", plan)]
    assert conditions and "verdict = verdict" not in conditions
    store.close()


def test_the_accounts_table_counts_excepted_findings_apart_and_the_rows_add_up(db, tmp_path):
    store, run = judge(db, configure(tmp_path, CRON.format(expires="2099-01-01")))
    soup = BeautifulSoup(write_gap_report(store, tmp_path / "r.html", run).read_text(),
                         "html.parser")
    store.close()
    head = [th.get_text() for th in soup.select("#accounts table")[1].select("thead th")]
    rows = {}
    for tr in soup.select("#accounts table")[1].select("tbody tr"):
        cells = dict(zip(head, (td.get_text() for td in tr.find_all("td"))))
        rows[cells["Account"]] = tuple(int(cells[c]) for c in
                                       ("Actions", "PASS", "WARN", "FAIL", "EXCEPTED"))
    assert rows == {"svc-cron": (3, 0, 0, 1, 2), "SVC-CRON": (1, 0, 0, 0, 1),
                    "my-svc": (1, 0, 0, 1, 0), "alice": (3, 1, 1, 1, 0)}
    kinds = [[td.get_text() for td in tr.find_all("td")] for tr in soup.select("#kinds tr[data-kind]")]
    assert [k[1:] for k in kinds] == [["8", "1", "1", "3", "3"]]     # as in the summary
    # the failing accounts first: an account whose only failures are excepted comes after
    assert list(rows)[-1] == "SVC-CRON"


def test_findings_table_names_the_exception_that_covers_each_finding(db, tmp_path):
    config = configure(tmp_path, CRON.format(expires="2099-01-01"))
    assert cli("correlate", "--db", db, "--config", config).exit_code == 0
    res = cli("findings", "--db", db)
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].split()[-1] == "exception"
    at = lines[0].index("exception")
    got = sorted((line.split()[1], line.split()[2], line[at:].strip()) for line in lines[1:])
    assert got == [("SVC-CRON", "DB-PROD-2", "nightly-cron"), ("alice", "web-01", ""),
                   ("alice", "web-01", ""), ("alice", "web-01", ""),
                   ("my-svc", "db-prod-1", ""), ("svc-cron", "db-prod-1", "nightly-cron"),
                   ("svc-cron", "db-prod-1", "nightly-cron"), ("svc-cron", "db-prod-10", "")]
    store = Store(str(db), read_only=True)                 # the library call
    rows = queries.findings(store)
    assert sorted(r.event_id for r in rows if r.exception) == sorted(COVERED)
    store.close()


def test_every_findings_export_names_the_exception_that_covers_each_finding(db, tmp_path):
    """An auditor's CSV, JSON lines and OCSF say which failing findings are accepted exceptions
    (by name), in the SQL writers and the reference Python writers alike."""
    import csv
    import io
    from reports import export, ocsf
    config = configure(tmp_path, CRON.format(expires="2099-01-01"))
    assert cli("correlate", "--db", db, "--config", config).exit_code == 0
    res = cli("findings", "--db", db, "--format", "csv")
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert sorted(r["event_id"] for r in rows if r["exception"]) == sorted(COVERED)
    assert {r["exception"] for r in rows if r["exception"]} == {"nightly-cron"}
    res = cli("findings", "--db", db, "--format", "jsonl")
    got = [json.loads(line) for line in res.stdout.splitlines()]
    assert sorted(d["event_id"] for d in got if d["exception"]) == sorted(COVERED)
    assert all("exception" in d for d in got)
    sql_csv = cli("findings", "--db", db, "--format", "csv").stdout
    store = Store(str(db), read_only=True)
    out = io.StringIO()
    export.write_csv(queries.findings(store), out)
    assert out.getvalue() == sql_csv
    events = [ocsf.ocsf_finding(f) for f in queries.findings(store)]
    store.close()
    assert sorted(e["unmapped"]["event_id"] for e in events
                  if e["unmapped"]["exception"]) == sorted(COVERED)
