"""Lake-shaped inputs for the Spark engine tests: one folder of Parquet per kind.

`sample_week_lake` converts the bundled sample week; `generated_lake` writes a seeded corpus
with overlapping, nested, revoked, denied, glob and multi-alias windows, a skewed account and
repeated event ids. `embedded_findings` judges a lake with the embedded engine, for comparing.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pandas as pd

from connectors.base import Options
from connectors.generic import GenericConnector
from correlate.engine import Policy, correlate
from correlate.detect.run import DetectionSettings
from correlate.ingest import ingest
from correlate.store import Store

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("identities", "targets", "approvals", "tickets", "ticket_history", "activity")
COMPARED = ("event_id", "ts", "account", "target", "action", "detail", "session_id", "actor",
            "approval_ref", "outcome", "verdict", "status", "approval_id", "approval_source",
            "ticket_id", "gap_seconds", "reason", "match_via")


def _copy(con, select: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    con.execute(f"COPY ({select}) TO '{path}' (FORMAT parquet)")


def sample_week_lake(folder: Path) -> Path:
    """The sample week as Parquet: approvals and tickets as text (as in the CSV files); the
    activity as the embedded ingest accepted it (the JSON-lines file holds bad records)."""
    con = duckdb.connect()
    src = ROOT / "sample_data"
    for kind in ("approvals", "tickets", "ticket_history"):
        _copy(con, f"SELECT * FROM read_csv('{src / (kind + '.csv')}', all_varchar = true)",
              folder / kind / "part-0.parquet")
    con.close()
    store = Store(":memory:")
    ingest(store, GenericConnector(), "activity", [str(src / "activity.jsonl")], Options())
    _copy(store.con, "SELECT event_id, ts, account, target, action, detail, session_id, actor, "
                     "approval_ref, outcome FROM activity", folder / "activity" / "part-0.parquet")
    store.close()
    return folder


def _frame_to(con, frame: pd.DataFrame, path: Path) -> None:
    con.register("frame", frame)
    _copy(con, "SELECT * FROM frame", path)
    con.unregister("frame")


def generated_lake(folder: Path, seed: int = 7, actions: int = 4000) -> Path:
    """A seeded corpus that exercises every window shape; `svc-batch` holds ~30% of actions."""
    rnd = random.Random(seed)
    t0 = datetime(2026, 3, 2, tzinfo=timezone.utc)
    accounts = ["alice", "bob", "carol", "dave", "svc-batch"]
    targets = ["db-01", "db-02", "web-01", "web-02", "app-7", "vault-x"]
    approvals, tickets, history = [], [], []
    for i in range(160):
        acc = rnd.choice(accounts)
        tgt = rnd.choice(targets + ["db-*", "web-0?", "prod-dbs", "DB-01"])
        start = t0 + timedelta(minutes=rnd.randrange(0, 7 * 24 * 60))
        end = start + timedelta(minutes=rnd.choice([5, 30, 120, 600, 3000]))
        status = rnd.choice(["approved"] * 6 + ["revoked", "revoked", "denied"])
        revoked = (start + (end - start) * rnd.choice([-0.1, 0.3, 0.7, 1.5])
                   if status == "revoked" else None)
        ticket = rnd.choice([None, f"CHG-{i % 40}", f"chg-{i % 40}", "CHG-GONE"])
        kind = "break_glass" if rnd.random() < 0.08 else "standard"
        approvals.append([f"AP-{i}", acc.upper() if rnd.random() < 0.1 else acc, tgt,
                          start, end, ticket, acc, "boss", kind, status, revoked])
    # nested and overlapping windows on one key, and a window cited by id
    approvals.append(["AP-OUTER", "alice", "db-01", t0, t0 + timedelta(days=3), "CHG-1",
                      "alice", "boss", "standard", "approved", None])
    approvals.append(["AP-INNER", "alice", "db-01", t0 + timedelta(hours=5),
                      t0 + timedelta(hours=6), "CHG-2", "alice", "boss", "standard",
                      "approved", None])
    for j in range(40):
        opened = t0 + timedelta(hours=rnd.randrange(-24, 24 * 6))
        status = rnd.choice(["approved", "in_progress", "closed", "cancelled", "requested"])
        closed = opened + timedelta(hours=rnd.randrange(1, 90)) if status == "closed" else None
        tickets.append([f"CHG-{j}", status, opened, closed, opened + timedelta(hours=1),
                        opened + timedelta(hours=rnd.randrange(2, 60))])
        history.append([f"CHG-{j}", opened, "requested"])
        history.append([f"CHG-{j}", opened + timedelta(minutes=30), status])
    acts = []
    for n in range(actions):
        acc = "svc-batch" if rnd.random() < 0.3 else rnd.choice(accounts + ["CORP\\alice"])
        ts = t0 + timedelta(seconds=rnd.randrange(-3600, 8 * 24 * 3600))
        eid = None if rnd.random() < 0.2 else f"ev-{n}"
        ref = "AP-INNER" if rnd.random() < 0.01 else ("AP-NONE" if rnd.random() < 0.005 else None)
        outcome = rnd.choice([None, "success", "failure"]) if rnd.random() < 0.2 else None
        acts.append([eid, ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), acc, rnd.choice(targets),
                     rnd.choice(["sudo", "ssh", "psql"]), f"cmd {n % 50}", None, None, ref,
                     outcome])
        if eid and rnd.random() < 0.01:   # a repeated event id: the first one is kept
            acts.append([eid, ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), acc, acts[-1][3],
                         "other", "dup", None, None, None, None])
    # detections: one account wiping three hosts within ten minutes (a sequence grouped by
    # account, across targets) and a burst of failed logins then a success (grouped by target)
    wipe = t0 + timedelta(days=2, hours=3)
    for i, tgt in enumerate(["db-01", "web-02", "app-7", "db-02"]):
        acts.append([f"wipe-{i}", (wipe + timedelta(minutes=2 * i)).strftime(
            "%Y-%m-%dT%H:%M:%S.%fZ"), "Dave" if i == 1 else "dave", tgt, "sudo",
            "rm -rf /var/lib/mysql", None, "jenkins", None, None])
    burst = t0 + timedelta(days=4, hours=1)
    for i in range(6):
        acts.append([f"fail-{i}", (burst + timedelta(seconds=40 * (i // 2))).strftime(
            "%Y-%m-%dT%H:%M:%S.%fZ"), "carol", "web-01", "ssh.login_failed",
            "password from 198.51.100.23", None, None, None, "failure"])
    acts.append(["ok-0", (burst + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                 "carol", "web-01", "session.start", "ssh from 10.0.0.9", None, None, None,
                 None])
    acts.append([None, "not a time", "bob", "db-01", None, None, None, None, None, None])
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    _frame_to(con, pd.DataFrame(approvals, columns=[
        "approval_id", "account", "target", "start", "end", "ticket", "requester", "approver",
        "kind", "status", "revoked_at"]), folder / "approvals" / "a.parquet")
    _frame_to(con, pd.DataFrame(tickets, columns=[
        "ticket_id", "status", "opened", "closed", "planned_start", "planned_end"]),
        folder / "tickets" / "t.parquet")
    _frame_to(con, pd.DataFrame(history, columns=["ticket_id", "ts", "status"]),
              folder / "ticket_history" / "h.parquet")
    _frame_to(con, pd.DataFrame([["CORP\\alice", "alice"], ["Alice@corp", "alice"]],
                                columns=["alias", "identity"]),
              folder / "identities" / "i.parquet")
    _frame_to(con, pd.DataFrame([["db-01", None, "prod-dbs"], ["db-02", None, "prod-dbs"],
                                 ["app-7", "db-07", None]], columns=["name", "alias", "group"]),
              folder / "targets" / "g.parquet")
    frame = pd.DataFrame(acts, columns=["event_id", "ts", "account", "target", "action",
                                        "detail", "session_id", "actor", "approval_ref",
                                        "outcome"])
    half = len(frame) // 2    # two files: a repeat across files keeps the first file's row
    _frame_to(con, frame.iloc[:half], folder / "activity" / "part-0.parquet")
    _frame_to(con, frame.iloc[half:], folder / "activity" / "part-1.parquet")
    con.close()
    return folder


def lake_store(folder: Path) -> Store:
    """An in-memory store holding the lake, ingested by the embedded generic connector."""
    store = Store(":memory:")
    for kind in KINDS:
        files = sorted(str(p) for p in (folder / kind).glob("*.parquet"))
        if files:
            ingest(store, GenericConnector(), kind, files, Options())
    return store


def embedded_findings(folder: Path, start=None, end=None, policy: Policy = Policy()):
    """The embedded engine's findings for the lake, in the Spark output's columns (pandas)."""
    store = lake_store(folder)
    run_id = correlate(store, start, end, policy, detections=DetectionSettings(enabled=False))
    cols = ", ".join(f"a.{c}" if c in COMPARED[:9] else f"f.{c}" for c in COMPARED)
    frame = store.con.execute(f"SELECT {cols} FROM findings f JOIN activity a USING (act_id) "
                              f"WHERE f.run_id = ?", [run_id]).df()
    store.close()
    return frame


DETECTED = ("event_id", "ts", "rule_id", "sequence", "position", "review", "muted_by")
# A sequence named by its rule and its members' event ids (as correlate/spark_task.py does).
DETECTIONS_SQL = """
WITH d AS (SELECT d.*, a.event_id, a.ts FROM detections d JOIN activity a USING (act_id)
           WHERE d.run_id = ?),
s AS (SELECT rule_id, sequence_id,
             md5(rule_id || ':' || string_agg(event_id, ',' ORDER BY position)) AS sequence
      FROM d WHERE sequence_id IS NOT NULL GROUP BY rule_id, sequence_id)
SELECT d.event_id, d.ts, d.rule_id, s.sequence, d.position, d.review, d.muted_by
FROM d LEFT JOIN s USING (rule_id, sequence_id)
"""


def store_detections(store: Store, run_id: int) -> pd.DataFrame:
    """A run's detections in the Spark output's columns."""
    return store.con.execute(DETECTIONS_SQL, [run_id]).df()


def embedded_detections(folder: Path, start=None, end=None, policy: Policy = Policy(),
                        settings: DetectionSettings = DetectionSettings()) -> pd.DataFrame:
    """The embedded engine's detections for the lake, in the Spark output's columns."""
    store = lake_store(folder)
    run_id = correlate(store, start, end, policy, detections=settings)
    frame = store_detections(store, run_id)
    store.close()
    return frame


def differences(left: pd.DataFrame, right: pd.DataFrame,
                columns: tuple[str, ...] = COMPARED) -> tuple[int, int]:
    """(rows of left not in right, rows of right not in left), duplicates counted (EXCEPT ALL)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("l", left[list(columns)])
    con.register("r", right[list(columns)])
    a = con.execute("SELECT count(*) FROM (SELECT * FROM l EXCEPT ALL SELECT * FROM r)").fetchone()[0]
    b = con.execute("SELECT count(*) FROM (SELECT * FROM r EXCEPT ALL SELECT * FROM l)").fetchone()[0]
    con.close()
    return a, b
