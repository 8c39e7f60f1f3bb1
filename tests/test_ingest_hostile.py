"""Hostile files through the real CLI (issue 16): one identity per stored action on every path,
literal file names, damaged and exploding .gz files, file names and folders that surprise."""

from __future__ import annotations

import gzip
import json
import struct
import zlib

import duckdb
import pytest
from click.testing import CliRunner

from correlate.cli import main


def _rec(event_id: str, ts: str = "2026-11-16T10:00:00Z", account: str = "alice") -> dict:
    return {"event_id": event_id, "ts": ts, "account": account, "target": "web-01",
            "action": "ssh.command", "detail": "ls"}


BAD = _rec("BAD", ts="not-a-time")   # quarantined: its file takes the staged path


def _jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def cli(tmp_path, monkeypatch):
    db = tmp_path / "t.duckdb"
    monkeypatch.setenv("PAMCORR_DB", str(db))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def run(*args, ok=True):
        res = runner.invoke(main, [str(a) for a in args], catch_exceptions=False)
        if ok:
            assert res.exit_code == 0, res.output
        return res

    def rows(sql, params=None):
        con = duckdb.connect(str(db), read_only=True)
        try:
            return con.execute(sql, params or []).fetchall()
        finally:
            con.close()

    run.rows = rows
    return run


def _counts(output: str) -> list[str]:
    return [line for line in output.splitlines() if ": read " in line]


# --- 1. an event repeated in a later file is a duplicate, whichever path each file took ------

FIRST_SECOND = {
    "staged then direct": ([_rec("E1"), BAD], [_rec("E1")]),
    "direct then staged": ([_rec("E1")], [_rec("E1"), BAD]),
    "direct then direct": ([_rec("E1")], [_rec("E1"), _rec("E3")]),
    "staged then staged": ([_rec("E1"), BAD], [_rec("E1"), {**BAD, "event_id": "BAD2"}]),
}


@pytest.mark.parametrize("order", FIRST_SECOND)
def test_an_event_repeated_in_a_later_file_is_one_row_and_a_duplicate(cli, tmp_path, order):
    first, second = FIRST_SECOND[order]
    cli("ingest", "generic", "--kind", "activity", _jsonl(tmp_path / "day1.jsonl", first))
    res = cli("ingest", "generic", "--kind", "activity", _jsonl(tmp_path / "day2.jsonl", second))
    assert "duplicates 1" in _counts(res.output)[0], res.output
    assert cli.rows("SELECT count(*) FROM activity WHERE event_id = 'E1'") == [(1,)]
    cli("correlate", ok=False)
    assert cli.rows("SELECT count(*) FROM findings f JOIN activity a USING (act_id) "
                    "WHERE a.event_id = 'E1'") == [(1,)]


def _trail(path, records) -> str:
    path.write_bytes(gzip.compress(json.dumps({"Records": records}).encode()))
    return str(path)


def _ct(event_id: str, time: str = "2026-03-02T10:00:00Z") -> dict:
    return {"eventVersion": "1.08", "eventID": event_id, "eventTime": time,
            "eventSource": "ec2.amazonaws.com", "eventName": "StopInstances",
            "awsRegion": "eu-west-1", "recipientAccountId": "111122223333",
            "userIdentity": {"type": "IAMUser", "userName": "alice",
                             "arn": "arn:aws:iam::111122223333:user/alice",
                             "accountId": "111122223333"}}


@pytest.mark.parametrize("staged_first", [True, False])
def test_cloudtrail_files_agree_on_repeats_across_paths(cli, tmp_path, staged_first):
    """The many-files path (one-pass and staged) and the per-file path share one identity."""
    bad = _ct("CT-BAD", time="not-a-time")
    staged = _trail(tmp_path / "a.json.gz", [_ct("CT-1"), bad])
    clean = _trail(tmp_path / "b.json.gz", [_ct("CT-1"), _ct("CT-2")])
    first, second = (staged, clean) if staged_first else (clean, staged)
    cli("ingest", "cloudtrail", first)
    res = cli("ingest", "cloudtrail", second)
    assert "duplicates 1" in _counts(res.output)[0], res.output
    assert cli.rows("SELECT count(*) FROM activity WHERE event_id = 'CT-1'") == [(1,)]
