"""syslog for an analyst (issue 17): outcome, account changes, the login a sudo belongs to,
Linux-PAM < 0.99, repeats without a host, the year a year-less file is given, DST."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from connectors.syslog import SyslogConnector
from correlate.errors import InputError
from tests.helpers import ingest_one

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "vendor-samples"


def _utc(*args):
    return datetime(*args, tzinfo=timezone.utc)


def _write(tmp_path, lines, mtime=None, name="auth.log"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    stamp = (mtime or _utc(2026, 3, 2)).timestamp()
    os.utime(path, (stamp, stamp))
    return path


def _ingest(path, **opts):
    opts.setdefault("tz", "UTC")
    return ingest_one(SyslogConnector(), path, **opts)


def _rows(store, where="true"):
    cols = ["line", "ts", "account", "target", "action", "session_id", "actor", "outcome",
            "attrs"]
    rows = store.query(f"SELECT {', '.join(cols)} FROM activity WHERE {where} ORDER BY line")
    return [dict(zip(cols, r), attrs=json.loads(r[-1] or "{}")) for r in rows]


def _sample(name):
    path = SAMPLES / name
    if not path.is_file():
        pytest.skip(f"vendor sample {path} not present (../shared/vendor-samples beside the repo)")
    return path


# ------------------------------------------------------------------------------ outcome

def test_elastic_auth_sample_outcomes_and_account_changes():
    store, r = _ingest(_sample("elastic-system-auth/test-auth.log"))
    by_line = {x["line"]: x for x in _rows(store)}
    assert (by_line[4]["action"], by_line[4]["outcome"]) == ("login.failed", "failure")
    assert (by_line[1]["action"], by_line[1]["outcome"]) == ("session.start", "success")
    assert (by_line[5]["action"], by_line[5]["outcome"]) == ("sudo.command", "success")
    assert (by_line[8]["action"], by_line[8]["outcome"]) == ("sudo.denied", "failure")
    group, user = by_line[9], by_line[10]
    assert (group["action"], group["account"], group["attrs"]["changed_group"]) == (
        "group.add", "apache", "apache")
    assert (user["action"], user["account"], user["attrs"]["changed_user"]) == (
        "user.add", "apache", "apache")
    assert "does not say who" in user["attrs"]["account_note"]
    assert 3 not in by_line          # "Invalid user test from": a notice, ignored
    assert r.read == 12 and r.quarantined == 0


def test_openssh_sample_every_failed_line_is_a_failed_login():
    path = _sample("loghub/OpenSSH_2k.log")
    store, r = _ingest(path, year=2017)
    failed = sum(1 for ln in path.read_text().splitlines() if "]: Failed " in ln
                 or "[ Failed " in ln)
    assert store.scalar("SELECT count(*) FROM activity WHERE action = 'login.failed' "
                        "AND outcome = 'failure'") == failed
    assert store.scalar("SELECT count(*) FROM activity WHERE outcome IS NULL") == 0
    assert r.read == 2000 and r.read == r.accepted + r.ignored + r.quarantined + r.duplicates


# ------------------------------------------------------------------------------ account changes

CHANGES = [
    ("useradd[9]: new user: name=bob, UID=1001, GID=1001, home=/home/bob, shell=/bin/bash",
     "user.add", "bob", None, "bob", None),
    ("useradd[9]: new group: name=bob, GID=1001", "group.add", "bob", None, None, "bob"),
    ("useradd[9]: add 'bob' to group 'sudo'", "group.modify", "bob", None, "bob", "sudo"),
    ("userdel[9]: delete user 'bob'", "user.delete", "bob", None, "bob", None),
    ("userdel[9]: removed group 'bob' owned by 'bob'", "group.delete", "bob", None, None, "bob"),
    ("usermod[9]: change user 'bob' shell from '/bin/sh' to '/bin/bash'", "user.modify", "bob",
     None, "bob", None),
    ("usermod[9]: delete 'bob' from group 'sudo'", "group.modify", "bob", None, "bob", "sudo"),
    ("groupadd[9]: new group: name=devs, GID=1002", "group.add", "devs", None, None, "devs"),
    ("groupdel[9]: group 'devs' removed", "group.delete", "devs", None, None, "devs"),
    ("groupmod[9]: group changed in /etc/group (group devs/1002, new name: ops)", "group.modify",
     "devs", None, None, "devs"),
    ("gpasswd[9]: user bob added by root to group sudo", "group.modify", "root", "root", "bob",
     "sudo"),
    ("gpasswd[9]: members of group sudo set by alice to bob,carol", "group.modify", "alice",
     "alice", None, "sudo"),
    ("passwd[9]: pam_unix(passwd:chauthtok): password changed for bob", "user.password_change",
     "bob", None, "bob", None),
    ("chpasswd[9]: pam_unix(chpasswd:chauthtok): password changed for carol",
     "user.password_change", "carol", None, "carol", None),
    ("passwd[9]: password for 'bob' changed by 'root'", "user.password_change", "root", "root",
     "bob", None),
    ("chage[9]: changed password expiry for bob", "user.modify", "bob", None, "bob", None),
]


@pytest.mark.parametrize("msg,action,account,actor,user,group", CHANGES,
                         ids=[c[0].split(":")[0] + "-" + c[1] for c in CHANGES])
def test_identity_change_is_an_action_with_the_changed_account(tmp_path, msg, action, account,
                                                               actor, user, group):
    store, r = _ingest(_write(tmp_path, [f"Mar  1 10:00:00 web01 {msg}"]))
    (row,) = _rows(store)
    assert (row["action"], row["account"], row["actor"], row["outcome"]) == (
        action, account, actor, "success")
    assert (row["attrs"].get("changed_user"), row["attrs"].get("changed_group")) == (user, group)
    assert ("account_note" in row["attrs"]) == (actor is None)


def test_gshadow_repeats_of_a_change_are_ignored(tmp_path):
    path = _write(tmp_path, [
        "Mar  1 10:00:00 web01 groupadd[9]: group added to /etc/group: name=devs, GID=1002",
        "Mar  1 10:00:00 web01 groupadd[9]: group added to /etc/gshadow: name=devs",
        "Mar  1 10:00:00 web01 groupadd[9]: new group: name=devs, GID=1002",
        "Mar  1 10:00:01 web01 usermod[10]: add 'bob' to shadow group 'sudo'"])
    store, r = _ingest(path)
    assert (r.accepted, r.ignored) == (1, 3)
    assert [x["action"] for x in _rows(store)] == ["group.add"]


# ------------------------------------------------------------------------------ sessions

LOGINS = [
    "Mar  1 10:00:00 web01 sshd[100]: Accepted publickey for alice from 10.0.0.5 port 5000 ssh2",
    "Mar  1 10:00:01 web01 sshd[100]: Starting session: shell on pts/0 for alice from 10.0.0.5 "
    "port 5000 id 0",
    "Mar  1 10:01:00 web01 sshd[200]: Accepted password for alice from 10.0.0.6 port 5001 ssh2",
    "Mar  1 10:02:00 web01 sudo:    alice : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/ls",
    "Mar  1 10:03:00 web01 sudo:    alice : TTY=pts/7 ; PWD=/ ; USER=root ; COMMAND=/bin/id",
    "Mar  1 10:03:30 web01 sudo:    alice : PWD=/ ; USER=root ; COMMAND=/bin/w",
    "Mar  1 10:04:00 web01 sshd[200]: pam_unix(sshd:session): session closed for user alice",
    "Mar  1 10:04:30 web01 sudo:    alice : TTY=pts/5 ; PWD=/ ; USER=root ; COMMAND=/bin/df",
    "Mar  1 10:05:00 web01 sudo:    alice : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/du",
    "Mar  1 10:05:00 web02 sudo:    alice : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/du",
    "Mar  1 10:05:30 web01 sudo:    bob : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/du",
    "Mar  1 10:06:00 web01 su: pam_unix(su:session): session opened for user root by alice(uid=1)",
]


OPEN = " (login not ended in this file)"         # sshd[100] has no session closed line


def test_sudo_is_linked_to_the_sshd_login_that_contains_it(tmp_path):
    store, r = _ingest(_write(tmp_path, LOGINS))
    assert (r.read, r.accepted, r.ignored) == (12, 11, 1)     # "Starting session" is ignored
    got = {x["line"]: (x["session_id"], x["attrs"].get("session_link"))
           for x in _rows(store, "action IN ('sudo.command', 'su')")}
    assert got == {
        4: ("web01:sshd[100]", "tty" + OPEN),                # two open, the tty decides
        5: ("web01:sshd[200]", "the only open login"),       # pts/7 is not sshd[100]'s pts/0
        6: (None, "ambiguous: 2 open logins"),               # no TTY, two open logins
        8: (None, "none: no open login on pts/5 (1 on other ttys)"),
        9: ("web01:sshd[100]", "tty" + OPEN),                # sshd[200] closed at 10:04
        10: (None, None),                                    # another host: never guessed
        11: (None, None),                                    # another user
        12: ("web01:sshd[100]", "the only open login" + OPEN),
    }


def test_refused_su_is_su_denied_and_linked_by_tty(tmp_path):
    lines = LOGINS[:3] + [
        "Mar  1 10:02:00 web01 su[300]: FAILED SU (to root) alice on pts/0",
        "Mar  1 10:02:01 web01 su[301]: FAILED su for root by alice"]
    store, _ = _ingest(_write(tmp_path, lines))
    got = [(x["action"], x["account"], x["actor"], x["outcome"], x["session_id"])
           for x in _rows(store, "action = 'su.denied'")]
    assert got == [("su.denied", "root", "alice", "failure", "web01:sshd[100]"),
                   ("su.denied", "root", "alice", "failure", None)]


def test_session_end_bound_is_inclusive(tmp_path):
    lines = [LOGINS[2], LOGINS[6],
             "Mar  1 10:04:00 web01 sudo:    alice : PWD=/ ; USER=root ; COMMAND=/bin/a",
             "Mar  1 10:04:01 web01 sudo:    alice : PWD=/ ; USER=root ; COMMAND=/bin/b"]
    store, _ = _ingest(_write(tmp_path, lines))
    assert [x["session_id"] for x in _rows(store, "action = 'sudo.command'")] == [
        "web01:sshd[200]", None]


# ------------------------------------------------------------------------------ section 7

def test_linux_pam_before_0_99_maps_like_the_modern_form(tmp_path):
    path = _write(tmp_path, [
        "Mar  1 10:00:00 old sshd[2201]: Accepted password for test from 10.0.0.1 port 22 ssh2",
        "Mar  1 10:00:00 old sshd(pam_unix)[2201]: session opened for user test by (uid=0)",
        "Mar  1 10:05:00 old su(pam_unix)[21416]: session opened for user cyrus by (uid=0)",
        "Mar  1 10:06:00 old su(pam_unix)[21417]: session opened for user root by test(uid=500)",
        "Mar  1 10:09:00 old sshd(pam_unix)[2201]: session closed for user test"])
    store, r = _ingest(path)
    rows = _rows(store)
    assert [(x["line"], x["action"], x["account"], x["actor"]) for x in rows] == [
        (1, "session.start", "test", "test"), (3, "su", "cyrus", None), (4, "su", "root", "test"),
        (5, "session.end", "test", "test")]
    assert rows[3]["session_id"] == rows[0]["session_id"] == "old:sshd[2201]"
    assert rows[2]["session_id"] == "old:sshd[2201]"          # su linked to test's login
    assert (r.ignored, r.quarantined) == (1, 0)


def test_repeat_with_an_empty_host_field_is_ignored_not_quarantined(tmp_path):
    path = _write(tmp_path, [
        "Feb 22 10:21:43  sshd[1332]: last message repeated 2 times",
        "Feb 22 10:21:44  sudo:    alice : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/ls"])
    store, r = _ingest(path)
    assert (r.read, r.ignored, r.quarantined) == (2, 1, 1)
    assert store.query("SELECT event_type FROM ignored_counts") == [("sshd",)]
    ((reason,),) = store.query("SELECT reason FROM quarantine")
    assert reason.startswith("no host in the syslog header")
    _, with_host = _ingest(path, extra={"host": "web09"})
    assert (with_host.accepted, with_host.ignored) == (1, 1)


def _year_file(tmp_path, mtime):
    # two Dec -> Jan rollovers: the first line is two years before the last
    return _write(tmp_path, [
        "Dec  1 00:00:00 web01 sudo:    alice : PWD=/ ; USER=root ; COMMAND=/bin/a",
        "Jan  1 00:00:00 web01 sshd[5]: Connection closed by 10.0.0.9 port 1 [preauth]",
        "Dec  1 00:00:00 web01 sshd[6]: Connection closed by 10.0.0.9 port 1 [preauth]",
        "Jan  1 00:00:00 web01 sudo:    alice : PWD=/ ; USER=root ; COMMAND=/bin/b"], mtime)


def test_year_from_mtime_far_from_it_is_a_warning_bound_400_days(tmp_path):
    at_bound = _utc(2024, 12, 1) + timedelta(days=400)         # 2026-01-05
    store, r = _ingest(_year_file(tmp_path, at_bound))
    assert r.warnings == []
    assert store.scalar("SELECT warnings FROM ingest_log") is None
    store, r = _ingest(_year_file(tmp_path, at_bound + timedelta(seconds=1)))
    (warning,) = r.warnings
    assert "2024/2026" in warning and "more than 400 days" in warning and "--year" in warning
    assert store.scalar("SELECT warnings FROM ingest_log") == warning


def test_year_from_mtime_putting_events_after_it_is_a_warning(tmp_path):
    line = ["Mar 10 10:00:00 web01 sudo:    alice : PWD=/ ; USER=root ; COMMAND=/bin/a"]
    _, r = _ingest(_write(tmp_path, line, _utc(2026, 3, 10, 10)))
    assert r.warnings == []
    _, r = _ingest(_write(tmp_path, line, _utc(2026, 3, 10, 9, 59, 59)))
    (warning,) = r.warnings
    assert "dated 2026" in warning and "after the file was last written" in warning
    _, r = _ingest(_write(tmp_path, line, _utc(2026, 3, 9)), year=2026)
    assert r.warnings == []                                     # --year given: no guess


def test_cli_prints_the_warning_after_the_counts(tmp_path):
    from click.testing import CliRunner

    from correlate.cli import main
    line = ["Mar 10 10:00:00 web01 sudo:    alice : PWD=/ ; USER=root ; COMMAND=/bin/a"]
    path = _write(tmp_path, line, _utc(2026, 3, 9))
    res = CliRunner().invoke(main, ["ingest", "syslog", "--tz", "UTC", "--db",
                                    str(tmp_path / "p.duckdb"), str(path)])
    assert res.exit_code == 0, res.output
    assert f"{path}: warning: year-less timestamps dated 2026" in res.stderr


# ------------------------------------------------------------------------------ DST

DST = [("Oct 25 02:30:00", "ambiguous local time", _utc(2026, 10, 25, 0, 30),
        _utc(2026, 10, 25, 1, 30)),
       ("Mar 29 02:30:00", "non-existent local time", _utc(2026, 3, 29, 0, 30),
        _utc(2026, 3, 29, 1, 30))]


@pytest.mark.parametrize("stamp,reason,earlier,later", DST, ids=["fall-back", "spring-forward"])
def test_dst_local_time_is_quarantined_unless_the_option_picks(tmp_path, stamp, reason, earlier,
                                                                later):
    path = _write(tmp_path, [
        f"{stamp} web01 sudo:    alice : PWD=/ ; USER=root ; COMMAND=/bin/a",
        f"{stamp.replace('02:30', '03:30')} web01 sudo:    alice : PWD=/ ; USER=root ; COMMAND=/b"])
    store, r = _ingest(path, tz="Europe/Berlin", year=2026)
    assert (r.accepted, r.quarantined) == (1, 1)
    ((line, why),) = store.query("SELECT line, reason FROM quarantine")
    assert line == 1 and why.startswith(reason) and "dst=earlier" in why
    for choice, want in (("earlier", earlier), ("later", later)):
        store, r = _ingest(path, tz="Europe/Berlin", year=2026, extra={"dst": choice})
        assert r.quarantined == 0
        assert _rows(store)[0]["ts"] == want


def test_dst_applies_to_zone_less_iso_lines_and_the_option_is_checked(tmp_path):
    path = _write(tmp_path, [
        "2026-10-25T02:30:00 web01 sudo:    alice : PWD=/ ; USER=root ; COMMAND=/bin/a",
        "2026-10-25T02:30:00+01:00 web01 sudo:    alice : PWD=/ ; USER=root ; COMMAND=/bin/b"])
    store, r = _ingest(path, tz="Europe/Berlin")
    assert (r.accepted, r.quarantined) == (1, 1)
    assert store.scalar("SELECT reason FROM quarantine").startswith("ambiguous local time")
    with pytest.raises(InputError, match="dst must be earlier or later"):
        _ingest(path, tz="Europe/Berlin", extra={"dst": "first"})
