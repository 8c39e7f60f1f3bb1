"""Secrets in command lines are redacted before they are stored (RE2 patterns, applied in SQL)."""

from __future__ import annotations

MASK = "[REDACTED]"

# (pattern, replacement). RE2 syntax, as DuckDB's regexp_replace uses.
PATTERNS: tuple[tuple[str, str], ...] = (
    # mysql -pSECRET / mysqldump -p'SECRET'
    (r"(?i)(\bmysql(?:dump|admin)?\b[^|;&]*?\s-p)('[^']*'|\"[^\"]*\"|\S+)", r"\1" + MASK),
    # --password=x, --password x, -password x, --token=x, --secret x, --api-key=x
    (r"(?i)(--?(?:password|passwd|pass|pwd|token|secret|api[-_]?key|access[-_]?key|"
     r"client[-_]?secret)(?:=|\s+))('[^']*'|\"[^\"]*\"|\S+)", r"\1" + MASK),
    # FOO_PASSWORD=x, AWS_SECRET_ACCESS_KEY=x, password=x, token:x in URLs or env
    (r"(?i)(\b[A-Z0-9_]*(?:password|passwd|pwd|secret|token|api_?key|access_?key)[A-Z0-9_]*"
     r"\s*[=:]\s*)('[^']*'|\"[^\"]*\"|[^\s&'\"]+)", r"\1" + MASK),
    # Authorization: Bearer x / Basic x
    (r"(?i)(authorization:\s*(?:bearer|basic|token|negotiate)?\s*)([^\s'\"]+)", r"\1" + MASK),
    (r"(?i)(\bbearer\s+)([A-Za-z0-9._~+/=-]{8,})", r"\1" + MASK),
    # scheme://user:password@host
    (r"(://[^/\s:@]+:)([^@\s/]+)(@)", r"\1" + MASK + r"\3"),
    # AWS access key ids
    (r"\b((?:AKIA|ASIA)[0-9A-Z]{16})\b", MASK),
)

_PREFILTER = (r"(?i)pass|pwd|secret|token|key|bearer|authorization|://[^\s]*:[^\s]*@|"
              r"AKIA|ASIA|\s-p")


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def redact_sql(col: str) -> str:
    """SQL expression: `col` with every secret pattern masked. Cheap prefilter first."""
    expr = col
    for pattern, repl in PATTERNS:
        expr = f"regexp_replace({expr}, {_lit(pattern)}, {_lit(repl)}, 'g')"
    return f"(CASE WHEN regexp_matches({col}, {_lit(_PREFILTER)}) THEN {expr} ELSE {col} END)"
