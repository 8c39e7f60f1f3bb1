"""auditd connector: events joined by stamp, hex/split EXECVE args, names, laurel, samples balance."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from connectors.auditd import AuditdConnector
from connectors.base import Options
from correlate.errors import InputError
from tests.helpers import ingest_one

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "auditd"
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "vendor-samples"
SAMPLE_DIRS = ["laurel-auditd", "go-libaudit"]
PASSWD = {"passwd": str(FIXTURES / "passwd")}


def _samples():
    out = []
    for folder in SAMPLE_DIRS:
        if (SAMPLES / folder).is_dir():
            out.extend(sorted(p for p in (SAMPLES / folder).iterdir() if p.is_file()))
    return out or [None]


def _ingest(path, store=None, **opts):
    return ingest_one(AuditdConnector(), path, store, **opts)


def _by_event(store):
    cols = ["event_id", "line", "ts", "account", "target", "action", "detail", "session_id",
            "actor", "actor_kind", "attrs"]
    return {r[0]: dict(zip(cols, r)) for r in store.query(f"SELECT {', '.join(cols)} FROM activity")}


@pytest.mark.parametrize("path", _samples(), ids=lambda p: p.name if p else "absent")
def test_vendor_sample_counts_balance(path):
    if path is None:
        pytest.skip(f"auditd vendor samples not present under {SAMPLES}")
    _, r = _ingest(path)
    assert r.read > 0
    assert r.read == r.accepted + r.quarantined + r.duplicates + r.ignored


def test_hex_and_split_execve_args_are_decoded_and_joined():
    store, _ = _ingest(FIXTURES / "commands.log", extra=PASSWD)
    row = _by_event(store)["web01:1767225600.123:501"]
    # a2 is hex-encoded, a3 arrives as a3[0] and a3[1] in two EXECVE records, with another
    # event's record between them
    assert row["detail"] == "bash -c 'echo \"a b\"' 'hello world!'"
    assert row["ts"] == datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=timezone.utc)
    assert (row["line"], row["action"], row["target"]) == (1, "exec", "web01")
    assert (row["account"], row["actor"], row["session_id"]) == ("root", "alice", "web01:7")
    attrs = json.loads(row["attrs"])
    assert (attrs["cwd"], attrs["key"], attrs["argc"]) == ("/root", "rootcmd", 4)


def test_counts_ignored_proctitle_event_and_bad_line_with_its_number():
    store, r = _ingest(FIXTURES / "commands.log", extra=PASSWD)
    assert (r.read, r.accepted, r.ignored, r.quarantined, r.duplicates) == (9, 7, 1, 1, 0)
    assert store.query("SELECT event_type, count FROM ignored_counts") == [("PROCTITLE", 1)]
    assert store.query("SELECT line, reason FROM quarantine") == [
        (7, "no audit(ts:serial) stamp: not an auditd record")]


def test_user_cmd_is_sudo_with_assumed_run_as_user():
    store, _ = _ingest(FIXTURES / "commands.log", extra=PASSWD)
    row = _by_event(store)["web01:1767225700.000:510"]
    assert (row["action"], row["account"], row["actor"], row["detail"]) == (
        "sudo.command", "root", "alice", "systemctl restart nginx")
    assert json.loads(row["attrs"])["runas_assumed"] is True
    store, _ = _ingest(FIXTURES / "commands.log", extra=dict(PASSWD, sudo_runas="admin"))
    assert _by_event(store)["web01:1767225700.000:510"]["account"] == "admin"


def test_setuid_exec_is_the_real_users_with_euid_kept():
    store, _ = _ingest(FIXTURES / "commands.log", extra=PASSWD)
    row = _by_event(store)["web01:1767225800.500:520"]
    assert (row["account"], row["actor"]) == ("alice", "alice")
    assert json.loads(row["attrs"])["euid"] == "root"


def test_enriched_names_written_by_the_host_win():
    store, _ = _ingest(FIXTURES / "commands.log", extra=PASSWD)
    row = _by_event(store)["web01:1767226200.000:560"]
    assert (row["account"], row["actor"], row["detail"]) == ("root", "carol", "id")


def test_login_account_change_and_audit_rule_change():
    store, _ = _ingest(FIXTURES / "commands.log", extra=PASSWD)
    rows = _by_event(store)
    login = rows["web01:1767225900.000:530"]
    assert (login["action"], login["account"], login["session_id"]) == ("session.start", "bob", "web01:8")
    add = rows["web01:1767226000.000:540"]
    assert (add["action"], add["account"], add["actor"], add["detail"]) == (
        "user.add", "root", "alice", "add-user svc-backup")
    rule = rows["web01:1767226100.000:550"]
    assert (rule["action"], rule["account"], rule["detail"]) == (
        "audit.config_change", "root", "op=remove_rule key=rootcmd list=4 res=1")
    assert json.loads(rule["attrs"])["account_assumed"] is True


def test_without_names_uids_stay_numbers_and_uid_0_is_root():
    store, _ = _ingest(FIXTURES / "commands.log")
    row = _by_event(store)["web01:1767225600.123:501"]
    assert (row["account"], row["actor"]) == ("root", "1001")


def test_laurel_record_maps_like_raw():
    store, r = _ingest(FIXTURES / "laurel.json")
    assert (r.read, r.accepted, r.quarantined, r.ignored, r.duplicates) == (4, 1, 1, 1, 1)
    row = _by_event(store)["db01:1767229200.250:777"]
    assert (row["account"], row["actor"], row["target"], row["session_id"]) == (
        "postgres", "erin", "db01", "db01:12")
    assert row["detail"] == "psql -U postgres '-cALTER ROLE app SUPERUSER'"
    assert row["ts"] == datetime(2026, 1, 1, 1, 0, 0, 250000, tzinfo=timezone.utc)
    assert store.query("SELECT line, reason FROM quarantine") == [(2, "invalid JSON")]


def test_host_comes_from_option_or_file_name(tmp_path):
    path = tmp_path / "bastion.audit.log"
    path.write_text('type=USER_CMD msg=audit(1767225700.000:9): pid=1 uid=0 auid=0 ses=1 '
                    'msg=\'cwd="/" cmd="id" terminal=pts/0 res=failed\'\n')
    store, _ = _ingest(path)
    ((target, action),) = store.query("SELECT target, action FROM activity")
    assert (target, action) == ("bastion", "sudo.denied")
    store, _ = _ingest(path, extra={"host": "bastion-01.example.com"})
    assert store.query("SELECT target FROM activity") == [("bastion-01.example.com",)]


def test_missing_passwd_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="passwd"):
        AuditdConnector().stage(FIXTURES / "commands.log", "auto",
                                Options(extra={"passwd": str(tmp_path / "nope")}))
