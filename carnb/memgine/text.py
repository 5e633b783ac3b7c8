"""Text analysis for memgine: the tokenizer, the stemmer, the synonym groups and the keyword score.

Pure functions, no I/O. The tokenizer follows docs/memgine.md: lower-case, split on whitespace and
``/ : - _ . ,``; carnb also trims punctuation that wraps a token (``(postgres)`` -> ``postgres``)
so a word next to a bracket or a quote still counts as an exact hit. The stemmer is a small
suffix stripper (good enough to equate ``tokens``/``token``, ``expired``/``expires``); the
synonym groups are hand-written and deliberately small.

The SQLite full-text index holds the *stems* of each fact (:func:`fact_keys`), so looking up a
query token's stem and its synonyms' stems finds every fact with an exact, stem or synonym hit.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator
from functools import lru_cache

# Query tokens beyond this many are ignored (a pasted page must not make a query slow).
MAX_QUERY_TOKENS = 32

# Index keys are at most this long (longer words: a prefix and a hash, see index_key).
MAX_KEY_CHARS = 64
KEY_PREFIX_CHARS = MAX_KEY_CHARS - 16

# A substring hit counts only for query tokens at least this long ("a" is in everything).
MIN_SUBSTRING_LEN = 3

# Score of one query token by the kind of hit (docs/memgine.md, Retrieval step 2).
EXACT_HIT = 3.0
STEM_HIT = 2.0
SYNONYM_HIT = 1.5
SUBSTRING_HIT = 1.0

_SPLIT = re.compile(r"[\s/:\-_.,]+")
# Punctuation trimmed from both ends of a token (inner punctuation such as "don't" stays).
_TRIM = "\"'`()[]{}<>!?;*#~|^=+&@$%\\"

SYNONYM_GROUPS: tuple[tuple[str, ...], ...] = (
    (
        "auth",
        "authentication",
        "login",
        "logon",
        "signin",
        "token",
        "credential",
        "password",
        "oauth",
    ),
    ("db", "database", "sql", "postgres", "postgresql", "mysql", "sqlite"),
    ("error", "err", "exception", "panic", "failure", "crash", "fault"),
    ("config", "configuration", "setting", "preference", "option"),
    ("deploy", "deployment", "release", "rollout", "ship"),
    ("bug", "defect", "issue", "regression"),
    ("user", "account", "customer"),
    ("api", "endpoint", "route"),
    ("perf", "performance", "latency", "speed", "slow"),
    ("delete", "remove", "drop", "erase"),
    ("repo", "repository", "git"),
    ("dependency", "package", "library", "lib"),
    ("doc", "docs", "documentation", "readme"),
    ("env", "environment"),
    ("dir", "directory", "folder"),
    ("msg", "message"),
    ("test", "tests", "spec", "pytest"),
)


# Function words: they say how a question is phrased, not what it is about, so a query ignores
# them (facts are still indexed whole) unless the query holds nothing else. Small on purpose:
# English articles, pronouns, auxiliaries, prepositions, conjunctions and question words;
# negations (not, no, never) carry meaning and stay.
_STOP_TEXT = """
    a an the this that these those it its it's i me my we us our you your he him his she her
    they them their there here what what's which who whom whose when where why how how's
    is are was were be been being am do does did done doing have has had having will would
    shall should can could may might must to of in on at by for from with about into onto
    over under than then as if so and or but any all some each every both either neither
    too very just also only again ever there's that's let's please tell show give get know
    need want use used using up down out off via per
"""
STOP_WORDS = frozenset(_STOP_TEXT.split())


def query_tokens(text: str, limit: int) -> list[str]:
    """A query's distinct tokens without function words (all of them when the query has
    nothing else), at most ``limit``."""
    tokens = unique_tokens(text)
    content = [t for t in tokens if t not in STOP_WORDS]
    return (content or tokens)[:limit]


def tokenize(text: str) -> list[str]:
    """Lower-case ``text`` and split it into tokens (order kept, duplicates kept)."""
    return list(filter(None, map(_trim, _SPLIT.split(text.lower()))))


def unique_tokens(text: str, limit: int | None = None) -> list[str]:
    """Tokens of ``text`` without duplicates, first occurrence order, at most ``limit``."""
    tokens = list(dict.fromkeys(filter(None, map(_trim, _SPLIT.split(text.lower())))))
    return tokens if limit is None else tokens[:limit]


def _trim(raw: str) -> str:
    return raw.strip(_TRIM)


_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("izations", "ize"),
    ("ization", "ize"),
    ("ational", "ate"),
    ("fulness", "ful"),
    ("iveness", "ive"),
    ("ations", "ate"),
    ("ation", "ate"),
    ("nesses", ""),
    ("ments", ""),
    ("ness", ""),
    ("ment", ""),
    ("ings", ""),
    ("eed", "eed"),
    ("edly", ""),
    ("ing", ""),
    ("ies", "y"),
    ("ied", "y"),
    ("sses", "ss"),
    ("ers", ""),
    ("ed", ""),
    ("er", ""),
    ("ly", ""),
    ("es", ""),
    ("s", ""),
)
_NO_S_STRIP = ("ss", "us", "is")


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """A light suffix-stripping stem: ``tokens``/``token``, ``expired``/``expires``/``expire``."""
    if len(word) <= 3 or not word.isalpha():
        return word
    for suffix, repl in _SUFFIXES:
        if not word.endswith(suffix):
            continue
        if suffix == "s" and word.endswith(_NO_S_STRIP):
            break
        base = word[: len(word) - len(suffix)] + repl
        if len(base) < 3:
            break
        word = base
        break
    if len(word) > 4 and word.endswith("e"):
        word = word[:-1]
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiouslz":
        word = word[:-1]
    return word


def _build_synonyms() -> dict[str, frozenset[str]]:
    index: dict[str, set[str]] = {}
    for group in SYNONYM_GROUPS:
        stems = {stem(word) for word in group}
        for member in stems:
            index.setdefault(member, set()).update(stems - {member})
    return {key: frozenset(value) for key, value in index.items()}


_SYNONYMS_BY_STEM = _build_synonyms()


def synonym_stems(token: str) -> frozenset[str]:
    """Stems of the synonyms of ``token`` (empty when it belongs to no group)."""
    return _SYNONYMS_BY_STEM.get(stem(token), frozenset())


class QueryTerms:
    """A query analysed once: its tokens, their index keys (stems), synonym keys and weights.

    :meth:`score` reads a fact's stored ``terms`` (unique tokens) and ``stems`` (unique index
    keys), so scoring a candidate computes no stems."""

    __slots__ = ("tokens", "keys", "synonyms", "weights", "total")

    def __init__(self, tokens: list[str], idf: list[float]) -> None:
        self.tokens = tokens
        self.keys = [word_key(t) for t in tokens]
        self.synonyms = [
            frozenset(index_key(s) for s in synonym_stems(t)) - {key}
            for t, key in zip(tokens, self.keys, strict=True)
        ]
        self.weights = idf
        self.total = sum(w * EXACT_HIT for w in idf) or 1.0

    def score(self, terms: str, stems: str) -> float:
        """Keyword score in [0, 1] of a fact with these ``terms`` and ``stems``."""
        return min(1.0, sum(share for _, _, share in self.hits(terms, stems)) / self.total)

    def hits(self, terms: str, stems: str) -> Iterator[tuple[str, str, float]]:
        """``(query token, how it matched, what it adds before normalising)`` for each query
        token the fact holds: ``exact``, ``stem``, ``synonym`` or ``substring``."""
        token_set = set(terms.split(" "))
        stem_set: set[str] | None = None
        for token, key, syns, weight in zip(
            self.tokens, self.keys, self.synonyms, self.weights, strict=True
        ):
            if token in token_set:
                yield token, "exact", weight * EXACT_HIT
                continue
            if stem_set is None:
                stem_set = set(stems.split(" "))
            if key in stem_set:
                yield token, "stem", weight * STEM_HIT
            elif syns and not syns.isdisjoint(stem_set):
                yield token, "synonym", weight * SYNONYM_HIT
            elif len(token) >= MIN_SUBSTRING_LEN and token in terms:
                yield token, "substring", weight * SUBSTRING_HIT

    def explain(self, terms: str, stems: str) -> list[dict[str, object]]:
        """The matched query words of a fact: how each matched, its rarity weight and its share
        of the keyword score."""
        weight_of = dict(zip(self.tokens, self.weights, strict=True))
        return [
            {
                "word": token,
                "hit": hit,
                "weight": round(weight_of[token], 4),
                "share": round(added / self.total, 4),
            }
            for token, hit, added in self.hits(terms, stems)
        ]


# A few facts say little about which words are common: idf counts this many imaginary facts
# holding none of the query's words, so in a tiny graph every content word weighs about the
# same, and the graph's own frequencies take over as it grows.
IDF_PRIOR_FACTS = 16


def idf(doc_count: int, df: int) -> float:
    """Rarity weight of a term found in ``df`` of ``doc_count`` facts (BM25's idf over
    ``doc_count + IDF_PRIOR_FACTS`` facts, always > 0)."""
    df = min(max(df, 0), doc_count)
    total = doc_count + IDF_PRIOR_FACTS
    return math.log(1.0 + (total - df + 0.5) / (df + 0.5))


def fact_terms(subject: str, body: str) -> str:
    """The space-joined unique tokens of a fact, as stored for re-scoring."""
    return " ".join(unique_tokens(subject + " " + body))


def index_key(word_stem: str) -> str:
    """The full-text index term for a stem: itself when it is letters and digits only (what
    the ``unicode61`` tokenizer keeps whole), else ``z`` + its UTF-8 in hex. A key longer than
    ``MAX_KEY_CHARS`` keeps its first ``KEY_PREFIX_CHARS`` and a hash of the rest, so index keys
    (and the vocabulary scanned for substring hits) stay short whatever a fact holds. A rare
    collision only adds a candidate, which exact re-scoring then judges."""
    key = (
        word_stem if word_stem.isalnum() else "z" + word_stem.encode("utf-8", "surrogatepass").hex()
    )
    if len(key) <= MAX_KEY_CHARS:
        return key
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
    return key[:KEY_PREFIX_CHARS] + digest


class _KeyCache(dict[str, str]):
    """word -> index key, memoised (bounded: cleared when it grows past 500k words)."""

    def __missing__(self, word: str) -> str:
        if len(self) >= 500_000:
            self.clear()
        key = self[word] = index_key(stem(word))
        return key


_WORD_KEYS = _KeyCache()


def word_key(word: str) -> str:
    """The index key of one token: :func:`index_key` of its stem."""
    return _WORD_KEYS[word]


def fact_keys(terms: str) -> str:
    """The space-joined unique index keys (stems) of a fact's ``terms``."""
    if not terms:
        return ""
    return " ".join(dict.fromkeys(map(_WORD_KEYS.__getitem__, terms.split(" "))))
