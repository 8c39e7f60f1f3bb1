"""`pamcorr watch`: the thin command over correlate.watch (docs/watch.md)."""

from __future__ import annotations

import signal
import sys
from dataclasses import replace
from pathlib import Path

import click

from connectors.base import Options
from correlate.detect.rules import SEVERITIES
from correlate.engine import DEFAULT_GRACE_S, DEFAULT_LOOKAROUND_S, Policy
from correlate.errors import PamcorrError, printable

db_option = click.option("--db", "db", default=None, envvar="PAMCORR_DB", show_envvar=True,
                         help="DuckDB file (default ./pamcorr.duckdb).")


def _pairs(extra) -> dict:
    pairs = {}
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--option")
        pairs[key.strip()] = value
    return pairs


def _address(value: str | None):
    if value is None:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise click.BadParameter(f"{value!r} is not HOST:PORT", param_hint="--listen")
    return host.strip("[]") or "0.0.0.0", int(port)


def _cache(value: str) -> str:
    from correlate.store import _size
    try:
        return _size(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a size such as 40MB or 1GB",
                                 param_hint="--cache-limit") from None


def _rate(value: str) -> tuple[int, int]:
    count, sep, seconds = value.partition("/")
    if not sep or not count.isdigit() or not seconds.isdigit() or not int(count):
        raise click.BadParameter(f"{value!r} is not COUNT/SECONDS (e.g. 5/60)",
                                 param_hint="--rate-limit")
    return int(count), int(seconds)


@click.command("watch")
@click.argument("pairs", nargs=-1, metavar="[SOURCE[:KIND] PATH|DIR|-]...")
@click.option("--listen", default=None, metavar="HOST:PORT",
              help="Receive syslog (UDP and TCP, RFC 5424 or 3164) at this address.")
@click.option("--listen-source", default="syslog", show_default=True,
              help="The connector that reads what --listen receives (syslog, cyberark, ...).")
@click.option("--alert", "alert_specs", multiple=True, metavar="SINK",
              help="stdout (default), http(s)://URL (JSON), slack+https://URL (Slack body), "
                   "syslog://HOST:PORT (UDP) or syslog+tcp://HOST:PORT; repeatable.")
@click.option("--severity", type=click.Choice(SEVERITIES), default="high", show_default=True,
              help="Detections at or above this severity alert (FAIL verdicts always do).")
@click.option("--rate-limit", default="5/60", show_default=True, metavar="COUNT/SECONDS",
              help="At most COUNT alerts per (account, rule) in SECONDS; the rest are folded "
                   "into one summary alert.")
@click.option("--tz", default=None, help="IANA zone for timestamps that carry none.")
@click.option("--year", type=int, default=None, help="Year for year-less syslog timestamps.")
@click.option("--option", "extra", multiple=True, metavar="KEY=VALUE",
              help="Connector option for every followed source (as `ingest --option`).")
@click.option("--grace", type=click.IntRange(0), default=None,
              help=f"Seconds of grace around approval windows (default {DEFAULT_GRACE_S}, or "
                   f"the config's).")
@click.option("--lookaround", type=click.IntRange(0), default=None,
              help=f"Seconds (default {DEFAULT_LOOKAROUND_S}, or the config's).")
@click.option("--rules", "rule_dirs", multiple=True, metavar="DIR",
              help="More detection rule folders.")
@click.option("--no-detections", is_flag=True, default=False, help="Verdicts only.")
@click.option("--rejudge-hours", type=click.FloatRange(0), default=24.0, show_default=True,
              help="FAIL verdicts judged this recently are judged again when approvals or "
                   "tickets arrive.")
@click.option("--spool", default=None, metavar="DIR",
              help="Where chunks wait to be stored (default: DB.watch beside the database).")
@click.option("--dead-letter", default=None, metavar="FILE",
              help="Alerts a webhook refused for good (default: SPOOL/dead-letter.jsonl).")
@click.option("--poll", "poll_s", type=click.FloatRange(0.01), default=1.0, show_default=True,
              help="Seconds between looks when no change is reported.")
@click.option("--debounce-ms", type=click.IntRange(1), default=50, show_default=True)
@click.option("--webhook-attempts", type=click.IntRange(1), default=8, show_default=True)
@click.option("--webhook-backoff", type=click.FloatRange(0), default=0.5, show_default=True,
              help="First retry delay in seconds; doubled each attempt (at most 30 s).")
@click.option("--queue-size", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--config", "config_path", default=None, metavar="FILE",
              help="Follow the [[sources]] of this pamcorr TOML file (files line by line, folders "
                   "and globs by whole new files) with its db, [policy] and [detections].")
@click.option("--cache-limit", default="40MB", show_default=True, metavar="SIZE",
              help="DuckDB's memory while a batch is stored and judged (its cache of the store "
                   "evicted past it); a batch that needs more is done again without it.")
@click.option("--once", is_flag=True, default=False,
              help="Read what is there now, alert, deliver, and stop.")
@db_option
def watch_cmd(pairs, listen, listen_source, alert_specs, severity, rate_limit, tz, year, extra,
              grace, lookaround, rule_dirs, no_detections, rejudge_hours, spool, dead_letter,
              poll_s, debounce_ms, webhook_attempts, webhook_backoff, queue_size, config_path,
              cache_limit, once, db):
    """Follow files, stdin or a syslog port; judge each new action at once; alert on FAIL
    verdicts and detections, and again when a late approval resolves one."""
    from connectors.registry import REGISTRY, check_options
    from correlate.detect.run import DetectionSettings
    from correlate.store import Store, default_db_path
    from correlate.watch.alerts import AlertPolicy
    from correlate.watch.loop import Follow, Watcher, WatchSettings
    from correlate.watch.sinks import make_sink

    config = None
    if config_path:
        from correlate.config import load_settings
        config = load_settings(config_path)
    if len(pairs) % 2 or (not pairs and not listen and not (config and config.sources)):
        raise click.UsageError("give SOURCE PATH pairs (PATH a file, a folder or - for stdin) "
                               "and/or --listen HOST:PORT")
    options_extra = _pairs(extra)
    follows = []
    for source_kind, path in zip(pairs[::2], pairs[1::2]):
        source, _, kind = source_kind.partition(":")
        if source not in REGISTRY:
            raise click.BadParameter(f"unknown source {source!r}; known sources: "
                                     f"{', '.join(REGISTRY)}", param_hint="SOURCE")
        try:
            check_options(source, options_extra)
        except PamcorrError as exc:
            raise click.BadParameter(str(exc), param_hint="--option") from None
        follows.append(Follow(source, path, kind or None, Options(tz, year, options_extra)))
    for src in config.sources if config else ():
        follows += [Follow(src.connector, p, src.kind, Options(src.tz or tz, src.year or year))
                    for p in src.paths]
    if listen_source not in REGISTRY:
        raise click.BadParameter(f"unknown source {listen_source!r}", param_hint="--listen-source")
    db_path = db or (config.db if config and config.db else None) or default_db_path()
    spool_dir = Path(spool or f"{db_path}.watch")
    dead = Path(dead_letter) if dead_letter else spool_dir / "dead-letter.jsonl"
    limit, window = _rate(rate_limit)
    try:
        sinks = [make_sink(s, dead, max_attempts=webhook_attempts, backoff_s=webhook_backoff,
                           queue_size=queue_size) for s in (alert_specs or ("stdout",))]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--alert") from None
    detections = config.detections if config else DetectionSettings()
    detections = replace(detections, enabled=detections.enabled and not no_detections)
    base = config.policy if config else Policy()
    policy = Policy(base.grace_s if grace is None else grace,
                    base.lookaround_s if lookaround is None else lookaround, base.change_window)
    if rule_dirs:
        detections = replace(detections, rule_dirs=detections.rule_dirs + tuple(rule_dirs))
    settings = WatchSettings(
        spool=spool_dir, sinks=sinks, policy=policy,
        alerts=AlertPolicy(severity, limit, window), detections=detections,
        rejudge_s=int(rejudge_hours * 3600), poll_s=poll_s, debounce_ms=debounce_ms,
        listen=_address(listen), listen_source=listen_source,
        listen_options=Options(tz, year, options_extra), once=once,
        cache_limit=_cache(cache_limit))
    with Store(db_path) as store:
        try:
            watcher = Watcher(store, follows, settings,
                              say=lambda m: click.echo(printable(m), err=True))
        except OSError as exc:           # the --listen port taken, a spool not writable
            raise click.ClickException(f"watch: {exc}") from None
        # SIGTERM or Ctrl-C: the cycle in progress finishes (its acknowledgements recorded),
        # then watch stops; a second one stops it at once
        def stop(*_):
            if watcher.stop.is_set():
                raise KeyboardInterrupt
            watcher.stop.set()
            watcher.wake.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        try:
            watcher.run()
        except KeyboardInterrupt:
            pass
    s = watcher.stats
    click.echo(f"watch: {s['chunks']} chunks, {s['files']} whole files, read {s['read']}, "
               f"accepted {s['accepted']}, "
               f"{s['alerts']} alerts delivered, {s['resolved']} verdicts re-judged",
               err=True)
    sys.exit(0)


def register(main: click.Group) -> None:
    main.add_command(watch_cmd)
