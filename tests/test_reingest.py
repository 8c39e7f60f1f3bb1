"""`pamcorr ingest --reingest` (issue 17 §7): replace exactly one file's rows in one transaction;
a skipped file whose options differ from its first ingest says so and names the flag."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from connectors.base import Options
from connectors.generic import GenericConnector
from correlate.cli import main
from correlate.ingest import ingest
from correlate.store import Store

ROWS = [{"event_id": "e1", "ts": "2026-11-16T10:00:00", "account": "a", "target": "t"},
        {"event_id": "e2", "ts": "2026-11-16T11:00:00Z", "account": "a", "target": "t"},
        {"event_id": "e3", "ts": "2026-11-16T12:00:00", "account": "b", "target": "t"}]


@pytest.fixture
def files(tmp_path):
    act = tmp_path / "act.jsonl"
    act.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"event_id": "o1", "ts": "2026-11-16T10:00:00",
                                 "account": "c", "target": "t"}) + "\n")
    appr = tmp_path / "approvals.csv"
    appr.write_text("approval_id,account,target,start,end,ticket\n"
                    "A1,a,t,2026-11-16T09:00:00,2026-11-16T13:00:00,CHG-1\n"
                    "A2,a,t,2026-11-16T09:00:00Z,2026-11-16T13:00:00Z,CHG-1\n")
    return act, other, appr


def _ingest(store, path, kind="activity", reingest=False, **opts):
    (r,) = ingest(store, GenericConnector(), kind, [str(path)], Options(**opts),
                  reingest=reingest)
    assert r.balanced, r
    return r


def test_skip_says_when_options_differ(files):
    act, _, _ = files
    store = Store(":memory:")
    assert _ingest(store, act).quarantined == 2           # zone-less times, no --tz
    same = _ingest(store, act)
    assert same.skipped and same.note is None
    r = _ingest(store, act, tz="Europe/Berlin")
    assert r.skipped
    assert r.note == ("its first ingest ran with other options (no --tz; now --tz "
                      "Europe/Berlin): add --reingest to replace its rows")
    r = _ingest(store, act, extra={"dst": "later"})
    assert r.note.startswith("its first ingest ran with other options (none; now --option "
                             "dst=later)")


def test_reingest_replaces_exactly_that_files_rows(files):
    act, other, appr = files
    store = Store(":memory:")
    _ingest(store, act)
    _ingest(store, other, tz="UTC")
    _ingest(store, appr, kind="approvals")
    r = _ingest(store, act, reingest=True, tz="UTC")
    assert not r.skipped and (r.accepted, r.quarantined) == (3, 0)
    assert r.replaced == "-1 +3 activity rows, -2 +0 quarantined rows"
    assert sorted(e for (e,) in store.query("SELECT event_id FROM activity")) == \
        ["e1", "e2", "e3", "o1"]                           # the other file's row untouched
    assert store.scalar("SELECT count(*) FROM quarantine") == 1     # approvals.csv's A1
    logs = store.query("SELECT file, options FROM ingest_log ORDER BY ingest_id")
    assert [f for f, _ in logs].count(str(act)) == 1       # the old ingest_log row is gone
    assert json.loads(logs[-1][1])["tz"] == "UTC"
    # a second identical --reingest: same rows back
    assert _ingest(store, act, reingest=True, tz="UTC").replaced == "-3 +3 activity rows"
    store.close()


def test_reingest_of_approvals_replaces_them(files):
    _, _, appr = files
    store = Store(":memory:")
    _ingest(store, appr, kind="approvals")
    r = _ingest(store, appr, kind="approvals", reingest=True, tz="UTC")
    assert r.replaced == "-1 +2 approvals, -1 +0 quarantined rows"
    assert store.scalar("SELECT count(*) FROM approvals") == 2


def test_reingest_rolls_back_on_failure(files, monkeypatch):
    act, _, _ = files
    store = Store(":memory:")
    _ingest(store, act)
    import correlate.ingest.reingest as mod

    def boom(*a, **k):
        raise RuntimeError("disk gone")
    monkeypatch.setattr(mod, "describe", boom)
    with pytest.raises(RuntimeError):
        _ingest(store, act, reingest=True, tz="UTC")
    assert store.scalar("SELECT count(*) FROM activity") == 1
    assert store.scalar("SELECT count(*) FROM quarantine") == 2
    assert store.scalar("SELECT count(*) FROM ingest_log") == 1


def test_cli_names_reingest_and_prints_what_changed(files, tmp_path):
    act, _, _ = files
    db = str(tmp_path / "s.duckdb")
    runner = CliRunner(mix_stderr=False) if "mix_stderr" in CliRunner.__init__.__code__.co_varnames \
        else CliRunner()
    base = ["ingest", "generic", "--kind", "activity", str(act), "--db", db]
    assert runner.invoke(main, base).exit_code == 0
    res = runner.invoke(main, base + ["--tz", "UTC"])
    assert res.exit_code == 0
    assert "already ingested" in res.stderr and "add --reingest" in res.stderr
    res = runner.invoke(main, base + ["--tz", "UTC", "--reingest"])
    assert res.exit_code == 0, res.output
    assert "replaced: -1 +3 activity rows, -2 +0 quarantined rows" in res.stdout
