"""Hostile records in every connector: out-of-range timestamps, deep JSON, wrong types, bad
UTF-8. One such record is quarantined with its line and reason; the others are kept."""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner

from connectors.base import Options
from connectors.registry import get_connector
from correlate.cli import main
from correlate.ingest import ingest
from correlate.store import Store

# One record per connector with {ID} (distinct per record) and {TS} (its time) to fill in.
_CT = ('{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","principalId":"AIDA1",'
       '"arn":"arn:aws:iam::111122223333:user/carol","accountId":"111122223333",'
       '"userName":"carol"},"eventTime":"{TS}","eventSource":"iam.amazonaws.com",'
       '"eventName":"CreateUser","awsRegion":"eu-west-1","eventID":"{ID}","readOnly":false,'
       '"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333"}')
_CA = ('{"syslog":{"audit_record":{"IsoTimestamp":"{TS}","Hostname":"VAULT01","MessageID":"300",'
       '"Desc":"PSM Connect","Issuer":"jdoe","Action":"PSM Connect","Safe":"LinuxRoot",'
       '"Station":"10.1.0.5","Reason":"","ExtraDetails":"DstHost=db01;Protocol=SSH;'
       'SessionID=s{ID};User=root;","CAProperties":{"CAProperty":[{"Name":"UserName","Value":'
       '"root"},{"Name":"Address","Value":"db01.example.com"}]}}}}')
TEMPLATES = {
    "generic": ('{"event_id":"{ID}","ts":"{TS}","account":"alice","target":"db1"}', ".jsonl"),
    "teleport": ('{"code":"T4000I","event":"session.command","sid":"s1","uid":"{ID}",'
                 '"time":"{TS}","user":"alice","login":"root","server_id":"srv-1",'
                 '"path":"/usr/bin/id","argv":[],"return_code":0}', ".log"),
    "cloudtrail": (_CT, ".jsonl"),
    "k8s": ('{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{ID}",'
            '"stage":"ResponseComplete","requestURI":"/api/v1/namespaces/p/pods","verb":"list",'
            '"user":{"username":"alice"},"objectRef":{"resource":"pods","namespace":"p"},'
            '"requestReceivedTimestamp":"{TS}","stageTimestamp":"{TS}"}', ".log"),
    "vault": ('{"time":"{TS}","type":"request","auth":{"client_token":"hmac-sha256:aa",'
              '"display_name":"alice","entity_id":"ent-a"},"request":{"id":"{ID}",'
              '"operation":"update","namespace":{"id":"root"},"path":"secret/data/x",'
              '"mount_point":"secret/"}}', ".log"),
    "pim": ('{"id":"{ID}","status":"Provisioned","createdDateTime":"{TS}","action":"selfActivate",'
            '"principalId":"p1","roleDefinitionId":"r1","directoryScopeId":"/",'
            '"scheduleInfo":{"startDateTime":"{TS}","expiration":{"type":"afterDuration",'
            '"duration":"PT2H"}}}', ".jsonl"),
    "cyberark": ("<5>1 {TS} VAULT01 " + _CA, ".log"),
    "syslog": ("{TS} web02 sshd[{ID}]: Accepted password for carol from 192.0.2.10 port 22 ssh2",
               ".log"),
    "auditd": ('node=web01 type=SYSCALL msg=audit({TS}:{ID}): arch=c000003e syscall=59 '
               'success=yes exit=0 ppid=1 pid=2 auid=1001 uid=0 euid=0 comm="id" exe="/usr/bin/id"'
               '\nnode=web01 type=EXECVE msg=audit({TS}:{ID}): argc=1 a0="id"', ".log"),
}
GOOD_TS = {"auditd": "1767225600.123"}
KIND = {"generic": "activity"}


def record(source: str, ident: int, ts: str | None = None) -> str:
    template = TEMPLATES[source][0]
    ts = ts if ts is not None else GOOD_TS.get(source, "2026-03-02T10:00:00Z")
    return template.replace("{ID}", str(100 + ident)).replace("{TS}", ts)


def ingest_lines(tmp_path, source: str, lines: list[str], name: str | None = None,
                 data: bytes | None = None, **opts):
    """(store, result) for a file of `lines` (or raw `data`) through the real ingest."""
    path = tmp_path / (name or f"in{TEMPLATES[source][1]}")
    path.write_bytes(data if data is not None else ("\n".join(lines) + "\n").encode())
    store = Store(":memory:")
    (result,) = ingest(store, get_connector(source), KIND.get(source), [str(path)],
                       Options(**opts))
    assert result.balanced, result
    return store, result


def quarantine(store) -> list[tuple[int, str]]:
    return [tuple(r) for r in store.con.execute(
        "SELECT line, reason FROM quarantine ORDER BY line").fetchall()]


def _check_one_quarantined(store, result, line: int, words: str):
    assert result.quarantined == 1, (result, quarantine(store))
    ((qline, reason),) = quarantine(store)
    assert qline == line and words in reason, (qline, reason)
    assert result.accepted + result.ignored + result.duplicates == result.read - 1


# -- item 4: timestamps outside 1970..9999 ----------------------------------------------------

SQL_SOURCES = ("generic", "teleport", "cloudtrail", "k8s", "vault")
BAD_TIMES = [("10000-01-01T00:00:00Z", "out of range"), ("0000-01-01T00:00:00Z", "out of range"),
             ("-62135596800001", "out of range"), ("9999999999999999", "out of range"),
             ("253402300800000", "out of range"),                # 10000-01-01 in epoch ms
             ("1969-12-31T23:59:59Z", "out of range"),
             ("9999-12-31T23:59:59-05:00", "out of range"),
             ("1700000000", "looks like epoch seconds")]


@pytest.mark.parametrize("source", SQL_SOURCES)
@pytest.mark.parametrize("bad,words", BAD_TIMES)
def test_out_of_range_time_is_quarantined_with_line(tmp_path, source, bad, words):
    store, r = ingest_lines(tmp_path, source, [record(source, 1), record(source, 2, bad),
                                               record(source, 3)])
    _check_one_quarantined(store, r, 2, words)
    assert r.read == 3


@pytest.mark.parametrize("source", SQL_SOURCES)
def test_epoch_milliseconds_up_to_the_last_of_9999_are_accepted(tmp_path, source):
    store, r = ingest_lines(tmp_path, source, [record(source, 1, "253402300799999"),
                                               record(source, 2, "10000000000")])
    assert (r.read, r.accepted, r.quarantined) == (2, 2, 0), quarantine(store)


@pytest.mark.parametrize("source", ("syslog", "pim", "cyberark"))
@pytest.mark.parametrize("bad", ["0000-01-01T00:00:00Z", "1969-12-31T23:59:59Z",
                                 "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+01:00"])
def test_out_of_range_iso_time_in_python_connectors(tmp_path, source, bad):
    store, r = ingest_lines(tmp_path, source, [record(source, 1), record(source, 2, bad),
                                               record(source, 3)])
    _check_one_quarantined(store, r, 2, "out of range")


def test_pim_activation_ending_after_9999_is_quarantined(tmp_path):
    store, r = ingest_lines(tmp_path, "pim", [record("pim", 1),
                                              record("pim", 2, "9999-12-31T23:00:00Z")])
    _check_one_quarantined(store, r, 2, "out of range")


@pytest.mark.parametrize("stamp", ["99999999999999.123", "1700000000000.000"])
def test_auditd_stamp_out_of_range_is_quarantined(tmp_path, stamp):
    lines = [record("auditd", 1), record("auditd", 2, stamp), record("auditd", 3)]
    store, r = ingest_lines(tmp_path, "auditd", lines)
    _check_one_quarantined(store, r, 3, "out of range")   # the event's first line


def test_range_bounds_are_accepted_and_every_output_renders_them(tmp_path, monkeypatch):
    monkeypatch.setenv("PAMCORR_DB", str(tmp_path / "t.duckdb"))
    acts = tmp_path / "act.jsonl"
    acts.write_text("\n".join(record("generic", i, ts) for i, ts in enumerate(
        ["1970-01-01T00:00:00Z", "9999-12-31T23:59:59.999Z", "1700000000000",
         "10000-01-01T00:00:00Z", "-62135596800001", "1700000000"])) + "\n")
    approvals = tmp_path / "approvals.csv"
    approvals.write_text("approval_id,account,target,start,end\n"
                         "A1,alice,db1,9999-12-31T20:00:00Z,9999-12-31T23:59:59Z\n")
    cli = CliRunner()

    def run(*args):
        res = cli.invoke(main, list(args), catch_exceptions=False)
        assert res.exit_code == 0, res.output
        return res.output
    out = run("ingest", "generic", "--kind", "activity", str(acts))
    assert "read 6 = accepted 3 + ignored 0 + quarantined 3" in out
    run("ingest", "generic", "--kind", "approvals", str(approvals))
    run("correlate")
    rows = list(csv.DictReader(io.StringIO(run("findings", "--format", "csv"))))
    assert sorted(r["ts"] for r in rows) == ["1970-01-01T00:00:00Z", "2023-11-14T22:13:20Z",
                                             "9999-12-31T23:59:59.999000Z"]
    run("report", "gaps", "-o", str(tmp_path / "gaps.html"))
    run("scope", "alice", "-o", str(tmp_path / "scope.html"))
    run("export", "-o", str(tmp_path / "bundle"))
    assert (tmp_path / "bundle" / "findings.csv").is_file()


# -- item 9: JSON nested 5000 deep -------------------------------------------------------------

LAUREL = ('{"ID":"1767225600.123:{ID}","SYSCALL":{"syscall":"execve","success":"yes","uid":"0",'
          '"auid":"1001","euid":"0","exe":"/usr/bin/id"},"EXECVE":{"argc":1,"ARGV":["id"]}}')
DEEP = {"open [": "[" * 5000, "open {": '{"a":' * 5000,
        "closed [": "[" * 5000 + "]" * 5000, "closed {": '{"a":' * 5000 + "1" + "}" * 5000}
JSON_SOURCES = ("generic", "teleport", "cloudtrail", "k8s", "vault", "pim", "cyberark", "auditd")


@pytest.mark.parametrize("source", JSON_SOURCES)
@pytest.mark.parametrize("deep", DEEP)
def test_deeply_nested_json_line_is_quarantined(tmp_path, source, deep):
    good = ((lambda i: LAUREL.replace("{ID}", str(i))) if source == "auditd"
            else (lambda i: record(source, i)))
    store, r = ingest_lines(tmp_path, source, [good(1), DEEP[deep], good(3)])
    assert r.read == 3
    _check_one_quarantined(store, r, 2, "")


def test_cloudtrail_records_document_with_a_deep_record(tmp_path):
    recs = [json.loads(record("cloudtrail", i)) for i in (1, 3)]
    doc = ('{"Records": [' + json.dumps(recs[0]) + ", " + DEEP["closed ["] + ", "
           + json.dumps(recs[1]) + "]}")
    store, r = ingest_lines(tmp_path, "cloudtrail", [], name="doc.json", data=doc.encode())
    assert (r.read, r.accepted, r.quarantined) == (3, 2, 1)
    assert quarantine(store)[0][0] == 2


# -- item 15: a DTD before <syslog> on the record's line ---------------------------------------

XML_RECORD = ("<syslog><audit_record><IsoTimestamp>2026-03-02T10:00:00Z</IsoTimestamp>"
              "<MessageID>300</MessageID><Desc>PSM Connect</Desc><Issuer>jdoe</Issuer>"
              "<Safe>LinuxRoot</Safe><ExtraDetails>DstHost=db01;Protocol=SSH;SessionID=s{ID};"
              "User=root;</ExtraDetails><CAProperties><CAProperty Name=\"UserName\" "
              "Value=\"root\"/><CAProperty Name=\"Address\" Value=\"db01\"/></CAProperties>"
              "</audit_record></syslog>")


@pytest.mark.parametrize("dtd", ['<!DOCTYPE syslog [<!ENTITY x "boom">]>',
                                 '<5>1 2026-03-02T10:00:00Z VAULT01 <!doctype syslog>',
                                 '<!ENTITY x SYSTEM "file:///etc/passwd">'])
def test_cyberark_dtd_before_the_record_on_its_line_is_quarantined(tmp_path, dtd):
    lines = [XML_RECORD.replace("{ID}", "1"), dtd + XML_RECORD.replace("{ID}", "2"),
             XML_RECORD.replace("{ID}", "3")]
    store, r = ingest_lines(tmp_path, "cyberark", lines)
    assert r.read == 3
    _check_one_quarantined(store, r, 2, "DTD or entity")


# -- item 12: a field of the wrong JSON type -------------------------------------------------

WRONG_TYPES = [("vault", ("request",), '"database/creds/x"', "wrong type: request is a string"),
               ("vault", ("request",), "5", "wrong type: request is a number"),
               ("vault", ("auth",), '["alice"]', "wrong type: auth is an array"),
               ("vault", ("request", "path"), None, "missing required field: request.mount_point"),
               ("cloudtrail", ("userIdentity",), '"carol"', "wrong type: userIdentity is a string"),
               ("k8s", ("user",), '"alice"', "wrong type: user is a string"),
               ("teleport", ("time",), "1772445600", "looks like epoch seconds"),
               ("generic", ("ts",), '{"a": 1}', "unparseable timestamp")]


@pytest.mark.parametrize("source,keys,value,words", WRONG_TYPES)
def test_field_of_the_wrong_type_quarantines_the_record_only(tmp_path, source, keys, value,
                                                            words):
    rec = json.loads(record(source, 2))
    node = rec
    for key in keys[:-1]:
        node = node[key]
    if value is None:                       # no path and no mount point
        del node[keys[-1]]
        rec["request"].pop("mount_point")
    else:
        node[keys[-1]] = json.loads(value)
    store, r = ingest_lines(tmp_path, source, [record(source, 1), json.dumps(rec),
                                               record(source, 3)])
    assert r.read == 3
    _check_one_quarantined(store, r, 2, words)


def test_teleport_numbers_in_text_fields_are_read_as_text(tmp_path):
    rec = json.loads(record("teleport", 2))
    rec["login"], rec["server_id"] = 0, 42
    store, r = ingest_lines(tmp_path, "teleport", [json.dumps(rec)])
    assert (r.read, r.accepted) == (1, 1)
    assert store.con.execute("SELECT account, target FROM activity").fetchall() == [("0", "42")]


# -- item 14: bytes that are not UTF-8; a byte order mark --------------------------------------

ALL_SOURCES = ("generic", "teleport", "cloudtrail", "k8s", "vault", "pim", "cyberark", "syslog",
               "auditd")


def _with_bad_byte(text: str) -> bytes:
    """The record with the byte 0xff in place of its first 'a' of a value (not in the time)."""
    data = text.encode()
    at = data.index(b"alice" if b"alice" in data else b"carol" if b"carol" in data
                    else b"jdoe" if b"jdoe" in data else b"id")
    return data[:at] + b"\xff" + data[at + 1:]


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("source", ALL_SOURCES)
def test_record_with_bytes_not_utf8_is_quarantined_and_the_others_kept(tmp_path, source, gz):
    import gzip
    data = (record(source, 1).encode() + b"\n" + _with_bad_byte(record(source, 2)) + b"\n"
            + record(source, 3).encode() + b"\n")
    name = "in" + TEMPLATES[source][1] + (".gz" if gz else "")
    store, r = ingest_lines(tmp_path, source, [], name=name,
                            data=gzip.compress(data) if gz else data)
    assert r.read == 3
    _check_one_quarantined(store, r, 3 if source == "auditd" else 2, "invalid UTF-8")
    (raw,) = store.con.execute("SELECT raw FROM quarantine").fetchone()
    assert "\ufffd" in raw


def test_generic_csv_record_not_utf8_names_its_line(tmp_path):
    data = (b"event_id,ts,account,target\nE1,2026-03-02T10:00:00Z,alice,db1\n"
            b"E2,2026-03-02T10:00:00Z,al\xffce,db1\n\nE3,2026-03-02T10:00:00Z,bob,db1\n")
    store, r = ingest_lines(tmp_path, "generic", [], name="act.csv", data=data)
    assert (r.read, r.accepted) == (3, 2)
    _check_one_quarantined(store, r, 3, "invalid UTF-8: byte 0xff in field 3")


def test_generic_jsonl_not_utf8_after_a_blank_line_keeps_line_numbers(tmp_path):
    data = (record("generic", 1).encode() + b"\n\n" + _with_bad_byte(record("generic", 2))
            + b"\n" + record("generic", 3).encode() + b"\n")
    store, r = ingest_lines(tmp_path, "generic", [], data=data)
    _check_one_quarantined(store, r, 3, "invalid UTF-8: byte 0xff at column")
    assert sorted(x[0] for x in store.con.execute("SELECT line FROM activity").fetchall()) == [1, 4]


@pytest.mark.parametrize("pretty", [False, True])
def test_cloudtrail_records_document_not_utf8_quarantines_that_record(tmp_path, pretty):
    recs = [record("cloudtrail", i) for i in (1, 2, 3)]
    sep = b",\n  " if pretty else b", "
    data = (b'{"Records": [' + (b"\n  " if pretty else b"") + recs[0].encode() + sep
            + _with_bad_byte(recs[1]) + sep + recs[2].encode() + b"]}\n")
    store, r = ingest_lines(tmp_path, "cloudtrail", [], name="doc.json", data=data)
    assert (r.read, r.accepted) == (3, 2)
    _check_one_quarantined(store, r, 2, "invalid UTF-8")


@pytest.mark.parametrize("source", ALL_SOURCES)
def test_byte_order_mark_costs_no_record(tmp_path, source):
    lines = [record(source, 1), record(source, 2)]
    data = b"\xef\xbb\xbf" + ("\n".join(lines) + "\n").encode()
    store, r = ingest_lines(tmp_path, source, [], name="bom" + TEMPLATES[source][1], data=data)
    assert r.quarantined == 0, quarantine(store)
    assert r.read == 2 and r.accepted + r.ignored == 2


def test_generic_csv_with_byte_order_mark(tmp_path):
    data = b"\xef\xbb\xbfevent_id,ts,account,target\nE1,2026-03-02T10:00:00Z,alice,db1\n"
    store, r = ingest_lines(tmp_path, "generic", [], name="bom.csv", data=data)
    assert (r.read, r.accepted, r.quarantined) == (1, 1, 0)


def test_cloudtrail_folder_with_a_file_not_utf8_keeps_the_other_files_and_records(tmp_path):
    folder = tmp_path / "ct"
    folder.mkdir()
    docs = {"a.json": [record("cloudtrail", 1).encode()],
            "b.json": [record("cloudtrail", 2).encode(), _with_bad_byte(record("cloudtrail", 3))],
            "c.json": [record("cloudtrail", 4).encode()]}
    for name, recs in docs.items():
        (folder / name).write_bytes(b'{"Records": [' + b", ".join(recs) + b"]}")
    store = Store(":memory:")
    results = ingest(store, get_connector("cloudtrail"), None, [str(folder)], Options())
    assert [(r.read, r.accepted, r.quarantined) for r in results] == [(1, 1, 0), (2, 1, 1),
                                                                      (1, 1, 0)]
    assert quarantine(store)[0][0] == 2 and "invalid UTF-8" in quarantine(store)[0][1]


# -- a cross-account CloudTrail call -----------------------------------------------------------

@pytest.mark.parametrize("layout", ["lines", "records"])
def test_cloudtrail_cross_account_call_targets_the_recipient_account(tmp_path, layout):
    rec = json.loads(record("cloudtrail", 1))
    rec["recipientAccountId"] = "444455556666"        # the caller is in 111122223333
    assert rec["userIdentity"]["accountId"] == "111122223333"
    data = (json.dumps(rec) if layout == "lines" else json.dumps({"Records": [rec]})) + "\n"
    store, r = ingest_lines(tmp_path, "cloudtrail", [], name=f"{layout}.json", data=data.encode())
    assert (r.read, r.accepted) == (1, 1)
    assert store.con.execute("SELECT account, target FROM activity").fetchall() == [
        ("carol", "444455556666")]


@pytest.mark.parametrize("source", ["syslog", "cyberark"])
def test_year_less_time_past_9999_in_utc_is_quarantined(tmp_path, source):
    if source == "syslog":
        lines = [f"Dec 31 {t} web01 sudo:    alice : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/id"
                 for t in ("10:00:00", "23:58:01")]
    else:
        lines = [_CA.replace('"IsoTimestamp":"{TS}"', f'"Timestamp":"Dec 31 {t}"')
                 .replace("{ID}", str(i)) for i, t in enumerate(("10:00:00", "23:58:01"))]
    store, r = ingest_lines(tmp_path, source, lines, year=9999, tz="America/New_York")
    assert r.read == 2
    _check_one_quarantined(store, r, 2, "out of range")


def test_cyberark_checkout_whose_window_ends_after_9999_is_quarantined(tmp_path):
    checkout = _CA.replace('"MessageID":"300"', '"MessageID":"308"')
    lines = [checkout.replace("{TS}", ts).replace("{ID}", str(i))
             for i, ts in enumerate(("9999-12-31T22:00:00Z", "9999-12-31T23:30:00Z"))]
    store, r = ingest_lines(tmp_path, "cyberark", lines)
    _check_one_quarantined(store, r, 2, "checkout window ends after 9999-12-31")
    assert store.con.execute("SELECT max(end_ts) < TIMESTAMPTZ '10000-01-01' FROM approvals"
                             ).fetchone() == (True,)
