"""identities.csv and targets.csv: aliases, groups, and which mapping made the match."""

from __future__ import annotations

S, E = "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z"
T = "2026-11-16T11:00:00Z"


def judge(world):
    return world.judge(extra=", f.match_via")


def test_identity_aliases_match_one_identity(world):
    for alias in ("CORP\\alice", "alice@corp.example", "Alice"):
        world.identity(alias, "alice")
    world.approval("A", S, E, account="alice@corp.example")
    world.action("dom", T, account="CORP\\alice")
    world.action("plain", T, account="alice")
    world.action("other", T, account="CORP\\bob")
    got = judge(world)
    assert got["dom"]["verdict"] == "approved"
    assert got["dom"]["match_via"] == "identity alice@corp.example = corp\\alice"
    assert got["plain"]["verdict"] == "approved"
    assert got["other"]["verdict"] == "unapproved"


def test_target_group_matches_its_hosts(world):
    world.target("web-01", group="Linux-Prod-Safe")
    world.target("web-02", alias="10.0.0.2", group="linux-prod-safe")
    world.approval("A", S, E, target="linux-prod-safe")
    world.action("h1", T, target="web-01")
    world.action("ip", T, target="10.0.0.2")
    world.action("h3", T, target="web-03")
    got = judge(world)
    assert got["h1"]["verdict"] == "approved"
    assert got["h1"]["match_via"] == "target group Linux-Prod-Safe"
    assert got["ip"]["verdict"] == "approved"
    assert got["h3"]["verdict"] == "unapproved"


def test_ip_alias_matches_hostname(world):
    world.target("db-01", alias="10.1.2.3")
    world.approval("A", S, E, target="db-01")
    world.approval("B", S, E, target="10.1.2.3", account="bob")
    world.action("ip", T, target="10.1.2.3")
    world.action("name", T, target="db-01", account="bob")
    got = judge(world)
    assert (got["ip"]["verdict"], got["ip"]["match_via"]) == ("approved", "target alias of db-01")
    assert (got["name"]["verdict"], got["name"]["match_via"]) == ("approved", "target alias 10.1.2.3")


def test_direct_match_needs_no_mapping_note(world):
    world.target("web-01", group="g")
    world.approval("A", S, E, target="web-01")
    world.action("e", T, target="web-01")
    assert judge(world)["e"]["match_via"] is None


def test_findings_filter_by_identity_kind(world):
    from correlate import queries
    world.identity("svc-deploy", "svc-deploy", kind="service", owner="alice")
    world.approval("A", S, E, account="svc-deploy")
    world.action("svc", T, account="svc-deploy")
    world.action("human", T, account="alice")
    store = world.store()
    from correlate.engine import correlate
    correlate(store)
    assert [f.event_id for f in queries.findings(store, kind="service")] == ["svc"]
    assert [f.event_id for f in queries.findings(store, kind="non-human")] == ["svc"]
    assert [f.event_id for f in queries.findings(store, kind="unknown")] == ["human"]
    assert queries.findings(store, kind="service")[0].identity_kind == "service"


def test_gap_report_shows_mapping_and_identity_kinds(world, tmp_path):
    from bs4 import BeautifulSoup

    from correlate.engine import correlate
    from reports.gaps import write_gap_report
    world.identity("CORP\\svc", "svc-deploy", kind="service")
    world.ticket("CHG-2", status="cancelled")
    world.approval("A", S, E, account="svc-deploy", ticket="CHG-2")
    world.action("e", T, account="CORP\\svc")          # ticket_invalid, matched through the alias
    world.action("h", T, account="mallory")
    store = world.store()
    run = correlate(store)
    soup = BeautifulSoup(write_gap_report(store, tmp_path / "r.html", run).read_text(), "html.parser")
    kinds = {tr["data-kind"]: tr.find_all("td")[4].get_text() for tr in soup.select("#kinds tr[data-kind]")}
    assert kinds == {"service": "1", "unknown": "1"}
    assert "via identity svc-deploy = corp\\svc" in soup.select_one("#failing").get_text()


def test_identities_reingest_updates_and_counts_duplicates(tmp_path):
    from connectors.base import Options
    from connectors.generic import GenericConnector
    from correlate.ingest import ingest
    from correlate.store import Store
    store = Store(":memory:")
    first = tmp_path / "ids1.csv"
    first.write_text("alias,identity,kind,owner\nAlice,alice,,\nsvc-x,svc-x,service,bob\n")
    second = tmp_path / "ids2.csv"
    second.write_text("alias,identity,kind,owner\nALICE,alice,,\nsvc-x,svc-x,service,carol\n")
    (r1,) = ingest(store, GenericConnector(), "identities", [str(first)], Options())
    (r2,) = ingest(store, GenericConnector(), "identities", [str(second)], Options())
    assert (r1.accepted, r1.duplicates) == (2, 0)
    assert (r2.accepted, r2.duplicates) == (1, 1)      # alice unchanged, svc-x's owner changed
    assert store.query("SELECT alias_norm, owner FROM identities ORDER BY 1") == [
        ("alice", None), ("svc-x", "carol")]
