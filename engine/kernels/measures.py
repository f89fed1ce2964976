"""The filter's text measures for a whole batch of responses in one compiled pass, parallel over
responses: structure, duplicated lines / paragraphs / sentences, the n-gram statistics and runaway
loops. `engine.filter.measure` (plain Python over one text) is the definition; tests/test_kernels.py
holds this kernel to it on real traces and on every rule's failing case.

Items (lines, paragraphs, sentences) are compared exactly: a 64-bit hash finds the candidates and the
code points confirm them, so a hash collision never makes two items equal.
"""
from __future__ import annotations

import numba
import numpy as np

from .repetition import KEYS as NGRAM_KEYS
from .repetition import ngram_stats_codes, tandem_codes
from .split import split_one
from .text import blank, codepoints, decode, find, is_space, matches, pattern, row_chunks, span_hash, spans_equal, \
    utf8_buffers

# Gopher's repetition statistics first (`gopher_texts` computes just those), then this project's rules
GOPHER = ("dup_line_frac", "dup_line_char_frac", "dup_para_frac", "dup_para_char_frac") + NGRAM_KEYS
COLUMNS = GOPHER + ("missing_reasoning", "unclosed_reasoning", "empty_answer", "dup_sentence_frac",
                    "runaway_repeats")
_OPEN, _CLOSE = pattern("<think>"), pattern("</think>")
CHUNK_BYTES = 64 << 20  # texts measured per pass: their code points take 4x this


@numba.njit(cache=True)
def _dup_stats(codes, a, b, m):
    """(share of non-blank items equal to an earlier one, share of characters in those items); items
    are codes[a[k]:b[k]] for k < m, blank ones ignored."""
    size = 1 << int(np.ceil(np.log2(2 * m + 2)))
    mask = np.uint64(size - 1)
    table = np.full(size, -1, dtype=np.int64)
    hashes = np.empty(size, dtype=np.uint64)
    items = chars = dup = dup_chars = 0
    for k in range(m):
        s, e = a[k], b[k]
        if blank(codes, s, e):
            continue
        items += 1
        chars += e - s
        h = span_hash(codes, s, e)
        j = (h ^ (h >> np.uint64(29))) & mask
        seen = False
        while table[j] >= 0:
            other = table[j]
            if hashes[j] == h and spans_equal(codes, a[other], b[other], s, e):
                seen = True
                break
            j = (j + np.uint64(1)) & mask
        if seen:
            dup += 1
            dup_chars += e - s
        else:
            table[j], hashes[j] = k, h
    if items == 0:
        return 0.0, 0.0
    return dup / items, dup_chars / max(1, chars)


@numba.njit(cache=True)
def _lines(codes, t0, t1, a, b):
    """str.split("\\n")."""
    m, start = 0, t0
    for i in range(t0, t1):
        if codes[i] == 10:
            a[m], b[m] = start, i
            m += 1
            start = i + 1
    a[m], b[m] = start, t1
    return m + 1


@numba.njit(cache=True)
def _paragraphs(codes, t0, t1, a, b):
    """re.split(r"\\n\\s*\\n"): a separator runs from a newline to the last newline of the whitespace
    after it (greedy \\s*, backtracking to a newline)."""
    m, start, i = 0, t0, t0
    while i < t1:
        if codes[i] == 10:
            last, r = -1, i + 1
            while r < t1 and is_space(codes[r]):
                if codes[r] == 10:
                    last = r
                r += 1
            if last >= 0:
                a[m], b[m] = start, i
                m += 1
                start = i = last + 1
                continue
        i += 1
    a[m], b[m] = start, t1
    return m + 1


@numba.njit(cache=True)
def _lines_paragraphs(codes, t0, t1, a, b, out):
    """Gopher's duplicated line and paragraph statistics of codes[t0:t1] into out[0:4]; a, b: scratch of
    t1 - t0 + 1 items."""
    out[0], out[1] = _dup_stats(codes, a, b, _lines(codes, t0, t1, a, b))
    out[2], out[3] = _dup_stats(codes, a, b, _paragraphs(codes, t0, t1, a, b))


@numba.njit(cache=True)
def _gopher_one(codes, t0, t1, ngram_min_words, a, b, out):
    """The GOPHER statistics of codes[t0:t1], the whole text, into out[0:13]."""
    _lines_paragraphs(codes, t0, t1, a, b, out)
    ngram_stats_codes(codes[t0:t1], ngram_min_words, out[4:4 + len(NGRAM_KEYS)])


@numba.njit(cache=True)
def _measure_one(codes, t0, t1, min_chars, ngram_min_words, loop_tail, pmin, pmax, out):
    n = t1 - t0
    a = np.empty(n + 1, dtype=np.int64)
    b = np.empty(n + 1, dtype=np.int64)
    close = find(codes, t0, t1, _CLOSE)
    closed = close >= 0
    _lines_paragraphs(codes, t0, t1, a, b, out)
    # n-gram statistics of the reasoning and of the answer, each over its own characters, the larger
    # counting: an answer that restates the reasoning repeats it once, which is not a loop
    grams = out[4:4 + len(NGRAM_KEYS)]
    ngram_stats_codes(codes[t0:close if closed else t1], ngram_min_words, grams)
    if closed:
        answer = np.zeros(len(NGRAM_KEYS))
        ngram_stats_codes(codes[close + _CLOSE.shape[0]:t1], ngram_min_words, answer)
        for k in range(len(NGRAM_KEYS)):
            grams[k] = max(grams[k], answer[k])
    at = len(GOPHER)
    # structure: <think> reasoning </think> answer
    i = t0
    while i < t1 and is_space(codes[i]):
        i += 1
    opened = matches(codes, i, t1, _OPEN)
    out[at] = not opened or blank(codes, i + _OPEN.shape[0], close if closed else t1)
    out[at + 1] = opened and not closed
    out[at + 2] = not closed or blank(codes, close + _CLOSE.shape[0], t1)
    # sentences, stripped; the longest run of one sentence repeated back to back counts as a loop
    starts = np.empty(n // max(min_chars, 1) + 2, dtype=np.int32)
    m = split_one(codes, t0, t1, min_chars, starts)
    run = best = 1
    for k in range(m):
        s, e = t0 + starts[k], t0 + starts[k + 1] if k + 1 < m else t1
        while s < e and is_space(codes[s]):
            s += 1
        while e > s and is_space(codes[e - 1]):
            e -= 1
        a[k], b[k] = s, e
        if k > 0:
            same = e > s and spans_equal(codes, a[k - 1], b[k - 1], s, e)
            run = run + 1 if same else 1
            best = max(best, run)
    out[at + 3] = _dup_stats(codes, a, b, m)[0]
    out[at + 4] = max(tandem_codes(codes[t0:t1], pmin, pmax, loop_tail), best)


@numba.njit(cache=True, parallel=True, nogil=True)
def _measure_all(codes, off, min_chars, ngram_min_words, loop_tail, pmin, pmax, out):
    for t in numba.prange(off.shape[0] - 1):
        _measure_one(codes, off[t], off[t + 1], min_chars, ngram_min_words, loop_tail, pmin, pmax, out[t])


@numba.njit(cache=True, parallel=True, nogil=True)
def _gopher_all(codes, off, ngram_min_words, out):
    for t in numba.prange(off.shape[0] - 1):
        n = off[t + 1] - off[t]
        _gopher_one(codes, off[t], off[t + 1], ngram_min_words, np.empty(n + 1, dtype=np.int64),
                    np.empty(n + 1, dtype=np.int64), out[t])


def gopher_texts(texts, ngram_min_words: int) -> np.ndarray:
    """(len(texts), len(GOPHER)) float64: Gopher's repetition statistics alone (benchmarks/)."""
    codes, off = codepoints(texts)
    out = np.zeros((len(off) - 1, len(GOPHER)))
    _gopher_all(codes, off, int(ngram_min_words), out)
    return out


def measure_texts(texts, min_chars: int, ngram_min_words: int, loop_tail: int, periods: range) -> np.ndarray:
    """(len(texts), len(COLUMNS)) float64: the measures of each text of a pyarrow string array."""
    if periods.start < 2:
        raise ValueError(f"loop periods start at 2 characters or more, not {periods.start}")
    data, offsets = utf8_buffers(texts)
    out = np.zeros((len(offsets) - 1, len(COLUMNS)))
    for first, end in row_chunks(offsets, CHUNK_BYTES):
        codes, off = decode(data, offsets[first:end + 1])
        _measure_all(codes, off, int(min_chars), int(ngram_min_words), int(loop_tail), periods.start,
                     periods.stop - 1, out[first:end])
    return out
