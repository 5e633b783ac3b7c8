"""Per-graph statistics of the full-text index, cached in memory: document frequencies and the
vocabulary of index keys (for substring hits).

Both are derived from the stored index and rebuilt lazily, so nothing extra is written per fact
(a per-term counter table would dirty a dozen pages per commit). The owning engine keeps them
current for its own writes (:meth:`Lexicon.added`, :meth:`Lexicon.removed`) and calls
:meth:`Lexicon.clear` when another connection has written (``PRAGMA data_version``).

- Document frequency of a key: counted in the index on first use, newest first; past
  ``DF_PROBE`` postings it is extrapolated from the density among the newest facts, so a lookup
  costs at most ``DF_PROBE`` postings once, then a dict hit. Facts not yet indexed (the last
  unfilled batch) are counted from the pending rows the caller passes in.
- Vocabulary: every index key, read once from FTS5's vocabulary table (about 80 ms for 25k
  keys at 100k facts) and kept as one newline-joined string. The keys containing a query token
  are found by ``str.find`` over that string (linear in its size), stop after
  ``SUBSTRING_SCAN_HITS`` keys, and are cached per token. Keys are at most ``MAX_KEY_CHARS``
  long (:func:`carnb.memgine.text.index_key`), so one look-up costs a scan of at most
  ``VOCABULARY_CHARS``; past that (or ``VOCABULARY_LIMIT`` keys) the vocabulary is not held and
  substring look-ups find nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from carnb.memgine.backend import GraphTx, Pending
from carnb.memgine.text import MAX_KEY_CHARS

DF_PROBE = 5000
DF_CACHE = 200_000  # cached keys (the cache is dropped when full)
SUBSTRING_CACHE = 10_000  # cached tokens for substring look-ups
SUBSTRING_LIMIT = 64  # keys returned per token (shortest first)
SUBSTRING_SCAN_HITS = 2048  # keys collected per token before the scan stops
# Checks of cached tokens against a write's new keys, past which the cache is dropped instead.
INVALIDATE_CHECKS = 100_000
# Past this many index keys, or characters of them, the vocabulary is not held in memory and
# substring look-ups find nothing (each look-up scans the whole vocabulary once per new token).
VOCABULARY_LIMIT = 300_000
VOCABULARY_CHARS = 4 << 20


class Lexicon:
    """Document frequencies and vocabulary of one graph's index; the caller holds its lock."""

    def __init__(self) -> None:
        self._df: dict[str, int] = {}
        self._pending: list[frozenset[str]] = []
        self._keys: set[str] | None = None
        self._joined: str | None = None  # "\n" + keys joined by "\n" + "\n"; "" when too big
        self._containing: dict[str, tuple[str, ...]] = {}

    def clear(self) -> None:
        self._df.clear()
        self._keys = None
        self._joined = None
        self._containing.clear()

    # -- writes by the owning engine ---------------------------------------------------------

    def added(self, stems: str) -> None:
        """A fact with these index keys was committed by this engine."""
        if not stems:
            return
        keys = stems.split(" ")
        for key in keys:
            if key in self._df:
                self._df[key] += 1
        if not self._joined or self._keys is None:
            return  # not held (yet, or too big)
        new = [key for key in dict.fromkeys(keys) if key not in self._keys]
        if not new:
            return
        self._keys.update(new)
        if self._joined:
            self._joined += "\n".join(new) + "\n"
            if len(self._keys) > VOCABULARY_LIMIT or len(self._joined) > VOCABULARY_CHARS:
                self._joined = ""
        if len(new) * len(self._containing) > INVALIDATE_CHECKS:
            self._containing.clear()
        else:
            for token in [t for t in self._containing if any(t in key for key in new)]:
                del self._containing[token]

    def removed(self, stems: str) -> None:
        """A fact with these index keys was deleted by this engine (the vocabulary may keep a
        key no fact holds any more: searching it finds nothing)."""
        if stems:
            for key in stems.split(" "):
                if key in self._df:
                    self._df[key] = max(0, self._df[key] - 1)

    # -- look-ups ----------------------------------------------------------------------------

    def see_pending(self, pending: Sequence[Pending]) -> None:
        """The facts not yet in the index (``store.pending``), counted by :meth:`docfreq`."""
        self._pending = [frozenset(stems.split(" ")) for _, _, stems, _ in pending]

    def docfreq(self, tx: GraphTx, keys: set[str]) -> dict[str, int]:
        """Number of facts holding each key, indexed or pending (estimated past ``DF_PROBE``).
        A cached count stays right: this engine's writes adjust it, another connection's
        writes clear the cache, and indexing a batch does not change it."""
        out: dict[str, int] = {}
        top: int | None = None
        for key in keys:
            df = self._df.get(key)
            if df is None:
                if top is None:
                    top = tx.max_rowid()
                df = _count(tx, key, top) + sum(1 for held in self._pending if key in held)
                if len(self._df) >= DF_CACHE:
                    self._df.clear()
                self._df[key] = df
            out[key] = df
        return out

    def containing(self, tx: GraphTx, token: str) -> tuple[str, ...]:
        """Index keys that contain ``token`` (itself included if present), shortest first."""
        found = self._containing.get(token)
        if found is not None:
            return found
        joined = self._vocabulary(tx)
        if not joined or len(token) > MAX_KEY_CHARS:
            return ()
        found = tuple(
            sorted(_keys_holding(joined, token), key=lambda k: (len(k), k))[:SUBSTRING_LIMIT]
        )
        if len(self._containing) >= SUBSTRING_CACHE:
            self._containing.clear()
        self._containing[token] = found
        return found

    def _vocabulary(self, tx: GraphTx) -> str:
        if self._joined is None:
            self._keys = set(tx.vocabulary(VOCABULARY_LIMIT + 1, MAX_KEY_CHARS))
            self._joined = "\n" + "\n".join(self._keys) + "\n"
            if len(self._keys) > VOCABULARY_LIMIT or len(self._joined) > VOCABULARY_CHARS:
                self._joined = ""
        return self._joined


def _keys_holding(joined: str, token: str) -> set[str]:
    """The lines of ``joined`` that contain ``token`` (at most ``SUBSTRING_SCAN_HITS``): one
    left-to-right ``str.find`` pass, each hit costing at most two key lengths more."""
    found: set[str] = set()
    at = joined.find(token)
    while at >= 0 and len(found) < SUBSTRING_SCAN_HITS:
        start = joined.rfind("\n", 0, at) + 1
        end = joined.find("\n", at)
        found.add(joined[start:end])
        at = joined.find(token, end)
    return found


def _count(tx: GraphTx, key: str, top: int) -> int:
    count, low = tx.newest_postings(key, DF_PROBE)
    if count < DF_PROBE or not low:
        return count
    return max(count, round(count * top / (top - low + 1)))
