"""Tests for connectors.jira_fetch: the real ``jira`` client over real HTTP.

Everything runs against ``tests/ticket_server.py`` on 127.0.0.1; nothing in
``jira`` or ``requests`` is mocked.  Retry waits are kept tiny through the
``backoff`` parameter, except the one test that proves ``Retry-After`` is
honoured (it uses ``Retry-After: 1``).
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests

from connectors.jira_fetch import fetch_jira, jira_credentials_from_env
from connectors.ticket_refs import TicketFetchError
from tests.ticket_server import Reply, TicketServer, jira_history, jira_issue, jira_status
from tests.ticket_server import ticket_server as _server_fixture

ticket_server = _server_fixture  # the fixture every test here uses

VENDOR = Path(__file__).resolve().parents[2] / "shared" / "vendor-samples"
FAST = {"backoff": 0.01, "max_wait": 0.05, "max_retries": 2, "timeout": 5}

OPEN = jira_status("Open", "1", "new")
PROG = jira_status("In Progress", "3", "indeterminate")
APPROVED = jira_status("Approved", "10100", "indeterminate")
DONE = jira_status("Done", "10001", "done")
RESOLVED = jira_status("Resolved", "5", "done")
WONT = jira_status("Won't Do", "10002", "done")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def add_ops(server: TicketServer, flavour: str, n: int = 3, **kw) -> None:
    server.jira_flavour = flavour
    for i in range(1, n + 1):
        server.add_issues(jira_issue(f"OPS-{i}", DONE, created="2024-03-01T10:00:00.000+0200",
                                     cloud=flavour == "cloud", **kw))


def search_requests(server: TicketServer) -> list:
    return [s for s in server.requests if s.path.startswith("/rest/api/2/search")]


@pytest.mark.parametrize("flavour", ["cloud", "datacenter"])
def test_keys_paged_over_several_pages_and_mapped(ticket_server, flavour):
    add_ops(ticket_server, flavour, n=5, components=("db01", "web"), resolutiondate="2024-03-02T12:00:00.000-0500",
          customfield_10050="2024-03-01T22:00:00.000+0000", customfield_10051="2024-03-02")
    res = fetch_jira(ticket_server.url, [f"OPS-{i}" for i in range(1, 6)], page_size=2,
                     planned_start_field="customfield_10050", planned_end_field="customfield_10051", **FAST)
    assert [t["ticket_id"] for t in res.tickets] == [f"OPS-{i}" for i in range(1, 6)]
    assert (res.missing, res.failed, res.invalid) == ([], {}, [])
    searches = search_requests(ticket_server)
    assert len(searches) == 3
    if flavour == "cloud":
        assert {s.path for s in searches} == {"/rest/api/2/search/jql"}
        tokens = [s.query.get("nextPageToken") for s in searches]
        assert tokens[0] is None and tokens[1] and tokens[2] and tokens[1] != tokens[2]
    else:
        assert {s.path for s in searches} == {"/rest/api/2/search"}
        assert [s.query["startAt"] for s in searches] == [["0"], ["2"], ["4"]]
    jql = searches[0].query["jql"][0]
    assert jql == "key in (OPS-1, OPS-2, OPS-3, OPS-4, OPS-5) ORDER BY key ASC"
    assert searches[0].query["expand"] == ["changelog"]
    t = res.tickets[0]
    assert t["opened"] == utc(2024, 3, 1, 8, 0) and t["opened"].tzinfo is timezone.utc
    assert t["closed"] == utc(2024, 3, 2, 17, 0)
    assert t["planned_start"] == utc(2024, 3, 1, 22, 0)
    assert t["planned_end"] == utc(2024, 3, 3, 0, 0)  # date-only end = end of that UTC day
    assert t["status"] == "closed" and t["components"] == ["db01", "web"]
    assert t["assignee"] == ("alice@example.com" if flavour == "cloud" else "alice")
    assert t["reporter"] == ("bob@example.com" if flavour == "cloud" else "bob")
    assert t["system"] == "jira" and t["url"] == f"{ticket_server.url}/browse/OPS-1"
    page_bodies = [body for name, body in res.raw if "/search" in name]
    assert len(page_bodies) == 3 and all(json.loads(b)["issues"] for b in page_bodies)


def test_flavour_detected_from_server_info_or_given(ticket_server):
    add_ops(ticket_server, "datacenter")
    fetch_jira(ticket_server.url, ["OPS-1"], **FAST)
    assert ticket_server.paths()[0] == "/rest/api/2/serverInfo"
    assert "/rest/api/2/search" in ticket_server.paths()
    ticket_server.requests.clear()
    fetch_jira(ticket_server.url, ["OPS-1"], flavour="datacenter", **FAST)
    assert "/rest/api/2/serverInfo" not in ticket_server.paths()


def test_cloud_never_calls_the_removed_search_endpoint(ticket_server):
    add_ops(ticket_server, "cloud")
    gone = requests.get(f"{ticket_server.url}/rest/api/2/search", params={"jql": "key in (OPS-1)"}, timeout=5)
    assert gone.status_code == 410  # the fake answers like Cloud does
    ticket_server.requests.clear()
    res = fetch_jira(ticket_server.url, ["OPS-1", "OPS-2"], **FAST)
    assert len(res.tickets) == 2
    assert "/rest/api/2/search" not in ticket_server.paths()
    assert "/rest/api/3/search" not in ticket_server.paths()
    # forcing the wrong flavour shows what the old endpoint does: a per-key failure, no crash
    res = fetch_jira(ticket_server.url, ["OPS-1"], flavour="datacenter", **FAST)
    assert res.tickets == [] and res.failed["OPS-1"].startswith("HTTP 410")


def long_history(n: int) -> list[dict]:
    """Open -> Approved, then In Progress <-> Resolved back and forth: ``n`` histories."""
    hist = [jira_history(1, "2024-03-01T09:00:00.000+0000", OPEN, APPROVED)]
    prev = APPROVED
    for i in range(2, n + 1):
        nxt = RESOLVED if prev is PROG else PROG
        hist.append(jira_history(i, f"2024-03-02T{i // 60:02d}:{i % 60:02d}:00.000+0000", prev, nxt))
        prev = nxt
    return hist


def test_long_changelog_is_paged_on_cloud(ticket_server):
    hist = long_history(250)
    ticket_server.add_issues(jira_issue("OPS-7", PROG, created="2024-03-01T08:00:00.000+0000",
                                        histories=hist))
    ticket_server.search_changelog_limit = 100  # search results carry only 100 of 250
    ticket_server.jira_statuses = [OPEN, APPROVED, PROG, RESOLVED]  # names only in the changelog
    res = fetch_jira(ticket_server.url, ["OPS-7"], flavour="cloud", **FAST)
    pages = [s for s in ticket_server.requests if s.path == "/rest/api/2/issue/OPS-7/changelog"]
    assert [p.query["startAt"] for p in pages] == [["0"], ["100"], ["200"]]
    rows = [h for h in res.history if h["ticket_id"] == "OPS-7"]
    assert len(rows) == 251  # the initial status at creation + 250 transitions
    assert rows[0] == {"ticket_id": "OPS-7", "ts": utc(2024, 3, 1, 8, 0), "status": "requested"}
    assert rows[1]["status"] == "approved" and rows[1]["ts"] == utc(2024, 3, 1, 9, 0)
    assert [r["ts"] for r in rows] == sorted(r["ts"] for r in rows)
    assert res.tickets[0]["work_start"] is not None


def test_long_changelog_on_datacenter_falls_back_to_issue_expand(ticket_server):
    ticket_server.jira_flavour = "datacenter"
    hist = long_history(120)
    ticket_server.add_issues(jira_issue("OPS-8", PROG, created="2024-03-01T08:00:00.000+0000",
                                        cloud=False, histories=hist))
    ticket_server.search_changelog_limit = 20
    res = fetch_jira(ticket_server.url, ["OPS-8"], **FAST)
    assert "/rest/api/2/issue/OPS-8/changelog" in ticket_server.paths()  # 404 there on DC 9
    issue_req = [s for s in ticket_server.requests if s.path == "/rest/api/2/issue/OPS-8"]
    assert issue_req and issue_req[0].query["expand"] == ["changelog"]
    assert len([h for h in res.history if h["ticket_id"] == "OPS-8"]) == 121
    assert res.failed == {}


def test_status_mapping_categories_names_and_unknown(ticket_server):
    cancelled = jira_status("Cancelled", "10003", "done")
    renamed = jira_status("Ready for CAB", "10004", None)  # no category anywhere
    ticket_server.add_issues(
        jira_issue("CHG-1", OPEN, created="2024-03-01T08:00:00.000+0000"),
        jira_issue("CHG-2", PROG, created="2024-03-01T08:00:00.000+0000"),
        jira_issue("CHG-3", APPROVED, created="2024-03-01T08:00:00.000+0000"),
        jira_issue("CHG-4", RESOLVED, created="2024-03-01T08:00:00.000+0000"),
        jira_issue("CHG-5", WONT, created="2024-03-01T08:00:00.000+0000"),
        jira_issue("CHG-6", cancelled, created="2024-03-01T08:00:00.000+0000", histories=[
            jira_history(1, "2024-03-01T09:00:00.000+0000", OPEN, renamed),
            jira_history(2, "2024-03-01T10:00:00.000+0000", renamed, PROG),
            jira_history(3, "2024-03-01T11:00:00.000+0000", PROG, cancelled)]),
        jira_issue("CHG-7", DONE, created="2024-03-01T08:00:00.000+0000", histories=[
            jira_history(1, "2024-03-01T09:00:00.000+0000", OPEN, PROG),
            jira_history(2, "2024-03-01T12:00:00.000+0000", PROG, DONE)]))
    res = fetch_jira(ticket_server.url, [f"CHG-{i}" for i in range(1, 8)], flavour="cloud", **FAST)
    status = {t["ticket_id"]: t["status"] for t in res.tickets}
    assert status == {"CHG-1": "requested", "CHG-2": "in_progress", "CHG-3": "approved", "CHG-4": "resolved",
                      "CHG-5": "rejected", "CHG-6": "cancelled", "CHG-7": "closed"}
    six = [h["status"] for h in res.history if h["ticket_id"] == "CHG-6"]
    assert six == ["requested", "unknown:Ready for CAB", "in_progress", "cancelled"]
    assert "/rest/api/2/status" in ticket_server.paths()  # looked up once for the unknown name
    seven = next(t for t in res.tickets if t["ticket_id"] == "CHG-7")
    assert (seven["work_start"], seven["work_end"]) == (utc(2024, 3, 1, 9), utc(2024, 3, 1, 12))
    # a configured name wins; the server's global status list also resolves names
    ticket_server.jira_statuses = [jira_status("Ready for CAB", "10004", "new")]
    res = fetch_jira(ticket_server.url, ["CHG-6"], flavour="cloud", **FAST)
    assert [h["status"] for h in res.history][1] == "requested"
    res = fetch_jira(ticket_server.url, ["CHG-6"], flavour="cloud", status_map={"Ready for CAB": "approved"},
                     **FAST)
    assert [h["status"] for h in res.history][1] == "approved"
    with pytest.raises(ValueError):
        fetch_jira(ticket_server.url, ["CHG-6"], flavour="cloud", status_map={"X": "done"})


def test_retry_after_is_honoured_and_bounded(ticket_server):
    add_ops(ticket_server, "cloud")
    ticket_server.script(r"/search/jql$", Reply(429, {"errorMessages": ["Rate limited"]}, {"Retry-After": "1"}))
    started = time.monotonic()
    res = fetch_jira(ticket_server.url, ["OPS-1"], flavour="cloud", backoff=0.01, max_wait=5, max_retries=2)
    first, second = search_requests(ticket_server)
    assert len(res.tickets) == 1
    assert 0.95 <= second.at - first.at < 1.9  # waited as told, not the library's doubled delay
    assert time.monotonic() - started < 3
    # a huge Retry-After is capped by max_wait, and 429 forever ends after max_retries
    ticket_server.requests.clear()
    ticket_server.script(r"/search/jql$", *[Reply(429, {}, {"Retry-After": "3600"})] * 3)
    started = time.monotonic()
    res = fetch_jira(ticket_server.url, ["OPS-2"], flavour="cloud", backoff=0.01, max_wait=0.1, max_retries=2)
    assert time.monotonic() - started < 2
    assert len(search_requests(ticket_server)) == 3
    assert res.failed == {"OPS-2": "HTTP 429 after 2 retries"}


def test_500s_then_success_and_500_forever(ticket_server):
    add_ops(ticket_server, "datacenter")
    ticket_server.script(r"/search$", Reply(500, {"errorMessages": ["boom"]}), Reply(502, "<html>bad gateway"))
    res = fetch_jira(ticket_server.url, ["OPS-1"], flavour="datacenter", **FAST)
    assert [t["ticket_id"] for t in res.tickets] == ["OPS-1"] and len(search_requests(ticket_server)) == 3
    assert [n.split()[-1] for n, _ in res.raw if "/search" in n] == ["500", "502", "200"]
    ticket_server.requests.clear()
    ticket_server.script(r"/search$", *[Reply(500, {"errorMessages": ["still down"]})] * 3)
    res = fetch_jira(ticket_server.url, ["OPS-1", "OPS-2"], flavour="datacenter", batch_size=1, **FAST)
    assert res.failed == {"OPS-1": "HTTP 500 after 2 retries: still down"}
    assert [t["ticket_id"] for t in res.tickets] == ["OPS-2"]  # the next batch still works
    assert len(search_requests(ticket_server)) == 4


def test_history_that_cannot_be_completed_fails_the_ticket(ticket_server):
    ticket_server.add_issues(jira_issue("OPS-9", PROG, created="2024-03-01T08:00:00.000+0000",
                                        histories=long_history(30)),
                             jira_issue("OPS-10", PROG, created="2024-03-01T08:00:00.000+0000"))
    ticket_server.search_changelog_limit = 10
    ticket_server.script(r"/changelog$", *[Reply(503, {})] * 3)
    res = fetch_jira(ticket_server.url, ["OPS-9", "OPS-10"], flavour="cloud", **FAST)
    assert res.failed == {"OPS-9": "history incomplete: HTTP 503 after 2 retries"}
    assert [t["ticket_id"] for t in res.tickets] == ["OPS-10"] and res.missing == []


def test_401_raises_one_clear_error_without_the_token(ticket_server, caplog):
    add_ops(ticket_server, "cloud")
    ticket_server.auth = "Basic " + base64.b64encode(b"me@example.com:right-token").decode()
    caplog.set_level(logging.DEBUG)
    with pytest.raises(TicketFetchError, match="rejected the credentials") as info:
        fetch_jira(ticket_server.url, ["OPS-1"], user="me@example.com", token="s3cr3t-T0KEN", **FAST)
    assert "s3cr3t-T0KEN" not in str(info.value) and "s3cr3t-T0KEN" not in caplog.text
    assert base64.b64encode(b"me@example.com:s3cr3t-T0KEN").decode() not in caplog.text
    assert info.value.__cause__ is None and info.value.__suppress_context__
    with pytest.raises(TicketFetchError):
        fetch_jira(ticket_server.url, ["OPS-1"], user="me@example.com", token="wrong", flavour="cloud", **FAST)
    res = fetch_jira(ticket_server.url, ["OPS-1"], user="me@example.com", token="right-token", **FAST)
    assert len(res.tickets) == 1
    assert all(b"right-token" not in body for _, body in res.raw)


def test_malformed_bodies_and_403_and_timeout_fail_per_batch(ticket_server):
    add_ops(ticket_server, "cloud", n=4)
    ticket_server.script(r"/search/jql$", Reply(200, b'{"issues": [ {"key": "OPS-1", '),
                         Reply(200, {"unexpected": True}),
                         Reply(403, {"errorMessages": ["You do not have permission"]}),
                         Reply(delay=1.0), Reply(delay=1.0))
    started = time.monotonic()
    res = fetch_jira(ticket_server.url, ["OPS-1", "OPS-2", "OPS-3", "OPS-4"], flavour="cloud", batch_size=1,
                     backoff=0.01, max_wait=0.05, max_retries=1, timeout=0.3)
    assert res.failed == {"OPS-1": "malformed JSON body",
                          "OPS-2": "malformed body: search page without a proper 'issues' list",
                          "OPS-3": "HTTP 403: You do not have permission",
                          "OPS-4": "timeout after 1 retries"}
    assert res.tickets == [] and time.monotonic() - started < 4


@pytest.mark.parametrize("flavour", ["cloud", "datacenter"])
def test_unknown_keys_are_missing(ticket_server, flavour):
    add_ops(ticket_server, flavour, n=2)
    res = fetch_jira(ticket_server.url, ["OPS-1", "OPS-404", "NOPE-1", "OPS-2"], **FAST)
    assert sorted(t["ticket_id"] for t in res.tickets) == ["OPS-1", "OPS-2"]
    assert sorted(res.missing) == ["NOPE-1", "OPS-404"] and res.failed == {}


def test_invalid_keys_never_reach_the_server(ticket_server):
    add_ops(ticket_server, "cloud", n=1)
    bad = ["OPS-1) OR project = SECRET", "ops-1", "OPS-01", "OPS-1\n", "A-1", "OPS-1 ", "ＯＰＳ-1", "OPS-0"]
    res = fetch_jira(ticket_server.url, bad + ["OPS-1"], **FAST)
    assert res.invalid == bad and [t["ticket_id"] for t in res.tickets] == ["OPS-1"]
    seen = ticket_server.urls()
    assert "SECRET" not in seen and "ops-1" not in seen and "OPS-01" not in seen and "OPS-0" not in seen
    ticket_server.requests.clear()
    res = fetch_jira(ticket_server.url, bad, **FAST)
    assert res.invalid == bad and ticket_server.requests == []


def test_netrc_does_not_override_the_given_credentials(ticket_server, tmp_path, monkeypatch):
    add_ops(ticket_server, "datacenter", n=1)
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login netrc-user password netrc-pass\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("NETRC", raising=False)
    requests.get(f"{ticket_server.url}/rest/api/2/serverInfo", timeout=5)  # control: plain requests uses it
    netrc_header = "Basic " + base64.b64encode(b"netrc-user:netrc-pass").decode()
    assert ticket_server.requests[-1].headers.get("Authorization") == netrc_header
    monkeypatch.setenv("PAMCORR_JIRA_USER", "env-user@example.com")
    monkeypatch.setenv("PAMCORR_JIRA_TOKEN", "env-token")
    user, token = jira_credentials_from_env()
    ticket_server.requests.clear()
    fetch_jira(ticket_server.url, ["OPS-1"], user=user, token=token, **FAST)
    expected = "Basic " + base64.b64encode(b"env-user@example.com:env-token").decode()
    assert {s.headers.get("Authorization") for s in ticket_server.requests} == {expected}
    ticket_server.requests.clear()
    fetch_jira(ticket_server.url, ["OPS-1"], token="dc-pat", **FAST)  # DC personal access token
    assert {s.headers.get("Authorization") for s in ticket_server.requests} == {"Bearer dc-pat"}
    ticket_server.requests.clear()
    fetch_jira(ticket_server.url, ["OPS-1"], **FAST)  # anonymous stays anonymous
    assert {s.headers.get("Authorization") for s in ticket_server.requests} == {None}


def test_credentials_from_env_and_argument_checks(ticket_server):
    assert jira_credentials_from_env({}) == (None, None)
    assert jira_credentials_from_env({"PAMCORR_JIRA_USER": "", "PAMCORR_JIRA_TOKEN": "t"}) == (None, "t")
    with pytest.raises(ValueError):
        fetch_jira(ticket_server.url, ["OPS-1"], jql="project = OPS")
    with pytest.raises(ValueError):
        fetch_jira(ticket_server.url, ["OPS-1"], user="u")
    with pytest.raises(ValueError, match="credentials in the URL"):
        fetch_jira("http://u:pw@127.0.0.1:1", ["OPS-1"])
    assert ticket_server.requests == []


def test_jql_mode(ticket_server):
    add_ops(ticket_server, "datacenter", n=3)
    res = fetch_jira(ticket_server.url, jql="project = OPS", page_size=2, **FAST)
    assert [t["ticket_id"] for t in res.tickets] == ["OPS-1", "OPS-2", "OPS-3"]
    ticket_server.script(r"/search$", *[Reply(500, {})] * 3)
    res = fetch_jira(ticket_server.url, jql="project = OPS", **FAST)
    assert res.tickets == [] and res.failed == {"jql": "HTTP 500 after 2 retries"}


def vendor(*parts: str) -> Path:
    path = VENDOR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"vendor samples not available at {VENDOR} (shared/ is not checked out beside main/)")
    return path


def test_jira_ruby_server_search_sample(ticket_server):
    """Real Jira 5 issues (jira-ruby): +1300 times, statuses without a category."""
    sample = json.loads(vendor("jira-ruby", "issue.json").read_text())
    ticket_server.jira_flavour = "datacenter"
    keys = [i["key"] for i in sample["issues"]]
    # SAMPLEPROJECT is 13 characters: longer than the strict key pattern allows
    res = fetch_jira(ticket_server.url, keys, **FAST)
    assert res.invalid == keys and ticket_server.requests == []
    for issue in sample["issues"]:
        issue = dict(copy.deepcopy(issue), key=issue["key"].replace("SAMPLEPROJECT", "SAMPLE"))
        ticket_server.add_issues(dict(issue, _histories=[]))
    keys = [k.replace("SAMPLEPROJECT", "SAMPLE") for k in keys]
    res = fetch_jira(ticket_server.url, keys, **FAST)
    first = next(t for t in res.tickets if t["ticket_id"] == "SAMPLE-1")
    assert first["opened"] == utc(2011, 12, 13, 21, 26, 6)  # 2011-12-14T10:26:06+1300
    assert first["assignee"] == "admin" and first["status"] == "unknown:Open"
    res = fetch_jira(ticket_server.url, keys, status_map={"Open": "requested"}, **FAST)
    assert len(res.tickets) == 11 and {t["status"] for t in res.tickets} == {"requested"}
    # JQL mode: an issue whose key is outside the pattern is reported, never used in a URL
    ticket_server.add_issues(dict(copy.deepcopy(sample["issues"][0]), key="SAMPLE-../../x", _histories=[]))
    res = fetch_jira(ticket_server.url, jql="project = SAMPLE", **FAST)
    assert len(res.tickets) == 11 and res.invalid == ["SAMPLE-../../x"] and res.failed == {}


def test_jira_to_matrix_webhook_changelog_and_go_jira_statuses(ticket_server):
    """Real status items (ids + names) resolve through statuses seen on other issues."""
    hook = json.loads(vendor("jira-to-matrix", "webhooks", "issue", "updated", "status-changed.json").read_text())
    other = json.loads(vendor("jira-to-matrix", "jira-api-requests", "issue.json").read_text())
    history = {"id": hook["changelog"]["id"], "created": "2019-01-30T15:51:34.870+0300",
               "items": hook["changelog"]["items"]}
    ticket_server.add_issues(dict(hook["issue"], _histories=[history]), dict(other, _histories=[]))
    res = fetch_jira(ticket_server.url, ["INDEV-6", "BBCOM-1398"], flavour="cloud", **FAST)
    rows = [(h["ts"], h["status"]) for h in res.history if h["ticket_id"] == "INDEV-6"]
    # "To Do" (id 10257) is only known as the renamed "К выполнению" of BBCOM-1398: matched by id
    assert rows == [(utc(2018, 12, 5, 11, 32, 11, 571000), "requested"),
                    (utc(2019, 1, 30, 12, 51, 34, 870000), "in_progress")]
    assert {t["ticket_id"]: t["status"] for t in res.tickets} == {"INDEV-6": "in_progress",
                                                                  "BBCOM-1398": "requested"}
    assert next(t for t in res.tickets if t["ticket_id"] == "INDEV-6")["reporter"] == "5b912f5c8a96e82b9549361c"
    statuses = json.loads(vendor("go-jira", "all_statuses.json").read_text())
    ticket_server.jira_statuses = statuses
    ticket_server.add_issues(jira_issue("AR-86", jira_status("Specs Complete", "10700", None),
                                        created="2015-12-02T07:39:15.000+0100"))
    res = fetch_jira(ticket_server.url, ["AR-86"], flavour="cloud", **FAST)
    assert res.tickets[0]["status"] == "closed"  # category 'done' from the server's status list


def test_unexplained_400_isolates_the_offending_key(ticket_server):
    add_ops(ticket_server, "cloud", n=3)
    ticket_server.script(r"/search/jql$", Reply(400, {"errorMessages": ["Something about the query"]}),
                         Reply(200, {"issues": []}),  # OPS-1 alone: found nowhere
                         Reply(400, {"errorMessages": ["Field 'key' rejected"]}))  # OPS-2 alone
    res = fetch_jira(ticket_server.url, ["OPS-1", "OPS-2", "OPS-3"], flavour="cloud", **FAST)
    assert res.missing == ["OPS-1"] and res.failed == {"OPS-2": "HTTP 400: Field 'key' rejected"}
    assert [t["ticket_id"] for t in res.tickets] == ["OPS-3"]
    jqls = [s.query["jql"][0] for s in search_requests(ticket_server)]
    assert jqls[1:] == [f"key in (OPS-{i}) ORDER BY key ASC" for i in (1, 2, 3)]


def test_unreachable_server(ticket_server):
    closed = TicketServer()  # bound, never started, closed: nothing listens on that port
    url = closed.url
    closed.stop()
    with pytest.raises(TicketFetchError, match="could not read serverInfo") as raised:
        fetch_jira(url, ["OPS-1"], **FAST)
    # the cause, not a wrong hint: nothing listens there (issue 18)
    assert "connection refused" in str(raised.value) and "flavour" not in str(raised.value)
    res = fetch_jira(url, ["OPS-1"], flavour="cloud", **FAST)
    assert res.failed == {"OPS-1": "connection refused after 2 retries"}
