"""Decode sampled token ids (or token bytes) into text plus each token's character span.

Spans are what let any other tokenizer be aligned to the teacher's tokens later: token i covers
text[starts[i]:ends[i]]. A token that holds only the first bytes of a multi-byte character gets the
character (the span of the token where the character *starts*); the tokens holding its remaining
bytes get empty spans. The text always equals `tokenizer.decode(ids, skip_special_tokens=False)`.
"""
from __future__ import annotations

import numpy as np

_BYTE_TABLES: dict = {}  # id(tokenizer) -> id->bytes table; ('rev', id) -> bytes->id


def _lossy_decode(blob: bytes) -> tuple[str, list[tuple[int, int]]]:
    """Decode with each maximal invalid subsequence -> U+FFFD (what `errors="replace"` and the
    tokenizers library's from_utf8_lossy do) and return the byte ranges that were replaced."""
    parts, bad, pos = [], [], 0
    while True:
        try:
            parts.append(blob[pos:].decode("utf-8"))
            return "".join(parts), bad
        except UnicodeDecodeError as e:
            parts += [blob[pos:pos + e.start].decode("utf-8"), "\ufffd"]
            bad.append((pos + e.start, pos + e.end))
            pos += e.end


def spans_from_bytes(pieces: list[bytes]) -> tuple[str, list[int], list[int]]:
    """Text and spans from each token's exact bytes. Invalid UTF-8 becomes U+FFFD as in
    `tokenizer.decode`; each replacement character belongs to the token where its bytes start."""
    blob = b"".join(pieces)
    try:
        text, bad = blob.decode("utf-8"), []
    except UnicodeDecodeError:
        text, bad = _lossy_decode(blob)
    arr = np.frombuffer(blob, dtype=np.uint8)
    starts_char = (arr & 0xC0) != 0x80  # a byte that starts a character (not 10xxxxxx)
    for lo, hi in bad:  # an invalid subsequence is one character starting at its first byte
        starts_char[lo:hi] = False
        starts_char[lo] = True
    # char_at[k] = number of characters starting in blob[:k]
    char_at = np.zeros(len(arr) + 1, dtype=np.int64)
    np.cumsum(starts_char, out=char_at[1:])
    lengths = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=len(pieces))
    byte_ends = np.cumsum(lengths)
    # token i owns the characters that *start* among its bytes: [char_at[start], char_at[end])
    starts, ends = char_at[byte_ends - lengths], char_at[byte_ends]
    return text, starts.tolist(), ends.tolist()


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map used by every byte-level BPE vocabulary."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def _byte_level_table(tokenizer) -> list[bytes | None] | None:
    """id -> bytes for byte-level BPE tokenizers (GPT-2, Qwen, Llama 3, gpt-oss); None otherwise."""
    key = id(tokenizer)
    if key in _BYTE_TABLES:
        return _BYTE_TABLES[key]
    table = None
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and type(backend.decoder).__name__ == "ByteLevel":
        byte_of = {c: b for b, c in _bytes_to_unicode().items()}
        vocab = backend.get_vocab(with_added_tokens=True)
        table = [None] * (max(vocab.values()) + 1)
        special = {t.content for t in backend.get_added_tokens_decoder().values()}
        for token, idx in vocab.items():
            if token in special:
                table[idx] = token.encode("utf-8")
            elif all(c in byte_of for c in token):
                table[idx] = bytes(byte_of[c] for c in token)
    _BYTE_TABLES[key] = table
    return table


def ids_from_bytes(tokenizer, pieces: list[bytes]) -> list[int] | None:
    """Token ids from each token's bytes (an OpenAI chat API answer), exact for byte-level BPE
    vocabularies, where no two tokens share their bytes; None when the tokenizer is not one."""
    table = _byte_level_table(tokenizer) if tokenizer is not None else None
    if table is None:
        return None
    key = ("rev", id(tokenizer))
    rev = _BYTE_TABLES.get(key)
    if rev is None:
        rev = {b: i for i, b in enumerate(table) if b is not None}
        _BYTE_TABLES[key] = rev
    ids = [rev.get(p) for p in pieces]
    return None if None in ids else ids


def _incremental(tokenizer, ids: list[int]) -> tuple[str, list[int], list[int]]:
    """Generic path (SentencePiece and friends): decode small windows, emit text once it is whole."""
    def dec(seq):
        return tokenizer.decode(seq, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    text, starts, ends = "", [], []
    prefix, read = 0, 0
    for i in range(len(ids)):
        before = dec(ids[prefix:read])
        after = dec(ids[prefix:i + 1])
        delta = ""
        if len(after) > len(before) and not after.endswith("\ufffd"):
            delta = after[len(before):]
            prefix, read = read, i + 1
        starts.append(len(text))
        text += delta
        ends.append(len(text))
    tail = dec(ids[prefix:])[len(dec(ids[prefix:read])):] if read < len(ids) else ""
    if tail:  # an incomplete character at the very end: give it to the token where it began
        ends[read] = len(text) + len(tail)
        text += tail
        for j in range(read + 1, len(ids)):
            starts[j] = ends[j] = len(text)
    return text, starts, ends


def decode_with_spans(tokenizer, ids: list[int]) -> tuple[str, list[int], list[int]]:
    table = _byte_level_table(tokenizer)
    if table is not None:
        try:
            pieces = [table[i] for i in ids]
        except IndexError:
            pieces = [None]
        if None not in pieces:
            return spans_from_bytes(pieces)
    return _incremental(tokenizer, ids)
