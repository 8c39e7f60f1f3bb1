"""Watch's de-duplication through its filter of stored keys (correlate/watch/seen.py): a line
delivered again, after a restart too, an event_id repeated within and across batches, and an
event_id reused with another timestamp are stored and alerted once, as `pamcorr ingest`
without the filter would; read = accepted + ignored + quarantined + duplicates holds."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from connectors.base import Options
from connectors.generic import GenericConnector
from correlate.detect.run import DetectionSettings
from correlate.ingest import ingest
from correlate.store import Store
from correlate.watch.loop import Follow, Watcher, WatchSettings
from correlate.watch.seen import SeenIds
from correlate.watch.sinks import StdoutSink
from tests.watch_helpers import event

DAY1, DAY2 = "2026-12-06T00:00:00Z", "2026-12-09T12:00:00Z"


def _watcher(store, log: Path, out: io.StringIO) -> Watcher:
    return Watcher(store, [Follow("generic", str(log), "activity")],
                   WatchSettings(spool=log.parent / "spool", sinks=[StdoutSink(out)],
                                 detections=DetectionSettings(enabled=False)),
                   say=lambda m: None)


def _append(log: Path, text: str) -> None:
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(text)


def _alerted(out: io.StringIO) -> list[str]:
    return sorted(json.loads(x)["event_id"] for x in out.getvalue().splitlines())


def _stored(store) -> list[tuple]:
    return store.query("SELECT event_id, strftime(ts, '%Y-%m-%d') FROM activity ORDER BY 1, 2")


def test_line_delivered_again_after_a_restart_is_not_stored_or_alerted_twice(tmp_path):
    log = tmp_path / "act.jsonl"
    log.write_text(event(1) + event(2))
    store, out = Store(tmp_path / "w.duckdb"), io.StringIO()
    first = _watcher(store, log, out)
    first.step()
    first.close()
    again = _watcher(store, log, out)      # its filter is built from the store
    _append(log, event(2) + event(3))       # e2 delivered again, then a new line
    again.step()
    _append(log, event(1))                  # and e1, alone in its batch
    again.step()
    again.step()
    assert _alerted(out) == ["e1", "e2", "e3"]
    assert _stored(store) == [("e1", "2026-12-06"), ("e2", "2026-12-06"), ("e3", "2026-12-06")]
    assert again.stats["read"] == 3 and again.stats["accepted"] == 1


def test_event_id_repeated_within_and_across_batches_is_stored_once(tmp_path):
    log = tmp_path / "act.jsonl"
    # within a batch: e5 twice (the first line wins); a quarantined line takes the staged path
    log.write_text(event(5, detail="first") + event(5, detail="second") + event(6)
                   + '{"event_id": "bad"}\n')
    store, out = Store(tmp_path / "w.duckdb"), io.StringIO()
    w = _watcher(store, log, out)
    w.step()
    _append(log, event(6) + event(7))       # across batches, the one-pass path
    w.step()
    _append(log, event(5) + event(7) + event(8) + '{"event_id": "bad2"}\n')   # staged again
    w.step()
    assert _alerted(out) == ["e5", "e6", "e7", "e8"]
    assert [r[0] for r in _stored(store)] == ["e5", "e6", "e7", "e8"]
    assert store.scalar("SELECT detail FROM activity WHERE event_id = 'e5'") == "first"
    counts = store.query("SELECT sum(read), sum(accepted), sum(quarantined), "
                         "sum(duplicates), sum(ignored) FROM ingest_log")
    read, accepted, quarantined, duplicates, ignored = counts[0]
    assert (read, accepted, quarantined, duplicates) == (10, 4, 2, 4)
    assert read == accepted + ignored + quarantined + duplicates


def test_event_id_reused_with_another_timestamp_is_a_duplicate_as_before(tmp_path):
    """The look-up in the batch's own time span cannot find it: the exact look-up must."""
    log = tmp_path / "act.jsonl"
    log.write_text(event(1, ts=DAY1) + event(2, ts=DAY1))
    store, out = Store(tmp_path / "w.duckdb"), io.StringIO()
    w = _watcher(store, log, out)
    w.step()
    _append(log, event(1, ts=DAY2) + event(3, ts=DAY2))          # one-pass path
    w.step()
    w.close()
    again = _watcher(store, log, out)
    _append(log, event(2, ts=DAY2) + '{"event_id": "bad"}\n')     # staged path, after a restart
    again.step()
    assert _alerted(out) == ["e1", "e2", "e3"]
    assert _stored(store) == [("e1", "2026-12-06"), ("e2", "2026-12-06"), ("e3", "2026-12-09")]


class _Always(SeenIds):
    """A filter that flags every key: every row takes the exact look-ups."""

    def maybe(self, keys):
        return np.ones(len(keys), dtype=bool)


def _files(tmp_path: Path) -> list[Path]:
    one, two, three = (tmp_path / f"{n}.jsonl" for n in ("one", "two", "three"))
    one.write_text(event(1, ts=DAY1) + event(2, ts=DAY1) + event(3, ts=DAY1))
    two.write_text(event(2, ts=DAY2) + event(3, ts=DAY2) + event(4, ts=DAY2))        # one pass
    three.write_text(event(1, ts=DAY2) + event(4, ts=DAY1) + event(5, ts=DAY2)
                     + event(5, ts=DAY1) + '{"event_id": "x"}\n')                      # staged
    return [one, two, three]


def _ingest_all(store, files) -> list[tuple]:
    out = []
    for f in files:
        (r,) = ingest(store, GenericConnector(), "activity", [str(f)], Options())
        assert r.balanced
        out.append((r.read, r.accepted, r.quarantined, r.duplicates))
        if getattr(store, "known_ids", None) is not None:
            store.known_ids.add_since(store.con)
    return out


def test_ingest_with_the_filter_stores_and_counts_what_it_stores_without(tmp_path):
    results = {}
    for name, make in (("plain", None), ("filter", SeenIds.of_store), ("always", _Always)):
        folder = tmp_path / name
        folder.mkdir()
        with Store(folder / "s.duckdb") as store:
            if make is SeenIds.of_store:
                store.known_ids = SeenIds.of_store(store.con)
            elif make is _Always:
                store.known_ids = _Always(10)
            counts = _ingest_all(store, _files(folder))
            results[name] = (counts, _stored(store),
                             store.scalar("SELECT count(DISTINCT act_id) FROM activity"))
    assert results["plain"][0] == [(3, 3, 0, 0), (3, 1, 0, 2), (5, 1, 1, 3)]
    assert results["filter"] == results["plain"] == results["always"]


def test_filter_says_certainly_not_stored_only_for_keys_it_was_not_given(tmp_path):
    with Store(tmp_path / "s.duckdb") as store:
        (tmp_path / "a.jsonl").write_text("".join(event(n) for n in range(200)))
        ingest(store, GenericConnector(), "activity", [str(tmp_path / "a.jsonl")], Options())
        seen = SeenIds.of_store(store.con)
        keys = store.con.execute("SELECT (hash(source, event_id) >> 2) AS k FROM activity"
                                 ).fetchnumpy()["k"]
        assert seen.maybe(keys).all()
        other = store.con.execute("SELECT (hash('generic', 'z' || i::VARCHAR) >> 2) AS k "
                                  "FROM range(100000) t(i)").fetchnumpy()["k"]
        assert seen.maybe(other).sum() < 10
