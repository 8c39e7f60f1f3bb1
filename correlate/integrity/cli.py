"""`pamcorr integrity`, and the CloudTrail digest step of `pamcorr ingest cloudtrail`."""

from __future__ import annotations

import json

import click

from correlate.clock import now_utc
from correlate.errors import printable
from correlate.integrity.checks import SEVERITIES, run_checks
from correlate.integrity.load import (IntegrityFileError, after_ingest, ingest_digests,
                                      load_options, split_digests)
from correlate.store import Store

FAIL_ON = {"warn": "WARN", "fail": "FAIL"}
INTEGRITY_OPTIONS = ("cloudtrail_public_keys", "digest_metadata")


def ingest_with_integrity(store: Store, source: str, paths: list[str], options, ingest_rest,
                          warn=None) -> list:
    """`ingest_rest(files)` (the usual ingest) with the integrity pass of the source: CloudTrail
    digest files go to ct_digest instead (their results last) and log files are hashed;
    auditd files have their serials recorded; --option key and metadata files are stored."""
    from correlate.ingest import expand_paths
    try:
        load_options(store, options.extra)
    except IntegrityFileError as exc:
        raise click.BadParameter(str(exc), param_hint="--option") from None
    # Stored now, and they change nothing a connector reads: not kept among the options the
    # ingest logs, or a later ingest without them would call the files "read with other
    # options" and ask for --reingest (`options` is the one `ingest_rest` reads).
    for name in INTEGRITY_OPTIONS:
        options.extra.pop(name, None)
    files = expand_paths(paths, warn)
    digests, rest = split_digests(files) if source == "cloudtrail" else ([], files)
    results = ingest_rest([str(f) for f in rest]) if rest else []
    after_ingest(store, source, rest, options.extra, results)
    return results + ingest_digests(store, digests)


def _period(start, end):
    from correlate.cli import parse_range
    return parse_range(start, end)


def worst(findings: list[dict]) -> str | None:
    """The highest severity among `findings` (None when there are none)."""
    ranks = [SEVERITIES.index(f["severity"]) for f in findings if f["severity"] in SEVERITIES]
    return SEVERITIES[max(ranks)] if ranks else None


def print_findings(findings: list[dict], fmt: str) -> None:
    """Findings to stdout: an aligned table (severity, check, source, subject, detail) or JSON."""
    if fmt == "json":
        click.echo(json.dumps([{**f, "evidence": json.loads(f["evidence"] or "null")}
                               for f in findings], indent=2, default=str))
        return
    if not findings:
        click.echo("no input-integrity findings")
        return
    cols = ("severity", "check_id", "source", "subject", "detail")
    widths = {c: min(60, max(len(c), *(len(str(f[c])) for f in findings))) for c in cols[:-1]}
    click.echo("  ".join(c.upper().ljust(widths.get(c, 0)) for c in cols).rstrip())
    for f in findings:
        click.echo(printable("  ".join(str(f[c]).ljust(widths.get(c, 0)) for c in cols)))


@click.command("integrity")
@click.option("--from", "start", default=None, help="Start of the period (inclusive, ISO).")
@click.option("--to", "end", default=None, help="End of the period (exclusive, ISO).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("--fail-on", type=click.Choice(sorted(FAIL_ON)), default=None,
              help="Exit 3 when a finding at or above this severity exists.")
@click.option("--db", "db", default=None, envvar="PAMCORR_DB", show_envvar=True,
              help="DuckDB file.")
def integrity_cmd(start, end, fmt, fail_on, db):
    """Check the inputs: CloudTrail digest chains, audit gaps, silent sources (docs/integrity.md)."""
    lo, hi = _period(start, end)
    with Store(db) as store:
        findings = run_checks(store, lo, hi, now_utc())
    print_findings(findings, fmt)
    top = worst(findings)
    if fail_on and top and SEVERITIES.index(top) >= SEVERITIES.index(FAIL_ON[fail_on]):
        raise SystemExit(3)


def register(main: click.Group) -> None:
    """Attach `pamcorr integrity` to the group."""
    main.add_command(integrity_cmd)
