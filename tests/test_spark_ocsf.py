"""OCSF input on Spark (`spark-correlate --ocsf`): the embedded connector's mapping in each task,
the same findings as the embedded engine fed the same files, row for row."""

from __future__ import annotations

import json
import random
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

pa = pytest.importorskip("pyarrow")

from connectors.base import Options  # noqa: E402
from connectors.ocsf import OcsfConnector  # noqa: E402
from correlate.cli import main  # noqa: E402
from correlate.detect.run import DetectionSettings  # noqa: E402
from correlate.engine import correlate  # noqa: E402
from correlate.ingest import expand_paths, ingest  # noqa: E402
from correlate.spark_ocsf import local_copy  # noqa: E402
from lake_corpus import COMPARED, differences, generated_lake, lake_store  # noqa: E402

T0_MS = 1772409600000            # 2026-03-02T00:00:00Z, the generated lake's first day
USERS = ["alice", "bob", "carol", "svc-batch"]
HOSTS = ["db-01", "db-02", "web-01", "app-7"]


def _write(records: list[dict], path: Path) -> None:
    """JSON records as Parquet with nested structs (as Security Lake writes them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    src = path.with_suffix(".jsonl")
    src.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    con = duckdb.connect()
    # hive_partitioning off: the k=v folders must reach the connector from the path alone
    con.execute(f"COPY (SELECT * FROM read_json('{src}', hive_partitioning = false)) "
                f"TO '{path}' (FORMAT parquet)")
    con.close()
    src.unlink()


def ocsf_lake(folder: Path, seed: int = 3) -> Path:
    """Security Lake's layout: CloudTrail API Activity per region/account/day, endpoint Process
    Activity and Authentication; ids missing (hashed), repeated, an unusable record, a class
    that is not an action, and an account id with a leading zero in a folder name."""
    rnd = random.Random(seed)
    for day in range(3):
        for region, account in (("eu-west-1", "111122223333"), ("us-east-1", "012345678901")):
            api = []
            for n in range(60):
                user = rnd.choice(USERS)
                rec = {"class_uid": 6003, "time": T0_MS + day * 86400000 + rnd.randrange(86400000),
                       "api": {"service": {"name": "iam.amazonaws.com"},
                               "operation": rnd.choice(["CreateUser", "AttachRolePolicy"])},
                       # half without an arn: the target is then the accountId= folder's
                       "actor": {"user": {"type": "IAMUser", "name": user,
                                          "uid": f"arn:aws:iam::{account}:user/{user}"
                                          if n % 2 else None}},
                       "status_id": rnd.choice([1, 1, 1, 2]),
                       "metadata": {"uid": f"ct-{region}-{day}-{n}" if n % 5 else None}}
                api.append(rec)
            api.append({**api[3], "status_id": 1})              # a repeated metadata.uid
            api.append({"class_uid": 6003, "time": None, "api": api[0]["api"],
                        "actor": api[0]["actor"], "status_id": 1,
                        "metadata": {"uid": f"bad-{region}-{day}"}})   # no time: quarantined
            _write(api, folder / "aws" / "CLOUD_TRAIL_MGMT" / "2.0" / f"region={region}"
                   / f"accountId={account}" / f"eventDay=2026030{2 + day}" / "part-0.parquet")
        host = []
        for n in range(80):
            user, dev = rnd.choice(USERS), rnd.choice(HOSTS)
            t = T0_MS + day * 86400000 + rnd.randrange(86400000)
            if n % 3:
                host.append({"class_uid": 1007, "activity_id": 1, "time": t, "status_id": 1,
                             "device": {"hostname": dev},
                             "actor": {"user": {"name": user}, "session": {"uid": str(n % 7)}},
                             "process": {"cmd_line": f"systemctl restart x{n % 4}",
                                         "user": {"uid": "0" if n % 2 else None,
                                                  "name": None if n % 2 else user}},
                             "user": None, "dst_endpoint": None, "metadata": None})
            else:
                host.append({"class_uid": 3002, "activity_id": rnd.choice([1, 2]), "time": t,
                             "status_id": rnd.choice([1, 2]), "user": {"name": user},
                             "dst_endpoint": {"hostname": dev}, "device": None, "actor": None,
                             "process": None, "metadata": {"uid": f"auth-{day}-{n}"}})
        host.append({"class_uid": 2004, "time": T0_MS, "device": None, "actor": None,
                     "process": None, "user": None, "dst_endpoint": None, "metadata": None})
        _write(host, folder / "endpoint" / "region=eu-west-1" / "accountId=111122223333"
               / f"eventDay=2026030{2 + day}" / "part-0.parquet")
    return folder


def embedded_ocsf_findings(reference: Path, ocsf: Path):
    """The embedded engine fed the same files: `pamcorr ingest ocsf <folder>`, then correlate."""
    store = lake_store(reference)
    store.con.execute("DELETE FROM activity")
    results = ingest(store, OcsfConnector(), "auto", [str(p) for p in expand_paths([str(ocsf)])],
                     Options())
    run_id = correlate(store, detections=DetectionSettings(enabled=False))
    cols = ", ".join(f"a.{c}" if c in COMPARED[:9] else f"f.{c}" for c in COMPARED)
    frame = store.con.execute(f"SELECT {cols} FROM findings f JOIN activity a USING (act_id) "
                              f"WHERE f.run_id = ?", [run_id]).df()
    quarantined = store.con.execute("SELECT file, line, reason FROM quarantine "
                                    "WHERE source = 'ocsf' ORDER BY ALL").fetchall()
    store.close()
    counts = {k: sum(getattr(r, k) for r in results)
              for k in ("read", "accepted", "ignored", "quarantined", "duplicates")}
    return frame, quarantined, counts


def test_a_task_copy_keeps_the_hive_folders_of_the_path(tmp_path):
    got = local_copy(tmp_path, "s3a://lake/aws/CT/2.0/region=eu-west-1/accountId=0123/"
                               "eventDay=20260302/x.parquet", 4)
    assert got == tmp_path / "f4" / "region=eu-west-1" / "accountId=0123" / "eventDay=20260302" \
        / "x.parquet"


def test_spark_reads_ocsf_as_the_embedded_engine_does(spark, tmp_path):
    reference = generated_lake(tmp_path / "lake", actions=10)
    ocsf = ocsf_lake(tmp_path / "ocsf")
    expected, quarantined, counts = embedded_ocsf_findings(reference, ocsf)
    assert counts["ignored"] == 3 and counts["quarantined"] == 6 and counts["duplicates"] == 6
    assert {"iam.amazonaws.com:CreateUser", "exec"} <= set(expected.action)
    assert "012345678901" in set(expected.target)
    assert len(expected) > 500
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [
        "spark-correlate", "--input", str(reference), "--ocsf", str(ocsf), "--output", str(out),
        "--rows-per-task", "1000", "--hot-key-rows", "100"])
    assert result.exit_code == 0, result.output
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    got = con.execute(f"SELECT * FROM read_parquet('{out}/findings/**/*.parquet', "
                      "hive_partitioning = true)").df()
    assert differences(expected, got) == (0, 0)
    q = con.execute(f"SELECT file, row, reason FROM read_parquet('{out}/quarantine/*.parquet') "
                    "ORDER BY ALL").fetchall()
    assert q == quarantined
    summary = json.loads((out / "summary.json").read_text())
    a = summary["activity"]
    assert {k: a[k] for k in counts} == counts
    assert a["read"] == a["accepted"] + a["ignored"] + a["quarantined"] + a["duplicates"]
