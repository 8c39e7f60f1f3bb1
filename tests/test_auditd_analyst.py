"""auditd for an analyst (issue 17): outcome, account and group changes, the host of a record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors.auditd import AuditdConnector
from tests.helpers import ingest_one

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "vendor-samples"


def _ingest(path, **opts):
    return ingest_one(AuditdConnector(), path, **opts)


def _rows(store, where="true"):
    cols = ["line", "account", "target", "action", "session_id", "actor", "outcome", "attrs"]
    rows = store.query(f"SELECT {', '.join(cols)} FROM activity WHERE {where} ORDER BY line")
    return [dict(zip(cols, r), attrs=json.loads(r[-1] or "{}")) for r in rows]


def _sample(name):
    path = SAMPLES / name
    if not path.is_file():
        pytest.skip(f"vendor sample {path} not present (../shared/vendor-samples beside the repo)")
    return path


SYSCALL = ("node=web01 type=SYSCALL msg=audit(1767225600.{n}:{n}): arch=c000003e syscall=59 "
           "success={ok} exit=0 ppid=1 pid=2 auid=1000 uid=0 gid=0 euid=0 ses=7 tty=pts0 "
           'comm="rm" exe="/usr/bin/rm" key=(null)')
EXECVE = 'node=web01 type=EXECVE msg=audit(1767225600.{n}:{n}): argc=2 a0="rm" a1="/etc/x"'
MGMT = ("node=web01 type={t} msg=audit(1767225700.{n}:{n}): pid=9 uid=0 auid=1000 ses=7 "
        "msg='op={op} {who} exe=\"/usr/sbin/usermod\" hostname=? addr=? terminal=pts/0 res={res}'")


def test_outcome_from_success_and_res(tmp_path):
    path = tmp_path / "a.log"
    path.write_text("\n".join([
        SYSCALL.format(n=101, ok="yes"), EXECVE.format(n=101),
        SYSCALL.format(n=102, ok="no"), EXECVE.format(n=102),
        MGMT.format(t="USER_CMD", n=103, op="x", who='cmd=6C73', res="failed"),
        MGMT.format(t="USER_LOGIN", n=104, op="login", who='acct="bob"', res="failed"),
        MGMT.format(t="USER_LOGIN", n=105, op="login", who='acct="bob"', res="success")]) + "\n")
    store, _ = _ingest(path)
    assert [(x["action"], x["outcome"]) for x in _rows(store)] == [
        ("exec", "success"), ("exec", "failure"), ("sudo.denied", "failure"),
        ("login.failed", "failure"), ("session.start", "success")]


def test_failed_ssh_login_sample_is_login_failed_failure():
    store, _ = _ingest(_sample("go-libaudit/audit-ubuntu16.log"))
    failed = _rows(store, "action = 'login.failed'")
    assert failed and {x["outcome"] for x in failed} == {"failure"}
    assert failed[0]["account"] == "(invalid user)"


def test_group_added_by_useradd_sample_names_the_changed_group():
    store, _ = _ingest(_sample("go-libaudit/test3.log"))
    (row,) = _rows(store, "action = 'group.add'")
    assert (row["account"], row["actor"], row["outcome"]) == ("root", "1000", "success")
    assert row["attrs"]["changed_group"] == "frodo" and "changed_user" not in row["attrs"]


def test_user_and_group_management_records(tmp_path):
    path = tmp_path / "a.log"
    path.write_text("\n".join([
        MGMT.format(t="USER_MGMT", n=201, op="add-user-to-group", who='grp="sudo" acct="bob"',
                    res="success"),
        MGMT.format(t="USER_MGMT", n=202, op="add-user-to-shadow-group",
                    who='grp="sudo" acct="bob"', res="success"),
        MGMT.format(t="USER_MGMT", n=203, op="changing-shell", who='acct="bob"', res="success"),
        MGMT.format(t="GRP_MGMT", n=204, op="add-shadow-group", who="id=1000", res="success"),
        MGMT.format(t="ADD_USER", n=205, op="add-user", who='acct="carol"', res="failed")]) + "\n")
    store, r = _ingest(path)
    assert (r.accepted, r.ignored) == (3, 2)              # shadow copies are ignored
    got = [(x["action"], x["attrs"].get("changed_user"), x["attrs"].get("changed_group"),
            x["outcome"]) for x in _rows(store)]
    assert got == [("group.modify", "bob", "sudo", "success"),
                   ("user.modify", "bob", None, "success"),
                   ("user.add", "carol", None, "failure")]


# ------------------------------------------------------------------------------ hosts

def test_node_field_is_the_host_and_no_warning(tmp_path):
    path = tmp_path / "00.txt"
    path.write_text(SYSCALL.format(n=101, ok="yes") + "\n" + EXECVE.format(n=101) + "\n")
    store, r = _ingest(path)
    assert _rows(store)[0]["target"] == "web01" and r.warnings == []


def test_file_name_as_host_is_warned_once_per_file(tmp_path):
    path = tmp_path / "audit.log"
    path.write_text("\n".join(x.replace("node=web01 ", "") for x in (
        SYSCALL.format(n=101, ok="yes"), EXECVE.format(n=101),
        SYSCALL.format(n=102, ok="yes"), EXECVE.format(n=102))) + "\n")
    store, r = _ingest(path)
    assert {x["target"] for x in _rows(store)} == {"audit"}
    (warning,) = r.warnings
    assert "'audit' is used as their host" in warning and "--option host=" in warning
    assert store.scalar("SELECT warnings FROM ingest_log") == warning
    store, r = _ingest(path, extra={"host": "db01"})
    assert {x["target"] for x in _rows(store)} == {"db01"} and r.warnings == []


def test_laurel_node_is_the_host():
    store, r = _ingest(_sample("laurel-auditd/record-execve.json"))
    assert {x["target"] for x in _rows(store)} == {"work"} and r.warnings == []
