"""The action identities the store holds, as a fixed-size Bloom filter, so that watch's
de-duplication need not read every stored event id for each batch.

A stored action is (source, event_id); its key is activity.event_key_sql's, the same
62 bits the one-pass load puts in its act_id. The filter answers "certainly not stored" or
"maybe stored": ingest (correlate/ingest/activity.py `stored_ids`) checks only the "maybe"
rows against the store, exactly, so an answer can cost time but never a duplicate.

It is built once when watch starts (one read of the keys, in chunks) and sized then, with room
for 4 million more actions; it never grows, so RSS stays flat. Rows ingest stores while watch
runs are added after each ingest (`add_since`); rows removed later (--reingest) only leave bits
set, which costs a false "maybe", never a miss. Past its room the false "maybe" rate rises
(more exact checks), and the next start sizes it again.
"""

from __future__ import annotations

import numpy as np

from correlate.ingest.activity import event_key_sql

K = 8                      # bits per key
BITS_PER_KEY = 32          # with K = 8: about 6e-6 false "maybe" per key when full
ROOM = 4_000_000           # actions the filter takes beyond the store's size at start
MIN_BITS = 1 << 24

KEYS_SQL = f"SELECT {event_key_sql('source', 'event_id')} AS k FROM main.activity"
KEYS_SINCE_SQL = KEYS_SQL + " WHERE ingest_id > ?"
COUNT_SQL = "SELECT count(*), coalesce(max(ingest_id), 0) FROM main.activity"
MULT = np.uint64(0x9E3779B97F4A7C15)


class SeenIds:
    """A Bloom filter over the store's (source, event_id) keys."""

    def __init__(self, expected: int):
        bits = MIN_BITS
        while bits < BITS_PER_KEY * expected:
            bits <<= 1
        self.mask = np.uint64(bits - 1)
        self.words = np.zeros(bits >> 6, dtype=np.uint64)
        self.high = 0              # the highest ingest_id whose rows are in the filter

    @classmethod
    def of_store(cls, con) -> "SeenIds":
        n, high = con.execute(COUNT_SQL).fetchall()[0]
        seen = cls(n + ROOM)
        seen._add_query(con, KEYS_SQL, [])
        seen.high = high
        return seen

    def _positions(self, keys: np.ndarray):
        h1 = keys.astype(np.uint64, copy=False)
        # the second hash from the high bits: positions then depend on all 62 bits of the key
        h2 = ((h1 >> np.uint64(31)) * MULT) | np.uint64(1)
        for i in range(K):
            yield (h1 + np.uint64(i) * h2) & self.mask

    def add(self, keys: np.ndarray) -> None:
        for pos in self._positions(keys):
            np.bitwise_or.at(self.words, pos >> np.uint64(6),
                             np.left_shift(np.uint64(1), pos & np.uint64(63)))

    def maybe(self, keys: np.ndarray) -> np.ndarray:
        """True where the key may be stored; False: certainly not stored."""
        hit = np.ones(len(keys), dtype=bool)
        for pos in self._positions(keys):
            hit &= (self.words[pos >> np.uint64(6)] >> (pos & np.uint64(63))
                    & np.uint64(1)).astype(bool)
        return hit

    def _add_query(self, con, sql: str, params: list) -> None:
        res = con.execute(sql, params)
        while True:
            chunk = res.fetch_df_chunk(50)
            if not len(chunk):
                return
            self.add(chunk["k"].to_numpy(dtype=np.uint64))

    def add_since(self, con) -> None:
        """Add the rows ingests stored since the last call (ingest ids only grow)."""
        high = con.execute("SELECT coalesce(max(ingest_id), 0) FROM ingest_log").fetchall()[0][0]
        if high > self.high:
            self._add_query(con, KEYS_SINCE_SQL, [self.high])
            self.high = high
