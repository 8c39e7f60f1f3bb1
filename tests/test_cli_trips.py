"""Issue 18 (sections 2 and 3): small things a user trips on. A denied approval reads as denied,
`pamcorr sources` is an aligned table, fetches check credentials before connecting, `verify`
checks the manifest's own arithmetic, ingest shows progress on a terminal only."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from correlate.cli import main


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("PAMCORR_DB", str(tmp_path / "t.duckdb"))

    def run(*args):
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    run.tmp = tmp_path
    return run


def test_a_denied_approval_says_it_was_denied_and_covers_nothing(cli, world):
    world.approval("PAM-10057", "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z",
                   requester="alice", approver="bob", status="denied")
    world.approval("PAM-1", "2026-11-16T13:00:00Z", "2026-11-16T14:00:00Z", approver="bob")
    world.action("a1", "2026-11-16T11:00:00Z")
    for kind, path in world.write().items():
        assert cli("ingest", "generic", "--kind", kind, path).exit_code == 0
    assert cli("correlate").exit_code == 0
    res = cli("scope", "alice", "--format", "json")
    assert res.exit_code == 0, res.output
    texts = {e["text"].split(":")[0]: e["text"] for e in json.loads(res.stdout)["events"]
             if e["kind"] == "approval"}
    denied = texts["approval PAM-10057 was denied (standard)"]
    assert "it covers nothing" in denied and "opens" not in denied
    assert "denied by bob" in denied and "approved by" not in denied
    assert texts["approval PAM-1 opens"].endswith("(standard, approved); approved by bob")


def test_sources_is_an_aligned_table(cli):
    lines = cli("sources").output.splitlines()
    assert lines[0].split() == ["source", "kinds", "description"]
    at = lines[0].index("description")
    assert len(lines) > 3
    for line in lines[1:]:
        name = line.split()[0]
        assert line[:at].rstrip().startswith(name)
        assert line[at - 2:at] == "  " and line[at] != " ", line   # every description starts here
    kinds_at = lines[0].index("kinds")
    assert {line[kinds_at - 2:kinds_at] for line in lines} == {"  "}


try:   # the local Jira/ServiceNow server that records every request (a fixture)
    from tests.ticket_server import ticket_server  # noqa: F401
except ImportError:
    ticket_server = None

needs_server = pytest.mark.skipif(ticket_server is None,
                                  reason="tests/ticket_server.py is not present")
CREDENTIALS = ("PAMCORR_JIRA_USER", "PAMCORR_JIRA_TOKEN", "PAMCORR_SNOW_USER",
               "PAMCORR_SNOW_TOKEN")


@pytest.fixture
def cited(cli, world, monkeypatch):
    """One approval citing a Jira key and one a ServiceNow change; no credentials set."""
    for name in CREDENTIALS:
        monkeypatch.delenv(name, raising=False)
    world.approval("A", "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z", ticket="OPS-1")
    world.approval("B", "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z", ticket="CHG0000001")
    world.action("a1", "2026-11-16T11:00:00Z")
    for kind, path in world.write().items():
        assert cli("ingest", "generic", "--kind", kind, path).exit_code == 0
    return cli


@needs_server
@pytest.mark.parametrize("system, env, message", [
    ("jira", {}, "jira: no credentials: set PAMCORR_JIRA_TOKEN"),
    ("jira", {"PAMCORR_JIRA_USER": "bot@example.com", "PAMCORR_JIRA_TOKEN": "  "},
     "PAMCORR_JIRA_USER is set but PAMCORR_JIRA_TOKEN is empty"),
    ("servicenow", {"PAMCORR_SNOW_TOKEN": ""}, "servicenow: no credentials: set "
     "PAMCORR_SNOW_TOKEN"),
    ("servicenow", {"PAMCORR_SNOW_USER": "svc"}, "PAMCORR_SNOW_USER is set but "
     "PAMCORR_SNOW_TOKEN"),
])
def test_fetch_without_credentials_is_exit_2_before_any_request(cited, ticket_server,  # noqa: F811
                                                                 monkeypatch, system, env,
                                                                 message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    res = cited("fetch", system, "--url", ticket_server.url)
    assert res.exit_code == 2, res.output
    assert message in res.output and "nothing was sent to" in res.output
    assert "Traceback" not in res.output
    assert ticket_server.requests == []


@needs_server
def test_fetch_with_a_token_alone_still_connects(cited, ticket_server, monkeypatch):  # noqa: F811
    monkeypatch.setenv("PAMCORR_JIRA_TOKEN", "a-personal-access-token")
    cited("fetch", "jira", "--url", ticket_server.url, "--flavour", "datacenter")
    assert ticket_server.requests      # the bearer token is enough to try


@needs_server
def test_weekly_run_checks_ticket_credentials_before_ingesting(ticket_server,  # noqa: F811
                                                               tmp_path, monkeypatch, world):
    for name in CREDENTIALS:
        monkeypatch.delenv(name, raising=False)
    world.folder = tmp_path / "drop"
    world.approval("A", "2026-11-17T10:00:00Z", "2026-11-17T12:00:00Z", ticket="OPS-1")
    world.action("a1", "2026-11-17T11:00:00Z")
    world.write()
    (tmp_path / "pamcorr.toml").write_text(
        'db = "t.duckdb"\noutput = "out"\n[[sources]]\nconnector = "generic"\n'
        'kind = "approvals"\npaths = ["drop/approvals.csv"]\n'
        f'[tickets]\nsystem = "jira"\nurl = "{ticket_server.url}"\n')
    res = CliRunner().invoke(main, ["run", "--config", str(tmp_path / "pamcorr.toml"),
                                    "--week", "2026-W47"])
    assert res.exit_code == 2, res.output
    assert "PAMCORR_JIRA_TOKEN" in res.output and ticket_server.requests == []
    assert not (tmp_path / "t.duckdb").exists()     # nothing ingested either


@pytest.fixture
def bundle(cli, world):
    """An exported bundle whose inputs have quarantined rows, and a way to edit its manifest."""
    world.approval("A", "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z")
    world.action("ok", "2026-11-16T11:00:00Z")
    world.action("bad", "2026-11-16T15:00:00Z", account="mallory")
    files = world.write()
    with open(files["activity"], "a") as fh:
        fh.write('{"event_id": "no-ts", "account": "x", "target": "y"}\n')
    for kind, path in files.items():
        assert cli("ingest", "generic", "--kind", kind, path).exit_code == 0
    assert cli("correlate").exit_code == 0
    out = cli.tmp / "b"
    assert cli("export", "-o", out).exit_code == 0

    def edit(change):
        m = json.loads((out / "manifest.json").read_text())
        change(m)
        (out / "manifest.json").write_text(json.dumps(m))    # no file of it hashes the manifest
        return CliRunner().invoke(main, ["verify", str(out)])
    edit.out = out
    return edit


def _activity(m: dict) -> int:
    return next(i for i, e in enumerate(m["inputs"]) if e["kind"] == "activity")


def test_verify_checks_the_manifests_own_arithmetic(bundle):
    res = bundle(lambda m: None)
    assert res.exit_code == 0 and "arithmetic" not in res.output
    m = json.loads((bundle.out / "manifest.json").read_text())
    i = _activity(m)
    assert m["inputs"][i]["quarantined"] == 1

    def drop_quarantined(m):     # the row nobody should know about, gone from the file entry
        m["inputs"][_activity(m)]["quarantined"] = 0
    res = bundle(drop_quarantined)
    assert res.exit_code == 1, res.output
    assert (f"arithmetic: inputs[{i}] (generic activity {m['inputs'][i]['file']}): read 3 != "
            f"accepted 2 + ignored 0 + quarantined 0 + duplicates 0 (= 2)") in res.output
    assert res.output.rstrip().endswith("FAILED")


def test_verify_catches_totals_that_disagree_with_their_files(bundle):
    def balanced_but_not_the_files(m):       # each entry balances; the sums do not
        i = _activity(m)
        m["inputs"][i]["quarantined"] = 0
        m["inputs"][i]["read"] = 2
    res = bundle(balanced_but_not_the_files)
    assert res.exit_code == 1
    assert "arithmetic: completeness.sources[" in res.output
    assert "(generic activity): read 3 but its input files sum to 2" in res.output

    def findings_count(m):
        m["findings"] = 99
    res = bundle(findings_count)
    assert res.exit_code == 1 and "arithmetic: findings 99 but findings.csv holds 2 row(s)" \
        in res.output


def _ingest_with_stderr(tmp_path, files, *extra, tty: bool) -> tuple[int, str, str]:
    """`pamcorr ingest generic --kind activity FILES` in a subprocess, stderr on a pseudo-
    terminal (tty) or a pipe; (exit code, stdout, stderr)."""
    return _pamcorr(tmp_path, ["ingest", "generic", "--kind", "activity", *files, *extra], tty)


def _pamcorr(tmp_path, command, tty: bool) -> tuple[int, str, str]:
    """`pamcorr COMMAND...` in a subprocess, stderr on a pseudo-terminal (tty) or a pipe."""
    import os
    import pty
    import subprocess
    import sys
    env = {**os.environ, "PAMCORR_DB": str(tmp_path / "p.duckdb"), "COLUMNS": "120"}
    args = [sys.executable, "-c", "from correlate.cli import main; main()", *map(str, command)]
    if not tty:
        done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
        return done.returncode, done.stdout, done.stderr
    master, slave = pty.openpty()
    import fcntl
    import struct
    import termios
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    err = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:          # the terminal closed: the process is gone
            break
        if not chunk:
            break
        err += chunk
    out = proc.stdout.read().decode()
    os.close(master)
    return proc.wait(timeout=300), out, err.decode(errors="replace")


@pytest.fixture
def feeds(tmp_path):
    paths = []
    for n in range(3):
        path = tmp_path / f"feed-{n}.jsonl"
        path.write_text("".join(json.dumps({"event_id": f"{n}-{i}", "ts": "2026-11-16T11:00:00Z",
                                            "account": "alice", "target": "web-01"}) + "\n"
                                for i in range(2000)))
        paths.append(path)
    return paths


def test_ingest_shows_a_progress_bar_on_a_terminal(tmp_path, feeds):
    code, out, err = _ingest_with_stderr(tmp_path, feeds, tty=True)
    assert code == 0, err
    assert "ingest: 100%|" in err                   # tqdm: bytes done of the total
    assert "3/3 file(s)" in err and "B/s" in err and "<00:00" in err   # files, rate, ETA
    assert "ingesting [" not in err                  # the bar instead of a line per file
    assert out.count("read 2000 = accepted 2000") == 3   # results stay on stdout, no bar there


def test_no_progress_bar_when_piped_or_asked_not_to(tmp_path, feeds):
    code, out, err = _ingest_with_stderr(tmp_path, feeds, tty=False)
    assert code == 0
    assert "%|" not in err and "\r" not in err
    assert err.count("ingesting [") == 3              # a plain line per file for logs
    code, out, err = _ingest_with_stderr(tmp_path, feeds, "--no-progress", "--reingest",
                                         tty=True)
    assert code == 0 and out.count("read 2000") == 3
    assert "%|" not in err and "ingesting" not in err


def test_weekly_run_shows_progress_on_a_terminal_unless_told_not_to(tmp_path, feeds):
    config = tmp_path / "pamcorr.toml"
    config.write_text('db = "w.duckdb"\noutput = "out"\n[[sources]]\nname = "feeds"\n'
                      'connector = "generic"\nkind = "activity"\npaths = ["feed-*.jsonl"]\n')
    command = ["run", "--config", config, "--week", "2026-W47"]
    code, out, err = _pamcorr(tmp_path, command, tty=True)
    assert code == 0, err
    assert "ingest: 100%|" in err and "3/3 file(s)" in err
    assert out.splitlines()[-1].startswith("output: ")        # the summary stays on stdout
    code, out, err = _pamcorr(tmp_path, [*command, "--no-progress"], tty=True)
    assert code == 0 and "%|" not in err and "ingesting" not in err
