"""Ingest: files into the store through one pipeline, plan -> read -> check -> de-duplicate ->
insert -> log (correlate/ingest/pipeline.py; the picture in docs/ingest.md).

Callers use `ingest` and `expand_paths` from here; the modules behind them are the stages
(plan, read, load, log) and the strategies (onepass, staged, many)."""

from correlate.ingest.base import FileResult
from correlate.ingest.files import expand_paths
from correlate.ingest.pipeline import ingest, ingest_file

__all__ = ["FileResult", "expand_paths", "ingest", "ingest_file"]
