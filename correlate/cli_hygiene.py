"""`pamcorr hygiene` and the `--hygiene KEY=VALUE` option of correlate and run: thin click code
over reports.hygiene and correlate.hygiene (docs/hygiene.md)."""

from __future__ import annotations

import sys

import click

from correlate.hygiene import CHECK_IDS, HygieneSettings, parse_pairs

db_option = click.option("--db", "db", default=None, envvar="PAMCORR_DB", show_envvar=True,
                         help="DuckDB file (default ./pamcorr.duckdb).")

hygiene_option = click.option(
    "--hygiene", "hygiene_pairs", multiple=True, metavar="KEY=VALUE",
    help="An approval hygiene threshold (unused_runs=3, min_window=2 (h), used_fraction=0.1, "
         "chain_gap=5 (min), max_chain=12 (h), max_per_week=10, ticket_span=14 (days), "
         "bg_per_30d=2, scope_min_hosts=10, scope_used_fraction=0.2), over the config's "
         "[hygiene]. Repeatable.")


def hygiene_settings(pairs, base: HygieneSettings = HygieneSettings()) -> HygieneSettings:
    """`--hygiene` pairs over `base`; an unknown key, a value that is not a number or a negative
    one is a usage error (exit 2)."""
    try:
        return parse_pairs(pairs, base)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--hygiene") from None


@click.command("hygiene")
@click.option("--run", "run_id", type=int, default=None, help="Run id (default: latest).")
@click.option("--check", "check_id", type=click.Choice(CHECK_IDS), default=None,
              help="Only this check.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "jsonl"]), default="table")
@click.option("--limit", type=click.IntRange(1), default=None)
@db_option
def hygiene_cmd(run_id, check_id, fmt, limit, db):
    """Print a run's approval hygiene findings, worst first (self-approval, bypass, unused,
    oversized windows, renewal chains, ...): table, formula-safe CSV, or JSON lines. The counts
    per check, with what could not be judged, go to stderr."""
    from correlate import queries
    from correlate.errors import printable
    from correlate.store import Store
    from reports.hygiene import WRITERS, hygiene_rows
    with Store(db, read_only=True) as store:
        rid = queries.resolve_run(store, run_id)
        rows = hygiene_rows(store, rid, check_id, limit)
        counts = queries.hygiene_counts(store, rid)
    if not counts:
        click.echo(f"run {rid} predates approval hygiene: run pamcorr correlate again", err=True)
    for c in counts:
        if check_id is None or c["check_id"] == check_id:
            note = (f", not judged {c['not_judged']} ({c['not_judged_why']})"
                    if c["not_judged"] else "")
            click.echo(printable(f"{c['check_id']:24} {c['severity']:4} {c['n']} of "
                                 f"{c['judged']} judged{note}"), err=True)
    WRITERS[fmt](rows, sys.stdout)


def register(main: click.Group) -> None:
    """Attach `hygiene` to the `pamcorr` group."""
    main.add_command(hygiene_cmd)
