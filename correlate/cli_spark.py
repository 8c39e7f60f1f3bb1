"""`pamcorr spark-correlate` (the Spark engine) and `pamcorr load-run` (its output into the
store): thin click commands over correlate.spark_engine and correlate.load_run, attached to
the `pamcorr` group by register()."""

from __future__ import annotations

import click

from correlate.errors import printable

db_option = click.option("--db", "db", default=None, envvar="PAMCORR_DB", show_envvar=True,
                         help="DuckDB file (default ./pamcorr.duckdb).")


def _say(msg: str) -> None:
    click.echo(printable(msg))


@click.command("spark-correlate")
@click.option("--input", "input_uri", required=True, metavar="DIR_OR_URI",
              help="Folder or URI with one folder of Parquet per kind: activity/, approvals/, "
                   "tickets/, ticket_history/, identities/, targets/ (generic columns).")
@click.option("--output", "output_uri", required=True, metavar="DIR_OR_URI",
              help="Where findings/ (Parquet by day), quarantine/ and summary.json go.")
@click.option("--master", default="local[2]", show_default=True,
              help="Spark master: local[N], spark://host:7077, yarn, k8s://... (ignored when "
                   "run by spark-submit, which sets it).")
@click.option("--from", "start", default=None, help="Start of the period (inclusive, ISO).")
@click.option("--to", "end", default=None, help="End of the period (exclusive, ISO).")
@click.option("--grace", type=click.IntRange(0), default=None,
              help="Seconds of grace on both sides of a window (default 300, or the config's).")
@click.option("--lookaround", type=click.IntRange(0), default=None,
              help="Seconds within which a window makes an action out_of_window (default "
                   "7 days, or the config's).")
@click.option("--config", "config_path", default=None, metavar="FILE",
              help="Take [policy] (grace_s, lookaround_s, change_window), [detections] "
                   "(rule folders, mutes), [[exceptions]] and [criticality] from this TOML "
                   "file.")
@click.option("--rules", "rule_dirs", multiple=True, metavar="DIR",
              help="A folder of your own Sigma rules, run besides the shipped ones (readable "
                   "at this path on every executor). Repeatable.")
@click.option("--tz", default=None, help="Zone for timestamps that carry none (IANA name).")
@click.option("--reference-db", "reference_db", default=None, metavar="FILE",
              help="Take approvals, tickets, identities and targets from this pamcorr store "
                   "(any connector, fetched tickets) instead of the input's folders.")
@click.option("--ocsf", "ocsf_uri", default=None, metavar="DIR_OR_URI",
              help="Take the activity from this OCSF dataset (API Activity, Process Activity, "
                   "Authentication; Security Lake's region=/accountId=/eventDay= folders), "
                   "mapped as `pamcorr ingest ocsf` maps it, instead of --input's activity/.")
@click.option("--rows-per-task", type=click.IntRange(1000), default=None,
              help="Actions per Spark task (default 2,000,000).")
@click.option("--hot-key-rows", type=click.IntRange(1), default=None,
              help="A key with more actions than this is split over several tasks "
                   "(default 500,000).")
def spark_correlate_cmd(input_uri, output_uri, master, start, end, grace, lookaround,
                        config_path, tz, reference_db, rows_per_task, hot_key_rows, rule_dirs,
                        ocsf_uri):
    """Judge a data lake's activity on Apache Spark with the embedded engine's verdicts."""
    from correlate.cli import parse_range   # correlate.cli imports this module at its end
    from dataclasses import replace
    from correlate.detect.run import DetectionSettings
    from correlate.engine import Policy
    policy, detections, exceptions, criticality = Policy(), DetectionSettings(), (), ()
    if config_path:
        from correlate.config import load_settings
        settings = load_settings(config_path)
        policy, detections = settings.policy, settings.detections
        exceptions, criticality = settings.exceptions, settings.criticality
    if rule_dirs:
        detections = replace(detections, rule_dirs=detections.rule_dirs + tuple(rule_dirs))
    policy = Policy(policy.grace_s if grace is None else grace,
                    policy.lookaround_s if lookaround is None else lookaround,
                    policy.change_window)
    lo, hi = parse_range(start, end)
    try:
        from correlate import spark_engine
        spark = spark_engine.spark_session(master)
    except ImportError:
        raise click.ClickException("the Spark engine needs pyspark and pyarrow: "
                                   "pip install 'pamcorr[spark]' (and a Java 17 runtime)")
    extra = {k: v for k, v in (("rows_per_task", rows_per_task),
                               ("hot_rows", hot_key_rows)) if v is not None}
    spark_engine.clear_output(output_uri)
    summary = spark_engine.run_spark(spark, input_uri, output_uri, lo, hi, policy, tz,
                                     reference_db, detections=detections,
                                     exceptions=exceptions, criticality=criticality,
                                     ocsf_uri=ocsf_uri, **extra)
    a = summary["activity"]
    _say(f"spark run on {summary['master']}: {a['read']} actions read, {a['accepted']} "
         f"accepted, {a.get('ignored', 0)} ignored, {a['quarantined']} quarantined, "
         f"{a['duplicates']} duplicates; "
         f"{summary['tasks']} tasks")
    for v in summary["verdicts"]:
        _say(f"  {v['verdict']:24} {v['status']:4} {v['count']}")
    if summary["detections"] is not None:
        reviews = summary["detections"]["reviews"]
        _say(f"detections: {sum(reviews.values())} ("
             + ", ".join(f"{k} {n}" for k, n in sorted(reviews.items())) + ")")
    _say(f"findings: {output_uri.rstrip('/')}/findings (then: pamcorr load-run {output_uri})")


@click.command("load-run")
@click.argument("output")
@db_option
def load_run_cmd(output, db):
    """Load a `spark-correlate` output folder into the store as a run (for reports)."""
    from correlate import queries
    from correlate.load_run import load_run
    from correlate.store import Store
    with Store(db) as store:
        run_id = load_run(store, output)
        totals = queries.verdict_totals(store, run_id)
    click.echo(f"run {run_id}")
    for t in totals:
        click.echo(f"  {t['verdict']:24} {t['status']:4} {t['n']}")


COMMANDS = (spark_correlate_cmd, load_run_cmd)


def register(main: click.Group) -> None:
    """Attach the Spark commands to the `pamcorr` group."""
    for command in COMMANDS:
        main.add_command(command)
