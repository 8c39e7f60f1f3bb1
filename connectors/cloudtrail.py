"""AWS CloudTrail: S3 log files (`{"Records": [...]}`, .json or .json.gz) or JSON lines of records.

Every management or data event becomes an activity row:

* account = the identity used: the assumed role (`sessionContext.sessionIssuer.userName`,
  else the role in an assumed-role ARN), `root` for the root user, the IAM user name,
  the calling AWS service (`invokedBy`), else the ARN or principalId;
* actor = the person behind it: `sessionContext.sourceIdentity`, else
  `onBehalfOf.userId` (IAM Identity Center), else the session name of an
  assumed-role or federated ARN, else the IAM user name, `root`, else `invokedBy`;
* target = `recipientAccountId` (else the identity's account, else eventSource);
  action = `eventSource:eventName`; detail = `requestParameters` (the whole JSON: policy documents
  included; reports shorten it for display); outcome = failure when `errorCode` is set,
  else success;
  session_id = the temporary access key (ASIA...) of a role session;
  read_only = `readOnly`; event_id = `eventID` (else a content hash);
  actor_kind = service (AWSService, AwsServiceEvent, a bare invokedBy, a service-linked
  role), human (root, Identity
  Center, SAML/web identity, sourceIdentity or onBehalfOf set, console sessions), else NULL;
  attrs = identity type, region, source IP, error code and message, event type (unless
  AwsApiCall), MFA, invokedBy, and `response` = the whole `responseElements` of a call
  that is not read-only (what it created: a role, a key, an instance...).

Ignored (store table "ignored"): CloudTrail Insights events and digest files.
Layouts, found from the first line: one record per line (read by DuckDB's
read_json, exact line-by-line fallback); one `{"Records": [...]}` document per
line; one pretty-printed document or top-level array (up to 256 MiB) for the
whole file. For the Records layouts `line` is the record's ordinal in the file.
Many S3 files at once: `records_array` says where a file's Records array lies and
`stage_arrays` reads many such arrays in one statement (correlate/ingest/many.py).
"""

from __future__ import annotations

import re
from pathlib import Path

from connectors.base import Options, Staged, ts_problem_sql
from connectors.jsonsql import (
    Fields, array_files_sql, attrs_sql, content_id_sql, peek, records_array, records_fast_sql,
    decoded_staged, records_sql, staged_pair, ts_fast_sql, wrong_type_sql,
)

_UI = "userIdentity"
FIELDS: Fields = {
    "event_time": ("eventTime",), "event_source": ("eventSource",),
    "event_name": ("eventName",), "event_id": ("eventID",), "event_type": ("eventType",),
    "read_only": ("readOnly",), "recipient": ("recipientAccountId",), "region": ("awsRegion",),
    "source_ip": ("sourceIPAddress",), "error_code": ("errorCode",),
    "error_message": ("errorMessage",), "request_parameters": ("requestParameters",),
    "response_elements": ("responseElements",), "console": ("sessionCredentialFromConsole",),
    "digest": ("digestStartTime",),
    "ui_type": (_UI, "type"), "ui_arn": (_UI, "arn"), "ui_principal": (_UI, "principalId"),
    "ui_user": (_UI, "userName"), "ui_account": (_UI, "accountId"),
    "ui_invoked_by": (_UI, "invokedBy"), "ui_key": (_UI, "accessKeyId"),
    "ui_source_identity": (_UI, "sourceIdentity"),
    "issuer_user": (_UI, "sessionContext", "sessionIssuer", "userName"),
    "issuer_arn": (_UI, "sessionContext", "sessionIssuer", "arn"),
    "source_identity": (_UI, "sessionContext", "sourceIdentity"),
    "mfa": (_UI, "sessionContext", "attributes", "mfaAuthenticated"),
    "on_behalf_of": (_UI, "onBehalfOf", "userId"),
}
IGNORED_FIELDS: Fields = {k: FIELDS[k] for k in ("event_type", "digest")}

# Records that are not actions: CloudTrail Insights summaries and digest files.
IGNORED_SQL = "coalesce(f_event_type = 'AwsCloudTrailInsight' OR f_digest IS NOT NULL, false)"
IGNORED_DOCS = "(contains(raw, 'AwsCloudTrailInsight') OR contains(raw, 'digestStartTime'))"

# Role and session names from an assumed-role (or federated-user) ARN; only for those types.
_ROLE = ("CASE WHEN f_ui_type = 'AssumedRole' THEN "
         "nullif(regexp_extract(f_ui_arn, ':assumed-role/([^/]+)/', 1), '') END")
_SESSION = ("CASE WHEN f_ui_type IN ('AssumedRole', 'FederatedUser') THEN nullif(regexp_extract("
            "f_ui_arn, ':(?:assumed-role/[^/]+|federated-user)/(.+)$', 1), '') END")
_ACCOUNT = (f"coalesce(nullif(f_issuer_user, ''), {_ROLE}, "
            "CASE WHEN f_ui_type = 'Root' THEN 'root' END, nullif(f_ui_user, ''), "
            "nullif(f_ui_invoked_by, ''), nullif(f_ui_arn, ''), nullif(f_ui_principal, ''))")
_ACTOR = ("coalesce(nullif(f_source_identity, ''), nullif(f_ui_source_identity, ''), "
          f"nullif(f_on_behalf_of, ''), {_SESSION}, nullif(f_ui_user, ''), "
          "CASE WHEN f_ui_type = 'Root' THEN 'root' END, nullif(f_ui_invoked_by, ''))")
_ACTOR_KIND = (
    "CASE WHEN f_ui_type = 'AWSService' OR f_event_type = 'AwsServiceEvent' "
    "OR (f_ui_arn IS NULL AND f_ui_invoked_by IS NOT NULL) "
    "OR f_issuer_arn LIKE '%:role/aws-service-role/%' THEN 'service' "
    "WHEN f_ui_type IN ('Root', 'IdentityCenterUser', 'SAMLUser', 'WebIdentityUser') "
    "OR coalesce(f_source_identity, f_ui_source_identity, f_on_behalf_of) IS NOT NULL "
    "OR f_console = 'true' THEN 'human' END"
)
_ATTRS = attrs_sql([
    ("identity_type", "f_ui_type"), ("region", "f_region"), ("source_ip", "f_source_ip"),
    ("error_code", "f_error_code"), ("error_message", "nullif(f_error_message, '')"),
    # what a write created or changed, as the response names it (reads return data: not kept)
    ("response", "CASE WHEN lower(f_read_only) IS DISTINCT FROM 'true' "
                 "THEN try_cast(nullif(f_response_elements, 'null') AS JSON) END"),
    ("event_type", "nullif(f_event_type, 'AwsApiCall')"),
    ("mfa", "f_mfa"),
    ("invoked_by", "f_ui_invoked_by"),
])


def _rows(source: str, keep: str = "") -> str:
    """Per-record expressions over `source`; `keep` carries more of its columns ("filename, ")."""
    return f"""
SELECT {keep}line, raw, parse_error, f_event_time, f_event_source, f_event_name, f_event_type,
    {IGNORED_SQL} AS ignored, {ts_fast_sql('f_event_time')} AS ts,
    coalesce(nullif(f_event_id, ''), {content_id_sql(
        ['f_event_time', 'f_event_source', 'f_event_name', 'f_ui_arn', 'f_ui_principal',
         'f_request_parameters'])}) AS event_id,
    {_ACCOUNT} AS account,
    coalesce(nullif(f_recipient, ''), nullif(f_ui_account, ''), nullif(f_event_source, ''))
        AS target,
    f_event_source || ':' || f_event_name AS action,
    nullif(f_request_parameters, 'null') AS detail,
    CASE WHEN nullif(f_error_code, '') IS NOT NULL THEN 'failure' ELSE 'success' END AS outcome,
    CASE WHEN starts_with(f_ui_key, 'ASIA') THEN f_ui_key END AS session_id,
    {_ACTOR} AS actor, {_ACTOR_KIND} AS actor_kind,
    CASE lower(f_read_only) WHEN 'true' THEN true WHEN 'false' THEN false END AS read_only,
    {_ATTRS} AS attrs
FROM ({source}) s
"""


# Why a record is quarantined (NULL: it is good).
_REASON = f"""CASE WHEN parse_error IS NOT NULL THEN parse_error
         WHEN ts IS NULL THEN {ts_problem_sql('f_event_time', 'eventTime')}
         WHEN nullif(f_event_name, '') IS NULL OR nullif(f_event_source, '') IS NULL
         THEN 'not a CloudTrail record: missing eventSource or eventName'
         WHEN account IS NULL THEN coalesce({wrong_type_sql((_UI,))},
              'no identity: userIdentity has no arn, userName, invokedBy or principalId')
    END"""
# The type an ignored record is counted under.
_IGNORED_TYPE = ("CASE WHEN f_event_type = 'AwsCloudTrailInsight' THEN 'AwsCloudTrailInsight' "
                 "ELSE 'CloudTrail digest' END")


def _activity_final(rows: str) -> str:
    return f"""
SELECT line, raw, {_REASON} AS reason,
    event_id, ts, account, target, action, detail, session_id, actor, actor_kind, read_only,
    attrs, outcome
FROM ({rows}) r WHERE parse_error IS NOT NULL OR NOT ignored
"""


def _ignored_rows(source: str) -> str:
    return (f"SELECT line, raw, parse_error, f_event_type, {IGNORED_SQL} AS ignored "
            f"FROM ({source}) s")


def _ignored_final(rows: str) -> str:
    return f"""
SELECT line, raw, NULL::VARCHAR AS reason, {_IGNORED_TYPE} AS event_type
FROM ({rows}) r WHERE parse_error IS NULL AND ignored
"""


def _arrays_final(rows: str) -> str:
    """Every record of the staged arrays, ignored ones flagged (and typed) instead of dropped."""
    return f"""
SELECT filename, ignored, CASE WHEN NOT ignored THEN {_REASON} END AS reason,
    CASE WHEN ignored THEN {_IGNORED_TYPE} END AS event_type,
    event_id, ts, account, target, action, detail, session_id, actor, actor_kind, read_only,
    attrs, outcome
FROM ({rows}) r
"""


_LEADING_SPACE = re.compile(rb"[ \t\r\n]*")


def layout(path: Path) -> str:
    """'lines' (a record per line), 'records' (a Records document per line) or 'document'."""
    head = peek(path)
    text = head.lstrip()
    newline = text.find("\n")
    first = (text if newline < 0 else text[:newline]).strip()
    if not first:
        return "lines"
    whole_line_seen = newline >= 0 or len(head.encode("utf-8", "replace")) < 65536
    if first.startswith("[") or (whole_line_seen and not first.endswith("}")):
        return "document"
    if re.match(r'\{\s*"Records"\s*:', first):
        return "records"
    return "lines"


class CloudTrailConnector:
    """CloudTrail events -> activity (Insights and digests counted as ignored)."""

    name = "cloudtrail"
    kinds = ("auto",)
    description = ("AWS CloudTrail log files ({\"Records\": [...]}, .json/.json.gz) or JSON "
                   "lines of records -> activity")

    def stage(self, path: Path, kind: str, options: Options) -> list[Staged]:
        params = {"tz": options.tz}
        shape = layout(path)
        if shape == "lines":
            return [
                staged_pair("activity", FIELDS, path, params, _activity_final, _rows, tail_safe=True),
                staged_pair("ignored", IGNORED_FIELDS, path, {}, _ignored_final, _ignored_rows,
                            number_lines=False, tail_safe=True),
            ]
        whole = shape == "document"
        out = []
        for table, fields, final, rows, p, only in (
                ("activity", FIELDS, _activity_final, _rows, params, None),
                # Ignored records are only counted: parse only documents that can hold one.
                ("ignored", IGNORED_FIELDS, _ignored_final, _ignored_rows, {}, IGNORED_DOCS)):
            p = {**p, "path": str(path)}
            # Typed parse first; the record-by-record JSON path when anything is quarantined.
            exact = Staged(table, sql=final(rows(records_sql(fields, whole))), params=p,
                           exact=decoded_staged(table, final(rows(records_sql(fields, whole,
                                                                              True))), path, p))
            out.append(Staged(table, sql=final(rows(records_fast_sql(fields, whole, only))),
                              params=p, exact=exact))
        return out

    # Many S3 files at once (correlate/ingest/many.py): the store cuts each document's
    # Records array out and reads all of them with one statement.
    def records_array(self, doc) -> tuple[int, int] | None:
        """(start, end) of the Records array of `doc`, a whole file's bytes (or an mmap of
        them), when reading that array gives the records `stage` would: the file is exactly
        one `{"Records": [...]}` document that `layout` reads whole (one line, or a first
        line not ending in `}`). None for anything else; `stage` then reads the file."""
        span = records_array(doc)
        if span is None:
            return None
        first = _LEADING_SPACE.match(doc).end()
        newline = doc.find(b"\n", first, span[1])
        if newline < 0:
            return span         # one line: 'records' and 'document' read it alike
        if newline < 60_000 and not doc[first:newline].rstrip().endswith(b"}"):
            return span         # 'document': the whole file is the one document
        return None             # 'records' would read each line as a document

    def stage_arrays(self, options: Options) -> Staged:
        """Every record of the files $paths, each one JSON array of records (a cut-out
        Records array), in file order: `filename, ignored, reason, event_type` and the
        activity columns. Rows are numbered by the store (their order is the files')."""
        return Staged("activity", sql=_arrays_final(_rows(array_files_sql(FIELDS),
                                                          keep="filename, ")),
                      params={"tz": options.tz})
