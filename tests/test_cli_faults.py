"""The CLI under faults and hostile names: a file-size limit or full disk, a damaged bundle zip, a
file name holding a newline, and the exit codes of `correlate --fail-on`."""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
import zipfile

import pytest
from click.testing import CliRunner

from correlate.cli import main

FORGED = "fake.jsonl: read 9 = accepted 9 + quarantined 0 + duplicates 0"


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("PAMCORR_DB", str(tmp_path / "c.duckdb"))
    runner = CliRunner()

    def run(*args):
        return runner.invoke(main, list(map(str, args)), catch_exceptions=False)
    run.tmp = tmp_path
    return run


def load(cli, world):
    for kind, path in world.write().items():
        assert cli("ingest", "generic", "--kind", kind, path).exit_code == 0


# --- correlate --fail-on --------------------------------------------------------------------

CASES = {   # one action each, judged FAIL, WARN or PASS
    "FAIL": "2026-11-16T15:00:00Z",    # no window near: unapproved
    "WARN": "2026-11-16T12:02:00Z",    # 2 min after the window, inside the 5 min grace
    "PASS": "2026-11-16T11:00:00Z",    # inside the window
}


@pytest.mark.parametrize("only, fail_on, code", [
    ("FAIL", "warn", 3), ("WARN", "warn", 3), ("PASS", "warn", 0),
    ("FAIL", "fail", 3), ("WARN", "fail", 0), ("PASS", "fail", 0),
    ("FAIL", None, 0),
])
def test_correlate_fail_on_exit_codes(cli, world, only, fail_on, code):
    world.approval("A", "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z")
    world.action("e1", CASES[only])
    load(cli, world)
    res = cli("correlate", *(["--fail-on", fail_on] if fail_on else []))
    statuses = {line.split()[1] for line in res.output.splitlines()[1:]
                if "ticket checks" not in line and "detections:" not in line
                and "approval hygiene:" not in line}
    assert statuses == {only}                     # the case is what it says
    assert res.exit_code == code, res.output


# --- a file name holding a newline --------------------------------------------------------------

def test_file_name_with_newline_cannot_forge_a_summary_line(cli):
    name = f"act\n{FORGED}\n.jsonl"
    path = cli.tmp / name
    path.write_text('{"event_id":"e1","ts":"2026-11-16T10:00:00Z","account":"a","target":"t"}\n'
                    '{"event_id":"e2","ts":"not\\na time","account":"a","target":"t"}\n')
    res = cli("ingest", "generic", "--kind", "activity", path)
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert not any(line.startswith("fake.jsonl") for line in lines + res.stderr.splitlines())
    assert lines[0] == (f"{cli.tmp}/act\\n{FORGED}\\n.jsonl: read 2 = accepted 1 + ignored 0 + quarantined 1 "
                        f"+ duplicates 0")
    assert len(lines) == 2 and lines[1].startswith("    quarantined 1: ")
    assert "act\\nfake.jsonl" in res.stderr        # the progress line too


def test_file_name_with_newline_in_an_error(cli):
    path = cli.tmp / f"bad\n{FORGED}\n.csv"
    path.write_text("nothing,here\n1,2\n")
    res = cli("ingest", "generic", "--kind", "approvals", path)
    assert res.exit_code == 1 and "Traceback" not in res.output
    (error,) = [line for line in res.stderr.splitlines() if not line.startswith("ingesting ")]
    assert error.startswith("Error: ") and "bad\\nfake.jsonl" in error and res.stdout == ""
    res = cli("ingest", "generic", "--kind", "approvals", cli.tmp / f"gone\n{FORGED}.csv")
    assert res.exit_code == 1 and len(res.output.splitlines()) == 1 and "gone\\n" in res.output


def test_findings_table_escapes_control_characters(cli, world):
    world.action("e1", "2026-11-16T15:00:00Z", account=f"eve\n{FORGED}", target="t\u202e")
    load(cli, world)
    cli("correlate")
    out = cli("findings").output
    assert len(out.splitlines()) == 2 and "eve\\nfake.jsonl" in out and "t<U+202E>" in out


# --- a damaged bundle zip ------------------------------------------------------------------------

@pytest.fixture
def bundle(cli, world):
    world.approval("A", "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z")
    for i in range(40):
        world.action(f"e{i}", f"2026-11-16T11:{i:02}:00Z", detail=f"systemctl restart app-{i}")
    load(cli, world)
    assert cli("correlate").exit_code == 0
    z = cli.tmp / "b.zip"
    assert cli("export", "-o", z).exit_code == 0
    return z


def verify(path):
    res = CliRunner().invoke(main, ["verify", str(path)], catch_exceptions=False)
    assert "Traceback" not in res.output
    return res


def flip_inside(z, member: str, out) -> None:
    """Invert bytes in the middle of `member`'s compressed data."""
    data = bytearray(z.read_bytes())
    with zipfile.ZipFile(z) as zf:
        info = zf.getinfo(member)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for k in range(info.compress_size // 3, info.compress_size // 3 + 8):
        data[start + k] ^= 0xFF
    out.write_bytes(bytes(data))


@pytest.mark.parametrize("member", ["findings.jsonl", "manifest.json"])
def test_verify_names_a_member_whose_bytes_were_flipped(bundle, member):
    bad = bundle.with_name("flipped.zip")
    flip_inside(bundle, member, bad)
    res = verify(bad)
    assert res.exit_code == 1
    assert f"damaged: {member}" in res.output and res.output.splitlines()[-1] == "FAILED"


def test_verify_of_a_truncated_zip_fails(bundle):
    cut = bundle.with_name("cut.zip")
    cut.write_bytes(bundle.read_bytes()[: bundle.stat().st_size // 2])
    res = verify(cut)
    assert res.exit_code == 1 and "damaged: " in res.output and "cut.zip" in res.output
    assert res.output.splitlines()[-1] == "FAILED"


def test_verify_of_a_file_that_is_not_a_zip_fails(tmp_path):
    other = tmp_path / "notes.txt"
    other.write_text("not a bundle\n")
    res = verify(other)
    assert res.exit_code == 1 and "notes.txt is not a readable zip" in res.output
    assert res.output.splitlines()[-1] == "FAILED"


def test_verify_of_a_chain_whose_predecessor_is_damaged(cli, bundle):
    assert cli("export", "-o", cli.tmp / "b2.zip", "--previous", bundle).exit_code == 0
    bundle.write_bytes(bundle.read_bytes()[:100])
    res = verify(cli.tmp / "b2.zip")
    assert res.exit_code == 1 and "chain: damaged: " in res.output and "b.zip" in res.output


def test_verify_escapes_member_names(bundle):
    with zipfile.ZipFile(bundle, "a") as zf:
        zf.writestr("x\nOK", b"x")
    res = verify(bundle)
    assert res.exit_code == 1 and "extra: x\\nOK" in res.output
    assert res.output.splitlines().count("OK") == 0


def test_export_previous_that_is_damaged_is_a_message(cli, bundle):
    bundle.write_bytes(b"PK\x03\x04 cut")
    res = cli("export", "-o", cli.tmp / "b3", "--previous", bundle)
    assert res.exit_code == 1 and "b.zip is not a readable zip" in res.output


# --- a file-size limit (ulimit -f) or a full disk ------------------------------------------------

def pamcorr_limited(args, limit: int, env_db):
    """Run pamcorr in a child whose files may not grow past `limit` bytes (SIGXFSZ ignored, so a
    write fails with EFBIG instead of killing the process)."""
    def limit_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return subprocess.run([sys.executable, "-c", "from correlate.cli import main; main()",
                           *map(str, args)], preexec_fn=limit_files, capture_output=True,
                          text=True, env={**os.environ, "PAMCORR_DB": str(env_db)},
                          timeout=300)


def big_world(world, n=1500):
    world.approval("A", "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z")
    for i in range(n):
        world.action(f"e{i}", f"2026-11-16T{i % 24:02}:{i % 60:02}:{i % 59:02}Z",
                     account=f"user{i % 40}", detail=f"{i} " + "x" * 200)


def test_ingest_past_a_file_size_limit_is_one_line_and_keeps_the_store(cli, world):
    big_world(world)
    files = world.write()
    db = cli.tmp / "c.duckdb"
    assert cli("ingest", "generic", "--kind", "approvals", files["approvals"]).exit_code == 0
    res = pamcorr_limited(["ingest", "generic", "--kind", "activity", files["activity"]],
                          100_000, db)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    (message,) = [l for l in res.stderr.splitlines() if l.startswith("Error:")]
    assert "could not write" in message and str(db) in message and "file-size limit" in message
    res = cli("ingest", "generic", "--kind", "activity", files["activity"])   # nothing half-kept
    assert res.exit_code == 0 and "read 1500 = accepted 1500" in res.output


@pytest.mark.parametrize("command, target", [("report", "g.html"), ("export", "b"),
                                             ("export", "b.zip")])
def test_report_and_export_past_a_file_size_limit(cli, world, command, target):
    big_world(world, 300)
    load(cli, world)
    assert cli("correlate").exit_code == 0
    out = cli.tmp / target
    args = ["report", "gaps", "-o", out] if command == "report" else ["export", "-o", out]
    res = pamcorr_limited(args, 8192, cli.tmp / "c.duckdb")
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert len(res.stderr.splitlines()) == 1
    assert f"could not write {out}" in res.stderr and "file-size limit" in res.stderr
    assert not out.exists() and [p.name for p in cli.tmp.iterdir() if p.name.startswith(".")] == []
    assert cli("findings", "--format", "jsonl").output.count("\n") == 300   # store intact
    res = cli(*args)                                                         # and it works after
    assert res.exit_code == 0 and out.exists()


def test_full_disk_on_a_report_is_one_line(cli, world, monkeypatch):
    world.action("e1", "2026-11-16T15:00:00Z")
    load(cli, world)
    cli("correlate")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr("reports.render.os.replace", full)
    res = cli("report", "gaps", "-o", cli.tmp / "g.html")
    assert res.exit_code == 1 and len(res.output.splitlines()) == 1
    assert f"could not write {cli.tmp / 'g.html'}: No space left on device" in res.output
