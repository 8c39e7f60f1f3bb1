"""DuckDB running out of memory while reading a file is the store's limit, not the file's fault:
a one-line message saying so (never "cannot read", never a traceback), and nothing recorded, so
the same file is read whole once memory allows."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def _ingest(path, db, limit=None):
    env = {k: v for k, v in os.environ.items() if k != "PAMCORR_MEMORY_LIMIT"}
    if limit:
        env["PAMCORR_MEMORY_LIMIT"] = limit
    return subprocess.run([sys.executable, "-c", "from correlate.cli import main; main()", "ingest", "generic", "--kind",
                           "activity", str(path), "--db", str(db)],
                          env=env, capture_output=True, text=True, timeout=300)


def test_out_of_memory_is_said_as_such_and_the_file_is_read_later(tmp_path):
    path, db = tmp_path / "a.jsonl", tmp_path / "s.duckdb"
    with path.open("w") as fh:
        for i in range(100_000):
            fh.write(json.dumps({"event_id": f"e{i}", "ts": "2026-01-01T00:00:00Z",
                                 "account": f"acc{i % 100}", "target": f"h{i % 77}",
                                 "action": "exec", "detail": "x" * 200}) + "\n")
    low = _ingest(path, db, "16MB")
    assert low.returncode == 1, low.stderr
    assert "out of memory" in low.stderr and "PAMCORR_MEMORY_LIMIT" in low.stderr
    assert "cannot read" not in low.stderr and "Traceback" not in low.stderr
    ok = _ingest(path, db)
    assert ok.returncode == 0, ok.stderr
    import duckdb
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM activity").fetchall() == [(100_000,)]
    con.close()
