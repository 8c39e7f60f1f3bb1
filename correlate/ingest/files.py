"""Which files an ingest reads and whether they can be read: paths expanded once, names passed
to DuckDB literally, .gz files checked (CRC-32, expansion limit) before anything parses them.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import tempfile
import zlib
from contextlib import contextmanager
from pathlib import Path

from correlate.errors import InputError

# A .gz may expand to RATIO times its size (at least FLOOR, to spare small files) and never past
# SIZE: a gzip bomb stops there, after reading no more than that. Both can be set.
INFLATE_RATIO_ENV, INFLATE_SIZE_ENV = "PAMCORR_MAX_INFLATE_RATIO", "PAMCORR_MAX_INFLATE_SIZE"
INFLATE_RATIO = 100
INFLATE_FLOOR = 64 << 20
INFLATE_SIZE = 64 << 30
PIECE = 1 << 20            # decompressed bytes per step
_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000 ** 2, "gb": 1000 ** 3, "tb": 1000 ** 4,
          "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}

# DuckDB's readers (read_json, read_csv) expand *, ? and [...] in a path, even in a list of
# paths. In a pattern `[c]` matches c only, so such a name can be escaped that way; but with a
# `?` in the name DuckDB no longer sees a `.gz` ending (it reads the compressed bytes), and
# with a backslash no pattern matches it. A file named so is read through a link with a plain
# name (tests/test_ingest_hostile.py checks what DuckDB does).
_GLOB = re.compile(r"[*?\[]")
_PLAIN_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,10}")


def shown(name: str | os.PathLike) -> str:
    """A file name printable on one line: bytes that are not UTF-8 as \\xNN, control
    characters escaped."""
    text = os.fsencode(name).decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def duckdb_path(path: str) -> str:
    """A pattern under which DuckDB's readers open exactly the file `path` (for names of our
    own, such as temp files: `literal_path` handles any name)."""
    return _GLOB.sub(lambda m: f"[{m.group(0)}]", path)


@contextmanager
def literal_path(path: Path):
    """The path to give DuckDB's readers for `path`: itself, or a link to it with a plain
    name (kept as long as the context) when its name holds a glob character."""
    if not _GLOB.search(str(path)):
        yield str(path)
        return
    suffix = path.suffix if _PLAIN_SUFFIX.fullmatch(path.suffix) else ""
    with tempfile.TemporaryDirectory(prefix="pamcorr-name-") as tmp:
        link = Path(tmp) / f"input{suffix}"
        link.symlink_to(os.path.abspath(path))
        yield duckdb_path(str(link))


def _utf8(path: Path) -> bool:
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:      # undecodable bytes, kept by Python as lone surrogates
        return False
    return True


def _hidden(path: Path, folder: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(folder).parts)


def expand_paths(paths: list[str], warn=None) -> list[Path]:
    """Files named directly, under a directory (recursively), or matched by a glob; sorted.

    An existing file is taken as named, glob characters and all; otherwise a glob is expanded
    here, once. In a folder, hidden files (a name starting with '.', or under such a folder)
    are skipped, and so is any file whose name is not UTF-8: `warn(message)` says so, naming
    them. A file named directly with a name that is not UTF-8 is an InputError.
    """
    warn = warn or (lambda message: None)
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(f for f in path.rglob("*") if f.is_file())
            hidden = [f for f in found if _hidden(f, path)]
            if hidden:
                warn(f"{shown(path)}: {len(hidden)} hidden file"
                     f"{'' if len(hidden) == 1 else 's'} not read (a name starting with '.'; "
                     f"name such a file to ingest it)")
            found = [f for f in found if not _hidden(f, path)]
        elif path.is_file():
            if not _utf8(path):
                raise InputError("file name is not UTF-8; rename it", shown(path))
            found = [path]
        else:
            found = sorted(Path(m) for m in glob.glob(p, recursive=True) if os.path.isfile(m))
            if not found:
                raise InputError("no such file, directory or glob match", shown(p))
        for f in found:
            if _utf8(f):
                out.append(f)
            else:
                warn(f"{shown(f)}: not read, its name is not UTF-8 (rename it to ingest it)")
    seen, unique = set(), []
    for f in out:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def _size_env(name: str, default: int) -> int:
    text = os.environ.get(name)
    if not text:
        return default
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*", text, re.IGNORECASE)
    if not match:
        raise InputError(f"{name}={text!r} is not a size such as 4GiB or 500MB")
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "").lower()])


def inflate_limit(size: int) -> int:
    """How many bytes a .gz of `size` bytes may expand to (PAMCORR_MAX_INFLATE_RATIO,
    PAMCORR_MAX_INFLATE_SIZE)."""
    text = os.environ.get(INFLATE_RATIO_ENV)
    ratio = INFLATE_RATIO
    if text:
        try:
            ratio = float(text)
        except ValueError:
            ratio = -1
        if not ratio > 0:
            raise InputError(f"{INFLATE_RATIO_ENV}={text!r} is not a positive number")
    return min(_size_env(INFLATE_SIZE_ENV, INFLATE_SIZE), max(INFLATE_FLOOR, int(ratio * size)))


def is_gzip(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


def sha256_file(path: Path) -> str:
    """The file's sha256. For a .gz, every member is inflated too (nothing kept): InputError
    when one fails its CRC-32 or length check, is cut short, or the whole expands past
    inflate_limit (a gzip bomb stops there)."""
    h = hashlib.sha256()
    check = _GzipCheck(path) if is_gzip(path) else None
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
            if check:
                check.feed(chunk)
    if check:
        check.close()
    return h.hexdigest()


class _GzipCheck:
    """Inflates a gzip stream fed in chunks, member after member, counting what comes out."""

    def __init__(self, path: Path):
        self.path, self.total, self.d = path, 0, None
        self.limit = inflate_limit(path.stat().st_size)

    def _fail(self, why: str) -> InputError:
        return InputError(f"cannot read: {why}", shown(self.path))

    def _count(self, piece: bytes) -> None:
        self.total += len(piece)
        if self.total > self.limit:
            raise self._fail(
                f"expands past {self.limit:,} bytes, the limit for a .gz of its size (a gzip "
                f"bomb?); {INFLATE_RATIO_ENV} (default {INFLATE_RATIO}) and {INFLATE_SIZE_ENV} "
                f"(default {INFLATE_SIZE >> 30}GiB) set it")

    def feed(self, data: bytes) -> None:
        try:
            while data:
                if self.d is None or self.d.eof:
                    if self.d is not None:
                        data = data.lstrip(b"\0")      # zero padding between members, as gzip
                        if not data:
                            return
                    self.d = zlib.decompressobj(wbits=31)   # checks CRC-32 and length
                piece = self.d.decompress(data, PIECE)
                self._count(piece)
                while not self.d.eof and (self.d.unconsumed_tail or len(piece) == PIECE):
                    piece = self.d.decompress(self.d.unconsumed_tail, PIECE)
                    self._count(piece)
                    if not piece:
                        if self.d.unconsumed_tail:      # input left, nothing comes out
                            raise self._fail("damaged gzip data")
                        break
                data = self.d.unused_data if self.d.eof else b""
        except zlib.error as exc:
            raise self._fail(f"damaged gzip data ({_why(exc)})") from None

    def close(self) -> None:
        if self.d is not None and not self.d.eof:     # an empty file reads as empty
            raise self._fail("gzip data cut short")


def _why(exc: zlib.error) -> str:
    text = str(exc)
    if "incorrect data check" in text:
        return "CRC-32 check failed"
    if "incorrect length check" in text:
        return "length check failed"
    return text.split(": ", 1)[-1]


def head_of(path: Path, size: int) -> tuple[str, int, bool]:
    """(sha256, line ends, ends at a line end) of the first `size` bytes of `path`."""
    h, lines, last, left = hashlib.sha256(), 0, b"", size
    with open(path, "rb") as fh:
        while left > 0:
            chunk = fh.read(min(left, 1 << 22))
            if not chunk:
                break
            h.update(chunk)
            lines += chunk.count(b"\n")
            last, left = chunk[-1:], left - len(chunk)
    return h.hexdigest(), lines, last == b"\n"


@contextmanager
def tail_copy(path: Path, offset: int):
    """A copy of `path` from byte `offset` on, under the same name (connectors look at names)
    and modification time (syslog infers years from it), kept as long as the context."""
    with tempfile.TemporaryDirectory(prefix="pamcorr-tail-") as tmp:
        copy = Path(tmp) / path.name
        with open(path, "rb") as src, open(copy, "wb") as dst:
            src.seek(offset)
            shutil.copyfileobj(src, dst, 1 << 22)
        shutil.copystat(path, copy)
        yield copy
