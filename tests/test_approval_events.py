"""Vendor approval state across files (issue #3): the same events split across files, ingest calls
or file orders give the approvals, links and verdicts of one file holding them all."""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from connectors.base import Options
from connectors.cyberark import CyberArkConnector
from connectors.generic import GenericConnector
from connectors.pim import PimConnector
from connectors.teleport import TeleportConnector
from correlate.engine import correlate
from correlate.ingest import ingest
from correlate.store import Store

FIX = Path(__file__).resolve().parent / "fixtures"
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "vendor-samples" / "elastic-cyberarkpas"
SAMPLE_FILES = ["308_use_password.log", "test-300-psm-connect.log", "302_psm_disconnect.log"]

TICKETS = """ticket_id,status,opened
OPS-123,approved,2026-03-01T00:00:00Z
CHG-77,approved,2026-03-01T00:00:00Z
CHG-4711,in_progress,2026-03-01T00:00:00Z
"""

# Teleport sessions beyond tests/fixtures/teleport/session.jsonl: after req-1's revocation (cited),
# inside req-2's window (cited), and uncited on req-2's resources before and inside its window.
EXTRA_SESSIONS = [
    {"event": "session.start", "uid": "x1", "sid": "s9", "time": "2026-03-02T10:45:00Z",
     "user": "alice", "login": "root", "server_hostname": "web-01", "access_requests": ["req-1"]},
    {"event": "session.start", "uid": "x2", "sid": "s8", "time": "2026-03-02T12:30:00Z",
     "user": "carol", "login": "carol", "server_hostname": "web-02", "access_requests": ["req-2"]},
    {"event": "exec", "uid": "x3", "time": "2026-03-02T11:30:00Z", "user": "carol",
     "login": "carol", "server_hostname": "web-01", "command": "uptime"},
    {"event": "exec", "uid": "x4", "time": "2026-03-02T13:00:00Z", "user": "carol",
     "login": "carol", "server_hostname": "web-01", "command": "uptime"},
]


def _utc(*args):
    return datetime(*args, tzinfo=timezone.utc)


def _feed(store, connector, paths, kind=None, **opts):
    results = ingest(store, connector, kind, [str(p) for p in paths], Options(**opts))
    for r in results:
        assert r.balanced, r
    return results


def _approvals(store):
    return store.query("SELECT * EXCLUDE (ingest_id, line) FROM approvals "
                       "ORDER BY source, approval_id")


def _refs(store):
    return store.query("SELECT source, event_id, approval_ref FROM activity ORDER BY 1, 2")


def _verdicts(store, folder):
    (folder / "tickets.csv").write_text(TICKETS)
    _feed(store, GenericConnector(), [folder / "tickets.csv"], "tickets")
    run = correlate(store)
    return store.query(
        "SELECT a.source, a.event_id, f.verdict, f.status, f.approval_id, f.approval_source, "
        "f.ticket_id, f.gap_seconds, f.reason, f.match_via FROM findings f JOIN activity a "
        "USING (act_id) WHERE f.run_id = ? ORDER BY 1, 2", [run])


def _write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


# --- Teleport --------------------------------------------------------------------------------

@pytest.fixture
def teleport(tmp_path):
    """The request fixture whole, split in two daily files (every request cut between them),
    and a session file citing the requests."""
    lines = (FIX / "teleport" / "requests.jsonl").read_text().splitlines()
    whole = _write(tmp_path / "whole" / "audit.log", lines)
    day1 = _write(tmp_path / "days" / "2026-03-01.log", lines[0::2])   # creates, ...
    day2 = _write(tmp_path / "days" / "2026-03-02.log", lines[1::2])   # ... their reviews, deletes
    sessions = _write(tmp_path / "sessions.log",
                      (FIX / "teleport" / "session.jsonl").read_text().splitlines()
                      + [json.dumps(e) for e in EXTRA_SESSIONS])
    return {"whole": whole, "day1": day1, "day2": day2, "dir": tmp_path / "days",
            "sessions": sessions, "tmp": tmp_path}


def _teleport_store(t, *feeds):
    store = Store(":memory:")
    for paths in feeds:
        _feed(store, TeleportConnector(), paths)
    _feed(store, TeleportConnector(), [t["sessions"]])
    return store


def test_teleport_requests_split_across_two_files_give_the_single_file_approvals_and_verdicts(
        teleport):
    one = _teleport_store(teleport, [teleport["whole"]])
    split = _teleport_store(teleport, [teleport["dir"]])        # one ingest, two files
    assert len(_approvals(one)) == 3
    assert _approvals(split) == _approvals(one)
    assert not split.query("SELECT 1 FROM approvals WHERE approval_id = 'req-4'")
    assert split.query("SELECT approval_id FROM approvals_pending") == [("req-4",)]
    verdicts = _verdicts(one, teleport["tmp"])
    assert {v[2] for v in verdicts} >= {"approved", "out_of_window", "unapproved"}
    assert _verdicts(split, teleport["tmp"]) == verdicts


@pytest.mark.parametrize("order", ["day1 first", "day2 first"])
def test_teleport_split_across_two_ingest_calls_in_either_order_gives_the_same(teleport, order):
    days = [teleport["day1"], teleport["day2"]]
    if order == "day2 first":
        days.reverse()
    one = _teleport_store(teleport, [teleport["whole"]])
    split = _teleport_store(teleport, [days[0]], [days[1]])
    assert _approvals(split) == _approvals(one)
    assert split.query("SELECT count(*) FROM approvals_pending") == [(1,)]      # req-4
    assert _verdicts(split, teleport["tmp"]) == _verdicts(one, teleport["tmp"])


def test_teleport_update_in_the_next_file_counts_as_accepted(teleport):
    store = Store(":memory:")
    (r1,) = _feed(store, TeleportConnector(), [teleport["day1"]])
    # day1: req-1 create + update (approved: one accepted, one duplicate), the creates of
    # req-2..4 (pending: accepted)
    assert (r1.read, r1.accepted, r1.duplicates, r1.ignored, r1.quarantined) == (5, 4, 1, 0, 0)
    (r2,) = _feed(store, TeleportConnector(), [teleport["day2"]])
    # day2: req-1 review + delete change req-1 (1), req-2 and req-3 decided (2), search ignored
    assert (r2.read, r2.accepted, r2.duplicates, r2.ignored, r2.quarantined) == (5, 3, 1, 1, 0)


def test_reingesting_split_files_adds_nothing(teleport):
    store = _teleport_store(teleport, [teleport["dir"]])
    before = (_approvals(store), store.query("SELECT count(*) FROM approval_events"),
              store.query("SELECT * FROM approvals_pending"), _refs(store))
    assert all(r.skipped for r in _feed(store, TeleportConnector(), [teleport["dir"]]))
    # the same events under another name and content hash: read again, all duplicates
    copy = _write(teleport["tmp"] / "again" / "copy.log",
                  teleport["day2"].read_text().splitlines() + teleport["day1"].read_text()
                  .splitlines())
    (r,) = _feed(store, TeleportConnector(), [copy])
    assert (r.read, r.accepted, r.duplicates, r.ignored) == (10, 0, 9, 1)
    after = (_approvals(store), store.query("SELECT count(*) FROM approval_events"),
             store.query("SELECT * FROM approvals_pending"), _refs(store))
    assert after == before


def test_orphan_update_is_pending_with_its_reason_until_its_create_arrives(teleport):
    lines = teleport["whole"].read_text().splitlines()
    update = _write(teleport["tmp"] / "d2.log", [lines[5]])        # req-2 approved by dave
    create = _write(teleport["tmp"] / "d1.log", [lines[4]])        # req-2 created by carol
    store = Store(":memory:")
    (r,) = _feed(store, TeleportConnector(), [update])
    assert (r.read, r.accepted, r.quarantined) == (1, 1, 0)
    assert not store.query("SELECT 1 FROM approvals")
    assert store.query("SELECT approval_id, status, reason, events FROM approvals_pending") == [
        ("req-2", "approved", "access request req-2 has no access_request.create "
                              "(requester unknown)", 1)]
    (r,) = _feed(store, TeleportConnector(), [create])
    assert (r.read, r.accepted) == (1, 1)
    assert not store.query("SELECT 1 FROM approvals_pending")
    whole = Store(":memory:")
    _feed(whole, TeleportConnector(), [teleport["whole"]])
    assert _approvals(store) == [a for a in _approvals(whole) if a[1] == "req-2"]


def test_approval_stored_before_events_were_kept_is_not_removed_by_an_orphan_update(teleport):
    """A database from before schema 009 holds req-2 without its events: the day-2 update alone
    cannot complete it, so it stays pending beside the stored approval instead of deleting it."""
    store = Store(":memory:")
    store.con.execute("INSERT INTO approvals (source, approval_id, account, target, start_ts, "
                      "end_ts, status) VALUES ('teleport', 'req-2', 'carol', 'web-01', "
                      "'2026-03-02 12:00+00', '2026-03-03 09:00+00', 'approved')")
    update = _write(teleport["tmp"] / "d2.log", [teleport["whole"].read_text().splitlines()[5]])
    _feed(store, TeleportConnector(), [update])
    assert store.query("SELECT approval_id FROM approvals") == [("req-2",)]
    assert store.query("SELECT approval_id FROM approvals_pending") == [("req-2",)]


def test_cli_ingest_reports_pending_approvals(teleport, tmp_path):
    from click.testing import CliRunner

    from correlate.cli import main

    update = _write(tmp_path / "d2.log", [teleport["whole"].read_text().splitlines()[5]])
    res = CliRunner().invoke(main, ["ingest", "teleport", "--db", str(tmp_path / "p.duckdb"),
                                    str(update)])
    assert res.exit_code == 0, res.output
    assert "read 1 = accepted 1 + ignored 0 + quarantined 0 + duplicates 0" in res.stdout
    assert "teleport: 1 approval pending" in res.stderr
    assert "req-2: access request req-2 has no access_request.create" in res.stderr


# --- CyberArk --------------------------------------------------------------------------------

def _cyberark_store(*feeds, **opts):
    store = Store(":memory:")
    for paths in feeds:
        _feed(store, CyberArkConnector(), paths, **opts)
    return store


@pytest.mark.parametrize("order", ["checkout first", "sessions first"])
def test_cyberark_checkout_and_its_session_in_separate_files_link_as_in_one(tmp_path, order):
    lines = (FIX / "cyberark" / "checkout_session.log").read_text().splitlines()
    checkout = _write(tmp_path / "a.log", lines[:1])
    sessions = _write(tmp_path / "b.log", lines[1:])
    one = _cyberark_store([FIX / "cyberark" / "checkout_session.log"])
    feeds = [[checkout], [sessions]] if order == "checkout first" else [[sessions], [checkout]]
    split = _cyberark_store(*feeds)
    (approval,) = _approvals(split)
    assert _approvals(split) == _approvals(one)
    assert approval[5] == _utc(2026, 3, 2, 9, 20, 5)       # ends at the PSM Disconnect
    assert _refs(split) == _refs(one)
    assert sum(1 for (_, _, ref) in _refs(split) if ref == approval[1]) == 3
    assert _verdicts(split, tmp_path) == _verdicts(one, tmp_path)


def test_cyberark_session_disconnect_in_a_third_file_ends_the_checkout(tmp_path):
    lines = (FIX / "cyberark" / "checkout_session.log").read_text().splitlines()
    store = _cyberark_store([_write(tmp_path / "1.log", lines[:3])])     # checkout, connect, cmd
    (approval,) = _approvals(store)
    assert approval[5] == _utc(2026, 3, 2, 10, 0)          # no Disconnect yet: checkout + 60 min
    _feed(store, CyberArkConnector(), [_write(tmp_path / "2.log", lines[3:])])
    (approval,) = _approvals(store)
    assert approval[5] == _utc(2026, 3, 2, 9, 20, 5)


def test_cyberark_vendor_sample_files_link_as_the_merged_stream(tmp_path):
    if not all((SAMPLES / n).is_file() for n in SAMPLE_FILES):
        pytest.skip(f"vendor samples not present under {SAMPLES} (../shared/vendor-samples "
                    "beside the repo)")
    merged = [ln for n in SAMPLE_FILES for ln in (SAMPLES / n).read_text().splitlines()]
    merged.sort(key=lambda ln: re.search(r'"IsoTimestamp":"([^"]+)"', ln).group(1))
    one = _cyberark_store([_write(tmp_path / "stream" / "vault.log", merged)])
    folder = tmp_path / "files"
    folder.mkdir()
    for name in SAMPLE_FILES:
        shutil.copy(SAMPLES / name, folder / name)
    split = _cyberark_store([folder])           # read as 302, 308, then 300: any order works
    assert _approvals(split) == _approvals(one)
    assert _refs(split) == _refs(one)
    assert sum(1 for (_, _, ref) in _refs(split) if ref) > 10


# --- Entra PIM -------------------------------------------------------------------------------

def _page(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"value": records}, indent=1))
    return path


@pytest.fixture
def pim_pages(tmp_path):
    records = json.loads((FIX / "pim" / "role_assignment_schedule_requests.json").read_text())
    records = records["value"]
    deactivation = [r for r in records if r["action"] == "selfDeactivate"]
    return {"whole": FIX / "pim" / "role_assignment_schedule_requests.json",
            "activations": _page(tmp_path / "p1.json",
                                 [r for r in records if r not in deactivation]),
            "deactivation": _page(tmp_path / "p2.json", deactivation)}


REVOKED = "9f1b2c3d-0005-4a5b-8c9d-000000000005"


def test_pim_deactivation_in_a_later_file_revokes_the_stored_activation(pim_pages):
    store = Store(":memory:")
    _feed(store, PimConnector(), [pim_pages["activations"]])
    assert store.query("SELECT status FROM approvals WHERE approval_id = ?", [REVOKED]) == [
        ("approved",)]
    (r,) = _feed(store, PimConnector(), [pim_pages["deactivation"]])
    assert (r.read, r.accepted, r.duplicates) == (1, 1, 0)
    assert store.query("SELECT status, revoked_at FROM approvals WHERE approval_id = ?",
                       [REVOKED]) == [("revoked", _utc(2026, 3, 4, 12, 45))]
    whole = Store(":memory:")
    _feed(whole, PimConnector(), [pim_pages["whole"]])
    assert _approvals(store) == _approvals(whole)


def test_pim_deactivation_before_its_activation_is_pending_then_applied(pim_pages):
    store = Store(":memory:")
    _feed(store, PimConnector(), [pim_pages["deactivation"]])
    ((approval_id, reason),) = store.query("SELECT approval_id, reason FROM approvals_pending")
    assert approval_id == "deactivation:9f1b2c3d-0006-4a5b-8c9d-000000000006"
    assert reason.endswith("at 2026-03-04T12:45:00.000000Z matches no stored activation")
    _feed(store, PimConnector(), [pim_pages["activations"]])
    assert not store.query("SELECT 1 FROM approvals_pending")
    whole = Store(":memory:")
    _feed(whole, PimConnector(), [pim_pages["whole"]])
    assert _approvals(store) == _approvals(whole)


def test_pim_approval_record_in_another_file_sets_the_approver(tmp_path):
    records = json.loads((FIX / "pim" / "audit_logs.json").read_text())["value"]
    approved = _page(tmp_path / "a.json", records[:1])        # "request approved", 07:58
    rest = _page(tmp_path / "b.json", records[1:])            # activation, deactivation, ...
    store = Store(":memory:")
    _feed(store, PimConnector(), [approved])
    assert store.query("SELECT reason FROM approvals_pending") == [
        ("approval of request a7c9e1f3-1111-4222-8333-944455566677 matches no stored "
         "activation",)]
    _feed(store, PimConnector(), [rest])
    assert not store.query("SELECT 1 FROM approvals_pending")
    whole = Store(":memory:")
    _feed(whole, PimConnector(), [FIX / "pim" / "audit_logs.json"])
    assert _approvals(store) == _approvals(whole)
    assert store.query("SELECT approver, status FROM approvals") == [
        ("approver@contoso.example", "revoked")]
