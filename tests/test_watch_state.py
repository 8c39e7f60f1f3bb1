"""Watch's state in the store, in-process: a chunk spooled and ingested by a process that died
before committing its verdicts is finished by the next one; lines keep the followed file's
numbers; a re-judged verdict is a new version of the same alert."""

from __future__ import annotations

import io
import json
from pathlib import Path

from connectors.generic import GenericConnector
from connectors.base import Options
from correlate.ingest import ingest
from correlate.store import Store
from correlate.watch.loop import Follow, Watcher, WatchSettings
from correlate.watch.sinks import StdoutSink
from correlate.watch.sources import FileFollower
from correlate.watch.state import Spool
from correlate.detect.run import DetectionSettings
from tests.watch_helpers import event


def _watcher(store, log: Path, spool: Path, out: io.StringIO) -> Watcher:
    return Watcher(store, [Follow("generic", str(log), "activity")],
                   WatchSettings(spool=spool, sinks=[StdoutSink(out)],
                                 detections=DetectionSettings(enabled=False)),
                   say=lambda m: None)


def test_chunk_ingested_by_a_process_that_died_is_judged_and_alerted_by_the_next(tmp_path):
    log, spool = tmp_path / "act.jsonl", tmp_path / "spool"
    log.write_text(event(1) + event(2))
    store = Store(tmp_path / "w.duckdb")
    out = io.StringIO()
    w = _watcher(store, log, spool, out)
    w.step()
    assert sorted(json.loads(x)["event_id"] for x in out.getvalue().splitlines()) == ["e1", "e2"]
    # the "dead" process: read the next lines, spooled and ingested them, died before its commit
    with open(log, "a") as fh:
        fh.write(event(3) + event(4))
    follower = FileFollower("generic", "activity", str(log), _position(store, log))
    (chunk,) = follower.poll()
    spooled = Spool(spool).write(chunk)
    ingest(store, GenericConnector(), "activity", [str(spooled)], Options())
    out2 = io.StringIO()
    again = _watcher(store, log, spool, out2)
    again.step()
    again.step()
    assert sorted(json.loads(x)["event_id"] for x in out2.getvalue().splitlines()) == ["e3", "e4"]
    assert store.scalar("SELECT count(*) FROM activity") == 4
    assert store.scalar("SELECT offset_bytes FROM watch_offsets") == log.stat().st_size
    assert not list((spool / "chunks").iterdir())
    # the second part's rows are filed under the followed file, numbered as its lines 3 and 4
    rows = store.query("SELECT file, offset_bytes, first_line FROM ingest_log ORDER BY ingest_id")
    assert rows[-1][0] == str(log) and rows[-1][2] == 3


def _position(store, log):
    from correlate.watch.state import position
    return position(store.con, "generic", "activity", str(log))


def test_quarantined_line_keeps_its_line_number_in_the_followed_file(tmp_path):
    log, spool = tmp_path / "act.jsonl", tmp_path / "spool"
    log.write_text(event(1) + event(2))
    store = Store(tmp_path / "w.duckdb")
    w = _watcher(store, log, spool, io.StringIO())
    w.step()
    with open(log, "a") as fh:
        fh.write(event(3) + '{"event_id": "bad", "ts": "yesterday"}\n')
    w.step()
    ((file, line),) = store.query("SELECT file, line FROM quarantine")
    assert (file, line) == (str(log), 4)


def test_file_rotated_while_watch_was_stopped_is_finished_then_the_new_one_read(tmp_path):
    log, spool = tmp_path / "act.jsonl", tmp_path / "spool"
    log.write_text(event(1))
    store = Store(tmp_path / "w.duckdb")
    first = _watcher(store, log, spool, io.StringIO())
    first.step()
    first.close()
    with open(log, "a") as fh:                     # written after the stop, before rotation
        fh.write(event(2))
    log.rename(tmp_path / "act.jsonl.1")
    log.write_text(event(3))
    out = io.StringIO()
    again = _watcher(store, log, spool, out)
    for _ in range(3):
        again.step()
    assert sorted(json.loads(x)["event_id"] for x in out.getvalue().splitlines()) == ["e2", "e3"]
    assert store.scalar("SELECT count(*) FROM activity") == 3


def test_watch_usage_errors_are_messages_not_tracebacks(tmp_path):
    import socket
    from click.testing import CliRunner
    from correlate.cli import main
    db = str(tmp_path / "w.duckdb")
    run = CliRunner().invoke
    odd = run(main, ["watch", "--db", db, "generic:activity"])
    assert odd.exit_code == 2 and "SOURCE PATH pairs" in odd.output
    unknown = run(main, ["watch", "--db", db, "nosuch", "x.log"])
    assert unknown.exit_code == 2 and "unknown source 'nosuch'" in unknown.output
    (tmp_path / "a.jsonl.gz").write_bytes(b"")
    gz = run(main, ["watch", "--db", db, "generic:activity", str(tmp_path / "a.jsonl.gz")])
    assert gz.exit_code == 1 and "cannot be followed line by line" in gz.output
    sink = run(main, ["watch", "--db", db, "--alert", "ftp://x", "generic:activity", "a.jsonl"])
    assert sink.exit_code == 2 and "unknown alert sink" in sink.output
    mem = run(main, ["watch", "--db", db, "--cache-limit", "lots", "generic:activity", "a.jsonl"])
    assert mem.exit_code == 2 and "'lots' is not a size" in mem.output
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = run(main, ["watch", "--db", db, "--listen", f"127.0.0.1:{port}", "--once"])
    assert busy.exit_code == 1 and "Address already in use" in busy.output
    assert busy.exception is None or isinstance(busy.exception, SystemExit)


def test_a_muted_detection_does_not_alert(tmp_path):
    from correlate.detect.run import Mute
    log = tmp_path / "act.jsonl"
    log.write_text(event(1, detail="rm -rf /etc") + event(2, detail="rm -rf /srv"))
    store = Store(tmp_path / "w.duckdb")
    out = io.StringIO()
    mute = Mute(rule="recursive_delete_of_data", account="user1", reason="cleanup job")
    w = Watcher(store, [Follow("generic", str(log), "activity")],
                WatchSettings(spool=tmp_path / "spool", sinks=[StdoutSink(out)], once=True,
                              detections=DetectionSettings(mutes=(mute,))),
                say=lambda m: None)
    w.step()
    alerts = [json.loads(x) for x in out.getvalue().splitlines()]
    assert sorted((a["event_id"], a["rule"]) for a in alerts) == [
        ("e1", "verdict"), ("e2", "recursive_delete_of_data"), ("e2", "verdict")]


def test_batch_that_needs_more_than_the_cache_limit_is_done_again_with_the_limit_lifted(tmp_path):
    """A batch is stored held to --cache-limit (DuckDB's cache of the store evicted); a file
    read whole and a followed file's 8 MiB chunk need far more: each runs out of memory, is
    rolled back and done again with the limit lifted. Nothing lost or doubled; the limit is
    lifted for the rest of the cycle (acknowledgements of many alerts)."""
    (tmp_path / "drop").mkdir()
    log = tmp_path / "act.jsonl"
    log.write_text("")
    store = Store(tmp_path / "w.duckdb")
    limit = "SELECT current_setting('memory_limit')"
    lifted = store.con.execute(limit).fetchall()
    w = Watcher(store, [Follow("generic", str(tmp_path / "drop"), "activity"),
                        Follow("generic", str(log), "activity")],
                WatchSettings(spool=tmp_path / "spool", sinks=[StdoutSink(io.StringIO())],
                              once=True, cache_limit="8MB",
                              detections=DetectionSettings(enabled=False)),
                say=lambda m: None)
    try:
        (tmp_path / "drop" / "big.jsonl").write_text("".join(
            event(n, account="u", detail=f"cmd --value {n}") for n in range(60000)))
        log.write_text("".join(event(60000 + n, account="u", detail=f"cmd --value {n}")
                               for n in range(60000)))
        assert w.step() == 2
        assert store.scalar("SELECT count(*) FROM activity") == 120000
        assert store.scalar("SELECT count(DISTINCT event_id) FROM activity") == 120000
        assert store.con.execute(limit).fetchall() == lifted
    finally:
        store.close()


def test_chunk_that_runs_out_of_memory_is_not_skipped_and_is_stored_after_a_restart(tmp_path):
    """Ingest once reported DuckDB out of memory as a file it cannot read; watch then said so and
    mark the chunk read (its lines lost). It stops instead; the next start stores the chunk."""
    import pytest
    from correlate.watch.loop import OutOfMemory
    log = tmp_path / "act.jsonl"
    log.write_text("".join(event(n, account="u", detail=f"cmd --value {n}") for n in range(60000)))
    store = Store(tmp_path / "w.duckdb")
    w = _watcher(store, log, tmp_path / "spool", io.StringIO())
    store.con.execute("SET memory_limit = '8MB'")          # as PAMCORR_MEMORY_LIMIT=8MB would
    with pytest.raises(OutOfMemory):
        w.step()
    store.close()
    store = Store(tmp_path / "w.duckdb")
    w = _watcher(store, log, tmp_path / "spool", io.StringIO())
    try:
        w.step()
        assert store.scalar("SELECT count(*) FROM activity") == 60000
    finally:
        store.close()
