"""pim connector: Graph role activation requests and AuditLogs become approvals (fixtures synthetic)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from connectors.base import Options
from connectors.pim import PimConnector, parse_duration
from correlate.errors import InputError
from tests.helpers import ingest_one

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "pim"
GA = "62e90394-69f5-4237-9190-012177145e10"
ALICE = "071cc716-8147-4397-a5ba-b2105951cc0b"


def _ingest(path, store=None, **opts):
    return ingest_one(PimConnector(), path, store, **opts)


def _approvals(store):
    cols = ["approval_id", "line", "account", "target", "start_ts", "end_ts", "ticket", "requester",
            "approver", "status", "revoked_at"]
    rows = store.query(f"SELECT {', '.join(cols)} FROM approvals ORDER BY line")
    return {r[0]: dict(zip(cols, r)) for r in rows}


def _utc(*args):
    return datetime(*args, tzinfo=timezone.utc)


@pytest.fixture
def requests_page():
    return _ingest(FIXTURES / "role_assignment_schedule_requests.json")


def test_activation_with_ticket_info_and_duration_expiration(requests_page):
    store, _ = requests_page
    a = _approvals(store)["9f1b2c3d-0001-4a5b-8c9d-000000000001"]
    assert (a["line"], a["account"], a["target"]) == (4, "alice@contoso.example", f"{GA}/")
    assert (a["start_ts"], a["end_ts"]) == (_utc(2026, 3, 4, 9, 0), _utc(2026, 3, 4, 14, 30))
    assert (a["ticket"], a["requester"], a["status"]) == ("CHG0031337", ALICE, "approved")


def test_end_date_time_and_administrative_unit_scope(requests_page):
    a = _approvals(requests_page[0])["9f1b2c3d-0002-4a5b-8c9d-000000000002"]
    assert a["end_ts"] == _utc(2026, 3, 6)
    assert a["target"] == ("fe930be7-5e62-47db-91af-98c3a49a38b1"
                           "/administrativeUnits/5d1a0c9e-7c0f-4f0e-9b5e-2c1f3a4b5c6d")


def test_denied_kept_pending_ignored_permanent_runs_to_9999(requests_page):
    store, r = requests_page
    rows = _approvals(store)
    assert rows["9f1b2c3d-0003-4a5b-8c9d-000000000003"]["status"] == "denied"
    assert "9f1b2c3d-0004-4a5b-8c9d-000000000004" not in rows
    assert rows["9f1b2c3d-0007-4a5b-8c9d-000000000007"]["end_ts"].year == 9999
    # the deactivation is an approval event now (it revokes 0005), not ignored
    assert dict(store.query("SELECT event_type, count FROM ignored_counts")) == {
        "selfActivate:PendingApproval": 1}


def test_self_deactivation_revokes_the_activation_it_ends(requests_page):
    a = _approvals(requests_page[0])["9f1b2c3d-0005-4a5b-8c9d-000000000005"]
    assert (a["status"], a["revoked_at"]) == ("revoked", _utc(2026, 3, 4, 12, 45))
    assert a["end_ts"] == _utc(2026, 3, 5, 14, 0)                      # P1DT2H


def test_unsupported_duration_quarantined_with_its_line(requests_page):
    store, r = requests_page
    assert (r.read, r.accepted, r.quarantined, r.ignored, r.duplicates) == (8, 5, 1, 1, 1)
    ((line, reason),) = store.query("SELECT line, reason FROM quarantine")
    assert line == 268 and reason.startswith("unsupported expiration.duration P1M")


@pytest.mark.parametrize("text,expected", [
    ("PT5H30M", timedelta(hours=5, minutes=30)), ("P1DT2H", timedelta(days=1, hours=2)),
    ("PT90S", timedelta(seconds=90)), ("P2W", timedelta(weeks=2)), ("pt1.5s", timedelta(seconds=1.5)),
    ("P", None), ("PT", None), ("P1M", None), ("P1Y", None), ("5H", None), ("", None)])
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


def test_json_lines_bad_line_unknown_record_and_repeat():
    store, r = _ingest(FIXTURES / "requests.jsonl")
    assert (r.read, r.accepted, r.quarantined, r.duplicates) == (4, 1, 2, 1)
    assert store.query("SELECT line, reason FROM quarantine ORDER BY line") == [
        (2, "invalid JSON"),
        (3, "unrecognised record: neither a roleAssignmentScheduleRequest nor a directoryAudit")]
    (a,) = _approvals(store).values()
    assert (a["account"], a["ticket"], a["end_ts"]) == (ALICE, "OPS-7", _utc(2026, 3, 7, 10))


def test_audit_log_activation_read_by_key_with_approver_and_deactivation():
    store, r = _ingest(FIXTURES / "audit_logs.json")
    # the approval and deactivation records fold into the one accepted activation
    assert (r.read, r.accepted, r.quarantined, r.ignored, r.duplicates) == (5, 1, 1, 1, 2)
    a = _approvals(store)["a7c9e1f3-1111-4222-8333-944455566677"]
    assert (a["account"], a["target"], a["ticket"]) == ("alice@contoso.example", f"{GA}/", "SEC-101")
    assert (a["start_ts"], a["end_ts"]) == (_utc(2026, 3, 8, 8, 0), _utc(2026, 3, 8, 12, 0))
    assert (a["requester"], a["approver"]) == ("alice@contoso.example", "approver@contoso.example")
    assert (a["status"], a["revoked_at"]) == ("revoked", _utc(2026, 3, 8, 9, 15))
    ((line, reason),) = store.query("SELECT line, reason FROM quarantine")
    assert reason == "missing required field: ExpirationTime" and line > a["line"]
    assert ("Update user", 1) in store.query("SELECT event_type, count FROM ignored_counts")


def test_eligibility_requests_grant_nothing(tmp_path):
    page = json.loads((FIXTURES / "role_assignment_schedule_requests.json").read_text())
    page["@odata.context"] = page["@odata.context"].replace("roleAssignment", "roleEligibility")
    path = tmp_path / "eligible.json"
    path.write_text(json.dumps(page))
    store, r = _ingest(path)
    assert (r.read, r.ignored, r.accepted) == (8, 8, 0)


def test_broken_json_document_is_an_input_error_with_its_line(tmp_path):
    path = tmp_path / "page.json"
    path.write_text('{\n  "value": [\n    {"id": "1",}\n  ]\n}\n')
    with pytest.raises(InputError, match=r"page.json:3: invalid JSON document"):
        PimConnector().stage(path, "auto", Options())


def test_json_lines_with_a_broken_first_line_quarantine_it(tmp_path):
    good = (FIXTURES / "requests.jsonl").read_text().splitlines()[0]
    path = tmp_path / "requests.jsonl"
    path.write_text("{oops\n" + good + "\n")
    store, r = _ingest(path)
    assert (r.read, r.accepted, r.quarantined) == (2, 1, 1)
    assert store.query("SELECT line, reason FROM quarantine") == [(1, "invalid JSON")]


def test_empty_file_and_scalar_document(tmp_path):
    (tmp_path / "empty.json").write_text("\n")
    assert _ingest(tmp_path / "empty.json")[1].read == 0
    (tmp_path / "scalar.json").write_text("42\n")
    store, r = _ingest(tmp_path / "scalar.json")
    assert store.query("SELECT line, reason FROM quarantine") == [(1, "JSON value is not an object")]


@pytest.mark.parametrize("start, dst, expected", [
    ("2026-10-25T02:30:00", None, "ambiguous local time: 2026-10-25T02:30:00 in Europe/Berlin"),
    ("2026-03-29T02:30:00", None, "non-existent local time: 2026-03-29T02:30:00 in Europe/Berlin"),
    ("2026-10-25T02:30:00", "later", _utc(2026, 10, 25, 1, 30)),
    ("2026-10-25T02:30:00", "earlier", _utc(2026, 10, 25, 0, 30)),
    ("2026-10-25T02:30:00Z", None, _utc(2026, 10, 25, 2, 30)),     # a zone: never ambiguous
])
def test_zone_less_start_in_a_dst_change_is_quarantined_unless_dst_option_says(
        tmp_path, start, dst, expected):
    rec = json.loads((FIXTURES / "requests.jsonl").read_text().splitlines()[0])
    rec["scheduleInfo"]["startDateTime"] = start
    path = tmp_path / "requests.jsonl"
    path.write_text(json.dumps(rec) + "\n")
    store, r = _ingest(path, tz="Europe/Berlin", extra={"dst": dst} if dst else {})
    if isinstance(expected, str):
        assert r.quarantined == 1
        assert store.query("SELECT reason FROM quarantine")[0][0].startswith(expected)
    else:
        (a,) = _approvals(store).values()
        assert a["start_ts"] == expected
