"""syslog connector: sudo/sshd/su mapping, year inference across Dec -> Jan, zones, samples balance."""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from connectors.base import Options
from connectors.syslog import SyslogConnector
from correlate.ingest import ingest
from correlate.store import Store
from tests.helpers import ingest_one

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "syslog"
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "vendor-samples"
SAMPLE_FILES = ["elastic-system-auth/test-auth.log", "elastic-system-auth/test-secure-rhel7.log",
                "loghub/OpenSSH_2k.log"]


def _ingest(path, store=None, **opts):
    return ingest_one(SyslogConnector(), path, store, **opts)


def _rows(store, where="true"):
    cols = ["line", "event_id", "ts", "account", "target", "action", "detail", "session_id",
            "actor", "actor_kind", "attrs"]
    rows = store.query(f"SELECT {', '.join(cols)} FROM activity WHERE {where} ORDER BY line")
    return [dict(zip(cols, r)) for r in rows]


def _utc(*args):
    return datetime(*args, tzinfo=timezone.utc)


@pytest.fixture
def january_copy(tmp_path):
    """The Dec 31 -> Jan 1 fixture as a file last written on 2 January 2027."""
    path = tmp_path / "auth.log"
    shutil.copy(FIXTURES / "rollover-auth.log", path)
    stamp = _utc(2027, 1, 2, 12, 0).timestamp()
    os.utime(path, (stamp, stamp))
    return path


@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_vendor_sample_counts_balance(name):
    path = SAMPLES / name
    if not path.is_file():
        pytest.skip(f"vendor sample {path} not present (../shared/vendor-samples beside the repo)")
    _, r = _ingest(path, tz="UTC")
    lines = sum(1 for ln in path.read_text(encoding="utf-8", errors="replace").split("\n") if ln.strip())
    assert r.read == lines
    assert r.accepted > 0 and r.quarantined == 0
    assert r.read == r.accepted + r.quarantined + r.duplicates + r.ignored


def test_december_sudo_line_read_in_january_gets_the_previous_year(january_copy):
    store, r = _ingest(january_copy, tz="UTC")
    sudo = _rows(store, "action = 'sudo.command'")[0]
    assert sudo["ts"] == _utc(2026, 12, 31, 23, 58, 1)
    assert json.loads(sudo["attrs"])["year_inferred"] == "mtime"
    accepted = _rows(store, "action = 'session.start'")[0]
    assert accepted["ts"] == _utc(2027, 1, 1, 0, 2, 13)


def test_year_option_is_the_year_of_the_first_line_and_zone_applies(january_copy):
    store, _ = _ingest(january_copy, tz="Europe/Berlin", year=2024)
    sudo = _rows(store, "action = 'sudo.command'")[0]
    assert sudo["ts"] == _utc(2024, 12, 31, 22, 58, 1)           # 23:58:01 CET
    assert json.loads(sudo["attrs"])["year_inferred"] == "option"
    assert _rows(store, "action = 'session.start'")[0]["ts"] == _utc(2024, 12, 31, 23, 2, 13)


def test_sudo_command_maps_run_as_user_to_account_and_invoker_to_actor(january_copy):
    store, _ = _ingest(january_copy, tz="UTC")
    row = _rows(store, "action = 'sudo.command'")[0]
    assert (row["line"], row["account"], row["actor"], row["target"], row["detail"]) == (
        1, "root", "alice", "web01", "/usr/bin/systemctl restart nginx")
    assert json.loads(row["attrs"])["tty"] == "pts/0"
    denied = _rows(store, "action = 'sudo.denied'")[0]
    assert (denied["actor"], denied["account"], denied["detail"]) == ("mallory", "root", "/bin/bash")
    assert json.loads(denied["attrs"])["denied"] == "user NOT in sudoers"


def test_sshd_accept_and_session_close_share_a_session(january_copy):
    store, _ = _ingest(january_copy, tz="UTC")
    start, end = _rows(store, "action IN ('session.start', 'session.end')")
    assert (start["account"], start["actor"], start["session_id"]) == ("bob", "bob", "web01:sshd[812]")
    assert start["detail"] == "publickey from 10.0.0.5 port 50022"
    assert json.loads(start["attrs"])["src_ip"] == "10.0.0.5"
    assert (end["action"], end["session_id"], end["ts"]) == (
        "session.end", "web01:sshd[812]", _utc(2027, 1, 1, 0, 40))


def test_failed_logins_and_repeated_message(january_copy):
    store, _ = _ingest(january_copy, tz="UTC")
    first, repeated = _rows(store, "action = 'login.failed'")
    assert (first["account"], first["line"]) == ("admin", 5)
    assert json.loads(first["attrs"])["invalid_user"] is True
    assert json.loads(repeated["attrs"])["repeated"] == 3
    assert first["event_id"] != repeated["event_id"]


def test_su_session_is_activity_for_the_target_user(january_copy):
    store, _ = _ingest(january_copy, tz="UTC")
    (su,) = _rows(store, "action = 'su'")
    assert (su["account"], su["actor"]) == ("root", "alice")


def test_other_lines_ignored_and_headerless_line_quarantined_with_its_number(january_copy):
    store, r = _ingest(january_copy, tz="UTC")
    assert (r.read, r.accepted, r.ignored, r.quarantined) == (9, 7, 1, 1)
    assert store.query("SELECT event_type, count FROM ignored_counts") == [("sshd", 1)]
    ((line, reason),) = store.query("SELECT line, reason FROM quarantine")
    assert line == 9 and reason.startswith("unrecognised line")


def test_without_a_zone_mapped_lines_are_quarantined_saying_so(january_copy):
    store, r = _ingest(january_copy)
    assert r.accepted == 0 and r.ignored == 1
    reasons = {reason for (reason,) in store.query("SELECT reason FROM quarantine")}
    assert any(x.startswith("timestamp without time zone") and "--tz" in x for x in reasons)


def test_iso_and_rfc5424_lines_carry_their_zone():
    store, r = _ingest(FIXTURES / "iso-secure.log")
    sudo, carol = _rows(store)
    assert sudo["ts"] == _utc(2026, 2, 10, 7, 15, 0, 123456)
    assert (sudo["account"], sudo["actor"], sudo["target"]) == ("postgres", "alice", "web02")
    assert sudo["detail"] == '/usr/bin/psql -c "select 1 ; select 2"'
    assert "year_inferred" not in json.loads(sudo["attrs"])
    assert (carol["account"], carol["ts"]) == ("carol", _utc(2026, 2, 10, 7, 16))
    ((line, reason),) = store.query("SELECT line, reason FROM quarantine")
    assert line == 3 and reason.startswith("timestamp without time zone")
    _, with_zone = _ingest(FIXTURES / "iso-secure.log", tz="UTC")
    assert with_zone.accepted == 3


def test_same_lines_in_another_file_are_duplicates(tmp_path, january_copy):
    other = tmp_path / "auth.log.1"
    other.write_bytes(january_copy.read_bytes() + b"\n")
    stamp = january_copy.stat().st_mtime
    os.utime(other, (stamp, stamp))
    store = Store(":memory:")
    first, second = ingest(store, SyslogConnector(), None, [str(january_copy), str(other)],
                           Options(tz="UTC"))
    assert second.duplicates == first.accepted and second.accepted == 0
