"""Outcome (issue 17 §1, §2): a failed attempt keeps its row but is not judged as work done."""

from __future__ import annotations

import csv
import io

import json

from click.testing import CliRunner

from connectors.generic import GenericConnector
from correlate import queries
from correlate.cli import main
from correlate.engine import Policy, correlate
from reports.export import WRITERS
from reports.gaps import gap_report_context, write_gap_report
from reports.ocsf import ocsf_finding

S, E = "2026-11-16T10:00:00Z", "2026-11-16T12:00:00Z"
IN, OUT = "2026-11-16T11:00:00Z", "2026-11-16T20:00:00Z"


def judged(world):
    return world.judge(extra=", f.outcome")


def test_failed_action_inside_an_approval_is_attempt_failed(world):
    world.approval("A", S, E)
    world.action("e", IN, outcome="failure")
    got = judged(world)["e"]
    assert (got["verdict"], got["status"], got["outcome"]) == ("attempt_failed", "INFO", "failure")
    assert got["approval_id"] == "A"        # the approval is still named
    assert got["reason"] == ("failed attempt, not judged as work done; as work done it would be "
                             "approved")


def test_failed_action_outside_any_approval_is_attempt_failed_not_unapproved(world):
    world.action("e", OUT, outcome="failure")
    world.action("ran", OUT, outcome="success", detail="x")
    got = judged(world)
    assert (got["e"]["verdict"], got["e"]["status"]) == ("attempt_failed", "INFO")
    assert got["e"]["reason"].endswith("would be unapproved: no applicable approval")
    assert (got["ran"]["verdict"], got["ran"]["status"], got["ran"]["outcome"]) == \
        ("unapproved", "FAIL", "success")


def test_failed_action_out_of_window_keeps_its_gap(world):
    world.approval("A", S, E)
    world.action("e", "2026-11-16T13:00:00Z", outcome="failure")
    got = judged(world)["e"]
    assert got["verdict"] == "attempt_failed" and got["gap_seconds"] == 3600
    assert "out_of_window" in got["reason"]


def test_unknown_or_missing_outcome_is_judged_as_today(world):
    world.approval("A", S, E)
    world.action("in_unknown", IN, outcome="unknown")
    world.action("in_none", IN, detail="other")
    world.action("out_unknown", OUT, outcome="Unknown")
    world.action("out_none", OUT, detail="other")
    got = judged(world)
    assert got["in_unknown"]["verdict"] == got["in_none"]["verdict"] == "approved"
    assert got["out_unknown"]["verdict"] == got["out_none"]["verdict"] == "out_of_window"
    assert got["in_unknown"]["outcome"] == "unknown" and got["in_none"]["outcome"] is None


def _run(world):
    store = world.store()
    run = correlate(store, policy=Policy())
    return store, run


def test_failed_attempts_counted_per_account_and_source_and_never_fail(world, tmp_path):
    world.action("f1", OUT, outcome="failure")
    world.action("f2", "2026-11-16T20:00:01Z", outcome="failure")
    world.action("f3", OUT, account="bob", outcome="failure")
    store, run = _run(world)
    assert queries.failed_attempts(store, run) == [
        {"account": "alice", "source": "generic", "n": 2},
        {"account": "bob", "source": "generic", "n": 1}]
    ctx = gap_report_context(store, run)
    assert ctx.failed_attempts_total == 3 and ctx.failing_total == 0
    assert all(w["verdict"] != "attempt_failed" for w in ctx.worst)
    html = write_gap_report(store, tmp_path / "r.html", run).read_text()
    assert 'id="failed-attempts"' in html and "<td>bob</td><td>generic</td>" in html
    rows = queries.findings(store, run)
    assert {f.outcome for f in rows} == {"failure"}
    store.close()


def test_cli_prints_attempts_apart_and_fail_on_ignores_them(world, tmp_path):
    world.action("f1", OUT, outcome="failure")
    world.write()
    db = str(tmp_path / "s.duckdb")
    runner = CliRunner()
    for kind in ("approvals", "tickets", "activity"):
        path = world.folder / (f"{kind}.csv" if kind != "activity" else "activity.jsonl")
        assert runner.invoke(main, ["ingest", "generic", "--kind", kind, str(path),
                                    "--db", db]).exit_code == 0
    res = runner.invoke(main, ["correlate", "--fail-on", "warn", "--db", db])
    assert res.exit_code == 0, res.output
    assert "failed attempts (attempt_failed, INFO, not judged as work done): 1" in res.output
    assert "alice (generic): 1" in res.output
    assert "attempt_failed" not in res.output.split("ticket checks")[0]
    res = runner.invoke(main, ["findings", "--format", "jsonl", "--db", db])
    assert json.loads(res.output)["outcome"] == "failure"
    res = runner.invoke(main, ["findings", "--status", "INFO", "--format", "csv", "--db", db])
    (cells,) = csv.DictReader(io.StringIO(res.output))      # then issue_key, exception
    assert cells["outcome"] == "failure" and list(cells)[-3:] == ["outcome", "issue_key", "exception"]
    res = runner.invoke(main, ["findings", "--db", db])
    assert "outcome" in res.output.splitlines()[0].split()


def test_exports_carry_outcome(world):
    world.action("f1", OUT, outcome="failure")
    world.action("s1", OUT, outcome="success", detail="y")
    store, run = _run(world)
    rows = {f.event_id: f for f in queries.findings(store, run)}
    store.close()
    out = io.StringIO()
    WRITERS["jsonl"](rows.values(), out)
    assert {json.loads(l)["outcome"] for l in out.getvalue().splitlines()} == {"failure", "success"}
    failed = ocsf_finding(rows["f1"])
    assert failed["severity"] == "Informational" and failed["status_code"] == "INFO"
    assert failed["unmapped"]["outcome_status_id"] == 2
    assert failed["unmapped"]["outcome_status"] == "Failure"
    assert ocsf_finding(rows["s1"])["unmapped"]["outcome_status"] == "Success"


def test_generic_outcome_field_is_validated(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"event_id": "1", "ts": OUT, "account": "a", "target": "t", "outcome": "FAILURE"},
        {"event_id": "2", "ts": OUT, "account": "a", "target": "t", "outcome": "ok"},
        {"event_id": "3", "ts": OUT, "account": "a", "target": "t", "outcome": " "},
        {"event_id": "4", "ts": OUT, "account": "a", "target": "t"}]) + "\n")
    store, result = _ingest(path)
    assert (result.accepted, result.quarantined) == (3, 1)
    assert result.reasons == {"invalid outcome: ok (success, failure or unknown)": 1}
    got = dict(store.query("SELECT event_id, outcome FROM activity"))
    assert got == {"1": "failure", "3": None, "4": None}


def test_generic_outcome_in_csv(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("event_id,ts,account,target,outcome\n1,%s,a,t,success\n2,%s,a,t,bad\n"
                    "3,%s,a,t,\n" % (OUT, OUT, OUT))
    store, result = _ingest(path)
    assert (result.accepted, result.quarantined) == (2, 1)
    assert dict(store.query("SELECT event_id, outcome FROM activity")) == {"1": "success",
                                                                          "3": None}


def _ingest(path):
    from connectors.base import Options
    from correlate.ingest import ingest
    from correlate.store import Store
    store = Store(":memory:")
    (result,) = ingest(store, GenericConnector(), "activity", [str(path)], Options())
    assert result.balanced, result
    return store, result


def test_reports_draw_failed_attempts_beside_failures(world, tmp_path):
    # alice fails (an unapproved action) and has failed attempts in the same session: the gap
    # report's timeline and the scope page draw the INFO marks without breaking
    from reports.scope import scope_context, write_scope
    world.action("ran", OUT, session_id="s1", detail="rm")
    world.action("f1", "2026-11-16T19:59:00Z", session_id="s1", outcome="failure")
    store, run = _run(world)
    ctx = gap_report_context(store, run)
    assert ctx.timelines and {m["status"] for m in ctx.timelines[0].marks} == {"FAIL", "INFO"}
    assert "attempt_failed" in write_gap_report(store, tmp_path / "g.html", run).read_text()
    sctx = scope_context(store, "alice")
    assert write_scope(sctx, tmp_path / "s.html").exists()
    store.close()
