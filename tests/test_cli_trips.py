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
