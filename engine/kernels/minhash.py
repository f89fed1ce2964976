"""MinHash signatures of word n-gram shingles and LSH candidate pairs, compatible with datasketch.

The hot path is one numba kernel that walks the UTF-8 bytes of every text once: it splits words on
ASCII whitespace, folds ASCII letters to lower case, hashes each word (FNV-1a 64), combines the
hashes of `ngram` consecutive words into a 32-bit shingle hash, and applies datasketch's own
permutations (scheme "affine32": MurmurHash3 fmix32, then a·h + b mod 2^32) keeping the minimum.
The pure-Python pair `shingles` / `shingle_hash32` defines the same shingles and hash, so
`datasketch.MinHash(num_perm, seed, hashfunc=shingle_hash32).update_batch(shingles(text))` gives
bit-identical signatures (tests/test_dedup.py); datasketch also supplies the permutation parameters.
A text shorter than `ngram` words is one shingle of all its words; a text with no words has no
shingles and the all-ones "empty" signature.

LSH: `bands` × `rows` slices of the signature; texts sharing any band (within a group, such as a
question) are candidate pairs, the set datasketch's MinHashLSH returns with params=(bands, rows);
`verify` keeps the pairs whose estimated Jaccard reaches the threshold.
"""
from __future__ import annotations

import numba
import numpy as np

from .text import FNV_OFFSET, FNV_PRIME, utf8_buffers

_COMBINE = 0x9E3779B97F4A7C15  # odd multiplier: shingle hash = polynomial of its word hashes mod 2^64
_M64 = (1 << 64) - 1
_WS = b" \t\n\r\x0b\x0c"


def permutations(num_perm: int = 128, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's affine32 permutation parameters (a, b), taken from datasketch itself."""
    from datasketch import MinHash

    a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
    return np.ascontiguousarray(a, dtype=np.uint32), np.ascontiguousarray(b, dtype=np.uint32)


# -- the reference definition (pure Python; what datasketch is fed in tests) -----------------------------

def shingles(text: str, ngram: int = 5) -> list[bytes]:
    """Word n-grams of `text` as bytes joined by single spaces (ASCII-lowercased words)."""
    words = text.encode("utf-8").lower().split()
    if not words:
        return []
    if len(words) < ngram:
        return [b" ".join(words)]
    return [b" ".join(words[i:i + ngram]) for i in range(len(words) - ngram + 1)]


def _word_hash(word: bytes) -> int:
    h = FNV_OFFSET
    for byte in word:
        h = ((h ^ byte) * FNV_PRIME) & _M64
    return h


def shingle_hash32(shingle: bytes) -> int:
    """The 32-bit shingle hash the kernel computes (a datasketch `hashfunc`)."""
    h = 0
    for word in shingle.split(b" "):
        h = (h * _COMBINE + _word_hash(word)) & _M64
    return (h >> 32) ^ (h & 0xFFFFFFFF)


# -- the kernel -----------------------------------------------------------------------------------------

# byte -> 0 for ASCII whitespace, else the byte with ASCII letters lowered (a word byte is never 0)
_LUT = np.array([0 if c in _WS else (c + 32 if 65 <= c <= 90 else c) for c in range(256)], dtype=np.uint64)
_EMPTY = np.uint32(0xFFFFFFFF)


@numba.njit(cache=True, inline="always")
def _word_hashes(data, start, end, lut, out):
    """FNV-1a 64 of every word of data[start:end] into `out`; returns the word count. Branch-free:
    a data-dependent branch per byte (word or space?) costs more than the hashing itself."""
    nw = 0
    in_word = False
    h = np.uint64(FNV_OFFSET)
    for i in range(start, end):
        c = lut[data[i]]
        space = c == 0
        out[nw] = h              # only kept (nw advanced) when this space ends a word
        nw += space & in_word
        h = np.uint64(FNV_OFFSET) if space else (h ^ c) * np.uint64(FNV_PRIME)
        in_word = not space
    out[nw] = h
    return nw + in_word


@numba.njit(cache=True, inline="always")
def _fmix32(h):
    """MurmurHash3's finalizer: datasketch pre-mixes every input hash with it (scheme affine32)."""
    x = np.uint32(h)
    x ^= x >> np.uint32(16)
    x = np.uint32(x * np.uint32(0x85EBCA6B))
    x ^= x >> np.uint32(13)
    x = np.uint32(x * np.uint32(0xC2B2AE35))
    x ^= x >> np.uint32(16)
    return x


@numba.njit(cache=True, parallel=True, nogil=True)
def _signatures(data, offsets, lut, a, b, ngram):
    n = offsets.shape[0] - 1
    out = np.empty((n, a.shape[0]), dtype=np.uint32)
    for d in numba.prange(n):
        start, end = offsets[d], offsets[d + 1]
        words = np.empty((end - start) // 2 + 2, dtype=np.uint64)
        nw = _word_hashes(data, start, end, lut, words)
        width = ngram if nw >= ngram else nw          # a short text is one shingle of all its words
        count = nw - ngram + 1 if nw >= ngram else min(nw, 1)
        hashes = np.empty(count, dtype=np.uint32)
        for j in range(count):
            h = np.uint64(0)
            for t in range(width):
                h = h * np.uint64(_COMBINE) + words[j + t]
            hashes[j] = _fmix32((h >> np.uint64(32)) ^ (h & np.uint64(0xFFFFFFFF)))
        # permutation-major: the min over a text's shingles stays in a register and vectorises
        for k in range(a.shape[0]):
            ak, bk, m = a[k], b[k], _EMPTY
            for j in range(count):
                m = min(m, np.uint32(ak * hashes[j] + bk))
            out[d, k] = m
    return out


def signatures(texts, num_perm: int = 128, seed: int = 1, ngram: int = 5) -> np.ndarray:
    """(len(texts), num_perm) uint32 signatures; `texts` a pyarrow string array or a list of str."""
    data, offsets = utf8_buffers(texts)
    a, b = permutations(num_perm, seed)
    return _signatures(data, offsets, _LUT, a, b, ngram)


# -- LSH and verification -------------------------------------------------------------------------------

def candidate_pairs(sigs: np.ndarray, bands: int, rows: int, groups: np.ndarray | None = None) -> np.ndarray:
    """(m, 2) int64 pairs i < j of rows that share at least one band (and the group, if given)."""
    if bands * rows > sigs.shape[1]:
        raise ValueError(f"{bands} bands x {rows} rows needs {bands * rows} permutations, signatures have {sigs.shape[1]}")
    n = sigs.shape[0]
    groups = np.zeros(n, dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
    empty = (sigs == _EMPTY).all(axis=1)  # no shingles: nothing to compare
    found = []
    for band in range(bands):
        # the band's rows as one exact key: a void view compares the raw bytes, like datasketch's keys
        cols = np.ascontiguousarray(sigs[:, band * rows:(band + 1) * rows])
        key = cols.view(np.dtype((np.void, cols.dtype.itemsize * rows))).ravel()
        _, key_id = np.unique(key, return_inverse=True)
        order = np.lexsort((key_id, groups))
        k, g = key_id[order], groups[order]
        starts = np.concatenate(([0], np.flatnonzero((np.diff(k) != 0) | (np.diff(g) != 0)) + 1, [n]))
        for r in np.flatnonzero(np.diff(starts) > 1):  # only buckets holding two rows or more
            members = np.sort(order[starts[r]:starts[r + 1]])
            members = members[~empty[members]]
            if len(members) > 1:
                i, j = np.triu_indices(len(members), k=1)
                found.append(np.stack([members[i], members[j]], axis=1))
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(found), axis=0)


def jaccard(sigs: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Estimated Jaccard of each pair: the share of equal signature values (as datasketch's jaccard)."""
    if len(pairs) == 0:
        return np.zeros(0)
    return (sigs[pairs[:, 0]] == sigs[pairs[:, 1]]).mean(axis=1)


def clusters(n: int, edges: np.ndarray) -> np.ndarray:
    """Connected components of the near-duplicate graph: a cluster label per row."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n)) if len(edges) else \
        coo_matrix((n, n))
    return connected_components(graph, directed=False)[1]
