"""The shipped sequence rules over generic activity: order, the timespan bound, groups, noise.

Each test writes a few actions through the generic connector, runs the real correlate (which
runs the detections), and reads the sequences a rule stored: one list of event_ids per sequence,
in member order. Edges per sequence type: order reversed (none), exactly at the timespan (found),
one second past it (none), another group (none), interleaved noise (still found, same members).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from correlate.engine import correlate
from tests.conftest import World

T0 = datetime(2026, 3, 2, 10, 0, 0, tzinfo=timezone.utc)


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def sequences(world: World, rule_id: str) -> list[list[str]]:
    """The stored sequences of `rule_id`: event_ids in member order, sequences sorted."""
    store = world.store()
    run = correlate(store)
    rows = store.query(
        "SELECT d.sequence_id, a.event_id FROM detections d JOIN activity a USING (act_id) "
        "WHERE d.run_id = ? AND d.rule_id = ? ORDER BY d.sequence_id, d.position", [run, rule_id])
    store.close()
    out: dict[str, list[str]] = {}
    for sid, event_id in rows:
        assert sid is not None
        out.setdefault(sid, []).append(event_id)
    return sorted(out.values())


@pytest.fixture
def new_world(tmp_path):
    count = iter(range(1000))
    return lambda: World(tmp_path / f"w{next(count)}")


# --- temporal_ordered: root shell, then audit rules deleted (group: actor, target; 15m) ------

def _escalate_then_tamper(w: World, tamper_at: float, shell_at: float = 0, target2="web-01",
                          actor2="alice"):
    w.action("shell", at(shell_at), account="root", actor="alice", action="sudo.command",
             detail="/bin/bash")
    w.action("tamper", at(tamper_at), account="root", actor=actor2, target=target2,
             action="exec", detail="auditctl -D")


def test_ordered_found_and_members_in_order(new_world):
    w = new_world()
    _escalate_then_tamper(w, 600)
    assert sequences(w, "seq_root_shell_then_audit_off") == [["shell", "tamper"]]


def test_ordered_reversed_is_no_sequence(new_world):
    w = new_world()
    _escalate_then_tamper(w, tamper_at=0, shell_at=60)
    assert sequences(w, "seq_root_shell_then_audit_off") == []


def test_ordered_timespan_bound_exact_and_one_second_past(new_world):
    w = new_world()
    _escalate_then_tamper(w, 900)
    assert sequences(w, "seq_root_shell_then_audit_off") == [["shell", "tamper"]]
    w = new_world()
    _escalate_then_tamper(w, 901)
    assert sequences(w, "seq_root_shell_then_audit_off") == []


@pytest.mark.parametrize("other", [{"target2": "db-01"}, {"actor2": "bob"}])
def test_ordered_other_group_is_no_sequence(new_world, other):
    w = new_world()
    _escalate_then_tamper(w, 60, **other)
    assert sequences(w, "seq_root_shell_then_audit_off") == []


def test_ordered_interleaved_noise_still_found(new_world):
    w = new_world()
    _escalate_then_tamper(w, 850)
    for i, (actor, target, detail) in enumerate([
            ("alice", "web-01", "ls -la /etc"), ("bob", "web-01", "auditctl -D"),
            ("alice", "db-01", "auditctl -D"), ("alice", "web-01", "systemctl status auditd"),
            ("alice", "web-01", "auditctl -l")]):
        w.action(f"noise{i}", at(100 + 150 * i), account="root", actor=actor, target=target,
                 action="exec", detail=detail)
    assert sequences(w, "seq_root_shell_then_audit_off") == [["shell", "tamper"]]


def test_ordered_same_second_is_not_after(new_world):
    w = new_world()
    _escalate_then_tamper(w, 0)
    assert sequences(w, "seq_root_shell_then_audit_off") == []


# --- temporal_ordered with a repeated step: five failures, then a success (15m) -----------

def _failures_then_success(w: World, times=(0, 60, 120, 180, 240), success_at=300, account="root",
                           target="web-01"):
    for i, t in enumerate(times):
        w.action(f"fail{i}", at(t), account="root", target="web-01", action="ssh.login_failed",
                 detail=f"password from 203.0.113.9 port {40000 + i}")
    w.action("ok", at(success_at), account=account, target=target, action="session.start",
             detail="password from 203.0.113.9 port 40100")


def test_failed_logins_then_success(new_world):
    w = new_world()
    _failures_then_success(w)
    assert sequences(w, "seq_failed_logins_then_success") == [
        ["fail0", "fail1", "fail2", "fail3", "fail4", "ok"]]


def test_failed_logins_success_first_or_too_few(new_world):
    w = new_world()
    _failures_then_success(w, success_at=-10)
    assert sequences(w, "seq_failed_logins_then_success") == []
    w = new_world()
    _failures_then_success(w, times=(0, 60, 120, 180))
    assert sequences(w, "seq_failed_logins_then_success") == []


def test_failed_logins_bound(new_world):
    w = new_world()
    _failures_then_success(w, success_at=900)
    assert sequences(w, "seq_failed_logins_then_success") == [
        ["fail0", "fail1", "fail2", "fail3", "fail4", "ok"]]
    w = new_world()
    _failures_then_success(w, success_at=901)
    assert sequences(w, "seq_failed_logins_then_success") == []


@pytest.mark.parametrize("other", [{"account": "alice"}, {"target": "db-01"}])
def test_failed_logins_other_group(new_world, other):
    w = new_world()
    _failures_then_success(w, **other)
    assert sequences(w, "seq_failed_logins_then_success") == []


def test_failed_logins_tightest_chain_kept_with_noise(new_world):
    w = new_world()
    _failures_then_success(w, times=(100, 160, 220, 280, 340), success_at=400)
    w.action("early", at(0), account="root", target="web-01", action="ssh.login_failed",
             detail="password from 203.0.113.9 port 39999")
    w.action("other", at(200), account="bob", target="web-01", action="ssh.login_failed",
             detail="password from 203.0.113.9 port 39998")
    w.action("cmd", at(250), account="root", target="web-01", action="exec", detail="id")
    assert sequences(w, "seq_failed_logins_then_success") == [
        ["fail0", "fail1", "fail2", "fail3", "fail4", "ok"]]


# --- event_count: five failed logins within 15m (group: account, target) --------------------

def _failures(w: World, times, account="root", target="web-01", prefix="f"):
    for i, t in enumerate(times):
        w.action(f"{prefix}{i}", at(t), account=account, target=target, action="login.failed",
                 detail="/usr/sbin/sshd from 203.0.113.9")


def test_burst_found_at_bound_and_not_past_it(new_world):
    w = new_world()
    _failures(w, (0, 100, 200, 300, 900))
    assert sequences(w, "seq_login_failures_burst") == [["f0", "f1", "f2", "f3", "f4"]]
    w = new_world()
    _failures(w, (0, 100, 200, 300, 901))
    assert sequences(w, "seq_login_failures_burst") == []


def test_burst_needs_five_in_one_group(new_world):
    w = new_world()
    _failures(w, (0, 10, 20, 30))
    _failures(w, (40,), target="db-01", prefix="g")
    _failures(w, (50,), account="bob", prefix="h")
    assert sequences(w, "seq_login_failures_burst") == []


def test_burst_with_noise_and_order_of_arrival(new_world):
    w = new_world()
    _failures(w, (300, 0, 200, 100, 400))           # written out of order
    w.action("ok", at(150), account="root", target="web-01", action="session.start")
    w.action("cmd", at(250), account="root", target="web-01", action="exec", detail="uptime")
    assert sequences(w, "seq_login_failures_burst") == [["f1", "f3", "f2", "f0", "f4"]]


# --- value_count: destructive commands on >= 3 hosts within 10m (group: account) ------------

def _wipes(w: World, spec):
    for i, (t, target, account) in enumerate(spec):
        w.action(f"d{i}", at(t), account=account, target=target, action="exec",
                 detail="rm -rf /var/lib/mysql")


def test_many_hosts_found_at_bound_and_not_past_it(new_world):
    w = new_world()
    _wipes(w, [(0, "db-01", "root"), (300, "db-02", "root"), (600, "db-03", "root")])
    assert sequences(w, "seq_destructive_on_many_hosts") == [["d0", "d1", "d2"]]
    w = new_world()
    _wipes(w, [(0, "db-01", "root"), (300, "db-02", "root"), (601, "db-03", "root")])
    assert sequences(w, "seq_destructive_on_many_hosts") == []


def test_many_hosts_counts_hosts_not_commands_and_groups_by_account(new_world):
    w = new_world()
    _wipes(w, [(0, "db-01", "root"), (10, "db-01", "root"), (20, "db-02", "root"),
               (30, "db-02", "root"), (40, "db-03", "alice")])
    assert sequences(w, "seq_destructive_on_many_hosts") == []


def test_many_hosts_mixed_rules_with_noise(new_world):
    w = new_world()
    w.action("d0", at(0), account="root", target="db-01", action="exec", detail="rm -rf /var/lib/mysql")
    w.action("n0", at(30), account="root", target="db-09", action="exec", detail="rm -rf /tmp/x")
    w.action("d1", at(60), account="root", target="db-02", action="exec",
             detail="dd if=/dev/zero of=/dev/sdb bs=1M")
    w.action("n1", at(90), account="root", target="db-08", action="exec", detail="ls /var/lib/mysql")
    w.action("d2", at(120), account="root", target="db-03", action="db.query",
             detail="DROP DATABASE billing;")
    assert sequences(w, "seq_destructive_on_many_hosts") == [["d0", "d1", "d2"]]


# --- temporal_ordered on target only: account created, then a login on that host (1h) -------

def test_new_account_then_login_same_host_only(new_world):
    w = new_world()
    w.action("add", at(0), account="root", actor="alice", action="exec",
             detail="useradd -m -G sudo mallory")
    w.action("login_other", at(60), account="mallory", target="db-01", action="session.start")
    w.action("login", at(900), account="mallory", action="session.start")
    assert sequences(w, "seq_account_command_then_login") == [["add", "login"]]
    w = new_world()
    w.action("add", at(0), account="root", action="exec", detail="useradd -m mallory")
    w.action("login", at(3601), account="mallory", action="session.start")
    w.action("before", at(-5), account="mallory", action="session.start")
    assert sequences(w, "seq_account_command_then_login") == []


def test_ordered_group_with_no_actor_on_either_side(new_world):
    # sources without an actor (generic rows without it): NULL groups with NULL, per target
    w = new_world()
    w.action("shell", at(0), account="root", action="sudo.command", detail="/bin/bash")
    w.action("tamper", at(60), account="root", action="exec", detail="auditctl -e 0")
    w.action("elsewhere", at(90), account="root", target="db-01", action="exec",
             detail="auditctl -D")
    assert sequences(w, "seq_root_shell_then_audit_off") == [["shell", "tamper"]]
