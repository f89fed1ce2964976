"""Compiled kernels against their plain reference definitions (engine/kernels/)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from engine.kernels.align import align, align_reference


def test_align_matches_reference_on_random_responses():
    rng = np.random.default_rng(0)
    sentence_starts, token_starts, logprobs = [], [], []
    for r in range(300):
        length = int(rng.integers(0, 400))
        cuts = sorted(set(rng.integers(1, max(2, length), size=int(rng.integers(0, 12))).tolist()) - {0})
        sentence_starts.append([0] + [c for c in cuts if c < length])
        pos = np.sort(rng.integers(0, max(1, length), size=int(rng.integers(0, 80)))).tolist()
        if r % 7 == 0 and len(pos) > 3:
            pos[1], pos[3] = pos[3], pos[1]  # out of order: still the sentence holding the position
        token_starts.append(pos)
        logprobs.append((-rng.exponential(1.0, len(pos))).tolist())
    sent_off = np.concatenate(([0], np.cumsum([len(s) for s in sentence_starts])))
    count, total = align(sent_off, np.concatenate(sentence_starts).astype(np.int32),
                         pa.array(token_starts, pa.list_(pa.int32())), pa.array(logprobs, pa.list_(pa.float32())))
    for r, (ss, ts, lp) in enumerate(zip(sentence_starts, token_starts, logprobs)):
        want_count, want_total = align_reference(ss, ts, np.float32(lp).tolist())
        a, b = sent_off[r], sent_off[r + 1]
        assert count[a:b].tolist() == want_count
        assert total[a:b] == pytest.approx(want_total, abs=1e-9)
    assert count.sum() == sum(len(t) for t in token_starts)  # every token lands in exactly one sentence


def test_align_refuses_mismatched_inputs():
    starts = pa.array([[0, 3]], pa.list_(pa.int32()))
    with pytest.raises(ValueError, match="differ in length"):
        align(np.array([0, 1]), np.array([0], np.int32), starts, pa.array([[-1.0]], pa.list_(pa.float32())))
    with pytest.raises(ValueError, match="2 responses"):
        align(np.array([0, 1, 2]), np.array([0, 0], np.int32), starts, pa.array([[-1.0, -1.0]], pa.list_(pa.float32())))


def real_traces(per_file: int | None = 150) -> list[str]:
    import json

    from conftest import shared

    texts = []
    for name in ("traces_math500_r1_and_distill.jsonl", "traces_qwen25math_cot_rm_example.jsonl"):
        texts += [json.loads(line)["response"] for line in open(shared("traces", name), encoding="utf-8")][:per_file]
    return texts


# what the regular expressions and the compiled pass could read differently: delimiters unclosed or
# nested, ends inside blocks, quotes and brackets, runs of newlines, multi-byte characters (the kernels
# index code points: a UTF-8 decoding slip would move every later span)
SPLIT_CASES = [
    "", "   ", "\n\n\n", "abc\n", "\n\n\nabc def ghi jkl", "```unclosed code. With Sentences. Here",
    "$$ a. B $$ c. D and more words. Then the end.", "\\[ x. Y \\] z.\n\nWhat about this line? Yes it is.",
    "``` $$ ``` $$ not a block. Is it? ```", "He said \u201cYes.\u201d Then \u2018no.\u2019 (Fine.) [Ok.] <b>Bold.",
    "Wait...   Then again!\tTab start. x.) (Y starts here.", "\u00e9t\u00e9. \u00c9mile went home. \u4e2d\u6587\u3002 "
    "\u4e0b\u4e00\u53e5. Next \U0001F600. Emoji sentence here.\u2028Line sep. A\u3000B.",
    "short. A. B. C. D. Eeeeeeeeeee fff. G", "<think>\nx\n</think>\n\nThe answer is 5.", "$$$$ $$ x $$$",
]


@pytest.mark.parametrize("min_chars", [0, 1, 8, 40])
def test_split_kernel_matches_the_definition(min_chars):
    from engine.kernels.split import split_texts
    from engine.sentences import split

    texts = real_traces(None) + SPLIT_CASES
    sent_off, starts, ends = split_texts(pa.array(texts), min_chars)
    assert len(sent_off) == len(texts) + 1
    for t, text in enumerate(texts):
        a, b = sent_off[t], sent_off[t + 1]
        assert list(zip(starts[a:b].tolist(), ends[a:b].tolist())) == split(text, min_chars), text[:60]


def repetition_cases() -> list[str]:
    texts = real_traces()
    loop = "Let me verify the sum once more. "
    return texts + ["so so " * 60, " ".join(["the value of x is one"] * 40), texts[0] + loop * 12,
                    "a\u3000b\xa0c\u2009d e\x1cf", "", "x" * 500, ("abc" * 7 + "0123456789") * 9]


@pytest.mark.parametrize("min_words", [0, 100])
def test_filter_measures_kernel_matches_the_definition(min_words, monkeypatch):
    from engine import filter as F
    from engine.kernels.measures import COLUMNS, GOPHER, gopher_texts, measure_texts
    from engine.kernels.repetition import KEYS, ngram_stats_reference
    from test_filter import FAILING, GOOD

    # periods up to 1,024 here (the numpy reference costs a pass over a window per period); the full
    # range is held to the reference on long loops below
    monkeypatch.setattr(F, "LOOP_PERIODS", range(10, 1025))
    texts = repetition_cases() + [text for text, _, _ in FAILING.values()] + [GOOD] + SPLIT_CASES
    got = measure_texts(pa.array(texts), F.SENTENCE_MIN_CHARS, min_words, F.LOOP_TAIL, F.LOOP_PERIODS)
    for text, row in zip(texts, got):
        want = F.measure(text, "stop", 0, min_words)
        assert dict(zip(COLUMNS, row.tolist())) == {k: want[k] for k in COLUMNS}, text[:60]
    # Gopher alone: the same line and paragraph statistics; its n-grams over the whole text
    gopher = gopher_texts(pa.array(texts), min_words)
    assert np.array_equal(gopher[:, :4], got[:, :4])
    assert [dict(zip(KEYS, row[4:len(GOPHER)].tolist())) for row in gopher] == \
        [ngram_stats_reference(t, min_words) for t in texts]
    loops = measure_texts(pa.array(["Let me verify the sum once more. " * 12]), 8, 0, 4000, range(10, 201))
    assert loops[0, COLUMNS.index("runaway_repeats")] == 12


def test_loops_of_long_pieces_are_found_at_every_period():
    """Looping traces repeat units of 236 and 247 characters (beyond the 200 once looked at); pieces up to
    4,096 characters are found, by the kernel and the definition alike, in the tail of a real trace."""
    from engine import filter as F
    from engine.kernels.measures import COLUMNS, measure_texts
    from engine.kernels.repetition import tandem_repeats_reference

    trace = real_traces()[0]
    words = trace.split()
    cases = {}
    for period, copies in ((236, 32), (247, 34), (1000, 9), (4000, 9), (5000, 9)):
        unit = ""
        k = 0
        while len(unit) < period:  # a piece of real text, exactly `period` characters
            unit += words[k % len(words)] + " "
            k += 1
        cases[(period, copies)] = trace[:-200] + unit[:period] * copies
    got = measure_texts(pa.array(list(cases.values())), 8, 100, F.LOOP_TAIL, F.LOOP_PERIODS)
    for ((period, copies), text), row in zip(cases.items(), got):
        found = row[COLUMNS.index("runaway_repeats")]
        if period <= F.LOOP_PERIODS.stop - 1:
            # the copies that fit the window a piece of this length is looked for in: enough to reject
            assert found >= min(copies, max(F.LOOP_TAIL, 9 * period) // period) and found > 8, (period, found)
            assert tandem_repeats_reference(text, F.LOOP_PERIODS, F.LOOP_TAIL) == found
        else:  # longer than the longest piece looked at
            assert found < 8, (period, found)


def test_filter_measures_in_chunks_equal_one_pass(monkeypatch):
    from engine.kernels import measures

    texts = pa.array(repetition_cases()[:40])
    whole = measures.measure_texts(texts, 8, 100, 4000, range(10, 201))
    monkeypatch.setattr(measures, "CHUNK_BYTES", 5000)  # many chunks, and texts longer than one
    assert np.array_equal(measures.measure_texts(texts, 8, 100, 4000, range(10, 201)), whole)
