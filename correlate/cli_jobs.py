"""The three jobs users run (`run`, `scope`, `export`) and `verify`: thin click commands over
correlate.jobs, reports.scope and reports.evidence, attached to the `pamcorr` group by register()."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from correlate.cli_hygiene import hygiene_option, hygiene_settings
from correlate.errors import printable
from correlate.queries import FAIL_ON_CHOICES

EXIT_FINDINGS = 3

db_option = click.option("--db", "db", default=None, envvar="PAMCORR_DB", show_envvar=True,
                         help="DuckDB file (default ./pamcorr.duckdb).")


def _say(msg: str) -> None:
    """One line to stdout; control characters from file names or data shown escaped."""
    click.echo(printable(msg))


def _err(msg: str) -> None:
    click.echo(printable(msg), err=True)


def _when(value, name):
    from correlate.cli import parse_when   # correlate.cli imports this module at its end
    return parse_when(value, name)


@click.command("run")
@click.option("--config", "config_path", required=True, envvar="PAMCORR_CONFIG", show_envvar=True,
              type=click.Path(dir_okay=False), help="The TOML file (see pamcorr.example.toml).")
@click.option("--week", default=None, help="ISO week such as 2026-W47 (default: the last full "
              "ISO week in UTC).")
@click.option("--fail-on", type=click.Choice(FAIL_ON_CHOICES), multiple=True,
              help="Exit 3 when findings (or coverage gaps) of this status (fail, warn) or worse "
              "exist, or a detection of this severity (info..critical) or worse that is not "
              "muted. Repeatable; default from [policy] fail_on.")
@click.option("--db", "db", default=None, help="DuckDB file (overrides the config's db).")
@click.option("--no-progress", is_flag=True, default=False,
              help="No ingest progress on stderr (on a terminal a bar with bytes, files and "
                   "ETA, else a line per file).")
@hygiene_option
def run_cmd(config_path, week, fail_on, db, no_progress, hygiene_pairs):
    """Weekly compliance run: ingest new files, correlate the week, write OUT/<week>/."""
    from dataclasses import replace
    from correlate.config import load_settings
    from correlate.jobs import last_full_week, parse_week, run_weekly, summary_lines, worst_status
    from correlate.queries import fails
    settings = load_settings(config_path)
    if hygiene_pairs:
        settings = replace(settings, hygiene=hygiene_settings(hygiene_pairs, settings.hygiene))
    period = parse_week(week) if week else last_full_week()
    if settings.tickets is not None:     # before ingesting anything, let alone connecting
        from correlate.cli import require_credentials
        require_credentials(settings.tickets.system, settings.tickets.url)
    from correlate.cli_progress import IngestProgress, planned_files
    from correlate.ingest import expand_paths
    files = planned_files([p for s in settings.sources for p in s.paths], expand_paths)
    with IngestProgress(files, not no_progress, say=_err) as progress:
        result = run_weekly(settings, period, db=db, progress=progress)
    for line in summary_lines(result):
        _say(line)
    fail_on = fail_on or settings.fail_on or ()
    met = fails(fail_on, worst_status(result.summary), result.summary.detections)
    if met:
        _say(exit_reason(result.summary, met))
        sys.exit(EXIT_FINDINGS)


def exit_reason(summary, met) -> str:
    """One line saying why `run` exits 3: `exit 3: 4,172 FAIL findings (--fail-on fail)`."""
    from correlate.detect.rules import SEVERITIES
    from correlate.queries import FAIL_ON_STATUS
    parts = []
    for level in met:
        if level in FAIL_ON_STATUS:
            for status in ("FAIL", "WARN"):
                if status not in FAIL_ON_STATUS[level]:
                    continue
                n = sum(t["n"] - t.get("excepted", 0) for t in summary.totals
                        if t["status"] == status)          # accepted exceptions do not count
                gaps = sum(1 for c in [*summary.coverage, *summary.source_coverage]
                           if c.status == status)
                parts += [f"{n:,} {status} findings"] if n else []
                h = sum(c["n"] for c in summary.hygiene if c["severity"] == status)
                parts += [f"{h} {status} approval hygiene finding(s)"] if h else []
                parts += [f"{gaps} {status} coverage gap(s)"] if gaps else []
                checks = sum(1 for f in summary.integrity if f["severity"] == status)
                parts += [f"{checks} {status} input-integrity finding(s)"] if checks else []
        else:
            n = sum(d["n"] for d in summary.detections if d["review"] != "MUTED"
                    and SEVERITIES.index(d["severity"]) >= SEVERITIES.index(level))
            parts.append(f"{n:,} unmuted detection(s) at {level} or worse")
    flags = " ".join(f"--fail-on {level}" for level in met)
    return f"exit {EXIT_FINDINGS}: {', '.join(dict.fromkeys(parts))} ({flags})"


@click.command("scope")
@click.argument("account", required=False)
@click.option("--approval", "approval_id", default=None,
              help="Scope one approval: what was done under it.")
@click.option("--target", default=None,
              help="Scope one target (host, database, cluster): what happened on it.")
@click.option("--from", "start", default=None, help="Start (inclusive, ISO).")
@click.option("--to", "end", default=None, help="End (exclusive, ISO).")
@click.option("--run", "run_id", type=int, default=None,
              help="Verdicts of this run only (default: the newest run that judged each action).")
@click.option("-o", "--output", default=None,
              help="Output file (default scope.html; JSON goes to stdout).")
@click.option("--format", "fmt", type=click.Choice(["html", "json"]), default="html",
              show_default=True)
@db_option
def scope_cmd(account, approval_id, target, start, end, run_id, output, fmt, db):
    """Everything on record for ACCOUNT (or --approval ID, or --target HOST): approvals, actions,
    sessions, tickets."""
    from correlate.store import Store
    from reports.scope import scope_context, scope_json, write_scope
    if sum(x is not None for x in (account, approval_id, target)) != 1:
        raise click.UsageError("give an ACCOUNT, --approval ID or --target HOST (one of them)")
    from correlate.cli import parse_range
    with Store(db, read_only=True) as store:
        if account is not None:
            unknown_account(store, account)
        if target is not None:
            unknown_target(store, target)
        ctx = scope_context(store, account, approval_id, *parse_range(start, end), run_id,
                            target=target)
    if fmt == "json" and output in (None, "-"):
        click.echo(scope_json(ctx), nl=False)
        return
    path = write_scope(ctx, Path(output or "scope.html"), fmt)
    _err(f"{ctx.subject}: {len(ctx.approvals)} approval(s), {ctx.actions_total} action(s), "
         f"{len(ctx.sessions)} session(s), {len(ctx.tickets)} ticket(s)")
    _say(str(path))


# Every name an account goes by on record: actors, approvals, the identities table.
KNOWN_NAMES_SQL = """
SELECT DISTINCT name FROM (
    SELECT account AS name FROM activity UNION ALL SELECT actor FROM activity
    UNION ALL SELECT account FROM approvals UNION ALL SELECT requester FROM approvals
    UNION ALL SELECT approver FROM approvals
    UNION ALL SELECT alias_norm FROM identities UNION ALL SELECT identity FROM identities
) WHERE name IS NOT NULL
"""


# Every name a target goes by on record: action targets, approval targets, the targets table.
KNOWN_TARGETS_SQL = """
SELECT DISTINCT name FROM (
    SELECT target AS name FROM activity UNION ALL SELECT target FROM approvals
    UNION ALL SELECT unnest(targets) FROM approvals
    UNION ALL SELECT name_norm FROM targets UNION ALL SELECT alias_norm FROM targets
) WHERE name IS NOT NULL
"""


def _no_such(store, sql: str, name: str, what: str) -> None:
    """An error (exit 1) naming the close names on record, unless `name` is one of them."""
    from correlate.cli import CliError
    names = {n for (n,) in store.query(sql)}
    if name.lower() in {n.lower() for n in names}:
        return
    import difflib
    by_lower = {n.lower(): n for n in sorted(names)}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=5, cutoff=0.6)
    close += [k for k in by_lower if k.startswith(name.lower()) and k not in close][:5]
    hint = (f"; did you mean {', '.join(by_lower[k] for k in close[:5])}?" if close else "")
    raise CliError(printable(f"{name}: no such {what} on record{hint}"))


def unknown_account(store, account: str) -> None:
    """`pamcorr scope nobody`: an error (exit 1) with the close names on record, not an empty
    page."""
    _no_such(store, KNOWN_NAMES_SQL, account, "account or alias")


def unknown_target(store, target: str) -> None:
    """`pamcorr scope --target nowhere`: the same, for targets (`db-prod-1` -> `db-prod-01`)."""
    _no_such(store, KNOWN_TARGETS_SQL, target, "target")


@click.command("export")
@click.option("--from", "start", default=None, help="Only findings from here (inclusive, ISO).")
@click.option("--to", "end", default=None, help="Only findings before this (exclusive, ISO).")
@click.option("--run", "run_id", type=int, default=None, help="Run id (default: latest).")
@click.option("-o", "--output", required=True,
              help="Bundle folder, or a file ending in .zip.")
@click.option("--previous", type=click.Path(exists=True), default=None,
              help="The bundle this one follows (its manifest's sha256 goes into this one); "
              "without it the bundle starts a chain.")
@db_option
def export_cmd(start, end, run_id, output, previous, db):
    """Audit evidence bundle: findings (CSV, JSONL, OCSF), gap report, index, chained manifest."""
    from correlate.store import Store, default_db_path
    from reports.evidence import write_bundle
    if db != ":memory:" and not Path(db or default_db_path()).exists():
        raise click.ClickException(printable(f"no pamcorr database at {db or default_db_path()}; "
                                             f"run `pamcorr ingest` and `pamcorr correlate` first"))
    with Store(db) as store:
        bundle = write_bundle(store, output, run_id, _when(start, "--from"), _when(end, "--to"),
                              previous=previous)
    prev = bundle.manifest["previous"]
    _err(f"{len(bundle.manifest['outputs'])} file(s) + manifest.json, "
         f"{bundle.manifest['findings']} finding(s); "
         + (f"follows {prev['bundle']} ({prev['manifest_sha256'][:16]}...)" if prev
            else "first bundle of its chain"))
    _say(f"{bundle.path}  manifest sha256 {bundle.manifest_sha256}")


@click.command("verify")
@click.argument("bundle", type=click.Path(exists=True))
@click.option("--chain-dir", "chain_dirs", type=click.Path(exists=True, file_okay=False),
              multiple=True, help="Folder holding previous bundles (repeatable; BUNDLE's own "
              "folder is always searched).")
@click.option("--expect-sha256", default=None, metavar="HEX",
              help="The manifest's sha256 as recorded when the bundle was written (export and "
              "run print it); any other is a problem.")
def verify_cmd(bundle, chain_dirs, expect_sha256):
    """Recompute a bundle's hashes and walk its chain; exit 1 on any changed, missing or extra file."""
    from reports.evidence import verify_bundle
    result = verify_bundle(bundle, chain_dirs, expect_sha256)
    for line in result.lines():      # member names of a hostile zip cannot forge an "OK" line
        _say(line)
    if not result.ok:
        sys.exit(1)


COMMANDS = (run_cmd, scope_cmd, export_cmd, verify_cmd)


def register(main: click.Group) -> None:
    """Attach the job commands to the `pamcorr` group."""
    for command in COMMANDS:
        main.add_command(command)
