"""The Spark engine gives the embedded engine's findings, row for row (EXCEPT ALL both ways),
however the actions are split; its output loads into the store as a run."""

from __future__ import annotations

import json
import zlib
from datetime import datetime, timezone

import duckdb
import pytest
from click.testing import CliRunner

pa = pytest.importorskip("pyarrow")

from correlate.cli import main  # noqa: E402
from correlate.engine import Policy  # noqa: E402
from correlate.spark_task import (  # noqa: E402
    ACTIVITY_COLUMNS, detect_actions, judge_actions, reference_tables,
)
from correlate.store import Store  # noqa: E402
from lake_corpus import (  # noqa: E402
    COMPARED, DETECTED, differences, embedded_detections, embedded_findings, generated_lake, lake_store,
    sample_week_lake, store_detections,
)


def _actions(lake) -> "pa.Table":
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    cols = ", ".join(ACTIVITY_COLUMNS)
    table = con.sql(f"SELECT {cols}, filename AS source_file, file_row_number AS source_row "
                    f"FROM read_parquet('{lake}/activity/*.parquet', filename = true, "
                    f"file_row_number = true, union_by_name = true)").to_arrow_table()
    con.close()
    return table


def _reference(lake) -> dict:
    store = lake_store(lake)
    store.con.execute("DELETE FROM activity")
    ref = reference_tables(store.con)
    store.close()
    return ref


def _findings(table: "pa.Table"):
    frame = table.to_pandas()
    return frame[frame.record == "finding"]


def _spark_findings(out):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    frame = con.execute(f"SELECT * FROM read_parquet('{out}/findings/**/*.parquet', "
                        f"hive_partitioning = true)").df()
    con.close()
    return frame


def _spark_detections(out):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    frame = con.execute(f"SELECT * FROM read_parquet('{out}/detections/**/*.parquet', "
                        f"hive_partitioning = true)").df()
    con.close()
    return frame


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    return generated_lake(tmp_path_factory.mktemp("lake") / "lake")


def test_any_split_of_the_actions_gives_the_embedded_findings(lake):
    """Tasks see arbitrary slices, one hot key cut in three: segments come from approvals only."""
    expected = embedded_findings(lake)
    ref, actions = _reference(lake), _actions(lake)
    # key groups hashed over four tasks, except svc-batch/db-01 salted over three more by the
    # record's id (as spark_engine._split does: both copies of a repeated event_id meet)
    rows = actions.to_pylist()
    groups = {}
    for i, r in enumerate(rows):
        if (r["account"], r["target"]) == ("svc-batch", "db-01"):
            ident = r["event_id"] or "|".join(str(r[c]) for c in ACTIVITY_COLUMNS)
            group = f"hot{zlib.crc32(ident.encode()) % 3}"
        else:
            group = zlib.crc32(f"{r['account'].lower()}|{r['target'].lower()}".encode()) % 4
        groups.setdefault(group, []).append(i)
    assert len(groups) == 7
    parts = [judge_actions(ref, actions.take(rows), None, None) for rows in groups.values()]
    got = _findings(pa.concat_tables(parts))
    assert differences(expected, got) == (0, 0)
    tallies = [json.loads(n) for t in parts for r, n in zip(t["record"].to_pylist(),
                                                            t["note"].to_pylist()) if r == "tally"]
    total = {k: sum(t[k] for t in tallies) for k in tallies[0] if k not in ("verdicts", "exceptions")}
    assert total["read"] == total["accepted"] + total["quarantined"] + total["duplicates"]
    assert total["accepted"] == len(expected) and total["quarantined"] == 1


def test_a_period_and_policy_are_applied_in_each_task(lake):
    start = datetime(2026, 3, 4, tzinfo=timezone.utc)
    end = datetime(2026, 3, 6, tzinfo=timezone.utc)
    policy = Policy(grace_s=900, lookaround_s=3600, change_window="actual")
    expected = embedded_findings(lake, start, end, policy)
    got = _findings(judge_actions(_reference(lake), _actions(lake), start, end, policy))
    assert 0 < len(got) < 4000
    assert differences(expected, got) == (0, 0)


def test_reference_db_supplies_the_reference_tables(lake, tmp_path):
    """--reference-db: approvals, tickets, identities and targets from a store, not the lake."""
    from connectors.base import Options
    from correlate.spark_engine import _reference_store
    db = tmp_path / "ref.duckdb"
    with Store(str(db)) as store:
        source = lake_store(lake)
        for name in ("identities", "targets", "approvals", "tickets", "ticket_history"):
            store.con.register("src", source.con.sql(f"SELECT * FROM {name}").to_arrow_table())
            store.con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM src")
            store.con.unregister("src")
        source.close()
    reference, counts = _reference_store(None, str(tmp_path / "nowhere"), tmp_path, Options(),
                                         str(db))
    assert counts == {} and set(reference) == {"identities", "targets", "approvals", "tickets",
                                               "ticket_history"}
    got = _findings(judge_actions(reference, _actions(lake), None, None))
    assert differences(embedded_findings(lake), got) == (0, 0)


def test_detection_passes_split_by_a_column_each_sequence_groups_by():
    """[account, target], [actor, target] and [target] by target; [account] by account."""
    from correlate.detect.run import DetectionSettings
    from correlate.spark_engine import detection_passes
    passes = detection_passes(DetectionSettings())
    assert set(passes) == {"target", "account"}
    assert passes["account"] == ("seq_destructive_on_many_hosts",)
    assert {"seq_login_failures_burst", "seq_new_account_then_login",
            "seq_root_shell_then_audit_off"} <= set(passes["target"])


def _detect_in_passes(lake, start=None, end=None, policy=Policy(), parts=3):
    """Each pass's actions cut into `parts` task slices by its column, as spark_engine does."""
    from correlate.detect.run import DetectionSettings, cached_rules
    from correlate.spark_engine import detection_passes
    ref, actions = _reference(lake), _actions(lake)
    events = tuple(r.id for r in cached_rules(()) if not r.is_sequence)
    rows, tables = actions.to_pylist(), []
    for key, sequences in detection_passes(DetectionSettings()).items():
        keep = sequences + (events if key == "target" else ())
        groups = {}
        for i, r in enumerate(rows):
            value = (r[key] or "").strip().lower() if key else ""     # None: one task
            groups.setdefault(zlib.crc32(value.encode()) % parts, []).append(i)
        tables += [detect_actions(ref, actions.take(g), start, end, policy, None,
                                  DetectionSettings(), keep) for g in groups.values()]
    return pa.concat_tables(tables).to_pandas()


@pytest.mark.parametrize("corpus", ["generated", "sample"])
def test_detections_split_by_pass_columns_match_embedded(lake, corpus, tmp_path):
    """Row for row, sequences included; the wipe across hosts needs the account pass."""
    if corpus == "sample":
        lake = sample_week_lake(tmp_path / "lake")
    expected = embedded_detections(lake)
    got = _detect_in_passes(lake)
    assert expected.sequence.notna().sum() >= 10
    assert "seq_destructive_on_many_hosts" in set(expected.rule_id)
    assert differences(expected, got, DETECTED) == (0, 0)


def test_detections_by_target_alone_miss_the_sequence_across_hosts(lake):
    """Why the account pass exists: one task per target, none sees the wipe's three hosts."""
    from correlate.detect.run import DetectionSettings
    ref, actions = _reference(lake), _actions(lake)
    rows = actions.to_pylist()
    groups = {}
    for i, r in enumerate(rows):
        groups.setdefault(r["target"].lower(), []).append(i)
    got = pa.concat_tables([detect_actions(ref, actions.take(g), None, None, Policy(), None,
                                           DetectionSettings()) for g in groups.values()])
    assert "seq_destructive_on_many_hosts" not in set(got["rule_id"].to_pylist())


def _write_output(folder, table, summary: dict) -> None:
    """What spark-correlate writes, from one task's table (for load-run without Spark)."""
    (folder / "findings" / "day=2026-03-02").mkdir(parents=True)
    con = duckdb.connect()
    con.register("t", _findings(table).drop(columns=["record", "note"]))
    con.execute(f"COPY t TO '{folder}/findings/day=2026-03-02/part-0.parquet' (FORMAT parquet)")
    (folder / "summary.json").write_text(json.dumps(summary))


def test_load_run_stores_the_output_as_a_run_reports_read(lake, tmp_path):
    table = judge_actions(_reference(lake), _actions(lake), None, None)
    _write_output(tmp_path / "out", table, {
        "started": "2026-03-10T00:00:00+00:00", "finished": "2026-03-10T00:01:00+00:00",
        "policy": {"grace_s": 300, "lookaround_s": 604800, "change_window": "planned"},
        "master": "local[2]", "tool_version": "test"})
    db = str(tmp_path / "p.duckdb")
    result = CliRunner().invoke(main, ["load-run", str(tmp_path / "out"), "--db", db])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("run 1\n")
    with Store(db) as store:
        frame = store.con.execute(
            "SELECT a.event_id, a.ts, a.account, a.target, a.action, a.detail, a.session_id, "
            "a.actor, a.approval_ref, f.outcome, f.verdict, f.status, f.approval_id, "
            "f.approval_source, f.ticket_id, f.gap_seconds, f.reason, f.match_via "
            "FROM findings f JOIN activity a USING (act_id) WHERE run_id = 1").df()
    assert differences(embedded_findings(lake), frame) == (0, 0)
    assert (frame.outcome == "failure").sum() > 0          # schema 045 keeps the outcome
    again = CliRunner().invoke(main, ["load-run", str(tmp_path / "out"), "--db", db])
    assert again.exit_code == 1 and "already loaded as run 1" in again.output
    shown = CliRunner().invoke(main, ["findings", "--db", db, "--failing", "--format", "csv"])
    assert shown.exit_code in (0, 3) and "svc-batch" in shown.output


def test_load_run_of_a_folder_without_summary_is_an_error(tmp_path):
    result = CliRunner().invoke(main, ["load-run", str(tmp_path), "--db",
                                       str(tmp_path / "p.duckdb")])
    assert result.exit_code == 1 and "no summary.json" in result.output
    assert "Traceback" not in result.output


# --- on Spark (local[2]): one session for the whole test session (conftest `spark`) ---

def test_spark_gives_the_embedded_findings_on_the_generated_corpus(spark, lake, tmp_path):
    from correlate.spark_engine import run_spark
    # small thresholds: several tasks, and svc-batch's biggest keys salted over two or more
    summary = run_spark(spark, str(lake), str(tmp_path / "out"), rows_per_task=1000,
                        hot_rows=300)
    assert summary["salted_keys"] and summary["tasks"] >= 4
    assert all(k["account"] == "svc-batch" for k in summary["salted_keys"])
    got = _spark_findings(tmp_path / "out")
    assert differences(embedded_findings(lake), got) == (0, 0)
    a = summary["activity"]
    assert a["read"] == a["accepted"] + a["quarantined"] + a["duplicates"]
    assert a["quarantined"] == 1 and a["duplicates"] > 0
    q = duckdb.sql(f"SELECT file, row, reason FROM read_parquet('{tmp_path}/out/quarantine/*.parquet')"
                   ).fetchall()
    assert len(q) == 1 and q[0][0].endswith("part-1.parquet") and "not a time" in q[0][2]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["activity"] == a
    detected = _spark_detections(tmp_path / "out")
    assert differences(embedded_detections(lake), detected, DETECTED) == (0, 0)
    assert "seq_destructive_on_many_hosts" in set(detected.rule_id)
    assert set(summary["detections"]["passes"]) == {"target", "account"}


def test_spark_cli_on_the_sample_week_with_a_period_matches_embedded(spark, tmp_path):
    lake = sample_week_lake(tmp_path / "lake")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [
        "spark-correlate", "--input", str(lake), "--output", str(out), "--master", "local[2]",
        "--from", "2026-11-16", "--to", "2026-11-20", "--grace", "600"])
    assert result.exit_code == 0, result.output
    assert "actions read" in result.output and "load-run" in result.output
    start = datetime(2026, 11, 16, tzinfo=timezone.utc)
    end = datetime(2026, 11, 20, tzinfo=timezone.utc)
    expected = embedded_findings(lake, start, end, Policy(grace_s=600))
    got = _spark_findings(out)
    assert len(got) > 100
    assert differences(expected, got) == (0, 0)
    days = sorted(p.name for p in (out / "findings").iterdir() if p.name.startswith("day="))
    assert days == ["day=2026-11-16", "day=2026-11-17", "day=2026-11-18", "day=2026-11-19"]
    expected = embedded_detections(lake, start, end, Policy(grace_s=600))
    assert "seq_destructive_on_many_hosts" in set(expected.rule_id)
    assert differences(expected, _spark_detections(out), DETECTED) == (0, 0)
    assert "detections: " in result.output
    # load-run stores them as the run's detections, sequence ids made as the embedded engine's
    db = str(tmp_path / "p.duckdb")
    loaded = CliRunner().invoke(main, ["load-run", str(out), "--db", db])
    assert loaded.exit_code == 0, loaded.output
    with Store(db) as store:
        assert differences(expected, store_detections(store, 1), DETECTED) == (0, 0)
        ids = store.con.execute(
            "SELECT d.sequence_id = md5(d.rule_id || ':' || string_agg(d.act_id::VARCHAR, ',' "
            "ORDER BY d.position)) FROM detections d WHERE d.sequence_id IS NOT NULL "
            "GROUP BY d.rule_id, d.sequence_id").fetchall()
        assert ids and all(ok for (ok,) in ids)
        assert store.con.execute("SELECT count(*) FROM detection_rules WHERE run_id = 1"
                                 ).fetchone()[0] > 20


def test_spark_input_without_activity_is_a_clear_error(spark, tmp_path):
    (tmp_path / "lake" / "approvals").mkdir(parents=True)
    result = CliRunner().invoke(main, ["spark-correlate", "--input", str(tmp_path / "lake"),
                                       "--output", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "no activity/ folder" in result.output and "Traceback" not in result.output


# --- config policy: [[exceptions]] and [criticality] ---

POLICY_TOML = """
[[exceptions]]
name = "batch-db"
account = "svc-batch"
target = "db-*"
reason = "nightly batch, CHG-77"
accepted_by = "jane (CISO)"
expires = 2099-12-31

[[exceptions]]
name = "batch-all-unapproved"
account = "SVC-*"
verdict = "unapproved"
reason = "covers what batch-db left: the first entry in force wins"
accepted_by = "jane (CISO)"
expires = 2099-12-31

[[exceptions]]
name = "old-web"
target = "web-0?"
reason = "expired: counted, applies to nothing"
accepted_by = "joe"
expires = 2020-01-01

[criticality]
"db-*" = "high"
"db-01" = "critical"
"web-*" = "low"
"""

EXCEPTION_ROWS = ("SELECT n, name, account, target, verdict, reason, accepted_by, expires, "
                  "expired, findings FROM verdict_exceptions WHERE run_id = ? ORDER BY n")
CRITICALITY_ROWS = ("SELECT pattern, level, specificity FROM target_criticality "
                    "WHERE run_id = ? ORDER BY pattern")
EXCEPTED_FINDINGS = """
SELECT a.event_id, a.ts, a.account, a.target, f.verdict, f.status, x.name AS exception
FROM findings f JOIN activity a USING (act_id)
LEFT JOIN finding_exceptions e ON e.run_id = f.run_id AND e.act_id = f.act_id
LEFT JOIN verdict_exceptions x ON x.run_id = e.run_id AND x.n = e.n
WHERE f.run_id = ?
"""


def test_spark_applies_the_configs_exceptions_and_criticality_as_embedded(spark, lake,
                                                                          tmp_path):
    """Same findings with the same exception names (Parquet and after load-run), the same
    per-entry counts (in force, overlapping, expired) and criticality rows, the same totals."""
    from correlate import queries
    from correlate.config import load_settings
    from correlate.engine import correlate
    from correlate.detect.run import DetectionSettings
    config = tmp_path / "pamcorr.toml"
    config.write_text(POLICY_TOML)
    settings = load_settings(str(config))
    store = lake_store(lake)
    run = correlate(store, detections=DetectionSettings(enabled=False),
                    exceptions=settings.exceptions, criticality=settings.criticality)
    cols = ", ".join(f"a.{c}" if c in COMPARED[:9] else f"f.{c}" for c in COMPARED)
    expected = store.con.execute(
        f"SELECT {cols}, x.name AS exception FROM findings f JOIN activity a USING (act_id) "
        "LEFT JOIN finding_exceptions e ON e.run_id = f.run_id AND e.act_id = f.act_id "
        "LEFT JOIN verdict_exceptions x ON x.run_id = e.run_id AND x.n = e.n "
        "WHERE f.run_id = ?", [run]).df()
    entries = store.con.execute(EXCEPTION_ROWS, [run]).fetchall()
    levels = store.con.execute(CRITICALITY_ROWS, [run]).fetchall()
    totals = sorted(queries.verdict_totals(store, run), key=lambda t: (t['verdict'], t['status']))
    store.close()
    counts = {name: n for _, name, *_, n in entries}
    assert counts["batch-db"] > 0 and counts["batch-all-unapproved"] > 0
    assert counts["old-web"] > 0 and entries[2][8] is True     # expired, would have covered
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [
        "spark-correlate", "--input", str(lake), "--output", str(out), "--config", str(config),
        "--rows-per-task", "1000", "--hot-key-rows", "300"])
    assert result.exit_code == 0, result.output
    got = _spark_findings(out)
    assert differences(expected, got, COMPARED + ("exception",)) == (0, 0)
    db = str(tmp_path / "p.duckdb")
    loaded = CliRunner().invoke(main, ["load-run", str(out), "--db", db])
    assert loaded.exit_code == 0, loaded.output
    with Store(db) as spark_store:
        assert spark_store.con.execute(EXCEPTION_ROWS, [1]).fetchall() == entries
        assert spark_store.con.execute(CRITICALITY_ROWS, [1]).fetchall() == levels
        assert sorted(queries.verdict_totals(spark_store, 1),
                      key=lambda t: (t['verdict'], t['status'])) == totals
        stored = spark_store.con.execute(EXCEPTED_FINDINGS, [1]).df()
    assert differences(expected, stored, ("event_id", "ts", "account", "target", "verdict",
                                          "status", "exception")) == (0, 0)


# --- an event_id reused under another (account, target) key: the embedded engine's copy ---

def _reused_ids_lake(lake, folder):
    """The generated lake's reference kinds, and activity in two files where event_ids recur
    under other keys: first copy good; first copy quarantined (the second is kept); three
    copies over three keys (one padded with spaces, one in a salted hot key); a repeat under
    one key in other letter case (the same key)."""
    import shutil

    import pandas as pd
    for kind in ("approvals", "tickets", "ticket_history", "identities", "targets"):
        shutil.copytree(lake / kind, folder / kind)
    ts = "2026-03-0{}T{:02d}:{:02d}:00Z"
    part0 = [["re-good", ts.format(3, 9, 0), "alice", "web-01", "sudo", "first"],
             ["re-quar", "not a time", "alice", "web-02", "sudo", "first, bad"],
             ["re-three", ts.format(4, 10, 0), "dave", "app-7", "ssh", "first"],
             ["re-case", ts.format(4, 11, 0), "Alice", "web-01", "ssh", "first"]]
    part0 += [[f"hot-{i}", ts.format(5, 1 + i % 20, i % 60), "svc-batch", "db-01", "psql",
               f"batch {i}"] for i in range(30)]
    part1 = [["re-good", ts.format(3, 9, 5), "bob", "db-01", "sudo", "second"],
             ["re-quar", ts.format(3, 12, 0), "carol", "db-02", "sudo", "second"],
             [" re-three ", ts.format(4, 10, 5), "svc-batch", "db-01", "psql", "second"],
             ["re-three", ts.format(4, 10, 9), "alice", "db-01", "psql", "third"],
             ["re-case", ts.format(4, 11, 1), "alice", "WEB-01", "ssh", "second"],
             ["hot-3", ts.format(6, 2, 0), "carol", "web-02", "sudo", "reused hot id"]]
    part1 += [[f"n-{i}", ts.format(6, 3 + i % 9, i), ["alice", "bob", "carol"][i % 3],
               ["db-01", "web-01", "app-7"][i % 3], "sudo", f"plain {i}"] for i in range(12)]
    con = duckdb.connect()
    (folder / "activity").mkdir(parents=True)
    for name, rows in (("part-0", part0), ("part-1", part1)):
        frame = pd.DataFrame(rows, columns=["event_id", "ts", "account", "target", "action",
                                            "detail"])
        con.register("frame", frame)
        con.execute(f"COPY frame TO '{folder}/activity/{name}.parquet' (FORMAT parquet)")
        con.unregister("frame")
    con.close()
    return folder


def test_spark_keeps_the_embedded_copy_of_an_event_id_reused_across_keys(spark, lake,
                                                                         tmp_path):
    from connectors.base import Options
    from connectors.generic import GenericConnector
    from correlate.ingest import ingest
    from correlate.spark_engine import run_spark
    reused = _reused_ids_lake(lake, tmp_path / "reused")
    with Store(":memory:") as store:      # the embedded engine's counts
        results = ingest(store, GenericConnector(), "activity",
                         sorted(str(p) for p in (reused / "activity").glob("*.parquet")),
                         Options())
        embedded = {k: sum(getattr(r, k) for r in results)
                    for k in ("read", "accepted", "quarantined", "duplicates")}
    summary = run_spark(spark, str(reused), str(tmp_path / "out"), rows_per_task=8,
                        hot_rows=10)
    assert summary["salted_keys"] and summary["event_ids_under_several_keys"] == 4
    got = _spark_findings(tmp_path / "out")
    expected = embedded_findings(reused)
    assert differences(expected, got) == (0, 0)
    kept = {(e, d) for e, d in zip(got.event_id, got.detail) if e.startswith("re-")}
    assert kept == {("re-good", "first"), ("re-quar", "second"), ("re-three", "first"),
                    ("re-case", "first")}
    assert len(got[got.event_id == "hot-3"]) == 1
    a = summary["activity"]
    assert {k: a[k] for k in embedded} == embedded
    assert embedded == {"read": 52, "accepted": 46, "quarantined": 1, "duplicates": 5}
