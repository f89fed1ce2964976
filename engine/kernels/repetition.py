"""Gopher-style repetition statistics and runaway-loop detection, compiled (numba).

Same definitions as the plain numpy references at the end of this module (`ngram_stats_reference`,
`tandem_repeats_reference`), which tests compare these against on real traces:
- words are `str.split()` words (Unicode whitespace), lengths in characters, over the text's characters;
- top_{2,3,4}gram_char_frac: occurrences × characters of the most frequent word n-gram (ties: the longest);
- dup_{5..10}gram_char_frac: characters of the words inside any word n-gram that occurs more than once;
- tandem repeats: the most consecutive copies of one piece of 10-200 characters.
Words are compared by a 64-bit hash of their code points (FNV-1a) instead of by vocabulary ids: equal
unless two distinct words collide in 64 bits.
"""
from __future__ import annotations

import numba
import numpy as np

_FNV_OFFSET, _FNV_PRIME = 0xCBF29CE484222325, 0x100000001B3
_P = 0x9E3779B97F4A7C15  # n-gram hash = polynomial of word hashes mod 2^64
KEYS = tuple([f"top_{n}gram_char_frac" for n in (2, 3, 4)] + [f"dup_{n}gram_char_frac" for n in range(5, 11)])


@numba.njit(cache=True, inline="always")
def _is_space(c):
    # exactly the code points for which Python's str.isspace() is true
    return (9 <= c <= 13) or (28 <= c <= 32) or c == 0x85 or c == 0xA0 or c == 0x1680 or \
        (0x2000 <= c <= 0x200A) or c == 0x2028 or c == 0x2029 or c == 0x202F or c == 0x205F or c == 0x3000


@numba.njit(cache=True)
def _words(codes):
    """(word hash, word length in characters) of every str.split() word."""
    hashes = np.empty(codes.shape[0] // 2 + 1, dtype=np.uint64)
    lengths = np.empty(codes.shape[0] // 2 + 1, dtype=np.int64)
    n, i, end = 0, 0, codes.shape[0]
    while i < end:
        while i < end and _is_space(codes[i]):
            i += 1
        if i >= end:
            break
        h, start = np.uint64(_FNV_OFFSET), i
        while i < end and not _is_space(codes[i]):
            h = (h ^ np.uint64(codes[i])) * np.uint64(_FNV_PRIME)
            i += 1
        hashes[n], lengths[n] = h, i - start
        n += 1
    return hashes[:n], lengths[:n]


@numba.njit(cache=True)
def _count(h, m, keys, used, tally, counts):
    """counts[i] = occurrences of h[i] among h[:m], with a hash table (linear probing) instead of a sort."""
    mask = keys.shape[0] - 1
    used[:] = False
    slot = np.empty(m, dtype=np.int64)
    for i in range(m):
        j = (h[i] ^ (h[i] >> np.uint64(29))) & np.uint64(mask)
        while used[j] and keys[j] != h[i]:
            j = (j + np.uint64(1)) & np.uint64(mask)
        if not used[j]:
            used[j], keys[j], tally[j] = True, h[i], 0
        tally[j] += 1
        slot[i] = j
    for i in range(m):
        counts[i] = tally[slot[i]]


@numba.njit(cache=True)
def _ngram_stats(codes, min_words):
    out = np.zeros(9, dtype=np.float64)
    words, lens = _words(codes)
    w = words.shape[0]
    if w < min_words:
        return out
    total = max(codes.shape[0], 1)
    h = np.zeros(w, dtype=np.uint64)
    size = 1 << int(np.ceil(np.log2(2 * w + 2)))  # open-addressing table, at most half full
    keys = np.empty(size, dtype=np.uint64)
    used = np.zeros(size, dtype=np.bool_)
    tally = np.zeros(size, dtype=np.int64)
    counts = np.empty(w, dtype=np.int64)  # occurrences of the n-gram starting at each position
    for n in range(1, 11):
        m = w - n + 1
        if m <= 0:
            break
        for i in range(m):
            h[i] = h[i] * np.uint64(_P) + words[i + n - 1]
        if n < 2:
            continue
        _count(h, m, keys, used, tally, counts)
        if n <= 4:
            top = counts[:m].max()
            best = 0
            for i in range(m):
                if counts[i] == top:
                    chars = 0
                    for k in range(n):
                        chars += lens[i + k]
                    best = max(best, chars)
            out[n - 2] = top * best / total
        else:
            covered = 0
            reach = -1  # words before this index are already covered by a repeated n-gram
            for i in range(m):
                if counts[i] > 1:
                    for k in range(max(i, reach), i + n):
                        covered += lens[k]
                    reach = i + n
            out[n - 2] = covered / total
    return out


def ngram_stats(text: str, min_words: int = 0) -> dict[str, float]:
    """The nine n-gram statistics of `text` (all 0 below `min_words` words)."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    return dict(zip(KEYS, _ngram_stats(codes, min_words).tolist()))


@numba.njit(cache=True)
def _tandem(codes, pmin, pmax):
    """For each period p, the longest stretch where the text equals itself p characters later, gives
    stretch // p + 1 copies. Only stretches of p characters or more can add a copy, and each one holds a
    multiple of p // 2: sample those, and expand around a hit (~6n comparisons instead of 190n)."""
    best = 1
    n = codes.shape[0]
    for p in range(pmin, pmax + 1):
        if 2 * p > n:
            break
        step = max(1, p // 2)
        i = 0
        while i < n - p:
            if codes[i] == codes[i + p]:
                a = i
                while a > 0 and codes[a - 1] == codes[a - 1 + p]:
                    a -= 1
                b = i
                while b < n - p and codes[b] == codes[b + p]:
                    b += 1
                best = max(best, (b - a) // p + 1)
                i = b + step
            else:
                i += step
    return best


def tandem_repeats(text: str, periods: range) -> int:
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    return int(_tandem(codes, periods.start, periods.stop - 1))


# -- plain references (numpy): the definitions the kernels are tested against --------------------------



def ngram_stats_reference(text: str, min_words: int = 0) -> dict[str, float]:
    """Gopher's n-gram repetition statistics over whitespace words, vectorised with numpy; as in
    Gopher (and datatrove), characters of the words involved over the characters of the text."""
    words = text.split()
    words = words if len(words) >= min_words else []
    text_chars = len(text)
    out = {}
    vocab: dict[str, int] = {}
    ids = np.fromiter((vocab.setdefault(w, len(vocab) + 1) for w in words), dtype=np.uint64, count=len(words))
    lens = np.fromiter((len(w) for w in words), dtype=np.int64, count=len(words))
    total = max(text_chars, 1)
    h = np.zeros(len(words), dtype=np.uint64)
    for n in range(1, 11):
        if n > len(words):
            h = h[:0]
        else:
            with np.errstate(over="ignore"):
                h = h[:len(words) - n + 1] * np.uint64(_P) + ids[n - 1:]  # hash of words[i:i+n]
        if n < 2:
            continue
        if len(h) == 0:
            out[f"top_{n}gram_char_frac" if n <= 4 else f"dup_{n}gram_char_frac"] = 0.0
            continue
        _, inverse, counts = np.unique(h, return_inverse=True, return_counts=True)
        if n <= 4:
            # characters of the most frequent n-gram times its occurrences (ties: the longest one)
            gram_chars = np.convolve(lens, np.ones(n, dtype=np.int64))[n - 1:len(words)]
            best = np.where(counts[inverse] == counts.max(), gram_chars, 0).max()
            out[f"top_{n}gram_char_frac"] = float(counts.max() * best / total)
        else:
            # characters of words inside any n-gram that occurs more than once
            starts = (counts[inverse] > 1).astype(np.int64)
            covered = np.convolve(starts, np.ones(n, dtype=np.int64))[:len(words)] > 0
            out[f"dup_{n}gram_char_frac"] = float(lens[covered].sum() / total)
    return {k: out[k] for k in sorted(out)}


def tandem_repeats_reference(text: str, periods: range = range(10, 201)) -> int:
    """Most consecutive copies of one piece of 10-200 characters (what the regex (.{10,200}?)\\1+
    finds), by comparing the text with itself shifted by each period."""
    arr = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    best = 1
    for p in periods:
        if 2 * p > len(arr):
            break
        eq = np.concatenate(([False], arr[:-p] == arr[p:], [False]))
        edges = np.flatnonzero(np.diff(eq.astype(np.int8)))
        if len(edges):
            run = int((edges[1::2] - edges[::2]).max())  # longest stretch equal to itself p later
            best = max(best, run // p + 1)
    return best
