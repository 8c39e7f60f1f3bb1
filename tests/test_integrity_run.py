"""Input integrity in the weekly run's config (key and digest metadata files per cloudtrail
source) and the log-file SHA-256 taken inside the ingest's own decompression pass (issue 20)."""

from __future__ import annotations

import gzip
import hashlib
import json

import pytest
from click.testing import CliRunner

import connectors.cloudtrail_digest as ct_digest
from correlate.cli import main
from correlate.store import Store
from tests.test_integrity_cloudtrail import build, keys, write_keys, write_meta  # noqa: F401


def _config(tmp_path, extra: str = "", connector: str = "cloudtrail"):
    config = tmp_path / "pamcorr.toml"
    config.write_text(f'db = "{tmp_path / "w.duckdb"}"\noutput = "{tmp_path / "out"}"\n'
                      f'[[sources]]\nname = "aws"\nconnector = "{connector}"\n'
                      f'paths = ["{tmp_path / "AWSLogs"}/"]\n{extra}')
    return config


def _run(config):
    return CliRunner().invoke(main, ["run", "--config", str(config), "--week", "2026-W49"])


def test_run_config_names_key_and_metadata_files(tmp_path, keys, monkeypatch):
    monkeypatch.delenv("PAMCORR_DB", raising=False)
    chain = build(tmp_path, keys[0])
    write_keys(tmp_path, keys[0])
    write_meta(tmp_path, chain)
    # relative to the config's folder, as every path in it
    result = _run(_config(tmp_path, 'cloudtrail_public_keys = "keys.json"\n'
                                    'digest_metadata = "meta.jsonl"\n'))
    assert result.exit_code == 0, result.output
    # signed and checked: not even the "authenticity not proven" INFO
    assert "integrity: no input-integrity findings" in result.stdout
    with Store(str(tmp_path / "w.duckdb")) as store:
        assert store.query("SELECT count(*) FROM ct_public_key")[0][0] == 1
        assert store.query("SELECT count(*) FROM ct_digest_signature")[0][0] == 3


def test_run_config_with_a_key_catches_an_edited_digest(tmp_path, keys, monkeypatch):
    monkeypatch.delenv("PAMCORR_DB", raising=False)
    chain = build(tmp_path, keys[0])
    write_keys(tmp_path, keys[0])
    last = chain["digests"][-1]
    doc = json.loads(gzip.decompress(last.read_bytes()))
    doc["logFiles"] = doc["logFiles"][:0]
    last.write_bytes(gzip.compress(json.dumps(doc).encode()))
    write_meta(tmp_path, chain)
    result = _run(_config(tmp_path, f'cloudtrail_public_keys = "{tmp_path / "keys.json"}"\n'
                                    'digest_metadata = "meta.jsonl"\n'))
    assert "ct_digest_signature_invalid" in result.stdout, result.output


@pytest.mark.parametrize("key", ["cloudtrail_public_keys", "digest_metadata"])
@pytest.mark.parametrize("content", [None, "not a key file {"])
def test_run_with_an_unreadable_key_or_metadata_file_exits_2_naming_it(tmp_path, keys, key,
                                                                       content, monkeypatch):
    monkeypatch.delenv("PAMCORR_DB", raising=False)
    build(tmp_path, keys[0])
    path = tmp_path / "input.txt"
    if content is not None:
        path.write_text(content)
    result = _run(_config(tmp_path, f'{key} = "input.txt"\n'))
    assert result.exit_code == 2, result.output
    assert str(path) in result.output and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not (tmp_path / "out").exists()


def test_run_refuses_key_files_on_a_source_that_is_not_cloudtrail(tmp_path, keys, monkeypatch):
    monkeypatch.delenv("PAMCORR_DB", raising=False)
    build(tmp_path, keys[0])
    write_keys(tmp_path, keys[0])
    result = _run(_config(tmp_path, 'cloudtrail_public_keys = "keys.json"\n', "teleport"))
    assert result.exit_code == 2, result.output
    assert "cloudtrail_public_keys" in result.output and "Traceback" not in result.output


def _ingest(tmp_path):
    result = CliRunner().invoke(main, ["ingest", "cloudtrail", str(tmp_path / "AWSLogs"),
                                       "--db", str(tmp_path / "t.duckdb")])
    assert result.exit_code == 0, result.output
    with Store(str(tmp_path / "t.duckdb")) as store:
        return dict(store.query("SELECT basename, sha256 FROM ct_log_file"))


@pytest.fixture
def second_passes(monkeypatch):
    """Every file the integrity step gunzips and hashes on its own, after the ingest."""
    seen = []
    real = ct_digest.sha256_uncompressed

    def spy(path):
        seen.append(path)
        return real(path)
    monkeypatch.setattr(ct_digest, "sha256_uncompressed", spy)
    return seen


def test_log_hashes_come_from_the_ingest_decompression_pass(tmp_path, keys, second_passes):
    chain = build(tmp_path, keys[0])
    # a log of two gzip members: the hash is of all the uncompressed bytes
    first = chain["logs"][0]
    body = gzip.decompress(first.read_bytes())
    first.write_bytes(gzip.compress(body[:7]) + gzip.compress(body[7:]))
    hashes = _ingest(tmp_path)
    assert second_passes == []          # no second read and gunzip of any log file
    assert hashes[first.name] == hashlib.sha256(body).hexdigest()
    assert hashes == {p.name: hashlib.sha256(gzip.decompress(p.read_bytes())).hexdigest()
                      for p in chain["logs"]}
    _ingest(tmp_path)                   # all skipped as ingested: nothing hashed again
    assert second_passes == []


def test_a_log_ingested_before_the_hashes_were_kept_is_hashed_once(tmp_path, keys,
                                                                   second_passes):
    chain = build(tmp_path, keys[0])
    _ingest(tmp_path)
    with Store(str(tmp_path / "t.duckdb")) as store:
        store.con.execute("DELETE FROM ct_log_file")
    hashes = _ingest(tmp_path)          # skipped by the ingest, so hashed on their own
    assert sorted(p.name for p in second_passes) == sorted(p.name for p in chain["logs"])
    assert len(hashes) == len(chain["logs"])
    second_passes.clear()
    _ingest(tmp_path)
    assert second_passes == []


def test_key_options_are_not_logged_as_ingest_options(tmp_path, keys):
    """The key file is stored once; ingesting the same logs later without it is no
    'first ingest ran with other options: add --reingest'."""
    build(tmp_path, keys[0])
    db = str(tmp_path / "t.duckdb")
    logs = str(tmp_path / "AWSLogs")
    first = CliRunner().invoke(main, ["ingest", "cloudtrail", logs, "--db", db, "--option",
                                      f"cloudtrail_public_keys={write_keys(tmp_path, keys[0])}"])
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(main, ["ingest", "cloudtrail", logs, "--db", db])
    assert again.exit_code == 0, again.output
    assert "skipped" in again.output and "other options" not in again.output
    with Store(db) as store:
        assert store.query("SELECT count(*) FROM ct_public_key")[0][0] == 1
