"""The `pamcorr` command: thin wrappers that parse options, call the library, print results."""

from __future__ import annotations

import errno
import re
import sys
from dataclasses import replace
from importlib import resources
from datetime import datetime, timezone
from pathlib import Path

import click
import duckdb

from connectors.base import Options
from connectors.registry import available, get_connector
from correlate import __version__, queries
from correlate.detect.rules import CLASSES, SEVERITIES
from correlate.engine import DEFAULT_GRACE_S, DEFAULT_LOOKAROUND_S, Policy, correlate
from correlate.errors import NO_ROOM, OutputError, PamcorrError, printable
from correlate.exceptions import exception_lines, run_exceptions
from correlate.cli_hygiene import hygiene_option, hygiene_settings
from correlate.findings import VERDICTS
from correlate.hygiene import HygieneSettings, severities, summary_line as hygiene_line
from correlate.ingest import ingest
from correlate.store import Store, default_db_path
from reports.detections import REVIEWS

EXIT_FINDINGS = 3


class CliError(click.ClickException):
    exit_code = 1


class CliUsageError(click.ClickException):
    """A usage error (exit 2) that is not about the command line's syntax: no usage text."""

    exit_code = 2


def require_credentials(system: str, url: str) -> None:
    """Missing or blank credentials in the environment: exit 2 before anything connects."""
    from connectors.http import credentials_problem, safe_url
    from correlate.config import SECRET_ENV
    problem = credentials_problem(*SECRET_ENV[system], system)
    if problem:
        raise CliUsageError(printable(f"{problem}; nothing was sent to {safe_url(url)}"))


def _say(msg: str) -> None:
    """One line to stdout; control characters from file names or data shown escaped."""
    click.echo(printable(msg))


def _err(msg: str) -> None:
    click.echo(printable(msg), err=True)


def parse_when(value: str | None, name: str) -> datetime | None:
    """ISO date (midnight UTC) or datetime with a zone (`Z`, `+01:00`). A datetime without a
    zone is a usage error, as data without a zone is: pamcorr does not guess the zone."""
    if value is None:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO date or datetime", param_hint=name)
    if dt.tzinfo is None and len(value.strip()) > 10:      # a time of day but no zone
        raise click.BadParameter(f"{value!r} has a time but no zone; add one (Z or +01:00)",
                                 param_hint=name)
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def parse_range(start: str | None, end: str | None) -> tuple[datetime | None, datetime | None]:
    """--from and --to; a --to not after --from is a usage error (exit 2)."""
    lo, hi = parse_when(start, "--from"), parse_when(end, "--to")
    if lo is not None and hi is not None and hi <= lo:
        raise click.UsageError(f"--to {end} is not after --from {start}")
    return lo, hi


ACTIVITY_SPAN_SQL = "SELECT min(ts), max(ts), count(*) FROM activity"


def no_activity_message(store: Store) -> str:
    """What to say when a run judged nothing: the span of the activity on record."""
    lo, hi, n = store.con.execute(ACTIVITY_SPAN_SQL).fetchone()
    if not n:
        return "no activity in this period; no activity on record (ingest some first)"
    iso = lambda t: t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")  # noqa: E731
    return f"no activity in this period; data on record spans {iso(lo)}..{iso(hi)}"


# How DuckDB reports a file it could not write (the database, its WAL, a spill file).
DUCKDB_WRITE_FAILED = re.compile(r'[Cc]ould not write[^"]*"([^"]+)"\W*(.*)')


def os_error_message(exc: OSError) -> str:
    """One line for an OSError that reached the CLI, naming the file when it is known."""
    why = exc.strerror or str(exc)
    if exc.errno in NO_ROOM:
        why += " (disk full or file-size limit)"
    return f"{printable(exc.filename)}: {why}" if exc.filename else f"error: {why}"


def duckdb_write_failure(exc: Exception) -> str | None:
    """The one-line message for a DuckDB error that is a failed write, else None."""
    found = DUCKDB_WRITE_FAILED.search(str(exc))
    if not found:
        return None
    path, why = found.groups()
    why = why.strip() or "write failed"
    if re.search(r"too large|no space|quota", why, re.IGNORECASE):
        why += " (disk full or file-size limit)"
    return str(OutputError(path, RuntimeError(why)))


class PamcorrGroup(click.Group):
    """Turns pamcorr errors, and files that could not be written (a full disk, a quota, a file-size
    limit), into one-line messages with exit code 1; the one place the CLI maps errors."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except PamcorrError as exc:
            error = CliError(duckdb_write_failure(exc) or printable(str(exc)))
            error.exit_code = getattr(exc, "exit_code", CliError.exit_code)   # ConfigError: 2
            raise error from None
        except OSError as exc:
            if exc.errno == errno.EPIPE:     # `pamcorr findings | head`: click's own handling
                raise
            raise CliError(os_error_message(exc)) from None
        except duckdb.OutOfMemoryException as exc:     # the store's limit, anywhere in a command
            raise CliError("out of memory: " + printable(str(exc).splitlines()[0])
                           + " (raise PAMCORR_MEMORY_LIMIT or free memory)") from None
        except duckdb.Error as exc:
            message = duckdb_write_failure(exc)
            if message is None:
                raise
            raise CliError(message) from None


db_option = click.option("--db", "db", default=None, envvar="PAMCORR_DB", show_envvar=True,
                         help=f"DuckDB file (default ./{default_db_path()}).")


def open_store(db: str | None, read_only: bool = False) -> Store:
    return Store(db, read_only=read_only)


@click.group(cls=PamcorrGroup)
@click.version_option(__version__, prog_name="pamcorr")
def main():
    """pamcorr: which approval and which ticket covered each privileged action, and which had none."""


@main.command()
def sources():
    """List the connectors (sources) pamcorr can ingest."""
    from reports.export import write_aligned
    rows = [[name, "-", "(not available)"] if conn is None else
            [name, ", ".join(conn.kinds), conn.description] for name, conn in available()]
    write_aligned(("source", "kinds", "description"), rows, sys.stdout)


def print_results(results) -> None:
    for r in results:
        if r.skipped:
            _err(f"{r.file}: already ingested (sha256 {r.sha256[:12]}), skipped"
                 + (f"; {r.note}" if r.note else ""))
            continue
        # every term as `name N`, ignored too (also when 0), so people and scripts read it alike
        _say(f"{r.file}: read {r.read} = accepted {r.accepted} + ignored {r.ignored} + "
             f"quarantined {r.quarantined} + duplicates {r.duplicates}")
        if r.replaced:
            _say(f"    replaced: {r.replaced} (earlier runs keep their old findings; "
                 f"run pamcorr correlate again)")
        for reason, n in list(r.reasons.items())[:5]:
            _say(f"    quarantined {n}: {reason}")
        for warning in r.warnings:
            _err(f"{r.file}: warning: {warning}")
        if not r.balanced:
            raise CliError(printable(f"{r.file}: counts do not add up; this is a bug, please "
                                     f"report it"))


def rejected_message(results) -> str | None:
    """The error for files of which no record was accepted (fed to the wrong source?)."""
    bad = [r for r in results if r.rejected]
    if not bad:
        return None
    lines = [f"{r.file}: no record accepted ({r.read} read, all quarantined) by source "
             f"{r.source}, kind {r.kind}; "
             + (f"this looks like {r.guess}" if r.guess else "is it the right source and kind?")
             + "; not recorded as ingested" for r in bad]
    return "\n".join(printable(line) for line in lines)


@main.command("ingest")
@click.argument("source")
@click.argument("paths", nargs=-1, required=True)
@click.option("--kind", default=None, help="approvals, tickets, ticket_history or activity "
              "(generic source); vendor sources detect it.")
@click.option("--tz", default=None, help="IANA zone for timestamps that carry none "
              "(otherwise such rows are quarantined).")
@click.option("--year", type=int, default=None, help="Year for year-less syslog timestamps.")
@click.option("--option", "extra", multiple=True, metavar="KEY=VALUE",
              help="Connector option, e.g. ticket_regex=..., checkout_minutes=90, cluster=prod "
                   "(see README, Sources). Repeatable.")
@click.option("--reingest", is_flag=True, default=False,
              help="Read files ingested before again (e.g. with another --tz) and replace, in "
                   "one transaction, exactly the rows each brought.")
@click.option("--no-progress", is_flag=True, default=False,
              help="No progress on stderr (on a terminal a bar with bytes, files and ETA, "
                   "else a line per file).")
@db_option
def ingest_cmd(source, paths, kind, tz, year, extra, reingest, no_progress, db):
    """Ingest files, directories or globs (.gz too) from SOURCE into the store."""
    from connectors.registry import REGISTRY, check_options
    if source not in REGISTRY:
        raise click.BadParameter(f"unknown source {source!r}; known sources: "
                                 f"{', '.join(REGISTRY)}", param_hint="SOURCE")
    connector = get_connector(source)
    pairs = {}
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--option")
        pairs[key.strip()] = value
    try:
        check_options(source, pairs)
    except PamcorrError as exc:
        raise click.BadParameter(str(exc), param_hint="--option") from None
    options = Options(tz=tz, year=year, extra=pairs)
    not_read: list[str] = []     # files a folder holds that are not read: said now and at the end
    from correlate.cli_progress import IngestProgress, planned_files
    from correlate.ingest import expand_paths
    with open_store(db) as store, IngestProgress(planned_files(paths, expand_paths),
                                                 not no_progress, say=_err) as progress:
        def warn(m):
            progress.note(f"warning: {m}", _err)
            not_read.append(m)

        def run_ingest(files):
            return ingest(store, connector, kind, files, options, progress=progress, warn=warn,
                          reingest=reingest, reject=True)
        if connector.name in ("cloudtrail", "auditd", "teleport"):   # the integrity pass too
            from correlate.integrity.cli import ingest_with_integrity
            results = ingest_with_integrity(store, connector.name, list(paths), options,
                                            run_ingest, warn)
        else:
            results = run_ingest(list(paths))
        pending = queries.pending_approvals(store, connector.name)
    print_results(results)
    for note in not_read:
        click.echo(f"skipped: {note}")
    print_pending(connector.name, pending)
    rejected = rejected_message(results)
    if rejected:
        raise CliError(rejected)


def print_pending(source: str, pending: list[dict], shown: int = 5) -> None:
    """Approvals whose missing event (a create, a decision, an activation) has not arrived."""
    if not pending:
        return
    n = len(pending)
    _err(f"{source}: {n} approval{'' if n == 1 else 's'} pending (kept, not in force until "
         f"the missing event is ingested):")
    for p in pending[:shown]:
        _err(f"    {p['approval_id']}: {p['reason']}")
    if n > shown:
        _err(f"    ... and {n - shown} more (table approvals_pending)")


@main.command("correlate")
@click.option("--from", "start", default=None, help="Start of the period (inclusive, ISO).")
@click.option("--to", "end", default=None, help="End of the period (exclusive, ISO).")
@click.option("--grace", type=click.IntRange(0), default=DEFAULT_GRACE_S, show_default=True,
              help="Seconds of grace on both sides of a window.")
@click.option("--lookaround", type=click.IntRange(0), default=DEFAULT_LOOKAROUND_S,
              show_default=True, help="Seconds within which a window makes an action "
              "out_of_window rather than unapproved.")
@click.option("--fail-on", type=click.Choice(queries.FAIL_ON_CHOICES), multiple=True,
              help="Exit 3 when findings of this status (fail, warn) or worse exist, or a "
              "detection of this severity (info..critical) or worse that is not muted. "
              "Repeatable.")
@click.option("--rules", "rule_dirs", multiple=True, metavar="DIR",
              help="A folder of your own Sigma rules, run besides the shipped ones. Repeatable.")
@click.option("--config", "config_path", default=None, metavar="FILE",
              help="Take [detections] (rule folders, mutes), [[exceptions]] (accepted "
                   "exceptions for verdicts), [criticality], [hygiene] and "
                   "policy.change_window from this pamcorr TOML file.")
@hygiene_option
@db_option
def correlate_cmd(start, end, grace, lookaround, fail_on, rule_dirs, config_path, hygiene_pairs,
                  db):
    """Judge every action in the period (all activity when no range), check the hygiene of the
    approvals starting in it, and store the run."""
    from correlate.detect.run import DetectionSettings
    detections, window, exceptions, criticality = DetectionSettings(), "planned", (), ()
    hygiene = HygieneSettings()
    if config_path:
        from correlate.config import load_settings
        settings = load_settings(config_path)
        detections, window = settings.detections, settings.policy.change_window
        exceptions, criticality = settings.exceptions, settings.criticality
        hygiene = settings.hygiene
    hygiene = hygiene_settings(hygiene_pairs, hygiene)
    if rule_dirs:
        detections = replace(detections, rule_dirs=detections.rule_dirs + tuple(rule_dirs))
    with open_store(db) as store:
        lo, hi = parse_range(start, end)
        run_id = correlate(store, lo, hi, Policy(grace, lookaround, window),
                           detections=detections, exceptions=exceptions,
                           criticality=criticality, hygiene=hygiene)
        totals = queries.verdict_totals(store, run_id)
        accepted = run_exceptions(store, run_id)
        hygiene_n = queries.hygiene_counts(store, run_id)
        checks = queries.check_count(store, run_id)
        skipped = queries.skipped_checks(store)
        no_history = queries.tickets_without_history(store, run_id)
        detections = queries.detection_totals(store, run_id)
        attempts = queries.failed_attempts(store, run_id)
        empty = no_activity_message(store) if not sum(t["n"] for t in totals) else None
    click.echo(f"run {run_id}")
    for t in totals:
        if t["status"] != "INFO":
            click.echo(f"  {t['verdict']:24} {t['status']:4} {t['n']}")
    _say(f"  ticket checks (WARN): {checks}" + "".join(f"; {line}" for line in skipped))
    for line in exception_lines(totals, accepted):
        (_err if " expired on " in line else _say)(line)
    print_failed_attempts(attempts)
    if no_history:
        shown = ", ".join(no_history[:5]) + (", ..." if len(no_history) > 5 else "")
        _say(f"  tickets judged by their current state only (state history unreadable): "
             f"{len(no_history)} ({shown})")
    click.echo(detection_line(detections))
    _say(hygiene_line(hygiene_n))
    if empty:
        _err(f"{empty} (exit {EXIT_FINDINGS}: nothing was judged)")
        sys.exit(EXIT_FINDINGS)
    # a FAIL (WARN) hygiene check counts for --fail-on as a FAIL (WARN) finding does;
    # findings an accepted exception covers do not count
    found = (queries.counted_statuses(totals)
             | {s for s, n in severities(hygiene_n).items() if n})
    if queries.fails(fail_on, found, detections):
        sys.exit(EXIT_FINDINGS)


def print_failed_attempts(attempts: list[dict], shown: int = 10) -> None:
    """Failed attempts apart from the verdicts of work done (attempt_failed, INFO): per account
    and source, most first. Never counted by --fail-on."""
    if not attempts:
        return
    total = sum(a["n"] for a in attempts)
    _say(f"  failed attempts (attempt_failed, INFO, not judged as work done): {total}")
    for a in attempts[:shown]:
        _say(f"    {a['account']} ({a['source']}): {a['n']}")
    if len(attempts) > shown:
        _say(f"    ... and {len(attempts) - shown} more account/source pair(s) "
             f"(pamcorr findings --verdict attempt_failed)")


def detection_line(totals: list[dict]) -> str:
    """`detections: 5 (critical 2, high 1, medium 2; FAIL 3, needs_review 1, MUTED 1)`."""
    n = sum(t["n"] for t in totals)
    if not n:
        return "  detections: 0"
    by_sev, by_review = {}, {}
    for t in totals:
        by_sev[t["severity"]] = by_sev.get(t["severity"], 0) + t["n"]
        by_review[t["review"]] = by_review.get(t["review"], 0) + t["n"]
    sev = ", ".join(f"{k} {v}" for k, v in by_sev.items())
    rev = ", ".join(f"{k} {by_review.get(k, 0)}" for k in ("FAIL", "needs_review", "MUTED"))
    return f"  detections: {n} ({sev}; {rev})"


@main.command("findings")
@click.option("--verdict", type=click.Choice(list(VERDICTS)), default=None)
@click.option("--status", type=click.Choice(["PASS", "WARN", "FAIL", "INFO"]), multiple=True,
              help="Only findings of this status. Repeatable.")
@click.option("--failing", is_flag=True,
              help="Only what a person triages first: FAIL and WARN (same as --status FAIL "
                   "--status WARN). Every row is printed by default.")
@click.option("--account", default=None, help="Only this account or actor.")
@click.option("--identity-kind", "kind",
              type=click.Choice(["human", "service", "bot", "non-human", "unknown"]), default=None,
              help="Only identities of this kind (identities.csv, else what the source says).")
@click.option("--run", "run_id", type=int, default=None, help="Run id (default: latest).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "jsonl"]), default="table")
@click.option("--limit", type=click.IntRange(1), default=None)
@db_option
def findings_cmd(verdict, status, failing, account, kind, run_id, fmt, limit, db):
    """Print findings of a run to stdout (table, formula-safe CSV, or JSON lines)."""
    status = sorted(set(status) | ({"FAIL", "WARN"} if failing else set())) or None
    from reports.export import WRITERS
    from reports.export_sql import write_findings
    with open_store(db, read_only=True) as store:
        if fmt != "table":      # rendered in SQL, streamed in batches
            write_findings(store, fmt, sys.stdout, run_id=run_id, verdict=verdict, status=status,
                           account=account, limit=limit, kind=kind)
            return
        rows = queries.findings(store, run_id, verdict, status, account, limit, kind)
    WRITERS[fmt](rows, sys.stdout)


@main.command("detections")
@click.option("--run", "run_id", type=int, default=None, help="Run id (default: latest).")
@click.option("--class", "cls", type=click.Choice(CLASSES), default=None,
              help="Only this action class.")
@click.option("--severity", type=click.Choice(SEVERITIES), default=None,
              help="Only this severity or worse.")
@click.option("--review", type=click.Choice(REVIEWS), default=None,
              help="FAIL (no valid approval), needs_review (inside an approval) or MUTED.")
@click.option("--account", default=None, help="Only this account or actor.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "jsonl"]), default="table")
@click.option("--limit", type=click.IntRange(1), default=None)
@db_option
def detections_cmd(run_id, cls, severity, review, account, fmt, limit, db):
    """Print a run's detections, worst first: one row per (action, rule), with the action's
    verdict, approval and ticket (table, formula-safe CSV, or JSON lines)."""
    from reports.detections import WRITERS, detections
    from reports.detections_sql import write_detections
    with open_store(db, read_only=True) as store:
        if fmt != "table":      # rendered in SQL, streamed in batches
            write_detections(store, fmt, sys.stdout, run_id=run_id, cls=cls, severity=severity,
                             review=review, account=account, limit=limit)
            return
        rows = detections(store, run_id, cls, severity, review, account, limit=limit)
    WRITERS[fmt](rows, sys.stdout)


@main.group()
def report():
    """Render HTML reports."""


@report.command("gaps")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="gap-report.html",
              show_default=True)
@click.option("--run", "run_id", type=int, default=None)
@db_option
def report_gaps(output, run_id, db):
    """The gap report: risky actions, totals, sources, accounts, timelines, failing findings."""
    from reports.gaps import write_gap_report
    with open_store(db, read_only=True) as store:
        path = write_gap_report(store, Path(output), run_id)
        rid = run_id or store.scalar("SELECT max(run_id) FROM runs")
        judged = store.scalar("SELECT count(*) FROM (SELECT 1 FROM findings WHERE run_id = ? "
                              "LIMIT 1)", [rid])      # any: a count read 1e7 rows
        empty = no_activity_message(store) if rid is not None and not judged else None
    _say(str(path))
    if empty:
        _err(f"{empty} (exit {EXIT_FINDINGS}: nothing was judged)")
        sys.exit(EXIT_FINDINGS)


@main.group()
def fetch():
    """Fetch the tickets approvals cite from Jira or ServiceNow (credentials from the environment)."""


def _print_fetch(summary, system):
    click.echo(f"{system}: fetched {summary.fetched}, missing {summary.missing}, failed "
               f"{summary.failed}, invalid refs {summary.invalid} (fetch {summary.fetch_id})")
    if summary.failed and not summary.fetched:
        raise CliError(f"{system}: every ticket fetch failed ({summary.failed}); nothing was "
                       f"fetched")


@fetch.command("jira")
@click.option("--url", required=True, help="Jira base URL.")
@click.option("--jql", default=None, help="Fetch this JQL instead of the cited tickets.")
@click.option("--from", "start", default=None, help="Approvals overlapping this period (ISO).")
@click.option("--to", "end", default=None)
@click.option("--flavour", type=click.Choice(["cloud", "datacenter"]), default=None,
              help="Override the server-info detection.")
@click.option("--planned-start-field", default=None, help="Custom field id of the planned start.")
@click.option("--planned-end-field", default=None, help="Custom field id of the planned end.")
@db_option
def fetch_jira_cmd(url, jql, start, end, flavour, planned_start_field, planned_end_field, db):
    """Fetch Jira issues (PAMCORR_JIRA_USER / PAMCORR_JIRA_TOKEN) with full status history."""
    from connectors.jira_fetch import fetch_jira, jira_credentials_from_env
    from connectors.ticket_refs import TicketFetchError, is_servicenow_ref
    from correlate.fetch import store_fetch, ticket_refs
    require_credentials("jira", url)
    user, token = jira_credentials_from_env()
    with open_store(db) as store:
        keys = None
        if not jql:
            # ServiceNow numbers and sys_ids belong to `fetch servicenow`; all else is tried here,
            # where malformed references become invalid_ticket_ref findings.
            keys = [r for r in ticket_refs(store, *parse_range(start, end))
                    if not is_servicenow_ref(r)]
        try:
            result = fetch_jira(url, keys=keys, jql=jql, user=user, token=token, flavour=flavour,
                                planned_start_field=planned_start_field,
                                planned_end_field=planned_end_field)
        except TicketFetchError as exc:
            raise CliError(printable(str(exc))) from None
        _print_fetch(store_fetch(store, result, "jira", url, asked=keys), "jira")


@fetch.command("servicenow")
@click.option("--url", required=True, help="ServiceNow instance URL.")
@click.option("--from", "start", default=None, help="Approvals overlapping this period (ISO).")
@click.option("--to", "end", default=None)
@db_option
def fetch_servicenow_cmd(url, start, end, db):
    """Fetch change requests (PAMCORR_SNOW_USER / PAMCORR_SNOW_TOKEN) and their approvers."""
    from connectors.servicenow_fetch import fetch_servicenow, servicenow_credentials_from_env
    from connectors.ticket_refs import TicketFetchError, is_jira_key
    from correlate.fetch import store_fetch, ticket_refs
    require_credentials("servicenow", url)
    user, token = servicenow_credentials_from_env()
    with open_store(db) as store:
        # Jira keys belong to `fetch jira`; CHG numbers, sys_ids and malformed references are
        # tried here (malformed ones become invalid_ticket_ref, never sent).
        refs = [r for r in ticket_refs(store, *parse_range(start, end))
                if not is_jira_key(r)]
        try:
            result = fetch_servicenow(url, refs, user=user, token=token)
        except TicketFetchError as exc:
            raise CliError(printable(str(exc))) from None
        _print_fetch(store_fetch(store, result, "servicenow", url, asked=refs), "servicenow")


SAMPLE_FILES = (("approvals", "approvals.csv"), ("tickets", "tickets.csv"),
                ("ticket_history", "ticket_history.csv"), ("activity", "activity.jsonl"),
                ("approvers", "approvers.csv"))


def sample_dir() -> Path:
    """The bundled sample week: package data `correlate.sample_data` (sample_data/ in the source
    tree, inside site-packages when installed from a wheel)."""
    return Path(str(resources.files("correlate.sample_data")))


@main.command()
@click.option("--db", default="pamcorr-demo.duckdb", show_default=True,
              help="Demo database (recreated).")
@click.option("-o", "--output", default="pamcorr-demo-report.html", show_default=True)
def demo(db, output):
    """Fresh database from sample_data/, correlate, write the gap report, print its path."""
    from reports.gaps import write_gap_report
    folder = sample_dir()
    if not (folder / "activity.jsonl").exists():
        raise CliError(f"sample data not found in {folder}")
    for suffix in ("", ".wal"):
        Path(db + suffix).unlink(missing_ok=True)
    with open_store(db) as store:
        generic = get_connector("generic")
        for kind, name in SAMPLE_FILES:
            print_results(ingest(store, generic, kind, [str(folder / name)], Options()))
        run_id = correlate(store)
        for t in queries.verdict_totals(store, run_id):
            _err(f"  {t['verdict']:24} {t['status']:4} {t['n']}")
        _err(detection_line(queries.detection_totals(store, run_id)))
        _err(hygiene_line(queries.hygiene_counts(store, run_id)))
        path = write_gap_report(store, Path(output), run_id)
    import shlex
    q = shlex.quote(db)
    _err("next:")
    for command in (f"pamcorr findings --db {q} --failing", f"pamcorr report gaps --db {q} "
                    f"-o gaps.html", f"pamcorr scope svc-deploy --db {q}",
                    f"pamcorr hygiene --db {q}"):
        _err(f"  {command}")
    _say(str(Path(path).resolve()))     # the last stdout line: .ci/run reads it


from correlate.cli_jobs import register  # noqa: E402 - the job commands (run, scope, export, verify)

register(main)

from correlate.cli_watch import register as register_watch  # noqa: E402 - `pamcorr watch`

register_watch(main)
from correlate.cli_spark import register as register_spark  # noqa: E402 - spark-correlate, load-run

register_spark(main)
from correlate.cli_hygiene import register as register_hygiene  # noqa: E402 - `pamcorr hygiene`

register_hygiene(main)
from correlate.integrity.cli import register as register_integrity  # noqa: E402

register_integrity(main)
