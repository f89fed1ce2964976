"""Token -> character spans: exact text, tiling spans, multi-byte characters, both decoding paths."""
from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from conftest import shared
from engine import spans


def real_texts():
    rows = [json.loads(line) for line in open(shared("traces", "traces_math500_r1_and_distill.jsonl"))]
    texts = [r["response"][:3000] for r in rows[:6]]
    return texts + ["Ünïcödé → ∑ 😀 数学 \n\n tabs\tand  spaces", "é" * 7 + "😀😀"]


def check(text, starts, ends, tokenizer, ids):
    assert text == tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    assert len(starts) == len(ends) == len(ids)
    assert starts[0] == 0 and ends[-1] == len(text)
    assert all(e == s for e, s in zip(ends[:-1], starts[1:])), "spans must tile the text"
    assert all(s <= e for s, e in zip(starts, ends))


@pytest.mark.parametrize("which", ["teacher", "student"])
def test_byte_level_fast_path_on_real_text(mini, which):
    tok = AutoTokenizer.from_pretrained(mini[which])
    assert spans._byte_level_table(tok) is not None
    for text in real_texts():
        ids = tok.encode(text, add_special_tokens=False)
        out = spans.decode_with_spans(tok, ids)
        check(*out, tok, ids)
        assert out[0] == text
        # the generic path agrees with the fast one wherever characters are whole
        slow = spans._incremental(tok, ids)
        assert slow[0] == out[0]


def test_multibyte_character_belongs_to_the_token_where_it_starts(mini):
    tok = AutoTokenizer.from_pretrained(mini["teacher"])
    table = spans._byte_level_table(tok)
    # the 4 bytes of 😀 as 4 single-byte tokens (the vocabulary has every byte)
    rev = {b: i for i, b in enumerate(table) if b is not None}
    ids = [rev[b"a"]] + [rev[bytes([x])] for x in "😀".encode()] + [rev[b"b"]]
    text, starts, ends = spans.decode_with_spans(tok, ids)
    assert text == "a😀b"
    assert list(zip(starts, ends)) == [(0, 1), (1, 2), (2, 2), (2, 2), (2, 2), (2, 3)]


def test_invalid_utf8_falls_back_and_still_tiles(mini):
    tok = AutoTokenizer.from_pretrained(mini["teacher"])
    rev = {b: i for i, b in enumerate(spans._byte_level_table(tok)) if b is not None}
    ids = [rev[b"x"], rev[bytes([0xE2])], rev[b"y"], rev[bytes([0xF0])]]  # truncated characters
    text, starts, ends = spans.decode_with_spans(tok, ids)
    check(text, starts, ends, tok, ids)


def test_sentencepiece_style_tokenizer_uses_incremental_path(tmp_path):
    """A Metaspace (SentencePiece-like) tokenizer: leading-space tokens decode right only in context."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    t = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    t.pre_tokenizer = pre_tokenizers.Metaspace()
    t.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace()])
    corpus = real_texts()
    alphabet = [f"<0x{b:02X}>" for b in range(256)]
    t.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>"] + alphabet,
                                                      show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=t, unk_token="<unk>")
    assert spans._byte_level_table(tok) is None
    for text in corpus:
        ids = tok.encode(text, add_special_tokens=False)
        check(*spans.decode_with_spans(tok, ids), tok, ids)


def test_ids_from_bytes_round_trip(mini):
    tok = AutoTokenizer.from_pretrained(mini["student"])
    table = spans._byte_level_table(tok)
    ids = tok.encode("Ana has 12 apples. 😀", add_special_tokens=False)
    assert spans.ids_from_bytes(tok, [table[i] for i in ids]) == ids
    assert spans.ids_from_bytes(tok, [b"\xff\xfe\xfd-not-a-token"]) is None


@pytest.mark.parametrize("which", ["teacher", "student"])
def test_random_token_streams_match_tokenizer_decode(mini, which):
    """What an untrained model samples: arbitrary ids, invalid UTF-8 everywhere. The fast path's text is
    still exactly the tokenizer's own decode (U+FFFD per invalid sequence) and its spans tile it."""
    import random

    tok = AutoTokenizer.from_pretrained(mini[which])
    rng = random.Random(0)
    for _ in range(200):
        ids = [rng.randrange(len(tok)) for _ in range(rng.randint(1, 40))]
        check(*spans.decode_with_spans(tok, ids), tok, ids)
