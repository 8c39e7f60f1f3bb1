"""pySigma's SQLite backend, in DuckDB's dialect, with fields as placeholders for the views.

Sigma matches strings case-insensitively unless `|cased`: DuckDB's `=` and LIKE are
case-sensitive, so equality compares lower() and wildcards use ILIKE. `|re` becomes
regexp_matches (RE2). Every field is emitted as a double-quoted placeholder ("Image"); the
caller maps each placeholder to the view's SQL expression (views.py), so a rule that reads a
field the store does not have is refused at load time instead of matching nothing.
"""

from __future__ import annotations

import re

from sigma.backends.sqlite import sqliteBackend
from sigma.collection import SigmaCollection
from sigma.rule import SigmaRule

_PREFIX = re.compile(r'SELECT \* FROM "?logs"? WHERE ')
_FIELD_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
# A single-quoted SQL literal ('' inside), or a double-quoted field placeholder.
_TOKEN = re.compile(r"'(?:[^']|'')*'|\"([^\"]+)\"")


class DuckDBBackend(sqliteBackend):
    """The SQLite backend's conversion with DuckDB's operators and Sigma's case rules."""

    name = "pamcorr DuckDB backend"
    eq_expression = "lower({field}) = lower({value})"
    contains_expression = "{field} ILIKE '%{value}%' ESCAPE '\\'"
    wildcard_match_expression = "{field} ILIKE '{value}' ESCAPE '\\'"
    case_sensitive_match_expression = "{field} GLOB {value}"
    re_expression = "regexp_matches({field}, '{regex}')"

    def escape_and_quote_field(self, field):
        if not _FIELD_NAME.fullmatch(field):
            raise ValueError(f"field name {field!r} is not supported")
        return f'"{field}"'


def condition_sql(rule: SigmaRule, backend: DuckDBBackend | None = None) -> str:
    """The rule's condition as DuckDB SQL with "Field" placeholders."""
    backend = backend or DuckDBBackend()
    (query,) = backend.convert(SigmaCollection([rule]))
    m = _PREFIX.match(query)
    if not m:
        raise ValueError(f"unexpected query shape from the backend: {query[:80]}")
    return query[m.end():]


def map_fields(sql: str, resolve) -> str:
    """Replace every "Field" placeholder (never inside a string literal) by resolve(Field)."""
    def sub(m: re.Match) -> str:
        return m.group(0) if m.group(1) is None else resolve(m.group(1))
    return _TOKEN.sub(sub, sql)
