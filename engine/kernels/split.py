"""The sentence splitter of engine/sentences.py compiled: the same rules, one pass over the code points
of a whole batch of texts, parallel over texts. `sentences.split` (regular expressions) is the
definition; tests/test_kernels.py holds this kernel to it on real traces and constructed cases.

Rules, as the regular expressions say them:
- blocks: left to right, ``` … ``` , $$ … $$ or \\[ … \\] (to the closing delimiter, else to the end);
  each block's start and end are cuts;
- ends: the end of every run of newlines, and after `.`, `!` or `?`, any closing quotes/brackets, then
  spaces or tabs, the position of a following uppercase ASCII letter, opening quote, bracket or `<` —
  unless that position lies strictly inside a block;
- pieces with fewer than `min_chars` non-space characters join the sentence before them, and a first
  sentence shorter than `min_chars` once stripped joins the next.
"""
from __future__ import annotations

import numba
import numpy as np

from .text import codepoints, find, is_space, matches, pattern

_FENCE, _DOLLARS, _OPEN_BRACKET, _CLOSE_BRACKET = pattern("```"), pattern("$$"), pattern("\\["), pattern("\\]")


# what a character may start, for the first 256 code points: one table lookup per character instead of
# a chain of comparisons whose branches mispredict at every space (3.5x slower, benchmarks/selection.py)
_NEWLINE, _END, _DELIMITER = 1, 2, 3
_KIND = np.zeros(256, dtype=np.uint8)
_KIND[10] = _NEWLINE
_KIND[[ord(ch) for ch in ".!?"]] = _END
_KIND[[ord(ch) for ch in "`$\\"]] = _DELIMITER


@numba.njit(cache=True, inline="always")
def _is_closer(c):
    return c == 0x22 or c == 0x27 or c == 0x201D or c == 0x2019 or c == 0x29 or c == 0x5D  # " ' ” ’ ) ]


@numba.njit(cache=True, inline="always")
def _is_opener(c):
    return (0x41 <= c <= 0x5A) or c == 0x22 or c == 0x27 or c == 0x201C or c == 0x2018 or c == 0x28 or \
        c == 0x5B or c == 0x3C  # A-Z " ' “ ‘ ( [ <


@numba.njit(cache=True)
def split_one(codes, t0, t1, min_chars, out):
    """Sentence starts (relative to t0) of the text codes[t0:t1] into `out`; returns how many. Ends are
    implied: each sentence runs to the next start, the last to the end of the text.

    One pass finds blocks and sentence ends together: no end can fall strictly inside a block found
    later (a block opens on ` $ \\, which no newline run or end-of-sentence match contains), so the
    block being read is the only one an end must be checked against."""
    n = t1 - t0
    cut = np.zeros(n + 1, dtype=np.bool_)
    block_start, block_end = -1, -1
    m, start, nonspace = 0, 0, 0  # sentences so far; the piece being read
    for i in range(t0, t1):
        c = codes[i]
        kind = _KIND[c] if c < 256 else 0
        e = -1
        if kind == 0:
            pass
        elif kind == _DELIMITER:
            if i >= block_end:
                close = -2
                if matches(codes, i, t1, _FENCE):
                    close, width = find(codes, i + 3, t1, _FENCE), 3
                elif matches(codes, i, t1, _DOLLARS):
                    close, width = find(codes, i + 2, t1, _DOLLARS), 2
                elif matches(codes, i, t1, _OPEN_BRACKET):
                    close, width = find(codes, i + 2, t1, _CLOSE_BRACKET), 2
                if close != -2:
                    block_start, block_end = i, close + width if close >= 0 else t1
                    cut[block_start - t0] = True
                    cut[block_end - t0] = True
        elif kind == _NEWLINE:
            if i + 1 == t1 or codes[i + 1] != 10:
                e = i + 1  # the end of a run of newlines
        else:
            j = i + 1
            while j < t1 and _is_closer(codes[j]):
                j += 1
            k = j
            while k < t1 and (codes[k] == 32 or codes[k] == 9):
                k += 1
            if k > j and k < t1 and _is_opener(codes[k]):
                e = k
        if e >= 0 and not (block_start < e < block_end):
            cut[e - t0] = True  # always ahead of i: the piece loop below meets it later
        # pieces between cuts; a piece with too few non-space characters joins the sentence before it
        p = i - t0
        if p > 0 and cut[p]:
            if m == 0 or nonspace >= min_chars:
                out[m] = start
                m += 1
            start, nonspace = p, 0
        nonspace += not is_space(c)  # no branch: it would mispredict at every word
    if m == 0 or nonspace >= min_chars:  # the last piece (the empty text: one empty sentence)
        out[m] = start
        m += 1
    if m > 1:  # a short first sentence ("<think>") joins the next
        first_end = out[1]
        a, b = 0, first_end
        while a < b and is_space(codes[t0 + a]):
            a += 1
        while b > a and is_space(codes[t0 + b - 1]):
            b -= 1
        if b - a < min_chars:
            for k in range(1, m - 1):
                out[k] = out[k + 1]
            m -= 1
    return m


@numba.njit(cache=True, parallel=True, nogil=True)
def _split_all(codes, off, min_chars, bound_off, starts, counts):
    for t in numba.prange(off.shape[0] - 1):
        counts[t] = split_one(codes, off[t], off[t + 1], min_chars, starts[bound_off[t]:bound_off[t + 1]])


def sentence_spans(codes: np.ndarray, off: np.ndarray, min_chars: int = 8):
    """(sent_off, starts, ends) for texts given as code points (`text.codepoints`): text t's sentences
    are starts[sent_off[t]:sent_off[t + 1]] (character positions; ends likewise), tiling the text."""
    # every sentence but the first holds min_chars non-space characters: a bound without a first pass
    lengths = np.diff(off)
    bound = lengths // max(int(min_chars), 1) + 2
    bound_off = np.concatenate(([0], np.cumsum(bound))).astype(np.int64)
    scratch = np.empty(bound_off[-1], dtype=np.int32)
    counts = np.empty(len(lengths), dtype=np.int64)
    _split_all(codes, off, int(min_chars), bound_off, scratch, counts)
    sent_off = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    keep = np.arange(sent_off[-1]) - np.repeat(sent_off[:-1] - bound_off[:-1], counts)
    starts = scratch[keep]
    ends = np.empty_like(starts)
    ends[:-1] = starts[1:]
    last = sent_off[1:] - 1
    ends[last[counts > 0]] = lengths[counts > 0]
    return sent_off, starts, ends


def split_texts(texts, min_chars: int = 8):
    """`sentence_spans` of a pyarrow string array or a list of str."""
    return sentence_spans(*codepoints(texts), min_chars)
