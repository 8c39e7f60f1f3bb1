"""Secrets are redacted before storage: every documented shape and its near-miss, on every path.

SHAPES is written out here, independent of correlate/secret_patterns.toml, so a rule dropped from
the data file (or from the prefilter) fails a test; the file's own examples are checked too.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from connectors.base import Options
from connectors.generic import GenericConnector
from connectors.syslog import SyslogConnector
from connectors.teleport import TeleportConnector
from correlate import redact
from correlate.cli import main
from correlate.ingest import ingest
from correlate.store import Store
from tests.helpers import ingest_one

ROOT = Path(__file__).resolve().parents[1]
M = "[REDACTED]"

# (id, command as run, as stored, the secret that must not be stored)
SHAPES = [
    # command-line password flags and tools
    ("password-space",
     "mysqldump --password S3cr3tpw prod",
     "mysqldump --password [REDACTED] prod",
     "S3cr3tpw"),
    ("password-equals",
     "mysqldump --password=S3cr3tpw prod",
     "mysqldump --password=[REDACTED] prod",
     "S3cr3tpw"),
    ("token-flag",
     "vault login -token=s.abcdef123",
     "vault login -token=[REDACTED]",
     "s.abcdef123"),
    ("mysql-p",
     "mysql -u root -pS3cr3t! prod",
     "mysql -u root -p[REDACTED] prod",
     "S3cr3t"),
    ("mysql-p-quoted",
     "mysqldump -u root -p'S3 cr3t' prod",
     "mysqldump -u root -p'[REDACTED]' prod",
     "cr3t"),
    ("curl-u",
     "curl -u admin:Hunter2pw https://api.example/x",
     "curl -u admin:[REDACTED] https://api.example/x",
     "Hunter2pw"),
    ("sshpass-p",
     "sshpass -p Hunter2pw ssh -p 2222 root@db1",
     "sshpass -p [REDACTED] ssh -p 2222 root@db1",
     "Hunter2pw"),
    ("aws-configure-set",
     "aws configure set aws_secret_access_key wJalrXUtnFEMIK7MDENGbPxRfiCY",
     "aws configure set aws_secret_access_key [REDACTED]",
     "wJalrXUtnFEMI"),
    ("redis-cli-a",
     "redis-cli -h cache1 -p 6379 -a Hunter2pw ping",
     "redis-cli -h cache1 -p 6379 -a [REDACTED] ping",
     "Hunter2pw"),
    ("docker-login-p",
     "docker login -u ci -p dckr_pat_2b3e36beeb386dfd registry.example.com",
     "docker login -u ci -p [REDACTED] registry.example.com",
     "dckr_pat_2b3e"),
    ("ldapsearch-w",
     "ldapsearch -x -D cn=admin,dc=corp -w Hunter2pw -b dc=corp",
     "ldapsearch -x -D cn=admin,dc=corp -w [REDACTED] -b dc=corp",
     "Hunter2pw"),
    # vendor token formats
    ("aws-akia",
     "echo AKIAIOSFODNN7EXAMPLE",
     "echo [REDACTED]",
     "AKIAIOSFODNN7"),
    ("aws-asia",
     "echo ASIAY34FZKBOKMUTVV7A",
     "echo [REDACTED]",
     "ASIAY34FZKBOK"),
    ("github-ghp",
     "git clone https://ghp_16C7e42F292c6912E7710c838347Ae178B4a@github.com/o/r",
     "git clone https://ghp_[REDACTED]@github.com/o/r",
     "16C7e42F292c"),
    ("github-gho",
     "gh api user gho_16C7e42F292c6912E7710c838347Ae178B4a",
     "gh api user gho_[REDACTED]",
     "16C7e42F292c"),
    ("github-ghs",
     "echo ghs_16C7e42F292c6912E7710c838347Ae178B4a",
     "echo ghs_[REDACTED]",
     "16C7e42F292c"),
    ("github-pat",
     "echo github_pat_11ABCDEFG0_abcdefghijklmnopqrstuvwxyz0123",
     "echo github_pat_[REDACTED]",
     "abcdefghijklmnop"),
    ("slack-xoxb",
     "slack-cli send xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
     "slack-cli send xoxb-[REDACTED]",
     "AbCdEfGhIjKl"),
    ("slack-xoxp",
     "slack-cli send xoxp-123456789012-1234567890123-AbCdEfGhIjKlMn",
     "slack-cli send xoxp-[REDACTED]",
     "AbCdEfGhIjKl"),
    ("slack-webhook",
     "curl -X POST -d @m.json "
     "https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/abcdefghijklmnopqrstuvwx",
     "curl -X POST -d @m.json https://hooks.slack.com/services/[REDACTED]",
     "abcdefghijklmnopqrstuvwx"),
    ("stripe",
     "STRIPE_KEY=sk_live_4eC39HqLyjWDarjtT1zdp7dc ./charge.sh",
     "STRIPE_KEY=sk_live_[REDACTED] ./charge.sh",
     "4eC39HqLyjWD"),
    ("jwt",
     "echo "
     "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
      "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c "
     "| jwt -",
     "echo [REDACTED] | jwt -",
     "SflKxwRJSMeK"),
    ("openssh-private-key",
     "printf '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n"
     "-----END OPENSSH PRIVATE KEY-----\n' > /root/.ssh/id_ed25519",
     "printf '-----BEGIN OPENSSH PRIVATE KEY-----[REDACTED]-----END OPENSSH PRIVATE KEY-----\n' "
     "> /root/.ssh/id_ed25519",
     "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ"),
    ("rsa-private-key-no-end",
     "echo '-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7bq' >> k",
     "echo '-----BEGIN RSA PRIVATE KEY-----[REDACTED]' >> k",
     "MIIEpAIBAAKCAQEA7bq"),
    # key=value, connection strings, headers
    ("env-secret",
     "export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG",
     "export AWS_SECRET_ACCESS_KEY=[REDACTED]",
     "wJalrXUtnFEMI"),
    ("azure-accountkey",
     "az storage container list --connection-string "
     "'DefaultEndpointsProtocol=https;AccountName=acct1;"
     "AccountKey=Zm9vYmFyYmF6cXV4+/0123456789==;EndpointSuffix=core.windows.net'",
     "az storage container list --connection-string "
     "'DefaultEndpointsProtocol=https;AccountName=acct1;"
     "AccountKey=[REDACTED];EndpointSuffix=core.windows.net'",
     "Zm9vYmFyYmF6cXV4"),
    ("gcp-private-key-id",
     "echo '{\"type\": \"service_account\", \"private_key_id\": \"8f2b1c3d4e5f60718293a4b5\", "
     "\"client_email\": \"sa@p.iam.gserviceaccount.com\"}' > sa.json",
     "echo '{\"type\": \"service_account\", \"private_key_id\": \"[REDACTED]\", "
     "\"client_email\": \"sa@p.iam.gserviceaccount.com\"}' > sa.json",
     "8f2b1c3d4e5f"),
    ("gcp-private-key",
     "echo '{\"private_key\": \"-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkq\\n-----END "
     "PRIVATE KEY-----\\n\"}' > sa.json",
     "echo '{\"private_key\": \"[REDACTED]\"}' > sa.json",
     "MIIEvQIBADANBgkq"),
    ("url-userinfo",
     "psql postgres://app:Hunter2pw@db1/app",
     "psql postgres://app:[REDACTED]@db1/app",
     "Hunter2pw"),
    ("bearer",
     "curl -H 'Authorization: Bearer abcdef0123456789' https://api/x",
     "curl -H 'Authorization: Bearer [REDACTED]' https://api/x",
     "abcdef0123456789"),
    ("basic",
     "curl -H \"Authorization: Basic YWRtaW46aHVudGVyMg==\" https://api/x",
     "curl -H \"Authorization: Basic [REDACTED]\" https://api/x",
     "YWRtaW46aHVudGVyMg"),
    ("cookie",
     "curl -H 'Cookie: sessionid=abc123def456; csrftoken=xyz789' https://app/admin",
     "curl -H 'Cookie: [REDACTED]' https://app/admin",
     "abc123def456"),
]

NEAR_MISSES = [
    "ssh -p 2222 root@db1", "docker run -p 8080:80 nginx", "scp -P 22 backup.tgz root@db2:/srv",
    "redis-cli -h cache1 -p 6379 ping", "mysql -u root -p prod", "curl -u admin https://api/x",
    "docker run -u 1000:1000 img", "ldapsearch -x -W -b dc=corp", "sudo -u postgres psql",
    "aws configure set region eu-west-1", "mkdir -p /var/lib/app",
    "ssh -o StrictHostKeyChecking=no db1", "psql --no-password -h db1",
    "curl http://example.com:8080/a@b", "kubectl get secret db-creds -n prod",
    "grep -i authorization /var/log/nginx/access.log", "env PWD=/home/alice OLDPWD=/tmp ls",
    "echo pk_live_51H8abcdefghij", "cat ~/.ssh/id_ed25519.pub", "ls -la /etc",
    "mysql -u root -p", "sshpass -p", "psql --password",     # a flag last: nothing to mask
]
SHAPE_IDS = [s[0] for s in SHAPES]


CON = duckdb.connect()


def _redact(text: str, json_text: bool = False) -> str:
    """The text as the store would keep it (the SQL the ingest runs)."""
    sql = f"SELECT {redact.redact_sql('x', json=json_text)} FROM (SELECT ?::VARCHAR AS x)"
    return CON.execute(sql, [text]).fetchone()[0]


@pytest.mark.parametrize("shape_id, command, stored, secret", SHAPES, ids=SHAPE_IDS)
def test_each_shape_is_redacted_in_text_and_in_json_text(shape_id, command, stored, secret):
    assert _redact(command) == stored
    attrs = _redact(json.dumps({"cmd": command, "exit": "0"}), json_text=True)
    assert json.loads(attrs) == {"cmd": stored, "exit": "0"}     # still valid JSON
    assert secret not in attrs


@pytest.mark.parametrize("command", NEAR_MISSES)
def test_each_near_miss_is_kept(command):
    assert _redact(command) == command
    text = json.dumps({"cmd": command, "exit": "0"})
    assert _redact(text, json_text=True) == text


def _examples():
    for rule in redact.rules():
        for i, (given, stored) in enumerate(rule.examples):
            yield pytest.param(given, stored, id=f"{rule.id}-{i}")
        for i, kept in enumerate(rule.keeps):
            yield pytest.param(kept, kept, id=f"{rule.id}-keep-{i}")


@pytest.mark.parametrize("given, stored", list(_examples()))
def test_examples_of_the_data_file(given, stored):
    assert _redact(given) == stored
    assert json.loads(_redact(json.dumps([given]), json_text=True)) == [stored]


def test_every_rule_has_an_example_that_its_anchor_lets_through():
    for rule in redact.rules():
        assert rule.examples, rule.id
        assert re.search(rule.anchor, rule.examples[0][0]), rule.id


def test_readme_names_every_family():
    readme = (ROOT / "README.md").read_text()
    for family in redact.families():
        assert f"**{family}**" in readme, family


def test_redaction_stays_a_few_passes_of_sql():
    """Set-based: one CASE with a handful of regexp_replace calls, not one per rule."""
    sql = redact.redact_sql("detail")
    assert sql.count("regexp_replace(") <= 8 and sql.count("regexp_matches(") == 1


# ---- end to end: what the store keeps, on each path ---------------------------------------------

def _activity_file(path: Path, bad_line: bool) -> Path:
    lines = [json.dumps({"event_id": shape_id, "ts": "2026-11-16T10:00:00Z", "account": "alice",
                         "target": "db1", "detail": command})
             for shape_id, command, _, _ in SHAPES]
    lines += [json.dumps({"event_id": f"near{i}", "ts": "2026-11-16T10:00:00Z", "account": "alice",
                          "target": "db1", "detail": command})
              for i, command in enumerate(NEAR_MISSES)]
    if bad_line:    # one record to quarantine per shape: the staged path, raw lines kept
        lines += [json.dumps({"event_id": f"bad-{shape_id}", "ts": "not-a-time", "account": "alice",
                              "target": "db1", "detail": command})
                  for shape_id, command, _, _ in SHAPES]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def generic_stores(tmp_path_factory):
    """(store, result) of a clean file (one-pass load) and of one with lines to quarantine
    (staged path)."""
    folder = tmp_path_factory.mktemp("generic")
    out = {}
    for name, bad in (("one-pass", False), ("staged", True)):
        store = Store(":memory:")
        (result,) = ingest(store, GenericConnector(), "activity",
                           [str(_activity_file(folder / f"{name}.jsonl", bad))], Options())
        assert result.balanced
        out[name] = (store, result)
    return out


@pytest.mark.parametrize("path", ["one-pass", "staged"])
@pytest.mark.parametrize("shape_id, command, stored, secret", SHAPES, ids=SHAPE_IDS)
def test_generic_activity_stores_detail_redacted(generic_stores, path, shape_id, command, stored,
                                                 secret):
    store, result = generic_stores[path]
    lines = store.scalar("SELECT count(line) FROM activity")
    assert (lines == 0) if path == "one-pass" else (lines > 0)        # the path meant
    assert store.scalar("SELECT detail FROM activity WHERE event_id = ?", [shape_id]) == stored


@pytest.mark.parametrize("shape_id, command, stored, secret", SHAPES, ids=SHAPE_IDS)
def test_quarantined_raw_line_is_redacted(generic_stores, shape_id, command, stored, secret):
    store, result = generic_stores["staged"]
    assert result.quarantined == len(SHAPES)
    raws = [r for (r,) in store.query("SELECT raw FROM quarantine")]
    (raw,) = [r for r in raws if f'"bad-{shape_id}"' in r]
    assert secret not in raw and M in raw


@pytest.mark.parametrize("path", ["one-pass", "staged"])
@pytest.mark.parametrize("command", NEAR_MISSES)
def test_generic_activity_keeps_near_misses(generic_stores, path, command):
    store, _ = generic_stores[path]
    assert store.scalar("SELECT count(*) FROM activity WHERE detail = ?", [command]) == 1


@pytest.fixture(scope="module")
def teleport_store(tmp_path_factory):
    """Teleport exec events: the command is the detail, its error message lands in attrs."""
    path = tmp_path_factory.mktemp("teleport") / "audit.jsonl"
    events = [{"code": "T3002I", "event": "exec", "uid": f"u-{name}",
               "time": "2026-03-02T09:30:00Z", "user": "alice", "login": "root",
               "server_hostname": "web-01", "command": command,
               "error": f"exit 1: {command}", "bot_name": "ci"}   # a key after the error
              for name, command in [(s[0], s[1]) for s in SHAPES]
              + [(f"near{i}", c) for i, c in enumerate(NEAR_MISSES)]]
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    store, _ = ingest_one(TeleportConnector(), path)
    return store


@pytest.mark.parametrize("shape_id, command, stored, secret", SHAPES, ids=SHAPE_IDS)
def test_teleport_exec_stores_detail_and_attrs_redacted(teleport_store, shape_id, command, stored,
                                                        secret):
    detail, attrs = teleport_store.query("SELECT detail, attrs FROM activity WHERE event_id = ?",
                                         [f"u-{shape_id}"])[0]
    assert detail == stored
    assert json.loads(attrs)["error"] == f"exit 1: {stored}"
    assert teleport_store.scalar("SELECT json_valid(attrs) FROM activity WHERE event_id = ?",
                                 [f"u-{shape_id}"])


@pytest.mark.parametrize("i, command", list(enumerate(NEAR_MISSES)))
def test_teleport_exec_keeps_near_misses_in_detail_and_attrs(teleport_store, i, command):
    detail, attrs = teleport_store.query("SELECT detail, attrs FROM activity WHERE event_id = ?",
                                         [f"u-near{i}"])[0]
    assert (detail, json.loads(attrs)["error"]) == (command, f"exit 1: {command}")


ONE_LINE = [s for s in SHAPES if "\n" not in s[1]]


def test_sudo_commands_from_syslog_are_redacted(tmp_path):
    path = tmp_path / "secure"
    commands = [s[1] for s in ONE_LINE] + NEAR_MISSES
    path.write_text("".join(
        f"<86>1 2026-02-10T08:{i // 60:02d}:{i % 60:02d}+01:00 web02 sudo 4242 - - "
        f"alice : TTY=pts/1 ; PWD=/srv ; USER=root ; COMMAND=/usr/bin/{c}\n"
        for i, c in enumerate(commands)))
    store, result = ingest_one(SyslogConnector(), path)
    assert result.accepted == len(commands)
    stored = {d for (d,) in store.query("SELECT detail FROM activity")}
    assert stored == {f"/usr/bin/{s[2]}" for s in ONE_LINE} | {f"/usr/bin/{c}" for c in NEAR_MISSES}


def test_findings_csv_shows_no_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("PAMCORR_DB", str(tmp_path / "t.duckdb"))
    run = CliRunner()
    path = _activity_file(tmp_path / "act.jsonl", bad_line=False)
    for args in (["ingest", "generic", "--kind", "activity", str(path)], ["correlate"]):
        res = run.invoke(main, args, catch_exceptions=False)
        assert res.exit_code == 0, res.output
    res = run.invoke(main, ["findings", "--format", "csv"], catch_exceptions=False)
    rows = {r["event_id"]: r["detail"] for r in csv.DictReader(io.StringIO(res.output))}
    for shape_id, _, stored, secret in SHAPES:
        assert secret not in res.output, shape_id
        assert rows[shape_id].lstrip("'") == stored
    for i, command in enumerate(NEAR_MISSES):
        assert rows[f"near{i}"] == command
