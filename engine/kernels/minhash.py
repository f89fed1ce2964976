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
_U64 = np.uint64


@numba.njit(cache=True, inline="always")
def _word_byte(c, out, n, in_word, h):
    """One byte of FNV-1a 64 word hashing; `c` is the byte through _LUT (0: whitespace). Branch-free:
    a data-dependent branch per byte (word or space?) costs more than the hashing itself. Indices and
    flags are unsigned so that numba adds no negative-index fix-up to the loop."""
    space = _U64(c == 0)
    out[n] = h               # only kept (n advanced) when this space ends a word
    n += space & in_word
    h = _U64(FNV_OFFSET) if space else (h ^ c) * _U64(FNV_PRIME)
    return n, space ^ _U64(1), h


@numba.njit(cache=True, inline="always")
def _word_hashes(data, start, end, lut, out):
    """FNV-1a 64 of every word of data[start:end] into `out` (at least (end - start) // 2 + 4 long);
    returns the word count. The text is cut in two at a whitespace byte and both halves are hashed in
    one loop: one FNV chain is latency-bound (xor, multiply, reset: ~5 cycles a byte), two overlap."""
    mid = (start + end) // 2
    while mid < end and lut[data[mid]] != 0:
        mid += 1
    first, second = data[start:mid], data[mid:end]
    out_first, out_second = out[:first.shape[0] // 2 + 2], out[first.shape[0] // 2 + 2:]
    n1 = n2 = in1 = in2 = _U64(0)
    h1 = h2 = _U64(FNV_OFFSET)
    both = _U64(min(first.shape[0], second.shape[0]))
    for i in range(both):
        n1, in1, h1 = _word_byte(lut[first[i]], out_first, n1, in1, h1)
        n2, in2, h2 = _word_byte(lut[second[i]], out_second, n2, in2, h2)
    for i in range(both, _U64(first.shape[0])):
        n1, in1, h1 = _word_byte(lut[first[i]], out_first, n1, in1, h1)
    for i in range(both, _U64(second.shape[0])):
        n2, in2, h2 = _word_byte(lut[second[i]], out_second, n2, in2, h2)
    out_first[n1] = h1       # a word running to the end of its half
    out_second[n2] = h2
    n1 += in1
    n2 += in2
    for j in range(n2):      # the second half's words right after the first's
        out_first[n1 + j] = out_second[j]
    return np.int64(n1 + n2)


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


_LANES = 32  # shingle hashes are padded to a multiple of this: the vector loop then has no scalar tail
_TILE = 4    # permutations per pass over a text's shingle hashes (independent minima share each load;
             # _signatures writes the four out)


@numba.njit(cache=True, inline="always")
def _shingle_hashes(words, nw, ngram, out):
    """The pre-mixed 32-bit hash of each word n-gram into `out`, padded with copies of the first (a
    repeated value never changes a minimum); returns the padded count."""
    width = ngram if nw >= ngram else nw          # a short text is one shingle of all its words
    count = nw - ngram + 1 if nw >= ngram else min(nw, 1)
    # the polynomial of the first window, then rolled one word at a time (drop the oldest word's
    # term, shift, add the next): the same value mod 2^64 with two multiplies a shingle, not `ngram`
    top = np.uint64(1)
    h = np.uint64(0)
    for t in range(width):
        h = h * np.uint64(_COMBINE) + words[t]
        top = top * np.uint64(_COMBINE) if t else top
    for j in range(count):
        if j:
            h = (h - words[j - 1] * top) * np.uint64(_COMBINE) + words[j + width - 1]
        out[j] = np.uint32((h >> np.uint64(32)) ^ (h & np.uint64(0xFFFFFFFF)))
    padded = (count + _LANES - 1) // _LANES * _LANES
    for j in range(count, padded):
        out[j] = out[0]
    for j in range(padded):  # a separate pass: it vectorises
        out[j] = _fmix32(out[j])
    return padded


@numba.njit(cache=True, parallel=True, nogil=True)
def _signatures(data, offsets, lut, a, b, ngram):
    n = offsets.shape[0] - 1
    num_perm = a.shape[0]
    out = np.empty((n, num_perm), dtype=np.uint32)
    for d in numba.prange(n):
        start, end = offsets[d], offsets[d + 1]
        words = np.empty((end - start) // 2 + 4, dtype=np.uint64)
        nw = _word_hashes(data, start, end, lut, words)
        hashes = np.empty(words.shape[0] + _LANES, dtype=np.uint32)
        count = _shingle_hashes(words, nw, ngram, hashes)
        # permutation-major, _TILE at a time: the minima stay in registers and the loop over the
        # shingles vectorises (no shingles: every minimum stays _EMPTY); num_perm is a multiple of _TILE
        for k in range(0, num_perm, _TILE):
            a0, a1, a2, a3 = a[k], a[k + 1], a[k + 2], a[k + 3]
            b0, b1, b2, b3 = b[k], b[k + 1], b[k + 2], b[k + 3]
            m0 = m1 = m2 = m3 = _EMPTY
            for j in range(count):
                h = hashes[j]
                m0 = min(m0, np.uint32(a0 * h + b0))
                m1 = min(m1, np.uint32(a1 * h + b1))
                m2 = min(m2, np.uint32(a2 * h + b2))
                m3 = min(m3, np.uint32(a3 * h + b3))
            out[d, k], out[d, k + 1], out[d, k + 2], out[d, k + 3] = m0, m1, m2, m3
    return out


def signatures(texts, num_perm: int = 128, seed: int = 1, ngram: int = 5) -> np.ndarray:
    """(len(texts), num_perm) uint32 signatures; `texts` a pyarrow string array or a list of str."""
    data, offsets = utf8_buffers(texts)
    a, b = permutations(num_perm, seed)
    tile = -num_perm % _TILE  # the kernel takes permutations _TILE at a time: pad with copies, cut after
    a, b = np.resize(a, num_perm + tile), np.resize(b, num_perm + tile)
    return _signatures(data, offsets, _LUT, a, b, ngram)[:, :num_perm]


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
