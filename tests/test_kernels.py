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


def repetition_cases() -> list[str]:
    import json

    from conftest import shared

    texts = []
    for name in ("traces_math500_r1_and_distill.jsonl", "traces_qwen25math_cot_rm_example.jsonl"):
        texts += [json.loads(line)["response"] for line in open(shared("traces", name), encoding="utf-8")][:150]
    loop = "Let me verify the sum once more. "
    return texts + ["so so " * 60, " ".join(["the value of x is one"] * 40), texts[0] + loop * 12,
                    "a\u3000b\xa0c\u2009d e\x1cf", "", "x" * 500, ("abc" * 7 + "0123456789") * 9]


def test_repetition_kernels_match_reference():
    from engine.kernels import repetition as R

    for text in repetition_cases():
        for min_words in (0, 100):
            assert R.ngram_stats(text, min_words) == R.ngram_stats_reference(text, min_words), text[:60]
        tail = text[-4000:]
        assert R.tandem_repeats(tail, range(10, 201)) == R.tandem_repeats_reference(tail, range(10, 201)), text[:60]
    assert R.tandem_repeats("Let me verify the sum once more. " * 12, range(10, 201)) == 12
