"""Local times in a daylight-saving change (issue 17 §9): quarantined with the reason unless the
source config picks (`--option dst=earlier|later`); the SQL reader and the Python connectors agree.

Berlin: 2026-10-25 02:00..02:59:59 occurs twice (CEST +02 then CET +01); 2026-03-29 02:00..02:59:59
never exists (clocks go from 02:00 to 03:00).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from connectors.base import Options, local_to_utc
from connectors.cyberark import CyberArkConnector
from connectors.generic import GenericConnector
from connectors.pim import PimConnector
from correlate.errors import InputError
from correlate.ingest import ingest
from correlate.store import Store

BERLIN = ZoneInfo("Europe/Berlin")
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _utc(*args):
    return datetime(*args, tzinfo=timezone.utc)


# local time -> (kind, earlier UTC, later UTC); kind None: an ordinary time (one instant)
CASES = [
    ("2026-10-25T01:59:59", None, _utc(2026, 10, 24, 23, 59, 59), _utc(2026, 10, 24, 23, 59, 59)),
    ("2026-10-25T02:00:00", "ambiguous", _utc(2026, 10, 25, 0, 0), _utc(2026, 10, 25, 1, 0)),
    ("2026-10-25T02:30:00", "ambiguous", _utc(2026, 10, 25, 0, 30), _utc(2026, 10, 25, 1, 30)),
    ("2026-10-25T02:59:59", "ambiguous", _utc(2026, 10, 25, 0, 59, 59), _utc(2026, 10, 25, 1, 59, 59)),
    ("2026-10-25T03:00:00", None, _utc(2026, 10, 25, 2, 0), _utc(2026, 10, 25, 2, 0)),
    ("2026-03-29T01:59:59", None, _utc(2026, 3, 29, 0, 59, 59), _utc(2026, 3, 29, 0, 59, 59)),
    ("2026-03-29T02:00:00", "non-existent", _utc(2026, 3, 29, 0, 0), _utc(2026, 3, 29, 1, 0)),
    ("2026-03-29T02:30:00", "non-existent", _utc(2026, 3, 29, 0, 30), _utc(2026, 3, 29, 1, 30)),
    ("2026-03-29T03:00:00", None, _utc(2026, 3, 29, 1, 0), _utc(2026, 3, 29, 1, 0)),
]


@pytest.mark.parametrize("local,kind,earlier,later", CASES)
def test_python_helper(local, kind, earlier, later):
    naive = datetime.fromisoformat(local)
    value, problem = local_to_utc(naive, BERLIN)
    if kind:
        assert value is None and problem.startswith(f"{kind} local time: {local} in Europe/Berlin")
    else:
        assert (value, problem) == (earlier, None)
    assert local_to_utc(naive, BERLIN, "earlier") == (earlier, None)
    assert local_to_utc(naive, BERLIN, "later") == (later, None)


def _generic(tmp_path, fmt, extra=None):
    rows = [{"event_id": f"e{i}", "ts": local, "account": "a", "target": "t"}
            for i, (local, *_) in enumerate(CASES)]
    path = tmp_path / f"act.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        path.write_text("event_id,ts,account,target\n" + "".join(
            f"{r['event_id']},{r['ts']},a,t\n" for r in rows))
    store = Store(":memory:")
    (r,) = ingest(store, GenericConnector(), "activity", [str(path)],
                  Options(tz="Europe/Berlin", extra=extra or {}))
    assert r.balanced, r
    got = dict(store.query("SELECT event_id, ts FROM activity"))
    reasons = dict(store.query("SELECT line, reason FROM quarantine"))
    return got, reasons, r


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_generic_quarantines_ambiguous_and_non_existent_times(tmp_path, fmt):
    got, reasons, r = _generic(tmp_path, fmt)
    first = 2 if fmt == "csv" else 1
    for i, (local, kind, earlier, _) in enumerate(CASES):
        if kind:
            assert f"e{i}" not in got
            assert reasons[first + i] == (
                f"{kind} local time in ts: {local} in Europe/Berlin (a DST change; "
                f"--option dst=earlier|later picks one)")
        else:
            assert got[f"e{i}"] == earlier
    assert r.quarantined == 5 and r.accepted == 4


@pytest.mark.parametrize("dst", ["earlier", "later"])
def test_generic_dst_option_picks_one_like_the_python_helper(tmp_path, dst):
    got, reasons, r = _generic(tmp_path, "jsonl", {"dst": dst})
    assert reasons == {} and r.accepted == len(CASES)
    for i, (local, _, earlier, later) in enumerate(CASES):
        assert got[f"e{i}"] == (earlier if dst == "earlier" else later)
        assert (got[f"e{i}"], None) == local_to_utc(datetime.fromisoformat(local), BERLIN, dst)


def test_bad_dst_option_is_an_input_error(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"ts": "2026-10-25T02:30:00", "account": "a", "target": "t"}\n')
    with pytest.raises(InputError, match="dst must be earlier or later"):
        ingest(Store(":memory:"), GenericConnector(), "activity", [str(path)],
               Options(tz="Europe/Berlin", extra={"dst": "second"}))


def _cyberark_file(tmp_path, iso):
    first = (FIXTURES / "cyberark" / "checkout_session.log").read_text().splitlines()[0]
    doc = json.loads(first[first.index("{"):])
    doc["syslog"]["audit_record"]["IsoTimestamp"] = iso
    doc.pop("raw", None)
    path = tmp_path / "vault.log"
    path.write_text(first[:first.index("{")] + json.dumps(doc) + "\n")
    return path


@pytest.mark.parametrize("local,dst,expected", [
    ("2026-10-25T02:30:00", None, "ambiguous local time: 2026-10-25T02:30:00 in Europe/Berlin"),
    ("2026-03-29T02:30:00", None, "non-existent local time: 2026-03-29T02:30:00 in Europe/Berlin"),
    ("2026-10-25T02:30:00", "earlier", _utc(2026, 10, 25, 0, 30)),
    ("2026-10-25T02:30:00", "later", _utc(2026, 10, 25, 1, 30)),
])
def test_cyberark_zone_less_iso_times(tmp_path, local, dst, expected):
    path = _cyberark_file(tmp_path, local)
    store = Store(":memory:")
    (r,) = ingest(store, CyberArkConnector(), "auto", [str(path)],
                  Options(tz="Europe/Berlin", extra={"dst": dst} if dst else {}))
    assert r.balanced
    if isinstance(expected, str):
        assert r.quarantined == 1
        assert store.query("SELECT reason FROM quarantine")[0][0].startswith(expected)
    else:
        assert store.scalar("SELECT min(start_ts) FROM approvals") == expected


def _pim_file(tmp_path, start, end):
    page = json.loads((FIXTURES / "pim" / "role_assignment_schedule_requests.json").read_text())
    rec = page["value"][1]                          # adminAssign with an endDateTime
    rec["scheduleInfo"]["startDateTime"] = start
    rec["scheduleInfo"]["expiration"]["endDateTime"] = end
    path = tmp_path / "req.jsonl"
    path.write_text(json.dumps(rec) + "\n")
    return path


@pytest.mark.parametrize("start,dst,expected", [
    ("2026-10-25T02:30:00", None, "ambiguous local time: 2026-10-25T02:30:00 in Europe/Berlin"),
    ("2026-03-29T02:30:00", None, "non-existent local time: 2026-03-29T02:30:00 in Europe/Berlin"),
    ("2026-10-25T02:30:00", "later", _utc(2026, 10, 25, 1, 30)),
    ("2026-10-25T02:30:00Z", None, _utc(2026, 10, 25, 2, 30)),    # a zone is never questioned
])
def test_pim_zone_less_times(tmp_path, start, dst, expected):
    path = _pim_file(tmp_path, start, "2026-10-26T00:00:00Z")
    store = Store(":memory:")
    (r,) = ingest(store, PimConnector(), None, [str(path)],
                  Options(tz="Europe/Berlin", extra={"dst": dst} if dst else {}))
    assert r.balanced
    if isinstance(expected, str):
        assert r.quarantined == 1
        assert store.query("SELECT reason FROM quarantine")[0][0].startswith(expected)
    else:
        assert store.scalar("SELECT min(start_ts) FROM approvals") == expected
