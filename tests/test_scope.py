"""`pamcorr scope`: one identity or one approval, through the real store and CLI, JSON and HTML."""

from __future__ import annotations

import json

import pytest
from bs4 import BeautifulSoup
from click.testing import CliRunner

from connectors.generic import GenericConnector
from correlate.cli import main

HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=1">'


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("PAMCORR_DB", str(tmp_path / "s.duckdb"))

    def run(*args):
        return CliRunner().invoke(main, list(args), catch_exceptions=False)
    return run


@pytest.fixture
def scoped(cli, world):
    """Alice: her own approvals, one she approved for dave, actions judged and not judged."""
    world.ticket("CHG-7", opened="2026-11-16T08:00:00Z", status="closed",
                 closed="2026-11-16T13:00:00Z")
    world.transition("CHG-7", "2026-11-16T08:00:00Z", "requested")
    world.transition("CHG-7", "2026-11-16T09:00:00Z", "approved")
    world.transition("CHG-7", "2026-11-16T13:00:00Z", "closed")
    world.approval("A", "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z", target="web-*",
                   ticket="CHG-7", requester="alice", approver="bob")
    world.approval("R", "2026-11-16T13:00:00Z", "2026-11-16T15:00:00Z", target="web-02",
                   requester="carol", approver="bob", status="revoked",
                   revoked_at="2026-11-16T13:30:00Z")
    world.approval("X", "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z", account="dave",
                   target="db-01", requester="dave", approver="Alice")
    world.action("a1", "2026-11-16T11:00:00Z", target="web-01", session_id="s1")
    world.action("a2", "2026-11-16T11:05:00Z", account="ALICE", target="web-03", session_id="s1")
    world.action("a3", "2026-11-16T14:00:00Z", target="web-02", session_id="s2")
    world.action("a4", "2026-11-16T15:00:00Z", account="root", target="web-01", actor="alice")
    world.action("a5", "2026-11-20T10:00:00Z", target="web-01")
    world.action("h", "2026-11-16T16:00:00Z", target="web-01", detail=HOSTILE, action=HOSTILE)
    world.action("other-db", "2026-11-16T11:00:00Z", target="db-01")
    world.action("bob", "2026-11-16T11:00:00Z", account="bob", target="web-01")
    for kind, path in world.write().items():
        assert cli("ingest", "generic", "--kind", kind, str(path)).exit_code == 0
    assert cli("correlate", "--to", "2026-11-17").exit_code == 0
    return cli


def as_json(cli, *args) -> dict:
    res = cli("scope", *args, "--format", "json")
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_approvals_requested_approved_and_held_are_listed_with_roles(scoped):
    got = {a["approval_id"]: a["roles"] for a in as_json(scoped, "alice")["approvals"]}
    assert got == {"A": ["account", "requested"], "R": ["account"], "X": ["approved"]}


def test_actions_match_account_or_actor_case_insensitively_with_their_verdicts(scoped):
    data = as_json(scoped, "Alice")
    verdicts = {a["event_id"]: a["verdict"] for a in data["actions"]}
    assert set(verdicts) == {"a1", "a2", "a3", "a4", "a5", "h", "other-db"}
    assert verdicts["a1"] == verdicts["a2"] == "approved"
    assert verdicts["a3"] == "out_of_window"          # after the revocation at 13:30
    assert verdicts["a4"] == "unapproved"             # root, run by alice
    assert verdicts["a5"] == "not judged"             # outside the only run's period
    kinds = [e["kind"] for e in data["events"]]
    assert kinds.count("revocation") == 1 and kinds.count("ticket") == 3


def test_sessions_and_tickets_with_transitions(scoped):
    data = as_json(scoped, "alice")
    sessions = {s["session_id"]: (s["n"], s["worst"]) for s in data["sessions"]}
    assert sessions == {"s1": (2, "PASS"), "s2": (1, "FAIL")}
    tickets = {t["ticket_id"]: [h["status"] for h in t["transitions"]] for t in data["tickets"]}
    assert tickets["CHG-7"] == ["requested", "approved", "closed"]
    assert "CHG-1" in tickets


def test_newest_judgement_wins_unless_a_run_is_named(scoped):
    assert scoped("correlate").exit_code == 0       # run 2 judges everything
    assert {a["event_id"]: a["verdict"] for a in as_json(scoped, "alice")["actions"]}["a5"] \
        == "out_of_window"
    one = {a["event_id"]: a["verdict"] for a in as_json(scoped, "alice", "--run", "1")["actions"]}
    assert one["a5"] == "not judged" and one["a1"] == "approved"


def test_period_restricts_everything(scoped):
    data = as_json(scoped, "alice", "--from", "2026-11-16T13:00:00Z", "--to", "2026-11-17")
    assert {a["event_id"] for a in data["actions"]} == {"a3", "a4", "h"}
    assert {a["approval_id"] for a in data["approvals"]} == {"R"}


def test_approval_scope_is_what_was_done_under_it(scoped):
    data = as_json(scoped, "--approval", "A")
    got = {a["event_id"]: a["verdict"] for a in data["actions"]}
    # in its window (glob target) and judged under it; h names A as its nearest window
    assert got == {"a1": "approved", "a2": "approved", "h": "out_of_window"}
    assert [a["approval_id"] for a in data["approval"]] == ["A"]
    assert as_json(scoped, "--approval", "NOPE")["actions"] == []


def test_html_has_timeline_filterable_table_and_control_header(scoped, tmp_path):
    out = tmp_path / "alice.html"
    res = scoped("scope", "alice", "-o", str(out))
    assert res.exit_code == 0 and res.stdout.strip() == str(out)
    soup = BeautifulSoup(out.read_text(), "html.parser")
    assert len(soup.select("#scope-timeline rect.window")) == 3
    assert len(soup.select("#scope-timeline rect.ticket")) == 2
    assert len(soup.select("#scope-timeline line.mark")) == 7
    rows = soup.select("#events tr.event")
    assert len(rows) == 7 + 3 + 1 + 3                # actions, approvals, revocation, transitions
    assert {r["data-verdict"] for r in rows} >= {"approved", "not judged", "-"}
    options = [o["value"] for o in soup.select("#verdict-filter option")]
    assert "not judged" in options and "unapproved" in options
    assert soup.select_one("input#filter")
    assert soup.select("#frameworks tr") and soup.select("#sources td")
    assert len(soup.select("section")) >= 5


def test_hostile_log_strings_render_as_text(scoped, tmp_path):
    out = tmp_path / "h.html"
    scoped("scope", "alice", "-o", str(out))
    soup = BeautifulSoup(out.read_text(), "html.parser")
    assert len(soup.find_all("script")) == 1 and not soup.find_all("img")
    for tag in soup.find_all(True):
        assert not any(attr.startswith("on") for attr in tag.attrs), tag.name
    assert HOSTILE in soup.get_text()


def test_aliases_from_the_identities_table(scoped, world, tmp_path):
    if "identities" not in GenericConnector.kinds:
        pytest.skip("the generic connector reads no identities in this build")
    path = tmp_path / "identities.csv"
    path.write_text("alias,identity\nCORP\\asmith,alice\nalice,alice\n")
    assert scoped("ingest", "generic", "--kind", "identities", str(path)).exit_code == 0
    world.actions = [{"event_id": "dom", "ts": "2026-11-16T11:30:00Z",
                      "account": "corp\\ASmith", "target": "web-01"}]
    world.folder = tmp_path / "more"
    assert scoped("ingest", "generic", "--kind", "activity",
                  str(world.write()["activity"])).exit_code == 0
    data = as_json(scoped, "CORP\\asmith")
    assert "dom" in {a["event_id"] for a in data["actions"]}
    assert "a1" in {a["event_id"] for a in data["actions"]}
    assert data["names"] == ["alice", "corp\\asmith"]


def test_account_or_approval_is_required(scoped):
    assert scoped("scope").exit_code == 2
    assert scoped("scope", "alice", "--approval", "A").exit_code == 2


def test_scope_without_a_run_shows_everything_not_judged(cli, world):
    world.action("x", "2026-11-16T11:00:00Z")
    for kind, path in world.write().items():
        cli("ingest", "generic", "--kind", kind, str(path))
    data = as_json(cli, "alice")
    assert [a["verdict"] for a in data["actions"]] == ["not judged"] and data["run_id"] is None
