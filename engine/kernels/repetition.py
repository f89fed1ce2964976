"""Gopher-style repetition statistics and runaway-loop detection, compiled (numba).

Kernels over one text's code points, called per response by engine/kernels/measures.py; same
definitions as the plain numpy references at the end of this module (`ngram_stats_reference`,
`tandem_repeats_reference`, used by `engine.filter.measure`), which tests hold them to on real traces:
- words are `str.split()` words (Unicode whitespace), lengths in characters, over the text's characters;
- top_{2,3,4}gram_char_frac: occurrences × characters of the most frequent word n-gram (ties: the longest);
- dup_{5..10}gram_char_frac: characters of the words inside any word n-gram that occurs more than once;
- tandem repeats: the most consecutive copies of one piece of 10-4,096 characters near the end.
Words are compared by a 64-bit hash of their code points (FNV-1a) instead of by vocabulary ids: equal
unless two distinct words collide in 64 bits.
"""
from __future__ import annotations

import numba
import numpy as np

from .text import FNV_OFFSET, FNV_PRIME, is_space

_P = 0x9E3779B97F4A7C15  # n-gram hash = polynomial of word hashes mod 2^64
WINDOW_COPIES = 9  # a piece of p characters is looked for in the last max(min_tail, 9p) characters
KEYS = tuple([f"top_{n}gram_char_frac" for n in (2, 3, 4)] + [f"dup_{n}gram_char_frac" for n in range(5, 11)])


@numba.njit(cache=True)
def _words(codes):
    """(word hash, word length in characters) of every str.split() word. Branch-free, as the MinHash
    kernel: a data-dependent branch per character (word or space?) costs more than the hashing."""
    hashes = np.empty(codes.shape[0] // 2 + 2, dtype=np.uint64)
    lengths = np.empty(codes.shape[0] // 2 + 2, dtype=np.int64)
    n, in_word, length, h = 0, False, 0, np.uint64(FNV_OFFSET)
    for i in range(codes.shape[0]):
        c = codes[i]
        space = is_space(c)
        hashes[n], lengths[n] = h, length  # only kept (n advanced) when this space ends a word
        n += space & in_word
        h = np.uint64(FNV_OFFSET) if space else (h ^ np.uint64(c)) * np.uint64(FNV_PRIME)
        length = 0 if space else length + 1
        in_word = not space
    hashes[n], lengths[n] = h, length
    n += in_word
    return hashes[:n], lengths[:n]


@numba.njit(cache=True)
def _count(h, pos, m, keys, tally, counts):
    """counts[k] = occurrences of h[pos[k]] among h[pos[:m]], with a hash table (linear probing, key 0
    = empty, so a hash of 0 counts as 1) sized to m, a quarter full: the passes over fewer positions
    touch less memory, and a probe rarely goes past its first slot."""
    bits = 2
    while (1 << bits) < 4 * m:
        bits += 1
    shift = np.uint64(64 - bits)
    mask = np.uint64((1 << bits) - 1)
    keys[:1 << bits] = 0
    slot = np.empty(m, dtype=np.int64)
    for k in range(m):
        x = max(h[pos[k]], np.uint64(1))
        j = (x * np.uint64(_P)) >> shift  # Fibonacci hashing: the slot from the well-mixed high bits
        while keys[j] != 0 and keys[j] != x:
            j = (j + np.uint64(1)) & mask
        fresh = keys[j] == 0  # no branch: new or seen is a coin flip for the predictor
        keys[j] = x
        tally[j] = tally[j] * (1 - fresh) + 1
        slot[k] = j
    for k in range(m):
        counts[k] = tally[slot[k]]


@numba.njit(cache=True)
def ngram_stats_codes(codes, min_words, out):
    """The nine statistics of one text (code points) into out[0:9].

    An n-gram that occurs twice starts with an (n-1)-gram that occurs twice, so each n only counts the
    positions whose (n-1)-gram repeats: exact, and the passes shrink fast as n grows (on real traces
    31% of the bigram positions for trigrams, 6% for 5-grams)."""
    out[:] = 0.0
    words, lens = _words(codes)
    w = words.shape[0]
    if w < min_words or w < 2:
        return
    total = max(codes.shape[0], 1)
    h = words.copy()  # h[i] = hash of the n-gram starting at word i, for the positions still counted
    keys = np.empty(8 * w + 8, dtype=np.uint64)  # room for _count's table (under 8m slots)
    tally = np.empty(8 * w + 8, dtype=np.int32)
    counts = np.empty(w, dtype=np.int64)
    pos = np.arange(w)  # positions whose (n-1)-gram occurs more than once, ascending (bigrams: all)
    m = w
    for n in range(2, 11):
        if n > w:
            break
        while m > 0 and pos[m - 1] > w - n:  # the n-gram would run past the last word
            m -= 1
        for k in range(m):
            i = pos[k]
            h[i] = h[i] * np.uint64(_P) + words[i + n - 1]
        _count(h, pos, m, keys, tally, counts)
        if n <= 4:
            top, best = 1, 0
            for k in range(m):
                top = max(top, counts[k])
            if top == 1:  # every n-gram is unique: the longest one, once
                chars = 0
                for k in range(n):
                    chars += lens[k]
                best = chars
                for i in range(1, w - n + 1):
                    chars += lens[i + n - 1] - lens[i - 1]
                    best = max(best, chars)
            else:
                for k in range(m):
                    if counts[k] == top:
                        chars = 0
                        for j in range(n):
                            chars += lens[pos[k] + j]
                        best = max(best, chars)
            out[n - 2] = top * best / total
        kept = 0
        for k in range(m):  # keep the repeated positions, without a branch
            pos[kept] = pos[k]
            kept += counts[k] > 1
        m = kept
        if n >= 5:
            covered = 0
            reach = -1  # words before this index are already covered by a repeated n-gram
            for k in range(m):
                i = pos[k]
                for j in range(max(i, reach), i + n):
                    covered += lens[j]
                reach = i + n
            out[n - 2] = covered / total


@numba.njit(cache=True)
def tandem_codes(codes, pmin, pmax, min_tail):
    """For each period p, within the text's last max(min_tail, WINDOW_COPIES x p) characters (a loop runs to
    the end of a response, and a window of that many copies of the longest piece costs ~WINDOW_COPIES
    comparisons per period, not a pass over a long tail), the longest stretch where the text equals
    itself p characters later gives stretch // p + 1 copies. Only stretches of p characters or more add
    a copy; any such stretch holds two neighbours i, i + 1 with i a multiple of p - 1: sample those pairs
    (a pair, not one character, so chance matches and the mispredicted branches they cost are rare) and
    expand around a hit (~3w/p comparisons instead of w)."""
    best = 1
    total = codes.shape[0]
    for p in range(pmin, pmax + 1):
        n = min(total, max(min_tail, WINDOW_COPIES * p))
        if 2 * p > n:
            break
        w = codes[total - n:]
        step = p - 1
        i = 0
        while i + 1 < n - p:
            if (w[i] == w[i + p]) & (w[i + 1] == w[i + 1 + p]):
                a = i
                while a > 0 and w[a - 1] == w[a - 1 + p]:
                    a -= 1
                b = i
                while b < n - p and w[b] == w[b + p]:
                    b += 1
                best = max(best, (b - a) // p + 1)
                i = b + step
            else:
                i += step
    return best


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


def tandem_repeats_reference(text: str, periods: range = range(10, 201), min_tail: int = 4000) -> int:
    """Most consecutive copies of one piece of p characters, p in `periods` (what the regex
    (.{10,200}?)\\1+ finds for 10-200), each p looked for in the text's last max(min_tail,
    WINDOW_COPIES x p) characters, by comparing that window with itself shifted by p."""
    whole = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    best = 1
    for p in periods:
        arr = whole[-max(min_tail, WINDOW_COPIES * p):]
        if 2 * p > len(arr):
            break
        eq = np.concatenate(([False], arr[:-p] == arr[p:], [False]))
        edges = np.flatnonzero(np.diff(eq.astype(np.int8)))
        if len(edges):
            run = int((edges[1::2] - edges[::2]).max())  # longest stretch equal to itself p later
            best = max(best, run // p + 1)
    return best
