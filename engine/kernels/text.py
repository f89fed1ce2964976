"""Texts as code points for the compiled kernels: an Arrow string column decoded in one parallel pass,
with the helpers every text kernel shares (Python's idea of whitespace, span hashing and comparison).

Kernels index code points, never bytes, so every position they return is a Python `str` index: the
character spans of sentences, tokens and rejections mean the same thing in every stage.
"""
from __future__ import annotations

import numba
import numpy as np
import pyarrow as pa

FNV_OFFSET, FNV_PRIME = 0xCBF29CE484222325, 0x100000001B3  # FNV-1a 64, the word and span hash of every kernel


# a table for the first 256 code points: a branch per character on "space or not?" mispredicts at
# every word boundary and cost 4x the table lookup (benchmarks/selection.py)
_SPACE_LATIN1 = np.array([chr(c).isspace() for c in range(256)], dtype=np.bool_)


@numba.njit(cache=True, inline="always")
def is_space(c):
    """Exactly the code points for which Python's str.isspace() (and so str.split(), str.strip() and
    re's \\s) is true."""
    if c < 256:
        return _SPACE_LATIN1[c]
    return c == 0x1680 or (0x2000 <= c <= 0x200A) or c == 0x2028 or c == 0x2029 or c == 0x202F or \
        c == 0x205F or c == 0x3000


@numba.njit(cache=True, inline="always")
def span_hash(codes, a, b):
    """A 64-bit hash of codes[a:b] (FNV-1a in four interleaved lanes: a single FNV chain waits on one
    multiplication per character; four independent ones keep the multiplier busy)."""
    h0 = h1 = h2 = h3 = np.uint64(FNV_OFFSET)
    prime = np.uint64(FNV_PRIME)
    i = a
    while i + 4 <= b:
        h0 = (h0 ^ np.uint64(codes[i])) * prime
        h1 = (h1 ^ np.uint64(codes[i + 1])) * prime
        h2 = (h2 ^ np.uint64(codes[i + 2])) * prime
        h3 = (h3 ^ np.uint64(codes[i + 3])) * prime
        i += 4
    while i < b:
        h0 = (h0 ^ np.uint64(codes[i])) * prime
        i += 1
    return (((h0 * prime ^ h1) * prime ^ h2) * prime ^ h3) * prime ^ np.uint64(b - a)


@numba.njit(cache=True, inline="always")
def spans_equal(codes, a1, b1, a2, b2):
    if b1 - a1 != b2 - a2:
        return False
    for k in range(b1 - a1):
        if codes[a1 + k] != codes[a2 + k]:
            return False
    return True


@numba.njit(cache=True, inline="always")
def matches(codes, i, end, pattern):
    """codes[i:] starts with `pattern` (within end)."""
    if i + pattern.shape[0] > end:
        return False
    for k in range(pattern.shape[0]):
        if codes[i + k] != pattern[k]:
            return False
    return True


@numba.njit(cache=True)
def find(codes, i, end, pat):
    """First k >= i with codes[k:end] starting with pat, else -1 (as str.find)."""
    for k in range(i, end - pat.shape[0] + 1):
        if matches(codes, k, end, pat):
            return k
    return -1


@numba.njit(cache=True, inline="always")
def blank(codes, a, b):
    """codes[a:b] is whitespace only (str.strip() would leave nothing)."""
    for i in range(a, b):
        if not is_space(codes[i]):
            return False
    return True


def pattern(s: str) -> np.ndarray:
    """A literal for `matches`."""
    return np.array([ord(ch) for ch in s], dtype=np.uint32)


@numba.njit(cache=True, parallel=True, nogil=True)
def _count_chars(data, offsets, counts):
    for t in numba.prange(offsets.shape[0] - 1):
        n = 0
        for i in range(offsets[t], offsets[t + 1]):
            n += (data[i] & 0xC0) != 0x80  # every byte but a continuation byte starts a character
        counts[t] = n


@numba.njit(cache=True, parallel=True, nogil=True)
def _decode(data, offsets, char_off, out):
    for t in numba.prange(offsets.shape[0] - 1):
        i, j, end = offsets[t], char_off[t], offsets[t + 1]
        while i < end:
            b = np.uint32(data[i])
            if b < 0x80:
                out[j] = b
                i += 1
            elif b < 0xE0:
                out[j] = ((b & 0x1F) << 6) | (np.uint32(data[i + 1]) & 0x3F)
                i += 2
            elif b < 0xF0:
                out[j] = ((b & 0x0F) << 12) | ((np.uint32(data[i + 1]) & 0x3F) << 6) | (np.uint32(data[i + 2]) & 0x3F)
                i += 3
            else:
                out[j] = ((b & 0x07) << 18) | ((np.uint32(data[i + 1]) & 0x3F) << 12) | \
                    ((np.uint32(data[i + 2]) & 0x3F) << 6) | (np.uint32(data[i + 3]) & 0x3F)
                i += 4
            j += 1


def utf8_buffers(texts) -> tuple[np.ndarray, np.ndarray]:
    """(bytes, int64 offsets) of a pyarrow string array (nulls read as empty) or a list of str."""
    arr = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(texts, pa.string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.large_string()).fill_null("")
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset:arr.offset + len(arr) + 1]
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8) if arr.buffers()[2] is not None else np.zeros(0, np.uint8)
    return data, offsets


def decode(data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(uint32 code points, int64 character offsets) of the texts data[offsets[t]:offsets[t + 1]]."""
    counts = np.zeros(len(offsets) - 1, dtype=np.int64)
    _count_chars(data, offsets, counts)
    char_off = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    codes = np.empty(char_off[-1], dtype=np.uint32)
    _decode(data, offsets, char_off, codes)
    return codes, char_off


def codepoints(texts) -> tuple[np.ndarray, np.ndarray]:
    """(uint32 code points of all texts, int64 character offsets): text t is codes[off[t]:off[t + 1]]."""
    return decode(*utf8_buffers(texts))


def row_chunks(offsets: np.ndarray, max_bytes: int):
    """(first, end) row ranges of at most max_bytes of text each (or one longer row): the code points
    of a whole stage's texts (4 bytes a character) never have to sit in memory at once."""
    first, n = 0, len(offsets) - 1
    while first < n:
        end = int(np.searchsorted(offsets, offsets[first] + max_bytes, side="right")) - 1
        end = min(max(end, first + 1), n)
        yield first, end
        first = end
