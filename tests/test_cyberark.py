"""cyberark connector: checkouts become approvals, PSM sessions and commands link to them."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from connectors.base import Options
from connectors.cyberark import CyberArkConnector, extra_details
from correlate.errors import InputError
from tests.helpers import ingest_one

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "cyberark"
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "vendor-samples" / "elastic-cyberarkpas"
SAMPLE_FILES = ["308_use_password.log", "test-300-psm-connect.log", "302_psm_disconnect.log"]


def _ingest(path, store=None, **opts):
    return ingest_one(CyberArkConnector(), path, store, **opts)


def _utc(*args):
    return datetime(*args, tzinfo=timezone.utc)


def _approvals(store):
    cols = ["approval_id", "line", "account", "target", "start_ts", "end_ts", "ticket",
            "requester", "status"]
    return [dict(zip(cols, r)) for r in store.query(f"SELECT {', '.join(cols)} FROM approvals ORDER BY line")]


def _activity(store):
    cols = ["line", "event_id", "ts", "account", "target", "action", "detail", "session_id", "actor",
            "approval_ref", "attrs"]
    return [dict(zip(cols, r)) for r in store.query(f"SELECT {', '.join(cols)} FROM activity ORDER BY line")]


@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_vendor_sample_counts_balance(name):
    path = SAMPLES / name
    if not path.is_file():
        pytest.skip(f"vendor sample {path} not present (../shared/vendor-samples beside the repo)")
    _, r = _ingest(path)
    assert r.read == len(path.read_text().splitlines())
    assert r.accepted == r.read and r.quarantined == 0


def test_vendor_samples_as_one_stream_link_checkouts_to_sessions(tmp_path):
    if not all((SAMPLES / n).is_file() for n in SAMPLE_FILES):
        pytest.skip(f"vendor samples not present under {SAMPLES}")
    lines = [ln for n in SAMPLE_FILES for ln in (SAMPLES / n).read_text().splitlines()]
    lines.sort(key=lambda ln: re.search(r'"IsoTimestamp":"([^"]+)"', ln).group(1))
    stream = tmp_path / "vault.log"
    stream.write_text("\n".join(lines) + "\n")
    store, r = _ingest(stream)
    assert r.accepted == r.read == 44
    ref = store.query("SELECT approval_ref FROM activity WHERE session_id = "
                      "'87012dcc-8290-11eb-949e-080027efd402'")
    approval = store.query("SELECT approval_id, end_ts FROM approvals WHERE start_ts = "
                           "'2021-03-11 17:38:12+00'")
    assert {x for (x,) in ref} == {approval[0][0]}
    assert approval[0][1] == _utc(2021, 3, 11, 17, 38, 26)           # the PSM Disconnect


def test_checkout_is_an_approval_for_the_target_account_until_the_disconnect():
    store, r = _ingest(FIXTURES / "checkout_session.log")
    (a,) = _approvals(store)
    assert (a["line"], a["account"], a["target"], a["requester"], a["ticket"]) == (
        1, "root", "db01.example.com", "jdoe", "CHG-4711")
    assert (a["start_ts"], a["end_ts"], a["status"]) == (
        _utc(2026, 3, 2, 9, 0), _utc(2026, 3, 2, 9, 20, 5), "approved")
    assert a["approval_id"].startswith("ca:")


def test_psm_connect_command_disconnect_are_linked_to_the_checkout():
    store, _ = _ingest(FIXTURES / "checkout_session.log")
    (a,) = _approvals(store)
    connect, command, disconnect, later = _activity(store)
    sid = "6f1c2a9e-1d3b-4c55-9a0e-1f2e3d4c5b6a"
    assert (connect["action"], connect["event_id"], connect["session_id"]) == (
        "session.start", f"psm:{sid}:connect", sid)
    assert (connect["account"], connect["target"], connect["actor"]) == ("root", "db01.example.com", "jdoe")
    assert (command["action"], command["detail"]) == ("psm.command", "systemctl restart postgresql; echo done")
    assert (disconnect["action"], disconnect["event_id"]) == ("session.end", f"psm:{sid}:disconnect")
    assert json.loads(disconnect["attrs"])["duration_s"] == 19 * 60 + 58
    assert {connect["approval_ref"], command["approval_ref"], disconnect["approval_ref"]} == {a["approval_id"]}
    assert later["action"] == "session.start" and later["approval_ref"] is None   # no checkout before it


def test_other_records_ignored_and_truncated_line_quarantined_with_its_number():
    store, r = _ingest(FIXTURES / "checkout_session.log")
    assert (r.read, r.accepted, r.ignored, r.quarantined) == (7, 5, 1, 1)
    assert store.query("SELECT event_type, count FROM ignored_counts") == [("7 Logon", 1)]
    assert store.query("SELECT line, reason FROM quarantine") == [(7, "invalid JSON")]


def test_plain_xml_records_multiline_and_single_line():
    store, r = _ingest(FIXTURES / "plain_xml.log", extra={"checkout_minutes": 30})
    (a,) = _approvals(store)
    assert (a["line"], a["account"], a["target"], a["requester"], a["ticket"]) == (
        1, "SYS", "ora01.example.com", "asmith", "OPS-88")
    # the linked session has no Disconnect in the file: the configured duration applies
    assert a["end_ts"] == _utc(2026, 3, 3, 8, 30)
    connect, sql = _activity(store)
    assert (connect["line"], sql["line"], sql["action"], sql["detail"]) == (
        34, 35, "psm.sql", "DROP USER scott CASCADE")
    assert connect["approval_ref"] == sql["approval_ref"] == a["approval_id"]
    assert store.query("SELECT line, reason FROM quarantine") == [
        (36, "XML with a DTD or entity declaration is not accepted")]


def test_ticket_regex_option_with_a_group():
    store, _ = _ingest(FIXTURES / "checkout_session.log", extra={"ticket_regex": r"\(Action: (\w+)\)"})
    assert _approvals(store)[0]["ticket"] == "Connect"


def test_bad_options_are_input_errors():
    for extra in ({"ticket_regex": "("}, {"checkout_minutes": "soon"}, {"checkout_minutes": 0}):
        with pytest.raises(InputError):
            CyberArkConnector().stage(FIXTURES / "checkout_session.log", "auto", Options(extra=extra))


def test_year_less_vault_timestamp_needs_zone_and_year(tmp_path):
    first = (FIXTURES / "checkout_session.log").read_text().splitlines()[0]
    doc = json.loads(first[first.index("{"):])
    del doc["syslog"]["audit_record"]["IsoTimestamp"], doc["raw"]
    doc["syslog"]["audit_record"]["Timestamp"] = "Mar 02 01:00:00"
    path = tmp_path / "legacy.log"
    path.write_text("Mar 02 01:00:00 VAULT01 " + json.dumps(doc) + "\n")
    store, r = _ingest(path)
    assert r.quarantined == 1
    assert store.query("SELECT reason FROM quarantine")[0][0].startswith("timestamp without time zone")
    store, r = _ingest(path, tz="America/Los_Angeles", year=2026)
    assert _approvals(store)[0]["start_ts"] == _utc(2026, 3, 2, 9, 0)


def test_extra_details_escapes():
    assert extra_details(r"Command=a\;b\=c;User=x;") == {"Command": "a;b=c", "User": "x"}


def test_checkout_reason_reaches_approvals_reason(tmp_path):
    """The justification is staged as approval_reason and stored in approvals.reason."""
    from correlate.store import Store
    from correlate.ingest import ingest
    from connectors.base import Options
    from connectors.cyberark import CyberArkConnector
    fixtures = sorted((Path(__file__).parent / "fixtures" / "cyberark").glob("*"))
    store = Store(":memory:")
    for f in fixtures:
        if f.is_file() and f.suffix in (".log", ".json", ".jsonl", ".xml"):
            ingest(store, CyberArkConnector(), None, [str(f)], Options())
    reasons = [r for (r,) in store.query("SELECT reason FROM approvals WHERE reason IS NOT NULL")]
    assert reasons, "no approval kept its Reason text"


@pytest.mark.parametrize("stamp, dst, expected", [
    ("Oct 25 02:30:00", None, "ambiguous local time: 2026-10-25T02:30:00 in Europe/Berlin"),
    ("Mar 29 02:30:00", None, "non-existent local time: 2026-03-29T02:30:00 in Europe/Berlin"),
    ("Oct 25 02:30:00", "earlier", _utc(2026, 10, 25, 0, 30)),
    ("Oct 25 02:30:00", "later", _utc(2026, 10, 25, 1, 30)),
    ("Oct 25 03:00:00", None, _utc(2026, 10, 25, 2, 0)),       # one second past the fold
    ("Oct 25 01:59:59", None, _utc(2026, 10, 24, 23, 59, 59)),  # one second before it
])
def test_local_time_in_a_dst_change_is_quarantined_unless_dst_option_says(
        tmp_path, stamp, dst, expected):
    first = (FIXTURES / "checkout_session.log").read_text().splitlines()[0]
    doc = json.loads(first[first.index("{"):])
    del doc["syslog"]["audit_record"]["IsoTimestamp"], doc["raw"]
    doc["syslog"]["audit_record"]["Timestamp"] = stamp
    path = tmp_path / "legacy.log"
    path.write_text(f"{stamp} VAULT01 " + json.dumps(doc) + "\n")
    store, r = _ingest(path, tz="Europe/Berlin", year=2026, extra={"dst": dst} if dst else {})
    if isinstance(expected, str):
        assert r.quarantined == 1
        assert store.query("SELECT reason FROM quarantine")[0][0].startswith(expected)
    else:
        assert r.quarantined == 0 and _approvals(store)[0]["start_ts"] == expected


def test_bad_dst_option_is_an_input_error():
    with pytest.raises(InputError, match="dst"):
        CyberArkConnector().stage(FIXTURES / "checkout_session.log", "auto",
                                  Options(extra={"dst": "summer"}))
