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


# --- 2. a file name with glob characters names that file ------------------------------------

GLOB_NAMES = ["act[1].jsonl", "a*b.jsonl", "q?.jsonl", "c[!1].jsonl", "d[[]x].jsonl"]
LOOKALIKES = ["act1.jsonl", "axb.jsonl", "qq.jsonl", "c2.jsonl", "d[x].jsonl"]


@pytest.mark.parametrize("name", ["x.jsonl", "x.csv"] + GLOB_NAMES + ["e[1].csv", "f*.csv"])
def test_duckdb_readers_open_an_escaped_name_literally(tmp_path, name):
    """What DuckDB supports: `[c]` in a pattern matches c only, in read_json and read_csv."""
    from correlate.ingest.files import duckdb_path

    (tmp_path / name).write_text('{"a": "mine"}\n')
    for other in ["act1.jsonl", "axb.jsonl", "qq.jsonl", "c2.jsonl", "e1.csv", "fx.csv"]:
        (tmp_path / other).write_text('{"a": "other"}\n')
    con = duckdb.connect()
    path = duckdb_path(str(tmp_path / name))
    assert con.execute("SELECT a FROM read_json($p)", {"p": path}).fetchall() == [("mine",)]
    assert con.execute("SELECT * FROM read_csv($p, header=false, delim='|', quote='')",
                       {"p": path}).fetchall() == [('{"a": "mine"}',)]


def test_duckdb_misreads_an_escaped_gz_name_with_a_question_mark(tmp_path):
    """Why such names are read through a link: with `?` DuckDB does not see `.gz`."""
    from correlate.ingest.files import duckdb_path

    (tmp_path / "q?.csv.gz").write_bytes(gzip.compress(b"mine\n"))
    con = duckdb.connect()
    with pytest.raises(duckdb.Error):
        con.execute("SELECT * FROM read_csv($p, header=false, columns={'a': 'VARCHAR'})",
                    {"p": duckdb_path(str(tmp_path / "q?.csv.gz"))}).fetchall()


@pytest.mark.parametrize("name", ["b\\[1].jsonl.gz", "q?.jsonl.gz", "a*b.jsonl", "c[1].csv"])
def test_names_duckdb_cannot_take_as_a_pattern_are_read_too(cli, tmp_path, name):
    for lookalike in ("b\\11.jsonl.gz", "qq.jsonl.gz", "axb.jsonl", "c1.csv"):
        _jsonl(tmp_path / lookalike, [_rec("OTHER")])
    text = json.dumps(_rec("MINE")) + "\n"
    if name.endswith(".csv"):
        text = "event_id,ts,account,target\nMINE,2026-11-16T10:00:00Z,alice,web-01\n"
    data = text.encode()
    (tmp_path / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    cli("ingest", "generic", "--kind", "activity", tmp_path / name)
    assert _ids_by_file(cli) == {name: ["MINE"]}


def _ids_by_file(cli) -> dict:
    rows = cli.rows("SELECT l.file, a.event_id FROM activity a JOIN ingest_log l USING "
                    "(ingest_id) ORDER BY 1, 2")
    out: dict = {}
    for file, event_id in rows:
        out.setdefault(file.rsplit("/", 1)[-1], []).append(event_id)
    return out


def _named_files(tmp_path, names, folder=None):
    folder = folder or tmp_path
    folder.mkdir(exist_ok=True)
    for i, name in enumerate(names):
        _jsonl(folder / name, [_rec(f"ID-{name}", account=f"user{i}")])


@pytest.mark.parametrize("name", GLOB_NAMES)
def test_a_file_named_with_glob_characters_is_read_not_a_lookalike(cli, tmp_path, name):
    _named_files(tmp_path, GLOB_NAMES + LOOKALIKES)
    cli("ingest", "generic", "--kind", "activity", tmp_path / name)
    assert _ids_by_file(cli) == {name: [f"ID-{name}"]}


def test_a_folder_of_glob_named_files_stores_each_file_under_its_own_name(cli, tmp_path):
    _named_files(tmp_path, GLOB_NAMES + LOOKALIKES, tmp_path / "in")
    cli("ingest", "generic", "--kind", "activity", tmp_path / "in")
    assert _ids_by_file(cli) == {n: [f"ID-{n}"] for n in GLOB_NAMES + LOOKALIKES}


def test_a_users_glob_is_expanded_once(cli, tmp_path):
    _named_files(tmp_path, GLOB_NAMES + LOOKALIKES, tmp_path / "in")
    cli("ingest", "generic", "--kind", "activity", str(tmp_path / "in" / "a*.jsonl"))
    assert _ids_by_file(cli) == {n: [f"ID-{n}"] for n in ("a*b.jsonl", "act1.jsonl",
                                                          "act[1].jsonl", "axb.jsonl")}


def test_a_csv_with_glob_characters_in_its_name_is_read(cli, tmp_path):
    (tmp_path / "appr1.csv").write_text("approval_id,account,target,start,end\n"
                                        "OTHER,bob,h,2026-11-16T10:00:00Z,2026-11-16T11:00:00Z\n")
    (tmp_path / "appr[1].csv").write_text("approval_id,account,target,start,end\n"
                                          "MINE,bob,h,2026-11-16T10:00:00Z,2026-11-16T11:00:00Z\n")
    cli("ingest", "generic", "--kind", "approvals", tmp_path / "appr[1].csv")
    assert cli.rows("SELECT approval_id FROM approvals") == [("MINE",)]


def test_cloudtrail_files_with_glob_characters_are_read_on_every_path(cli, tmp_path):
    folder = tmp_path / "trail"
    folder.mkdir()
    _trail(folder / "ct1.json.gz", [_ct("OTHER-1")])
    _trail(folder / "ct[1].json.gz", [_ct("MINE-1")])                            # one pass
    _trail(folder / "ct?.json.gz", [_ct("MINE-2"), _ct("BAD", time="never")])   # per file
    _trail(folder / "ctx.json.gz", [_ct("OTHER-2"), _ct("BAD2", time="never")])
    cli("ingest", "cloudtrail", folder / "ct[1].json.gz", folder / "ct?.json.gz")
    assert _ids_by_file(cli) == {"ct[1].json.gz": ["MINE-1"], "ct?.json.gz": ["MINE-2"]}


# --- 3 and limits: a damaged or exploding .gz is refused by name ----------------------------

def _crc_bad_gz(raw: bytes, altered: bytes) -> bytes:
    """A gzip member holding `altered` whose CRC-32 and length are those of `raw`."""
    body = zlib.compressobj(0, zlib.DEFLATED, -15)
    data = body.compress(altered) + body.flush()
    return (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + data
            + struct.pack("<II", zlib.crc32(raw), len(raw) & 0xFFFFFFFF))


SYSLOG = ("2026-11-16T10:00:00+00:00 web-01 sudo: alice : TTY=pts/0 ; PWD=/ ; USER=root ; "
          "COMMAND=/bin/ls\n")
GZ_INPUTS = {   # source, kind, name, text
    "generic": ("generic", "activity", "act.jsonl.gz", json.dumps(_rec("E1")) + "\n"),
    "cloudtrail": ("cloudtrail", None, "trail.json.gz",
                   json.dumps({"Records": [_ct("CT-1")]})),
    "syslog": ("syslog", None, "auth.log.gz", SYSLOG),
}


def _ingest_args(source, kind, path):
    return ["ingest", source] + (["--kind", kind] if kind else []) + [path]


@pytest.mark.parametrize("case", GZ_INPUTS)
def test_a_gz_failing_its_crc_is_refused_by_name(cli, tmp_path, case):
    source, kind, name, text = GZ_INPUTS[case]
    raw = text.encode()
    assert b"alice" in raw or b"111122223333" in raw
    altered = raw.replace(b"alice", b"clice").replace(b"111122223333", b"911122223333")
    (tmp_path / name).write_bytes(_crc_bad_gz(raw, altered))
    res = cli(*_ingest_args(source, kind, tmp_path / name), ok=False)
    assert res.exit_code == 1, res.output
    assert name in res.output and "CRC-32" in res.output and "Traceback" not in res.output
    assert cli.rows("SELECT count(*) FROM activity") == [(0,)]
    assert cli.rows("SELECT count(*) FROM ingest_log") == [(0,)]
    (tmp_path / name).write_bytes(gzip.compress(raw))              # the good file is read
    cli(*_ingest_args(source, kind, tmp_path / name))
    assert cli.rows("SELECT count(*) FROM activity") == [(1,)]


@pytest.mark.parametrize("case", GZ_INPUTS)
def test_a_gz_past_the_expansion_limit_is_refused_by_name(cli, tmp_path, monkeypatch, case):
    source, kind, name, text = GZ_INPUTS[case]
    if case == "cloudtrail":
        text = json.dumps({"Records": [_ct(f"CT-{i}") for i in range(6000)]})
    else:
        text = text * (2_000_000 // len(text))
    (tmp_path / name).write_bytes(gzip.compress(text.encode()))
    monkeypatch.setenv("PAMCORR_MAX_INFLATE_SIZE", "1MiB")
    res = cli(*_ingest_args(source, kind, tmp_path / name), ok=False)
    assert res.exit_code == 1, res.output
    assert name in res.output and "expands past 1,048,576 bytes" in res.output
    assert cli.rows("SELECT count(*) FROM ingest_log") == [(0,)]
    monkeypatch.setenv("PAMCORR_MAX_INFLATE_SIZE", "3MiB")
    cli(*_ingest_args(source, kind, tmp_path / name))


def test_a_gzip_bomb_stops_at_the_ratio_limit(cli, tmp_path, monkeypatch):
    line = (json.dumps(_rec("E1")) + "\n").encode()
    bomb = tmp_path / "bomb.jsonl.gz"
    bomb.write_bytes(gzip.compress(line * (70 * (1 << 20) // len(line)), 9))
    assert bomb.stat().st_size * 100 < 64 << 20      # over 100 x its size and the 64 MiB floor
    res = cli("ingest", "generic", "--kind", "activity", bomb, ok=False)
    assert res.exit_code == 1 and "bomb.jsonl.gz" in res.output and "gzip bomb" in res.output
    monkeypatch.setenv("PAMCORR_MAX_INFLATE_RATIO", "many")
    res = cli("ingest", "generic", "--kind", "activity", bomb, ok=False)
    assert res.exit_code == 1 and "PAMCORR_MAX_INFLATE_RATIO='many'" in res.output


def test_gzip_members_are_read(cli, tmp_path):
    path = tmp_path / "m.jsonl.gz"
    path.write_bytes(gzip.compress((json.dumps(_rec("E1")) + "\n").encode())
                     + gzip.compress((json.dumps(_rec("E2")) + "\n").encode()))
    res = cli("ingest", "generic", "--kind", "activity", path)
    assert "accepted 2" in res.output


# --- 13 and hidden files: what a folder holds but is not read is said, by name and count ----

def test_a_file_named_in_bytes_that_are_not_utf8_is_skipped_by_name(cli, tmp_path):
    import os

    folder = tmp_path / "in"
    folder.mkdir()
    _jsonl(folder / "good.jsonl", [_rec("E1")])
    bad = os.path.join(os.fsencode(folder), b"bad\xff.jsonl")
    with open(bad, "w") as fh:
        fh.write(json.dumps(_rec("E2")) + "\n")
    res = cli("ingest", "generic", "--kind", "activity", folder)
    assert "bad\\xff.jsonl" in res.stderr and "not UTF-8" in res.stderr
    assert "skipped: " in res.stdout and "bad\\xff.jsonl" in res.stdout
    assert cli.rows("SELECT event_id FROM activity") == [("E1",)]
    res = cli("ingest", "generic", "--kind", "activity", os.fsdecode(bad), ok=False)
    assert res.exit_code == 1 and "bad\\xff.jsonl" in res.output and "not UTF-8" in res.output


def test_hidden_files_in_a_folder_are_counted_and_said(cli, tmp_path):
    folder = tmp_path / "in"
    (folder / ".git").mkdir(parents=True)
    _jsonl(folder / "good.jsonl", [_rec("E1")])
    _jsonl(folder / ".hidden.jsonl", [_rec("E2")])
    _jsonl(folder / ".git" / "x.jsonl", [_rec("E3")])
    res = cli("ingest", "generic", "--kind", "activity", folder)
    assert "2 hidden files not read" in res.stderr
    assert "skipped: " in res.stdout and "2 hidden files not read" in res.stdout
    assert cli.rows("SELECT event_id FROM activity") == [("E1",)]
    cli("ingest", "generic", "--kind", "activity", folder / ".hidden.jsonl")  # named: read
    assert cli.rows("SELECT count(*) FROM activity") == [(2,)]


# --- limits: a file that grew since its last ingest is read from where that one stopped -----

def _append(path, rows):
    with open(path, "a") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.parametrize("direct", [True, False])
def test_a_grown_file_is_read_from_where_it_was_left(cli, tmp_path, direct):
    path = tmp_path / "live.jsonl"
    _jsonl(path, [_rec("E1"), BAD, _rec("E2")])
    res = cli("ingest", "generic", "--kind", "activity", path)
    assert "read 3 = accepted 2 + ignored 0 + quarantined 1 + duplicates 0" in res.output
    old_size = path.stat().st_size
    # a clean tail takes the one-pass load, one with a bad record the staged path
    _append(path, [_rec("E3"), _rec("E1")] + ([] if direct else [{**BAD, "event_id": "BAD2"}]))
    res = cli("ingest", "generic", "--kind", "activity", path)
    tail = "read 2 = accepted 1 + ignored 0 + quarantined 0 + duplicates 1" if direct else \
        "read 3 = accepted 1 + ignored 0 + quarantined 1 + duplicates 1"
    assert tail in res.output, res.output
    assert cli.rows("SELECT line, reason LIKE 'unparseable%' FROM quarantine ORDER BY line") == \
        [(2, True)] + ([] if direct else [(6, True)])       # the first one kept once, lines true
    assert cli.rows("SELECT offset_bytes, first_line FROM ingest_log ORDER BY ingest_id") == \
        [(0, 1), (old_size, 4)]
    assert cli.rows("SELECT event_id, count(*) FROM activity GROUP BY 1 ORDER BY 1") == \
        [("E1", 1), ("E2", 1), ("E3", 1)]
    res = cli("ingest", "generic", "--kind", "activity", path)      # unchanged: skipped
    assert "already ingested" in res.output


def test_a_rewritten_file_is_read_whole(cli, tmp_path):
    path = tmp_path / "live.jsonl"
    _jsonl(path, [_rec("E1"), BAD])
    cli("ingest", "generic", "--kind", "activity", path)
    _jsonl(path, [_rec("E0"), _rec("E1"), BAD, _rec("E2")])      # not a prefix any more
    res = cli("ingest", "generic", "--kind", "activity", path)
    assert "read 4 = accepted 2 + ignored 0 + quarantined 1 + duplicates 1" in res.output
    assert cli.rows("SELECT offset_bytes FROM ingest_log ORDER BY ingest_id") == [(0,), (0,)]


def test_a_grown_file_cut_mid_line_or_with_a_header_is_read_whole(cli, tmp_path):
    path = tmp_path / "live.jsonl"
    path.write_text(json.dumps(_rec("E1")) + "\n" + json.dumps(_rec("E2")))   # no line end
    cli("ingest", "generic", "--kind", "activity", path)
    with open(path, "a") as fh:
        fh.write("\n" + json.dumps(_rec("E3")) + "\n")
    res = cli("ingest", "generic", "--kind", "activity", path)
    assert "read 3 = accepted 1 + ignored 0 + quarantined 0 + duplicates 2" in res.output
    csv_path = tmp_path / "live.csv"
    csv_path.write_text("event_id,ts,account,target\nC1,2026-11-16T10:00:00Z,a,h\n")
    cli("ingest", "generic", "--kind", "activity", csv_path)
    with open(csv_path, "a") as fh:
        fh.write("C2,2026-11-16T10:00:00Z,a,h\n")
    res = cli("ingest", "generic", "--kind", "activity", csv_path)
    assert "read 2 = accepted 1 + ignored 0 + quarantined 0 + duplicates 1" in res.output
