"""Shared fixtures: a small world written as generic files and ingested through the real store."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from connectors.base import Options
from connectors.generic import GenericConnector
from correlate.engine import Policy, correlate
from correlate.ingest import ingest
from correlate.store import Store

SHARED = Path(__file__).resolve().parents[2] / "shared" / "vendor-samples"

APPROVAL_FIELDS = ["approval_id", "account", "target", "start", "end", "ticket", "requester",
                   "approver", "kind", "status", "revoked_at"]
TICKET_FIELDS = ["ticket_id", "status", "opened", "closed", "planned_start", "planned_end",
                 "assignee", "reporter", "components", "work_start", "work_end"]


class World:
    """Approvals, tickets, history and actions for one test; `judge()` returns verdicts by event."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.approvals: list[dict] = []
        self.tickets: list[dict] = [{"ticket_id": "CHG-1", "status": "approved",
                                     "opened": "2026-01-01T00:00:00Z"}]
        self.history: list[dict] = []
        self.actions: list[dict] = []
        self.identities: list[dict] = []
        self.targets: list[dict] = []

    def identity(self, alias, identity, kind="human", owner=""):
        self.identities.append({"alias": alias, "identity": identity, "kind": kind, "owner": owner})

    def target(self, name, alias="", group=""):
        self.targets.append({"name": name, "alias": alias, "group": group})

    def approval(self, approval_id, start, end, account="alice", target="web-01",
                 ticket="CHG-1", **extra):
        self.approvals.append({"approval_id": approval_id, "account": account, "target": target,
                               "start": start, "end": end, "ticket": ticket or "", **extra})

    def ticket(self, ticket_id, opened="2026-01-01T00:00:00Z", status="approved", **extra):
        self.tickets.append({"ticket_id": ticket_id, "opened": opened, "status": status, **extra})

    def transition(self, ticket_id, ts, status):
        self.history.append({"ticket_id": ticket_id, "ts": ts, "status": status})

    def action(self, event_id, ts, account="alice", target="web-01", **extra):
        self.actions.append({"event_id": event_id, "ts": ts, "account": account,
                             "target": target, **extra})

    def write(self, order=None) -> dict[str, Path]:
        self.folder.mkdir(parents=True, exist_ok=True)
        files = {}
        for kind, rows, fields in (("approvals", self.approvals, APPROVAL_FIELDS),
                                   ("tickets", self.tickets, TICKET_FIELDS),
                                   ("ticket_history", self.history, ["ticket_id", "ts", "status"]),
                                   ("identities", self.identities,
                                    ["alias", "identity", "kind", "owner"]),
                                   ("targets", self.targets, ["name", "alias", "group"])):
            path = self.folder / f"{kind}.csv"
            with open(path, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=fields)
                w.writeheader()
                for row in (order(rows) if order else rows):
                    w.writerow(row)
            files[kind] = path
        path = self.folder / "activity.jsonl"
        with open(path, "w") as fh:
            for row in (order(self.actions) if order else self.actions):
                fh.write(json.dumps(row) + "\n")
        files["activity"] = path
        return files

    def store(self, db=":memory:", order=None, options=None) -> Store:
        files = self.write(order)
        store = Store(db)
        for kind, path in files.items():
            for r in ingest(store, GenericConnector(), kind, [str(path)], options or Options()):
                assert r.balanced, r
        return store

    def judge(self, grace=300, lookaround=7 * 86400, order=None, start=None, end=None,
              extra="", change_window="planned") -> dict:
        store = self.store(order=order)
        run = correlate(store, start, end, Policy(grace, lookaround, change_window))
        self.checks = store.query("SELECT approval_id, check_id FROM approval_checks "
                                  "WHERE family = 'ticket' "
                                  "AND run_id = ? ORDER BY 1, 2", [run])
        rows = store.query_dicts(
            "SELECT a.event_id, f.verdict, f.status, f.approval_id, f.ticket_id, f.gap_seconds, "
            f"f.reason{extra} FROM findings f JOIN activity a USING (act_id) WHERE run_id = ?", [run])
        store.close()
        return {r.pop("event_id"): r for r in rows}


@pytest.fixture
def world(tmp_path) -> World:
    return World(tmp_path / "world")


@pytest.fixture
def shared_samples() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"vendor samples not found at {SHARED} (../shared/vendor-samples beside the repo)")
    return SHARED


@pytest.fixture(scope="session")
def spark():
    """One local[2] SparkSession for the whole test session (tests/test_spark_engine.py).

    Skipped with the reason where pyspark, pyarrow or Java is missing; under CI=true that is a
    failure instead: .ci/run installs them, and these tests must run there."""
    import os
    import shutil
    missing = []
    for module in ("pyspark", "pyarrow"):
        try:
            __import__(module)
        except ImportError:
            missing.append(f"{module} (pip install 'pamcorr[spark]')")
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        missing.append("java (apt-get install openjdk-17-jre-headless)")
    if missing:
        why = "Spark engine tests need " + ", ".join(missing)
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(why + " (CI=true: not skipped)")
        pytest.skip(why)
    from correlate.spark_engine import spark_session
    session = spark_session("local[2]", app="pamcorr-tests")
    yield session
    session.stop()
