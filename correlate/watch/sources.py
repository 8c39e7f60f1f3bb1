"""What watch follows: files (rotation and truncation aware), and journals that stdin and the
syslog receiver append to, which are then followed like any file.

A follower hands out Chunks: the complete lines added since the last one, with the byte range
they occupy in the followed file and the sha256 of the file's content up to their end (a
running hash), so the store can record them under the followed file's own name.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

MAX_CHUNK = 8 << 20          # bytes read per poll and file: memory stays bounded under a flood
REFUSED_SUFFIXES = (".gz", ".csv")   # a header or a compressed stream cannot be read by parts


@dataclass
class Chunk:
    """Complete lines [start, end) of a followed file; `lines_before` lines precede them."""

    source: str
    kind: str
    path: str
    data: bytes
    start: int
    end: int
    lines_before: int
    lines: int
    sha_prefix: str        # sha256 of the followed file's bytes [0, end)
    dev: int
    inode: int


@dataclass
class Position:
    """Where a followed file was left: its identity and the stored part (watch_offsets)."""

    dev: int | None
    inode: int | None
    offset: int
    lines: int


class FileFollower:
    """Follows one path through appends, rename-and-create rotation and copytruncate.

    It holds the open file, so after a rename it still reads the old file to its end (a last
    line without a newline included) before it opens the new one from its start. A file that
    shrinks under it was truncated: reading starts again at 0 (lines written between the last
    read and the copy are lost: copytruncate's own race).
    """

    def __init__(self, source: str, kind: str, path: str, position: Position | None = None):
        self.source, self.kind, self.path = source, kind, str(path)
        self.fh = None
        self.offset = self.lines = 0
        self.hasher = hashlib.sha256()
        self.pending_old: list[tuple] = []     # (fh, offset, lines, hasher) of rotated files
        self._resume(position)

    # ------------------------------------------------------------------ start and resume
    def _open(self, path: str):
        try:
            return open(path, "rb")
        except FileNotFoundError:
            return None

    def _rehash(self, fh, upto: int):
        hasher = hashlib.sha256()
        fh.seek(0)
        left = upto
        while left > 0:
            block = fh.read(min(left, 1 << 20))
            if not block:
                break
            hasher.update(block)
            left -= len(block)
        return hasher

    def _resume(self, pos: Position | None) -> None:
        self.fh = self._open(self.path)
        if pos is None:
            return
        current = os.fstat(self.fh.fileno()) if self.fh else None
        if current and (current.st_dev, current.st_ino) == (pos.dev, pos.inode):
            if current.st_size >= pos.offset:
                self.offset, self.lines = pos.offset, pos.lines
                self.hasher = self._rehash(self.fh, pos.offset)
            return          # else truncated while we were down: from the start
        # rotated while we were down: finish the old file if it is still beside the new one
        folder = Path(self.path).parent
        for entry in folder.iterdir() if folder.is_dir() else ():
            try:
                st = entry.stat()
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (pos.dev, pos.inode) and st.st_size >= pos.offset:
                old = open(entry, "rb")
                self.pending_old.append((old, pos.offset, pos.lines, self._rehash(old, pos.offset)))
                break

    # ------------------------------------------------------------------ reading
    def _read(self, fh, offset: int, lines: int, hasher, final: bool):
        """A Chunk of the complete lines after `offset` (all of it when `final`), or None."""
        st = os.fstat(fh.fileno())
        if st.st_size <= offset:
            return None
        fh.seek(offset)
        data = fh.read(MAX_CHUNK)
        cut = data.rfind(b"\n") + 1
        if final and len(data) < MAX_CHUNK:
            cut = len(data)
        if cut == 0:
            return None
        data = data[:cut]
        hasher.update(data)
        count = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
        return Chunk(self.source, self.kind, self.path, data, offset, offset + cut, lines, count,
                     hasher.hexdigest(), st.st_dev, st.st_ino)

    def poll(self) -> list[Chunk]:
        """The chunks ready now; call `advance(chunk)` once each is stored."""
        out = []
        for i, (fh, off, lines, hasher) in enumerate(self.pending_old):
            chunk = self._read(fh, off, lines, hasher, final=True)
            if chunk:
                chunk.path = self.path
                out.append(chunk)
                self.pending_old[i] = (fh, chunk.end, lines + chunk.lines, hasher)
            else:
                fh.close()
                self.pending_old[i] = None
        self.pending_old = [p for p in self.pending_old if p is not None]
        if self.pending_old:
            return out          # the old file first, whole, before the new one
        if self.fh is None:
            self.fh = self._open(self.path)
            self.offset = self.lines = 0
            self.hasher = hashlib.sha256()
            if self.fh is None:
                return out
        st = os.fstat(self.fh.fileno())
        if st.st_size < self.offset:                    # copytruncate
            self.offset = self.lines = 0
            self.hasher = hashlib.sha256()
        try:
            now = os.stat(self.path)
            rotated = (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino)
        except FileNotFoundError:
            rotated = False      # renamed, new one not created yet: keep reading the old one
        chunk = self._read(self.fh, self.offset, self.lines, self.hasher, final=False)
        if chunk:
            self.offset, self.lines = chunk.end, self.lines + chunk.lines
            out.append(chunk)
        elif rotated:
            # the old file is read to its end (a last line without newline too); then the new one
            last = self._read(self.fh, self.offset, self.lines, self.hasher, final=True)
            if last:
                out.append(last)
                self.offset, self.lines = last.end, self.lines + last.lines
            else:
                self.fh.close()
                self.fh = self._open(self.path)
                self.offset = self.lines = 0
                self.hasher = hashlib.sha256()
        return out

    def close(self) -> None:
        if self.fh:
            self.fh.close()
        for fh, *_ in self.pending_old:
            fh.close()


class Journal:
    """A spool file that stdin or the syslog receiver appends whole lines to (thread-safe).

    A received message holding a newline (octet-counted syslog may) has it escaped as `\\n`, so
    one message is one line and cannot forge a second record."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "ab")
        self.lock = threading.Lock()
        self.wake = None        # set by the loop: called after each write

    def write(self, messages: list[bytes]) -> None:
        if not messages:
            return
        body = b"".join(m.rstrip(b"\r\n").replace(b"\r", b"\\r").replace(b"\n", b"\\n") + b"\n"
                        for m in messages)
        with self.lock:
            self.fh.write(body)
            self.fh.flush()
        if self.wake:
            self.wake()

    def close(self) -> None:
        with self.lock:
            self.fh.close()


def read_stdin(journal: Journal, done: threading.Event, stream=None) -> None:
    """Copy standard input into the journal line by line until EOF."""
    stream = stream or sys.stdin.buffer
    for line in iter(stream.readline, b""):
        journal.write([line])
    done.set()
    if journal.wake:
        journal.wake()


# ---------------------------------------------------------------------- syslog receiver

def split_frames(buffer: bytes) -> tuple[list[bytes], bytes]:
    """RFC 6587 framing on a TCP stream: octet counting (`LEN SP MSG`) when a frame starts with
    a digit, else non-transparent framing (one message a line). Returns (messages, rest)."""
    out = []
    while buffer:
        if buffer[:1].isdigit():
            space = buffer.find(b" ", 0, 12)
            if space > 0 and buffer[:space].isdigit():
                size = int(buffer[:space])
                if len(buffer) < space + 1 + size:
                    break
                out.append(buffer[space + 1:space + 1 + size])
                buffer = buffer[space + 1 + size:]
                continue
        end = buffer.find(b"\n")
        if end < 0:
            if len(buffer) > 1 << 20:        # a line that never ends: cut it, do not grow
                out.append(buffer)
                buffer = b""
            break
        out.append(buffer[:end])
        buffer = buffer[end + 1:]
    return [m for m in out if m.strip()], buffer


class SyslogReceiver:
    """Receives syslog (RFC 5424 or 3164) on UDP and TCP at one address into a journal."""

    def __init__(self, journal: Journal, host: str, port: int, udp: bool = True,
                 tcp: bool = True):
        self.journal, self.stop = journal, threading.Event()
        self.threads, self.sockets = [], []
        try:
            self._bind(host, port, udp, tcp)
        except OSError:
            self.close()
            raise
        self.address = (host, self.sockets[0].getsockname()[1])

    def _bind(self, host: str, port: int, udp: bool, tcp: bool) -> None:
        if udp:
            u = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                              socket.SOCK_DGRAM)
            u.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            u.bind((host, port))
            u.settimeout(0.2)
            port = u.getsockname()[1]
            self.sockets.append(u)
            self.threads.append(threading.Thread(target=self._udp, args=(u,), daemon=True))
        if tcp:
            t = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                              socket.SOCK_STREAM)
            t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            t.bind((host, port))
            t.listen(64)
            t.settimeout(0.2)
            self.sockets.append(t)
            self.threads.append(threading.Thread(target=self._tcp, args=(t,), daemon=True))

    def start(self) -> "SyslogReceiver":
        for t in self.threads:
            t.start()
        return self

    def _udp(self, sock) -> None:
        while not self.stop.is_set():
            try:
                data = sock.recv(65535)
            except (socket.timeout, OSError):
                continue
            self.journal.write([data])

    def _tcp(self, sock) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = sock.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn) -> None:
        rest = b""
        conn.settimeout(0.5)
        with conn:
            while not self.stop.is_set():
                try:
                    data = conn.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    break
                if not data:
                    break
                messages, rest = split_frames(rest + data)
                self.journal.write(messages)
        if rest.strip():
            self.journal.write([rest])

    def close(self) -> None:
        self.stop.set()
        for s in self.sockets:
            s.close()
