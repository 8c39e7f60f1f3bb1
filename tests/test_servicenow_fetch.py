"""Tests for connectors.servicenow_fetch and connectors.http, over real HTTP.

The fetcher talks to ``tests/ticket_server.py`` on 127.0.0.1 through a real
``requests`` session; nothing is mocked.  The retry helper's pure parts
(``Retry-After`` parsing, wait caps, URL checks) are unit-tested at the end.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import pytest
import requests

from connectors.http import RetryPolicy, check_base_url, make_auth, parse_retry_after, safe_url
from connectors.servicenow_fetch import ALLOWLIST, fetch_servicenow, servicenow_credentials_from_env
from connectors.ticket_refs import TicketFetchError
from tests.ticket_server import Reply, TicketServer
from tests.ticket_server import ticket_server as _server_fixture

ticket_server = _server_fixture  # the fixture every test here uses

VENDOR = Path(__file__).resolve().parents[2] / "shared" / "vendor-samples"
FAST = {"backoff": 0.01, "max_wait": 0.05, "max_retries": 2, "timeout": 5}
TABLE = "/api/now/table/change_request"
APPROVERS = "/api/now/table/sysapproval_approver"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def sys_id(n: int) -> str:
    return f"{n:032x}"


def change(n: int, state: str = "-1", **kw: str) -> dict:
    rec = {"sys_id": sys_id(n), "number": f"CHG{n:07d}", "state": state, "approval": "approved",
           "short_description": f"change {n}", "opened_at": "2024-03-01 08:00:00",
           "closed_at": "", "start_date": "2024-03-02 22:00:00", "end_date": "2024-03-03 02:00:00",
           "work_start": "2024-03-02 22:05:00", "work_end": "", "sys_updated_on": "2024-03-02 22:05:00",
           "assigned_to.user_name": "alice", "requested_by.user_name": "bob",
           "opened_by.user_name": "carol", "cmdb_ci.name": "db01.example.com"}
    rec.update(kw)
    return rec


def approval(n: int, change_n: int, approver: str, state: str, ts: str) -> dict:
    return {"sys_id": sys_id(10_000 + n), "sysapproval": sys_id(change_n), "approver.user_name": approver,
            "state": state, "sys_updated_on": ts}


def table_requests(server: TicketServer, path: str = TABLE) -> list:
    return [s for s in server.requests if s.path == path]


def test_paging_until_x_total_count(ticket_server):
    ticket_server.snow_changes = [change(n) for n in range(1, 8)]
    refs = [f"CHG{n:07d}" for n in range(1, 8)]
    res = fetch_servicenow(ticket_server.url, refs, page_size=3, **FAST)
    assert sorted(t["ticket_id"] for t in res.tickets) == refs
    pages = table_requests(ticket_server)
    assert [p.query["sysparm_offset"] for p in pages] == [["0"], ["3"], ["6"]]
    q = pages[0].query
    assert q["sysparm_query"] == ["numberIN" + ",".join(refs) + "^ORDERBYsys_id"]
    assert q["sysparm_display_value"] == ["false"] and q["sysparm_limit"] == ["3"]
    assert q["sysparm_fields"] == [",".join(ALLOWLIST)]
    assert len([n for n, _ in res.raw if TABLE in n]) == 3
    assert (res.missing, res.failed, res.invalid) == ([], {}, [])


def test_fields_times_are_utc_and_people_are_user_names(ticket_server):
    ticket_server.snow_changes = [change(1, closed_at="2024-03-03 03:00:00", work_end="2024-03-03 01:30:00")]
    res = fetch_servicenow(ticket_server.url, ["CHG0000001"], **FAST)
    t = res.tickets[0]
    assert t == {
        "ticket_id": "CHG0000001", "status": "in_progress",
        "opened": utc(2024, 3, 1, 8), "closed": utc(2024, 3, 3, 3),
        "planned_start": utc(2024, 3, 2, 22), "planned_end": utc(2024, 3, 3, 2),
        "work_start": utc(2024, 3, 2, 22, 5), "work_end": utc(2024, 3, 3, 1, 30),
        "assignee": "alice", "reporter": "bob", "title": "change 1", "components": ["db01.example.com"],
        "system": "servicenow",
        "url": f"{ticket_server.url}/nav_to.do?uri=change_request.do%3Fsys_id%3D{sys_id(1)}",
        "aliases": [],
        "history_note": "state history unavailable (no state changes in sys_audit); judged by the "
                        "current state"}
    assert all(v.tzinfo is timezone.utc for k, v in t.items() if isinstance(v, datetime))
    assert res.history == []


@pytest.mark.parametrize("state,approval_value,expected", [
    ("-5", "not requested", "requested"), ("-4", "requested", "requested"), ("-3", "requested", "requested"),
    ("-2", "approved", "approved"), ("-1", "approved", "in_progress"), ("0", "approved", "resolved"),
    ("3", "approved", "closed"), ("4", "approved", "cancelled"), ("-3", "rejected", "rejected"),
    ("4", "rejected", "rejected"), ("7", "approved", "unknown:7")])
def test_state_mapping(ticket_server, state, approval_value, expected):
    ticket_server.snow_changes = [change(1, state=state, approval=approval_value)]
    res = fetch_servicenow(ticket_server.url, ["CHG0000001"], **FAST)
    assert res.tickets[0]["status"] == expected


def test_approvals_are_fetched_for_the_changes(ticket_server):
    ticket_server.snow_changes = [change(1), change(2), change(3)]
    ticket_server.snow_approvals = [
        approval(1, 1, "cab.chair", "approved", "2024-03-01 09:00:00"),
        approval(2, 1, "sec.lead", "rejected", "2024-03-01 09:30:00"),
        approval(3, 2, "cab.chair", "requested", "2024-03-01 10:00:00"),
        approval(4, 9, "someone", "approved", "2024-03-01 10:00:00")]  # another change: not asked for
    res = fetch_servicenow(ticket_server.url, ["CHG0000001", sys_id(2), "CHG0000003"], **FAST)
    assert sorted(t["ticket_id"] for t in res.tickets) == ["CHG0000001", "CHG0000002", "CHG0000003"]
    assert sorted((a["ticket_id"], a["approver"], a["state"], a["ts"]) for a in res.approvals) == [
        ("CHG0000001", "cab.chair", "approved", utc(2024, 3, 1, 9)),
        ("CHG0000001", "sec.lead", "rejected", utc(2024, 3, 1, 9, 30)),
        ("CHG0000002", "cab.chair", "requested", utc(2024, 3, 1, 10))]
    [req] = table_requests(ticket_server, APPROVERS)
    assert req.query["sysparm_query"] == [
        "sysapprovalIN" + ",".join(sorted(sys_id(n) for n in (1, 2, 3))) + "^ORDERBYsys_id"]
    change_query = table_requests(ticket_server)[0].query["sysparm_query"][0]
    assert change_query == f"numberINCHG0000001,CHG0000003^ORsys_idIN{sys_id(2)}^ORDERBYsys_id"


def test_same_change_by_number_and_sys_id_is_one_ticket(ticket_server):
    ticket_server.snow_changes = [change(5)]
    ticket_server.snow_approvals = [approval(1, 5, "cab.chair", "approved", "2024-03-01 09:00:00")]
    res = fetch_servicenow(ticket_server.url, ["CHG0000005", sys_id(5)], **FAST)
    assert len(res.tickets) == 1 and len(res.approvals) == 1 and res.missing == []


def test_not_found_is_missing(ticket_server):
    ticket_server.snow_changes = [change(1)]
    res = fetch_servicenow(ticket_server.url, ["CHG0000001", "CHG0000404"], **FAST)
    assert [t["ticket_id"] for t in res.tickets] == ["CHG0000001"] and res.missing == ["CHG0000404"]
    res = fetch_servicenow(ticket_server.url, ["CHG0000404", sys_id(404)], **FAST)
    assert res.tickets == [] and res.missing == ["CHG0000404", sys_id(404)]
    assert table_requests(ticket_server)[-1] and res.raw[-1][0].endswith("-> 404")
    assert json.loads(res.raw[-1][1])["error"]["message"] == "No Record found"


def test_invalid_refs_never_reach_the_server(ticket_server):
    ticket_server.snow_changes = [change(1)]
    bad = ["CHG0000001^ORnumberISNOTEMPTY", "CHG123", "chg0000001", "CHG0000001\n", sys_id(0xABC).upper(),
           "INC0000001", "CHG00000000001", " CHG0000001", "CHG0000001,CHG0000002"]
    res = fetch_servicenow(ticket_server.url, bad + ["CHG0000001"], **FAST)
    assert res.invalid == bad and [t["ticket_id"] for t in res.tickets] == ["CHG0000001"]
    assert "ISNOTEMPTY" not in ticket_server.urls() and "CHG123," not in ticket_server.urls()
    assert "CHG0000002" not in ticket_server.urls()
    ticket_server.requests.clear()
    res = fetch_servicenow(ticket_server.url, bad, **FAST)
    assert res.invalid == bad and ticket_server.requests == []


def test_retry_after_http_date_then_500s_then_success(ticket_server):
    ticket_server.snow_changes = [change(1)]
    soon = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    ticket_server.script(TABLE + "$", Reply(429, {"error": {"message": "rate"}}, {"Retry-After": soon}),
                         Reply(500, {"error": {"message": "x"}}), Reply(503, "oops"))
    res = fetch_servicenow(ticket_server.url, ["CHG0000001"], backoff=0.01, max_wait=0.3, max_retries=3)
    pages = table_requests(ticket_server)
    assert len(pages) == 4 and len(res.tickets) == 1
    gaps = [b.at - a.at for a, b in zip(pages, pages[1:], strict=False)]
    assert 0.28 <= gaps[0] < 1.0  # the 30 s HTTP-date was honoured, capped at max_wait=0.3
    assert gaps[1] < 0.25 and gaps[2] < 0.25  # exponential from backoff=0.01 otherwise


def test_500_forever_and_approval_failures_are_failed(ticket_server):
    ticket_server.snow_changes = [change(1), change(2)]
    ticket_server.script(TABLE + "$", *[Reply(500, {"error": {"message": "Internal"}})] * 3)
    res = fetch_servicenow(ticket_server.url, ["CHG0000001", "CHG0000002"], batch_size=1, **FAST)
    assert res.failed == {"CHG0000001": "HTTP 500 after 2 retries: Internal"}
    assert [t["ticket_id"] for t in res.tickets] == ["CHG0000002"]
    ticket_server.script(APPROVERS + "$", *[Reply(502, "")] * 3)
    res = fetch_servicenow(ticket_server.url, ["CHG0000001"], **FAST)
    assert res.tickets == [] and res.failed == {"CHG0000001": "approvals unavailable: HTTP 502 after 2 retries"}


def test_malformed_body_403_and_timeout(ticket_server):
    ticket_server.snow_changes = [change(n) for n in range(1, 5)]
    ticket_server.script(TABLE + "$", Reply(200, b'{"result": [{"sys_id": '), Reply(200, {"result": "nope"}),
                         Reply(403, {"error": {"message": "Insufficient rights"}}),
                         Reply(delay=1.0), Reply(delay=1.0))
    started = time.monotonic()
    res = fetch_servicenow(ticket_server.url, [f"CHG000000{n}" for n in range(1, 5)], batch_size=1,
                           backoff=0.01, max_wait=0.05, max_retries=1, timeout=0.3)
    assert res.failed == {"CHG0000001": "malformed JSON body", "CHG0000002": "malformed body: no 'result' list",
                          "CHG0000003": "HTTP 403: Insufficient rights", "CHG0000004": "timeout after 1 retries"}
    assert time.monotonic() - started < 4


def test_401_raises_without_leaking_the_token(ticket_server, caplog):
    ticket_server.snow_changes = [change(1)]
    ticket_server.auth = "Basic " + base64.b64encode(b"svc.pamcorr:good").decode()
    caplog.set_level(logging.DEBUG)
    with pytest.raises(TicketFetchError, match="rejected the credentials") as info:
        fetch_servicenow(ticket_server.url, ["CHG0000001"], user="svc.pamcorr", token="T0PS3CRET", **FAST)
    assert "T0PS3CRET" not in str(info.value) and "T0PS3CRET" not in caplog.text
    res = fetch_servicenow(ticket_server.url, ["CHG0000001"], user="svc.pamcorr", token="good", **FAST)
    assert len(res.tickets) == 1 and all(b"good" not in body for _, body in res.raw)


def test_netrc_does_not_override_env_credentials(ticket_server, tmp_path, monkeypatch):
    ticket_server.snow_changes = [change(1)]
    (tmp_path / ".netrc").write_text("machine 127.0.0.1 login netrc-user password netrc-pass\n")
    (tmp_path / ".netrc").chmod(0o600)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("NETRC", raising=False)
    requests.get(f"{ticket_server.url}{TABLE}", timeout=5)  # control: plain requests sends netrc creds
    assert ticket_server.requests[-1].headers["Authorization"].startswith("Basic bmV0cmMtdXNlcjpu")
    monkeypatch.setenv("PAMCORR_SNOW_USER", "svc.pamcorr")
    monkeypatch.setenv("PAMCORR_SNOW_TOKEN", "env-secret")
    ticket_server.requests.clear()
    user, token = servicenow_credentials_from_env()
    fetch_servicenow(ticket_server.url, ["CHG0000001"], user=user, token=token, **FAST)
    expected = "Basic " + base64.b64encode(b"svc.pamcorr:env-secret").decode()
    assert {s.headers.get("Authorization") for s in ticket_server.requests} == {expected}
    ticket_server.requests.clear()
    fetch_servicenow(ticket_server.url, ["CHG0000001"], token="oauth-bearer", **FAST)
    assert {s.headers.get("Authorization") for s in ticket_server.requests} == {"Bearer oauth-bearer"}
    ticket_server.requests.clear()
    fetch_servicenow(ticket_server.url, ["CHG0000001"], **FAST)
    assert {s.headers.get("Authorization") for s in ticket_server.requests} == {None}


def test_field_allow_list(ticket_server):
    with pytest.raises(ValueError, match="allow-list"):
        fetch_servicenow(ticket_server.url, ["CHG0000001"], fields=["number", "caller_id.password"])
    ticket_server.snow_changes = [change(1)]
    res = fetch_servicenow(ticket_server.url, ["CHG0000001"], fields=["opened_at"], **FAST)
    assert table_requests(ticket_server)[0].query["sysparm_fields"] == ["sys_id,number,state,opened_at"]
    assert res.tickets[0]["opened"] == utc(2024, 3, 1, 8) and res.tickets[0]["assignee"] is None
    assert servicenow_credentials_from_env({"PAMCORR_SNOW_TOKEN": "t"}) == (None, "t")


def test_elastic_servicenow_change_request_sample(ticket_server):
    """A real demo-instance change_request (fetched upstream with display_value=all)."""
    path = VENDOR / "elastic-servicenow" / "test-event.excerpt-lines2-3.log"
    if not path.exists():
        pytest.skip(f"vendor samples not available at {VENDOR} (shared/ is not checked out beside main/)")
    record = json.loads(path.read_text().splitlines()[0])
    # what display_value=false returns: the raw value of each field
    ticket_server.snow_changes = [{k: v["value"] for k, v in record.items() if isinstance(v, dict)}]
    res = fetch_servicenow(ticket_server.url, ["CHG0000024"], **FAST)
    t = res.tickets[0]
    assert (t["ticket_id"], t["status"], t["title"]) == ("CHG0000024", "closed",
                                                         "Clear BGP sessions on a Cisco router")
    assert (t["work_start"], t["work_end"]) == (utc(2015, 7, 6, 18, 56, 4), utc(2015, 7, 6, 18, 56, 10))
    assert t["closed"] == utc(2015, 7, 6, 18, 56, 23)
    assert t["planned_start"] is None and t["planned_end"] is None  # empty in the sample
    assert t["opened"] is None  # "10/24/2023 7:07:31" in the sample: not the Table API format, not guessed


# --- connectors.http ------------------------------------------------------

def test_parse_retry_after_forms():
    now = utc(2024, 3, 1, 12, 0, 0)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after("Fri, 01 Mar 2024 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Fri, 01 Mar 2024 11:00:00 GMT", now) == 0.0
    for junk in (None, "", "soon", "-5", "1.5e9", "٣"):
        assert parse_retry_after(junk, now) is None


def test_retry_policy_waits_are_capped():
    policy = RetryPolicy(backoff=0.5, max_wait=3, max_retries=4)
    assert [policy.wait(a) for a in range(4)] == [0.5, 1.0, 2.0, 3.0]
    assert policy.wait(0, "86400") == 3 and policy.wait(0, "1") == 1.0
    with pytest.raises(ValueError):
        RetryPolicy(max_retries=-1)


def test_url_and_auth_helpers():
    assert check_base_url("https://x.service-now.com/") == "https://x.service-now.com"
    for bad in ("ftp://x", "https://u:p@x.example", "x.example"):
        with pytest.raises(ValueError) as info:
            check_base_url(bad)
        assert "p@" not in str(info.value)
    assert safe_url("https://u:p@x.example:8443/a?token=1") == "https://x.example:8443/a"
    assert "tok" not in repr(make_auth(None, "tok")) and make_auth(None, None) is None
    with pytest.raises(ValueError):
        make_auth("user", None)


def test_records_not_asked_for_or_without_sys_id(ticket_server):
    stray = change(99)
    broken = dict(change(2), sys_id="")
    ticket_server.script(TABLE + "$", Reply(200, {"result": [change(1), stray, broken]}, {"X-Total-Count": "3"}))
    ticket_server.snow_changes = [change(1)]
    res = fetch_servicenow(ticket_server.url, ["CHG0000001", "CHG0000002"], **FAST)
    assert [t["ticket_id"] for t in res.tickets] == ["CHG0000001"]  # the stray CHG0000099 is dropped
    assert res.failed == {"CHG0000002": "malformed record: no sys_id"} and res.missing == []


def test_unreachable_server_fails_each_ref():
    closed = TicketServer()  # bound, never started, closed: nothing listens on that port
    url = closed.url
    closed.stop()
    res = fetch_servicenow(url, ["CHG0000001"], **FAST)
    assert res.failed == {"CHG0000001": "connection refused after 2 retries"}


def _audit(n: int, change_n: int, old: str, new: str, at: str, checkpoint: int) -> dict:
    return {"documentkey": sys_id(change_n), "fieldname": "state", "tablename": "change_request",
            "oldvalue": old, "newvalue": new, "sys_created_on": at,
            "record_checkpoint": str(checkpoint), "sys_id": sys_id(50_000 + n)}


def test_state_history_from_sys_audit(ticket_server):
    ticket_server.snow_changes = [change(1, state="-1")]
    ticket_server.snow_audit = [   # same second for two moves: record_checkpoint orders them
        _audit(1, 1, "-3", "-2", "2024-03-02 21:00:00", 7),
        _audit(2, 1, "-5", "-3", "2024-03-02 21:00:00", 4),
        _audit(3, 1, "-2", "-1", "2024-03-02 22:05:00", 9)]
    res = fetch_servicenow(ticket_server.url, ["CHG0000001"], **FAST)
    assert [(h["ticket_id"], h["ts"], h["status"]) for h in res.history] == [
        ("CHG0000001", utc(2024, 3, 1, 8), "requested"),          # New from opened_at
        ("CHG0000001", utc(2024, 3, 2, 21), "requested"),         # Authorize
        ("CHG0000001", utc(2024, 3, 2, 21), "approved"),          # Scheduled
        ("CHG0000001", utc(2024, 3, 2, 22, 5), "in_progress")]    # Implement
    assert "history_note" not in res.tickets[0]
    [req] = table_requests(ticket_server, "/api/now/table/sys_audit")
    assert req.query["sysparm_query"] == [
        f"tablename=change_request^fieldname=state^documentkeyIN{sys_id(1)}^ORDERBYsys_created_on"]


def test_an_audit_insert_row_starts_the_history(ticket_server):
    ticket_server.snow_changes = [change(1, state="7")]
    ticket_server.snow_audit = [_audit(1, 1, "", "-5", "2024-03-01 08:00:00", 1),
                                _audit(2, 1, "-5", "7", "2024-03-01 09:00:00", 2)]
    res = fetch_servicenow(ticket_server.url, ["CHG0000001"], **FAST)
    assert [h["status"] for h in res.history] == ["requested", "unknown:7"]
